"""The case-mix model of a bundle (docs/panels-spec.md section 1): the expected in-bundle cost and the expected
rate of every binary outcome of an episode, from its patient's characteristics.

Models
------
- Costs (``in_bundle_cents`` for the declared basis, ``in_bundle_standardised_cents`` for the
  standardised one): Poisson pseudo-likelihood with a log link, ``E[y | x] = exp(x'b)``. It is
  consistent for the mean of any non-negative outcome whatever its distribution, and with an
  intercept its predictions add up to the observed total (indirect standardisation needs that).
  A negative episode cost (credits exceeding the declarations) is **clipped at 0 for the fit**; the
  number clipped is reported (``n_clipped``). Panels compare the unclipped observed cost with the
  expected one.
- Binary outcomes (every Boolean outcome of the bundle, :func:`model_targets`): logistic regression
  on the same covariates.

Design matrix (:func:`design`), in this order; ``names`` gives the columns kept:

============================  ===================================================================
``intercept``                 1
``age_00_29`` ... ``age_80_plus``  age bands of ``age_at_anchor``: 0-29, 30-39, 40-49, 50-59, 60-69,
                              [70-79 = reference, left out], 80+. The young bands are for birth care
                              (mothers of 15-50); in an adult bundle they are empty and dropped. In
                              birth care the reference band is empty instead, so the last band with
                              episodes is collinear with the intercept, is dropped, and becomes the
                              reference. A null age counts as the reference band.
``sex_v``                     1 for ``sex == "V"``; M, null or anything else 0
diabetes ... cancer           the ten chronic-condition flags (null = 0: nothing dispensed)
``n_chronic_conditions``      the count (null: the number of flags set). It *is* the sum of the flags
                              (episode rule 8), so it is collinear with them and is dropped as such
                              whenever that holds; its non-linear part enters as the next two:
``chronic_2``                 1 when exactly two conditions
``chronic_3plus``             1 when three or more
``log1p_prior_year_eur``      ``log(1 + prior_year_standardised_cents / 100)``; null or negative -> 0
``year_<y>``                  anchor year ``y`` for every year of ``years`` but the first (reference)
============================  ===================================================================

Columns that carry no information are dropped, in this deterministic order of checks over the whole
data of the fit (so a band without episodes, e.g. ages 70-79 in birth care, cannot make the matrix
singular): all zero; constant (aliases the intercept); a linear combination of the columns before it
(Gram-Schmidt on ``X'X`` in the order above, relative residual below ``1e-9``). A logistic model also
drops a 0/1 column whose episodes with the value 1 (or 0) all have the same outcome
(quasi-separation: the maximum-likelihood coefficient would be infinite), and a Poisson model a 0/1
column whose episodes with value 1 all cost 0. :attr:`FitResult.dropped` says which and why.

Fitting on the cluster (:func:`fit_on_dask`)
--------------------------------------------
One task per parquet file (files sorted by path) reads the episodes and builds that file's block of
the design matrix on a worker; the blocks stay there (futures) and become one ``dask.array`` with
``from_delayed`` and known shapes, one chunk per file. dask-ml's ``PoissonRegression`` /
``LogisticRegression`` fit it with ``solver="newton"``, which dask-glm runs **without a penalty**
(it passes neither regularizer nor lambda to Newton) and on **standardised columns** (dask-glm's
``normalize``: mean 0, sd 1, the intercept recovered afterwards). The cost target is divided by its
mean for the fit (the start ``b = 0`` then means ``mu = mean``) and the intercept is corrected by
``log(mean)``; unscaled cents make the first Newton steps overflow ("SVD did not converge").
Newton converges quadratically: ``tol=1e-10`` on the coefficient change (standardised scale), at
most 50 iterations, gives coefficients equal to an exact IRLS / statsmodels fit
to about 1e-11 relative (measured on generated bundles), far inside the 1e-4 acceptance. Each fit is
then *verified* in one more pass over the data on the cluster: the exact Newton step at the returned
coefficients (score solved against the Hessian) must be below ``1e-7`` on the standardised scale for
every column. When it is above ``1e-10``, damped Newton steps from there (halved while the deviance
rises, at most 25) polish the solution; when that fails too, dask-ml's L-BFGS without penalty
(``penalty=None``, ``tol=1e-6``, 50 iterations) is run from scratch and polished the same way
(L-BFGS alone stopped 3e-3 relative from the optimum on a cataract fit: too far for the
acceptance). If nothing passes, the result is marked not fitted with the reason.
:attr:`FitResult.solver` says what was used, :attr:`FitResult.max_step` the remaining step.

Determinism: files sorted by path, one chunk per file, Newton starts from zero (no random state),
and every sum this module takes over the data (``X'X``, the target total that scales it, score,
Hessian, deviance, expected values) is computed per block on the workers from aligned C-contiguous
copies and added up here in block order. That last point matters: a block fetched from another worker
can sit at an odd byte offset in its network buffer, and NumPy then computes ``X @ b`` without BLAS,
with other last bits; dask's own reductions inside dask-glm see that too, but Newton's last step
(below ``1e-10``) absorbs such differences. Measured: 20 fits in two clusters gave bit-identical
coefficients, deviance and calibration. Bit-identity holds for the same data, file set and hardware
(BLAS kernels are chosen per CPU); the L-BFGS fallback is reproducible only to about 1e-15 relative.

Degenerate cases never raise: fewer than ``min_episodes`` episodes (or no more episodes than
columns), all costs zero, or for a binary outcome fewer than ``min_events`` episodes with (or without)
the event -- a perfectly separated outcome, e.g. no complication at all, is the extreme of that --
give a :class:`FitResult` with ``fitted=False``, the ``reason``, and as prediction the overall mean
cost (or rate).

:func:`fit_local` is the single-process counterpart with the same result: an exact IRLS (Newton with
step halving) in numpy; :func:`fit_files` applies it to a bundle's episode files. A bundle's models
with fewer than ``CLUSTER_FIT_FROM`` episodes are fitted that way, on a cluster as one Dask task
each, and only larger ones with dask-ml (``transforms.panels.run.fit_casemix``).

Fit statistics: ``deviance`` (Poisson deviance in cents, binomial deviance), ``null_deviance`` (the
intercept-only model), ``pseudo_r2 = 1 - deviance / null_deviance`` (the deviance-based R2; for the
logistic model it equals McFadden's R2), and a calibration table per decile of expected.

This module imports Dask only inside :func:`fit_on_dask`.
"""

from __future__ import annotations

import dataclasses
import math
import operator
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import polars as pl

if TYPE_CHECKING:  # pragma: no cover
    from transforms.bundles import BundleDefinition

Kind = Literal["poisson", "logistic"]

#: The cost target per cost basis.
COST_TARGETS = {"declared": "in_bundle_cents", "standardised": "in_bundle_standardised_cents"}

#: Episode statuses a benchmark uses by default (docs/panels-spec.md section 1).
DEFAULT_STATUSES = ("complete", "death")

CHRONIC_FLAGS = (
    "diabetes",
    "obstructive_airway",
    "cardiovascular",
    "lipid",
    "anticoagulants",
    "depression",
    "psychosis",
    "epilepsy",
    "thyroid",
    "cancer",
)

#: Age bands (name, lowest age, highest age inclusive); ``AGE_REFERENCE`` is left out.
AGE_BANDS = (
    ("age_00_29", None, 29),
    ("age_30_39", 30, 39),
    ("age_40_49", 40, 49),
    ("age_50_59", 50, 59),
    ("age_60_69", 60, 69),
    ("age_70_79", 70, 79),
    ("age_80_plus", 80, None),
)
AGE_REFERENCE = "age_70_79"


MIN_EPISODES = 30
MIN_EVENTS = 10
NEWTON_TOL = 1e-10
NEWTON_MAX_ITER = 50
#: Largest accepted remaining Newton step (standardised scale) at the returned coefficients.
CONVERGED_STEP = 1e-7
#: Newton steps at most taken from a solver's coefficients while their remaining step is above
#: ``POLISH_STEP``.
POLISH_MAX_ITER = 25
POLISH_STEP = 1e-10
#: Relative residual below which a column counts as a combination of the columns before it.
COLLINEAR_TOL = 1e-9
#: Models with fewer episodes than this are fitted by exact IRLS in one process (:func:`fit_files`:
#: one Dask task on a cluster); models with at least this many with dask-ml across the cluster
#: (:func:`fit_on_dask`). A dask-ml fit spends seconds building graphs and waiting on scheduler
#: round trips whatever the data's size, and exact IRLS on one worker is far faster for any model whose
#: design matrix fits in its memory: a million episodes are about 0.3 GB of float64 columns.
CLUSTER_FIT_FROM = 1_000_000


# ----------------------------------------------------------------------------------------- design


def candidate_columns(years: Sequence[int]) -> list[str]:
    """Every column :func:`design` can produce, in order, before dropping."""
    years = _check_years(years)
    return (
        ["intercept"]
        + [name for name, _, _ in AGE_BANDS if name != AGE_REFERENCE]
        + ["sex_v"]
        + list(CHRONIC_FLAGS)
        + ["n_chronic_conditions", "chronic_2", "chronic_3plus", "log1p_prior_year_eur"]
        + [f"year_{y}" for y in years[1:]]
    )


def _binary_columns(names: Sequence[str]) -> list[bool]:
    """Which candidate columns only take the values 0 and 1 (checked for separation)."""
    return [n.startswith(("age_", "year_", "chronic_")) or n in CHRONIC_FLAGS or n == "sex_v" for n in names]


def _check_years(years: Sequence[int]) -> list[int]:
    years = [int(y) for y in years]
    if not years:
        raise ValueError("years: give at least one anchor year (the first is the reference)")
    if len(set(years)) != len(years):
        raise ValueError(f"years: duplicates in {years}")
    return years


def _year_expr(episodes: pl.DataFrame) -> pl.Expr:
    if "anchor_year" in episodes.columns:
        return pl.col("anchor_year").cast(pl.Int64)
    return pl.col("anchor_date").dt.year().cast(pl.Int64)


def _design_exprs(episodes: pl.DataFrame, years: list[int]) -> list[pl.Expr]:
    """One float64 expression per candidate column (see the module docstring for null handling)."""
    f64 = pl.Float64
    age = pl.col("age_at_anchor")
    exprs: list[pl.Expr] = [pl.lit(1.0, dtype=f64).alias("intercept")]
    for name, low, high in AGE_BANDS:
        if name == AGE_REFERENCE:
            continue
        cond = pl.lit(True)
        if low is not None:
            cond = cond & (age >= low)
        if high is not None:
            cond = cond & (age <= high)
        exprs.append(cond.fill_null(False).cast(f64).alias(name))
    exprs.append((pl.col("sex") == "V").fill_null(False).cast(f64).alias("sex_v"))
    for flag in CHRONIC_FLAGS:
        exprs.append(pl.col(flag).fill_null(False).cast(f64).alias(flag))
    count = (
        pl.col("n_chronic_conditions")
        .cast(pl.Int64)
        .fill_null(pl.sum_horizontal([pl.col(f).fill_null(False).cast(pl.Int64) for f in CHRONIC_FLAGS]))
    )
    exprs.append(count.cast(f64).alias("n_chronic_conditions"))
    exprs.append((count == 2).cast(f64).alias("chronic_2"))
    exprs.append((count >= 3).cast(f64).alias("chronic_3plus"))
    prior = pl.col("prior_year_standardised_cents").cast(f64).fill_null(0.0).clip(lower_bound=0.0)
    exprs.append((prior / 100.0).log1p().alias("log1p_prior_year_eur"))
    year = _year_expr(episodes)
    for y in years[1:]:
        exprs.append((year == y).cast(f64).alias(f"year_{y}"))
    return exprs


def _full_design(episodes: pl.DataFrame, years: Sequence[int]) -> np.ndarray:
    """The candidate columns of ``episodes`` (nothing dropped), float64, C order."""
    years = _check_years(years)
    unknown = (
        episodes.select(_year_expr(episodes).alias("y"))
        .filter(~pl.col("y").is_in(years) | pl.col("y").is_null())["y"]
        .unique()
        .sort()
        .to_list()
    )
    if unknown:
        raise ValueError(f"episodes anchored in years {unknown} are not among the model's years {years}")
    frame = episodes.select(_design_exprs(episodes, years))
    return np.ascontiguousarray(frame.to_numpy().astype(np.float64, copy=False))


def design(
    episodes: pl.DataFrame, years: Sequence[int], *, columns: Sequence[str] | None = None
) -> tuple[np.ndarray, list[str]]:
    """The float64 design matrix of ``episodes`` and its column names (module docstring).

    Without ``columns``: the candidate columns minus those that are all zero, constant or collinear
    in these episodes (a fit then uses exactly these). With ``columns`` (e.g. a fitted model's
    ``names``): exactly those columns in that order, nothing dropped -- for predicting on a subset
    such as one provider's episodes. ``years``: the model's anchor years, the first the reference;
    an episode anchored in another year is an error (it would silently join the reference year).
    """
    candidates = candidate_columns(years)
    X = _full_design(episodes, years)
    if columns is not None:
        missing = [c for c in columns if c not in candidates]
        if missing:
            raise ValueError(f"unknown design columns {missing}; known: {candidates}")
        index = [candidates.index(c) for c in columns]
        return np.ascontiguousarray(X[:, index]), list(columns)
    keep, _ = independent_columns(X.T @ X, candidates)
    return np.ascontiguousarray(X[:, keep]), [candidates[i] for i in keep]


def independent_columns(gram: np.ndarray, names: Sequence[str]) -> tuple[list[int], dict[str, str]]:
    """Indices of the columns to keep, given ``X'X`` of the candidate columns (the first must be the
    intercept), and the reason for each column dropped: ``all zero``, ``constant`` or ``collinear``
    (Gram-Schmidt in column order: the residual sum of squares of the column on the kept columns
    before it, relative to its sum of squares, is below :data:`COLLINEAR_TOL`)."""
    gram = np.asarray(gram, dtype=np.float64)
    n = gram[0, 0]
    keep: list[int] = []
    dropped: dict[str, str] = {}
    for j, name in enumerate(names):
        ss = gram[j, j]
        if ss <= 0:
            dropped[name] = "all zero"
            continue
        if keep:
            if j > 0 and n > 0 and ss - gram[0, j] ** 2 / n <= COLLINEAR_TOL * ss:
                dropped[name] = "constant"
                continue
            g_kk = gram[np.ix_(keep, keep)]
            g_kj = gram[keep, j]
            coef = np.linalg.solve(g_kk, g_kj)
            residual = ss - g_kj @ coef
            if residual <= COLLINEAR_TOL * ss:
                dropped[name] = "collinear with the columns before it"
                continue
        keep.append(j)
    return keep, dropped


def _separated_columns(
    names: Sequence[str], kind: Kind, n: float, events: float, col_sums: np.ndarray, col_y_sums: np.ndarray
) -> dict[str, str]:
    """0/1 columns whose coefficient would be infinite (see the module docstring)."""
    out: dict[str, str] = {}
    for j, (name, binary) in enumerate(zip(names, _binary_columns(names))):
        if not binary:
            continue
        n1, e1 = col_sums[j], col_y_sums[j]
        if kind == "logistic":
            n0, e0 = n - n1, events - e1
            if e1 == 0 or e1 == n1 or e0 == 0 or e0 == n0:
                out[name] = "quasi-separation: the episodes with (or without) it all have the same outcome"
        elif e1 <= 0:
            out[name] = "all episodes with it cost 0"
    return out


def model_targets(bundle: BundleDefinition | str) -> dict[str, Kind]:
    """The targets a bundle's case-mix models are fitted for: the two cost bases (Poisson) and every
    Boolean outcome of the bundle (logistic)."""
    from transforms.bundles import load_bundles, outcome_kinds_of_type

    if isinstance(bundle, str):
        bundle = load_bundles()[bundle]
    targets: dict[str, Kind] = {column: "poisson" for column in COST_TARGETS.values()}
    for outcome in bundle.outcomes:
        if outcome.kind in outcome_kinds_of_type("boolean"):
            targets[outcome.name] = "logistic"
    return targets


# ------------------------------------------------------------------------------------- prediction


def predict(coefficients: dict[str, float], X: np.ndarray, kind: Kind) -> np.ndarray:
    """Expected value per row of ``X``, whose columns are the coefficients' names in their order:
    ``exp(Xb)`` (Poisson) or ``1 / (1 + exp(-Xb))`` (logistic)."""
    from scipy.special import expit

    beta = np.fromiter(coefficients.values(), dtype=np.float64, count=len(coefficients))
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != beta.size:
        raise ValueError(f"X has shape {X.shape}; the model has {beta.size} columns {list(coefficients)}")
    eta = X @ beta
    return np.exp(eta) if kind == "poisson" else expit(eta)


@dataclass(frozen=True)
class FitResult:
    """A fitted (or degenerate) case-mix model. ``coefficients`` maps the design column names (in
    order) to their values, on the scale of the target (cents for costs). ``fitted=False`` with a
    ``reason``: the model predicts ``mean_observed`` for every episode (the overall mean cost or
    rate)."""

    target: str
    kind: Kind
    years: tuple[int, ...]
    fitted: bool
    reason: str | None
    coefficients: dict[str, float]
    dropped: dict[str, str]
    n: int
    n_excluded: int  # episodes with a null target (not in the fit)
    n_clipped: int  # negative costs clipped at 0 for the fit
    mean_observed: float
    deviance: float | None
    null_deviance: float | None
    pseudo_r2: float | None
    calibration: pl.DataFrame
    solver: str
    max_step: float | None = None  # remaining Newton step at the coefficients (standardised scale)
    seconds: float = 0.0
    statuses: tuple[str, ...] | None = None

    @property
    def names(self) -> list[str]:
        return list(self.coefficients)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Expected value per row of ``X`` (columns = :attr:`names`); a degenerate model gives
        ``mean_observed`` for every row."""
        if not self.fitted:
            return np.full(np.asarray(X).shape[0], self.mean_observed, dtype=np.float64)
        return predict(self.coefficients, X, self.kind)

    def expected(self, episodes: pl.DataFrame) -> np.ndarray:
        """Expected value per episode of ``episodes``."""
        if not self.fitted:
            return np.full(episodes.height, self.mean_observed, dtype=np.float64)
        X, _ = design(episodes, self.years, columns=self.names)
        return predict(self.coefficients, X, self.kind)

    def coefficient_table(self) -> pl.DataFrame:
        """One row per design column: ``column``, ``coefficient`` (null when dropped), ``dropped``
        (the reason, null when kept)."""
        rows = [(c, v, None) for c, v in self.coefficients.items()]
        rows += [(c, None, why) for c, why in self.dropped.items()]
        return pl.DataFrame(
            rows, schema={"column": pl.String, "coefficient": pl.Float64, "dropped": pl.String}, orient="row"
        )

    def summary(self) -> dict:
        """The fit statistics as plain JSON values (for the panel folder)."""
        return {
            "target": self.target,
            "kind": self.kind,
            "years": list(self.years),
            "fitted": self.fitted,
            "reason": self.reason,
            "n": self.n,
            "n_excluded": self.n_excluded,
            "n_clipped": self.n_clipped,
            "mean_observed": self.mean_observed,
            "deviance": self.deviance,
            "null_deviance": self.null_deviance,
            "pseudo_r2": self.pseudo_r2,
            "pseudo_r2_definition": "1 - deviance / null_deviance",
            "solver": self.solver,
            "max_step": self.max_step,
            "seconds": round(self.seconds, 3),
            "statuses": list(self.statuses) if self.statuses is not None else None,
            "coefficients": self.coefficients,
            "dropped": self.dropped,
            "calibration": self.calibration.to_dicts(),
        }


# ------------------------------------------------------------------------------------- statistics


def deviance(y: np.ndarray, mu: np.ndarray, kind: Kind) -> float:
    """Poisson deviance ``2 sum(y log(y/mu) - (y - mu))`` (``y log y = 0`` at 0) or binomial deviance
    ``-2 sum(y log mu + (1-y) log(1-mu))``."""
    y = np.asarray(y, dtype=np.float64)
    mu = np.asarray(mu, dtype=np.float64)
    if kind == "poisson":
        with np.errstate(divide="ignore", invalid="ignore"):
            ylog = np.where(y > 0, y * np.log(np.where(y > 0, y, 1.0) / mu), 0.0)
        return float(2.0 * np.sum(ylog - (y - mu)))
    with np.errstate(divide="ignore"):
        ll = np.where(y > 0.5, np.log(mu), np.log1p(-mu))
    return float(-2.0 * np.sum(ll))


def calibration_table(y: np.ndarray, mu: np.ndarray, groups: int = 10) -> pl.DataFrame:
    """Episodes ranked by expected value (ties in row order) and cut into ``groups`` equal-count
    groups: ``decile`` (1 = lowest expected), ``n``, ``mean_observed``, ``mean_expected``."""
    y = np.asarray(y, dtype=np.float64)
    mu = np.asarray(mu, dtype=np.float64)
    n = y.size
    order = np.argsort(mu, kind="stable")
    decile = np.empty(n, dtype=np.int64)
    decile[order] = np.arange(n) * groups // max(n, 1) + 1
    frame = pl.DataFrame({"decile": decile, "y": y, "mu": mu})
    return (
        frame.group_by("decile")
        .agg(
            pl.len().cast(pl.Int64).alias("n"),
            pl.col("y").mean().alias("mean_observed"),
            pl.col("mu").mean().alias("mean_expected"),
        )
        .sort("decile")
    )


def _empty_calibration() -> pl.DataFrame:
    return pl.DataFrame(
        schema={"decile": pl.Int64, "n": pl.Int64, "mean_observed": pl.Float64, "mean_expected": pl.Float64}
    )


def degenerate_reason(kind: Kind, n: int, p: int, total: float, min_episodes: int, min_events: int) -> str | None:
    """Why a case-mix model of ``kind`` cannot be fitted on ``n`` episodes with ``p`` columns and
    outcome total ``total`` (too few episodes or events, every episode costs 0, a perfectly
    separated outcome), or None when it can. Public because the panel run
    (``transforms.panels.run``) skips the fit of a degenerate target by the same test."""
    if n < min_episodes:
        return f"too few episodes: {n} < {min_episodes}"
    if n <= p:
        return f"too few episodes for the model: {n} episodes, {p} columns"
    if kind == "poisson":
        if total <= 0:
            return "every episode costs 0"
        return None
    events, non_events = int(round(total)), n - int(round(total))  # noqa: RUF046 - total may be a numpy scalar
    if events == 0 or non_events == 0:
        return f"perfectly separated outcome: {events} of {n} episodes have it"
    if min(events, non_events) < min_events:
        return (
            f"too few events: {events} of {n} episodes have the outcome "
            f"(at least {min_events} with and {min_events} without needed)"
        )
    return None


def _degenerate(
    target: str,
    kind: Kind,
    years: Sequence[int],
    reason: str,
    n: int,
    n_excluded: int,
    n_clipped: int,
    y: np.ndarray | None,
    mean: float,
    dropped: dict[str, str],
    solver: str,
    started: float,
    statuses,
) -> FitResult:
    """A not-fitted result predicting the overall mean (rate); its deviance is the null deviance."""
    dev = None
    calibration = _empty_calibration()
    if y is not None and y.size and (kind == "poisson" or 0 < mean < 1):
        mu = np.full(y.size, mean)
        dev = deviance(y, mu, kind)
        calibration = calibration_table(y, mu)
    return FitResult(
        target=target,
        kind=kind,
        years=tuple(int(v) for v in years),
        fitted=False,
        reason=reason,
        coefficients={},
        dropped=dropped,
        n=n,
        n_excluded=n_excluded,
        n_clipped=n_clipped,
        mean_observed=float(mean),
        deviance=dev,
        null_deviance=dev,
        pseudo_r2=0.0 if dev is not None else None,
        calibration=calibration,
        solver=solver,
        seconds=time.perf_counter() - started,
        statuses=tuple(statuses) if statuses is not None else None,
    )


def _pseudo_r2(dev: float, null_dev: float) -> float | None:
    return 1.0 - dev / null_dev if null_dev > 0 else None


# ----------------------------------------------------------------------------------- local (numpy)


def fit_local(
    X: np.ndarray,
    y: np.ndarray,
    kind: Kind,
    names: Sequence[str] | None = None,
    *,
    target: str = "y",
    years: Sequence[int] = (),
    min_episodes: int = MIN_EPISODES,
    min_events: int = MIN_EVENTS,
    max_iter: int = 100,
) -> FitResult:
    """The same model as :func:`fit_on_dask` on in-memory ``X`` (first column the intercept) and
    ``y``, by exact IRLS in numpy: Newton steps on standardised columns with the target scaled by
    its mean, halving a step while it does not lower the deviance, until the largest step is below
    1e-12 (standardised scale). Rows with a NaN ``y`` are excluded; negative costs clipped at 0.
    ``names`` default to ``x0, x1, ...``; the same columns are dropped as on the cluster."""
    started = time.perf_counter()
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    names = list(names) if names is not None else [f"x{i}" for i in range(X.shape[1])]
    if X.ndim != 2 or X.shape[0] != y.shape[0] or X.shape[1] != len(names):
        raise ValueError(f"X {X.shape}, y {y.shape} and {len(names)} names do not fit together")
    ok = ~np.isnan(y)
    n_excluded = int((~ok).sum())
    X, y = X[ok], y[ok]
    n_clipped = int((y < 0).sum()) if kind == "poisson" else 0
    if kind == "poisson":
        y = np.clip(y, 0.0, None)
    elif not np.all((y == 0) | (y == 1)):
        raise ValueError("a logistic target must be 0/1 (or Boolean)")
    n = y.size
    total = float(y.sum())
    mean = total / n if n else 0.0
    solver = "numpy exact IRLS"
    reason = degenerate_reason(kind, n, 1, total, min_episodes, min_events)
    if reason:
        return _degenerate(target, kind, years, reason, n, n_excluded, n_clipped, y, mean, {}, solver, started, None)
    keep, dropped = independent_columns(X.T @ X, names)
    sep = _separated_columns([names[i] for i in keep], kind, n, total, X[:, keep].sum(axis=0), X[:, keep].T @ y)
    dropped.update(sep)
    keep = [i for i in keep if names[i] not in sep]
    reason = degenerate_reason(kind, n, len(keep), total, min_episodes, min_events)
    if reason:
        return _degenerate(
            target, kind, years, reason, n, n_excluded, n_clipped, y, mean, dropped, solver, started, None
        )
    Xk = X[:, keep]
    kept = [names[i] for i in keep]
    beta, step = _irls(Xk, y, kind, max_iter)
    if beta is None or not np.all(np.isfinite(beta)) or step > CONVERGED_STEP:
        return _degenerate(
            target,
            kind,
            years,
            f"did not converge (remaining step {step:.3g})",
            n,
            n_excluded,
            n_clipped,
            y,
            mean,
            dropped,
            solver,
            started,
            None,
        )
    mu = predict(dict(zip(kept, beta)), Xk, kind)
    dev = deviance(y, mu, kind)
    null_dev = deviance(y, np.full(n, mean), kind)
    return FitResult(
        target=target,
        kind=kind,
        years=tuple(int(v) for v in years),
        fitted=True,
        reason=None,
        coefficients={k: float(b) for k, b in zip(kept, beta)},
        dropped=dropped,
        n=n,
        n_excluded=n_excluded,
        n_clipped=n_clipped,
        mean_observed=mean,
        deviance=dev,
        null_deviance=null_dev,
        pseudo_r2=_pseudo_r2(dev, null_dev),
        calibration=calibration_table(y, mu),
        solver=solver,
        max_step=step,
        seconds=time.perf_counter() - started,
    )


def fit_files(
    files: Sequence[str],
    target: str,
    kind: Kind,
    years: Sequence[int],
    *,
    statuses: Sequence[str] | None = DEFAULT_STATUSES,
    min_episodes: int = MIN_EPISODES,
    min_events: int = MIN_EVENTS,
) -> FitResult:
    """:func:`fit_local` on the episodes in ``files`` (parquet, one bundle): the model of
    :func:`fit_on_dask` on the same rows, in one process. Episodes are taken in ``episode_id`` order
    (the result does not depend on how they are split over files); ``statuses`` as there; a null
    target is left out and counted (``n_excluded``)."""
    years = _check_years(years)
    statuses_t = tuple(statuses) if statuses is not None else None
    episodes = pl.read_parquet(sorted(str(f) for f in files), hive_partitioning=True)
    if statuses_t is not None:
        episodes = episodes.filter(pl.col("status").is_in(list(statuses_t)))
    if target not in episodes.columns:
        raise ValueError(f"no column {target!r} in the episodes")
    if kind == "logistic" and episodes[target].dtype != pl.Boolean:
        raise ValueError(f"{target!r} is {episodes[target].dtype}, a logistic model needs a Boolean outcome")
    episodes = episodes.sort("episode_id")
    y = episodes[target].cast(pl.Float64).fill_null(np.nan).to_numpy()
    fit = fit_local(
        _full_design(episodes, years),
        y,
        kind,
        candidate_columns(years),
        target=target,
        years=years,
        min_episodes=min_episodes,
        min_events=min_events,
    )
    return dataclasses.replace(fit, statuses=statuses_t)


def _irls(X: np.ndarray, y: np.ndarray, kind: Kind, max_iter: int) -> tuple[np.ndarray | None, float]:
    """Newton-Raphson (= IRLS for these canonical links) with step halving; returns the coefficients
    on the original scale and the last full step on the standardised scale."""
    from scipy.special import expit

    mean_x = X.mean(axis=0)
    sd_x = X.std(axis=0)
    const = sd_x == 0
    if not const.any():
        raise ValueError("X needs an intercept column (a column of ones)")
    mean_x[const], sd_x[const] = 0.0, 1.0
    Z = (X - mean_x) / sd_x  # the intercept column stays 1
    scale = y.mean() if kind == "poisson" else 1.0
    t = y / scale
    beta = np.zeros(X.shape[1])
    rate = t.mean()
    beta[np.flatnonzero(const)[0]] = math.log(rate) if kind == "poisson" else math.log(rate / (1 - rate))

    def mu_of(b: np.ndarray) -> np.ndarray:
        eta = Z @ b
        return np.exp(eta) if kind == "poisson" else expit(eta)

    mu = mu_of(beta)
    dev = deviance(t, mu, kind)
    step_size = math.inf
    for _ in range(max_iter):
        w = mu if kind == "poisson" else mu * (1 - mu)
        grad = Z.T @ (t - mu)
        hess = (Z * w[:, None]).T @ Z
        try:
            step = np.linalg.solve(hess, grad)
        except np.linalg.LinAlgError:
            step = np.linalg.lstsq(hess, grad, rcond=None)[0]
        step_size = float(np.max(np.abs(step)))
        if not np.isfinite(step_size):
            return None, math.inf
        factor = 1.0
        for _ in range(30):
            candidate = beta + factor * step
            with np.errstate(over="ignore"):
                mu_c = mu_of(candidate)
            dev_c = deviance(t, mu_c, kind)
            if np.isfinite(dev_c) and dev_c <= dev + 1e-12 * abs(dev):
                break
            factor /= 2
        beta, mu, dev = candidate, mu_c, dev_c
        if step_size < 1e-11:
            break
    # back to the original columns and scale
    b = beta / sd_x
    intercept = int(np.flatnonzero(const)[0])
    b[intercept] = beta[intercept] - np.sum(beta * mean_x / sd_x)
    if kind == "poisson":
        b[intercept] += math.log(scale)
    return b, step_size


# ------------------------------------------------------------------------------------------- dask


def _read_partition(
    file: str, target: str, kind: Kind, years: list[int], statuses: tuple[str, ...] | None
) -> tuple[np.ndarray, np.ndarray, dict]:
    """On a worker: one parquet file's block of the design matrix (all candidate columns), the target
    (clipped at 0 for costs, 0/1 for binary outcomes) and counts."""
    episodes = pl.read_parquet(file, hive_partitioning=True)
    if statuses is not None:
        episodes = episodes.filter(pl.col("status").is_in(list(statuses)))
    if target not in episodes.columns:
        raise ValueError(f"{file}: no column {target!r}")
    n_null = int(episodes[target].null_count())
    episodes = episodes.filter(pl.col(target).is_not_null())
    raw = episodes[target]
    if kind == "poisson":
        y = raw.cast(pl.Float64).to_numpy()
        n_clipped = int((y < 0).sum())
        y = np.clip(y, 0.0, None)
    else:
        if raw.dtype != pl.Boolean:
            raise ValueError(f"{file}: {target!r} is {raw.dtype}, a logistic model needs a Boolean outcome")
        y = raw.cast(pl.Float64).to_numpy()
        n_clipped = 0
    X = _full_design(episodes, years)
    return X, np.ascontiguousarray(y), {"n": int(y.size), "n_excluded": n_null, "n_clipped": n_clipped}


def _info(part: tuple) -> dict:
    return part[2]


def _take_columns(block: np.ndarray, keep: list[int]) -> np.ndarray:
    return np.ascontiguousarray(block[:, keep])


def _aligned(a: np.ndarray) -> np.ndarray:
    """``a`` as an aligned, C-contiguous float64 array (a copy only when needed). A block that came
    over the network can sit at an odd byte offset in its message buffer; NumPy then leaves BLAS for
    a loop of its own that rounds differently, so the same block gave different last bits depending
    on which worker held it."""
    return np.require(a, dtype=np.float64, requirements=["C", "A"])


def _block_gram(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """On a worker: ``X'X``, ``X'y`` and ``sum(y)`` of one block."""
    X, y = _aligned(X), _aligned(y)
    return X.T @ X, X.T @ y, float(np.sum(y))


def _block_stats(X: np.ndarray, y: np.ndarray, beta: np.ndarray, kind: Kind):
    """On a worker: expected values, score ``X'(y - mu)``, Hessian and deviance of one block at
    ``beta``, from aligned copies (see :func:`_aligned`), so the result does not depend on where the
    block was computed."""
    from scipy.special import expit

    X, y, beta = _aligned(X), _aligned(y), _aligned(beta)
    eta = X @ beta
    with np.errstate(over="ignore"):
        if kind == "poisson":
            mu = np.exp(eta)
            w = mu
        else:
            mu = expit(eta)
            w = mu * (1.0 - mu)
    grad = X.T @ (y - mu)
    hess = (X * w[:, None]).T @ X
    return mu, grad, hess, deviance(y, mu, kind)


def _blockwise_sum(client, function, blocks: list, *args) -> list:
    """Run ``function`` on every (X block, y block) pair on the cluster and add the results up on
    this side in block order (a fixed order of additions: deterministic). Returns the summed parts;
    a first part that is an array per row (expected values) is concatenated instead."""
    import dask

    parts = client.gather(client.compute([dask.delayed(function, pure=True)(x, y, *args) for x, y in blocks]))
    out = []
    for i in range(len(parts[0])):
        values = [part[i] for part in parts]
        if function is _block_stats and i == 0:
            out.append(np.concatenate(values))
            continue
        total = values[0]
        for value in values[1:]:
            total = total + value
        out.append(total)
    return out


def _newton_step(grad: np.ndarray, hess: np.ndarray) -> np.ndarray:
    try:
        return np.linalg.solve(hess, grad)
    except np.linalg.LinAlgError:
        return np.linalg.lstsq(hess, grad, rcond=None)[0]


def _step_size(step: np.ndarray, sd: np.ndarray) -> float:
    """Largest component of a step on the standardised scale."""
    value = float(np.max(np.abs(step * sd)))
    return value if np.isfinite(value) else math.inf


def _verify_and_polish(
    client, blocks: list, beta: np.ndarray, kind: Kind, sd: np.ndarray, max_polish: int = POLISH_MAX_ITER
) -> tuple[np.ndarray, float, np.ndarray, int]:
    """Check a solver's coefficients with one exact Newton step computed on the cluster: when that
    step is below :data:`POLISH_STEP` (standardised scale) they are returned as they are;
    otherwise damped Newton steps (halved while the deviance rises) are taken from there, at most
    ``max_polish``; the caller accepts a remaining step up to :data:`CONVERGED_STEP`.
    Returns (coefficients, remaining step, expected values, polishing steps)."""
    mu, grad, hess, dev = _blockwise_sum(client, _block_stats, blocks, beta, kind)
    for polished in range(max_polish + 1):
        step = _newton_step(grad, hess)
        size = _step_size(step, sd)
        if size <= POLISH_STEP or polished == max_polish or not np.isfinite(size):
            return beta, size, mu, polished
        factor = 1.0
        for _ in range(30):
            candidate = beta + factor * step
            c_mu, c_grad, c_hess, c_dev = _blockwise_sum(client, _block_stats, blocks, candidate, kind)
            if np.isfinite(c_dev) and c_dev <= dev + 1e-12 * abs(dev):
                break
            factor /= 2
        beta, mu, grad, hess, dev = candidate, c_mu, c_grad, c_hess, c_dev
    return beta, math.inf, mu, max_polish  # not reached


#: How long a fit waits for a Dask worker to connect before it gives up.
WORKER_TIMEOUT = 600.0


def _wait_for_a_worker(client) -> None:
    """Return once a worker is connected: a cluster that lost its workers would otherwise leave the
    fit's ``gather`` waiting for ever."""
    try:
        client.wait_for_workers(1, timeout=WORKER_TIMEOUT)
    except TimeoutError as error:
        raise RuntimeError(
            f"no Dask worker connected to {client.scheduler.address} for {WORKER_TIMEOUT:.0f} s: "
            "the case-mix model cannot be fitted"
        ) from error


def fit_on_dask(
    address: str,
    files: list[str],
    target: str,
    kind: Kind,
    years: list[int],
    *,
    statuses: Sequence[str] | None = DEFAULT_STATUSES,
    min_episodes: int = MIN_EPISODES,
    min_events: int = MIN_EVENTS,
    tol: float = NEWTON_TOL,
    max_iter: int = NEWTON_MAX_ITER,
    solver_first: Literal["newton", "lbfgs"] = "newton",
    client=None,
) -> FitResult:
    """Fit the case-mix model of ``target`` on the episodes in ``files`` (parquet, one bundle) with
    dask-ml on the Dask cluster at ``address`` (module docstring: chunking, solver, verification).

    ``statuses``: the episode statuses used (None: all). Episodes with a null target are left out
    and counted (``n_excluded``); null covariates are imputed (:func:`design`). A client is
    connected for the call only and is the scheduler only inside it; or pass ``client`` (an open
    ``distributed.Client``) to share one between fits running at the same time in threads: a fit's
    computations may then run through the shared client, and none is cancelled when another fit's
    own client would close.
    """
    import contextlib

    import dask
    import dask.array as da
    from distributed import Client

    started = time.perf_counter()
    years = _check_years(years)
    statuses_t = tuple(statuses) if statuses is not None else None
    files = sorted(str(f) for f in files)
    names = candidate_columns(years)
    p = len(names)
    connection = contextlib.nullcontext(client) if client is not None else Client(address, set_as_default=False)
    with connection as client, client.as_current(), dask.config.set(scheduler=client):
        _wait_for_a_worker(client)
        parts = [dask.delayed(_read_partition, pure=True)(f, target, kind, years, statuses_t) for f in files]
        futures = client.compute(parts)  # one task per file; its block stays on the worker
        infos = client.gather(client.map(_info, futures, pure=False))
        n = sum(i["n"] for i in infos)
        n_excluded = sum(i["n_excluded"] for i in infos)
        n_clipped = sum(i["n_clipped"] for i in infos)
        nonempty = [(f, i["n"]) for f, i in zip(futures, infos) if i["n"] > 0]
        model_name = f"dask-ml {'PoissonRegression' if kind == 'poisson' else 'LogisticRegression'}"
        solver = f"{model_name} {solver_first}"
        if not nonempty:
            return _degenerate(
                target, kind, years, "no episodes", 0, n_excluded, n_clipped, None, 0.0, {}, solver, started, statuses_t
            )
        X_full = da.concatenate(
            [
                da.from_delayed(dask.delayed(operator.getitem)(f, 0), shape=(rows, p), dtype=np.float64)
                for f, rows in nonempty
            ]
        )
        y = da.concatenate(
            [
                da.from_delayed(dask.delayed(operator.getitem)(f, 1), shape=(rows,), dtype=np.float64)
                for f, rows in nonempty
            ]
        )
        X_full, y = client.persist([X_full, y])
        del futures, parts
        full_blocks = list(zip(X_full.to_delayed().ravel(), y.to_delayed().ravel()))
        gram, col_y, total = _blockwise_sum(client, _block_gram, full_blocks)
        mean = total / n
        reason = degenerate_reason(kind, n, 1, total, min_episodes, min_events)
        keep, dropped = independent_columns(gram, names)
        if reason is None:
            kept = [names[i] for i in keep]
            sep = _separated_columns(kept, kind, n, total, gram[0, keep], col_y[keep])
            dropped.update(sep)
            keep = [i for i in keep if names[i] not in sep]
            reason = degenerate_reason(kind, n, len(keep), total, min_episodes, min_events)
        if reason is not None:
            y_local = y.compute()
            return _degenerate(
                target,
                kind,
                years,
                reason,
                n,
                n_excluded,
                n_clipped,
                y_local,
                mean,
                dropped,
                solver,
                started,
                statuses_t,
            )
        kept = [names[i] for i in keep]
        # a block function, not dask's fancy indexing: every block C-contiguous, whichever worker
        # holds it (a block's memory layout changes the last bits of BLAS products, run to run)
        X = client.persist(
            X_full.map_blocks(_take_columns, keep, chunks=(X_full.chunks[0], (len(keep),)), dtype=np.float64)
        )
        del X_full
        sd = np.sqrt(np.maximum(np.diag(gram)[keep] / n - (gram[0, keep] / n) ** 2, 0.0))
        sd[0] = 1.0  # the intercept: its step is on its own scale
        scale = mean if kind == "poisson" else 1.0
        y_fit = client.persist(y / scale) if kind == "poisson" else y
        blocks = list(zip(X.to_delayed().ravel(), y_fit.to_delayed().ravel()))

        beta, step, mu, used = None, math.inf, None, solver
        attempts = ("newton", "lbfgs") if solver_first == "newton" else ("lbfgs", "newton")
        for attempt in attempts:
            beta_try = _dask_ml_fit(X, y_fit, kind, attempt, tol, max_iter)
            if beta_try is None or not np.all(np.isfinite(beta_try)):
                continue
            beta_try, step_try, mu_try, polished = _verify_and_polish(client, blocks, beta_try, kind, sd)
            if step_try < step:
                beta, step, mu = beta_try, step_try, mu_try
                used = f"{model_name} {attempt}" + (f" + {polished} Newton polishing steps" if polished else "")
            if step <= CONVERGED_STEP:
                break
        y_local = y.compute()
        if beta is None or step > CONVERGED_STEP:
            return _degenerate(
                target,
                kind,
                years,
                f"did not converge (remaining step {step:.3g})",
                n,
                n_excluded,
                n_clipped,
                y_local,
                mean,
                dropped,
                used,
                started,
                statuses_t,
            )
    if kind == "poisson":
        beta = beta.copy()
        beta[0] += math.log(scale)
        mu = mu * scale
    dev = deviance(y_local, mu, kind)
    null_dev = deviance(y_local, np.full(n, mean), kind)
    return FitResult(
        target=target,
        kind=kind,
        years=tuple(years),
        fitted=True,
        reason=None,
        coefficients={k: float(b) for k, b in zip(kept, beta)},
        dropped=dropped,
        n=n,
        n_excluded=n_excluded,
        n_clipped=n_clipped,
        mean_observed=mean,
        deviance=dev,
        null_deviance=null_dev,
        pseudo_r2=_pseudo_r2(dev, null_dev),
        calibration=calibration_table(y_local, mu),
        solver=used,
        max_step=step,
        seconds=time.perf_counter() - started,
        statuses=statuses_t,
    )


def _dask_ml_fit(X, y, kind: Kind, solver: str, tol: float, max_iter: int) -> np.ndarray | None:
    """dask-ml unpenalised: Newton has no penalty in dask-glm; L-BFGS gets ``penalty=None``.
    ``X``'s first column is the intercept, which dask-ml adds itself (``fit_intercept``).
    Returns ``[intercept, coef...]`` on the scale of ``y``."""
    from dask_ml.linear_model import LogisticRegression, PoissonRegression

    model_cls = PoissonRegression if kind == "poisson" else LogisticRegression
    if solver == "newton":
        model = model_cls(solver="newton", tol=tol, max_iter=max_iter, fit_intercept=True)
    else:
        # close enough for the Newton polish that follows; more iterations buy nothing
        model = model_cls(solver="lbfgs", penalty=None, tol=1e-6, max_iter=max_iter, fit_intercept=True)
    try:
        # dask-glm still sets a Dask configuration key Dask renamed; its warning says nothing to a user
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*fuse_ave_width.*", category=FutureWarning)
            model.fit(X[:, 1:], y)
    except (np.linalg.LinAlgError, ValueError, FloatingPointError):
        return None
    coef = np.concatenate([[float(np.asarray(model.intercept_))], np.asarray(model.coef_, dtype=np.float64).ravel()])
    return coef
