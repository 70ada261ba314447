"""``zorgpad regional``: the regional panel on the real Vektis data (cost per gemeente, year and
category against the national rates, standardised for sex and age class; funnel limits, trends and
charts) from the output of ``zorgpad ingest-vektis`` (a Prefect flow)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flows.cli import Verbose, app


@app.command("regional")
def regional(
    vektis: Annotated[Path, typer.Option(help="the Vektis folder written by `zorgpad ingest-vektis`")],
    out: Annotated[
        Path, typer.Option(help="where to write the regional panel (a new or empty folder, or an earlier one)")
    ],
    verbose: Verbose = False,
) -> None:
    """Build the regional panel: O/E per gemeente, year and category with funnel limits and trends."""
    from transforms.regional.run import preflight

    preflight(vektis, out)  # seconds, before a Prefect API starts
    from flows.prefect_api import ensure_api
    from flows.regional_flow import regional_flow
    from flows.terminal import flow_console

    with flow_console(verbose):
        ensure_api()
        manifest = regional_flow(str(vektis), str(out))
    target = Path(manifest["out"])
    for name, rows in manifest["rows"].items():
        typer.echo(f"{name:16s} {rows:>9,} rows   {target / name}")
    typer.echo(f"charts:          {len(manifest['plots']):>9,} files  {target / 'plots'}")
    left_out = ", ".join(f"{k} ({n:,} rows)" for k, n in manifest["excluded_rows"].items()) or "none"
    typer.echo(f"release final only; left out: {left_out}")
    typer.echo(f"dictionary:      docs/panels.md; manifest: {target / 'manifest.json'}")
