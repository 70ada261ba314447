"""``zorgpad panel build SPEC.yaml``: a DiD-ready panel from a researcher's spec (a Prefect flow on Dask)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flows.cli import UserError, Verbose, app

panel_app = typer.Typer(
    name="panel",
    help="DiD-ready panels from a spec (docs/did-panels.md).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(panel_app, name="panel")


def _euros(cents: float) -> str:
    return f"EUR {cents / 100:,.0f}" if abs(cents) >= 1000 else f"EUR {cents / 100:,.2f}"


def _number(value: float) -> str:
    return f"{value:,.4g}"


@panel_app.command("build")
def build(
    spec: Annotated[Path, typer.Argument(metavar="SPEC.yaml", help="the panel spec (docs/did-panels.md)")],
    store: Annotated[Path, typer.Option(help="the store written by `zorgpad ingest`")],
    episodes: Annotated[Path, typer.Option(help="the episodes written by `zorgpad episodes` from that store")],
    out: Annotated[Path, typer.Option(help="where to write the panel (a new or empty folder, or an earlier panel)")],
    estimate: Annotated[
        bool, typer.Option("--estimate", help="also estimate each outcome (Callaway & Sant'Anna, needs the did extra)")
    ] = False,
    scheduler: Annotated[str | None, typer.Option(help="Dask scheduler address; default: a local cluster")] = None,
    workers: Annotated[int | None, typer.Option(help="local Dask worker processes")] = None,
    vektis: Annotated[
        Path | None, typer.Option(help="unit gemeente_year: the Vektis folder written by `zorgpad ingest-vektis`")
    ] = None,
    verbose: Verbose = False,
) -> None:
    """Validate the spec, build the panel (units, periods, cohorts, maturity), its estimator adapters,
    attrition report and dictionary; with --estimate a DiD report per outcome."""
    from transforms.did_panel.run import preflight

    if workers is not None and workers < 1:
        raise UserError(f"--workers must be at least 1, not {workers}")
    preflight(spec, store, episodes, out, vektis)  # seconds, before a Prefect API or Dask starts
    if estimate:
        from transforms.did.estimate import csdid_version

        csdid_version()
    from flows.panel_build_flow import panel_build_flow
    from flows.prefect_api import ensure_api
    from flows.terminal import flow_console

    with flow_console(verbose):
        ensure_api()
        manifest = panel_build_flow(
            str(spec),
            str(store),
            str(episodes),
            str(out),
            estimate=estimate,
            scheduler=scheduler,
            workers=workers,
            vektis=str(vektis) if vektis else None,
        )
    from transforms.did_panel.estimates import FEW_CLUSTERS

    target = Path(manifest["out"])
    typer.echo(
        f"panel        {manifest['rows']['panel']:>9,} rows, {manifest['rows']['units']:,} units   {target / 'panel'}"
    )
    typer.echo(
        f"cohorts      {', '.join(f'{c}: {n:,}' for c, n in manifest['units_per_cohort'].items())} units (0 = never treated)"
    )
    immature = manifest["maturity"]["immature_periods"]
    typer.echo(
        f"maturity     {manifest['maturity']['claim_table']}: "
        + (f"not mature: {', '.join(immature)}" if immature else "every period mature")
    )
    for row in (manifest.get("estimates") or {}).get("summary", []):
        if row.get("att") is None:
            typer.echo(f"estimate     {row['outcome']} ({row['sample']}): {row.get('error') or 'not estimated'}")
        else:
            shown = _euros if row["outcome"].endswith("_cents") else _number
            few = (
                f"; only {row['treated_clusters']} treated clusters"
                if row.get("treated_clusters") is not None and row["treated_clusters"] < FEW_CLUSTERS
                else ""
            )
            typer.echo(
                f"estimate     {row['outcome']} ({row['sample']}): ATT {shown(row['att'])} "
                f"(95% CI {shown(row['ci_low'])} to {shown(row['ci_high'])}{few})   {target / row['report']}"
            )
    typer.echo(
        f"dictionary   {target / 'dictionary.md'}; manifest: {target / 'manifest.json'} "
        f"(spec hash {manifest['spec_hash'][:12]}, content {manifest['content_sha256'][:12]})"
    )
