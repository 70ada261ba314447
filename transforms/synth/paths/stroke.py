"""Acute ischaemic stroke: the clinical admission (trigger), neurology follow-up, clinical or
outpatient rehabilitation or geriatric rehabilitation, physiotherapy, secondary prevention, a
high mortality and sometimes a recurrent stroke within the year.

Planted for the benchmarks (``SynthConfig.regional``): strokes admitted in the costlier province
get extra outpatient rehabilitation (``EXTRA_CARE``), and ``stroke_tail_share`` of all stroke
patients get one to three extra clinical rehabilitation stays (a heavy right tail)."""

from __future__ import annotations

import numpy as np

from transforms.synth.paths.common import PathContext, PlantedTrigger, age_band_rate

BUNDLE = "acute_stroke"
#: About 30,000 ischaemic strokes a year, steeply rising with age.
RATES = {(35, 54): 0.0006, (55, 64): 0.0020, (65, 74): 0.0048, (75, 84): 0.0105, (85, 120): 0.0170}
RECURRENCE = 0.06


def generate(ctx: PathContext) -> None:
    rng = ctx.rng
    patient, day, provider = ctx.draw_treated_events(
        BUNDLE, lambda age, sex, year: age_band_rate(age, RATES), elsewhere_share=0.02
    )
    n = patient.size
    age = ctx.pop.age_in(patient, day // 365 + 1970)

    def admit(p: np.ndarray, prov: np.ndarray, d: np.ndarray, role: str) -> np.ndarray:
        treated = ctx.treated(BUNDLE, prov, d)
        los = rng.integers(3, 15, p.size)
        rows = ctx.subtraject("stroke_admission", p, prov, d, care_days=los, main_activity_day=d)
        ctx.plant(PlantedTrigger(BUNDLE, p, d, prov, "dbc", rows, treated, np.zeros(p.size, dtype=np.int64), role))
        return los

    los = admit(patient, provider, day, "trigger")
    discharge = day + los
    ctx.subtraject("stroke_followup", patient, provider, discharge + rng.integers(30, 80, n))
    u = rng.random(n)
    rehab_clinical = u < 0.12
    rehab_outpatient = (u >= 0.12) & (u < 0.27)
    geriatric = (u >= 0.27) & (u < 0.42) & (age >= 75)
    rehab_provider = ctx.pop.usual["rehabilitation"][patient]
    for key, sel in (
        ("rehab_clinical", rehab_clinical),
        ("rehab_outpatient", rehab_outpatient),
        ("geriatric_rehab", geriatric),
    ):
        idx = np.flatnonzero(sel)
        start = discharge[idx] + rng.integers(1, 10, idx.size)
        care = rng.integers(14, 60, idx.size) if key != "rehab_outpatient" else 0
        ctx.subtraject(key, patient[idx], rehab_provider[idx], start, care_days=care, main_activity_day=start)
    # planted: extra outpatient rehabilitation in the costlier province; the heavy tail of long
    # clinical rehabilitation (one to three further stays of 80 days, from 100 days after discharge,
    # 85 days apart, after any first rehabilitation)
    extra = ctx.extra_care_count(BUNDLE, ctx.utilisation_factor(BUNDLE, provider))
    ctx.extra_care(BUNDLE, patient, rehab_provider, discharge + 1, extra, spacing=115, days=90)
    tail = np.flatnonzero(rng.random(n) < ctx.config.regional.stroke_tail_share)
    stays = rng.choice(np.array([1, 2, 3]), size=tail.size, p=[0.5, 0.3, 0.2])
    for k in range(3):
        t = tail[stays > k]
        start = discharge[t] + 100 + 85 * k
        ctx.subtraject(
            "rehab_clinical",
            patient[t],
            rehab_provider[t],
            start,
            days=np.full(t.size, 80),
            care_days=rng.integers(14, 60, t.size),
            main_activity_day=start,
        )
    physio = np.flatnonzero(rng.random(n) < 0.4)
    ctx.physio_series(
        patient[physio], discharge[physio] + rng.integers(14, 60, physio.size), rng.integers(8, 21, physio.size)
    )
    for q in range(4):
        d = discharge + 91 * q + rng.integers(0, 10, n)
        ctx.dispense(patient, d, "B01AC06", 90.0)
        ctx.dispense(patient, d, "C10AA05", 90.0)
    # recurrence inside the open episode, and death
    rec = np.flatnonzero(rng.random(n) < RECURRENCE)
    admit(patient[rec], provider[rec], day[rec] + rng.integers(30, 360, rec.size), "recurrence")
    p_death_30 = np.where(age >= 85, 0.22, np.where(age >= 75, 0.14, 0.07))
    p_death_365 = np.where(age >= 85, 0.18, np.where(age >= 75, 0.10, 0.05))
    u = rng.random(n)
    early = u < p_death_30
    late = (u >= p_death_30) & (u < p_death_30 + p_death_365)
    death = np.where(early, day + rng.integers(1, 30, n), day + rng.integers(30, 365, n))
    ctx.pop.die(patient[early | late], death[early | late])
