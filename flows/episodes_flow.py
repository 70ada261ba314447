"""Prefect flow ``episodes``: build care-path episodes from a store, per patient bucket on Dask.
The store is one written by ``zorgpad ingest``; a delivery is refused (``build_episodes``).

Two steps: the national reference prices (an aggregate over all buckets), then groups of buckets in
parallel; both inside ``transforms.episodes.run.build_episodes``, which receives a Dask-backed
mapper. The task passes paths only.
"""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from flows.dask_cluster import dask_cluster, dask_mapper, dask_workers, oversubscribed_hosts
from transforms.bundles import select_bundles
from transforms.episodes.run import DEFAULT_RUNOUT_MONTHS, build_episodes
from transforms.manifests import EpisodesManifest, parse_manifest


@task(name="build episodes per bucket")
def build_task(
    store: str,
    out: str,
    bundles: list[str] | None,
    address: str,
    runout_months: int,
    buckets_per_task: int | None = None,
) -> dict:
    return build_episodes(
        store,
        out,
        bundles=bundles,
        mapper=dask_mapper(address),
        runout_months=runout_months,
        buckets_per_task=buckets_per_task,
        workers=dask_workers(address),
    )


@flow(name="episodes", log_prints=True)
def episodes_flow(
    store: str,
    out: str,
    bundles: list[str] | None = None,
    scheduler: str | None = None,
    workers: int | None = None,
    runout_months: int = DEFAULT_RUNOUT_MONTHS,
    buckets_per_task: int | None = None,
) -> dict:
    """Build the episodes of ``bundles`` (default: all definitions) from ``store`` into ``out``."""
    select_bundles(bundles)  # an unknown bundle fails before any work starts
    with dask_cluster(scheduler, workers) as address:
        for warning in oversubscribed_hosts(address):
            get_run_logger().warning("Dask workers compete for cores: %s", warning)
        manifest = build_task(store, out, bundles, address, runout_months, buckets_per_task)
    create_markdown_artifact(_artifact(manifest), key="episodes", description="episodes built per bundle")
    get_run_logger().info("episodes written to %s", manifest["out"])
    return manifest


def _artifact(manifest: EpisodesManifest | dict) -> str:
    manifest = parse_manifest(EpisodesManifest, manifest, "the episodes manifest")
    lines = ["| bundle | episodes | episode lines | allocated euros |", "|---|---:|---:|---:|"]
    for b in manifest.bundles:
        lines.append(
            f"| {b} | {manifest.episodes[b]:,} | {manifest.episode_lines[b]:,} | {manifest.allocated_euros[b]:,.2f} |"
        )
    return "\n".join(lines)
