"""Prefect flow ``ingest``: validate a delivery and write the patient-bucketed store.

Thin wiring over ``transforms.ingest.run``: one task per step, each Dask computation inside one
task, tasks passing paths and small reports. No retries on validation steps: a contract violation
does not go away by trying again. A failed run leaves no store behind (the steps write into a
temporary folder that is only moved into place at the end).
"""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from flows.dask_cluster import RECYCLE_WORKERS_AFTER, dask_cluster, dask_mapper, oversubscribed_hosts
from transforms.ingest import run as steps
from transforms.ingest.delivery import DeliveryError
from transforms.manifests import StoreManifest, parse_manifest


@task(name="inspect delivery")
def inspect_task(delivery: str, store: str, buckets: int | None, critical_share: float) -> steps.RunState:
    return steps.plan_run(delivery, store, n_buckets=buckets, critical_share=critical_share)


@task(name="validate and route partitions")
def partitions_task(state: steps.RunState, address: str, recycle_after: int | None):
    return steps.run_partitions(state, dask_mapper(address, recycle_after))


@task(name="claim ids: uniqueness and activity routing")
def ids_task(state: steps.RunState, address: str, recycle_after: int | None):
    return steps.run_id_parts(state, dask_mapper(address, recycle_after))


@task(name="link checks, quarantine, netting per bucket")
def buckets_task(state: steps.RunState, address: str, recycle_after: int | None):
    return steps.run_buckets(state, dask_mapper(address, recycle_after))


@task(name="books, validation summary, data docs")
def books_task(
    state, partition_reports, row_checks, id_reports, bucket_reports, small, data_docs: bool
) -> StoreManifest:
    return steps.close_books(
        state, partition_reports, row_checks, id_reports, bucket_reports, small, data_docs=data_docs
    )


@task(name="publish store")
def publish_task(state: steps.RunState, manifest: StoreManifest) -> str:
    return steps.publish(state, manifest)


def _artifact(manifest: StoreManifest | dict) -> str:
    manifest = parse_manifest(StoreManifest, manifest, "the store manifest")
    lines = [
        f"# Ingest of {manifest.delivery_id}",
        "",
        "| table | rows in | stored | quarantined | merged | balanced |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for table, b in manifest.books.items():
        lines.append(
            f"| {table} | {b.rows_in:,} | {b.rows_stored:,} | {b.rows_quarantined:,} | "
            f"{b.rows_merged:,} | {'yes' if b.balanced else 'NO'} |"
        )
    lines += ["", "Quarantine reasons: " + ", ".join(f"{t}: {r}" for t, r in manifest.quarantine.items())]
    return "\n".join(lines)


@flow(name="ingest", log_prints=True)
def ingest_flow(
    delivery: str,
    store: str,
    buckets: int | None = None,
    scheduler: str | None = None,
    workers: int | None = None,
    critical_share: float = steps.DEFAULT_CRITICAL_SHARE,
    data_docs: bool = True,
    recycle_workers_after: int | None = RECYCLE_WORKERS_AFTER,
) -> dict:
    """Validate ``delivery`` and write the store to ``store``; returns the manifest.
    ``recycle_workers_after``: restart the Dask workers after that many tasks each (None: never),
    so their memory does not creep up over a large delivery (see ``flows.dask_cluster.dask_mapper``)."""
    logger = get_run_logger()
    state = inspect_task(delivery, store, buckets, critical_share)
    logger.info(
        "delivery %s: %d partitions, %d buckets",
        state.plan.meta.delivery_id,
        sum(len(p) for p in state.plan.partitions.values()),
        state.buckets,
    )
    try:
        with dask_cluster(scheduler, workers) as address:
            for warning in oversubscribed_hosts(address):
                logger.warning("Dask workers compete for cores: %s", warning)
            partition_reports, row_checks = partitions_task(state, address, recycle_workers_after)
            id_reports = ids_task(state, address, recycle_workers_after)
            bucket_reports, small = buckets_task(state, address, recycle_workers_after)
        manifest = books_task(state, partition_reports, row_checks, id_reports, bucket_reports, small, data_docs)
        publish_task(state, manifest)
    except BaseException:
        steps.abandon(state)
        raise
    create_markdown_artifact(_artifact(manifest), key="ingest-books", description="rows and euros accounted for")
    logger.info("store written to %s (balanced: %s)", manifest.store, manifest.balanced)
    return manifest.dump()


__all__ = ["DeliveryError", "ingest_flow"]
