"""Chain-ladder on a declaration triangle (``transforms.maturity.triangle.build_triangle``): development
factors, completion per service month, completion per service year and quarter.

With ``C(m, k)`` the cumulative lines (or cents) of service month ``m`` declared within ``k``
development months, and ``r(m)`` its months of run-out (the oldest observed age):

- the **development factor** of age ``k`` is volume weighted, over the service months that have both
  ages observed (``r(m) >= k + 1``): ``f_k = sum_m C(m, k + 1) / sum_m C(m, k)``;
- it is **estimated** when at least ``min_service_months`` service months have both ages and
  ``sum_m C(m, k) > 0``; otherwise (the oldest ages, seen in only a few service months) it is taken as
  1: the **tail factor is 1**, i.e. what has not developed by the last age with enough data is
  assumed complete. The number of service months with both ages falls with ``k``, so the estimated
  ages are 0 .. K and every later age has factor 1;
- the **cumulative factor** from age ``k`` to ultimate is ``F_k = f_k x f_(k+1) x ...`` (the
  product of the remaining factors), the **completion** at age ``k`` is ``1 / F_k``;
- a service month with run-out ``r`` has completion ``1 / F_r``, estimated ultimate
  ``C(m, r) x F_r``, and is **mature** when its completion in lines and in cents both reach
  ``mature_at`` (0.95 by default);
- a **period** (service year or quarter) has completion ``sum of observed / sum of estimated ultimate``
  over its service months (so a period is only as complete as its recent months make it), null when
  it has nothing; it is mature when both completions reach ``mature_at``.

Everything is computed from integer sums in a fixed order, so the same triangle gives the same
floats, bit for bit.
"""

from __future__ import annotations

import polars as pl

MEASURES = {"lines": "cumulative_lines", "cents": "cumulative_cents"}
DEFAULT_MATURE_AT = 0.95
DEFAULT_MIN_SERVICE_MONTHS = 6

FACTORS = {
    "measure": pl.String,
    "development_age": pl.Int32,
    "factor": pl.Float64,
    "n_service_months": pl.Int32,
    "estimated": pl.Boolean,
    "cumulative_factor": pl.Float64,
    "completion": pl.Float64,
}


def development_factors(triangle: pl.DataFrame, min_service_months: int = DEFAULT_MIN_SERVICE_MONTHS) -> pl.DataFrame:
    """One row per measure and development age 0 .. the oldest observed age: ``factor`` (to the next
    age), ``n_service_months`` (with both ages observed), ``estimated``, ``cumulative_factor`` (to
    ultimate) and ``completion``."""
    if triangle.height == 0:
        return pl.DataFrame(schema=FACTORS)
    oldest = int(triangle["development_month"].max())
    runout = triangle.group_by("service_month").agg(pl.col("development_month").max().alias("runout"))
    tri = triangle.join(runout, on="service_month")
    # pairs (m, k) -> (m, k + 1), for the service months observed at k + 1
    now = tri.filter(pl.col("development_month") < pl.col("runout"))
    nxt = tri.select(
        "service_month",
        (pl.col("development_month") - 1).alias("development_month"),
        *[pl.col(c).alias(f"{c}_next") for c in MEASURES.values()],
    )
    pairs = now.join(nxt, on=["service_month", "development_month"])
    sums = pairs.group_by("development_month").agg(
        pl.len().alias("n"),
        *[pl.col(c).sum().alias(f"{c}_sum") for c in MEASURES.values()],
        *[pl.col(f"{c}_next").sum().alias(f"{c}_next_sum") for c in MEASURES.values()],
    )
    by_age = {row["development_month"]: row for row in sums.iter_rows(named=True)}
    rows = []
    for measure, column in MEASURES.items():
        factors: list[tuple[float, int, bool]] = []
        for age in range(oldest + 1):
            row = by_age.get(age)
            n = int(row["n"]) if row else 0
            base = int(row[f"{column}_sum"]) if row else 0
            if n >= min_service_months and base > 0:
                factors.append((int(row[f"{column}_next_sum"]) / base, n, True))
            else:
                factors.append((1.0, n, False))
        # once an age falls short, every later age does too (fewer service months); keep it explicit
        first_short = next((i for i, f in enumerate(factors) if not f[2]), len(factors))
        factors = [f if i < first_short else (1.0, f[1], False) for i, f in enumerate(factors)]
        cumulative = [1.0] * (oldest + 2)
        for age in range(oldest, -1, -1):
            cumulative[age] = factors[age][0] * cumulative[age + 1]
        for age, (factor, n, estimated) in enumerate(factors):
            rows.append(
                {
                    "measure": measure,
                    "development_age": age,
                    "factor": factor,
                    "n_service_months": n,
                    "estimated": estimated,
                    "cumulative_factor": cumulative[age],
                    "completion": 1.0 / cumulative[age],
                }
            )
    return pl.DataFrame(rows, schema=FACTORS)


def completion(triangle: pl.DataFrame, factors: pl.DataFrame, mature_at: float = DEFAULT_MATURE_AT) -> pl.DataFrame:
    """One row per service month: ``runout_months``, observed ``lines`` / ``cents`` to date, their
    cumulative factors, completion and estimated ultimate, ``mature``."""
    latest = (
        triangle.sort("service_month", "development_month")
        .group_by("service_month", maintain_order=True)
        .last()
        .select(
            "service_month",
            pl.col("development_month").alias("runout_months"),
            pl.col("cumulative_lines").alias("lines"),
            pl.col("cumulative_cents").alias("cents"),
        )
    )
    out = latest
    for measure in MEASURES:
        cdf = factors.filter(pl.col("measure") == measure).select(
            pl.col("development_age").alias("runout_months"),
            pl.col("cumulative_factor").alias(f"cumulative_factor_{measure}"),
            pl.col("completion").alias(f"completion_{measure}"),
        )
        out = out.join(cdf, on="runout_months", how="left").with_columns(
            (pl.col(measure).cast(pl.Float64) * pl.col(f"cumulative_factor_{measure}")).alias(f"ultimate_{measure}")
        )
    return out.with_columns(
        ((pl.col("completion_lines") >= mature_at) & (pl.col("completion_cents") >= mature_at)).alias("mature")
    ).sort("service_month")


PERIODS = {
    "period_kind": pl.String,
    "period": pl.String,
    "n_service_months": pl.Int32,
    "first_service_month": pl.Int32,
    "last_service_month": pl.Int32,
    "runout_months": pl.Int32,
    "lines": pl.Int64,
    "cents": pl.Int64,
    "ultimate_lines": pl.Float64,
    "ultimate_cents": pl.Float64,
    "completion_lines": pl.Float64,
    "completion_cents": pl.Float64,
    "mature": pl.Boolean,
}


def period_of(kind: str, month: int) -> str:
    """``2019`` (year) or ``2019-Q3`` (quarter) of an integer month."""
    year = month // 12
    return str(year) if kind == "year" else f"{year}-Q{month % 12 // 3 + 1}"


def completion_by_period(months: pl.DataFrame, mature_at: float = DEFAULT_MATURE_AT) -> pl.DataFrame:
    """Per service year and quarter (``period_kind`` ``year`` / ``quarter``; ``period`` ``2019`` /
    ``2019-Q3``) from :func:`completion`: its service months, the run-out of its last month, observed
    and estimated ultimate lines and cents, completion (observed / ultimate) and ``mature``. Summed
    in service-month order in Python (a few hundred rows), so the floats do not depend on threads."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in months.sort("service_month").iter_rows(named=True):
        for kind in ("year", "quarter"):
            groups.setdefault((kind, period_of(kind, row["service_month"])), []).append(row)
    rows = []
    for (kind, period), members in sorted(groups.items()):
        out = {
            "period_kind": kind,
            "period": period,
            "n_service_months": len(members),
            "first_service_month": members[0]["service_month"],
            "last_service_month": members[-1]["service_month"],
            "runout_months": min(r["runout_months"] for r in members),
        }
        for measure in MEASURES:
            observed = sum(int(r[measure]) for r in members)
            ultimate = 0.0
            for r in members:
                ultimate += r[f"ultimate_{measure}"]
            out[measure] = observed
            out[f"ultimate_{measure}"] = ultimate
            out[f"completion_{measure}"] = observed / ultimate if ultimate > 0 else None
        out["mature"] = all(
            out[f"completion_{m}"] is not None and out[f"completion_{m}"] >= mature_at for m in MEASURES
        )
        rows.append(out)
    return pl.DataFrame(rows, schema=PERIODS)


__all__ = [
    "DEFAULT_MATURE_AT",
    "DEFAULT_MIN_SERVICE_MONTHS",
    "MEASURES",
    "completion",
    "completion_by_period",
    "development_factors",
    "period_of",
]
