"""Observed / expected per cell, funnel limits with overdispersion, empirical-Bayes shrinkage
(docs/panels-spec.md section 1, "Provider benchmark"). Pure functions over polars frames; no I/O.

Two steps:

1. :func:`cells` -- episodes (one row each, with the observed ``y`` and the case-mix model's expected
   ``yhat``) to one row per cell (e.g. provider x year x cost basis).
2. :func:`funnel` -- per comparison group of cells (e.g. bundle x year x cost basis: all providers
   compared with each other) the funnel limits around the target ``oe = 1``, the overdispersion
   ``phi`` and ``tau2``, the outlier flag and the shrunk O/E.

``kind="cost"`` for a cost (``y`` in cents, ``yhat`` from the Poisson model, >= 0); ``kind="binary"``
for a binary outcome (``y`` Boolean or 0/1, ``yhat`` the expected probability, in [0, 1]). A null
``y`` or ``yhat``, a negative expected cost or a probability outside [0, 1] is an error: the caller
decides which episodes count, nothing is dropped silently here. An expected value of 0 (a degenerate
case-mix model of a bundle without any cost or event predicts its overall mean, 0) is allowed: a cell
whose expected total is 0 has a null ``oe`` and no limits, and an episode with ``yhat = 0`` is left
out of the pooled coefficient of variation. Observed costs are used as they are (a negative episode
cost after credits counts; only the model's fit clips at 0).

Columns of :func:`cells` (besides the ``by`` columns):

===================  ================================================================================
``n``                episodes in the cell
``observed``         ``sum(y)`` (exact integer cents for costs; the number of events for a binary outcome)
``expected``         ``sum(yhat)``
``oe``               ``observed / expected`` (indirect standardisation; null when ``expected = 0``)
``se_oe``            ``sqrt(sum((y - yhat)^2)) / sum(yhat)``: standard error of ``oe`` from the residuals
``oe_ci95_low``      ``oe - 1.96 * se_oe``
``oe_ci95_high``     ``oe + 1.96 * se_oe``
``ratio_n``          cost: episodes with ``yhat > 0`` (those in the pooled coefficient of variation)
``ratio_sum``        cost: ``sum(y / yhat)`` (for the group's pooled coefficient of variation)
``ratio_sq_sum``     cost: ``sum((y / yhat)^2)``
``observed_rate``    binary: ``observed / n``
``expected_rate``    binary: ``expected / n``
``binomial_var_sum`` binary: ``sum(yhat * (1 - yhat))`` (the binomial variance of ``observed`` under the model)
===================  ================================================================================

Columns :func:`funnel` adds (``group`` = the comparison group's columns; group values repeat on
every cell of the group):

=============================  =====================================================================
``cv_pooled``                  cost, per group: the pooled coefficient of variation ``s`` of the
                               episode ratios ``r = y / yhat`` over all episodes of the group's
                               cells: ``sd(r) / mean(r)``, ``sd`` with ``N - 1`` (N episodes;
                               computed from the cells' ``ratio_n``, ``ratio_sum``, ``ratio_sq_sum``)
``se0``                        the cell's standard error of ``oe`` under the target (null model):
                               cost ``s / sqrt(n)``; binary ``sqrt(sum(p (1 - p))) / sum(p)``
``z``                          ``(oe - 1) / se0``
``z_winsorised``               ``z`` clamped to the group's 10th and 90th percentiles (linear
                               interpolation, R's type 7, as ``quantile()`` in FunnelPlotR)
``phi``                        per group: ``mean(z_winsorised^2)`` over the group's cells
``tau2``                       per group: between-cell variance, DerSimonian-Laird as FunnelPlotR;
                               0 when ``phi <= 1``
``overdispersed``              per group: ``phi > 1``
``group_cells``                per group: cells with a ``z`` (those entering ``phi`` and ``tau2``)
``limit95_low/high``           ``1 -/+ 1.96 * se0``
``limit998_low/high``          ``1 -/+ 3.0902 * se0`` (z = ``scipy.stats.norm.ppf(0.999)``)
``limit95_mult_low/high``      multiplicative overdispersion: ``1 -/+ 1.96 * se0 * sqrt(phi)`` when
                               ``phi > 1``, else the unadjusted limits
``limit998_mult_low/high``     the same at 99.8%
``limit95_adj_low/high``       additive random effects: ``1 -/+ 1.96 * sqrt(se0^2 + tau2)`` when
                               ``phi > 1``, else the unadjusted limits
``limit998_adj_low/high``      the same at 99.8%
``outlier``                    ``"high"`` / ``"low"`` when ``oe`` is above / below the 99.8%
                               additive random-effects limits (``limit998_adj_*``), else null
``shrinkage_weight``           ``tau2 / (tau2 + se_oe^2)`` (1 when ``se_oe = 0``: the cell's O/E is exact)
``oe_shrunk``                  empirical Bayes: ``1 + (oe - 1) * shrinkage_weight``
=============================  =====================================================================

The overdispersion follows Spiegelhalter (2005) as implemented in FunnelPlotR
(github.com/nhs-r-community/FunnelPlotR, ``R/od_adjustment.R`` at commit 9020d49: ``winsorisation``,
``phi_func``, ``tau_func``)::

    phi  = (1 / n) * sum(Wz^2)
    tau2 = 0                                              if n * phi < n - 1
         = max(0, (n * phi - (n - 1)) / (sum(w) - sum(w^2) / sum(w)))   otherwise,  w = 1 / S^2

with ``n`` the number of cells with a z-score and ``S`` the cell's null standard error. FunnelPlotR
works on a transformed scale for ratios (log for "SHMI", square root for "CQC", arcsine-square-root for
proportions), where ``S`` is ``1 / sqrt(expected)`` or ``1 / (2 sqrt(expected))`` and the limits are
transformed back. We keep its formulas for ``phi`` and ``tau2`` but apply them on the natural O/E
scale with ``S = se0`` as defined above, because docs/panels-spec.md gives the z-scores, the limits
``1 +/- z * sqrt(se0^2 + tau2)`` and the shrinkage all on that scale, and because our costs are not
counts (a Poisson ``1 / sqrt(expected)`` in cents would be meaningless). Where FunnelPlotR would give
a small positive ``tau2`` with ``(n - 1) / n <= phi <= 1``, docs/panels-spec.md's rule (no adjustment without
overdispersion) wins: ``tau2 = 0``. The outlier flag uses the additive random-effects limits, the ones
``tau2`` (and the shrinkage) belong to and the default of FunnelPlotR for ratios; the multiplicative
ones are published alongside. A group with a single cell has no between-cell variance: ``tau2 = 0``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import polars as pl
from scipy.stats import norm

Kind = Literal["cost", "binary"]

#: z of the 95% limits and confidence interval (docs/panels-spec.md: 1.96).
Z95 = 1.96
#: z of the 99.8% limits: ``scipy.stats.norm.ppf(0.999)`` = 3.090232...
Z998 = float(norm.ppf(0.999))
#: Share winsorised at each end of the group's z-scores.
WINSORISE = 0.1

_GROUP = "__funnel_group"


def _check_kind(kind: str) -> None:
    if kind not in ("cost", "binary"):
        raise ValueError(f"kind must be 'cost' or 'binary', not {kind!r}")


def cells(episodes: pl.DataFrame, by: Sequence[str], y: str, yhat: str, kind: Kind) -> pl.DataFrame:
    """One row per value of ``by`` (sorted by it) with the columns listed in the module docstring."""
    _check_kind(kind)
    by = list(by)
    missing = [c for c in [*by, y, yhat] if c not in episodes.columns]
    if missing:
        raise ValueError(f"cells: episodes have no column(s) {missing}")
    nulls = episodes.select(pl.col(y).null_count(), pl.col(yhat).null_count()).row(0)
    if any(nulls):
        raise ValueError(f"cells: {nulls[0]} null {y!r} and {nulls[1]} null {yhat!r}; filter the episodes first")
    obs = pl.col(y).cast(pl.Int64) if episodes.schema[y] == pl.Boolean else pl.col(y)
    pred = pl.col(yhat).cast(pl.Float64)
    if kind == "cost":
        bad = episodes.filter(pred < 0).height
        if bad:
            raise ValueError(f"cells: {bad} episodes with a negative expected cost {yhat!r}")
    else:
        bad = episodes.filter((pred < 0) | (pred > 1)).height
        if bad:
            raise ValueError(f"cells: {bad} episodes with expected probability {yhat!r} outside [0, 1]")
        values = episodes.select(obs.unique()).to_series().to_list()
        if not set(values) <= {0, 1}:
            raise ValueError(f"cells: binary outcome {y!r} has values {sorted(values)}")
    aggs = [
        pl.len().cast(pl.Int64).alias("n"),
        obs.sum().alias("observed"),
        pred.sum().alias("expected"),
        ((obs.cast(pl.Float64) - pred) ** 2).sum().sqrt().alias("_resid"),
    ]
    if kind == "cost":
        ratio = pl.when(pred > 0).then(obs.cast(pl.Float64) / pred)
        aggs += [
            ratio.count().cast(pl.Int64).alias("ratio_n"),
            ratio.sum().alias("ratio_sum"),
            (ratio**2).sum().alias("ratio_sq_sum"),
        ]
    else:
        aggs += [(pred * (1 - pred)).sum().alias("binomial_var_sum")]
    out = episodes.group_by(by).agg(aggs).sort(by) if by else episodes.select(aggs)
    positive = pl.col("expected") > 0
    out = out.with_columns(
        pl.when(positive).then(pl.col("observed").cast(pl.Float64) / pl.col("expected")).alias("oe"),
        pl.when(positive).then(pl.col("_resid") / pl.col("expected")).alias("se_oe"),
    ).drop("_resid")
    out = out.with_columns(
        (pl.col("oe") - Z95 * pl.col("se_oe")).alias("oe_ci95_low"),
        (pl.col("oe") + Z95 * pl.col("se_oe")).alias("oe_ci95_high"),
    )
    if kind == "binary":
        out = out.with_columns(
            (pl.col("observed") / pl.col("n")).alias("observed_rate"),
            (pl.col("expected") / pl.col("n")).alias("expected_rate"),
        )
    first = [*by, "n", "observed", "expected", "oe", "se_oe", "oe_ci95_low", "oe_ci95_high"]
    return out.select(first + [c for c in out.columns if c not in first])


def funnel(cells: pl.DataFrame, group: Sequence[str], kind: Kind, *, winsorise: float = WINSORISE) -> pl.DataFrame:
    """Add the funnel columns of the module docstring to ``cells`` (the output of :func:`cells`),
    computed within each comparison group of ``group`` columns (empty: all cells are one group).
    Row order is kept."""
    _check_kind(kind)
    if not 0 <= winsorise < 0.5:
        raise ValueError(f"winsorise must be in [0, 0.5), not {winsorise}")
    group = list(group)
    needed = ["n", "oe", "se_oe", "expected"] + (
        ["ratio_n", "ratio_sum", "ratio_sq_sum"] if kind == "cost" else ["binomial_var_sum"]
    )
    missing = [c for c in needed + group if c not in cells.columns]
    if missing:
        raise ValueError(f"funnel: cells have no column(s) {missing} (made by cells(..., kind={kind!r})?)")
    frame = cells if group else cells.with_columns(pl.lit(0).alias(_GROUP))
    over = group or [_GROUP]

    def per_group(expr: pl.Expr) -> pl.Expr:
        return expr.over(over)

    if kind == "cost":
        total_n = per_group(pl.col("ratio_n").sum()).cast(pl.Float64)
        s1 = per_group(pl.col("ratio_sum").sum())
        s2 = per_group(pl.col("ratio_sq_sum").sum())
        var = ((s2 - s1**2 / total_n) / (total_n - 1)).clip(lower_bound=0.0)
        frame = frame.with_columns(pl.when(total_n > 1).then(var.sqrt() / (s1 / total_n)).alias("cv_pooled"))
        se0 = pl.col("cv_pooled") / pl.col("n").cast(pl.Float64).sqrt()
    else:
        se0 = pl.col("binomial_var_sum").sqrt() / pl.col("expected")
    frame = frame.with_columns(pl.when(se0.is_finite()).then(se0).alias("se0"))
    valid = (pl.col("se0") > 0) & pl.col("se0").is_finite() & pl.col("oe").is_not_null() & pl.col("oe").is_finite()
    frame = frame.with_columns(pl.when(valid).then((pl.col("oe") - 1) / pl.col("se0")).alias("z"))
    low = per_group(pl.col("z").quantile(winsorise, interpolation="linear"))
    high = per_group(pl.col("z").quantile(1 - winsorise, interpolation="linear"))
    frame = frame.with_columns(pl.col("z").clip(low, high).alias("z_winsorised"))
    k = per_group(pl.col("z").count()).cast(pl.Float64)
    frame = frame.with_columns(
        per_group((pl.col("z_winsorised") ** 2).mean()).alias("phi"), k.cast(pl.Int64).alias("group_cells")
    )
    w = pl.when(pl.col("z").is_not_null()).then(1 / pl.col("se0") ** 2)
    sw = per_group(w.sum())
    sw2 = per_group((w**2).sum())
    denominator = sw - sw2 / sw
    numerator = k * pl.col("phi") - (k - 1)
    frame = frame.with_columns(
        pl.when((pl.col("phi") > 1) & (numerator >= 0) & (denominator > 0))
        .then(pl.max_horizontal(numerator / denominator, pl.lit(0.0)))
        .otherwise(0.0)
        .alias("tau2"),
        (pl.col("phi") > 1).fill_null(False).alias("overdispersed"),
    )

    phi_factor = pl.when(pl.col("overdispersed")).then(pl.col("phi").sqrt()).otherwise(1.0)
    additive = (pl.col("se0") ** 2 + pl.col("tau2")).sqrt()
    limits = []
    for label, z in (("95", Z95), ("998", Z998)):
        limits += [
            (1 - z * pl.col("se0")).alias(f"limit{label}_low"),
            (1 + z * pl.col("se0")).alias(f"limit{label}_high"),
            (1 - z * pl.col("se0") * phi_factor).alias(f"limit{label}_mult_low"),
            (1 + z * pl.col("se0") * phi_factor).alias(f"limit{label}_mult_high"),
            (1 - z * additive).alias(f"limit{label}_adj_low"),
            (1 + z * additive).alias(f"limit{label}_adj_high"),
        ]
    frame = frame.with_columns(limits)
    weight = pl.when(pl.col("se_oe") == 0).then(1.0).otherwise(pl.col("tau2") / (pl.col("tau2") + pl.col("se_oe") ** 2))
    frame = frame.with_columns(
        pl.when(pl.col("oe") > pl.col("limit998_adj_high"))
        .then(pl.lit("high"))
        .when(pl.col("oe") < pl.col("limit998_adj_low"))
        .then(pl.lit("low"))
        .otherwise(pl.lit(None, dtype=pl.String))
        .alias("outlier"),
        weight.alias("shrinkage_weight"),
    )
    frame = frame.with_columns((1 + (pl.col("oe") - 1) * pl.col("shrinkage_weight")).alias("oe_shrunk"))
    return frame.drop(_GROUP) if not group else frame


def benchmark_cells(
    episodes: pl.DataFrame, by: Sequence[str], group: Sequence[str], y: str, yhat: str, kind: Kind
) -> pl.DataFrame:
    """:func:`cells` then :func:`funnel`: ``group`` must be a subset of ``by`` (the cells of one
    comparison group are compared with each other)."""
    extra = [g for g in group if g not in by]
    if extra:
        raise ValueError(f"group columns {extra} are not among the cell columns {list(by)}")
    return funnel(cells(episodes, by, y, yhat, kind), group, kind)
