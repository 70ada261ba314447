"""``zorgpad panel build`` on a generated delivery whose hip contracts are signed by one insurer: every
unit against values computed here from the episodes, lines, contracts and insured spells; the
attrition adds up; the adapters; maturity and ``adjust``; the same spec and inputs give the same
content hash; a wrong spec is refused with one line naming the field before anything is read; the
Prefect flow on Dask with ``--estimate`` writes a report per outcome and the free-riding split."""

from __future__ import annotations

import json
import math
from datetime import date
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest
import yaml

from test_cli_safety import assert_one_error_line, zorgpad
from transforms.did_panel.periods import period_of, periods_frame
from transforms.did_panel.run import build_panel, preflight
from transforms.did_panel.spec import SpecError, load_spec, parse_spec, spec_hash
from transforms.episodes.run import build_episodes
from transforms.ingest.run import ingest
from transforms.maturity.run import maturity_of
from transforms.maturity.store import read_lines as read_claim_lines
from transforms.synth import SynthConfig, generate_delivery
from transforms.synth.providers import INSURERS

# integration: a generated delivery through episodes and DiD panel builds on a cluster
pytestmark = pytest.mark.integration

BUNDLES = "hip_oa,knee_oa,cataract"
HIP_INSURER = INSURERS[0]
YEARS = (2016, 2021)


def write_spec(folder: Path, name: str = "spec", **fields) -> Path:
    spec = {
        "name": "hip_knee",
        "bundles": ["hip_oa", "knee_oa"],
        "unit": "episode",
        "period": "year",
        "years": list(YEARS),
        "outcomes": ["in_bundle_cents", "complication"],
        "covariates": ["age_at_anchor", "sex", "n_chronic_conditions"],
        "filters": {"status": ["complete", "death"]},
        **fields,
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    """A clean delivery with the hip contracts signed by one insurer only (free-riding: the planted
    effect reaches every patient of a treated provider)."""
    root = tmp_path_factory.mktemp("did_panel")
    generate_delivery(
        SynthConfig(patients=10_000, first_year=2015, last_year=2021, seed=13, clean=True, block_size=5_000),
        root / "delivery",
    )
    contracts_file = root / "delivery" / "contracts" / "contracts.parquet"
    table = pq.read_table(contracts_file)
    contracts = pl.from_arrow(table).with_columns(
        pl.when(pl.col("bundle_id") == "hip_oa")
        .then(pl.lit(HIP_INSURER))
        .otherwise(pl.col("insurer_uzovi"))
        .alias("insurer_uzovi")
    )
    pq.write_table(contracts.to_arrow().cast(table.schema), contracts_file)
    ingest(root / "delivery", root / "store", n_buckets=4, data_docs=False)
    build_episodes(root / "store", root / "episodes", bundles=tuple(BUNDLES.split(",")))
    return {"root": root, "store": root / "store", "episodes": root / "episodes"}


def episodes_of(built, bundles=("hip_oa", "knee_oa")) -> pl.DataFrame:
    frames = [
        pl.read_parquet(sorted((built["episodes"] / "episodes" / f"bundle_id={b}").rglob("*.parquet")))
        .select(
            "episode_id",
            "patient_id",
            "anchor_date",
            "anchor_provider_agb",
            "status",
            "window_start",
            "window_end",
            "in_bundle_cents",
            "total_cents",
            "complication",
            "age_at_anchor",
            "sex",
            "n_chronic_conditions",
        )
        .with_columns(pl.lit(b).alias("bundle_id"))
        for b in bundles
    ]
    return pl.concat(frames)


def contract_starts(built, bundles=("hip_oa", "knee_oa")) -> dict[tuple[str, str], date]:
    contracts = pl.read_parquet(sorted((built["store"] / "contracts").rglob("*.parquet")))
    own = (
        contracts.filter(pl.col("bundle_id").is_in(list(bundles)))
        .group_by("bundle_id", "provider_agb")
        .agg(pl.col("start_date").min())
    )
    return {(b, p): d for b, p, d in own.iter_rows()}


@pytest.fixture(scope="module")
def episode_panel(built) -> dict:
    spec = write_spec(built["root"])
    manifest = build_panel(spec, built["store"], built["episodes"], built["root"] / "episode_panel")
    return {"manifest": manifest, "out": Path(manifest["out"]), "spec": spec}


def read_panel(out: Path) -> pl.DataFrame:
    """The panel as an analyst reads it (the partition column's labels as text: 2018 is not a number)."""
    return pl.read_parquet(
        sorted((out / "panel").rglob("*.parquet")), hive_partitioning=True, hive_schema={"period_label": pl.String}
    ).sort("unit_id", "period")


# ------------------------------------------------------------------------------ the spec
@pytest.mark.parametrize(
    "change, field",
    [
        ({"unit": "patient"}, "`unit`"),
        ({"years": [2021, 2015]}, "`years`"),
        ({"bundles": ["hip"]}, "`bundles`"),
        ({"colour": "red"}, "`colour`"),
        ({"treatment": {"from": "claims"}}, "`treatment.from`"),
        ({"filters": {"status": ["finished"]}}, "`filters`"),
        ({"unit": "episode_quarter"}, "`period`"),
        ({"outcomes": ["volume"]}, "`outcomes`"),
        ({"cluster": "patient_id"}, "`cluster`"),
        ({"covariates": ["complication"]}, "`covariates`"),
        ({"mature_at": 1.5}, "`mature_at`"),
        ({"outcomes": []}, "`outcomes`"),
        ({"control": "everyone"}, "`control`"),
    ],
)
def test_a_wrong_spec_names_its_field(change, field):
    base = {"name": "x", "bundles": ["hip_oa"], "unit": "episode", "years": [2016, 2020], "outcomes": ["complication"]}
    with pytest.raises(SpecError) as caught:
        parse_spec({**base, **change})
    message = str(caught.value)
    assert field in message and "\n" not in message, message


def test_the_spec_hash_is_of_its_meaning_not_its_text(tmp_path):
    a = write_spec(tmp_path, "a")
    b = tmp_path / "b.yaml"
    data = yaml.safe_load(a.read_text())
    b.write_text(
        "# the same request, reordered, with defaults spelt out\n"
        + yaml.safe_dump(
            {
                **dict(reversed(list(data.items()))),
                "control": "never_treated",
                "treatment": {"from": "contracts", "anticipation": 0},
            }
        )
    )
    assert spec_hash(load_spec(a)) == spec_hash(load_spec(b))
    c = write_spec(tmp_path, "c", control="not_yet_treated")
    assert spec_hash(load_spec(c)) != spec_hash(load_spec(a))


def test_a_spec_is_refused_before_any_data_are_read(tmp_path):
    """The stores named do not exist: the spec's error comes first, in one line, with no Prefect."""
    bad = write_spec(tmp_path, "bad", unit="patient_year")
    done = zorgpad(
        tmp_path,
        "panel",
        "build",
        str(bad),
        "--store",
        str(tmp_path / "nope"),
        "--episodes",
        str(tmp_path / "nope2"),
        "--out",
        str(tmp_path / "out"),
    )
    assert_one_error_line(done, "field `unit`", "patient_year")
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: x\nbundles: [hip_oa\n")
    assert_one_error_line(
        zorgpad(
            tmp_path, "panel", "build", str(broken), "--store", "s", "--episodes", "e", "--out", str(tmp_path / "o")
        ),
        "not valid YAML",
        "line",
    )
    assert not (tmp_path / "out").exists() and not (tmp_path / "o").exists()


def test_columns_are_checked_against_the_episodes(built, tmp_path):
    for change, fragment in (
        ({"outcomes": ["in_bundle_euros"]}, "field `outcomes`: 'in_bundle_euros'"),
        ({"covariates": ["postcode3"]}, "field `covariates`: 'postcode3' is String"),
        ({"covariates": ["length_of_stay"]}, "'length_of_stay' is not measured before the anchor"),
        ({"filters": {"hair": ["red"]}}, "field `filters`: 'hair'"),
        ({"bundles": ["hip_oa", "acute_stroke"]}, "field `bundles`: acute_stroke"),
    ):
        with pytest.raises(SpecError) as caught:
            preflight(write_spec(tmp_path, **change), built["store"], built["episodes"], tmp_path / "out")
        assert fragment in str(caught.value)
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------ episode panel
def test_the_episode_panel_is_the_kept_episodes_with_their_providers_cohort(built, episode_panel):
    panel = read_panel(episode_panel["out"])
    episodes = episodes_of(built)
    starts = contract_starts(built)
    first_day = date(YEARS[0], 1, 1)
    before = {k for k, d in starts.items() if d < first_day}
    expected = episodes.filter(
        pl.col("anchor_date").dt.year().is_between(*YEARS), pl.col("status").is_in(["complete", "death"])
    )
    expected = expected.filter(
        ~pl.struct("bundle_id", "anchor_provider_agb").map_elements(
            lambda r: (r["bundle_id"], r["anchor_provider_agb"]) in before, return_dtype=pl.Boolean
        )
    )
    assert sorted(panel["unit_id"]) == sorted(expected["episode_id"])
    assert panel["unit_id"].n_unique() == panel.height
    joined = panel.join(expected, left_on="unit_id", right_on="episode_id")
    for row in joined.iter_rows(named=True):
        start = starts.get((row["bundle_id"], row["provider_agb"]))
        cohort = 0 if start is None or start > date(YEARS[1], 12, 31) else start.year
        assert row["cohort"] == cohort
        assert row["period"] == row["anchor_date"].year and row["period_label"] == str(row["anchor_date"].year)
        assert row["treated"] == (cohort > 0 and row["period"] >= cohort)
        assert row["rel_time"] == (row["period"] - cohort if cohort else None)
        assert row["in_bundle_cents"] == float(row["in_bundle_cents_right"])
        assert row["complication"] == float(row["complication_right"])
        assert row["sex"] == (1.0 if row["sex_right"] == "V" else 0.0)
        assert row["age_at_anchor"] == float(row["age_at_anchor_right"])
        assert row["weight"] == 1.0 and row["n_episodes"] == 1 and row["balanced"] is None
    assert panel["unit_num"].sort().to_list() == list(range(1, panel.height + 1))
    assert (panel.sort("unit_id")["unit_num"].diff().drop_nulls() > 0).all()


def test_the_attrition_accounts_for_every_episode(built, episode_panel):
    attrition = pl.read_parquet(episode_panel["out"] / "attrition" / "part-0.parquet")
    episodes = episodes_of(built)
    for bundle in ("hip_oa", "knee_oa"):
        rows = attrition.filter(pl.col("bundle_id") == bundle).sort("step")
        read = rows.row(0, named=True)
        assert (
            read["reason"] == "episodes read"
            and read["episodes"] == episodes.filter(pl.col("bundle_id") == bundle).height
        )
        left_out = rows.filter(~pl.col("reason").is_in(["episodes read", "kept"]))["episodes"].sum()
        kept = rows.filter(pl.col("reason") == "kept")["episodes"].item()
        assert read["episodes"] - left_out == kept
        assert kept == read_panel(episode_panel["out"]).filter(pl.col("bundle_id") == bundle).height
    status = attrition.filter(pl.col("reason") == "filter status")["episodes"].sum()
    assert (
        status
        == episodes.filter(
            pl.col("anchor_date").dt.year().is_between(*YEARS), ~pl.col("status").is_in(["complete", "death"])
        ).height
    )


def test_the_insurer_at_the_anchor_and_who_signed(built, episode_panel):
    panel = read_panel(episode_panel["out"])
    spells = pl.read_parquet(sorted((built["store"] / "insured").rglob("*.parquet")))
    episodes = episodes_of(built).select("episode_id", "patient_id", "anchor_date")
    on_anchor = episodes.join(spells, on="patient_id").filter(
        (pl.col("enrolled_from") <= pl.col("anchor_date"))
        & (pl.col("enrolled_to").is_null() | (pl.col("enrolled_to") >= pl.col("anchor_date")))
    )
    expected = dict(on_anchor.select("episode_id", "insurer_uzovi").iter_rows())
    assert dict(panel.select("unit_id", "insurer_uzovi").iter_rows()) == {u: expected.get(u) for u in panel["unit_id"]}
    treated_hip = panel.filter((pl.col("bundle_id") == "hip_oa") & (pl.col("cohort") > 0))
    assert (
        treated_hip.height
        and (treated_hip["contracting_insurer"] == (treated_hip["insurer_uzovi"] == HIP_INSURER)).all()
    )
    assert (
        panel.filter(pl.col("cohort") == 0)["contracting_insurer"].null_count()
        == panel.filter(pl.col("cohort") == 0).height
    )
    knee_treated = panel.filter((pl.col("bundle_id") == "knee_oa") & (pl.col("cohort") > 0))
    assert knee_treated["contracting_insurer"].all()  # the knee contracts name all insurers


def test_the_adapters_code_never_treated_as_their_estimators_want(episode_panel):
    panel = read_panel(episode_panel["out"])
    did = pl.read_parquet(episode_panel["out"] / "adapters" / "did.parquet")
    assert did.sort("unit_id", "period").select(panel.columns).equals(panel.select(did.columns).select(panel.columns))
    differences = pl.read_parquet(episode_panel["out"] / "adapters" / "differences.parquet")
    never = differences.filter(pl.col("cohort").is_nan())
    assert never.height == did.filter(pl.col("cohort") == 0).height > 0
    assert never["rel_time"].is_nan().all()
    assert differences.filter(~pl.col("cohort").is_nan())["cohort"].min() >= YEARS[0]


def test_every_period_carries_its_maturity(built, episode_panel):
    store = built["store"]
    manifest = json.loads((store / "manifest.json").read_text())
    as_of = date.fromisoformat(manifest["delivery"]["data_as_of"])
    expected = maturity_of(read_claim_lines(store, "dbc"), as_of, last_year=manifest["delivery"]["last_year"])
    years = expected["completion_period"].filter(pl.col("period_kind") == "year")
    panel = read_panel(episode_panel["out"])
    for label, completion, mature in panel.select("period_label", "completion_cents", "mature").unique().iter_rows():
        row = years.filter(pl.col("period") == label).row(0, named=True)
        assert completion == row["completion_cents"] and mature == row["mature"]
    assert episode_panel["manifest"]["maturity"]["immature_periods"] == sorted(
        years.filter(~pl.col("mature") & pl.col("period").cast(pl.Int32).is_between(*YEARS))["period"].to_list()
    )
    assert episode_panel["manifest"]["maturity"]["immature_periods"][-1:] == [str(YEARS[1])]


def test_the_same_spec_and_inputs_give_the_same_panel(built, episode_panel, tmp_path):
    again = build_panel(episode_panel["spec"], built["store"], built["episodes"], tmp_path / "again")
    assert again["content_sha256"] == episode_panel["manifest"]["content_sha256"]
    assert again["files"] == episode_panel["manifest"]["files"]
    assert again["spec_hash"] == episode_panel["manifest"]["spec_hash"]
    other = build_panel(
        write_spec(tmp_path, control="not_yet_treated", outcomes=["in_bundle_cents"]),
        built["store"],
        built["episodes"],
        tmp_path / "other",
    )
    assert other["content_sha256"] != again["content_sha256"]


# ------------------------------------------------------------------------------ other units
def test_adjusted_outcomes_are_scaled_by_the_completion_of_their_period(built, tmp_path):
    spec = write_spec(
        tmp_path,
        adjust=True,
        outcomes=["in_bundle_cents", "length_of_stay"],
        period="quarter",
        filters={"status": ["complete", "death", "censored_data"]},
    )
    out = Path(build_panel(spec, built["store"], built["episodes"], tmp_path / "adjusted")["out"])
    panel = read_panel(out)
    assert (
        panel.select(
            (pl.col("in_bundle_cents_adjusted") - pl.col("in_bundle_cents") / pl.col("completion_cents")).abs().max()
        ).item()
        < 1e-6
    )
    assert (
        panel.select(
            (pl.col("length_of_stay_adjusted") - pl.col("length_of_stay") / pl.col("completion_lines")).abs().max()
        ).item()
        < 1e-9
    )
    recent = panel.filter(pl.col("mature").not_())
    assert recent.height and (recent["in_bundle_cents_adjusted"] >= recent["in_bundle_cents"]).all()
    assert panel["period"].min() >= 1
    assert panel.filter(pl.col("period_label") == f"{YEARS[0] + 1}-Q3")["period"].unique().to_list() == [7]


def test_the_provider_period_panel_is_balanced_with_volume_and_fixed_covariates(built, tmp_path):
    spec = write_spec(
        tmp_path,
        unit="provider_period",
        outcomes=["volume", "log_volume", "in_bundle_cents"],
        covariates=["age_at_anchor"],
        weights="episodes",
    )
    out = Path(build_panel(spec, built["store"], built["episodes"], tmp_path / "providers")["out"])
    panel = read_panel(out)
    n_periods = YEARS[1] - YEARS[0] + 1
    assert panel.group_by("unit_id").len()["len"].unique().to_list() == [n_periods]
    episodes = read_panel(
        Path(
            build_panel(
                write_spec(tmp_path, "e", outcomes=["in_bundle_cents"], covariates=["age_at_anchor"]),
                built["store"],
                built["episodes"],
                tmp_path / "e",
            )["out"]
        )
    )
    assert int(panel["volume"].sum()) == episodes.height
    cells = episodes.group_by("bundle_id", "provider_agb", "period").agg(
        pl.len().alias("n"), pl.col("in_bundle_cents").mean().alias("m")
    )
    joined = panel.join(cells, on=["bundle_id", "provider_agb", "period"], how="left")
    assert (joined["volume"] == joined["n"].fill_null(0).cast(pl.Float64)).all()
    assert (
        joined.filter(pl.col("n").is_not_null()).select((pl.col("in_bundle_cents") - pl.col("m")).abs().max()).item()
        < 1e-6
    )
    assert (
        joined.filter(pl.col("volume") == 0)["log_volume"].null_count() == joined.filter(pl.col("volume") == 0).height
    )
    positive = joined.filter(pl.col("volume") > 0)
    assert (positive["log_volume"] - positive["volume"].log()).abs().max() < 1e-12
    assert (panel["weight"] == panel["n_episodes"].cast(pl.Float64)).all()
    assert (panel.group_by("unit_id").agg(pl.col("balanced").first() == (pl.col("volume") > 0).all())["balanced"]).all()
    # covariates: the unit's mean before treatment (never treated: before the first cohort), on every row
    first_cohort = panel.filter(pl.col("cohort") > 0)["cohort"].min()
    for _unit, rows in panel.group_by("unit_id"):
        assert rows["age_at_anchor"].n_unique() == 1
        bundle, provider, cohort = rows["bundle_id"][0], rows["provider_agb"][0], rows["cohort"][0]
        cut = cohort if cohort else first_cohort
        own = episodes.filter(
            (pl.col("bundle_id") == bundle) & (pl.col("provider_agb") == provider) & (pl.col("period") < cut)
        )["age_at_anchor"]
        expected = own.mean() if own.len() else None
        got = rows["age_at_anchor"][0]
        assert (got is None and expected is None) or abs(got - expected) < 1e-9


def test_episode_quarters_add_up_to_the_episode_lines(built, tmp_path):
    spec = write_spec(
        tmp_path,
        unit="episode_quarter",
        period="quarter",
        outcomes=["total_cents", "in_bundle_cents"],
        bundles=["hip_oa"],
    )
    out = Path(build_panel(spec, built["store"], built["episodes"], tmp_path / "quarters")["out"])
    panel = read_panel(out)
    lines = pl.read_parquet(sorted((built["episodes"] / "episode_lines" / "bundle_id=hip_oa").rglob("*.parquet")))
    first_day, last_day = date(YEARS[0], 1, 1), date(YEARS[1], 12, 31)
    inside = lines.filter(
        pl.col("episode_id").is_in(panel["unit_id"].unique().to_list()), pl.col("start").is_between(first_day, last_day)
    )
    by_episode = inside.group_by("episode_id").agg(
        pl.col("allocated_cents").sum().alias("cents"),
        pl.col("allocated_cents").filter(pl.col("component") == "in_bundle").sum().alias("in_bundle"),
    )
    sums = panel.group_by("unit_id").agg(
        pl.col("total_cents").sum(), pl.col("in_bundle_cents").sum(), pl.col("n_lines").sum()
    )
    joined = sums.join(by_episode, left_on="unit_id", right_on="episode_id", how="left").fill_null(0)
    assert (joined["total_cents"] == joined["cents"].cast(pl.Float64)).all()
    assert (joined["in_bundle_cents"] == joined["in_bundle"].cast(pl.Float64)).all()
    assert int(joined["n_lines"].sum()) == inside.height
    # each episode has every quarter of its window (and of its lines) inside the panel, and nothing else
    episodes = episodes_of(built, ("hip_oa",)).filter(pl.col("episode_id").is_in(panel["unit_id"].unique().to_list()))
    reach = inside.group_by("episode_id").agg(pl.col("start").min().alias("first"), pl.col("start").max().alias("last"))
    spans = episodes.join(reach, on="episode_id", how="left")
    for episode_id, start, end, first_line, last_line in spans.select(
        "episode_id", "window_start", "window_end", "first", "last"
    ).iter_rows():
        lo = period_of(max(min(start, first_line or start), first_day), "quarter", YEARS[0])
        hi = period_of(min(max(end, last_line or end), last_day), "quarter", YEARS[0])
        assert panel.filter(pl.col("unit_id") == episode_id)["period"].to_list() == list(range(lo, hi + 1))
    labels = periods_frame("quarter", YEARS)
    assert set(panel["period_label"]) <= set(labels["period_label"])


# ------------------------------------------------------------------------------ the flow
def test_the_flow_on_dask_estimates_each_outcome_and_the_free_riding(built, episode_panel, tmp_path):
    """The command line: Prefect flow, a Dask cluster, csdid; the panel is the one the plain build
    wrote (content hash), and with hip contracts signed by one insurer the report has the other
    insurers' patients apart."""
    spec = episode_panel["spec"]
    done = zorgpad(
        tmp_path,
        "panel",
        "build",
        str(spec),
        "--store",
        str(built["store"]),
        "--episodes",
        str(built["episodes"]),
        "--out",
        str(tmp_path / "flow"),
        "--estimate",
        "--workers",
        "2",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    manifest = json.loads((tmp_path / "flow" / "manifest.json").read_text())
    assert manifest["content_sha256"] == episode_panel["manifest"]["content_sha256"]
    summary = pl.read_parquet(tmp_path / "flow" / "estimates" / "summary.parquet")
    assert set(summary["sample"]) == {"all", "contracting_insurers", "other_insurers"}
    assert set(summary["outcome"]) == {"in_bundle_cents", "complication"}
    for row in summary.iter_rows(named=True):
        if row["error"] is None:
            assert row["ci_low"] <= row["att"] <= row["ci_high"]
            assert (tmp_path / "flow" / row["report"]).is_file()
        else:
            assert row["att"] is None and "\n" not in row["error"]
    assert "estimate     in_bundle_cents (all)" in done.stdout
    other = summary.filter(pl.col("sample") == "other_insurers")
    assert (other["rows"] < summary.filter(pl.col("sample") == "all")["rows"]).all()
    assert not math.isnan(manifest["rows"]["panel"])


def test_the_status_filter_stays_unless_a_spec_gives_its_own():
    base = {"name": "x", "bundles": ["hip_oa"], "unit": "episode", "years": [2016, 2020], "outcomes": ["complication"]}
    assert parse_spec(base).filters == {"status": ["complete", "death"]}
    assert parse_spec({**base, "filters": {"sex": ["V"]}}).filters == {"status": ["complete", "death"], "sex": ["V"]}
    every = ["complete", "death", "censored_data", "censored_enrolment"]
    assert parse_spec({**base, "filters": {"status": every}}).filters == {"status": every}
