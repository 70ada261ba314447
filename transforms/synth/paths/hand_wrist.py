"""Hand and wrist: carpal tunnel syndrome (plastic surgery or orthopaedics) and thumb-base
osteoarthritis (CMC1, plastic surgery): GP and referral, the intake DBC (trigger), surgery for
many, and hand therapy (physiotherapy or occupational therapy)."""

from __future__ import annotations

import numpy as np

from transforms.synth.paths.common import PathContext, PlantedTrigger, age_band_rate

BUNDLE = "hand_wrist"
CTS_RATES = {(30, 39): 0.0012, (40, 69): 0.0035, (70, 120): 0.0020}
CMC1_RATES = {(45, 54): 0.0006, (55, 79): 0.0014}


def generate(ctx: PathContext) -> None:
    rng = ctx.rng
    for condition, rates, surgery_share in (("cts", CTS_RATES, 0.65), ("cmc1", CMC1_RATES, 0.4)):
        female = 2.5 if condition == "cts" else 3.0
        patient, intake, provider = ctx.draw_treated_events(
            BUNDLE,
            lambda age, sex, year, rates=rates, female=female: (
                age_band_rate(age, rates) * np.where(sex == 1, female, 1.0)
            ),
            zbc_share=0.35,
        )
        n = patient.size
        ctx.gp_consults(patient, intake - rng.integers(40, 120, n))
        ctx.gp_consults(
            patient, intake - rng.integers(10, 35, n), referral_specialism="0303" if condition == "cts" else "0304"
        )
        if condition == "cts":
            ortho = rng.random(n) < 0.4
            keys = np.where(ortho, "cts_intake_ortho", "cts_intake_plastic")
        else:
            keys = np.full(n, "cmc1_intake", dtype=object)
        treated = ctx.treated(BUNDLE, provider, intake)
        for key in np.unique(keys):
            sel = keys == key
            rows = ctx.subtraject(str(key), patient[sel], provider[sel], intake[sel], extra_visits=1)
            ctx.plant(
                PlantedTrigger(
                    BUNDLE,
                    patient[sel],
                    intake[sel],
                    provider[sel],
                    "dbc",
                    rows,
                    treated[sel],
                    np.zeros(int(sel.sum()), dtype=np.int64),
                )
            )
        operated = rng.random(n) < surgery_share
        s = np.flatnonzero(operated)
        op_day = intake[s] + rng.integers(20, 200, s.size)
        rows = ctx.subtraject(f"{condition}_surgery", patient[s], provider[s], op_day, main_activity_day=op_day)
        # the surgery subtraject has a trigger diagnosis too (the rule names no activity): a trigger
        # event, inside its intake's window, recorded like the cataract's second eye
        ctx.plant(
            PlantedTrigger(
                BUNDLE,
                patient[s],
                op_day,
                provider[s],
                "dbc",
                rows,
                ctx.treated(BUNDLE, provider[s], op_day),
                np.zeros(s.size, dtype=np.int64),
                "surgery",
            )
        )
        therapy_start = np.where(operated, intake + 230, intake + rng.integers(10, 40, n))
        therapy_start[s] = op_day + rng.integers(7, 21, s.size)
        ot = rng.random(n) < 0.5
        for discipline, sel in (("physiotherapy", ~ot), ("occupational_therapy", ot)):
            idx = np.flatnonzero(sel)
            ctx.physio_series(patient[idx], therapy_start[idx], rng.integers(4, 12, idx.size), discipline=discipline)
