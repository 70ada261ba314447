"""``zorgpad maturity``: the declaration triangle, chain-ladder development factors and completion per
claim table of a store (plain polars in this process: a 100k-patient store takes seconds, so there is
no Prefect flow or Dask cluster to start)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flows.cli import app


@app.command("maturity")
def maturity(
    store: Annotated[Path, typer.Option(help="the store written by `zorgpad ingest`")],
    out: Annotated[
        Path,
        typer.Option(help="where to write the maturity tables (a new or empty folder, or an earlier maturity folder)"),
    ],
    mature_at: Annotated[
        float, typer.Option(help="a service month or period is mature from this completion on (lines and cents)")
    ] = 0.95,
) -> None:
    """Claims maturity: triangle, development_factors, completion and completion_period per claim table."""
    from transforms.maturity.run import build_maturity, preflight

    preflight(store, out, mature_at=mature_at)  # seconds, before anything is read
    manifest = build_maturity(store, out, mature_at=mature_at)
    target = Path(manifest["out"])
    for name, rows in manifest["rows"].items():
        typer.echo(f"{name:20s} {rows:>8,} rows   {target / name}")
    for claim_table, info in manifest["claim_tables"].items():
        typer.echo(f"{claim_table:12s} {info['lines']:>12,} lines")
    typer.echo(
        f"data_as_of {manifest['data_as_of']} (last complete month {manifest['last_complete_month'][:7]}); "
        f"dictionary: docs/maturity.md; manifest: {target / 'manifest.json'}"
    )
