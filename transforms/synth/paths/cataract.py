"""Cataract: referral, ophthalmology outpatient visit, the extraction (trigger), often the second
eye within months (a second trigger inside the open episode), eye drops, and sometimes a laser
treatment of secondary cataract (nastaar). Operations at a provider in the costlier province of
``SynthConfig.regional`` are followed by extra outpatient checks (``EXTRA_CARE``)."""

from __future__ import annotations

import numpy as np

from transforms.money import euros_to_cents
from transforms.synth.paths.common import PathContext, PlantedTrigger, age_band_rate

#: About 150,000 cataract operations a year in the Netherlands, rising steeply with age.
RATES = {(45, 59): 0.0015, (60, 69): 0.007, (70, 79): 0.020, (80, 120): 0.026}
SECOND_EYE_SHARE = 0.6
NASTAAR_SHARE = 0.12
BUNDLE = "cataract"


def generate(ctx: PathContext) -> None:
    patient, op_day, provider = ctx.draw_treated_events(
        BUNDLE, lambda age, sex, year: age_band_rate(age, RATES), zbc_share=0.3
    )
    n = patient.size
    rng = ctx.rng

    referral_day = op_day - rng.integers(45, 130, n)
    ctx.gp_consults(patient, referral_day, referral_specialism="0301")
    ctx.subtraject(
        "cataract_outpatient", patient, provider, referral_day + rng.integers(7, 30, n), days=rng.integers(5, 20, n)
    )

    def operate(p: np.ndarray, prov: np.ndarray, day: np.ndarray, role: str) -> None:
        treated = ctx.treated(BUNDLE, prov, day)
        effect = np.where(treated, int(euros_to_cents(ctx.config.effect(BUNDLE).price_eur)), 0)
        alt = rng.random(p.size) < 0.35
        for key, sel in (("cataract_surgery", ~alt), ("cataract_surgery_alt", alt)):
            product = ctx.product(key)
            open_day = day[sel] - rng.integers(0, 10, int(sel.sum()))
            end_day = day[sel] + rng.integers(20, 60, int(sel.sum()))
            base = ctx.claims.dbc_price_cents(product, prov[sel], end_day)
            rows = ctx.subtraject(
                key,
                p[sel],
                prov[sel],
                open_day,
                days=end_day - open_day,
                main_activity_day=day[sel],
                amount_cents=np.maximum(base + effect[sel], 100),
            )
            ctx.plant(PlantedTrigger(BUNDLE, p[sel], day[sel], prov[sel], "dbc", rows, treated[sel], effect[sel], role))
        ctx.dispense(p, day, "S01CA01", 10.0)

    operate(patient, provider, op_day, "trigger")
    # planted utilisation (a costlier province): extra outpatient checks after the first operation
    extra = ctx.extra_care_count(BUNDLE, ctx.utilisation_factor(BUNDLE, provider))
    ctx.extra_care(BUNDLE, patient, provider, op_day + 14, extra, spacing=30, days=10)
    second = rng.random(n) < SECOND_EYE_SHARE
    s = np.flatnonzero(second)
    operate(patient[s], provider[s], op_day[s] + rng.integers(14, 150, s.size), "second_eye")
    nastaar = np.flatnonzero(rng.random(n) < NASTAAR_SHARE)
    laser_day = op_day[nastaar] + rng.integers(150, 720, nastaar.size)
    ctx.subtraject(
        "nastaar_laser", patient[nastaar], provider[nastaar], laser_day, days=rng.integers(1, 30, nastaar.size)
    )
