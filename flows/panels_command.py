"""``zorgpad panels``: provider benchmarks, bundle costs, contract reconciliation and the placebo test
from a store and its episodes (a Prefect flow on Dask)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flows.cli import UserError, Verbose, app
from transforms.panels.casemix import CLUSTER_FIT_FROM


@app.command("panels")
def panels(
    store: Annotated[Path, typer.Option(help="the store written by `zorgpad ingest`")],
    episodes: Annotated[Path, typer.Option(help="the episodes written by `zorgpad episodes` from that store")],
    out: Annotated[Path, typer.Option(help="where to write the panels (a new or empty folder, or earlier panels)")],
    bundles: Annotated[
        str | None, typer.Option(help="comma-separated bundle ids (default: every bundle with episodes)")
    ] = None,
    earlier: Annotated[
        Path | None, typer.Option(help="an earlier panels folder: report how each settlement changed since")
    ] = None,
    min_cell: Annotated[
        int, typer.Option(help="cells with fewer episodes are not published (and complementary cells)")
    ] = 10,
    statuses: Annotated[str, typer.Option(help="episode statuses the benchmarks and costs use")] = "complete,death",
    winsorise_pct: Annotated[float, typer.Option(help="percentile of the winsorised mean of the bundle costs")] = 99.0,
    casemix_cluster_from: Annotated[
        int,
        typer.Option(
            help="case-mix models with at least this many episodes are fitted with dask-ml across the cluster,"
            " smaller ones by exact IRLS in one task (0: all with dask-ml)"
        ),
    ] = CLUSTER_FIT_FROM,
    scheduler: Annotated[str | None, typer.Option(help="Dask scheduler address; default: a local cluster")] = None,
    workers: Annotated[int | None, typer.Option(help="local Dask worker processes")] = None,
    verbose: Verbose = False,
) -> None:
    """Build the panels: benchmark, benchmark_outcomes, bundle_costs, reconciliation, placebo, case-mix models."""
    from transforms.panels.run import PanelOptions, preflight

    if workers is not None and workers < 1:
        raise UserError(f"--workers must be at least 1, not {workers}")
    options = PanelOptions.from_cli(
        bundles=bundles,
        statuses=statuses,
        min_cell=min_cell,
        winsorise_pct=winsorise_pct,
        casemix_cluster_from=casemix_cluster_from,
    )
    preflight(store, episodes, out, options, earlier=earlier)  # seconds, before a Prefect API or Dask starts
    from flows.panels_flow import panels_flow
    from flows.prefect_api import ensure_api
    from flows.terminal import flow_console

    with flow_console(verbose):
        ensure_api()
        manifest = panels_flow(
            str(store),
            str(episodes),
            str(out),
            options=options.model_dump(),
            earlier=str(earlier) if earlier else None,
            scheduler=scheduler,
            workers=workers,
        )
    target = Path(manifest["out"])
    for name, rows in manifest["rows"].items():
        typer.echo(f"{name:22s} {rows:>9,} rows   {target / name}")
    typer.echo(f"funnel plots:          {manifest['plots']:>9,} files  {target / 'funnel_plots'}")
    typer.echo(f"dictionary:            docs/panels.md; manifest: {target / 'manifest.json'}")
