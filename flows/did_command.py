"""``zorgpad did estimate``: Callaway & Sant'Anna difference-in-differences on a panel, with a report
that matches R ``did`` (plain code in ``transforms/did/``: an estimate takes seconds, so no Prefect
flow and no Dask cluster are started)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flows.cli import app

did_app = typer.Typer(
    name="did",
    help="Difference-in-differences on a panel (Callaway & Sant'Anna, as R did).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(did_app, name="did")


@did_app.command("estimate")
def estimate(
    panel: Annotated[
        Path,
        typer.Argument(
            metavar="PANEL", help="a parquet file, a folder of parquet files (Hive partitions allowed) or a CSV file"
        ),
    ],
    y: Annotated[str, typer.Option("--y", help="the outcome column")],
    t: Annotated[
        str, typer.Option("--t", help="the period column (whole numbers: a year, or a running quarter or month)")
    ],
    g: Annotated[
        str,
        typer.Option(
            "--g", help="the period a unit is first treated; 0 (or empty, see --never-treated-coding) for never treated"
        ),
    ],
    out: Annotated[Path, typer.Option(help="the report folder (new, empty, or an earlier DiD report)")],
    id: Annotated[str | None, typer.Option("--id", help="the unit column (needed for panel data)")] = None,
    x: Annotated[
        str | None, typer.Option("--x", help="covariates, comma-separated (conditional parallel trends)")
    ] = None,
    control: Annotated[str, typer.Option(help="never_treated or not_yet_treated")] = "never_treated",
    method: Annotated[str, typer.Option(help="dr (doubly robust), ipw or reg")] = "dr",
    cluster: Annotated[
        str | None, typer.Option(help="cluster standard errors by this column (e.g. the provider)")
    ] = None,
    weights: Annotated[str | None, typer.Option(help="a sampling-weight column")] = None,
    fix_weights: Annotated[
        str, typer.Option(help="time-varying weights: none, base_period, first_period or varying (R did's fix_weights)")
    ] = "none",
    repeated_cross_sections: Annotated[
        bool,
        typer.Option(
            "--repeated-cross-sections", help="rows are independent observations, not units followed over time"
        ),
    ] = False,
    anticipation: Annotated[int, typer.Option(help="periods before the start in which units already react")] = 0,
    base_period: Annotated[str, typer.Option(help="varying or universal")] = "varying",
    bootstrap: Annotated[
        bool, typer.Option("--bootstrap", help="multiplier-bootstrap standard errors instead of analytic ones")
    ] = False,
    bootstrap_draws: Annotated[int, typer.Option(help="bootstrap draws")] = 999,
    seed: Annotated[int, typer.Option(help="seed of the bootstrap (the same seed gives the same standard errors)")] = 7,
    never_treated_coding: Annotated[
        str, typer.Option(help="zero (R did, csdid: G = 0) or nan (differences: G empty)")
    ] = "zero",
    skip_missing_cells: Annotated[
        bool,
        typer.Option(
            "--skip-missing-cells",
            help="aggregate over the ATT(g,t) that could be estimated, listing the others (R did's aggte(na.rm = TRUE))",
        ),
    ] = False,
) -> None:
    """ATT(g,t), the simple, dynamic, group and calendar aggregations and the pre-trend test, written
    to OUT as parquet tables, an event-study plot and report.html."""
    from transforms.did.inputs import DidOptions
    from transforms.did.run import run_estimate

    options = DidOptions.from_cli(
        y=y,
        t=t,
        id=id,
        g=g,
        x=x,
        control=control,
        method=method,
        cluster=cluster,
        weights=weights,
        fix_weights=fix_weights,
        repeated_cross_sections=repeated_cross_sections,
        anticipation=anticipation,
        base_period=base_period,
        bootstrap=bootstrap,
        bootstrap_draws=bootstrap_draws,
        seed=seed,
        never_treated_coding=never_treated_coding,
        skip_missing_cells=skip_missing_cells,
    )
    manifest = run_estimate(panel, out, options)
    target = Path(manifest["out"])
    typer.echo(manifest["headline"])
    typer.echo(f"ATT(g,t):      {manifest['rows']['att_gt']:>5} rows   {target / 'att_gt.parquet'}")
    typer.echo(f"aggregations:  {manifest['rows']['aggregations']:>5} rows   {target / 'aggregations.parquet'}")
    typer.echo(f"report:        {target / 'report.html'}")
