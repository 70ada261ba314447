"""Heart failure (calendar-year bundle): chronic outpatient cardiology, acute admissions with care
days, diuretics and beta-blockers, and a raised mortality."""

from __future__ import annotations

import numpy as np

from transforms.synth.calendar import year_start
from transforms.synth.paths.common import PathContext, PlantedTrigger

BUNDLE = "heart_failure"
ADMISSION_RATE = 0.25
EXTRA_MORTALITY = 0.08


def generate(ctx: PathContext) -> None:
    rng = ctx.rng
    hf = ctx.chronic["heart_failure"]
    hospital = ctx.pop.usual["hospital"]
    n_pat = ctx.pop.size
    for y_index, year in enumerate(ctx.years):
        y0 = int(year_start(year))
        patients = np.flatnonzero(hf[:n_pat, y_index])
        if patients.size == 0:
            continue
        dies = patients[rng.random(patients.size) < EXTRA_MORTALITY]
        ctx.pop.die(dies, y0 + rng.integers(0, 365, dies.size))
        first = y0 + rng.integers(0, 200, patients.size)
        rows = ctx.subtraject(
            "hf_outpatient", patients, hospital[patients], first, extra_visits=rng.integers(0, 3, patients.size)
        )
        treated = ctx.treated(BUNDLE, hospital[patients], first)
        ctx.plant(
            PlantedTrigger(
                BUNDLE,
                patients,
                first,
                hospital[patients],
                "dbc",
                rows,
                treated,
                np.zeros(patients.size, dtype=np.int64),
            )
        )
        again = patients[rng.random(patients.size) < 0.5]
        day = y0 + rng.integers(220, 340, again.size)
        rows = ctx.subtraject("hf_outpatient", again, hospital[again], day)
        # every heart-failure subtraject (0320/301 or 302) is a trigger line of the calendar-year bundle:
        # recorded too, so that a year whose first subtraject was not delivered (death) is still expected
        ctx.plant(
            PlantedTrigger(
                BUNDLE,
                again,
                day,
                hospital[again],
                "dbc",
                rows,
                ctx.treated(BUNDLE, hospital[again], day),
                np.zeros(again.size, dtype=np.int64),
                "follow_up",
            )
        )
        admitted = patients[rng.random(patients.size) < ADMISSION_RATE]
        day = y0 + rng.integers(0, 330, admitted.size)
        rows = ctx.subtraject(
            "hf_admission",
            admitted,
            hospital[admitted],
            day,
            care_days=rng.integers(3, 13, admitted.size),
            main_activity_day=day,
        )
        ctx.plant(
            PlantedTrigger(
                BUNDLE,
                admitted,
                day,
                hospital[admitted],
                "dbc",
                rows,
                ctx.treated(BUNDLE, hospital[admitted], day),
                np.zeros(admitted.size, dtype=np.int64),
                "admission",
            )
        )
        for q in range(4):
            d = y0 + 91 * q + rng.integers(0, 20, patients.size)
            ctx.dispense(patients, d, "C03CA01", 90.0)
            ctx.dispense(patients, d, "C07AB07", 90.0)
