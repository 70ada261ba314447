"""``zorgpad run``: ingest, episodes, panels, DiD specs and the report as one resumable Prefect flow."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flows.cli import UserError, Verbose, app


@app.command("run")
def run(
    delivery: Annotated[Path, typer.Option(help="the delivery folder (parquet tables, delivery.json)")],
    out: Annotated[Path, typer.Option(help="the run folder: store/, episodes/, panels/, did/, report/")],
    scheduler: Annotated[str | None, typer.Option(help="Dask scheduler address; default: a local cluster")] = None,
    workers: Annotated[int | None, typer.Option(help="local Dask worker processes")] = None,
    bundles: Annotated[str | None, typer.Option(help="comma-separated bundle ids (default: all)")] = None,
    specs: Annotated[Path | None, typer.Option(help="a folder of DiD panel specs (*.yaml), one panel each")] = None,
    vektis: Annotated[
        Path | None, typer.Option(help="a `zorgpad ingest-vektis` folder, for gemeente_year specs")
    ] = None,
    verbose: Verbose = False,
) -> None:
    """Run the whole pipeline on a delivery; an unchanged stage is kept, a killed run resumes."""
    run_pipeline(
        delivery,
        out,
        scheduler=scheduler,
        workers=workers,
        bundles=bundles,
        specs=specs,
        vektis=vektis,
        verbose=verbose,
    )


def run_pipeline(
    delivery: Path,
    out: Path,
    *,
    scheduler: str | None = None,
    workers: int | None = None,
    bundles: str | None = None,
    specs: Path | None = None,
    vektis: Path | None = None,
    verbose: bool = False,
) -> dict:
    """Check the options, run the flow with progress bars, print the summary; returns the run manifest."""
    from flows.terminal import flow_console
    from transforms.bundles import BundleDefinitionError, select_bundles
    from transforms.output_folder import check_target, require_unlocked

    if workers is not None and workers < 1:
        raise UserError(f"--workers must be at least 1, not {workers}")
    if not delivery.is_dir():
        raise UserError(f"--delivery {delivery}: no such folder")
    if specs is not None and not specs.is_dir():
        raise UserError(f"--specs {specs}: no such folder (a folder of *.yaml panel specs)")
    names = [b.strip() for b in bundles.split(",")] if bundles else None
    try:
        select_bundles(names)
    except BundleDefinitionError as exc:
        raise UserError(str(exc)) from None
    inputs = {
        "delivery": delivery,
        **({"spec folder": specs} if specs else {}),
        **({"Vektis folder": vektis} if vektis else {}),
    }
    target = check_target(out, "run", inputs=inputs, option="--out")
    require_unlocked(target)
    from flows.run_flow import spec_files
    from transforms.did_panel.spec import load_spec

    for spec in spec_files(str(specs) if specs else None):
        load_spec(spec)  # a wrong spec fails here, before hours of ingest
    from flows.prefect_api import ensure_api
    from flows.run_flow import run_flow

    typer.echo(f"zorgpad run: {delivery} -> {target}")
    with flow_console(verbose):
        ensure_api()
        manifest = run_flow(
            str(delivery),
            str(target),
            scheduler=scheduler,
            workers=workers,
            bundles=names,
            specs=str(specs) if specs else None,
            vektis=str(vektis) if vektis else None,
        )
    for line in summary_lines(manifest, target):
        typer.echo(line)
    return manifest


def summary_lines(manifest: dict, target: Path) -> list[str]:
    """The run's last lines: one per stage, the books, validation, where everything is."""
    from transforms.ingest.summary import books_line

    stages = manifest["stages"]
    lines = []
    for name, entry in stages.items():
        if entry.get("outcome") == "not in this run":
            continue
        lines.append(f"  {name:<24s} {entry['outcome']:<7s} {entry['seconds']:>8.1f} s   {entry['folder']}/")
    summary = manifest["summary"]
    books = {"balanced": summary["balanced"]}
    lines.append(f"books {books_line(books)}")
    reasons = summary["quarantine_reasons"]
    if summary["rows_quarantined"]:
        top = ", ".join(f"{reason} {rows:,}" for reason, rows in list(reasons.items())[:4])
        more = f" and {len(reasons) - 4} more" if len(reasons) > 4 else ""
        lines.append(
            f"validation: {summary['rows_quarantined']:,} of {summary['rows_delivered']:,} rows failed a check "
            f"and are quarantined with their reason ({top}{more}); the rest passed"
        )
    else:
        lines.append(f"validation: all {summary['rows_delivered']:,} rows passed every check")
    docs = stages["ingest"]["summary"].get("data_docs")
    lines.append(f"report:     {target / 'report' / 'index.html'}")
    lines.append(f"panels:     {target / 'panels'}   (docs/panels.md)")
    if any(name.startswith("did:") and e.get("outcome") != "not in this run" for name, e in stages.items()):
        lines.append(f"DiD panels: {target / 'did'}   (docs/did-panels.md)")
    if docs:
        lines.append(f"data docs:  {target / 'store' / docs}")
    lines.append(f"query:      zorgpad catalog {target}   (docs/querying.md)")
    return lines


__all__ = ["run", "run_pipeline", "summary_lines"]
