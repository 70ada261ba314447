"""``zorgpad panel build`` for unit ``gemeente_year`` (the Vektis regional panel): a Vektis folder
written by the real ``zorgpad ingest-vektis`` (2017-2022, in its own process while a small delivery
is generated, ingested and its episodes built), and every number of the panel checked against an
independent computation from the harmonised table, the store's contracts and providers and the
episodes: cost per insured-year to the cent, cohorts from the providers' gemeenten (0 = never
treated, treated before the first year left out and counted), covariates fixed at their
pre-treatment mean, the balanced flag, n_episodes, attrition that adds up; a wrong outcome or a
missing --vektis is one error naming it; --estimate clusters by gemeente."""

from __future__ import annotations

import json
import subprocess
from datetime import date
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
import yaml

from test_cli_safety import ZORGPAD, assert_one_error_line, environment, zorgpad
from transforms.did_panel import gemeente
from transforms.did_panel.estimates import options_for
from transforms.did_panel.run import build_panel, preflight
from transforms.did_panel.spec import SpecError, load_spec, parse_spec
from transforms.episodes.run import build_episodes
from transforms.ingest.run import ingest
from transforms.panels.inputs import read_contracts, read_episodes
from transforms.synth import SynthConfig, generate_delivery
from transforms.vektis.storage import read_long

# integration: a generated delivery and the Vektis data through the gemeente panel
pytestmark = pytest.mark.integration

BUNDLES = ["hip_oa", "knee_oa"]
VEKTIS_YEARS = (2017, 2022)
SPEC = {
    "name": "gemeente_cost",
    "bundles": BUNDLES,
    "unit": "gemeente_year",
    "years": list(VEKTIS_YEARS),
    "outcomes": ["total_cents_per_insured_year", "msz_cents_per_insured_year", "insured_years"],
    "covariates": ["share_female", "share_65_plus", "mean_age"],
    "cluster": "gemeente_code",
    "weights": "episodes",
}


def write_spec(folder: Path, name: str, **changes) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({**SPEC, **changes}), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("gemeente_year")
    assert ZORGPAD, "the zorgpad command is not installed (pip install -e .)"
    # the real command, in its own process (and Prefect home) while this one builds the store
    log = (root / "ingest-vektis.log").open("w")
    vektis = subprocess.Popen(
        [ZORGPAD, "ingest-vektis", "--out", str(root / "vektis"), "--years", f"{VEKTIS_YEARS[0]}-{VEKTIS_YEARS[1]}"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=environment(root),
    )
    try:
        generate_delivery(SynthConfig(patients=4_000, seed=11, clean=True, block_size=4_000), root / "delivery")
        ingest(root / "delivery", root / "store", n_buckets=4, data_docs=False)
        build_episodes(root / "store", root / "episodes")
        assert vektis.wait(timeout=600) == 0, (root / "ingest-vektis.log").read_text()
    finally:
        if vektis.poll() is None:
            vektis.kill()
        log.close()
    return {"root": root, "store": root / "store", "episodes": root / "episodes", "vektis": root / "vektis"}


@pytest.fixture(scope="module")
def built(inputs) -> dict:
    spec = write_spec(inputs["root"], "spec")
    manifest = build_panel(spec, inputs["store"], inputs["episodes"], inputs["root"] / "panel", vektis=inputs["vektis"])
    out = Path(manifest["out"])
    return {
        "spec": spec,
        "manifest": manifest,
        "out": out,
        "panel": pl.read_parquet(out / "adapters" / "did.parquet"),
        "attrition": pl.read_parquet(out / "attrition"),
        "long": read_long(inputs["vektis"] / "vektis_long"),
    }


def provider_gemeente_cohorts(store: Path, first: int, last: int) -> dict[str, int]:
    """gemeente -> first contract year (for the bundles) of a provider located there, from the store."""
    contracts = read_contracts(store).filter(pl.col("bundle_id").is_in(BUNDLES))
    providers = pl.read_parquet(sorted((store / "providers").rglob("*.parquet")))
    starts: dict[str, date] = {}
    for agb, start in contracts.select("provider_agb", "start_date").iter_rows():
        code = providers.filter(pl.col("provider_agb") == agb)["gemeente_code"][0]
        starts[code] = min(start, starts.get(code, start))
    return {code: (start.year if start.year <= last else 0) for code, start in starts.items()}


# ------------------------------------------------------------------------------ outcomes
def test_cost_per_insured_year_is_the_vektis_cents_sum_over_insured_years(built):
    long = built["long"].filter(pl.col("release") == "final")
    panel = built["panel"]
    # one gemeente-year by hand, in Decimal, from the harmonised rows
    code, year = "GM0363", 2020
    rows = long.filter((pl.col("gemeente_code") == code) & (pl.col("year") == year))
    cents = sum(Decimal(v) for v, c in rows.select("value_cents", "category").iter_rows() if c != "population")
    msz = sum(Decimal(v) for v, c in rows.select("value_cents", "category").iter_rows() if c == "msz")
    years = sum(Decimal(v) for v, m in rows.select("value_cents", "measure").iter_rows() if m == "insured_years") / 100
    row = panel.filter((pl.col("gemeente_code") == code) & (pl.col("period") == year)).row(0, named=True)
    assert row["insured_years"] == float(years)
    assert abs(Decimal(row["total_cents_per_insured_year"]) - cents / years) < Decimal("1e-9")
    assert abs(Decimal(row["msz_cents_per_insured_year"]) - msz / years) < Decimal("1e-9")
    assert 100_000 < row["total_cents_per_insured_year"] < 1_000_000  # EUR 1,000-10,000 per insured-year
    # every gemeente-year, from a pivot of the harmonised table
    wide = (
        long.filter(pl.col("gemeente_code").is_not_null())
        .with_columns(
            pl.when(pl.col("measure") == "insured_years")
            .then(pl.lit("iy"))
            .when(pl.col("category") == "population")
            .then(pl.lit("persons"))
            .otherwise(pl.lit("cost"))
            .alias("kind")
        )
        .pivot("kind", index=["gemeente_code", "year"], values="value_cents", aggregate_function="sum")
    )
    expected = wide.select(
        "gemeente_code",
        pl.col("year").cast(pl.Int32).alias("period"),
        (pl.col("cost") / (pl.col("iy") / 100)).alias("expected"),
    )
    joined = panel.join(expected, on=["gemeente_code", "period"], how="full", coalesce=True)
    assert joined.height == panel.height == expected.height
    worst = joined.select(
        ((pl.col("total_cents_per_insured_year") - pl.col("expected")).abs() / pl.col("expected")).max()
    ).item()
    assert worst < 1e-12, worst


def test_rows_units_and_shared_columns(built, inputs):
    panel, manifest = built["panel"], built["manifest"]
    assert not panel.select("unit_id", "period").is_duplicated().any()
    assert (panel["unit_id"] == panel["gemeente_code"]).all()
    assert panel["provider_agb"].is_null().all() and panel["n_lines"].is_null().all()
    assert (panel["bundle_id"] == "hip_oa+knee_oa").all()
    assert sorted(panel["period"].unique()) == list(range(VEKTIS_YEARS[0], VEKTIS_YEARS[1] + 1))
    assert panel["gemeente_code"].str.contains(r"^GM\d{4}$").all()
    assert manifest["unit"] == "gemeente_year" and manifest["rows"]["units"] == panel["unit_id"].n_unique()
    assert manifest["vektis"]["path"] == str(inputs["vektis"].resolve())
    assert manifest["vektis"]["releases"] == [f"{y}/final" for y in range(VEKTIS_YEARS[0], VEKTIS_YEARS[1] + 1)]
    assert panel["completion_lines"].is_not_null().any()  # the store's maturity per period, unchanged


def test_a_rebuild_gives_the_same_content_hash(built, inputs, tmp_path):
    again = build_panel(built["spec"], inputs["store"], inputs["episodes"], tmp_path / "again", vektis=inputs["vektis"])
    assert again["content_sha256"] == built["manifest"]["content_sha256"]


# ------------------------------------------------------------------------------ treatment
def test_cohorts_come_from_the_providers_gemeenten(built, inputs):
    expected = provider_gemeente_cohorts(inputs["store"], *VEKTIS_YEARS)
    assert expected and all(v > 0 for v in expected.values())  # nobody treated before 2017 or after 2022
    cohorts = built["panel"].group_by("gemeente_code").agg(pl.col("cohort").unique())
    assert (cohorts["cohort"].list.len() == 1).all()
    got = {c: v[0] for c, v in cohorts.iter_rows()}
    assert {c: got[c] for c in expected} == expected
    never = {c for c in got if c not in expected}
    assert len(never) > 300 and all(got[c] == 0 for c in never)
    panel = built["panel"]
    assert (panel.filter(pl.col("cohort") == 0)["rel_time"].is_null()).all()
    assert (panel["treated"] == ((panel["cohort"] != 0) & (panel["period"] >= panel["cohort"]))).all()


def test_gemeenten_treated_before_the_first_year_are_left_out_and_counted(built, inputs, tmp_path):
    first, last = 2019, 2022
    spec = write_spec(tmp_path, "late", years=[first, last])
    manifest = build_panel(spec, inputs["store"], inputs["episodes"], tmp_path / "late", vektis=inputs["vektis"])
    panel = pl.read_parquet(Path(manifest["out"]) / "adapters" / "did.parquet")
    cohorts = provider_gemeente_cohorts(inputs["store"], first, last)
    early = {c for c, y in cohorts.items() if y < first}
    assert early and not early & set(panel["gemeente_code"])
    long = built["long"].filter((pl.col("release") == "final") & pl.col("year").is_between(first, last))
    cells = long.select("year", "gemeente_vektis", "gemeente_code", "sex", "age_class").unique()
    left_out = cells.filter(pl.col("gemeente_code").is_in(sorted(early))).height
    attrition = pl.read_parquet(Path(manifest["out"]) / "attrition").filter(pl.col("bundle_id") == "vektis")
    step = attrition.filter(pl.col("reason").str.contains("treated before the first period"))
    assert step["episodes"].to_list() == [left_out]
    assert sorted(panel.filter(pl.col("cohort") > 0)["cohort"].unique()) == sorted(
        {y for y in cohorts.values() if y >= first}
    )


# ------------------------------------------------------------------------------ covariates, balance, counts
def test_covariates_are_fixed_at_the_pre_treatment_mean(built):
    panel, long = built["panel"], built["long"].filter(pl.col("release") == "final")
    iy = long.filter((pl.col("measure") == "insured_years") & pl.col("gemeente_code").is_not_null())
    yearly = iy.group_by("gemeente_code", pl.col("year").cast(pl.Int32).alias("period")).agg(
        ((pl.col("value_cents") * (pl.col("sex") == "V")).sum() / pl.col("value_cents").sum()).alias("female"),
        ((pl.col("value_cents") * (pl.col("age_min") >= 65)).sum() / pl.col("value_cents").sum()).alias("older"),
        ((pl.col("value_cents") * (pl.col("age_min") + 2.5)).sum() / pl.col("value_cents").sum()).alias("age"),
    )
    units = panel.group_by("gemeente_code").agg(
        pl.col("cohort").first(),
        *[pl.col(c).n_unique().alias(f"n_{c}") for c in gemeente.COVARIATES],
        *[pl.col(c).first() for c in gemeente.COVARIATES],
    )
    assert all((units[f"n_{c}"] == 1).all() for c in gemeente.COVARIATES)
    first_cohort = int(units.filter(pl.col("cohort") > 0)["cohort"].min())
    pre = yearly.join(units.select("gemeente_code", "cohort"), on="gemeente_code").filter(
        pl.when(pl.col("cohort") > 0)
        .then(pl.col("period") < pl.col("cohort"))
        .otherwise(pl.col("period") < first_cohort)
    )
    expected = pre.group_by("gemeente_code").agg(pl.col("female").mean(), pl.col("older").mean(), pl.col("age").mean())
    joined = units.join(expected, on="gemeente_code", how="left")
    assert joined.height == units.height and joined["female"].null_count() == 0
    for ours, theirs in (("share_female", "female"), ("share_65_plus", "older"), ("mean_age", "age")):
        assert joined.select((pl.col(ours) - pl.col(theirs)).abs().max()).item() < 1e-12, ours
    assert 0.45 < joined["share_female"].mean() < 0.55 and 38 < joined["mean_age"].mean() < 46


def test_balanced_means_a_row_in_every_year(built):
    panel = built["panel"]
    n_years = VEKTIS_YEARS[1] - VEKTIS_YEARS[0] + 1
    rows = panel.group_by("gemeente_code").agg(pl.len().alias("n"), pl.col("balanced").unique())
    assert (rows["balanced"].list.len() == 1).all()
    assert (rows["balanced"].list.first() == (rows["n"] == n_years)).all()
    # Appingedam merged into Eemsdelta (2021), which Vektis applies from 2019 on: no CBS code then
    appingedam = rows.filter(pl.col("gemeente_code") == "GM0003").row(0, named=True)
    assert appingedam["n"] == 2 and appingedam["balanced"] == [False]
    assert rows.filter(pl.col("n") == n_years).height > 300


def test_n_episodes_counts_the_residents_episodes_and_is_the_weight(built, inputs):
    episodes = pl.concat(
        [
            read_episodes(inputs["episodes"], b, columns=["episode_id", "anchor_date", "status", "gemeente_code"])
            for b in BUNDLES
        ]
    )
    kept = episodes.filter(
        pl.col("anchor_date").dt.year().is_between(*VEKTIS_YEARS) & pl.col("status").is_in(["complete", "death"])
    )
    expected = kept.group_by("gemeente_code", pl.col("anchor_date").dt.year().cast(pl.Int32).alias("period")).agg(
        pl.len().cast(pl.Int64).alias("expected")
    )
    panel = (
        built["panel"]
        .join(expected, on=["gemeente_code", "period"], how="left")
        .with_columns(pl.col("expected").fill_null(0))
    )
    assert (panel["n_episodes"] == panel["expected"]).all()
    assert panel["n_episodes"].sum() == kept.height > 20  # every resident lives in a gemeente of the panel
    assert (panel["weight"] == panel["n_episodes"].cast(pl.Float64)).all()


def test_attrition_adds_up_for_the_episodes_and_the_vektis_cells(built, inputs):
    attrition = built["attrition"]
    assert sorted(attrition["bundle_id"].unique()) == [*BUNDLES, "vektis"]
    for bundle in attrition["bundle_id"].unique():
        block = attrition.filter(pl.col("bundle_id") == bundle).sort("step")
        read, *steps, kept = block.iter_rows(named=True)
        assert read["step"] == 0 and read["remaining"] == read["episodes"]
        remaining = read["episodes"]
        for step in steps:
            remaining -= step["episodes"]
            assert step["remaining"] == remaining, (bundle, step)
        assert kept["reason"].startswith("kept") and kept["episodes"] == kept["remaining"] == remaining
    n_episodes = {b: read_episodes(inputs["episodes"], b, columns=["episode_id"]).height for b in BUNDLES}
    reads = attrition.filter(pl.col("step") == 0)
    assert {b: n for b, n in reads.select("bundle_id", "episodes").iter_rows() if b != "vektis"} == n_episodes
    kept = attrition.filter(pl.col("reason").str.starts_with("kept"))
    assert kept.filter(pl.col("bundle_id") != "vektis")["episodes"].sum() == built["panel"]["n_episodes"].sum()
    # the cells: every cell of the folder is read, the unknown-gemeente rows and unmapped names counted
    long = built["long"]
    cells = long.select("year", "release", "gemeente_vektis", "sex", "age_class").unique()
    vektis = attrition.filter(pl.col("bundle_id") == "vektis").sort("step")
    assert vektis["episodes"][0] == cells.height
    final = (
        long.filter(pl.col("release") == "final")
        .select("year", "gemeente_vektis", "gemeente_code", "sex", "age_class")
        .unique()
    )
    no_code = vektis.filter(pl.col("reason").str.contains("without a CBS gemeente code"))["episodes"].item()
    assert no_code == final.filter(pl.col("gemeente_code").is_null()).height > 6  # >= one unknown row a year
    assert vektis["episodes"][-1] == final.filter(pl.col("gemeente_code").is_not_null()).height
    assert built["manifest"]["attrition"] == attrition.to_dicts()


# ------------------------------------------------------------------------------ the spec and the options
def test_a_wrong_outcome_or_covariate_is_one_spec_error_naming_the_field(inputs, tmp_path):
    with pytest.raises(SpecError) as wrong:
        load_spec(write_spec(tmp_path, "wrong", outcomes=["total_cents"]))
    message = str(wrong.value)
    assert "field `outcomes`" in message and "'total_cents'" in message
    assert all(o in message for o in gemeente.OUTCOMES) and "\n" not in message
    with pytest.raises(SpecError, match=r"field `covariates`: 'age_at_anchor' .* share_female, share_65_plus"):
        load_spec(write_spec(tmp_path, "cov", covariates=["age_at_anchor"]))
    with pytest.raises(SpecError, match="field `adjust`"):
        parse_spec({**SPEC, "adjust": True})
    with pytest.raises(SpecError, match="field `cluster`"):
        parse_spec({**SPEC, "cluster": "provider_agb"})
    # through the preflight too, before anything is read
    with pytest.raises(SpecError, match="field `outcomes`"):
        preflight(tmp_path / "wrong.yaml", inputs["store"], inputs["episodes"], tmp_path / "out", inputs["vektis"])
    assert not (tmp_path / "out").exists()


def test_years_the_vektis_folder_does_not_hold_are_refused(inputs, tmp_path):
    with pytest.raises(SpecError, match=r"field `years`: .* holds the final release of 2017-2022, not of 2015, 2016"):
        preflight(
            write_spec(tmp_path, "early", years=[2015, 2020]),
            inputs["store"],
            inputs["episodes"],
            tmp_path / "out",
            inputs["vektis"],
        )


def test_the_command_needs_vektis_for_gemeente_year_and_only_then(inputs, tmp_path):
    spec = write_spec(tmp_path, "spec")
    common = ["--store", str(inputs["store"]), "--episodes", str(inputs["episodes"]), "--out", str(tmp_path / "out")]
    missing = zorgpad(tmp_path, "panel", "build", str(spec), *common)
    assert "pass --vektis DIR" in assert_one_error_line(missing, "gemeente_year")
    episode_spec = write_spec(
        tmp_path, "episode", unit="episode", outcomes=["total_cents"], covariates=[], cluster="provider_agb"
    )
    extra = zorgpad(tmp_path, "panel", "build", str(episode_spec), *common, "--vektis", str(inputs["vektis"]))
    assert_one_error_line(extra, "--vektis is read only by unit gemeente_year")
    not_vektis = zorgpad(tmp_path, "panel", "build", str(spec), *common, "--vektis", str(inputs["store"]))
    assert_one_error_line(not_vektis, "--vektis", "not a zorgpad Vektis folder")
    assert not (tmp_path / "out").exists()


def test_estimate_is_a_panel_clustered_by_gemeente(built, inputs, tmp_path):
    spec = load_spec(built["spec"])
    options = options_for(spec, "total_cents_per_insured_year")
    assert (options.id, options.cluster, options.repeated_cross_sections) == ("unit_num", "gemeente_code", False)
    unweighted = write_spec(tmp_path, "unweighted", weights="none", outcomes=["total_cents_per_insured_year"])
    manifest = build_panel(
        unweighted, inputs["store"], inputs["episodes"], tmp_path / "estimated", vektis=inputs["vektis"], estimate=True
    )
    (row,) = manifest["estimates"]["summary"]
    assert row["error"] is None and row["att"] is not None and row["se"] > 0, row
    report = json.loads(
        (Path(manifest["out"]) / "estimates" / "total_cents_per_insured_year" / "manifest.json").read_text()
    )
    assert report["options"]["cluster"] == "gemeente_code" and report["options"]["id"] == "unit_num"
    balanced = built["panel"].filter(pl.col("balanced"))
    assert row["rows"] == balanced.height  # covariates fixed: only unbalanced gemeenten are left out


# ------------------------------------------------------------------------------ the pure functions
def _cell(year, code, sex, age_min, **values) -> list[dict]:
    base = {
        "year": year,
        "release": "final",
        "gemeente_vektis": code,
        "gemeente_code": code,
        "sex": sex,
        "age_class": f"{age_min}-{age_min + 4}",
        "age_min": age_min,
        "source_column": "x",
    }
    measures = {
        "insured": "population",
        "insured_years": "population",
        "cost_msz": "msz",
        "cost_geriatric_rehabilitation": "rehabilitation_nursing",
    }
    return [
        {**base, "measure": m, "category": measures[m], "value": v / 100, "value_cents": v} for m, v in values.items()
    ]


def test_gemeente_years_from_hand_made_cells():
    """Two gemeenten, 2012 (no rehabilitation column yet) and 2013; GM0002 treated from 2013."""
    rows = []
    for year in (2012, 2013):
        extra = {"cost_geriatric_rehabilitation": 5_000} if year == 2013 else {}
        rows += _cell(year, "GM0001", "V", 0, insured=100_000, insured_years=90_000, cost_msz=90_000_00, **extra)
        rows += _cell(year, "GM0001", "M", 65, insured=100_000, insured_years=10_000, cost_msz=10_000_00, **extra)
        rows += _cell(year, "GM0002", "M", 90, insured=200_000, insured_years=20_000, cost_msz=40_000_00, **extra)
    long = pl.DataFrame(rows)
    spec = parse_spec(
        {
            **SPEC,
            "years": [2012, 2013],
            "weights": "none",
            "outcomes": ["total_cents_per_insured_year", "rehabilitation_nursing_cents_per_insured_year"],
        }
    )
    cohorts = gemeente.gemeente_cohorts(
        pl.DataFrame({"bundle_id": ["hip_oa"], "provider_agb": ["01234567"], "contract_start": [date(2013, 3, 1)]}),
        pl.DataFrame({"provider_agb": ["01234567"], "gemeente_code": ["GM0002"]}),
        (2012, 2013),
    )
    part, attrition = gemeente.vektis_part(gemeente.vektis_cells(long), cohorts, spec)
    panel = gemeente.unit_rows(part).sort("gemeente_code", "period")
    one = panel.filter(pl.col("gemeente_code") == "GM0001")
    assert one["total_cents_per_insured_year"].to_list() == [10_000.0, 10_000.0 + 10_000 / 1_000]
    assert one["rehabilitation_nursing_cents_per_insured_year"].to_list() == [None, 10.0]
    assert one["insured_years"].to_list() == [1_000.0, 1_000.0] and one["insured"].to_list() == [2_000.0] * 2
    assert one["share_female"].to_list() == [0.9, 0.9] and one["share_65_plus"].to_list() == [0.1, 0.1]
    assert one["mean_age"].to_list() == [pytest.approx(0.9 * 2.5 + 0.1 * 67.5)] * 2
    assert one["cohort"].to_list() == [0, 0] and one["balanced"].all()
    two = panel.filter(pl.col("gemeente_code") == "GM0002")
    assert two["cohort"].to_list() == [2013, 2013] and two["mean_age"].to_list() == [92.5, 92.5]
    assert two["total_cents_per_insured_year"].to_list() == [20_000.0, 20_000.0 + 5_000 / 200]
    assert attrition["episodes"].to_list() == [0, 0, 0, 0] and part["n_cells"].sum() == 6


@pytest.mark.slow
def test_the_command_on_dask_writes_the_same_panel(built, inputs, tmp_path):
    """``zorgpad panel build --vektis`` (the Prefect flow on a local Dask cluster) writes the files
    of the single-process build."""
    done = zorgpad(
        tmp_path,
        "panel",
        "build",
        str(built["spec"]),
        "--store",
        str(inputs["store"]),
        "--episodes",
        str(inputs["episodes"]),
        "--vektis",
        str(inputs["vektis"]),
        "--out",
        str(tmp_path / "flow"),
        "--workers",
        "2",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    manifest = json.loads((tmp_path / "flow" / "manifest.json").read_text())
    assert manifest["content_sha256"] == built["manifest"]["content_sha256"]
    assert manifest["vektis"] == built["manifest"]["vektis"]
