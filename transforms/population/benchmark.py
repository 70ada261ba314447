"""Population benchmarks for a shared-savings contract on an enrolled population (``docs/panels-spec.md`` section 4).

The outcome is total Zvw spending (every claim table, net of corrections, by service date) per
attributed insured per quarter, zero for an attributed insured without claims. The enrolled
population of a quarter is the insured attributed to its practices that quarter; its comparison
insured are every other attributed insured. Five benchmarks of what the population would have
cost:

- ``national``: the mean of every comparison insured;
- ``regional``: the mean of the comparison insured of practices in the population's region (the
  province of most of its practices);
- ``regional_capped_p95``: the same, with every insured-quarter (of the population and of the region)
  capped at the region's 95th percentile of that quarter, so the costliest 5% weigh no more than it;
- ``casemix``: indirect standardisation by age class and sex against the real Vektis costs per
  insured-year of that year (the categories the claim tables cover), scaled by the data's national
  observed / expected, so a population's older or younger make-up is expected, not saved;
- ``regional_casemix_capped`` (a choice none of the source documents tried): the region's own capped
  cost per insured-quarter in each age class x sex, applied to the population's make-up -- the region's
  price and practice level, the population's case mix, and no tail.

For each benchmark and quarter: the gap (population minus benchmark, per insured per quarter:
negative = savings), its 95% band, and the **savings threshold**: the yearly euros a true saving must
exceed to leave the band (1.96 x the gap's standard error x the population x 4). The **placebo**
takes the quarters before the contract start (COVID years 2020-2021 left out by default): no
contract acted then, so any gap is spurious: a benchmark is ``spurious`` when more pre-period
quarters have a band that misses 0 than chance gives (1 in 20), and ``systematic`` when the band of
its mean pre-period gap (from the quarter-to-quarter spread) misses 0 -- a bias too small to show in
a quarter that a settlement would still pay every year (``spurious_euros_per_year``).
"""

from __future__ import annotations

import polars as pl

BENCHMARKS = ("national", "regional", "regional_capped_p95", "casemix", "regional_casemix_capped")
Z95 = 1.959963984540054
DEFAULT_CAP_PCT = 95.0
DEFAULT_EXCLUDED_YEARS = (2020, 2021)
AGE_CLASSES = 19  # 0-4, 5-9, ..., 85-89, 90+ (as Vektis)


def age_class_min(age: pl.Expr) -> pl.Expr:
    """The lower bound of the Vektis age class of an age (0, 5, ..., 90)."""
    return (pl.min_horizontal(age.clip(lower_bound=0) // 5, pl.lit(AGE_CLASSES - 1)) * 5).cast(pl.Int16)


def _moments(values: pl.Expr, prefix: str) -> list[pl.Expr]:
    return [
        values.len().alias(f"{prefix}_n"),
        values.mean().alias(f"{prefix}_mean"),
        values.var(ddof=1).alias(f"{prefix}_var"),
    ]


def quarter_benchmarks(cells: pl.DataFrame, *, cap_pct: float = DEFAULT_CAP_PCT) -> pl.DataFrame:
    """Per quarter and benchmark: the population's insured and mean, the benchmark, the gap with its
    standard error, band and yearly savings threshold.

    ``cells``: one row per attributed insured-quarter with ``year``, ``quarter``, ``cents`` (spending),
    ``in_population``, ``in_region`` (its practice is in the population's region), ``expected_cents``
    (its Vektis age x sex cost per insured-quarter) and ``age_min``, ``sex``."""
    keys = ["year", "quarter"]
    cap = (
        cells.filter(pl.col("in_region") & ~pl.col("in_population"))
        .group_by(keys)
        .agg(pl.col("cents").quantile(cap_pct / 100, interpolation="linear").alias("cap"))
    )
    frame = cells.join(cap, on=keys, how="left").with_columns(
        pl.min_horizontal("cents", pl.col("cap").fill_null(float("inf"))).alias("capped")
    )
    population = frame.filter(pl.col("in_population"))
    comparison = frame.filter(~pl.col("in_population"))
    region = comparison.filter(pl.col("in_region"))

    pop = population.group_by(keys).agg(
        *_moments(pl.col("cents"), "pop"),
        *_moments(pl.col("capped"), "popc"),
        pl.col("expected_cents").mean().alias("pop_expected"),
    )
    rows = []
    national = comparison.group_by(keys).agg(*_moments(pl.col("cents"), "b"))
    rows.append(_two_means(pop, national, "national", "pop"))
    rows.append(_two_means(pop, region.group_by(keys).agg(*_moments(pl.col("cents"), "b")), "regional", "pop"))
    rows.append(
        _two_means(pop, region.group_by(keys).agg(*_moments(pl.col("capped"), "b")), "regional_capped_p95", "popc")
    )
    rows.append(_casemix(population, comparison, keys))
    rows.append(_regional_casemix(population, region, keys))
    out = pl.concat(rows, how="vertical_relaxed")
    return out.with_columns(
        (pl.col("gap_cents") - Z95 * pl.col("se_cents")).alias("band_low_cents"),
        (pl.col("gap_cents") + Z95 * pl.col("se_cents")).alias("band_high_cents"),
        (Z95 * pl.col("se_cents") * pl.col("population_insured") * 4 / 100).alias("threshold_euros_per_year"),
    ).sort("benchmark", "year", "quarter")


def _two_means(pop: pl.DataFrame, bench: pl.DataFrame, name: str, own: str) -> pl.DataFrame:
    joined = pop.join(bench, on=["year", "quarter"], how="left")
    return joined.select(
        "year",
        "quarter",
        pl.lit(name).alias("benchmark"),
        pl.col("pop_n").alias("population_insured"),
        pl.col(f"{own}_mean").alias("population_cents"),
        pl.col("b_n").alias("benchmark_insured"),
        pl.col("b_mean").alias("benchmark_cents"),
        (pl.col(f"{own}_mean") - pl.col("b_mean")).alias("gap_cents"),
        (pl.col(f"{own}_var") / pl.col("pop_n") + pl.col("b_var") / pl.col("b_n")).sqrt().alias("se_cents"),
    )


def _casemix(population: pl.DataFrame, comparison: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    """gap = mean_P(c) - k mean_P(e) with k = sum_C c / sum_C e (the data's national O/E against
    Vektis); its variance: var_P(c - k e) / n_P + mean_P(e)^2 var(k), var(k) ~ var_C(c - k e) / (n_C mean_C(e)^2)."""
    k = comparison.group_by(keys).agg(
        (pl.col("cents").sum() / pl.col("expected_cents").sum()).alias("k"),
        pl.len().alias("b_n"),
        pl.col("expected_cents").mean().alias("b_e"),
    )
    comp = (
        comparison.join(k, on=keys)
        .group_by(keys)
        .agg((pl.col("cents") - pl.col("k") * pl.col("expected_cents")).var(ddof=1).alias("b_resid_var"))
    )
    pop = (
        population.join(k, on=keys)
        .group_by(keys)
        .agg(
            pl.len().alias("population_insured"),
            pl.col("cents").mean().alias("population_cents"),
            (pl.col("k").first() * pl.col("expected_cents").mean()).alias("benchmark_cents"),
            pl.col("expected_cents").mean().alias("pop_e"),
            (pl.col("cents") - pl.col("k") * pl.col("expected_cents")).var(ddof=1).alias("pop_resid_var"),
        )
    )
    joined = pop.join(k, on=keys).join(comp, on=keys)
    var_k = pl.col("b_resid_var") / (pl.col("b_n") * pl.col("b_e") ** 2)
    return joined.select(
        *keys,
        pl.lit("casemix").alias("benchmark"),
        "population_insured",
        "population_cents",
        pl.col("b_n").alias("benchmark_insured"),
        "benchmark_cents",
        (pl.col("population_cents") - pl.col("benchmark_cents")).alias("gap_cents"),
        (pl.col("pop_resid_var") / pl.col("population_insured") + pl.col("pop_e") ** 2 * var_k)
        .sqrt()
        .alias("se_cents"),
    )


def _regional_casemix(population: pl.DataFrame, region: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    """The region's capped mean per age class x sex and quarter, weighted by the population's
    make-up; a population cell the region lacks gets the region's overall capped mean. Its
    variance: the population's capped variance plus the region's cell-mean variances, weighted."""
    cell_keys = [*keys, "age_min", "sex"]
    rates = region.group_by(cell_keys).agg(
        pl.col("capped").mean().alias("rate"), pl.len().alias("rn"), pl.col("capped").var(ddof=1).alias("rvar")
    )
    overall = region.group_by(keys).agg(
        pl.col("capped").mean().alias("overall"), pl.len().alias("b_n"), pl.col("capped").var(ddof=1).alias("ovar")
    )
    pop = (
        population.join(rates, on=cell_keys, how="left")
        .join(overall, on=keys, how="left")
        .with_columns(
            pl.col("rate").fill_null(pl.col("overall")),
            pl.when(pl.col("rn").is_null() | (pl.col("rn") < 2))
            .then(pl.col("ovar") / pl.col("b_n"))
            .otherwise(pl.col("rvar") / pl.col("rn"))
            .alias("rate_var"),
        )
    )
    cell_var = pop.group_by([*keys, "age_min", "sex"]).agg(pl.len().alias("m"), pl.col("rate_var").first())
    bench_var = cell_var.group_by(keys).agg(
        ((pl.col("m") ** 2) * pl.col("rate_var")).sum().alias("wv"), pl.col("m").sum().alias("mtot")
    )
    summary = pop.group_by(keys).agg(
        pl.len().alias("population_insured"),
        pl.col("capped").mean().alias("population_cents"),
        pl.col("rate").mean().alias("benchmark_cents"),
        pl.col("capped").var(ddof=1).alias("pvar"),
        pl.col("b_n").first().alias("benchmark_insured"),
    )
    joined = summary.join(bench_var, on=keys)
    return joined.select(
        *keys,
        pl.lit("regional_casemix_capped").alias("benchmark"),
        "population_insured",
        "population_cents",
        "benchmark_insured",
        "benchmark_cents",
        (pl.col("population_cents") - pl.col("benchmark_cents")).alias("gap_cents"),
        (pl.col("pvar") / pl.col("population_insured") + pl.col("wv") / pl.col("mtot") ** 2).sqrt().alias("se_cents"),
    )


def placebo(
    quarters: pl.DataFrame,
    start_year: int,
    start_quarter: int = 1,
    *,
    excluded_years: tuple[int, ...] = DEFAULT_EXCLUDED_YEARS,
) -> pl.DataFrame:
    """Per benchmark over the pre-period quarters (before the start, excluded years left out): the
    mean gap per insured per quarter, its standard error from the quarter-to-quarter spread (which
    holds both the sampling noise and a benchmark's systematic drift), its 95% band, how many
    quarters' own bands miss 0, the spurious savings (-) or losses (+) a year in euros, the mean
    yearly threshold, ``spurious`` (more quarters outside their band than chance) and ``systematic``
    (the mean gap's band misses 0)."""
    pre = (
        quarters.filter(pl.col("period") == "pre")
        if "period" in quarters.columns
        else quarters.filter(
            ((pl.col("year") * 4 + pl.col("quarter")) < start_year * 4 + start_quarter)
            & ~pl.col("year").is_in(list(excluded_years))
        )
    )
    summary = pre.group_by("benchmark").agg(
        pl.len().alias("quarters"),
        pl.col("gap_cents").mean().alias("mean_gap_cents"),
        (pl.col("gap_cents").std(ddof=1) / pl.len().sqrt()).alias("se_mean_gap_cents"),
        ((pl.col("band_low_cents") > 0) | (pl.col("band_high_cents") < 0)).sum().alias("quarters_outside_band"),
        pl.col("population_insured").mean().alias("mean_population_insured"),
        pl.col("threshold_euros_per_year").mean().alias("mean_threshold_euros_per_year"),
    )
    summary = summary.with_columns(
        (pl.col("mean_gap_cents") - Z95 * pl.col("se_mean_gap_cents")).alias("band_low_cents"),
        (pl.col("mean_gap_cents") + Z95 * pl.col("se_mean_gap_cents")).alias("band_high_cents"),
        (pl.col("mean_gap_cents") * pl.col("mean_population_insured") * 4 / 100).alias("spurious_euros_per_year"),
    )
    chance = [_more_than_chance(k, n) for k, n in summary.select("quarters_outside_band", "quarters").iter_rows()]
    return summary.with_columns(
        pl.Series("spurious", chance, dtype=pl.Boolean),
        ((pl.col("band_low_cents") > 0) | (pl.col("band_high_cents") < 0)).alias("systematic"),
    ).sort("benchmark")


def _more_than_chance(outside: int, quarters: int) -> bool:
    """More pre-period quarters outside their 95% band than chance gives (one-sided binomial test
    at 5%: without a benchmark error 1 quarter in 20 misses 0)."""
    from scipy.stats import binomtest

    return quarters > 0 and binomtest(int(outside), int(quarters), 0.05, alternative="greater").pvalue < 0.05


def savings(quarters: pl.DataFrame) -> pl.DataFrame:
    """Per benchmark over the contract quarters: the mean gap (what a settlement on this benchmark
    pays: savings when negative) with its band, the savings in euros a year, and the same gap less the
    benchmark's mean pre-period gap (``pre_adjusted_gap_cents``: a difference in differences that
    removes what the placebo showed the benchmark gets wrong), with its band from both periods'
    quarter-to-quarter spreads."""

    def stats(period: str, prefix: str) -> pl.DataFrame:
        return (
            quarters.filter(pl.col("period") == period)
            .group_by("benchmark")
            .agg(
                pl.len().alias(f"{prefix}_quarters"),
                pl.col("gap_cents").mean().alias(f"{prefix}_gap_cents"),
                (pl.col("gap_cents").var(ddof=1) / pl.len()).alias(f"{prefix}_var"),
                pl.col("population_insured").mean().alias(f"{prefix}_insured"),
            )
        )

    joined = stats("contract", "contract").join(stats("pre", "pre"), on="benchmark", how="left")
    se = pl.col("contract_var").sqrt()
    se_adjusted = (pl.col("contract_var") + pl.col("pre_var")).sqrt()
    adjusted = pl.col("contract_gap_cents") - pl.col("pre_gap_cents")
    return joined.select(
        "benchmark",
        pl.col("contract_quarters").alias("quarters"),
        pl.col("contract_gap_cents").alias("gap_cents"),
        (pl.col("contract_gap_cents") - Z95 * se).alias("band_low_cents"),
        (pl.col("contract_gap_cents") + Z95 * se).alias("band_high_cents"),
        (-pl.col("contract_gap_cents") * pl.col("contract_insured") * 4 / 100).alias("savings_euros_per_year"),
        adjusted.alias("pre_adjusted_gap_cents"),
        (adjusted - Z95 * se_adjusted).alias("pre_adjusted_band_low_cents"),
        (adjusted + Z95 * se_adjusted).alias("pre_adjusted_band_high_cents"),
    ).sort("benchmark")


__all__ = [
    "BENCHMARKS",
    "DEFAULT_CAP_PCT",
    "DEFAULT_EXCLUDED_YEARS",
    "age_class_min",
    "placebo",
    "quarter_benchmarks",
    "savings",
]
