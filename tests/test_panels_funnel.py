"""Observed / expected, funnel limits, overdispersion and shrinkage (transforms.panels.funnel)
against numbers computed here in plain Python, and on synthetic provider sets with a fixed seed."""

from __future__ import annotations

import math
import statistics

import numpy as np
import polars as pl
import pytest

from transforms.panels import casemix as cm
from transforms.panels import funnel as fu

Z95 = 1.96
Z998 = 3.090232306167813  # scipy.stats.norm.ppf(0.999)


# ------------------------------------------------------------------------ plain-Python references


def quantile7(values: list[float], q: float) -> float:
    """R's default quantile (type 7, linear interpolation), as FunnelPlotR's winsorisation uses."""
    v = sorted(values)
    h = (len(v) - 1) * q
    lo = math.floor(h)
    return v[lo] if lo + 1 >= len(v) else v[lo] + (h - lo) * (v[lo + 1] - v[lo])


def dersimonian_laird(z: list[float], se0: list[float], trim: float = 0.1) -> tuple[float, float]:
    """phi and tau2 the way FunnelPlotR's R/od_adjustment.R computes them (winsorisation,
    phi_func, tau_func), with docs/panels-spec.md's rule that phi <= 1 means no adjustment."""
    low, high = quantile7(z, trim), quantile7(z, 1 - trim)
    wz = [min(max(v, low), high) for v in z]
    n = len(z)
    phi = sum(v * v for v in wz) / n
    w = [1 / s**2 for s in se0]
    if phi <= 1 or n * phi < n - 1:
        return phi, 0.0
    return phi, max(0.0, (n * phi - (n - 1)) / (sum(w) - sum(x * x for x in w) / sum(w)))


def by_provider(rows: list[tuple[str, float, float]]) -> dict[str, list[tuple[float, float]]]:
    out: dict[str, list[tuple[float, float]]] = {}
    for provider, y, yhat in rows:
        out.setdefault(provider, []).append((y, yhat))
    return out


def plain_cost_funnel(rows: list[tuple[str, float, float]]) -> dict[str, dict[str, float]]:
    """Every cost column of cells() + funnel() for one comparison group, in plain Python."""
    ratios = [y / yhat for _, y, yhat in rows]
    cv = statistics.stdev(ratios) / statistics.mean(ratios)
    out = {}
    for provider, eps in by_provider(rows).items():
        n = len(eps)
        observed = sum(y for y, _ in eps)
        expected = sum(yhat for _, yhat in eps)
        oe = observed / expected
        se_oe = math.sqrt(sum((y - yhat) ** 2 for y, yhat in eps)) / expected
        se0 = cv / math.sqrt(n)
        out[provider] = {
            "n": n,
            "observed": observed,
            "expected": expected,
            "oe": oe,
            "se_oe": se_oe,
            "oe_ci95_low": oe - Z95 * se_oe,
            "oe_ci95_high": oe + Z95 * se_oe,
            "ratio_sum": sum(y / yhat for y, yhat in eps),
            "ratio_sq_sum": sum((y / yhat) ** 2 for y, yhat in eps),
            "cv_pooled": cv,
            "se0": se0,
            "z": (oe - 1) / se0,
            "limit95_low": 1 - Z95 * se0,
            "limit95_high": 1 + Z95 * se0,
            "limit998_low": 1 - Z998 * se0,
            "limit998_high": 1 + Z998 * se0,
        }
    phi, tau2 = dersimonian_laird([c["z"] for c in out.values()], [c["se0"] for c in out.values()])
    for c in out.values():
        c["phi"], c["tau2"] = phi, tau2
        inflate = math.sqrt(phi) if phi > 1 else 1.0
        additive = math.sqrt(c["se0"] ** 2 + tau2)
        c["limit998_mult_high"] = 1 + Z998 * c["se0"] * inflate
        c["limit95_adj_low"] = 1 - Z95 * additive
        c["limit998_adj_high"] = 1 + Z998 * additive
        weight = tau2 / (tau2 + c["se_oe"] ** 2)
        c["oe_shrunk"] = 1 + (c["oe"] - 1) * weight
    return out


def frame(rows: list[tuple[str, float, float]], year: int = 2021) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "provider": [r[0] for r in rows],
            "year": [year] * len(rows),
            "y": [r[1] for r in rows],
            "yhat": [r[2] for r in rows],
        },
        schema={"provider": pl.String, "year": pl.Int64, "y": pl.Int64, "yhat": pl.Float64},
    )


def rows_of(result: pl.DataFrame) -> dict[str, dict]:
    return {row["provider"]: row for row in result.iter_rows(named=True)}


# ----------------------------------------------------------------------------- hand-computed

HAND = [
    ("A", 100, 80.0),
    ("A", 50, 60.0),
    ("A", 120, 100.0),
    ("B", 200, 150.0),
    ("B", 90, 100.0),
    ("C", 70, 80.0),
    ("C", 60, 75.0),
    ("C", 110, 100.0),
    ("C", 95, 90.0),
    ("D", 300, 180.0),
    ("D", 150, 140.0),
]


def test_cost_cells_and_limits_equal_the_hand_computation():
    expected = plain_cost_funnel(HAND)
    cells = fu.cells(frame(HAND), ["year", "provider"], "y", "yhat", "cost")
    assert cells["provider"].to_list() == ["A", "B", "C", "D"]
    assert cells.schema["observed"] == pl.Int64  # exact cents
    assert cells["observed"].to_list() == [270, 290, 335, 450]
    result = fu.funnel(cells, ["year"], "cost")
    got = rows_of(result)
    for provider, want in expected.items():
        for column, value in want.items():
            assert got[provider][column] == pytest.approx(value, rel=1e-12, abs=1e-15), (provider, column)
    assert result["phi"].n_unique() == 1 and result["group_cells"].to_list() == [4] * 4


def test_binary_cells_use_the_binomial_variance():
    rows = [
        ("A", True, 0.2),
        ("A", False, 0.1),
        ("A", False, 0.3),
        ("B", True, 0.5),
        ("B", True, 0.4),
        ("C", False, 0.05),
        ("C", False, 0.15),
        ("C", True, 0.25),
        ("C", False, 0.1),
    ]
    episodes = pl.DataFrame({"provider": [r[0] for r in rows], "y": [r[1] for r in rows], "p": [r[2] for r in rows]})
    result = fu.funnel(fu.cells(episodes, ["provider"], "y", "p", "binary"), [], "binary")
    got = rows_of(result)
    for provider, eps in by_provider(rows).items():
        events = sum(1 for y, _ in eps if y)
        expected = sum(p for _, p in eps)
        variance = sum(p * (1 - p) for _, p in eps)
        se0 = math.sqrt(variance) / expected
        row = got[provider]
        assert row["observed"] == events
        assert row["observed_rate"] == pytest.approx(events / len(eps), rel=1e-12)
        assert row["expected_rate"] == pytest.approx(expected / len(eps), rel=1e-12)
        assert row["oe"] == pytest.approx(events / expected, rel=1e-12)
        assert row["se_oe"] == pytest.approx(math.sqrt(sum((y - p) ** 2 for y, p in eps)) / expected, rel=1e-12)
        assert row["se0"] == pytest.approx(se0, rel=1e-12)
        assert row["limit998_low"] == pytest.approx(1 - Z998 * se0, rel=1e-12)
        assert row["limit95_high"] == pytest.approx(1 + Z95 * se0, rel=1e-12)


def test_the_99_8_percent_z_is_scipys():
    assert fu.Z998 == pytest.approx(Z998, rel=1e-15) and fu.Z95 == 1.96


# --------------------------------------------------------------------------------- properties


def copies_of_the_same_episodes(kind: str, providers: int = 6) -> pl.DataFrame:
    """Every provider has copies of the same 80 episodes; the model is fitted on all of them."""
    rng = np.random.default_rng(21)
    age = rng.integers(50, 90, 80).astype(float)
    sex = rng.integers(0, 2, 80).astype(float)
    X1 = np.column_stack([np.ones(80), (age - 70) / 10, sex])
    if kind == "cost":
        y1 = np.round(np.exp(13 + 0.1 * X1[:, 1] + 0.05 * X1[:, 2]) * rng.lognormal(0, 0.3, 80))
    else:
        y1 = (rng.random(80) < 0.3).astype(float)
    X, y = np.tile(X1, (providers, 1)), np.tile(y1, providers)
    model = cm.fit_local(X, y, "poisson" if kind == "cost" else "logistic")
    assert model.fitted
    return pl.DataFrame(
        {
            "provider": np.repeat([f"p{i}" for i in range(providers)], 80),
            "y": y.astype(np.int64) if kind == "cost" else y.astype(bool),
            "yhat": model.predict(X),
        }
    )


@pytest.mark.parametrize("kind", ["cost", "binary"])
def test_copies_of_the_same_episodes_give_oe_one_everywhere(kind):
    result = fu.funnel(fu.cells(copies_of_the_same_episodes(kind), ["provider"], "y", "yhat", kind), [], kind)
    oe = result["oe"].to_numpy()
    assert np.all(np.abs(oe - 1) < 1e-12)
    assert oe.max() - oe.min() <= 1e-15
    assert result["outlier"].null_count() == result.height
    assert result["phi"][0] < 1e-20 and result["tau2"][0] == 0.0


def providers(
    seed: int,
    n_providers: int = 30,
    between_sd: float = 0.04,
    planted: float | None = None,
    planted_n: int = 150,
    episode_sigma: float = 0.35,
) -> tuple[pl.DataFrame, str | None]:
    """Episodes of ``n_providers`` hospitals: case-mix expected cost lognormal around EUR 10,000
    (sd 25%), a provider effect exp(N(0, between_sd)) and an episode-level lognormal noise with mean 1
    (CV about 36% at sigma 0.35, right-skewed like episode costs). ``planted``: the first provider's
    effect is exactly that factor, at ``planted_n`` episodes."""
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(n_providers):
        n = planted_n if (planted and i == 0) else int(rng.integers(60, 400))
        effect = planted if (planted and i == 0) else float(np.exp(rng.normal(0, between_sd)))
        yhat = 1_000_000 * rng.lognormal(0, 0.25, n)
        noise = rng.lognormal(-(episode_sigma**2) / 2, episode_sigma, n)
        frames.append(
            pl.DataFrame({"provider": f"h{i:02d}", "y": np.round(yhat * effect * noise).astype(np.int64), "yhat": yhat})
        )
    return pl.concat(frames), ("h00" if planted else None)


def test_overdispersion_and_tau2_match_dersimonian_laird_in_plain_python():
    episodes, _ = providers(seed=4, n_providers=25, between_sd=0.15)
    rows = list(zip(episodes["provider"].to_list(), episodes["y"].to_list(), episodes["yhat"].to_list()))
    want = plain_cost_funnel(rows)
    got = rows_of(fu.funnel(fu.cells(episodes, ["provider"], "y", "yhat", "cost"), [], "cost"))
    first = next(iter(want.values()))
    assert first["phi"] > 1 and first["tau2"] > 0
    for provider, w in want.items():
        g = got[provider]
        assert g["overdispersed"] is True
        for column in ("z", "phi", "tau2", "limit998_mult_high", "limit95_adj_low", "limit998_adj_high", "oe_shrunk"):
            assert g[column] == pytest.approx(w[column], rel=1e-9), (provider, column)
        assert g["limit95_mult_low"] == pytest.approx(1 - Z95 * g["se0"] * math.sqrt(g["phi"]), rel=1e-12)


def test_without_overdispersion_the_adjusted_limits_are_the_unadjusted_ones():
    episodes, _ = providers(seed=8, between_sd=0.0)
    result = fu.funnel(fu.cells(episodes, ["provider"], "y", "yhat", "cost"), [], "cost")
    assert result["phi"][0] <= 1, "a homogeneous set of providers is not overdispersed"
    assert (result["tau2"] == 0).all() and not result["overdispersed"].any()
    for label in ("95", "998"):
        for side in ("low", "high"):
            plain = result[f"limit{label}_{side}"]
            assert result[f"limit{label}_adj_{side}"].equals(plain)
            assert result[f"limit{label}_mult_{side}"].equals(plain)
    assert (result["oe_shrunk"] == 1.0).all()  # no between-provider variance: all shrunk to the target


def test_phi_just_below_one_gives_no_tau2_where_funnelplotr_would():
    """With (n - 1) / n <= phi <= 1 FunnelPlotR's tau_func returns a small positive tau2; docs/panels-spec.md
    says no adjustment without overdispersion."""
    n = 20
    expected = np.linspace(20, 200, n)
    se0 = np.sqrt(expected * 0.9) / expected  # p = 0.1 for every episode
    z = np.sqrt(0.97) * np.where(np.arange(n) % 2 == 0, 1.0, -1.0)  # all |z| equal: nothing winsorised
    cells = pl.DataFrame(
        {
            "cell": range(n),
            "n": (expected * 10).astype(np.int64),
            "expected": expected,
            "binomial_var_sum": expected * 0.9,
            "oe": 1 + z * se0,
            "se_oe": se0,
        }
    )
    result = fu.funnel(cells, [], "binary")
    assert result["phi"][0] == pytest.approx(0.97, rel=1e-12)
    w = 1 / se0**2
    funnelplotr_tau2 = (n * 0.97 - (n - 1)) / (w.sum() - (w**2).sum() / w.sum())
    assert funnelplotr_tau2 > 0
    assert (result["tau2"] == 0).all()
    assert result["limit998_adj_high"].equals(result["limit998_high"])


def test_a_provider_planted_20_percent_costlier_is_the_only_high_outlier():
    episodes, planted = providers(seed=2024, planted=1.2)
    result = fu.funnel(fu.cells(episodes, ["provider"], "y", "yhat", "cost"), [], "cost")
    flagged = result.filter(pl.col("outlier").is_not_null()).select("provider", "outlier").rows()
    assert flagged == [(planted, "high")]
    row = rows_of(result)[planted]
    assert row["overdispersed"] and row["limit998_high"] < row["limit998_adj_high"] < row["oe"]


def test_shrinkage_pulls_small_cells_more_than_large_ones():
    episodes, _ = providers(seed=5, n_providers=20, between_sd=0.1)
    small = pl.DataFrame(
        {
            "provider": "small",
            "y": [
                1_300_000,
                900_000,
                1_500_000,
                1_100_000,
                1_250_000,
                1_400_000,
                1_000_000,
                1_350_000,
                1_200_000,
                1_150_000,
            ],
            "yhat": [1_000_000.0] * 10,
        }
    )
    large = pl.concat([small.with_columns(pl.lit("large").alias("provider"))] * 20)  # same O/E, 20x volume
    result = fu.funnel(fu.cells(pl.concat([episodes, small, large]), ["provider"], "y", "yhat", "cost"), [], "cost")
    got = rows_of(result)
    assert got["small"]["oe"] == pytest.approx(got["large"]["oe"], rel=1e-12)
    assert result["tau2"][0] > 0
    pull_small = (got["small"]["oe"] - got["small"]["oe_shrunk"]) / (got["small"]["oe"] - 1)
    pull_large = (got["large"]["oe"] - got["large"]["oe_shrunk"]) / (got["large"]["oe"] - 1)
    assert 0 < pull_large < pull_small < 1
    others = result.filter(~pl.col("provider").is_in(["small", "large"]))
    n_rank = others["n"].rank().to_numpy()
    weight_rank = others["shrinkage_weight"].rank().to_numpy()
    assert np.corrcoef(n_rank, weight_rank)[0, 1] > 0.8


def test_cells_are_per_group_and_refuse_bad_inputs():
    rows = [(p, y, yhat) for p, y, yhat in HAND]
    both = pl.concat([frame(rows, 2020), frame(rows, 2021).with_columns(pl.col("y") * 2)])
    result = fu.funnel(fu.cells(both, ["year", "provider"], "y", "yhat", "cost"), ["year"], "cost")
    by_year = result.group_by("year").agg(pl.col("phi").first(), pl.col("cv_pooled").first()).sort("year")
    assert by_year["phi"][0] != by_year["phi"][1]  # each year is its own comparison group
    with pytest.raises(ValueError, match="null"):
        fu.cells(
            frame(rows).with_columns(pl.lit(None, dtype=pl.Float64).alias("yhat")), ["provider"], "y", "yhat", "cost"
        )
    with pytest.raises(ValueError, match="outside"):
        fu.cells(
            frame(rows).with_columns(pl.lit(True).alias("y"), pl.lit(1.5).alias("yhat")),
            ["provider"],
            "y",
            "yhat",
            "binary",
        )
    with pytest.raises(ValueError, match="negative"):
        fu.cells(frame(rows).with_columns(-pl.col("yhat")), ["provider"], "y", "yhat", "cost")


def test_an_outcome_nobody_had_gives_empty_limits_not_an_error():
    """A degenerate case-mix model of an outcome without events predicts a rate of 0 everywhere."""
    episodes = pl.DataFrame({"provider": ["A", "A", "B", "B", "B"], "y": [False] * 5, "p": [0.0] * 5})
    result = fu.funnel(fu.cells(episodes, ["provider"], "y", "p", "binary"), [], "binary")
    assert result["observed"].to_list() == [0, 0] and result["expected"].to_list() == [0.0, 0.0]
    assert result["oe"].null_count() == 2 and result["se0"].null_count() == 2
    assert result["outlier"].null_count() == 2 and result["tau2"].to_list() == [0.0, 0.0]
