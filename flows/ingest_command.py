"""``zorgpad ingest``: run the ingest flow from the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flows.cli import UserError, Verbose, app


@app.command("ingest")
def ingest(
    delivery: Annotated[Path, typer.Argument(help="the delivery folder (with delivery.json)")],
    store: Annotated[
        Path,
        typer.Option(help="where to write the patient-bucketed store (a new or empty folder, or an earlier store)"),
    ],
    buckets: Annotated[int | None, typer.Option(help="number of patient buckets (default: ~2M rows each)")] = None,
    scheduler: Annotated[str | None, typer.Option(help="Dask scheduler address; default: a local cluster")] = None,
    workers: Annotated[int | None, typer.Option(help="local Dask worker processes (default: CPU count)")] = None,
    critical_share: Annotated[
        float, typer.Option(help="a check failing on more than this share of a table's rows stops the run")
    ] = 0.05,
    recycle_workers_after: Annotated[
        int | None,
        typer.Option(
            help="restart the Dask workers after this many tasks each, so their memory stays flat (0: never; default 100)"
        ),
    ] = None,
    verbose: Verbose = False,
) -> None:
    """Validate a delivery (Great Expectations), quarantine bad rows, net corrections, write the store."""
    from transforms.ingest.delivery import DeliveryError
    from transforms.ingest.run import preflight

    if workers is not None and workers < 1:
        raise UserError(f"--workers must be at least 1, not {workers}")
    if recycle_workers_after is not None and recycle_workers_after < 0:
        raise UserError(f"--recycle-workers-after must be 0 (never) or more, not {recycle_workers_after}")
    try:
        # seconds, before a Prefect API or a Dask cluster starts: a rejection costs no more
        preflight(delivery, store, n_buckets=buckets, critical_share=critical_share)
        from flows.ingest_flow import ingest_flow
        from flows.prefect_api import ensure_api
        from flows.terminal import flow_console

        recycle = {} if recycle_workers_after is None else {"recycle_workers_after": recycle_workers_after or None}
        with flow_console(verbose):
            ensure_api()
            manifest = ingest_flow(
                str(delivery),
                str(store),
                buckets=buckets,
                scheduler=scheduler,
                workers=workers,
                critical_share=critical_share,
                **recycle,
            )
    except DeliveryError as exc:
        raise UserError(str(exc) if exc.check == "options" else f"delivery rejected ({exc.check}): {exc}") from None
    from transforms.ingest.summary import books_line, validation_line

    typer.echo(f"store:       {manifest['store']}")
    typer.echo(f"books:       {books_line(manifest)}")
    typer.echo(f"validation:  {validation_line(manifest)}")
    typer.echo(f"quarantine:  {Path(manifest['store']) / 'quarantine'}")
    typer.echo(f"manifest:    {Path(manifest['store']) / 'manifest.json'}")
    if manifest["validation"]["data_docs"]:
        typer.echo(f"data docs:   {Path(manifest['store']) / manifest['validation']['data_docs']}")
    if manifest.get("ignored_files"):
        typer.echo(
            f"ignored:     {len(manifest['ignored_files']):,} file(s) in the delivery that are not part of it "
            "(listed in manifest.json, ignored_files)"
        )
