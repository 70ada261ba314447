"""Breast cancer surgery: GP and referral, diagnostics, lumpectomy or mastectomy (trigger),
re-operation, radiotherapy, chemotherapy, hormone therapy and yearly follow-up."""

from __future__ import annotations

import numpy as np

from transforms.money import euros_to_cents
from transforms.synth.paths.common import PathContext, PlantedTrigger, age_band_rate

#: About 14,000 breast-cancer operations a year, women 45-75 mostly (national screening ages).
RATES = {(30, 44): 0.0008, (45, 74): 0.0030, (75, 89): 0.0020}
MASTECTOMY_SHARE = 0.35
REOPERATION_SHARE = 0.15
BUNDLE = "breast_cancer_surgery"


def generate(ctx: PathContext) -> None:
    patient, op_day, provider = ctx.draw_treated_events(
        BUNDLE, lambda age, sex, year: age_band_rate(age, RATES) * (sex == 1)
    )
    n = patient.size
    rng = ctx.rng

    referral_day = op_day - rng.integers(25, 50, n)
    ctx.gp_consults(patient, referral_day, referral_specialism="0303")
    ctx.subtraject(
        "breast_diagnostics", patient, provider, referral_day + rng.integers(2, 10, n), days=rng.integers(7, 20, n)
    )

    treated = ctx.treated(BUNDLE, provider, op_day)
    effect = np.where(treated, int(euros_to_cents(ctx.config.effect(BUNDLE).price_eur)), 0)
    mastectomy = rng.random(n) < MASTECTOMY_SHARE
    for key, sel in (("breast_lumpectomy", ~mastectomy), ("breast_mastectomy", mastectomy)):
        product = ctx.product(key)
        open_day = op_day[sel] - rng.integers(0, 7, int(sel.sum()))
        end_day = op_day[sel] + rng.integers(20, 60, int(sel.sum()))
        base = ctx.claims.dbc_price_cents(product, provider[sel], end_day)
        rows = ctx.subtraject(
            key,
            patient[sel],
            provider[sel],
            open_day,
            days=end_day - open_day,
            care_days=rng.integers(1, 3, int(sel.sum())),
            main_activity_day=op_day[sel],
            amount_cents=np.maximum(base + effect[sel], 100),
        )
        ctx.plant(
            PlantedTrigger(BUNDLE, patient[sel], op_day[sel], provider[sel], "dbc", rows, treated[sel], effect[sel])
        )

    # re-operation within 90 days after a lumpectomy (a third of them a mastectomy)
    re = np.flatnonzero(~mastectomy & (rng.random(n) < REOPERATION_SHARE))
    re_day = op_day[re] + rng.integers(14, 85, re.size)
    to_mastectomy = rng.random(re.size) < 0.33
    for key, sel in (("breast_reoperation", ~to_mastectomy), ("breast_mastectomy", to_mastectomy)):
        rows = ctx.subtraject(
            key, patient[re][sel], provider[re][sel], re_day[sel], care_days=1, main_activity_day=re_day[sel]
        )
        # a re-operation carries a trigger activity: a trigger inside the open episode
        ctx.plant(
            PlantedTrigger(
                BUNDLE,
                patient[re][sel],
                re_day[sel],
                provider[re][sel],
                "dbc",
                rows,
                ctx.treated(BUNDLE, provider[re][sel], re_day[sel]),
                np.zeros(int(sel.sum()), dtype=np.int64),
                "reoperation",
            )
        )

    # adjuvant treatment, out of bundle but tracked
    radio = np.flatnonzero(rng.random(n) < np.where(mastectomy, 0.3, 0.8))
    ctx.subtraject(
        "breast_radiotherapy", patient[radio], provider[radio], op_day[radio] + rng.integers(30, 60, radio.size)
    )
    chemo = np.flatnonzero(rng.random(n) < 0.35)
    for k in range(2):
        ctx.subtraject(
            "breast_chemotherapy",
            patient[chemo],
            provider[chemo],
            op_day[chemo] + 30 + 115 * k + rng.integers(0, 10, chemo.size),
        )
    hormone = np.flatnonzero(rng.random(n) < 0.6)
    atc = np.where(ctx.pop.age_in(patient[hormone], op_day[hormone] // 365 + 1970) < 50, "L02BA01", "L02BG03")
    for k in range(8):
        ctx.dispense(patient[hormone], op_day[hormone] + 40 + 91 * k, atc, 90.0)
    for k in range(2):
        ctx.subtraject(
            "breast_followup",
            patient,
            provider,
            op_day + 300 + 365 * k + rng.integers(0, 30, n),
            days=rng.integers(1, 30, n),
        )
