"""``zorgpad population``: benchmarks for a shared-savings contract on an enrolled population, with the
placebo of every benchmark over the pre-period (a Prefect flow on Dask)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flows.cli import UserError, Verbose, app


@app.command("population")
def population(
    store: Annotated[Path, typer.Option(help="the store written by `zorgpad ingest`")],
    vektis: Annotated[Path, typer.Option(help="the Vektis folder written by `zorgpad ingest-vektis` (case-mix rates)")],
    population: Annotated[Path, typer.Option(help="YAML: name, practices (AGB codes) or contract_id, start_date")],
    out: Annotated[Path, typer.Option(help="where to write the benchmarks (a new or empty folder, or earlier ones)")],
    cap_pct: Annotated[
        float, typer.Option(help="percentile the capped benchmarks cap every insured-quarter at")
    ] = 95.0,
    exclude_years: Annotated[
        str, typer.Option(help="pre-period years the placebo leaves out (comma-separated; '' for none)")
    ] = "2020,2021",
    scheduler: Annotated[str | None, typer.Option(help="Dask scheduler address; default: a local cluster")] = None,
    workers: Annotated[int | None, typer.Option(help="local Dask worker processes")] = None,
    verbose: Verbose = False,
) -> None:
    """Attribute insured to GP practices per quarter, compare the population's spending with five
    benchmarks per quarter, and run the placebo over the pre-period."""
    from transforms.population.run import preflight

    try:
        excluded = tuple(int(y) for y in exclude_years.split(",") if y.strip())
    except ValueError:
        raise UserError(f"--exclude-years {exclude_years!r}: years separated by commas, e.g. 2020,2021") from None
    if workers is not None and workers < 1:
        raise UserError(f"--workers must be at least 1, not {workers}")
    preflight(store, vektis, population, out, cap_pct=cap_pct, excluded_years=excluded)
    from flows.population_flow import population_flow
    from flows.prefect_api import ensure_api
    from flows.terminal import flow_console

    with flow_console(verbose):
        ensure_api()
        manifest = population_flow(
            str(store),
            str(vektis),
            str(population),
            str(out),
            cap_pct=cap_pct,
            excluded_years=excluded,
            scheduler=scheduler,
            workers=workers,
        )
    pop = manifest["population"]
    typer.echo(
        f"population   {pop['name']}: {len(pop['practices'])} practices in {pop['region']}, start "
        f"{pop['start_date']}; {manifest['population_insured_quarters']:,} insured-quarters"
    )
    typer.echo("placebo over the pre-period (no contract acted: every gap is spurious)")
    for row in manifest["placebo"]:
        if row["mean_gap_cents"] is None:
            typer.echo(
                f"  {row['benchmark']:24s} no gap: no comparison insured for this benchmark (a region of "
                "only the population's practices?)"
            )
            continue
        verdict = ("SPURIOUS" if row["spurious"] else "inside the band") + (
            f", {row['quarters_outside_band']}/{row['quarters']} quarters outside"
        )
        if row["systematic"] and not row["spurious"]:
            verdict += "; a small systematic bias"
        typer.echo(
            f"  {row['benchmark']:24s} gap EUR {row['mean_gap_cents'] / 100:>8,.2f} per insured per quarter "
            f"({row['spurious_euros_per_year']:>12,.0f} EUR a year; threshold "
            f"{row['mean_threshold_euros_per_year']:>10,.0f}): {verdict}"
        )
    target = Path(manifest["out"])
    typer.echo(
        f"tables       {target / 'population_benchmark'}, {target / 'population_placebo'}, "
        f"{target / 'attribution_counts'}; dictionary: docs/panels.md; manifest: {target / 'manifest.json'}"
    )
