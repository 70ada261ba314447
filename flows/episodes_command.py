"""``zorgpad episodes``: build care-path episodes from a store (a Prefect flow)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flows.cli import UserError, Verbose, app


@app.command("episodes")
def episodes(
    store: Annotated[
        Path, typer.Option(help="the store written by `zorgpad ingest` (not a delivery: ingest it first)")
    ],
    out: Annotated[Path, typer.Option(help="where to write episodes and episode_lines")],
    bundles: Annotated[str | None, typer.Option(help="comma-separated bundle ids (default: all)")] = None,
    scheduler: Annotated[str | None, typer.Option(help="Dask scheduler address; default: a local cluster")] = None,
    workers: Annotated[int | None, typer.Option(help="local Dask worker processes")] = None,
    runout_months: Annotated[int, typer.Option(help="months before data_as_of that are incomplete")] = 12,
    buckets_per_task: Annotated[
        int | None,
        typer.Option(
            help="buckets one Dask task builds and writes together (default: two tasks per worker, at most 4 buckets each)"
        ),
    ] = None,
    verbose: Verbose = False,
) -> None:
    """Build episodes (one row per episode) and episode lines (every allocated claim line)."""
    if buckets_per_task is not None and buckets_per_task < 1:
        raise UserError(f"--buckets-per-task must be at least 1, not {buckets_per_task}")
    from flows.episodes_flow import episodes_flow
    from flows.prefect_api import ensure_api
    from flows.terminal import flow_console
    from transforms.bundles import BundleDefinitionError, select_bundles
    from transforms.output_folder import check_target, require_output, require_unlocked

    # a store only: a delivery (unvalidated, not netted, no patient buckets) is refused here with
    # one line saying to run `zorgpad ingest` first
    require_output(store, "store", option="--store")
    target = check_target(out, "episodes", inputs={"store": store}, option="--out")
    require_unlocked(target)
    names = [b.strip() for b in bundles.split(",")] if bundles else None
    if workers is not None and workers < 1:
        raise UserError(f"--workers must be at least 1, not {workers}")
    if runout_months < 0:
        raise UserError(f"--runout-months must be 0 or more, not {runout_months}")
    try:
        select_bundles(names)  # an unknown bundle is reported before anything starts
        with flow_console(verbose):
            ensure_api()
            manifest = episodes_flow(
                str(store),
                str(out),
                bundles=names,
                scheduler=scheduler,
                workers=workers,
                runout_months=runout_months,
                buckets_per_task=buckets_per_task,
            )
    except BundleDefinitionError as exc:
        raise UserError(str(exc)) from None
    for b in manifest["bundles"]:
        typer.echo(f"{b:24s} {manifest['episodes'][b]:>8,} episodes")
    typer.echo(f"episodes:      {out / 'episodes'}")
    typer.echo(f"episode lines: {out / 'episode_lines'}")
