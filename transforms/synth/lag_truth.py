"""The declaration-lag distribution the generator uses, for ``truth.json`` ``declaration_lag``.

Computed from the generator's own parameters (``transforms.synth.claims.DECLARATION_LAG``) and its
own service dates, never from the declarations it drew, so a claims-maturity estimate
(``transforms.maturity``) can be compared with it. The lag of a line is ``min(round(X), cap_days) +
offset_days`` days after its service date (DBC: the subtraject's ``end_date``, the day it closes;
first-line tables: ``service_date``), with ``X`` a mixture of two lognormals. Its development month
is the calendar month of ``declared_on`` minus the calendar month of the service date (0 = declared
in the service month), so the probability of being declared within ``k`` development months depends
on where in its month a service falls: a GP registration fee dated the first of a quarter's month
has a whole month to be declared in month 0, a consult on the 28th three days. It is therefore
averaged over the service days of the lines the generator makes deliverable (every line it keeps
before it draws the lags and withholds the late ones), which the blocks count per day
(``ClaimBuffer.service_days``): ``within_months`` weighs each line once, ``within_months_cents``
by its amount (a euro-weighted completion differs where amounts differ by day of the month, as the
GP registration fees on the first of a quarter do). Exact for the generator's distribution,
whatever the lags then drawn.
"""

from __future__ import annotations

import math
from datetime import date

import numpy as np

from transforms.synth.calendar import day
from transforms.synth.claims import DECLARATION_LAG, FIRST_LINE_TABLES

#: The date a table's lag is counted from.
SERVICE_DATE = {"dbc": "end_date", **{t: "service_date" for t in FIRST_LINE_TABLES}}


def _lognormal_cdf(x: float, median: float, sigma: float) -> float:
    if x <= 0:
        return 0.0
    return 0.5 * math.erfc(-(math.log(x) - math.log(median)) / (sigma * math.sqrt(2.0)))


def lag_days_cdf(params: dict) -> np.ndarray:
    """``cdf[d]`` = P(lag <= d days) for d = 0 .. cap + offset (1 from there on)."""
    cap, offset = int(params["cap_days"]), int(params["offset_days"])
    cdf = np.zeros(cap + offset + 1)
    for d in range(offset, cap + offset):
        # round(X) <= d - offset  <=>  X < d - offset + 0.5 (ties have probability 0)
        x = d - offset + 0.5
        cdf[d] = params["slow_share"] * _lognormal_cdf(x, params["slow_median_days"], params["slow_sigma"]) + (
            1.0 - params["slow_share"]
        ) * _lognormal_cdf(x, params["median_days"], params["sigma"])
    cdf[cap + offset] = 1.0  # the cap
    return cdf


def development_month_cdf(params: dict, first_day: int, weights: np.ndarray) -> list[float]:
    """P(declared within k development months), k = 0, 1, ... up to the first k where it is 1, for a
    service on day ``first_day + i`` with weight ``weights[i]``."""
    cdf = lag_days_cdf(params)
    days = first_day + np.arange(weights.size, dtype=np.int64)
    months = days.astype("datetime64[D]").astype("datetime64[M]")
    w = np.asarray(weights, dtype=np.float64) / float(np.sum(weights))
    out: list[float] = []
    k = 0
    while True:
        last_day = (months + k + 1).astype("datetime64[D]").astype(np.int64) - 1  # last day of month m + k
        room = last_day - days
        p = float(np.dot(w, np.where(room >= cdf.size - 1, 1.0, cdf[np.clip(room, 0, cdf.size - 1)])))
        out.append(min(round(p, 6), 1.0))
        if out[-1] >= 1.0:
            return out
        k += 1


def declaration_lag_truth(first_year: int, as_of: date, service_days: dict[str, np.ndarray], *, withheld: bool) -> dict:
    """The ``declaration_lag`` entry of ``truth.json``: per claim table the parameters and the
    probability of being declared within k development months, for a line (``within_months[k]``)
    and for a cent (``within_months_cents[k]``). ``service_days[table]``: the deliverable lines (row
    0) and cents (row 1) per day from 1 January of ``first_year`` (a table without lines is weighted
    uniformly over the days up to ``as_of``). ``withheld``: lines declared after data_as_of are left
    out of the delivery (the default); a ``--clean`` delivery instead dates them data_as_of, so its
    latest declaration month holds every later declaration and a run-out estimate on it finds
    nothing to complete."""
    first_day = day(date(first_year, 1, 1))
    n_days = day(as_of) - first_day + 1
    out = {}
    for table, column in SERVICE_DATE.items():
        params = DECLARATION_LAG["hospital" if table == "dbc" else "first_line"]
        per_day = np.asarray(service_days.get(table, np.zeros((2, 0))), dtype=np.float64)
        lines = int(per_day[0].sum()) if per_day.size else 0
        cents = int(per_day[1].sum()) if per_day.size else 0
        uniform = np.ones(n_days)
        out[table] = {
            "lag_from": column,
            "lag_days": "min(round(X), cap_days) + offset_days; X ~ lognormal(median_days, sigma), or with "
            "probability slow_share lognormal(slow_median_days, slow_sigma)",
            "parameters": dict(params),
            "within_months": development_month_cdf(params, first_day, per_day[0] if lines else uniform),
            "within_months_cents": development_month_cdf(params, first_day, per_day[1] if cents > 0 else uniform),
            "within_months_means": "P(calendar month of declared_on - calendar month of the service date <= k), "
            "k = 0, 1, ... (1 from the last entry on), over the service days of the lines "
            "the generator made deliverable, each line once (within_months) or weighted by "
            "its cents (within_months_cents); uniform over the days when there are none",
            "lines": lines,
            "cents": cents,
            "late_lines": "withheld" if withheld else "dated data_as_of",
        }
    return out


__all__ = ["SERVICE_DATE", "declaration_lag_truth", "development_month_cdf", "lag_days_cdf"]
