"""Prefect flow ``population``: the population benchmarks of an enrolled population, on Dask.

Thin wiring over ``transforms.population.run``: spending per insured and quarter is computed per
patient bucket on the Dask cluster (one Dask task each, inside one Prefect task); attribution,
the benchmarks and the placebo run in one task on the small per-quarter frames; tasks pass paths.
"""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from flows.dask_cluster import dask_cluster, dask_mapper, oversubscribed_hosts
from transforms.population import run as steps


@task(name="check the population and inputs", cache_policy=NO_CACHE)
def plan_task(
    store: str, vektis: str, population: str, out: str, cap_pct: float, excluded_years: tuple[int, ...]
) -> steps.PopulationRun:
    return steps.plan(store, vektis, population, out, cap_pct=cap_pct, excluded_years=excluded_years)


@task(name="spending per insured and quarter (Dask)", cache_policy=NO_CACHE)
def spending_task(run: steps.PopulationRun, address: str) -> list[str]:
    return steps.spending_step(run, dask_mapper(address))


@task(name="attribution, benchmarks, placebo", cache_policy=NO_CACHE)
def benchmark_task(run: steps.PopulationRun, paths: list[str]) -> dict:
    return steps.benchmark_step(run, paths)


@task(name="manifest and publish", cache_policy=NO_CACHE)
def finish_task(run: steps.PopulationRun, report: dict) -> dict:
    return steps.finish(run, report)


def _artifact(manifest: dict) -> str:
    lines = [
        f"# Population {manifest['population']['name']}",
        "",
        "| benchmark | mean gap (EUR/insured/quarter) | spurious | systematic | EUR a year |",
        "|---|---:|---|---|---:|",
    ]
    for row in manifest["placebo"]:
        if row["mean_gap_cents"] is None:
            lines.append(f"| {row['benchmark']} | - | - | - | - |")
            continue
        lines.append(
            f"| {row['benchmark']} | {row['mean_gap_cents'] / 100:,.2f} | {row['spurious']} | {row['systematic']} | "
            f"{row['spurious_euros_per_year']:,.0f} |"
        )
    return "\n".join(lines)


@flow(name="population", log_prints=True)
def population_flow(
    store: str,
    vektis: str,
    population: str,
    out: str,
    cap_pct: float = 95.0,
    excluded_years: tuple[int, ...] = (2020, 2021),
    scheduler: str | None = None,
    workers: int | None = None,
) -> dict:
    """Build the population benchmarks of ``population`` (a YAML file) from ``store`` and ``vektis``
    into ``out``; returns the manifest."""
    logger = get_run_logger()
    run = plan_task(store, vektis, population, out, cap_pct, tuple(excluded_years))
    try:
        with dask_cluster(scheduler, workers) as address:
            for warning in oversubscribed_hosts(address):
                logger.warning("Dask workers compete for cores: %s", warning)
            paths = spending_task(run, address)
        manifest = finish_task(run, benchmark_task(run, paths))
    except BaseException:
        steps.abandon(run)
        raise
    create_markdown_artifact(_artifact(manifest), key="population", description="the placebo of every benchmark")
    logger.info("population benchmarks written to %s", manifest["out"])
    return manifest
