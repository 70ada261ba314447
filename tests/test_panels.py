"""``zorgpad panels`` on a generated clean delivery: the Prefect flow on a real Dask cluster gives the
same files as the single-process build (and a rebuild the same bytes), the generator's independently
computed settlements are reproduced to the cent, O/E is exactly 1 for providers with identical
episodes, nothing suppressed is published, and wrong inputs are refused before any work."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import polars as pl
import pytest

from folder_content import VOLATILE, folder_content
from transforms.contract import load_contract
from transforms.episodes.run import build_episodes
from transforms.errors import UserFacingError
from transforms.ingest.run import ingest
from transforms.output_folder import OutputError
from transforms.panels import benchmark, casemix
from transforms.panels.inputs import read_episodes
from transforms.panels.run import PanelOptions, build_panels, preflight
from transforms.panels.tables import PANEL_TABLES, table
from transforms.synth import SynthConfig, generate_delivery, truth_dir

# integration: a generated delivery through ingest, episodes and panels, case-mix fits on a cluster
pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("panels")
    generate_delivery(SynthConfig(patients=8_000, seed=11, clean=True, block_size=4_000), root / "delivery")
    ingest(root / "delivery", root / "store", n_buckets=4, data_docs=False)
    build_episodes(root / "store", root / "episodes")
    build_panels(root / "store", root / "episodes", root / "panels")
    return {
        "root": root,
        "delivery": root / "delivery",
        "store": root / "store",
        "episodes": root / "episodes",
        "panels": root / "panels",
    }


def content(folder: Path) -> dict[str, str]:
    """Every file's hash, the manifest without its timings and run id, and without ``casemix``, which
    names the solver path (it differs between a cluster and one process)."""
    return folder_content(folder, (*VOLATILE, "casemix"))


def test_a_rebuild_gives_the_same_bytes(built, tmp_path):
    build_panels(built["store"], built["episodes"], tmp_path / "again")
    assert content(tmp_path / "again") == content(built["panels"])


def coefficients_agree(a: pl.DataFrame, b: pl.DataFrame) -> float:
    """The largest relative difference between two fits' coefficients (the same terms in both)."""
    joined = a.join(b, on=["bundle_id", "model", "term"], suffix="_other")
    assert joined.height == a.height == b.height
    relative = (pl.col("coefficient") - pl.col("coefficient_other")).abs() / pl.max_horizontal(
        pl.col("coefficient_other").abs(), pl.lit(1e-12)
    )
    return joined.select(relative.max()).item()


def test_the_flow_fits_with_dask_ml_on_the_cluster_and_any_cluster_gives_the_same_bytes(built, tmp_path):
    """With every model sent to dask-ml (``casemix_cluster_from=0``), the Prefect flow on a two-worker
    cluster and the plain build on a one-worker cluster write the same files; the single-process fit
    (exact IRLS) agrees with them to 1e-9 on every coefficient. By default these models are small and
    each is fitted by exact IRLS in one task on the cluster, to the same coefficients."""
    from flows.dask_cluster import dask_cluster
    from flows.panels_flow import panels_flow

    options = PanelOptions(bundles=("cataract", "hip_oa"), casemix_cluster_from=0)
    manifest = panels_flow(
        str(built["store"]), str(built["episodes"]), str(tmp_path / "flow"), options=options.model_dump(), workers=2
    )
    fitted = [v for v in manifest["casemix"].values() if v["fitted"]]
    assert fitted and all(v["solver"].startswith("dask-ml") for v in fitted), manifest["casemix"]
    defaults = PanelOptions(bundles=options.bundles)
    with dask_cluster(workers=1) as address:
        build_panels(built["store"], built["episodes"], tmp_path / "one", options, address=address)
        build_panels(built["store"], built["episodes"], tmp_path / "tasks", defaults, address=address)
    assert content(tmp_path / "flow") == content(tmp_path / "one")
    on_dask = table("casemix_coefficients").read(tmp_path / "flow")
    local = table("casemix_coefficients").read(built["panels"]).filter(pl.col("bundle_id").is_in(options.bundles))
    assert coefficients_agree(on_dask, local) < 1e-9

    in_tasks = json.loads((tmp_path / "tasks" / "manifest.json").read_text())["casemix"]
    assert in_tasks.keys() == manifest["casemix"].keys()
    assert all(v["solver"] == "numpy exact IRLS" for v in in_tasks.values()), in_tasks
    assert [v["fitted"] for v in in_tasks.values()] == [v["fitted"] for v in manifest["casemix"].values()]
    assert coefficients_agree(table("casemix_coefficients").read(tmp_path / "tasks"), on_dask) < 1e-9


def test_every_table_is_as_declared_and_its_key_unique(built):
    for name, spec in PANEL_TABLES.items():
        if name == "reconciliation_changes":
            continue  # written only with --earlier
        frame = spec.read(built["panels"])
        assert frame.height > 0 or name in ("reconciliation_phases",), name
        assert frame.columns == spec.column_names
        assert not frame.select(spec.key).is_duplicated().any(), name
        for part in (built["panels"] / name).rglob("*.parquet"):
            assert all(
                p.split("=")[0] in spec.partition_by for p in part.relative_to(built["panels"] / name).parts[:-1]
            )


def test_the_generators_settlements_are_reproduced_to_the_cent(built):
    truth = pl.read_parquet(truth_dir(built["delivery"]) / "settlements.parquet").filter(
        (pl.col("kind") == "settlement") & pl.col("phase").is_null()
    )
    assert truth.height > 5, "the generator computed settlements for several contracts"
    panels = table("reconciliation").read(built["panels"])
    joined = truth.join(panels, on=["contract_id", "bundle_id", "performance_year"], how="left", suffix="_panels")
    for column in (
        "n_episodes",
        "baseline_cents",
        "target_cents",
        "actual_cents",
        "gross_savings_cents",
        "settlement_cents",
    ):
        differ = joined.filter(pl.col(column).ne_missing(pl.col(f"{column}_panels")))
        assert differ.height == 0, (
            column,
            differ.select("contract_id", "performance_year", column, f"{column}_panels").to_dicts(),
        )
    phases = pl.read_parquet(truth_dir(built["delivery"]) / "settlements.parquet").filter(
        (pl.col("kind") == "settlement") & pl.col("phase").is_not_null()
    )
    if phases.height:
        published = table("reconciliation_phases").read(built["panels"])
        joined = phases.join(published, on=["contract_id", "bundle_id", "performance_year", "phase"], how="left")
        assert joined.filter(pl.col("gross_savings_cents").ne_missing(pl.col("result_cents"))).height == 0


def test_providers_with_identical_episodes_have_oe_exactly_one(built):
    episodes = read_episodes(built["episodes"], "cataract").filter(pl.col("status").is_in(["complete", "death"]))
    copies = pl.concat(
        [
            episodes.with_columns(
                pl.lit(f"0600000{k}").alias("provider_agb"), (pl.col("episode_id") + f"-{k}").alias("episode_id")
            )
            for k in range(5)
        ]
    )
    years = sorted(copies["anchor_year"].unique().to_list())
    for target, (_y, yhat) in zip(("in_bundle_cents", "in_bundle_standardised_cents"), benchmark.COST_BASES.values()):
        X, names = casemix.design(copies, years)
        fit = casemix.fit_local(
            X, copies[target].cast(pl.Float64).to_numpy(), "poisson", names, target=target, years=years
        )
        copies = copies.with_columns(pl.Series(yhat, fit.predict(X)))
    copies = copies.with_columns(pl.lit("PV28").alias("region_code"), pl.lit("Zuid-Holland").alias("region_name"))
    rows = benchmark.cost_rows(copies, "cataract").filter(pl.col("level") == "provider")
    assert rows.height == 5 * len(years) * 2
    assert rows["oe"].to_list() == [1.0] * rows.height
    assert rows["outlier"].null_count() == rows.height


def test_nothing_suppressed_is_published_and_no_small_cell_is_shown(built):
    for name in ("benchmark", "benchmark_outcomes", "bundle_costs"):
        frame = table(name).read(built["panels"])
        hidden = frame.filter(pl.col("suppressed"))
        values = [c for c in frame.columns if frame.schema[c] in (pl.Int64, pl.Float64)]
        assert hidden.select(pl.all_horizontal(pl.col(values).is_null())).to_series().all(), name
        assert frame.filter(~pl.col("suppressed") & (pl.col("n_episodes") < 10)).height == 0, name
        assert hidden.height > 0, f"{name}: a small delivery has small cells"


def test_the_manifest_says_what_was_left_out_and_where_it_came_from(built):
    manifest = json.loads((built["panels"] / "manifest.json").read_text())
    assert manifest["zorgpad"]["kind"] == "panels"
    assert (
        manifest["inputs"]["store"]["manifest_sha256"]
        == hashlib.sha256((built["store"] / "manifest.json").read_bytes()).hexdigest()
    )
    assert manifest["episodes_left_out"]["hip_oa"].get("censored_data", 0) > 0
    assert manifest["data_as_of"] == json.loads((built["delivery"] / "delivery.json").read_text())["data_as_of"]


def test_an_earlier_panels_folder_gives_the_change_per_settlement(built, tmp_path):
    build_panels(built["store"], built["episodes"], tmp_path / "later", earlier=built["panels"])
    changes = table("reconciliation_changes").read(tmp_path / "later")
    assert changes.height == table("reconciliation").read(built["panels"]).height
    assert set(changes["change"]) == {"unchanged"}


def test_wrong_inputs_are_refused_before_any_work(built, tmp_path):
    with pytest.raises(OutputError, match="lies inside the store"):
        preflight(built["store"], built["episodes"], built["store"] / "panels", PanelOptions())
    with pytest.raises(OutputError, match="is not a zorgpad episodes folder"):
        preflight(built["store"], built["store"], tmp_path / "p", PanelOptions())
    store = tmp_path / "store"
    shutil.copytree(built["store"], store)
    contracts = sorted((store / "contracts").rglob("*.parquet"))[0]
    frame = pl.read_parquet(contracts)
    broken = frame.with_columns(
        pl.when(pl.col("bundle_id") == "cataract")
        .then(pl.col("parameters").str.replace('"trend"', '"trnd"'))
        .otherwise(pl.col("parameters"))
        .alias("parameters")
    )
    broken.write_parquet(contracts)
    episodes = tmp_path / "episodes"
    shutil.copytree(built["episodes"], episodes)
    manifest = json.loads((episodes / "manifest.json").read_text())
    (episodes / "manifest.json").write_text(json.dumps({**manifest, "store": str(store.resolve())}))
    with pytest.raises(
        UserFacingError, match=r"contract C-cataract-2018: unknown parameter 'trnd' \(did you mean 'trend'"
    ):
        preflight(store, episodes, tmp_path / "p", PanelOptions())
    with pytest.raises(OutputError, match="were built from the store"):
        preflight(built["store"], episodes, tmp_path / "p", PanelOptions())
    assert not (tmp_path / "p").exists()
    assert load_contract()  # the contract itself was not touched


def test_the_command_refuses_wrong_options_with_one_error_line(built, tmp_path):
    from test_cli_safety import assert_one_error_line, zorgpad

    done = zorgpad(
        tmp_path,
        "panels",
        "--store",
        str(built["store"]),
        "--episodes",
        str(built["episodes"]),
        "--out",
        str(tmp_path / "p"),
        "--min-cell",
        "0",
    )
    assert_one_error_line(done, "--min-cell")
    done = zorgpad(
        tmp_path,
        "panels",
        "--store",
        str(built["store"]),
        "--episodes",
        str(built["episodes"]),
        "--out",
        str(tmp_path / "p"),
        "--bundles",
        "hip_oa,nope",
    )
    assert_one_error_line(done, "--bundles", "nope")
    done = zorgpad(
        tmp_path,
        "panels",
        "--store",
        str(built["store"]),
        "--episodes",
        str(built["episodes"]),
        "--out",
        str(built["episodes"] / "panels"),
    )
    assert_one_error_line(done, "lies inside the episodes")
