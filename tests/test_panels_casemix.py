"""The case-mix models (transforms.panels.casemix) on a generated delivery's episodes: the dask-ml fit
on a real two-worker cluster equals statsmodels' GLM on the same design matrix, its predictions add
up to the observed total, it is bit-for-bit reproducible, and degenerate bundles give a result."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import statsmodels.api as sm

from flows.dask_cluster import dask_cluster
from transforms.episodes.run import build_episodes
from transforms.ingest.run import ingest
from transforms.panels import casemix as cm
from transforms.synth import SynthConfig, generate_delivery

# integration: dask-ml fits on a generated delivery against statsmodels
pytestmark = pytest.mark.integration

YEARS = list(range(2015, 2023))
STATUSES = ["complete", "death"]


@pytest.fixture(scope="session")
def episodes_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("casemix")
    generate_delivery(SynthConfig(patients=6_000, seed=29, block_size=2_000), root / "delivery")
    ingest(root / "delivery", root / "store", n_buckets=2, data_docs=False)
    build_episodes(root / "store", root / "episodes", bundles=["hip_oa", "cataract"])
    return root / "episodes" / "episodes"


@pytest.fixture(scope="module")
def cluster() -> str:
    with dask_cluster(workers=2) as address:
        yield address


def files_of(episodes_dir: Path, bundle: str) -> list[str]:
    files = sorted(str(f) for f in (episodes_dir / f"bundle_id={bundle}").rglob("*.parquet"))
    assert len(files) > 4, "the fit is spread over several files"
    return files


def read(files: list[str], statuses=STATUSES) -> pl.DataFrame:
    frame = pl.concat([pl.read_parquet(f, hive_partitioning=True) for f in files], how="diagonal_relaxed")
    return frame.filter(pl.col("status").is_in(statuses)) if statuses else frame


def target_of(episodes: pl.DataFrame, target: str, kind: str) -> np.ndarray:
    y = episodes[target].cast(pl.Float64).to_numpy()
    return np.clip(y, 0, None) if kind == "poisson" else y


def statsmodels_fit(X: np.ndarray, y: np.ndarray, kind: str):
    family = sm.families.Poisson() if kind == "poisson" else sm.families.Binomial()
    return sm.GLM(y, X, family=family).fit(tol=1e-13, maxiter=300)


_FITS: dict = {}


def fitted(cluster: str, episodes_dir: Path, bundle: str, target: str, kind: str) -> cm.FitResult:
    """One dask fit per (bundle, target), shared by the tests of this module."""
    key = (bundle, target, kind)
    if key not in _FITS:
        _FITS[key] = cm.fit_on_dask(cluster, files_of(episodes_dir, bundle), target, kind, YEARS)
    return _FITS[key]


MODELS = [
    ("cataract", "in_bundle_cents", "poisson"),
    ("cataract", "in_bundle_standardised_cents", "poisson"),
    ("hip_oa", "in_bundle_cents", "poisson"),
    ("cataract", "second_eye", "logistic"),
    ("cataract", "secondary_cataract", "logistic"),
]


@pytest.mark.parametrize("bundle,target,kind", MODELS)
def test_dask_fit_equals_statsmodels_on_the_same_design(cluster, episodes_dir, bundle, target, kind):
    result = fitted(cluster, episodes_dir, bundle, target, kind)
    assert result.fitted, result.reason
    assert result.solver.endswith("newton")
    episodes = read(files_of(episodes_dir, bundle))
    assert result.n == episodes.height
    # the design assembled file by file on the workers is the one design() gives on all episodes,
    # less the columns a logistic model drops for separation
    _, local_names = cm.design(episodes, YEARS)
    separated = [c for c, why in result.dropped.items() if why.startswith("quasi-separation")]
    assert result.names == [c for c in local_names if c not in separated]
    assert "n_chronic_conditions" in result.dropped  # the sum of the flags: collinear

    X, _ = cm.design(episodes, YEARS, columns=result.names)
    y = target_of(episodes, target, kind)
    reference = statsmodels_fit(X, y, kind)
    ours = np.array(list(result.coefficients.values()))
    np.testing.assert_allclose(ours, reference.params, rtol=1e-4, atol=0)
    assert result.deviance == pytest.approx(reference.deviance, rel=1e-8)
    assert result.null_deviance == pytest.approx(reference.null_deviance, rel=1e-8)
    assert result.pseudo_r2 == pytest.approx(1 - reference.deviance / reference.null_deviance, rel=1e-8)
    assert result.max_step is not None and result.max_step <= cm.CONVERGED_STEP


@pytest.mark.parametrize("bundle,target,kind", MODELS)
def test_predictions_add_up_to_the_observed_total(cluster, episodes_dir, bundle, target, kind):
    """The score equation of the intercept: with a canonical link and an intercept the expected
    values sum to the observed total (indirect standardisation relies on it), per bundle."""
    result = fitted(cluster, episodes_dir, bundle, target, kind)
    episodes = read(files_of(episodes_dir, bundle))
    expected = result.expected(episodes)
    observed = target_of(episodes, target, kind)
    assert expected.sum() == pytest.approx(observed.sum(), rel=1e-9)
    calibration = result.calibration
    assert calibration["decile"].to_list() == list(range(1, 11))
    assert calibration["n"].sum() == result.n
    assert (calibration["n"] * calibration["mean_expected"]).sum() == pytest.approx(observed.sum(), rel=1e-9)
    assert (calibration["n"] * calibration["mean_observed"]).sum() == pytest.approx(observed.sum(), rel=1e-12)
    assert calibration["mean_expected"].is_sorted()


@pytest.mark.parametrize("bundle,target,kind", MODELS)
def test_fit_files_in_one_process_is_the_cluster_fit(cluster, episodes_dir, bundle, target, kind):
    """What a model below ``CLUSTER_FIT_FROM`` episodes gets: the same columns, counts, coefficients
    (to 1e-9 relative) and deviance as dask-ml on the cluster, whatever the order of the files."""
    files = files_of(episodes_dir, bundle)
    on_dask = fitted(cluster, episodes_dir, bundle, target, kind)
    local = cm.fit_files(files, target, kind, YEARS, statuses=STATUSES)
    assert (local.fitted, local.reason, local.n, local.n_excluded, local.n_clipped) == (
        on_dask.fitted,
        on_dask.reason,
        on_dask.n,
        on_dask.n_excluded,
        on_dask.n_clipped,
    )
    assert local.names == on_dask.names and local.dropped == on_dask.dropped
    assert local.solver == "numpy exact IRLS" and local.statuses == tuple(STATUSES)
    np.testing.assert_allclose(
        list(local.coefficients.values()), list(on_dask.coefficients.values()), rtol=1e-9, atol=1e-12
    )
    if local.fitted:
        assert local.deviance == pytest.approx(on_dask.deviance, rel=1e-12)
    again = cm.fit_files(list(reversed(files)), target, kind, YEARS, statuses=STATUSES)
    assert again.coefficients == local.coefficients and again.calibration.equals(local.calibration)


def test_fit_is_bit_identical_run_after_run(cluster, episodes_dir):
    files = files_of(episodes_dir, "cataract")
    first = fitted(cluster, episodes_dir, "cataract", "in_bundle_cents", "poisson")
    again = cm.fit_on_dask(cluster, list(reversed(files)), "in_bundle_cents", "poisson", YEARS)
    assert again.coefficients == first.coefficients  # exact float equality, in the same order
    assert again.deviance == first.deviance
    assert again.calibration.equals(first.calibration)


def test_lbfgs_fallback_without_penalty_also_reaches_the_optimum(cluster, episodes_dir):
    """L-BFGS (penalty=None) followed by the Newton polish: the path taken when Newton fails. Ten
    L-BFGS iterations leave it far from the optimum; the polish must still get there."""
    files = files_of(episodes_dir, "hip_oa")
    result = cm.fit_on_dask(cluster, files, "in_bundle_cents", "poisson", YEARS, solver_first="lbfgs", max_iter=10)
    assert result.fitted and "lbfgs" in result.solver and "polishing" in result.solver
    episodes = read(files)
    X, _ = cm.design(episodes, YEARS, columns=result.names)
    reference = statsmodels_fit(X, target_of(episodes, "in_bundle_cents", "poisson"), "poisson")
    np.testing.assert_allclose(list(result.coefficients.values()), reference.params, rtol=1e-4, atol=0)


def test_fit_local_is_an_exact_irls(episodes_dir):
    episodes = read(files_of(episodes_dir, "cataract"))
    for target, kind in [("in_bundle_cents", "poisson"), ("second_eye", "logistic")]:
        X, names = cm.design(episodes, YEARS)
        y = target_of(episodes, target, kind)
        result = cm.fit_local(X, y, kind, names, target=target, years=YEARS)
        assert result.fitted, result.reason
        X, _ = cm.design(episodes, YEARS, columns=result.names)
        reference = statsmodels_fit(X, y, kind)
        np.testing.assert_allclose(list(result.coefficients.values()), reference.params, rtol=1e-8, atol=0)
        assert result.deviance == pytest.approx(reference.deviance, rel=1e-10)
        assert result.predict(X).sum() == pytest.approx(y.sum(), rel=1e-10)


# ----------------------------------------------------------------------------------- degenerate


def write_episodes(frame: pl.DataFrame, folder: Path, parts: int = 3) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for i, part in enumerate(frame.iter_slices(max(1, math.ceil(frame.height / parts)))):
        path = folder / f"part-{i:04d}.parquet"
        part.write_parquet(path)
        files.append(str(path))
    return files


def test_an_outcome_nobody_has_gives_a_degenerate_result(cluster, episodes_dir, tmp_path):
    episodes = read(files_of(episodes_dir, "cataract"))
    files = write_episodes(episodes.with_columns(pl.lit(False).alias("secondary_cataract")), tmp_path / "none")
    result = cm.fit_on_dask(cluster, files, "secondary_cataract", "logistic", YEARS)
    assert not result.fitted and "perfectly separated" in result.reason
    assert result.mean_observed == 0.0 and result.coefficients == {}
    assert np.all(result.expected(episodes) == 0.0)


def test_too_few_episodes_give_the_overall_mean(cluster, episodes_dir, tmp_path):
    episodes = read(files_of(episodes_dir, "cataract")).head(12)
    files = write_episodes(episodes, tmp_path / "few")
    result = cm.fit_on_dask(cluster, files, "in_bundle_cents", "poisson", YEARS)
    assert not result.fitted and "too few episodes" in result.reason
    mean = episodes["in_bundle_cents"].cast(pl.Float64).mean()
    assert result.mean_observed == pytest.approx(mean, rel=1e-12)
    assert np.allclose(result.expected(episodes), mean, rtol=1e-12)
    assert result.summary()["fitted"] is False


def test_rare_outcome_and_no_files_do_not_raise(cluster, episodes_dir):
    hip = read(files_of(episodes_dir, "hip_oa"))
    events = int(hip["complication"].sum())  # a few complications among a few dozen hips
    result = cm.fit_on_dask(
        cluster,
        files_of(episodes_dir, "hip_oa"),
        "complication",
        "logistic",
        YEARS,
        min_events=max(cm.MIN_EVENTS, events + 1),
    )
    assert not result.fitted
    assert ("perfectly separated" if events == 0 else "too few events") in result.reason
    assert result.mean_observed == pytest.approx(events / hip.height)
    assert np.all(result.expected(hip) == result.mean_observed)
    empty = cm.fit_on_dask(cluster, [], "in_bundle_cents", "poisson", YEARS)
    assert not empty.fitted and empty.reason == "no episodes"


def test_negative_costs_are_clipped_and_null_targets_counted(cluster, episodes_dir, tmp_path):
    episodes = read(files_of(episodes_dir, "cataract"))
    row = pl.int_range(pl.len())
    edited = episodes.with_columns(
        pl.when(row < 3)
        .then(-25_000)
        .when(row.is_between(3, 4))
        .then(None)
        .otherwise(pl.col("in_bundle_cents"))
        .alias("in_bundle_cents")
    )
    result = cm.fit_on_dask(cluster, write_episodes(edited, tmp_path / "credits"), "in_bundle_cents", "poisson", YEARS)
    assert result.fitted and result.n_clipped == 3 and result.n_excluded == 2
    local = cm.fit_files(write_episodes(edited, tmp_path / "credits"), "in_bundle_cents", "poisson", YEARS)
    assert (local.fitted, local.n, local.n_clipped, local.n_excluded) == (True, result.n, 3, 2)
    kept = edited.filter(pl.col("in_bundle_cents").is_not_null())
    assert result.n == kept.height
    X, _ = cm.design(kept, YEARS, columns=result.names)
    y = np.clip(kept["in_bundle_cents"].cast(pl.Float64).to_numpy(), 0, None)
    np.testing.assert_allclose(
        list(result.coefficients.values()), statsmodels_fit(X, y, "poisson").params, rtol=1e-4, atol=0
    )


def test_fit_local_degenerate_and_clipping():
    rng = np.random.default_rng(3)
    X = np.column_stack([np.ones(200), rng.normal(size=200)])
    assert cm.fit_local(X, np.zeros(200), "logistic").reason.startswith("perfectly separated")
    assert cm.fit_local(X, np.zeros(200), "poisson").reason == "every episode costs 0"
    y = np.exp(1 + 0.3 * X[:, 1]) * 100
    y[:5] = -50.0  # credits larger than the declarations
    result = cm.fit_local(X, y, "poisson")
    assert result.fitted and result.n_clipped == 5
    reference = statsmodels_fit(X, np.clip(y, 0, None), "poisson")
    np.testing.assert_allclose(list(result.coefficients.values()), reference.params, rtol=1e-8)


# --------------------------------------------------------------------------------------- design


def tiny_episodes(ages: list[int | None], years: list[int]) -> pl.DataFrame:
    n = len(ages)
    rng = np.random.default_rng(11)
    flags = {f: rng.random(n) < 0.3 for f in cm.CHRONIC_FLAGS}
    frame = pl.DataFrame(
        {
            "age_at_anchor": pl.Series(ages, dtype=pl.Int32),
            "sex": rng.choice(["M", "V"], n).tolist(),
            **{f: v.tolist() for f, v in flags.items()},
            "prior_year_standardised_cents": rng.integers(-1_000, 500_000, n),
            "anchor_year": years,
        }
    )
    return frame.with_columns(
        pl.sum_horizontal([pl.col(f).cast(pl.Int32) for f in cm.CHRONIC_FLAGS]).alias("n_chronic_conditions")
    )


def test_design_for_mothers_is_not_singular_and_says_what_it_dropped():
    rng = np.random.default_rng(5)
    ages = rng.integers(15, 51, 300).tolist()
    years = rng.choice([2018, 2019, 2020], 300).tolist()
    X, names = cm.design(tiny_episodes(ages, years), [2018, 2019, 2020])
    assert np.linalg.matrix_rank(X) == X.shape[1]
    assert names[0] == "intercept"
    assert {"age_00_29", "age_30_39"} <= set(names)
    assert not {"age_60_69", "age_80_plus", "n_chronic_conditions"} & set(names)
    assert X.dtype == np.float64 and X.shape[0] == 300


def test_design_keeps_rows_with_nulls_and_follows_its_column_order():
    frame = tiny_episodes([None, 45, 75, 85, 60, 33], [2019, 2019, 2020, 2020, 2019, 2020]).with_columns(
        pl.when(pl.int_range(pl.len()) == 1).then(None).otherwise(pl.col("sex")).alias("sex"),
        pl.when(pl.int_range(pl.len()) == 2)
        .then(None)
        .otherwise(pl.col("prior_year_standardised_cents"))
        .alias("prior_year_standardised_cents"),
        pl.when(pl.int_range(pl.len()) == 3).then(None).otherwise(pl.col("diabetes")).alias("diabetes"),
    )
    columns = cm.candidate_columns([2019, 2020])
    X, names = cm.design(frame, [2019, 2020], columns=columns)
    assert names == columns and X.shape == (6, len(columns))
    row = dict(zip(names, X[0]))  # null age: the reference band 70-79, i.e. no band set
    assert all(row[c] == 0 for c in names if c.startswith("age_"))
    assert dict(zip(names, X[2]))["log1p_prior_year_eur"] == 0.0  # null prior cost
    assert dict(zip(names, X[1]))["sex_v"] == 0.0
    assert dict(zip(names, X[3]))["diabetes"] == 0.0
    assert dict(zip(names, X[3]))["age_80_plus"] == 1.0
    assert dict(zip(names, X[5]))["age_30_39"] == 1.0
    assert list(X[:, names.index("year_2020")]) == [0, 0, 1, 1, 0, 1]
    with pytest.raises(ValueError, match="2021"):
        cm.design(frame.with_columns(pl.lit(2021).alias("anchor_year")), [2019, 2020])
