"""The episode engine on generated deliveries: it finds the episodes the generator planted, it agrees
with the independent DuckDB implementation to the cent, and its ids do not depend on the number of
buckets or Dask workers."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest

from bench.duckdb_episodes import build_episodes as duckdb_episodes
from flows.dask_cluster import dask_cluster, dask_mapper
from transforms.bundles import load_bundles
from transforms.episodes.run import build_episodes
from transforms.ingest.run import ingest
from transforms.synth import SynthConfig, generate_delivery, truth_dir

# integration: a generated delivery's episodes against planted truth and the DuckDB twin
pytestmark = pytest.mark.integration


def read_all(folder: Path) -> pl.DataFrame:
    files = sorted(folder.rglob("*.parquet"))
    return pl.concat([pl.read_parquet(f, hive_partitioning=True) for f in files], how="diagonal_relaxed")


@pytest.fixture(scope="session")
def clean_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("episodes-clean")
    delivery = root / "delivery"
    generate_delivery(SynthConfig(patients=6_000, seed=17, clean=True, block_size=2_000), delivery)
    ingest(delivery, root / "store", n_buckets=4, data_docs=False)
    build_episodes(root / "store", root / "episodes")
    return delivery, root / "store", root / "episodes"


@pytest.fixture(scope="session")
def faulty_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("episodes-faulty")
    delivery = root / "delivery"
    generate_delivery(SynthConfig(patients=4_000, seed=23, block_size=2_000), delivery)
    ingest(delivery, root / "store", n_buckets=4, data_docs=False)
    build_episodes(root / "store", root / "episodes", bundles=["hip_oa", "cataract"])
    return delivery, root / "store", root / "episodes"


def expected_episode_counts(planted: pl.DataFrame) -> dict[tuple[str, int], int]:
    """The generator's delivered triggers put through rules 2-3 (an independent, plain-Python
    reading): per bundle and anchor year, how many episodes there must be."""
    bundles = load_bundles()
    counts: dict[tuple[str, int], int] = {}
    for (bundle_id, _patient), rows in planted.sort("anchor_date").group_by(
        ["bundle_id", "patient_id"], maintain_order=True
    ):
        window = bundles[bundle_id].window
        window_end = None
        seen_years: set[int] = set()
        for anchor in rows["anchor_date"].to_list():
            if window.kind == "calendar_year":
                if anchor.year not in seen_years:
                    seen_years.add(anchor.year)
                    counts[(bundle_id, anchor.year)] = counts.get((bundle_id, anchor.year), 0) + 1
                continue
            if window_end is not None and anchor <= window_end:
                continue
            window_end = anchor + timedelta(days=window.post_days)
            counts[(bundle_id, anchor.year)] = counts.get((bundle_id, anchor.year), 0) + 1
    return counts


def test_engine_finds_the_planted_episodes_per_bundle_and_year(clean_run):
    delivery, _, out = clean_run
    planted = pl.read_parquet(truth_dir(delivery) / "planted_triggers" / "*.parquet").filter(pl.col("delivered"))
    expected = expected_episode_counts(planted)
    episodes = read_all(out / "episodes")
    found = {(b, y): n for b, y, n in episodes.group_by("bundle_id", "anchor_year").len().iter_rows()}
    assert {b for b, _ in found} == set(load_bundles()), "every bundle has episodes"
    assert found == expected


def test_episode_anchors_are_the_planted_trigger_dates_and_providers(clean_run):
    delivery, _, out = clean_run
    day_bundles = ["hip_oa", "knee_oa", "cataract", "acute_stroke", "birth_care"]
    planted = pl.read_parquet(truth_dir(delivery) / "planted_triggers" / "*.parquet").filter(
        pl.col("delivered") & pl.col("bundle_id").is_in(day_bundles)
    )
    episodes = read_all(out / "episodes").filter(pl.col("bundle_id").is_in(day_bundles))
    joined = episodes.join(
        planted,
        left_on=["bundle_id", "patient_id", "anchor_date"],
        right_on=["bundle_id", "patient_id", "anchor_date"],
        how="left",
    )
    assert joined["anchor_provider_agb_right"].null_count() == 0
    assert (joined["anchor_provider_agb"] == joined["anchor_provider_agb_right"]).all()
    # the contract flag follows the generator's treatment
    hips = joined.filter(pl.col("bundle_id") == "hip_oa")
    assert (hips["treated"] == hips["treated_right"]).all()


def test_money_is_conserved_per_episode_and_no_line_is_allocated_twice(clean_run):
    _, _store, out = clean_run
    lines = read_all(out / "episode_lines")
    episodes = read_all(out / "episodes")
    totals = lines.group_by("episode_id").agg(pl.col("allocated_cents").sum().alias("sum"))
    check = episodes.select("episode_id", "total_cents").join(totals, on="episode_id", how="left")
    assert (check["total_cents"] == check["sum"].fill_null(0)).all()
    per_line = lines.group_by("bundle_id", "source_table", "claim_id").agg(
        pl.col("days_in").sum(), pl.col("days").first()
    )
    assert (per_line["days_in"] <= per_line["days"]).all()
    overlaps = episodes.sort("bundle_id", "patient_id", "window_start").with_columns(
        pl.col("window_end").shift(1).over("bundle_id", "patient_id").alias("previous_end")
    )
    assert (overlaps["window_start"] > overlaps["previous_end"]).fill_null(True).all()


def test_engine_agrees_with_the_duckdb_implementation_to_the_cent(faulty_run):
    """On an ingested faulty delivery (netted corrections, quarantined lines): same episodes, same
    covariates and outcomes, same allocated declared and standardised cents per line."""
    _, store, out = faulty_run
    sql_episodes, sql_lines = duckdb_episodes(
        store,
        data_as_of=None
        if (store / "delivery.json").exists()
        else __import__("transforms.episodes.run", fromlist=["x"]).data_as_of_of(store),
    )
    for bundle, outcomes in (("hip_oa", ["complication"]), ("cataract", ["secondary_cataract", "second_eye"])):
        ours = read_all(out / "episodes").filter(pl.col("bundle_id") == bundle)
        theirs = sql_episodes.filter(pl.col("bundle_id") == bundle)
        columns = [
            "episode_id",
            "patient_id",
            "anchor_date",
            "anchor_provider_agb",
            "window_start",
            "window_end",
            "n_triggers",
            "status",
            "age_at_anchor",
            "sex",
            "postcode3",
            "gemeente_code",
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
            "n_chronic_conditions",
            "outpatient_visits",
            "length_of_stay",
            *outcomes,
        ]
        assert ours.height > 20 and ours.height == theirs.height
        a = ours.select(*columns, pl.col("prior_year_standardised_cents")).sort("episode_id")
        b = theirs.select(*columns, pl.col("prior_year_standardised_cents")).sort("episode_id")
        assert a.cast({c: b.schema[c] for c in a.columns}).equals(b), bundle
        line_cols = [
            "episode_id",
            "source_table",
            "claim_id",
            "component",
            "days_in",
            "days",
            "allocated_cents",
            "allocated_standardised_cents",
        ]
        our_lines = read_all(out / "episode_lines").filter(pl.col("bundle_id") == bundle).select(line_cols)
        their_lines = sql_lines.filter(pl.col("bundle_id") == bundle).select(line_cols)
        key = ["episode_id", "source_table", "claim_id"]
        a = our_lines.sort(key)
        b = their_lines.sort(key)
        assert a.cast({c: b.schema[c] for c in a.columns}).equals(b), bundle


def test_ids_and_results_do_not_depend_on_bucket_or_worker_counts(clean_run, tmp_path):
    delivery, _, out = clean_run
    ingest(delivery, tmp_path / "store2", n_buckets=2, data_docs=False)
    with dask_cluster(workers=2) as address:
        build_episodes(
            tmp_path / "store2",
            tmp_path / "ep2",
            bundles=["hip_oa", "heart_failure", "birth_care"],
            mapper=dask_mapper(address),
        )
    columns = [
        "episode_id",
        "bundle_id",
        "anchor_date",
        "status",
        "total_cents",
        "total_standardised_cents",
        "n_chronic_conditions",
        "prior_year_standardised_cents",
    ]
    four = read_all(out / "episodes").filter(pl.col("bundle_id").is_in(["hip_oa", "heart_failure", "birth_care"]))
    two = read_all(tmp_path / "ep2" / "episodes")
    assert four.select(columns).sort("episode_id").equals(two.select(columns).sort("episode_id"))


def test_grouping_buckets_into_tasks_changes_the_files_not_the_rows(clean_run, tmp_path):
    """Four buckets built as one task write one file per bundle and anchor year instead of four,
    with the same episodes and episode lines, row for row."""
    _, store, _ = clean_run
    bundles = ["hip_oa", "cataract"]
    one = build_episodes(store, tmp_path / "one", bundles=bundles, buckets_per_task=1)
    four = build_episodes(store, tmp_path / "four", bundles=bundles, buckets_per_task=4)
    assert (one["tasks"], four["tasks"]) == (4, 1)
    for output, key in (
        ("episodes", ["episode_id"]),
        ("episode_lines", ["episode_id", "source_table", "claim_id", "component", "phase"]),
    ):
        by_bucket = sorted((tmp_path / "one" / output).rglob("*.parquet"))
        grouped = sorted((tmp_path / "four" / output).rglob("*.parquet"))
        assert {f.name for f in grouped} == {"part-0000.parquet"}
        folders = {f.parent.relative_to(tmp_path / "four") for f in grouped}
        assert folders == {f.parent.relative_to(tmp_path / "one") for f in by_bucket}
        assert len(by_bucket) > len(grouped) == len(folders)
        a, b = read_all(tmp_path / "one" / output), read_all(tmp_path / "four" / output)
        assert a.height == b.height > 0
        assert a.sort(key).equals(b.select(a.columns).sort(key))
    assert one["allocated_euros"] == four["allocated_euros"]


def test_prefect_flow_and_cli(clean_run, tmp_path):
    """The episodes flow on the real Prefect API and a Dask cluster gives the same episodes; the CLI
    rejects an unknown bundle with one clear message."""
    from typer.testing import CliRunner

    from flows import episodes_command  # noqa: F401  (registers the command)
    from flows.cli import UserError, app
    from flows.episodes_flow import episodes_flow

    _, store, out = clean_run
    manifest = episodes_flow(str(store), str(tmp_path / "flow"), bundles=["cataract"], workers=2)
    assert manifest["episodes"]["cataract"] > 0
    ours = read_all(tmp_path / "flow" / "episodes").sort("episode_id")
    reference = read_all(out / "episodes").filter(pl.col("bundle_id") == "cataract").sort("episode_id")
    assert ours.equals(reference.select(ours.columns).cast(ours.schema))
    result = CliRunner().invoke(
        app, ["episodes", "--store", str(store), "--out", str(tmp_path / "x"), "--bundles", "hip"]
    )
    assert isinstance(result.exception, UserError) and "unknown bundle" in str(result.exception)


def test_the_benchmark_runs_both_engines_on_a_store_and_records_them(faulty_run, tmp_path):
    """``bench/episodes_bench.py`` end to end on a small store: both implementations find the same
    episodes, and the record has the times, the ratio and the engine's memory per worker."""
    import json

    from bench.episodes_bench import main

    _, store, _ = faulty_run
    results = tmp_path / "episodes.jsonl"
    assert (
        main(
            [
                str(store),
                "--workers",
                "1",
                "--repeat",
                "2",
                "--ceiling-rounds",
                "1",
                "--label",
                "smoke",
                "--results",
                str(results),
            ]
        )
        == 0
    )
    record = json.loads(results.read_text().splitlines()[-1])
    run = record["runs"][0]
    assert run["engine"]["episodes"] == run["duckdb"]["episodes"] and sum(run["engine"]["episodes"].values()) > 0
    assert len(run["engine"]["walls_s"]) == len(run["duckdb"]["walls_s"]) == 2
    assert run["ratio_engine_to_duckdb"] == round(run["engine"]["wall_s"] / run["duckdb"]["wall_s"], 2)
    assert run["engine"]["peak_worker_rss_mb"] > 0 and run["duckdb"]["peak_tree_rss_mb"] > 0
