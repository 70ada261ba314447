"""Prefect flow ``panels``: benchmarks, bundle costs, reconciliation and the placebo from a store and
its episodes, on Dask.

Thin wiring over ``transforms.panels.run``: one task per step, each Dask computation inside one
task (the case-mix fits run on the cluster through dask-ml; the bundles are one Dask task each),
tasks passing paths and small reports. No retries: a contract with wrong terms does not get better
by trying again.
"""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from flows.dask_cluster import dask_cluster, dask_mapper, oversubscribed_hosts
from transforms.panels import run as steps


@task(name="check inputs and contracts", cache_policy=NO_CACHE)
def plan_task(store: str, episodes: str, out: str, options: dict, earlier: str | None) -> steps.PanelsRun:
    return steps.plan_panels(store, episodes, out, steps.PanelOptions(**options), earlier=earlier)


@task(name="case-mix models (dask-ml)", cache_policy=NO_CACHE)
def casemix_task(run: steps.PanelsRun, address: str) -> dict:
    return steps.fit_casemix(run, address)


@task(name="benchmarks, costs, reconciliation per bundle", cache_policy=NO_CACHE)
def bundles_task(run: steps.PanelsRun, address: str) -> list[dict]:
    return steps.build_bundles(run, dask_mapper(address))


@task(name="manifest and publish", cache_policy=NO_CACHE)
def finish_task(run: steps.PanelsRun, casemix: dict, reports: list[dict]) -> dict:
    return steps.finish(run, casemix, reports)


def _artifact(manifest: dict) -> str:
    lines = [f"# Panels of {manifest['data_as_of']}", "", "| table | rows |", "|---|---:|"]
    lines += [f"| {name} | {rows:,} |" for name, rows in manifest["rows"].items()]
    return "\n".join([*lines, "", f"{manifest['plots']} funnel plots"])


@flow(name="panels", log_prints=True)
def panels_flow(
    store: str,
    episodes: str,
    out: str,
    options: dict | None = None,
    earlier: str | None = None,
    scheduler: str | None = None,
    workers: int | None = None,
) -> dict:
    """Build the panels of ``store`` and its ``episodes`` into ``out``; returns the manifest.
    ``options``: the fields of ``transforms.panels.run.PanelOptions``; ``earlier``: an earlier
    panels folder to compare the settlements with."""
    logger = get_run_logger()
    run = plan_task(store, episodes, out, options or {}, earlier)
    try:
        with dask_cluster(scheduler, workers) as address:
            for warning in oversubscribed_hosts(address):
                logger.warning("Dask workers compete for cores: %s", warning)
            casemix = casemix_task(run, address)
            reports = bundles_task(run, address)
        manifest = finish_task(run, casemix, reports)
    except BaseException:
        steps.abandon(run)
        raise
    create_markdown_artifact(_artifact(manifest), key="panels", description="rows written per panel table")
    logger.info("panels written to %s", manifest["out"])
    return manifest
