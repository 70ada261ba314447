"""Integrated birth care: prenatal midwife care, a referral to the gynaecologist for some, the birth
(home or outpatient under the midwife, or in hospital under the gynaecologist, by caesarean for
some) as the trigger, postnatal care, maternity home care (kraamzorg) and the newborn, who joins
the insured population from the day of birth."""

from __future__ import annotations

import numpy as np

from transforms.synth.paths.common import PathContext, PlantedTrigger, age_band_rate
from transforms.synth.tariffs import MATERNITY_EUR, index_cents

BUNDLE = "birth_care"
#: Births per woman-year by age (CBS fertility, about 170,000 births a year).
FERTILITY = {(16, 19): 0.003, (20, 24): 0.026, (25, 29): 0.085, (30, 34): 0.128, (35, 39): 0.064, (40, 45): 0.012}
#: Birth setting shares (Perined): home, outpatient under the midwife, hospital under the
#: gynaecologist, caesarean.
SETTING_SHARES = (0.12, 0.15, 0.57, 0.16)
NEONATAL_SHARE = 0.08


def generate(ctx: PathContext) -> None:
    rng = ctx.rng
    boost = ctx.volume_boost(BUNDLE)
    mother, birth = ctx.draw_events(lambda age, sex, year: age_band_rate(age, FERTILITY) * (sex == 1) * boost)
    # a planted volume effect works through the mother's midwife practice (the contract members)
    keep = ctx.apply_volume_effect(BUNDLE, mother, birth, ctx.pop.usual["midwife"][mother])
    mother, birth = mother[keep], birth[keep]
    n = mother.size
    midwife = ctx.pop.usual["midwife"][mother]
    hospital = ctx.hospital_for(mother, elsewhere_share=0.03)
    setting = rng.choice(4, size=n, p=SETTING_SHARES)

    def maternity(service: str, p: np.ndarray, prov: np.ndarray, d: np.ndarray, quantity=None) -> np.ndarray:
        price = index_cents(MATERNITY_EUR[service], d) * (quantity if quantity is not None else 1)
        extra = {"service_cd": service}
        if quantity is not None:
            extra["quantity"] = np.asarray(quantity, dtype=np.int32)
        return ctx.claims.first_line("maternity", p, prov, d, price, origin="path", **extra)

    conception = birth - rng.integers(259, 294, n)
    maternity("prenatal", mother, midwife, conception + rng.integers(60, 100, n))
    referred = np.flatnonzero((setting >= 2) | (rng.random(n) < 0.1))
    ctx.subtraject(
        "pregnancy_gyn",
        mother[referred],
        hospital[referred],
        birth[referred] - rng.integers(90, 200, referred.size),
        extra_visits=rng.integers(0, 3, referred.size),
    )

    # the birth: the trigger line is the midwife's birth service or the gynaecologist's partus DBC
    for code, service in ((0, "birth_home"), (1, "birth_outpatient_hospital")):
        idx = np.flatnonzero(setting == code)
        rows = maternity(service, mother[idx], midwife[idx], birth[idx])
        treated = ctx.treated(BUNDLE, midwife[idx], birth[idx])
        ctx.plant(
            PlantedTrigger(
                BUNDLE,
                mother[idx],
                birth[idx],
                midwife[idx],
                "maternity",
                rows,
                treated,
                np.zeros(idx.size, dtype=np.int64),
            )
        )
    for code, key in ((2, "partus_gyn"), (3, "caesarean_gyn")):
        idx = np.flatnonzero(setting == code)
        start = birth[idx] - rng.integers(0, 2, idx.size)
        rows = ctx.subtraject(
            key,
            mother[idx],
            hospital[idx],
            start,
            care_days=rng.integers(1, 3 + 2 * (code == 3), idx.size),
            main_activity_day=birth[idx],
            days=rng.integers(7, 42, idx.size),
        )
        treated = ctx.treated(BUNDLE, hospital[idx], birth[idx])
        ctx.plant(
            PlantedTrigger(
                BUNDLE, mother[idx], birth[idx], hospital[idx], "dbc", rows, treated, np.zeros(idx.size, dtype=np.int64)
            )
        )

    maternity("postnatal", mother, midwife, birth + rng.integers(1, 10, n))
    hours = rng.integers(24, 50, n)
    maternity("maternity_care_hours", mother, ctx.pop.usual["maternity_care"][mother], birth + 1, quantity=hours)

    # the newborn joins the population; some need neonatal care
    baby = ctx.pop.add_newborns(mother, birth, rng, ctx.registry, ctx.last_day)
    sick = np.flatnonzero(rng.random(n) < NEONATAL_SHARE)
    ctx.subtraject(
        "neonatal",
        baby[sick],
        hospital[sick],
        birth[sick],
        care_days=rng.integers(1, 8, sick.size),
        main_activity_day=birth[sick],
        days=rng.integers(3, 30, sick.size),
    )
