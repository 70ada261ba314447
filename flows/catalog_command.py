"""``zorgpad catalog``: one DuckDB file with a view per output table, for analysts (``docs/querying.md``).
Reads parquet footers only, in this process: seconds, no Prefect flow or Dask cluster."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flows.cli import app


@app.command("catalog")
def catalog(
    out: Annotated[
        Path, typer.Argument(help="a zorgpad output folder, or a folder holding several (e.g. a demo folder)")
    ],
    catalog_file: Annotated[
        Path | None,
        typer.Option(
            "--catalog", help="the DuckDB file to write (default OUT/catalog.duckdb); replaced only if zorgpad wrote it"
        ),
    ] = None,
) -> None:
    """Write a DuckDB catalog: one view per output table under OUT, plus `catalog_tables` listing them."""
    from transforms.catalog import build_catalog

    made = build_catalog(out, catalog_file)
    for view in made["views"]:
        typer.echo(f"{view['view']:40s} {view['rows']:>10,} rows   {view['path']}")
    typer.echo(
        f"{len(made['views'])} views in {made['catalog']} (list: SELECT * FROM catalog_tables; docs/querying.md)"
    )
