"""Prefect flow ``monthly``: the scheduled run of a data team — ingest the month's delivery, then
rebuild the episodes. Both steps are the flows of ``flows.ingest_flow`` and ``flows.episodes_flow``
run as sub-flows on the same Dask cluster, so a failed ingest never reaches the episodes."""

from __future__ import annotations

from prefect import flow

from flows.episodes_flow import episodes_flow
from flows.ingest_flow import ingest_flow


@flow(name="monthly")
def monthly_flow(delivery: str, store: str, episodes: str, scheduler: str | None = None,
                 workers: int | None = None, bundles: list[str] | None = None) -> dict:
    ingest_manifest = ingest_flow(delivery, store, scheduler=scheduler, workers=workers)
    episodes_manifest = episodes_flow(store, episodes, bundles=bundles, scheduler=scheduler, workers=workers)
    return {"ingest": ingest_manifest["books"], "episodes": episodes_manifest["episodes"]}
