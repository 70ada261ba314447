"""Rheumatoid arthritis with expensive drugs (calendar-year bundle): rheumatology subtrajecten all
year, intravenous biologics as add-on activities or subcutaneous biologics from the pharmacy,
switches between drugs, and methotrexate for those without a biologic."""

from __future__ import annotations

import numpy as np

from transforms.synth.calendar import year_start
from transforms.synth.paths.common import PathContext, PlantedTrigger

BUNDLE = "ra_drugs"
BIOLOGIC_SHARE = 0.25
SWITCH_RATE = 0.10
#: intravenous drugs declared as add-on activities (catalogue product per drug) and subcutaneous or
#: oral drugs dispensed monthly by the pharmacy (ATC)
IV_DRUGS = ("infliximab", "rituximab", "abatacept", "tocilizumab")
PHARMACY_DRUGS = ("L04AB01", "L04AB04", "L04AB05", "L04AB06", "L04AA29")
DRUGS = IV_DRUGS + PHARMACY_DRUGS


def generate(ctx: PathContext) -> None:
    rng = ctx.rng
    ra = ctx.chronic["rheumatoid_arthritis"]
    n_pat = ctx.pop.size
    biologic = rng.random(n_pat) < BIOLOGIC_SHARE
    drug = rng.integers(0, len(DRUGS), n_pat)
    hospital = ctx.pop.usual["hospital"]
    for y_index, year in enumerate(ctx.years):
        if y_index > 0:
            switch = rng.random(n_pat) < SWITCH_RATE
            drug = np.where(switch, (drug + rng.integers(1, len(DRUGS), n_pat)) % len(DRUGS), drug)
        y0 = int(year_start(year))
        patients = np.flatnonzero(ra[:n_pat, y_index])
        if patients.size == 0:
            continue
        bio = biologic[patients]
        # without biologic: one or two outpatient subtrajecten and methotrexate
        plain = patients[~bio]
        ctx.subtraject("ra_outpatient", plain, hospital[plain], y0 + rng.integers(0, 150, plain.size), extra_visits=1)
        twice = plain[rng.random(plain.size) < 0.5]
        ctx.subtraject("ra_outpatient", twice, hospital[twice], y0 + rng.integers(200, 300, twice.size))
        for q in range(4):
            ctx.dispense(plain, y0 + 91 * q + rng.integers(0, 20, plain.size), "L04AX03", 84.0)
        # with biologic: subtrajecten around the year; the first of the year is the trigger line
        users = patients[bio]
        user_drug = np.array(DRUGS, dtype=object)[drug[users]]
        first_rows = np.full(users.size, -1, dtype=np.int64)
        first_day = np.zeros(users.size, dtype=np.int64)
        for part in range(3):
            start = y0 + 121 * part + rng.integers(0, 8, users.size)
            for name in DRUGS:
                sel = user_drug == name
                if not sel.any():
                    continue
                key = f"ra_outpatient_{name}" if name in IV_DRUGS else "ra_outpatient"
                rows = ctx.subtraject(
                    key, users[sel], hospital[users[sel]], start[sel], days=np.full(int(sel.sum()), 112)
                )
                if part == 0:
                    first_rows[sel] = rows
                    first_day[sel] = start[sel]
                elif name in IV_DRUGS:  # every add-on subtraject is a trigger line of the year's episode
                    p = users[sel]
                    ctx.plant(
                        PlantedTrigger(
                            BUNDLE,
                            p,
                            start[sel],
                            hospital[p],
                            "dbc",
                            rows,
                            ctx.treated(BUNDLE, hospital[p], start[sel]),
                            np.zeros(p.size, dtype=np.int64),
                            "infusion",
                        )
                    )
        oral = np.isin(user_drug, PHARMACY_DRUGS)
        for m in range(12):
            p = users[oral]
            d = y0 + 30 * m + rng.integers(0, 5, p.size)
            rows = ctx.dispense(p, d, user_drug[oral], 28.0)
            # so is every dispensing of an oral or subcutaneous drug (anchored at the pharmacy)
            pharmacy = ctx.pop.usual["pharmacy"][p]
            ctx.plant(
                PlantedTrigger(
                    BUNDLE,
                    p,
                    d,
                    pharmacy,
                    "pharmacy",
                    rows,
                    ctx.treated(BUNDLE, pharmacy, d),
                    np.zeros(p.size, dtype=np.int64),
                    "dispensing",
                )
            )
        treated = ctx.treated(BUNDLE, hospital[users], first_day)
        ctx.plant(
            PlantedTrigger(
                BUNDLE,
                users,
                first_day,
                hospital[users],
                "dbc",
                first_rows,
                treated,
                np.zeros(users.size, dtype=np.int64),
            )
        )
