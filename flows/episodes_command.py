"""``zorgpad episodes``: build care-path episodes from a store (a Prefect flow)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flows.cli import UserError, app


@app.command("episodes")
def episodes(
    store: Annotated[Path, typer.Option(help="the store written by `zorgpad ingest`")],
    out: Annotated[Path, typer.Option(help="where to write episodes and episode_lines")],
    bundles: Annotated[str | None, typer.Option(help="comma-separated bundle ids (default: all)")] = None,
    scheduler: Annotated[str | None, typer.Option(help="Dask scheduler address; default: a local cluster")] = None,
    workers: Annotated[int | None, typer.Option(help="local Dask worker processes")] = None,
    runout_months: Annotated[int, typer.Option(help="months before data_as_of that are incomplete")] = 12,
    buckets_per_task: Annotated[int | None, typer.Option(
        min=1, help="buckets one Dask task builds and writes together (default: two tasks per worker, at most 4 buckets each)")] = None,
) -> None:
    """Build episodes (one row per episode) and episode lines (every allocated claim line)."""
    from flows.episodes_flow import episodes_flow
    from transforms.bundles import BundleDefinitionError

    if not (store / "manifest.json").exists() and not (store / "delivery.json").exists():
        raise UserError(f"{store} is not a store (no manifest.json): run `zorgpad ingest` first")
    names = [b.strip() for b in bundles.split(",")] if bundles else None
    try:
        manifest = episodes_flow(str(store), str(out), bundles=names, scheduler=scheduler, workers=workers,
                                 runout_months=runout_months, buckets_per_task=buckets_per_task)
    except BundleDefinitionError as exc:
        raise UserError(str(exc)) from None
    for b in manifest["bundles"]:
        typer.echo(f"{b:24s} {manifest['episodes'][b]:>8,} episodes")
    typer.echo(f"episodes:      {out / 'episodes'}")
    typer.echo(f"episode lines: {out / 'episode_lines'}")
