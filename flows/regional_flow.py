"""Prefect flow ``regional``: the regional panel (cost per gemeente against the national rates,
standardised for sex and age class, with funnel limits and trends) from a Vektis folder.

Thin wiring over ``transforms.regional.run``: one task per step, tasks passing paths and small
reports. The work is small (the harmonised table of 2011-2023, about 4.5 million rows), so no Dask.
No retries: a Vektis folder that cannot be read does not get better by trying again.
"""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from transforms.regional import run as steps


@task(name="check the Vektis folder and the output", cache_policy=NO_CACHE)
def plan_task(vektis: str, out: str) -> steps.RegionalRun:
    return steps.plan_regional(vektis, out)


@task(name="regional and regional_rates tables", cache_policy=NO_CACHE)
def tables_task(run: steps.RegionalRun) -> dict:
    return steps.build_tables(run)


@task(name="funnel and trend charts", cache_policy=NO_CACHE)
def plots_task(run: steps.RegionalRun) -> list[str]:
    return steps.draw_plots(run)


@task(name="manifest and publish", cache_policy=NO_CACHE)
def finish_task(run: steps.RegionalRun, report: dict, plots: list[str]) -> dict:
    return steps.finish(run, report, plots)


def _artifact(manifest: dict) -> str:
    lines = [
        "# Regional panel (Vektis)",
        "",
        "| year | gemeenten | O/E min | O/E max | high | low |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for year, s in manifest["summary"].items():
        lines.append(
            f"| {year} | {s['gemeenten']} | {s['oe_min']:.3f} | {s['oe_max']:.3f} | "
            f"{len(s['outliers_high'])} | {len(s['outliers_low'])} |"
        )
    return "\n".join(lines)


@flow(name="regional", log_prints=True)
def regional_flow(vektis: str, out: str) -> dict:
    """Build the regional panel of the Vektis folder ``vektis`` (``zorgpad ingest-vektis``) into
    ``out``; returns the manifest."""
    logger = get_run_logger()
    run = plan_task(vektis, out)
    try:
        report = tables_task(run)
        plots = plots_task(run)
        manifest = finish_task(run, report, plots)
    except BaseException:
        steps.abandon(run)
        raise
    create_markdown_artifact(_artifact(manifest), key="regional", description="O/E range and outliers per year")
    logger.info("regional panel written to %s", manifest["out"])
    return manifest
