"""Build the episodes of patient buckets for a set of bundles, and write them Hive-partitioned.

``bucket_episodes`` applies every rule of ``docs/episode-rules.md`` to one bucket of the store, for
each bundle (formation -> allocation -> status -> covariates -> outcomes -> care path).
``build_buckets`` is the unit of parallel work: it runs a group of buckets one after the other and
writes their ``episodes`` and ``episode_lines`` under
``bundle_id=<id>/anchor_year=<year>/part-<first bucket>.parquet``. No data crosses buckets except the
national reference prices, computed beforehand."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import polars as pl

from transforms.bundles import COMPONENTS, BundleDefinition, select_bundles
from transforms.contract import CONTRACT_VERSION
from transforms.episodes.allocation import allocate, with_standardised
from transforms.episodes.care_path import care_path
from transforms.episodes.formation import form_episodes, trigger_events
from transforms.episodes.inputs import CLAIM_TABLES, BucketInputs, read_activities, read_insured, read_lines
from transforms.episodes.outcomes import compute_outcomes
from transforms.episodes.rules import CHRONIC_ATC, completeness_date, episode_id
from transforms.episodes.status import covariates, episode_status
from transforms.runtime import code_version

EPISODE_BASE_COLUMNS = [
    "episode_id",
    "patient_id",
    "anchor_date",
    "anchor_provider_agb",
    "anchor_claim_id",
    "anchor_table",
    "window_start",
    "window_end",
    "n_triggers",
    "status",
    "death_date",
    "contract_id",
    "contract_start_date",
    "treated",
    "age_at_anchor",
    "sex",
    "postcode3",
    "gemeente_code",
    *CHRONIC_ATC,
    "n_chronic_conditions",
    "prior_year_standardised_cents",
    *[f"{c}_cents" for c in COMPONENTS],
    "total_cents",
    *[f"{c}_standardised_cents" for c in COMPONENTS],
    "total_standardised_cents",
    "first_gp_contact",
    "referral",
    "first_specialist_visit",
    "discharge",
    "first_physiotherapy",
    "last_contact",
    "days_gp_to_referral",
    "days_referral_to_specialist",
    "days_specialist_to_trigger",
    "days_trigger_to_discharge",
    "days_discharge_to_physiotherapy",
    "days_trigger_to_last_contact",
]
LINE_COLUMNS = [
    "episode_id",
    "patient_id",
    "source_table",
    "claim_id",
    "component",
    "phase",
    "start",
    "end",
    "days_in",
    "days",
    "allocated_cents",
    "allocated_standardised_cents",
]


@dataclass
class BucketEpisodes:
    bucket: int
    episodes: Counter[str] = field(default_factory=Counter)  # bundle -> episodes
    lines: Counter[str] = field(default_factory=Counter)
    allocated_cents: Counter[str] = field(default_factory=Counter)


def contracts_frame(store: Path) -> pl.DataFrame:
    files = sorted((Path(store) / "contracts").rglob("*.parquet"))
    if not files:
        return pl.DataFrame(
            schema={
                "contract_id": pl.String,
                "bundle_id": pl.String,
                "provider_agb": pl.String,
                "start_date": pl.Date,
                "end_date": pl.Date,
            }
        )
    return pl.concat(
        [
            pl.read_parquet(f, columns=["contract_id", "bundle_id", "provider_agb", "start_date", "end_date"])
            for f in files
        ]
    )


def episodes_for_bundle(
    bundle: BundleDefinition,
    inputs,
    lines: pl.DataFrame,
    contracts: pl.DataFrame,
    completeness: date,
    events: pl.DataFrame | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """All rules for one bundle on one bucket's inputs (``lines`` with standardised amounts):
    (episodes, episode lines). ``events`` are the bundle's trigger events when already known."""
    if events is None:
        events = trigger_events(bundle, lines, inputs.activities, inputs.insured)
    episodes = form_episodes(bundle, events)
    if episodes.height == 0:
        return episodes, pl.DataFrame()
    ids = [
        episode_id(bundle.id, p, a, v)
        for p, a, v in episodes.select("patient_id", "anchor_date", "anchor_provider_agb").iter_rows()
    ]
    episodes = episodes.with_columns(pl.Series("episode_id", ids, dtype=pl.String))
    allocated = allocate(bundle, episodes, lines, inputs.activities)
    episodes = episode_status(episodes, inputs.insured, completeness)
    episodes = covariates(episodes, inputs.insured, lines)
    episodes = _component_totals(episodes, allocated)
    episodes = _contract(bundle, episodes, contracts)
    episodes = compute_outcomes(bundle, episodes, allocated, inputs.activities)
    episodes = care_path(episodes, allocated, inputs.activities)
    outcome_columns = [o.name for o in bundle.outcomes]
    episodes = (
        episodes.select(*EPISODE_BASE_COLUMNS, *outcome_columns, "patient_key")
        .sort("patient_key", "anchor_date", "episode_id")
        .drop("patient_key")
    )
    allocated = allocated.select(*LINE_COLUMNS, "anchor_date").sort("episode_id", "source_table", "claim_id")
    return episodes, allocated


def _component_totals(episodes: pl.DataFrame, allocated: pl.DataFrame) -> pl.DataFrame:
    sums = allocated.group_by("episode_id").agg(
        *[pl.col("allocated_cents").filter(pl.col("component") == c).sum().alias(f"{c}_cents") for c in COMPONENTS],
        *[
            pl.col("allocated_standardised_cents")
            .filter(pl.col("component") == c)
            .sum()
            .alias(f"{c}_standardised_cents")
            for c in COMPONENTS
        ],
        pl.col("allocated_cents").sum().alias("total_cents"),
        pl.col("allocated_standardised_cents").sum().alias("total_standardised_cents"),
    )
    out = episodes.join(sums, on="episode_id", how="left", maintain_order="left")
    money = [c for c in sums.columns if c != "episode_id"]
    return out.with_columns([pl.col(c).fill_null(0).cast(pl.Int64) for c in money])


def _contract(bundle: BundleDefinition, episodes: pl.DataFrame, contracts: pl.DataFrame) -> pl.DataFrame:
    """The anchor provider's bundle contract: id, first start date, and whether the anchor is covered."""
    own = (
        contracts.filter(pl.col("bundle_id") == bundle.id)
        .group_by("provider_agb")
        .agg(
            pl.col("contract_id").sort_by("start_date").first(),
            pl.col("start_date").min().alias("contract_start_date"),
            pl.col("end_date").max().alias("_end"),
            pl.col("end_date").is_null().any().alias("_open"),
        )
    )
    out = episodes.join(own, left_on="anchor_provider_agb", right_on="provider_agb", how="left", maintain_order="left")
    treated = (
        pl.col("contract_start_date").is_not_null()
        & (pl.col("anchor_date") >= pl.col("contract_start_date"))
        & (pl.col("_open") | (pl.col("anchor_date") <= pl.col("_end")))
    )
    return out.with_columns(treated.fill_null(False).alias("treated")).drop("_end", "_open")


def trigger_tables(bundles: list[BundleDefinition]) -> tuple[str, ...]:
    """The tables the bundles' trigger (and required) rules read."""
    tables = {"dbc"} | {r.table for b in bundles for r in (*b.trigger.any_of, *b.trigger.requires)}
    return tuple(t for t in CLAIM_TABLES if t in tables)


def bucket_episodes(
    store: str,
    bucket: int,
    bundles: list[BundleDefinition],
    prices: pl.DataFrame,
    contracts: pl.DataFrame,
    completeness: date,
) -> dict[str, tuple[pl.DataFrame, pl.DataFrame]]:
    """Every rule for every bundle on one bucket: ``{bundle id: (episodes, episode lines)}``.

    Two reads: first the tables the triggers need, for every patient; then the other tables, for
    only the patients who have a trigger event (usually a small share of the bucket). The trigger
    tables are not read twice: their rows of those patients are kept from the first read."""
    insured = read_insured(store, bucket)
    first_tables = trigger_tables(bundles)
    trigger_lines = read_lines(store, bucket, first_tables)
    trigger_activities = read_activities(store, bucket, trigger_lines)
    events = {b.id: trigger_events(b, trigger_lines, trigger_activities, insured) for b in bundles}
    keys = pl.concat([e.select("patient_key") for e in events.values()]).unique()["patient_key"]
    of_patients = pl.col("patient_key").is_in(keys.implode())
    later_tables = tuple(t for t in CLAIM_TABLES if t not in first_tables)
    by_table = {
        **dict(trigger_lines.filter(of_patients).partition_by("source_table", as_dict=True, maintain_order=True)),
        **dict(
            read_lines(store, bucket, later_tables, patient_keys=keys).partition_by(
                "source_table", as_dict=True, maintain_order=True
            )
        ),
    }
    parts = [by_table[(t,)] for t in CLAIM_TABLES if (t,) in by_table]  # the order read_lines gives
    lines = pl.concat(parts) if parts else trigger_lines.clear()
    inputs = BucketInputs(insured=insured, lines=lines, activities=trigger_activities.filter(of_patients))
    del trigger_lines, trigger_activities
    priced = with_standardised(inputs.lines, prices)
    return {
        bundle.id: episodes_for_bundle(bundle, inputs, priced, contracts, completeness, events[bundle.id])
        for bundle in bundles
    }


def build_buckets(
    store: str,
    buckets: list[int],
    bundle_ids: list[str],
    prices_path: str,
    out: str,
    data_as_of: date,
    runout_months: int,
) -> BucketEpisodes:
    """Build the episodes of a group of buckets and write them (the Dask task).

    Buckets are computed one at a time (memory is that of one bucket plus the group's outputs,
    which are small); the group's outputs are written once per bundle and anchor year, named after
    the group's first bucket. A file per bucket would leave an analyst thousands of files of a few
    rows at national scale, and writing them would cost more than building the episodes."""
    bundles = select_bundles(bundle_ids)
    prices = pl.read_parquet(prices_path)
    contracts = contracts_frame(Path(store))
    completeness = completeness_date(data_as_of, runout_months)
    report = BucketEpisodes(buckets[0])
    outputs: dict[str, tuple[list[pl.DataFrame], list[pl.DataFrame]]] = {b.id: ([], []) for b in bundles}
    for bucket in buckets:
        for bundle_id, (episodes, lines) in bucket_episodes(
            store, bucket, bundles, prices, contracts, completeness
        ).items():
            report.episodes[bundle_id] += episodes.height
            report.lines[bundle_id] += lines.height
            report.allocated_cents[bundle_id] += int(lines["allocated_cents"].sum()) if lines.height else 0
            if episodes.height:
                outputs[bundle_id][0].append(episodes)
                outputs[bundle_id][1].append(lines)
    for bundle_id, (episodes, lines) in outputs.items():
        if not episodes:
            continue
        _write_partitioned(
            pl.concat(episodes).with_columns(pl.col("anchor_date").dt.year().alias("anchor_year")),
            Path(out) / "episodes",
            bundle_id,
            buckets[0],
        )
        _write_partitioned(
            pl.concat(lines).with_columns(pl.col("anchor_date").dt.year().alias("anchor_year")).drop("anchor_date"),
            Path(out) / "episode_lines",
            bundle_id,
            buckets[0],
        )
    return report


def _write_partitioned(frame: pl.DataFrame, root: Path, bundle_id: str, bucket: int) -> None:
    name = f"part-{bucket:04d}.parquet"
    for (year,), part in frame.partition_by("anchor_year", as_dict=True, maintain_order=True).items():
        folder = root / f"bundle_id={bundle_id}" / f"anchor_year={year}"
        folder.mkdir(parents=True, exist_ok=True)
        part.drop("anchor_year").write_parquet(
            folder / name,
            compression="zstd",
            statistics=True,
            metadata={
                "zorgpad.contract_version": CONTRACT_VERSION,
                "zorgpad.code_version": code_version(),
                "zorgpad.bundle_id": bundle_id,
            },
        )
