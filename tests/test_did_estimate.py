"""``zorgpad did estimate`` reproduces R ``did`` 2.5 on every reference scenario in
``reference/did_mpdta/r_ref/README.md`` (ATT(g,t), SE, the four aggregations, the pre-test; control
groups, covariates, methods, weights, clustering, universal base period, anticipation, repeated
cross-sections, fixed weights) to 3 decimals, through ``transforms.did`` and, for one scenario, through
the installed command; the never-treated codings agree; bad input gives one ``error:`` line; the report
opens in a browser, is rebuilt to the same bytes, and never replaces a folder of someone's files."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from data_docs_check import browser
from test_cli_safety import assert_one_error_line, zorgpad
from transforms.did.estimate import estimate
from transforms.did.inputs import DidInputError, DidOptions, prepare_panel, read_panel
from transforms.did.run import run_estimate

pytest.importorskip("csdid")

REF = Path(__file__).resolve().parents[1] / "reference" / "did_mpdta"
TOL = 5e-4  # "matches to 3 decimals"
MPDTA = dict(y="lemp", t="year", id="countyreal", g="first.treat")

#: scenario -> (data file, options), as in r_ref/README.md
ATTGT_SCENARIOS = {
    "mpdta_nev_dr": ("mpdta.csv", MPDTA),
    "mpdta_nyt_dr": ("mpdta.csv", {**MPDTA, "control": "not_yet_treated"}),
    "mpdta_nev_reg_cov": ("mpdta.csv", {**MPDTA, "x": ("lpop",), "method": "reg"}),
    "mpdta_nev_ipw": ("mpdta.csv", {**MPDTA, "method": "ipw"}),
    "sim_nev_dr": ("sim_data.csv", dict(y="Y", t="period", id="id", g="G", x=("X",))),
}
GAP_SCENARIOS = {
    "weighted": {"weights": "wt"},
    "clustered": {"cluster": "clust"},
    "universal": {"base_period": "universal"},
    "anticipation1": {"anticipation": 1},
    "rc": {"repeated_cross_sections": True},
}
FIX_WEIGHTS = ("none", "base_period", "first_period", "varying")


def reference(name: str) -> pl.DataFrame:
    return pl.read_csv(REF / "r_ref" / f"{name}.csv", null_values="NA")


_RESULTS: dict[tuple, object] = {}


def result_of(data: str, **options):
    """The estimate of one scenario, made once per test session."""
    key = (data, tuple(sorted((k, str(v)) for k, v in options.items())))
    if key not in _RESULTS:
        chosen = DidOptions(**options)
        _RESULTS[key] = estimate(prepare_panel(read_panel(REF / data), chosen), chosen)
    return _RESULTS[key]


def max_difference(
    ours: pl.DataFrame, theirs: pl.DataFrame, on: list[str], columns: dict[str, str]
) -> dict[str, float]:
    """Max absolute difference per column over the cells both have; the cells must be the same, and
    a value R leaves NA must be null here too."""
    joined = theirs.join(ours, on=on, how="full", suffix="_zorgpad", coalesce=True)
    assert joined.height == theirs.height == ours.height, (joined.height, theirs.height, ours.height)
    out = {}
    for ref_column, our_column in columns.items():
        ref, mine = joined[ref_column], joined[f"{our_column}_zorgpad" if our_column == ref_column else our_column]
        assert (ref.is_null() == mine.is_null()).all(), f"{ref_column}: NA in one and not the other"
        both = ref.is_not_null()
        out[ref_column] = float((ref.filter(both) - mine.filter(both)).abs().max() or 0.0)
    return out


def compare_att_gt(att_gt: pl.DataFrame, ref: pl.DataFrame, label: str) -> dict[str, float]:
    ours = att_gt.select("group", pl.col("time").alias("t"), "att", "se")
    diff = max_difference(ours, ref.select("group", "t", "att", "se"), ["group", "t"], {"att": "att", "se": "se"})
    print(f"{label}: max |ATT - R| {diff['att']:.1e}, max |SE - R| {diff['se']:.1e}")
    return diff


# ------------------------------------------------------------------------------ R references
@pytest.mark.parametrize("scenario", list(ATTGT_SCENARIOS))
def test_att_gt_matches_r(scenario):
    data, options = ATTGT_SCENARIOS[scenario]
    diff = compare_att_gt(
        result_of(data, **options).att_gt,
        reference("ref_attgt").filter(pl.col("scenario") == scenario),
        f"ref_attgt {scenario}",
    )
    assert diff["att"] < TOL and diff["se"] < TOL, diff


@pytest.mark.parametrize("scenario", list(ATTGT_SCENARIOS))
def test_aggregations_match_r(scenario):
    data, options = ATTGT_SCENARIOS[scenario]
    aggregations = result_of(data, **options).aggregations
    ref = reference("ref_aggte").filter(pl.col("scenario") == scenario)
    assert sorted(ref["type"].unique()) == sorted(aggregations["type"].unique())
    worst = 0.0
    for kind in ("simple", "dynamic", "group", "calendar"):
        ours = aggregations.filter(pl.col("type") == kind)
        theirs = ref.filter(pl.col("type") == kind)
        overall = ours.filter(pl.col("event_time").is_null() & pl.col("group").is_null() & pl.col("time").is_null())
        assert overall.height == 1, f"{kind}: one overall row with null index columns"
        worst = max(
            worst, abs(overall["att"][0] - theirs["overall_att"][0]), abs(overall["se"][0] - theirs["overall_se"][0])
        )
        if kind == "simple":
            assert ours.height == 1
            continue
        index = {"dynamic": "event_time", "group": "group", "calendar": "time"}[kind]
        rows = ours.filter(pl.col(index).is_not_null()).select(pl.col(index).alias("egt"), "att", "se")
        diff = max_difference(
            rows, theirs.select("egt", "att_egt", "se_egt"), ["egt"], {"att_egt": "att", "se_egt": "se"}
        )
        worst = max(worst, *diff.values())
        # ci columns are the pointwise 95% interval
        full = ours.drop_nulls(["se"])
        assert ((full["ci_high"] - full["att"]) - 1.959964 * full["se"]).abs().max() < 1e-6
    print(f"ref_aggte {scenario}: max |difference| over every egt row and overall, ATT and SE: {worst:.1e}")
    assert worst < TOL


@pytest.mark.parametrize("scenario", list(ATTGT_SCENARIOS))
def test_pretest_matches_r(scenario):
    data, options = ATTGT_SCENARIOS[scenario]
    pretest = result_of(data, **options).pretest
    ref = reference("ref_pretest").filter(pl.col("scenario") == scenario).row(0, named=True)
    print(
        f"ref_pretest {scenario}: |W - R| {abs(pretest['W'] - ref['W']):.1e}, "
        f"|p - R| {abs(pretest['p_value'] - ref['Wpval']):.1e} (R rounds p to 5 decimals)"
    )
    assert abs(pretest["W"] - ref["W"]) < TOL
    assert abs(pretest["p_value"] - ref["Wpval"]) < TOL
    assert round(pretest["p_value"], 5) == pytest.approx(pretest["p_value_csdid"], abs=1e-9)
    assert round(pretest["p_value"], 5) == pytest.approx(ref["Wpval"], abs=1e-9)  # R rounds p to 5 decimals
    assert pretest["df"] == int(
        (result_of(data, **options).att_gt["time"] < result_of(data, **options).att_gt["group"]).sum()
    )


@pytest.mark.parametrize("scenario", list(GAP_SCENARIOS))
def test_weights_clusters_base_period_anticipation_and_repeated_cross_sections_match_r(scenario):
    result = result_of("mpdta_extra.csv", **MPDTA, method="reg", **GAP_SCENARIOS[scenario])
    diff = compare_att_gt(
        result.att_gt, reference("ref_gaps").filter(pl.col("scenario") == scenario), f"ref_gaps {scenario}"
    )
    assert diff["att"] < TOL and diff["se"] < TOL, diff
    if scenario == "universal":  # each cohort's base cell: ATT 0 by construction, no SE (R: NA)
        base = result.att_gt.filter(pl.col("se").is_null())
        assert base.height == 3 and (base["att"] == 0).all() and (base["event_time"] == -1).all()


@pytest.mark.parametrize("fix", FIX_WEIGHTS)
def test_time_varying_weights_match_r(fix):
    """csdid 0.4.3 supports R's ``fix_weights``; the ``varying`` SEs of did 2.5.0 are said to carry
    a bug, but csdid reproduces them too, so they are compared like the rest."""
    result = result_of("mpdta_tvw.csv", **MPDTA, method="reg", weights="wt", fix_weights=fix)
    diff = compare_att_gt(
        result.att_gt, reference("ref_fixweights").filter(pl.col("fix_weights") == fix), f"ref_fixweights {fix}"
    )
    assert diff["att"] < TOL and diff["se"] < TOL, diff


# ------------------------------------------------------------------------------ codings and inputs
@pytest.fixture(scope="module")
def mpdta() -> pl.DataFrame:
    return pl.read_csv(REF / "mpdta.csv")


def _same_estimates(a, b, *, exact: bool = True) -> None:
    """The same tables; ``exact=False``: up to the rounding of sums taken in another unit order."""
    if exact:
        assert a.att_gt.equals(b.att_gt) and a.aggregations.equals(b.aggregations)
        assert a.pretest["W"] == b.pretest["W"]
    else:
        assert_frame_equal(a.att_gt, b.att_gt, check_exact=False, rel_tol=1e-10, abs_tol=1e-13)
        assert_frame_equal(a.aggregations, b.aggregations, check_exact=False, rel_tol=1e-10, abs_tol=1e-13)
        assert a.pretest["W"] == pytest.approx(b.pretest["W"], rel=1e-10)


@pytest.mark.parametrize("empty", ["null", "NaN"])
def test_never_treated_as_nan_gives_the_same_estimates_as_zero(mpdta, tmp_path, empty):
    never = pl.col("first.treat") == 0
    value = pl.lit(None, pl.Float64) if empty == "null" else pl.lit(float("nan"))
    coded = mpdta.with_columns(
        pl.when(never).then(value).otherwise(pl.col("first.treat").cast(pl.Float64)).alias("first.treat")
    )
    coded.write_parquet(tmp_path / "nan.parquet")
    options = DidOptions(**MPDTA, never_treated_coding="nan")
    prepared = prepare_panel(read_panel(tmp_path / "nan.parquet"), options)
    assert prepared.never_treated_units == 309 and prepared.never_treated_recoded == 309
    _same_estimates(estimate(prepared, options), result_of("mpdta.csv", **MPDTA))
    with pytest.raises(DidInputError, match="never-treated-coding nan"):  # the default coding refuses the NaNs
        prepare_panel(read_panel(tmp_path / "nan.parquet"), DidOptions(**MPDTA))


def test_a_hive_partitioned_parquet_folder_gives_the_same_estimates(mpdta, tmp_path):
    folder = tmp_path / "panel"
    for (year,), part in mpdta.partition_by("year", as_dict=True).items():
        (folder / f"year={year}").mkdir(parents=True)
        part.drop("year").write_parquet(folder / f"year={year}" / "part-0.parquet")
    (folder / "_SUCCESS").write_text("")
    options = DidOptions(**MPDTA)
    _same_estimates(estimate(prepare_panel(read_panel(folder), options), options), result_of("mpdta.csv", **MPDTA))


def test_text_unit_ids_are_coded_and_give_the_same_estimates(mpdta):
    """csdid needs numeric ids; an AGB code or a pseudonym is text: coded in sorted order."""
    texts = mpdta.with_columns(pl.format("county-{}", pl.col("countyreal")).alias("countyreal"))
    options = DidOptions(**MPDTA)
    _same_estimates(estimate(prepare_panel(texts, options), options), result_of("mpdta.csv", **MPDTA), exact=False)


def test_bootstrap_is_close_to_analytic_and_reproducible_with_its_seed():
    options = DidOptions(**MPDTA, bootstrap=True, bootstrap_draws=999, seed=11)
    prepared = prepare_panel(read_panel(REF / "mpdta.csv"), options)
    first, again = estimate(prepared, options), estimate(prepared, options)
    _same_estimates(first, again)
    analytic = result_of("mpdta.csv", **MPDTA)
    assert first.att_gt["att"].equals(analytic.att_gt["att"])
    for ours, theirs in ((first.att_gt, analytic.att_gt), (first.aggregations, analytic.aggregations)):
        ratio = (ours["se"] / theirs["se"]).drop_nulls()
        print(f"bootstrap / analytic SE: {ratio.min():.3f} to {ratio.max():.3f}")
        assert ratio.len() == ours.height and ratio.min() > 0.8 and ratio.max() < 1.2
    other = estimate(prepared, options.model_copy(update={"seed": 12}))
    assert not other.att_gt["se"].equals(first.att_gt["se"])
    assert first.pretest["W"] == analytic.pretest["W"]  # the pre-test always uses the analytic variance


def test_the_report_folder_is_rebuilt_to_the_same_bytes(tmp_path):
    out = tmp_path / "report"
    first = run_estimate(REF / "mpdta.csv", out, DidOptions(**MPDTA))
    hashes = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in out.iterdir() if p.name != "manifest.json"}
    again = run_estimate(REF / "mpdta.csv", out, DidOptions(**MPDTA))
    assert {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in out.iterdir() if p.name != "manifest.json"
    } == hashes
    assert first["files"] == again["files"] and sorted(hashes) == sorted(first["files"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]  # no work folder or lock left behind
    assert first["input"]["sha256"] == hashlib.sha256((REF / "mpdta.csv").read_bytes()).hexdigest()
    assert first["estimator"]["version"] == "0.4.3" and first["rows"]["units"] == 500
    pretest = pl.read_parquet(out / "pretest.parquet").row(0, named=True)
    assert pretest["W"] == pytest.approx(7.79123662720035, abs=1e-9) and pretest["df"] == 5


# ------------------------------------------------------------------------------ the command
def test_the_command_on_mpdta_csv_matches_r_and_its_report_renders(tmp_path):
    out = tmp_path / "report"
    done = zorgpad(
        tmp_path,
        "did",
        "estimate",
        str(REF / "mpdta.csv"),
        "--y",
        "lemp",
        "--t",
        "year",
        "--id",
        "countyreal",
        "--g",
        "first.treat",
        "--out",
        str(out),
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    headline = (
        "After the start, treated units' lemp was 0.040 lower on average (95% CI -0.064 to -0.016); "
        "the pre-trend test does not reject parallel trends (p = 0.17)."
    )
    assert headline in done.stdout
    att_gt = pl.read_parquet(out / "att_gt.parquet")
    assert att_gt.columns[:4] == ["group", "time", "event_time", "post"]
    assert {"att", "se", "ci_low", "ci_high", "n_group"} <= set(att_gt.columns)
    diff = compare_att_gt(
        att_gt, reference("ref_attgt").filter(pl.col("scenario") == "mpdta_nev_dr"), "command ref_attgt mpdta_nev_dr"
    )
    assert diff["att"] < TOL and diff["se"] < TOL
    aggregations = pl.read_parquet(out / "aggregations.parquet")
    assert aggregations.columns == ["type", "event_time", "group", "time", "att", "se", "ci_low", "ci_high"]
    ref = reference("ref_aggte").filter(pl.col("scenario") == "mpdta_nev_dr")
    for kind in ("simple", "dynamic", "group", "calendar"):
        overall = aggregations.filter(
            (pl.col("type") == kind)
            & pl.col("event_time").is_null()
            & pl.col("group").is_null()
            & pl.col("time").is_null()
        )
        assert overall.height == 1
        assert abs(overall["att"][0] - ref.filter(pl.col("type") == kind)["overall_att"][0]) < TOL
    dynamic = aggregations.filter((pl.col("type") == "dynamic") & pl.col("event_time").is_not_null())
    assert dynamic["event_time"].to_list() == [-3, -2, -1, 0, 1, 2, 3]
    assert np.allclose(
        dynamic["att"].to_numpy(), ref.filter(pl.col("type") == "dynamic")["att_egt"].to_numpy(), atol=TOL
    )

    page = (out / "report.html").read_text(encoding="utf-8")
    assert not re.search(r"<(script|link)\b", page, re.IGNORECASE) and "http://" not in page and "https://" not in page
    assert "data:image/png;base64," in page and (out / "event_study.png").read_bytes()[:4] == b"\x89PNG"
    if browser():
        dom = subprocess.run(
            [
                browser(),
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--host-resolver-rules=MAP * ~NOTFOUND",
                "--virtual-time-budget=5000",
                "--dump-dom",
                (out / "report.html").resolve().as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert headline in dom.stdout, dom.stderr[-2000:]
        assert "ATT(g,t)" in dom.stdout and "Pre-trend test" in dom.stdout


def test_a_folder_of_someone_elses_files_is_never_the_report(tmp_path):
    out = tmp_path / "thesis"
    out.mkdir()
    (out / "chapter1.docx").write_text("mine")
    done = zorgpad(
        tmp_path,
        "did",
        "estimate",
        str(REF / "mpdta.csv"),
        "--y",
        "lemp",
        "--t",
        "year",
        "--id",
        "countyreal",
        "--g",
        "first.treat",
        "--out",
        str(out),
    )
    assert_one_error_line(done, "holds files that are not a zorgpad DiD report folder", "chapter1.docx")
    assert sorted(p.name for p in out.iterdir()) == ["chapter1.docx"] and (out / "chapter1.docx").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "prefect-home") == ["thesis"]


@pytest.fixture(scope="module")
def bad_panels(tmp_path_factory, mpdta) -> Path:
    """Panels with one thing wrong each (the BSN-like panel's ids and starts are nine digits)."""
    folder = tmp_path_factory.mktemp("bad-panels")
    g = pl.col("first.treat")
    mpdta.with_columns(pl.format("{} jobs", pl.col("lemp")).alias("lemp")).write_parquet(folder / "text_y.parquet")
    mpdta.with_columns(pl.when(g > 0).then(g - 2000).otherwise(g).alias("first.treat")).write_csv(
        folder / "g_scale.csv"
    )
    mpdta.filter(g != 0).write_csv(folder / "no_never.csv")
    mpdta.with_columns(pl.when(g == 0).then(None).otherwise(g).alias("first.treat")).write_csv(folder / "empty_g.csv")
    pl.concat([mpdta, mpdta.head(3)]).write_csv(folder / "duplicates.csv")
    mpdta.with_columns(
        pl.when((pl.col("year") == 2007) & (g == 2007)).then(2006).otherwise(g).alias("first.treat")
    ).write_csv(folder / "moving_g.csv")
    bsn = (pl.col("countyreal") * 7 + 111_111_111).alias("countyreal")
    mpdta.with_columns(
        bsn, pl.when(g == 2004).then(pl.col("countyreal") * 7 + 111_111_111).otherwise(g).alias("first.treat")
    ).write_csv(folder / "bsn.csv")
    shutil.copy(REF / "mpdta.csv", folder / "mpdta.csv")
    return folder


BAD_INPUTS = {
    "missing panel": (["missing.csv"], "does not exist"),
    "missing column": (["mpdta.csv", "--y", "employment"], "no column 'employment'"),
    "missing covariate": (["mpdta.csv", "--x", "lpop,income"], "no column 'income'"),
    "text outcome": (["text_y.parquet"], "--y lemp must be numeric"),
    "starts not periods": (["g_scale.csv"], "not periods of --t year"),
    "no never treated": (["no_never.csv"], "needs never-treated units"),
    "empty G, zero coding": (["empty_g.csv"], "--never-treated-coding nan"),
    "G = 0, nan coding": (["mpdta.csv", "--never-treated-coding", "nan"], "--never-treated-coding zero"),
    "duplicate unit-periods": (["duplicates.csv"], "repeat a unit"),
    "G changes within a unit": (["moving_g.csv"], "changes over time"),
    "BSN-like ids": (["bsn.csv"], "not shown"),
    "unknown control": (["mpdta.csv", "--control", "everyone"], "--control everyone"),
    "unknown method": (["mpdta.csv", "--method", "ols"], "--method ols"),
    "unknown base period": (["mpdta.csv", "--base-period", "first"], "--base-period first"),
    "unknown coding": (["mpdta.csv", "--never-treated-coding", "minus1"], "--never-treated-coding minus1"),
    "negative anticipation": (["mpdta.csv", "--anticipation", "-1"], "--anticipation"),
    "report holds the panel": (["mpdta.csv", "--out", "{panels}"], "contains the panel"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_gives_one_error_line(bad_panels, tmp_path, case):
    (panel, *extra), fragment = BAD_INPUTS[case]
    extra = [a.format(panels=bad_panels) for a in extra]
    if "--out" not in extra:
        extra += ["--out", str(tmp_path / "report")]
    columns = [a for option, column in MPDTA.items() for a in (f"--{option}", column)]
    before = sorted(p.name for p in bad_panels.iterdir())
    done = zorgpad(tmp_path, "did", "estimate", str(bad_panels / panel), *columns, *extra)
    line = assert_one_error_line(done, fragment)
    assert sorted(p.name for p in bad_panels.iterdir()) == before
    assert not re.search(r"\d{9}", done.stdout + done.stderr), "an identifier was printed"
    assert not (tmp_path / "report").exists(), line
