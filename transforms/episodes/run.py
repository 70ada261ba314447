"""Build episodes for a whole store: national reference prices, then every bucket in parallel.

The input is a store written by ``zorgpad ingest`` (validated and patient-bucketed), never a raw
delivery: ingest a delivery first.

Output layout (``OUT``)::

    manifest.json                                   inputs, bundles, counts, money, timing, versions
    reference_prices.parquet                        rule 6: national mean price per product and year
    episodes/bundle_id=<id>/anchor_year=<y>/part-<bucket>.parquet      <bucket>: the first bucket of a task's group
    episode_lines/bundle_id=<id>/anchor_year=<y>/part-<bucket>.parquet

The run writes into a work folder beside ``OUT`` and swaps it into place when done, under a lock
(``transforms.output_folder``): ``OUT`` must be new, empty or an earlier episodes folder, and
outside the store.
"""

from __future__ import annotations

import math
import time
from datetime import date
from pathlib import Path

import polars as pl

from transforms.bundles import select_bundles
from transforms.contract import CONTRACT_VERSION
from transforms.episodes.build import build_buckets
from transforms.episodes.inputs import bucket_numbers
from transforms.episodes.prices import combine_prices, partial_prices
from transforms.manifests import EpisodesManifest, StoreManifest, read_manifest
from transforms.output_folder import Publication, require_output
from transforms.runtime import Mapper, code_version, local_map

DEFAULT_RUNOUT_MONTHS = 12
#: Target number of tasks of an episodes run when the number of workers is not known.
TASKS = 48
#: With the number of workers known: at least this many tasks per worker ...
TASKS_PER_WORKER = 2
#: ... and at most this many buckets per task (a task holds its buckets' outputs until it writes, so
#: more buckets per task cost worker memory and buy no speed; the numbers are in ``bench/README.md``).
MAX_BUCKETS_PER_TASK = 4


def default_buckets_per_task(n_buckets: int, workers: int | None = None) -> int:
    """Buckets one task builds. Each task writes a file per bundle and anchor year and reads the
    prices and contracts once, so fewer, larger tasks are cheaper: with a bucket per task those small
    writes become a large share of the run (``bench/README.md``). With ``workers`` known, the
    fewest tasks that give every worker ``TASKS_PER_WORKER`` of them with at most
    ``MAX_BUCKETS_PER_TASK`` buckets each; otherwise about ``TASKS`` tasks, enough for any cluster."""
    if workers:
        tasks = max(TASKS_PER_WORKER * workers, math.ceil(n_buckets / MAX_BUCKETS_PER_TASK))
    else:
        tasks = TASKS
    return max(1, math.ceil(n_buckets / tasks))


def data_as_of_of(store: Path) -> date:
    """``data_as_of`` of the delivery behind a store (the store's manifest)."""
    manifest = Path(store) / "manifest.json"
    return read_manifest(StoreManifest, manifest, hint="run `zorgpad ingest` again").delivery.data_as_of


def build_episodes(
    store: Path | str,
    out: Path | str,
    *,
    bundles: list[str] | None = None,
    mapper: Mapper = local_map,
    runout_months: int = DEFAULT_RUNOUT_MONTHS,
    data_as_of: date | None = None,
    buckets_per_task: int | None = None,
    workers: int | None = None,
) -> dict:
    """Reference prices, then the episodes of every group of buckets in parallel (see the module
    docstring for the output). ``store`` must be a store written by ``zorgpad ingest`` (anything
    else, a delivery included, is refused with :class:`~transforms.output_folder.OutputError`).
    ``buckets_per_task`` defaults to :func:`default_buckets_per_task` for ``workers`` (the worker
    processes the mapper runs on, when known)."""
    started = time.perf_counter()
    store, out = Path(store), Path(out)
    require_output(store, "store", option="store")
    definitions = select_bundles(bundles)  # fails early on an unknown bundle
    bundle_ids = [b.id for b in definitions]
    as_of = data_as_of or data_as_of_of(store)
    buckets = bucket_numbers(store)
    publication = Publication.begin(out, "episodes", inputs={"store": store})
    tmp = publication.work_path
    try:
        t = time.perf_counter()
        per_task = buckets_per_task or default_buckets_per_task(len(buckets), workers)
        groups = [buckets[i : i + per_task] for i in range(0, len(buckets), per_task)]
        prices = combine_prices(mapper(partial_prices, [(str(store), g) for g in groups]))
        prices_path = tmp / "reference_prices.parquet"
        prices.write_parquet(prices_path)
        timing = {"reference_prices": time.perf_counter() - t}
        t = time.perf_counter()
        reports = mapper(
            build_buckets,
            [(str(store), g, bundle_ids, str(prices_path), str(tmp), as_of, runout_months) for g in groups],
        )
        timing["buckets"] = time.perf_counter() - t
        counts = {b: sum(r.episodes.get(b, 0) for r in reports) for b in bundle_ids}
        lines = {b: sum(r.lines.get(b, 0) for r in reports) for b in bundle_ids}
        money = {b: sum(r.allocated_cents.get(b, 0) for r in reports) / 100 for b in bundle_ids}
        by_year: list[dict] = []
        if (tmp / "episodes").exists():
            summary = (
                pl.scan_parquet(tmp / "episodes" / "**" / "*.parquet", hive_partitioning=True, extra_columns="ignore")
                .group_by("bundle_id", "anchor_year", "status")
                .agg(pl.len().alias("episodes"))
                .collect()
                .sort("bundle_id", "anchor_year", "status")
            )
            by_year = summary.to_dicts()
        manifest = EpisodesManifest(
            store=str(store.resolve()),
            out=publication.target,
            bundles=bundle_ids,
            buckets=len(buckets),
            tasks=len(groups),
            buckets_per_task=per_task,
            data_as_of=as_of,
            runout_months=runout_months,
            code_version=code_version(),
            contract_version=CONTRACT_VERSION,
            episodes=counts,
            episode_lines=lines,
            allocated_euros=money,
            by_year_status=by_year,
            timing_seconds={k: round(v, 3) for k, v in timing.items()},
        )
        manifest.timing_seconds["total"] = round(time.perf_counter() - started, 3)
    except BaseException:
        publication.abandon()
        raise
    publication.commit(manifest.dump())
    return manifest.dump()
