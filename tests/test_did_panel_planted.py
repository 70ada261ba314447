"""Slow (``python -m pytest -m slow``): on a generated delivery with the default planted effects, the
DiD panels recover them, and the population placebo tells the benchmarks apart. 300,000 insured, 2015-2021: hip and knee contracts start in waves (2018,
2019, 2020) and lower the operation price of episodes at the treated providers by EUR 1,300 and
raise their volume by 8% (``truth.json`` ``effects``); cataract contracts plant nothing.

- the hip + knee ``episode`` panel: the ATT on in-bundle cost has the planted price effect inside its
  95% confidence interval and excludes no effect;
- the hip + knee ``provider_period`` panel: the ATT on volume, relative to the treated providers'
  volume before their start, has +8% inside its interval;
- the cataract ``episode`` panel: no significant effect;
- flat pre-trends: every pre-treatment event time of the event study that rests on at least 10
  treated providers has 0 inside its interval (with fewer, a clustered interval is too narrow to
  test anything: a delivery of this size has 3 or 4 providers in the 2019 wave, and the report warns).

Years: 2016-2019 for the episode panels (episodes anchored from 2020 are mostly censored by the
completeness date: their year of follow-up is not in the data), 2016-2020 for volume, whose
episodes count whatever their follow-up.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
import yaml

from transforms.did_panel.estimates import FEW_CLUSTERS
from transforms.did_panel.run import build_panel
from transforms.episodes.run import build_episodes
from transforms.ingest.run import ingest
from transforms.synth import SynthConfig, generate_delivery, truth_dir

pytestmark = pytest.mark.slow

ALL_STATUSES = ["complete", "death", "censored_data", "censored_enrolment"]
SPECS = {
    "price": {
        "name": "hip_knee_price",
        "bundles": ["hip_oa", "knee_oa"],
        "unit": "episode",
        "years": [2016, 2019],
        "outcomes": ["in_bundle_cents", "complication"],
        "covariates": ["age_at_anchor", "sex", "n_chronic_conditions"],
        "filters": {"status": ["complete", "death"]},
    },
    "volume": {
        "name": "hip_knee_volume",
        "bundles": ["hip_oa", "knee_oa"],
        "unit": "provider_period",
        "years": [2016, 2020],
        "outcomes": ["volume"],
        "filters": {"status": ALL_STATUSES},
    },
    "null": {
        "name": "cataract_price",
        "bundles": ["cataract"],
        "unit": "episode",
        "years": [2016, 2018],
        "outcomes": ["in_bundle_cents"],
        "covariates": ["age_at_anchor", "sex"],
        "filters": {"status": ["complete", "death"]},
    },
}


def build_inputs(root: Path, patients: int = 300_000, seed: int = 7) -> dict[str, Path]:
    delivery = root / "delivery"
    generate_delivery(
        SynthConfig(patients=patients, first_year=2015, last_year=2021, seed=seed, block_size=10_000), delivery
    )
    ingest(delivery, root / "store", data_docs=False)
    build_episodes(root / "store", root / "episodes", bundles=["hip_oa", "knee_oa", "cataract"])
    return {"truth": truth_dir(delivery), "store": root / "store", "episodes": root / "episodes"}


def estimates(inputs: dict[str, Path], root: Path) -> dict[str, dict]:
    """Build every spec with --estimate; per spec its summary rows by outcome and dynamic aggregation."""
    found = {}
    for key, spec in SPECS.items():
        path = root / f"{key}.yaml"
        path.write_text(yaml.safe_dump(spec, sort_keys=False))
        manifest = build_panel(path, inputs["store"], inputs["episodes"], root / f"panel_{key}", estimate=True)
        out = Path(manifest["out"])
        summary = {
            row["outcome"]: row for row in pl.read_parquet(out / "estimates" / "summary.parquet").iter_rows(named=True)
        }
        dynamic = {
            o: pl.read_parquet(out / "estimates" / o / "aggregations.parquet").filter(
                (pl.col("type") == "dynamic") & pl.col("event_time").is_not_null()
            )
            for o in summary
        }
        found[key] = {
            "summary": summary,
            "dynamic": dynamic,
            "manifest": manifest,
            "panel": pl.read_parquet(out / "adapters" / "did.parquet"),
        }
    return found


def check_recovery(found: dict[str, dict], truth: Path) -> None:
    effects = json.loads((truth / "truth.json").read_text())["effects"]
    price = effects["hip_oa"]["price_eur_per_episode"] * 100
    assert price == effects["knee_oa"]["price_eur_per_episode"] * 100 < 0
    volume = effects["hip_oa"]["volume_pct"] / 100

    cost = found["price"]["summary"]["in_bundle_cents"]
    assert cost["ci_low"] <= price <= cost["ci_high"], cost
    assert cost["ci_high"] < 0, cost  # the effect is found, not only not excluded
    counts = found["volume"]["summary"]["volume"]
    base = counts["pre_treatment_mean"]
    assert counts["ci_low"] / base <= volume <= counts["ci_high"] / base, counts
    assert effects["cataract"]["price_eur_per_episode"] == 0 and effects["cataract"]["volume_pct"] == 0
    null = found["null"]["summary"]["in_bundle_cents"]
    assert null["ci_low"] <= 0 <= null["ci_high"], null
    for key, outcome in (("price", "in_bundle_cents"), ("volume", "volume"), ("null", "in_bundle_cents")):
        clusters = treated_clusters_per_event_time(found[key]["panel"], outcome)
        pre = (
            found[key]["dynamic"][outcome]
            .filter(pl.col("event_time") < 0)
            .with_columns(pl.col("event_time").replace_strict(clusters, default=0).alias("clusters"))
        )
        tested = pre.filter(pl.col("clusters") >= FEW_CLUSTERS)
        # the cataract contracts have fewer than 10 providers: nothing of theirs is testable
        assert tested.height or key == "null", (key, "no pre-treatment event time with enough treated providers", pre)
        assert ((tested["ci_low"] <= 0) & (tested["ci_high"] >= 0)).all(), (key, tested)


def treated_clusters_per_event_time(panel: pl.DataFrame, outcome: str) -> dict[int, int]:
    """Treated providers behind each event time: cohorts g whose period g + e and its comparison
    period (g - 1 for e >= 0, g + e - 1 before: R did's varying base) are in the panel."""
    rows = panel.filter(pl.col(outcome).is_not_null())
    periods = set(rows["period"].to_list())
    cohorts = {
        g: set(rows.filter(pl.col("cohort") == g)["provider_agb"].to_list())
        for g in rows["cohort"].unique().to_list()
        if g
    }
    out = {}
    for e in range(min(periods) - max(cohorts), max(periods) - min(cohorts) + 1):
        providers = set()
        for g, members in cohorts.items():
            base = g - 1 if e >= 0 else g + e - 1
            if g + e in periods and base in periods:
                providers |= members
        out[e] = len(providers)
    return out


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    return build_inputs(tmp_path_factory.mktemp("planted"))


def test_the_planted_effects_are_recovered(inputs, tmp_path):
    check_recovery(estimates(inputs, tmp_path), inputs["truth"])


def oldest_region_population(store: Path, out: Path) -> Path:
    """The two largest GP practices of the province whose attributed insured are oldest, from 2019:
    an older population costs more, so a national benchmark sees losses the contract did not make
    (the generator draws everyone's gemeente from the real age shares of the gemeenten)."""
    from transforms.panels.inputs import providers_with_region
    from transforms.population.attribution import attribute, scan_store, store_period

    gp, insured = scan_store(store)
    attributed = attribute(gp, insured, period=store_period(store)).filter(
        (pl.col("year") == 2016) & (pl.col("quarter") == 1)
    )
    born = (
        pl.read_parquet(sorted((store / "insured").rglob("*.parquet")))
        .group_by("patient_id")
        .agg(pl.col("birth_year").first())
    )
    frame = attributed.join(providers_with_region(store), left_on="practice_agb", right_on="provider_agb").join(
        born, on="patient_id"
    )
    oldest = frame.group_by("region_code").agg(
        (2016 - pl.col("birth_year")).mean().alias("age"), pl.col("practice_agb").n_unique().alias("practices")
    )
    region = oldest.filter(pl.col("practices") >= 3).sort("age", descending=True)["region_code"][0]
    practices = (
        frame.filter(pl.col("region_code") == region)
        .group_by("practice_agb")
        .len()
        .sort(["len", "practice_agb"], descending=[True, False])["practice_agb"]
        .head(2)
        .to_list()
    )
    path = out / "population.yaml"
    path.write_text(
        yaml.safe_dump({"name": f"two_practices_{region}", "practices": practices, "start_date": "2019-01-01"})
    )
    return path


def test_the_population_placebo_finds_the_national_benchmark_spurious(inputs, tmp_path):
    """No population contract is planted, so the truth is no savings: the national benchmark shows the
    older region's cost as losses outside its band; the capped regional and case-mix ones do not."""
    from typer.testing import CliRunner

    import flows.commands  # noqa: F401  (registers every command)
    from flows.cli import app
    from transforms.population.run import build_population

    done = CliRunner().invoke(app, ["ingest-vektis", "--out", str(tmp_path / "vektis"), "--years", "2015-2021"])
    assert done.exit_code == 0, done.output
    population = oldest_region_population(inputs["store"], tmp_path)
    manifest = build_population(inputs["store"], tmp_path / "vektis", population, tmp_path / "population")
    placebo = {row["benchmark"]: row for row in manifest["placebo"]}
    national = placebo["national"]
    assert national["spurious"] and national["systematic"] and national["mean_gap_cents"] > 0, national
    assert national["quarters_outside_band"] >= national["quarters"] // 2
    for name in ("regional_capped_p95", "casemix"):
        assert not placebo[name]["spurious"], placebo[name]
        assert placebo[name]["quarters_outside_band"] <= 1, placebo[name]
        assert abs(placebo[name]["spurious_euros_per_year"]) < abs(national["spurious_euros_per_year"]) / 4
