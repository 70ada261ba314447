"""The generator's truth for the panels (``docs/panels-spec.md`` sections 1-3).

- On an ingested clean delivery, the generator's own episodes (``DIR.truth/episodes``,
  ``episode_lines``) equal the episode engine's to the cent, for every bundle: episode ids, windows,
  triggers, status, in-bundle cents declared and standardised (and per birth-care phase), the
  Boolean outcomes, and every prorated in-bundle line. The expected settlements recomputed from the
  engine's episodes are the truth's, row for row: that is what makes them reproducible by the panels.
- On a 30,000-patient clean delivery: the planted utilisation provider costs about 20% more than
  its untreated peers in declared and standardised cost, the price provider only in declared cost,
  each with at least 40 eligible hip episodes; the costlier province and the stroke tail are there.
- The settlement arithmetic gives the hand-computed results on tiny examples.
"""

from __future__ import annotations

import json
from datetime import date
from fractions import Fraction
from pathlib import Path

import polars as pl
import pytest

import reference
from transforms.bundles import load_bundles
from transforms.episodes.run import build_episodes
from transforms.ingest.run import ingest
from transforms.synth import SynthConfig, generate_delivery, truth_dir
from transforms.synth.settlements import (
    PARAMETERS,
    Contract,
    ContractParameterError,
    Reconciliation,
    TruthEpisode,
    check_parameters,
    contracts_from_rows,
    percentile,
)

# integration: generated deliveries against their truth files
pytestmark = pytest.mark.integration

ELIGIBLE = ["complete", "death"]
HIP_COMPLICATION_PRODUCT = "192001007"  # hip_complication in catalogue.yml
SPEC_PARAMETERS = {  # the parameter table of docs/panels-spec.md section 3 (baseline_years and baseline: every shared contract)
    "trend",
    "discount",
    "cost_basis",
    "winsorise_pct",
    "stop_loss_eur",
    "shared_savings_rate",
    "shared_losses_rate",
    "losses_from_contract_year",
    "minimum_savings_pct",
    "corridor",
    "quality_gate",
    "distribution_key",
    "fixed_sum_eur_per_patient",
    "risk_adjust",
    "baseline_years",
    "baseline",
}


def read_all(folder: Path) -> pl.DataFrame:
    files = sorted(folder.rglob("*.parquet"))
    return pl.concat([pl.read_parquet(f, hive_partitioning=True) for f in files], how="diagonal_relaxed")


def truth_episodes(delivery: Path) -> pl.DataFrame:
    return pl.read_parquet(truth_dir(delivery) / "episodes" / "*.parquet", missing_columns="insert")


@pytest.fixture(scope="module")
def engine_run(tmp_path_factory):
    """A clean delivery, ingested, with the engine's episodes of every bundle."""
    root = tmp_path_factory.mktemp("panels-truth")
    delivery = root / "delivery"
    generate_delivery(SynthConfig(patients=6_000, seed=19, clean=True, block_size=3_000), delivery)
    ingest(delivery, root / "store", n_buckets=2, data_docs=False)
    build_episodes(root / "store", root / "episodes")
    return delivery, root / "episodes"


@pytest.fixture(scope="module")
def effects(tmp_path_factory) -> Path:
    """A 30,000-patient clean delivery (the low end of the sizes the panels are tested at)."""
    out = tmp_path_factory.mktemp("panels-effects") / "d30k"
    generate_delivery(SynthConfig(patients=30_000, seed=11, clean=True), out, workers=2)
    return out


# ------------------------------------------------------------------ truth episodes = engine episodes
def test_truth_episodes_equal_the_engine_episodes_to_the_cent(engine_run):
    delivery, out = engine_run
    engine = read_all(out / "episodes")
    truth = truth_episodes(delivery)
    assert set(truth["bundle_id"].unique()) == set(load_bundles()), "every bundle has truth episodes"
    keys = [
        "episode_id",
        "bundle_id",
        "patient_id",
        "anchor_date",
        "anchor_provider_agb",
        "anchor_claim_id",
        "window_start",
        "window_end",
        "n_triggers",
        "status",
        "in_bundle_cents",
        "in_bundle_standardised_cents",
    ]
    a = engine.select(keys).cast({"n_triggers": pl.Int32}).sort("episode_id")
    b = truth.select(keys).cast({"n_triggers": pl.Int32}).sort("episode_id")
    assert a.height == b.height > 1_000
    assert a.equals(b)
    # every Boolean outcome of every bundle
    for bundle in load_bundles().values():
        names = [o.name for o in bundle.outcomes if o.kind in ("any_line", "n_triggers_at_least", "death_within")]
        e = engine.filter(pl.col("bundle_id") == bundle.id).select("episode_id", *names).sort("episode_id")
        t = truth.filter(pl.col("bundle_id") == bundle.id).select("episode_id", *names).sort("episode_id")
        assert e.equals(t), bundle.id
    # birth care per phase (what a per-phase bundled payment settles)
    phases = [
        f"{p}_{c}"
        for p in ("prenatal", "natal", "postnatal", "maternity_care")
        for c in ("cents", "standardised_cents")
    ]
    lines = read_all(out / "episode_lines").filter(
        (pl.col("bundle_id") == "birth_care") & (pl.col("component") == "in_bundle")
    )
    per_phase = lines.group_by("episode_id").agg(
        *[
            pl.col(column).filter(pl.col("phase") == p).sum().alias(f"{p}_{suffix}")
            for p in ("prenatal", "natal", "postnatal", "maternity_care")
            for column, suffix in (("allocated_cents", "cents"), ("allocated_standardised_cents", "standardised_cents"))
        ]
    )
    births = truth.filter(pl.col("bundle_id") == "birth_care").select("episode_id", *phases).sort("episode_id")
    assert births.height > 100
    engine_births = (
        births.select("episode_id")
        .join(per_phase, on="episode_id", how="left")
        .with_columns(pl.col(phases).fill_null(0))
    )
    assert engine_births.select(births.columns).cast(births.schema).equals(births)


def test_truth_lines_are_the_engine_in_bundle_lines(engine_run):
    delivery, out = engine_run
    cols = [
        "bundle_id",
        "episode_id",
        "source_table",
        "claim_id",
        "days_in",
        "days",
        "allocated_cents",
        "allocated_standardised_cents",
    ]
    engine = read_all(out / "episode_lines").filter(pl.col("component") == "in_bundle").select(cols)
    truth = pl.read_parquet(truth_dir(delivery) / "episode_lines" / "*.parquet").select(cols)
    key = ["bundle_id", "episode_id", "source_table", "claim_id"]
    a = engine.sort(key)
    b = truth.sort(key)
    assert a.height == b.height > 5_000
    assert a.cast(b.schema).equals(b)


# --------------------------------------------------------------- settlements reproducible by the panels
def _engine_truth_episodes(delivery: Path, out: Path) -> tuple[list[TruthEpisode], dict[str, str], dict[str, str]]:
    """The engine's episodes as settlement inputs, with provinces from the delivery's providers table
    and the CBS division (what a panel sees)."""
    providers = pl.read_parquet(delivery / "providers" / "*.parquet")
    cbs = dict(reference.table("cbs/gemeenten_2020.parquet").select("gemeente_code", "province_code").iter_rows())
    province = {a: cbs[g] for a, g in providers.select("provider_agb", "gemeente_code").iter_rows()}
    kind = dict(providers.select("provider_agb", "provider_type").iter_rows())
    episodes = read_all(out / "episodes")
    lines = read_all(out / "episode_lines").filter(pl.col("component") == "in_bundle")
    phases = (
        lines.filter(pl.col("phase").is_not_null())
        .group_by("episode_id", "phase")
        .agg(pl.col("allocated_cents").sum(), pl.col("allocated_standardised_cents").sum())
    )
    by_episode: dict[str, dict[str, tuple[int, int]]] = {}
    for eid, phase, d, s in phases.iter_rows():
        by_episode.setdefault(eid, {})[phase] = (d, s)
    out_eps = []
    for row in episodes.iter_rows(named=True):
        out_eps.append(
            TruthEpisode(
                bundle_id=row["bundle_id"],
                episode_id=row["episode_id"],
                patient_id=row["patient_id"],
                anchor_date=row["anchor_date"],
                provider=row["anchor_provider_agb"],
                province=province[row["anchor_provider_agb"]],
                status=row["status"],
                declared=row["in_bundle_cents"],
                standardised=row["in_bundle_standardised_cents"],
                outcomes={"reoperation_90d": bool(row.get("reoperation_90d"))},
                phases={
                    p: by_episode.get(row["episode_id"], {}).get(p, (0, 0))
                    for p in ("prenatal", "natal", "postnatal", "maternity_care")
                }
                if row["bundle_id"] == "birth_care"
                else {},
            )
        )
    return out_eps, province, kind


def test_settlements_recomputed_from_the_engine_episodes_are_the_truth(engine_run):
    delivery, out = engine_run
    truth = json.loads((truth_dir(delivery) / "truth.json").read_text())
    expected = pl.read_parquet(truth_dir(delivery) / "settlements.parquet")
    episodes, province, kind = _engine_truth_episodes(delivery, out)
    meta = json.loads((delivery / "delivery.json").read_text())
    reconciliation = Reconciliation(
        episodes, province, kind, date.fromisoformat(meta["data_as_of"]), meta["first_year"], meta["last_year"]
    )
    computed = {(c["contract_id"], c["bundle_id"]) for c in truth["settlements"]["contracts"]}
    contracts = [
        c
        for c in contracts_from_rows(pl.read_parquet(delivery / "contracts" / "*.parquet").to_dicts())
        if (c.contract_id, c.bundle_id) in computed
    ]
    rows = [r for c in contracts for r in reconciliation.rows(c)[0]]
    got = pl.DataFrame(rows, schema=expected.schema).sort(
        "contract_id", "bundle_id", "kind", "performance_year", "phase", nulls_last=True
    )
    assert got.equals(expected)
    settled = expected.filter(pl.col("kind") == "settlement")
    assert set(settled["model"]) >= {"shared_savings_losses", "bundled_payment", "fixed_sum"}
    assert settled.filter(pl.col("settlement_cents") != 0).height >= 5
    assert expected.filter(pl.col("kind") == "placebo").height >= 5
    # the hip/knee contract's knee rows carry risk_adjust: left out, with the reason
    reasons = {(x["contract_id"], x["bundle_id"]): x["reason"] for x in truth["settlements"]["not_computed"]}
    assert any(b == "knee_oa" and "risk_adjust" in r for (_, b), r in reasons.items())


def test_contract_parameters_use_the_spec_names_and_cover_the_table(engine_run):
    delivery, _ = engine_run
    contracts = contracts_from_rows(pl.read_parquet(delivery / "contracts" / "*.parquet").to_dicts())
    used: set[str] = set()
    for contract in contracts:
        check_parameters(contract)  # raises on an unknown name or a wrong unit
        used |= set(contract.parameters)
        gate = contract.parameters.get("quality_gate")
        if gate:  # the gate names a Boolean outcome of the contract's bundle
            outcomes = {o.name: o.kind for o in load_bundles()[contract.bundle_id].outcomes}
            assert outcomes.get(gate["outcome"]) in ("any_line", "n_triggers_at_least", "death_within")
    assert SPEC_PARAMETERS <= used
    assert used <= set(PARAMETERS)
    models = {(c.bundle_id, c.model): set(c.parameters) for c in contracts}
    assert {"payment_eur_per_phase"} == models[("birth_care", "bundled_payment")]
    assert "corridor" in models[("cataract", "shared_savings_losses")]
    stroke = next(c for c in contracts if c.bundle_id == "acute_stroke")
    assert set(stroke.parameters["distribution_key"]) == set(stroke.providers)  # AGB codes, summing to 1
    assert sum(Fraction(str(v)) for v in stroke.parameters["distribution_key"].values()) == 1
    # the regional-baseline contracts sit in one province
    providers = pl.read_parquet(delivery / "providers" / "*.parquet")
    cbs = dict(reference.table("cbs/gemeenten_2020.parquet").select("gemeente_code", "province_code").iter_rows())
    province = {a: cbs[g] for a, g in providers.select("provider_agb", "gemeente_code").iter_rows()}
    for c in contracts:
        if c.bundle_id in ("cataract", "acute_stroke"):
            assert {province[a] for a in c.providers} == {"PV28"}, c.contract_id


def test_faulty_deliveries_have_no_truth_settlements_and_panel_effects_can_be_turned_off(tmp_path):
    faulty = tmp_path / "faulty"
    generate_delivery(SynthConfig(patients=400, seed=3), faulty)
    truth = json.loads((truth_dir(faulty) / "truth.json").read_text())
    assert truth["settlements"]["computed"] is False and "clean" in truth["settlements"]["reason"]
    assert not (truth_dir(faulty) / "settlements.parquet").exists()
    assert {p["kind"] for p in truth["panel_effects"]["provider_benchmark"]["providers"]} == {"utilisation", "price"}

    off = tmp_path / "off"
    generate_delivery(SynthConfig(patients=3_000, seed=3, clean=True).without_panel_effects(), off)
    truth = json.loads((truth_dir(off) / "truth.json").read_text())
    assert not any(p["active"] for p in truth["panel_effects"]["provider_benchmark"]["providers"])
    assert truth["panel_effects"]["regional"]["factors"] == {}
    dbc = pl.read_parquet(off / "dbc" / "*.parquet")
    assert dbc.filter(pl.col("product_cd") == "131999141").height == 0  # no planted clinical stays
    assert truth["settlements"]["computed"] is True  # clean: still exact


def test_truth_files_are_byte_identical_whatever_the_worker_count(tmp_path):
    import hashlib

    def digest(folder: Path) -> dict[str, str]:
        return {
            str(f.relative_to(folder)): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(folder.rglob("*"))
            if f.is_file() and f.name != "truth.json"
        }

    config = SynthConfig(patients=1_500, seed=3, clean=True, block_size=500)
    generate_delivery(config, tmp_path / "a", workers=1)
    generate_delivery(config, tmp_path / "b", workers=2)
    a, b = digest(truth_dir(tmp_path / "a")), digest(truth_dir(tmp_path / "b"))
    assert {"settlements.parquet", "reference_prices.parquet", "episodes/part-00002.parquet"} <= set(a)
    assert a == b
    ta, tb = (json.loads((truth_dir(tmp_path / x) / "truth.json").read_text()) for x in "ab")
    ta.pop("seconds"), tb.pop("seconds")
    assert ta == tb


# ------------------------------------------------------------------------------- planted effects
def _hip_groups(delivery: Path) -> pl.DataFrame:
    truth = json.loads((truth_dir(delivery) / "truth.json").read_text())
    planted = {p["kind"]: p["provider_agb"] for p in truth["panel_effects"]["provider_benchmark"]["providers"]}
    contracted = set(
        pl.read_parquet(delivery / "contracts" / "*.parquet").filter(pl.col("bundle_id") == "hip_oa")["provider_agb"]
    )
    assert not set(planted.values()) & contracted, "the planted providers never sign the contract"
    lines = pl.read_parquet(truth_dir(delivery) / "episode_lines" / "*.parquet")
    complication = (
        lines.filter(pl.col("product_cd") == HIP_COMPLICATION_PRODUCT)
        .group_by("episode_id")
        .agg(pl.col("allocated_cents").sum().alias("_cd"), pl.col("allocated_standardised_cents").sum().alias("_cs"))
    )
    hips = truth_episodes(delivery).filter((pl.col("bundle_id") == "hip_oa") & pl.col("status").is_in(ELIGIBLE))
    hips = hips.join(complication, on="episode_id", how="left").with_columns(pl.col("_cd", "_cs").fill_null(0))
    group = (
        pl.when(pl.col("anchor_provider_agb") == planted["utilisation"])
        .then(pl.lit("utilisation"))
        .when(pl.col("anchor_provider_agb") == planted["price"])
        .then(pl.lit("price"))
        .when(pl.col("anchor_provider_agb").is_in(list(contracted)))
        .then(pl.lit("treated"))
        .otherwise(pl.lit("peer"))
    )
    return (
        hips.with_columns(group.alias("group"))
        .group_by("group")
        .agg(
            pl.len().alias("n"),
            pl.col("in_bundle_cents").mean().alias("declared"),
            pl.col("in_bundle_standardised_cents").mean().alias("standardised"),
            # without the complication subtrajecten (4% of episodes, EUR 14,500 each): the noise of a small provider
            (pl.col("in_bundle_cents") - pl.col("_cd")).mean().alias("declared_nc"),
            (pl.col("in_bundle_standardised_cents") - pl.col("_cs")).mean().alias("standardised_nc"),
        )
    )


def test_planted_benchmark_providers_cost_twenty_percent_more_by_utilisation_and_by_price(effects):
    groups = {r["group"]: r for r in _hip_groups(effects).iter_rows(named=True)}
    peer = groups["peer"]
    ratio = {
        g: {k: groups[g][k] / peer[k] for k in ("declared", "standardised", "declared_nc", "standardised_nc")}
        for g in ("utilisation", "price")
    }
    for g in ("utilisation", "price"):
        assert groups[g]["n"] >= 40, (g, groups[g]["n"])  # enough for a funnel-plot outlier at 30,000 patients
    u, p = ratio["utilisation"], ratio["price"]
    # utilisation: ~20% above the untreated peers on both cost bases
    assert abs(u["declared"] - 1.2) < 0.1 and abs(u["standardised"] - 1.2) < 0.1, u
    assert abs(u["declared_nc"] - 1.2) < 0.04 and abs(u["standardised_nc"] - 1.2) < 0.04, u
    # price: ~20% above in declared cost only
    assert abs(p["declared"] - 1.2) < 0.1 and abs(p["standardised"] - 1.0) < 0.08, p
    assert abs(p["declared_nc"] - 1.2) < 0.04 and abs(p["standardised_nc"] - 1.0) < 0.03, p


def test_other_providers_price_levels_stay_close_to_their_kind(effects):
    """Re-priced at the national mean, nobody differs; declared, no untreated provider's mean hip
    operation price is more than 6% from the national mean of its year."""
    truth = json.loads((truth_dir(effects) / "truth.json").read_text())
    planted = {p["provider_agb"] for p in truth["panel_effects"]["provider_benchmark"]["providers"]}
    contracted = set(pl.read_parquet(effects / "contracts" / "*.parquet")["provider_agb"])
    dbc = pl.read_parquet(effects / "dbc" / "*.parquet").filter(pl.col("product_cd") == "131999052")
    dbc = dbc.with_columns(
        pl.col("end_date").dt.year().alias("year"), (pl.col("amount") * 100).cast(pl.Int64).alias("cents")
    )
    national = dbc.group_by("year").agg(pl.col("cents").mean().alias("national"))
    providers = pl.read_parquet(effects / "providers" / "*.parquet")
    per = (
        dbc.filter(~pl.col("provider_agb").is_in(list(planted | contracted)))
        .join(national, on="year")
        .join(providers, on="provider_agb")
        .group_by("provider_agb", "provider_type")
        .agg((pl.col("cents") / pl.col("national")).mean().alias("r"))
    )
    hospitals = per.filter(pl.col("provider_type") == "hospital")["r"]
    zbcs = per.filter(pl.col("provider_type") == "zbc")["r"]
    assert hospitals.len() > 20 and zbcs.len() > 5
    assert (hospitals - hospitals.mean()).abs().max() < 0.06
    assert (zbcs - zbcs.mean()).abs().max() < 0.06


def test_planted_costlier_province_and_stroke_tail(effects):
    truth = json.loads((truth_dir(effects) / "truth.json").read_text())
    regional = truth["panel_effects"]["regional"]
    assert regional["province"] == "PV28" and regional["factors"] == {"cataract": 1.2, "acute_stroke": 1.2}
    eps = truth_episodes(effects).filter(pl.col("status").is_in(ELIGIBLE))

    def means(bundle: str) -> dict[bool, tuple[float, float, int]]:
        b = eps.filter(pl.col("bundle_id") == bundle)
        return {
            k: (d, s, n)
            for k, d, s, n in b.group_by(pl.col("anchor_province") == "PV28")
            .agg(pl.col("in_bundle_cents").mean(), pl.col("in_bundle_standardised_cents").mean(), pl.len())
            .iter_rows()
        }

    cataract = means("cataract")
    assert cataract[True][2] > 80 and cataract[False][2] > 300
    for i in (0, 1):  # declared and standardised
        assert 1.12 < cataract[True][i] / cataract[False][i] < 1.3
    stroke = means("acute_stroke")
    for i in (0, 1):
        assert 1.05 < stroke[True][i] / stroke[False][i] < 1.5
    # hip is not made costlier by region
    hips = eps.filter(pl.col("bundle_id") == "hip_oa")
    by_province = dict(
        hips.group_by(pl.col("anchor_province") == "PV28")
        .agg(pl.col("in_bundle_standardised_cents").mean())
        .iter_rows()
    )
    assert abs(by_province[True] / by_province[False] - 1) < 0.08
    # the heavy right tail: the costliest 5% of stroke episodes carry far more than 5% of the money,
    # and capping them at the P95 matters
    cost = eps.filter(pl.col("bundle_id") == "acute_stroke")["in_bundle_cents"]
    p95 = cost.quantile(0.95, "linear")
    assert cost.filter(cost > p95).sum() / cost.sum() > 0.12
    assert 1 - cost.clip(upper_bound=p95).mean() / cost.mean() > 0.03
    assert cost.max() > 2.5 * p95


# ------------------------------------------------------------------------ the arithmetic by hand
def _ep(
    provider: str, year: int, cents: int, status: str = "complete", province: str | None = None, **kw
) -> TruthEpisode:
    province = province or {"A": "PV28", "B": "PV28", "C": "PV27"}[provider]
    _ep.n = getattr(_ep, "n", 0) + 1
    return TruthEpisode(
        bundle_id="x",
        episode_id=f"e{_ep.n}",
        anchor_date=date(year, 6, 1),
        provider=provider,
        province=province,
        status=status,
        declared=cents,
        standardised=cents,
        **kw,
    )


HAND = [
    _ep("A", 2015, 10_000),
    _ep("A", 2015, 20_000),
    _ep("B", 2015, 30_000),
    _ep("C", 2015, 100_000),
    _ep("A", 2016, 30_000),
    _ep("B", 2016, 10_000, phases={"prenatal": (3_000, 3_000), "natal": (7_000, 7_000)}),
    _ep("C", 2016, 50_000),
    _ep("A", 2017, 20_002, outcomes={"reop": True}),
    _ep("A", 2017, 40_000, outcomes={"reop": False}),
    _ep("A", 2017, 5_000, status="censored_data"),
    _ep("B", 2017, 5_000),
    _ep("C", 2017, 999_999, status="censored_enrolment"),
]


def _rows(providers: tuple[str, ...], start: int, model: str, params: dict) -> tuple[dict, dict, list[dict]]:
    contract = Contract("K", "x", model, providers, date(start, 1, 1), None, params)
    rows, shares = Reconciliation(
        HAND,
        {"A": "PV28", "B": "PV28", "C": "PV27"},
        {"A": "hospital", "B": "rehabilitation", "C": "hospital"},
        date(2018, 3, 31),
        2015,
        2017,
    ).rows(contract)
    settle = {(r["performance_year"], r["phase"]): r for r in rows if r["kind"] == "settlement"}
    placebo = {r["performance_year"]: r for r in rows if r["kind"] == "placebo"}
    return settle, placebo, shares


def test_percentile_is_linear_interpolation():
    assert percentile([100, 200, 300, 1000], Fraction(95)) == 895  # position 2.85: 300 + 0.85 * 700
    assert percentile([7], Fraction(99)) == 7


def test_settlement_own_baseline_trend_discount_stop_loss_losses():
    """Own baseline 2015-2016 with trend 1.1: A's costs (capped at 30,000) 10,000 * 1.1, 20,000 * 1.1,
    30,000 -> B = 21,000. 2017: T = 21,000 * 1.1 * 0.9 = 20,790; A's eligible 20,002 and 40,000 (capped
    at 30,000): A = 25,001, n = 2 (the censored_data one counted apart, the year provisional);
    S = (20,790 - 25,001) * 2 = -8,422; losses from year 1 at 25%: -2,105.5 -> -2,106 (half away)."""
    settle, placebo, _ = _rows(
        ("A",),
        2017,
        "shared_savings_losses",
        {
            "baseline_years": [2015, 2016],
            "baseline": "own",
            "trend": 1.1,
            "discount": 0.1,
            "stop_loss_eur": 300,
            "shared_savings_rate": 0.5,
            "shared_losses_rate": 0.25,
        },
    )
    r = settle[(2017, None)]
    assert (r["baseline_cents"], r["target_cents"], r["actual_cents"], r["n_episodes"]) == (21_000, 20_790, 25_001, 2)
    assert (r["gross_savings_cents"], r["settlement_cents"], r["settlement_exact"]) == (-8_422, -2_106, "-4211/2")
    assert r["provisional"] and r["n_censored_data"] == 1 and r["corridor_met"] and r["contract_year"] == 1
    # placebo 2015: T = 21,000 / 1.1 * 0.9 = 17,181.82; A = 15,000; S = 4,363.64
    assert (placebo[2015]["target_cents"], placebo[2015]["gross_savings_cents"]) == (17_182, 4_364)
    assert placebo[2015]["settlement_cents"] is None


def test_settlement_national_winsorised_corridor_and_quality_gate():
    """National baseline 2015 winsorised at P95 (89,500: 300 + ... see test_percentile): B = (10,000 +
    20,000 + 30,000 + 89,500) / 4 = 37,375. 2016: A's 30,000 (< P95 48,000), S = 7,375, 2% corridor
    met, no re-operation: 50% -> 3,687.5 -> 3,688. 2017: P95 of [5,000, 20,002, 40,000] = 38,000.2;
    A = (20,002 + 38,000.2) / 2 = 29,001.1; S = 16,747.8; re-operation rate 1/2 = the threshold (met):
    8,373.9 -> 8,374."""
    settle, _, shares = _rows(
        ("A",),
        2016,
        "shared_savings",
        {
            "baseline_years": [2015],
            "baseline": "national",
            "winsorise_pct": 95,
            "shared_savings_rate": 0.5,
            "minimum_savings_pct": 2,
            "quality_gate": {"outcome": "reop", "threshold": 0.5},
        },
    )
    assert settle[(2016, None)]["baseline_cents"] == 37_375
    assert (settle[(2016, None)]["gross_savings_cents"], settle[(2016, None)]["settlement_cents"]) == (7_375, 3_688)
    r = settle[(2017, None)]
    assert (r["actual_exact"], r["gross_savings_cents"], r["settlement_cents"]) == ("290011/10", 16_748, 8_374)
    assert r["quality_rate"] == "1/2" and r["quality_met"] is True
    assert [(s["provider_agb"], s["share_cents"]) for s in shares if s["performance_year"] == 2017] == [("A", 8_374)]
    # a stricter gate pays nothing; a 30% corridor neither
    settle, _, _ = _rows(
        ("A",),
        2016,
        "shared_savings",
        {
            "baseline_years": [2015],
            "baseline": "national",
            "winsorise_pct": 95,
            "shared_savings_rate": 0.5,
            "quality_gate": {"outcome": "reop", "threshold": 0.4},
        },
    )
    assert settle[(2017, None)]["quality_met"] is False and settle[(2017, None)]["settlement_cents"] == 0
    settle, _, _ = _rows(
        ("A",),
        2016,
        "shared_savings",
        {
            "baseline_years": [2015],
            "baseline": "national",
            "winsorise_pct": 95,
            "shared_savings_rate": 0.5,
            "minimum_savings_pct": 30,
        },
    )
    assert settle[(2016, None)]["corridor_met"] is False and settle[(2016, None)]["settlement_cents"] == 0


def test_settlement_regional_capped_p95_losses_from_year_two_and_distribution_key():
    """Region PV28 (A, B). 2015 P95 of [10,000, 20,000, 30,000] = 29,000: B = 59,000 / 3. 2016: P95 of
    [10,000, 30,000] = 29,000, A = (29,000 + 10,000) / 2 = 19,500, S = 1,000 / 3, 50% -> 500 / 3
    -> 167, shared 40/60: 200/3 -> 67 and 100. 2017 (year 2): P95 38,000.2, mean of 20,002, 38,000.2
    and 5,000 = 21,000.73; S = 59,000 - 63,002.2 = -4,002.2, losses from year 2 at 50%: -2,001.1 -> -2,001."""
    settle, _, shares = _rows(
        ("A", "B"),
        2016,
        "shared_savings_losses",
        {
            "baseline_years": [2015],
            "baseline": "regional_capped_p95",
            "shared_savings_rate": 0.5,
            "shared_losses_rate": 0.5,
            "losses_from_contract_year": 2,
            "distribution_key": {"A": 0.4, "B": 0.6},
        },
    )
    assert settle[(2016, None)]["baseline_exact"] == "59000/3"
    assert (settle[(2016, None)]["settlement_exact"], settle[(2016, None)]["settlement_cents"]) == ("500/3", 167)
    assert [(s["provider_agb"], s["share_cents"]) for s in shares if s["performance_year"] == 2016] == [
        ("A", 67),
        ("B", 100),
    ]
    assert (settle[(2017, None)]["gross_savings_exact"], settle[(2017, None)]["settlement_cents"]) == (
        "-20011/5",
        -2_001,
    )
    # the same loss in contract year 1 is not shared
    settle, _, _ = _rows(
        ("A", "B"),
        2017,
        "shared_savings_losses",
        {
            "baseline_years": [2015],
            "baseline": "regional_capped_p95",
            "shared_savings_rate": 0.5,
            "shared_losses_rate": 0.5,
            "losses_from_contract_year": 2,
        },
    )
    assert settle[(2017, None)]["gross_savings_cents"] < 0 and settle[(2017, None)]["settlement_cents"] == 0


def test_settlement_ci95_corridor_fixed_sum_and_bundled_payment_per_phase():
    """ci95: own baseline [10,000, 20,000, 30,000] -> 20,000; 2017 A = 30,001, |T - A| = 10,001 is
    inside 1.96 * sd / sqrt(2) = 1.96 * 9,999 = 19,598: no settlement. Placebo 2015: A = 15,000,
    |S / n| = 5,000 inside 1.96 * 5,000 = 9,800. Fixed sum 400 euros for C's one 2016 patient of
    50,000 cents: -10,000. Bundled payment per phase for B's 2016 birth (3,000 prenatal, 7,000 natal):
    10,000 - 3,000, 20,000 - 7,000, and 30,000 - 10,000 for the whole."""
    settle, placebo, _ = _rows(
        ("A",),
        2017,
        "shared_savings_losses",
        {"baseline_years": [2015, 2016], "corridor": "ci95", "shared_savings_rate": 0.5, "shared_losses_rate": 0.5},
    )
    r = settle[(2017, None)]
    assert (r["target_cents"], r["actual_cents"], r["corridor_met"], r["settlement_cents"]) == (
        20_000,
        30_001,
        False,
        0,
    )
    assert placebo[2015]["outside_band"] is False and placebo[2016]["outside_band"] is None  # n = 1: no sd
    settle, _, _ = _rows(("C",), 2016, "fixed_sum", {"fixed_sum_eur_per_patient": 400})
    assert list(settle) == [(2016, None)]  # 2017: C's episode is censored_enrolment, not eligible
    assert (settle[(2016, None)]["target_cents"], settle[(2016, None)]["settlement_cents"]) == (40_000, -10_000)
    settle, _, _ = _rows(("B",), 2016, "bundled_payment", {"payment_eur_per_phase": {"prenatal": 100, "natal": 200}})
    assert {k: v["settlement_cents"] for k, v in settle.items() if k[0] == 2016} == {
        (2016, "prenatal"): 7_000,
        (2016, "natal"): 13_000,
        (2016, None): 20_000,
    }


def test_unknown_parameters_and_wrong_units_name_the_contract():
    for params, word in (
        ({"baseline_years": [2015], "shared_savings_rate": 0.5, "bonus": 1}, "'bonus'"),
        ({"baseline_years": [2015], "shared_savings_rate": 0.5, "trend": "high"}, "'trend'"),
    ):
        with pytest.raises(ContractParameterError, match=word) as info:
            check_parameters(Contract("C-test", "x", "shared_savings", ("A",), date(2016, 1, 1), None, params))
        assert "C-test" in str(info.value)
