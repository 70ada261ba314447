"""Hip and knee osteoarthritis: GP, referral, orthopaedic outpatient care, the prosthesis operation
(the trigger), follow-up, physiotherapy, and sometimes a complication with revision.

At the planted utilisation provider of ``SynthConfig.providers`` (when the bundle is its bundle)
patients stay two days longer and get extra clinical stays after the operation (``EXTRA_CARE``)."""

from __future__ import annotations

import numpy as np

from transforms.money import euros_to_cents
from transforms.synth.paths.common import PathContext, PlantedTrigger, age_band_rate

#: Primary prostheses for osteoarthritis per person-year (about 30,000 hips and 27,000 knees a
#: year in the Netherlands, mostly between 60 and 85, women more often than men).
RATES = {
    "hip_oa": ({(45, 54): 0.0006, (55, 64): 0.0022, (65, 74): 0.0050, (75, 84): 0.0058, (85, 120): 0.0028}, 1.35),
    "knee_oa": ({(45, 54): 0.0005, (55, 64): 0.0025, (65, 74): 0.0055, (75, 84): 0.0045, (85, 120): 0.0012}, 1.55),
}
COMPLICATION_RATE = 0.04


def generate(ctx: PathContext, bundle: str) -> None:
    part = "hip" if bundle == "hip_oa" else "knee"
    bands, female_factor = RATES[bundle]

    def probability(age: np.ndarray, sex: np.ndarray, year: int) -> np.ndarray:
        return age_band_rate(age, bands) * np.where(sex == 1, female_factor, 1.0)

    patient, op_day, provider = ctx.draw_treated_events(bundle, probability, zbc_share=0.22)
    n = patient.size
    rng = ctx.rng

    # before the operation: GP consults, a referral, pain medication, outpatient orthopaedics
    referral_day = op_day - rng.integers(95, 190, n)
    ctx.gp_consults(patient, referral_day - rng.integers(20, 120, n))
    ctx.gp_consults(patient, referral_day, referral_specialism="0305")
    ctx.dispense(patient, referral_day - rng.integers(0, 60, n), rng.choice(["M01AE01", "N02BE01"], n), 60.0)
    outpatient_start = referral_day + rng.integers(7, 35, n)
    ctx.subtraject(
        f"{part}_oa_outpatient",
        patient,
        provider,
        outpatient_start,
        days=np.minimum(op_day - outpatient_start - 1, 110),
        extra_visits=rng.integers(0, 3, n),
    )

    # the operation: pre-operative screening opens the subtraject; the prosthesis is the trigger
    treated = ctx.treated(bundle, provider, op_day)
    effect_cents = np.where(treated, int(euros_to_cents(ctx.config.effect(bundle).price_eur)), 0)
    product = ctx.product(f"{part}_oa_prosthesis")
    open_day = op_day - rng.integers(0, 15, n)
    los = 1 + rng.poisson(np.maximum(3.2 - 0.25 * (op_day // 365 - 45), 1.2))  # stays shorten over the years
    factor = ctx.utilisation_factor(bundle, provider)
    effects = ctx.config.providers
    if bundle == effects.bundle and effects.utilisation_factor != 1.0:
        los = los + 2 * (provider == ctx.registry.planted["utilisation"])
    end_day = op_day + rng.integers(40, 100, n)
    base = ctx.claims.dbc_price_cents(product, provider, end_day)
    rows = ctx.subtraject(
        f"{part}_oa_prosthesis",
        patient,
        provider,
        open_day,
        days=end_day - open_day,
        care_days=los,
        main_activity_day=op_day,
        extra_visits=1,
        amount_cents=np.maximum(base + effect_cents, 100),
    )
    ctx.plant(PlantedTrigger(bundle, patient, op_day, provider, "dbc", rows, treated, effect_cents))
    # planted utilisation: extra clinical stays from the day after the operation's subtraject closes
    ctx.extra_care(
        bundle,
        patient,
        provider,
        end_day + 1,
        ctx.extra_care_count(bundle, factor),
        spacing=30,
        days=20,
        care_days=rng.integers(3, 8, n),
    )

    # after: follow-up visit, physiotherapy, sometimes a complication with revision
    ctx.subtraject(f"{part}_oa_followup", patient, provider, end_day + rng.integers(1, 60, n), extra_visits=0)
    ctx.physio_series(patient, op_day + rng.integers(7, 21, n), rng.integers(6, 19, n))
    complication = rng.random(n) < COMPLICATION_RATE
    c = np.flatnonzero(complication)
    if c.size:
        c_day = op_day[c] + rng.integers(20, 360, c.size)
        ctx.subtraject(
            f"{part}_complication",
            patient[c],
            provider[c],
            c_day,
            care_days=rng.integers(3, 11, c.size),
            main_activity_day=c_day + rng.integers(0, 5, c.size),
        )
