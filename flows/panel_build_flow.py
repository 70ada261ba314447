"""Prefect flow ``panel build``: a DiD-ready panel from a researcher's spec, on Dask.

Thin wiring over ``transforms.did_panel.run``: one task per step; the episodes are read and
filtered per bundle and anchor year on the Dask cluster (one Dask task each, inside one Prefect
task); tasks pass paths and small reports. No retries: a spec that does not fit the data does not
get better by trying again.
"""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from flows.dask_cluster import dask_cluster, dask_mapper, oversubscribed_hosts
from transforms.did_panel import run as steps


@task(name="check the spec and inputs", cache_policy=NO_CACHE)
def plan_task(spec: str, store: str, episodes: str, out: str, vektis: str | None = None) -> steps.PanelBuild:
    return steps.plan_build(spec, store, episodes, out, vektis)


@task(name="claims maturity of the periods", cache_policy=NO_CACHE)
def maturity_task(run: steps.PanelBuild) -> str:
    return steps.maturity_step(run)


@task(name="episodes per bundle and year (Dask)", cache_policy=NO_CACHE)
def partitions_task(run: steps.PanelBuild, address: str) -> list[dict]:
    return steps.build_partitions(run, dask_mapper(address))


@task(name="panel, adapters, attrition, dictionary", cache_policy=NO_CACHE)
def assemble_task(run: steps.PanelBuild, reports: list[dict], maturity: str) -> dict:
    return steps.assemble_step(run, reports, maturity)


@task(name="DiD estimates per outcome (csdid)", cache_policy=NO_CACHE, log_prints=False)  # csdid prints R tables
def estimate_task(run: steps.PanelBuild) -> dict:
    return steps.estimate_step(run)


@task(name="manifest and publish", cache_policy=NO_CACHE)
def finish_task(run: steps.PanelBuild, summary: dict, estimates: dict | None) -> dict:
    return steps.finish(run, summary, estimates)


def _artifact(manifest: dict) -> str:
    lines = [
        f"# Panel {manifest['name']} ({manifest['unit']}, {manifest['period']})",
        "",
        f"{manifest['rows']['panel']:,} rows, {manifest['rows']['units']:,} units; spec hash "
        f"`{manifest['spec_hash'][:12]}`, content hash `{manifest['content_sha256'][:12]}`",
    ]
    for row in (manifest.get("estimates") or {}).get("summary", []):
        lines.append(f"- {row['outcome']} ({row['sample']}): ATT {row['att']} [{row['ci_low']}, {row['ci_high']}]")
    return "\n".join(lines)


@flow(name="panel build", log_prints=True)
def panel_build_flow(
    spec: str,
    store: str,
    episodes: str,
    out: str,
    estimate: bool = False,
    scheduler: str | None = None,
    workers: int | None = None,
    vektis: str | None = None,
) -> dict:
    """Build the panel of ``spec`` from ``store`` and its ``episodes`` (and for unit gemeente_year
    the ``vektis`` folder of ``zorgpad ingest-vektis``) into ``out`` (and with ``estimate`` a DiD
    report per outcome); returns the manifest."""
    logger = get_run_logger()
    run = plan_task(spec, store, episodes, out, vektis)
    try:
        maturity = maturity_task(run)
        with dask_cluster(scheduler, workers) as address:
            for warning in oversubscribed_hosts(address):
                logger.warning("Dask workers compete for cores: %s", warning)
            reports = partitions_task(run, address)
        summary = assemble_task(run, reports, maturity)
        estimates = estimate_task(run) if estimate else None
        manifest = finish_task(run, summary, estimates)
    except BaseException:
        steps.abandon(run)
        raise
    create_markdown_artifact(_artifact(manifest), key="panel-build", description="the panel and its estimates")
    logger.info("panel written to %s", manifest["out"])
    return manifest
