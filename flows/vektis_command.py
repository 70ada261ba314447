"""``zorgpad ingest-vektis``: harmonise the bundled Vektis open data 2011-2023 into one long table."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer

from flows.cli import UserError, Verbose, app


def parse_years(text: str | None) -> list[int] | None:
    """``"2015-2022"`` -> [2015, ..., 2022]; ``"2017"`` -> [2017]; None -> all bundled years.

    Years without a bundled Vektis file are a user error, reported before anything runs.
    """
    if text is None:
        return None
    match = re.fullmatch(r"\s*(\d{4})\s*(?:-\s*(\d{4})\s*)?", text)
    if match is None:
        raise UserError(f"--years must be a year or a range like 2015-2022, not {text!r}")
    first = int(match.group(1))
    last = int(match.group(2) or first)
    if last < first:
        raise UserError(f"--years range {text!r} ends before it starts")
    from transforms.vektis.harmonise import available_releases

    available = sorted({r.year for r in available_releases()})
    missing = [y for y in range(first, last + 1) if y not in available]
    if missing:
        raise UserError(f"no bundled Vektis file for year(s) {missing}; available: {available[0]}-{available[-1]}")
    return list(range(first, last + 1))


@app.command("ingest-vektis")
def ingest_vektis(
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            help="Output folder: new, empty or an earlier Vektis folder (replaced when the new one is complete).",
        ),
    ],
    years: Annotated[
        str | None,
        typer.Option("--years", help="A year or a range, e.g. 2015-2022 (default: all, 2011-2023)."),
    ] = None,
    verbose: Verbose = False,
) -> None:
    """Harmonise the Vektis open data (Zvw costs per gemeente) into one validated long table."""
    year_list = parse_years(years)
    from flows.prefect_api import ensure_api
    from flows.terminal import flow_console
    from flows.vektis_flow import VektisValidationFailed, ingest_vektis_flow
    from transforms.output_folder import check_target

    check_target(out, "vektis", option="--out")  # before the Prefect API starts
    try:
        with flow_console(verbose):
            ensure_api()
            result = ingest_vektis_flow(out=str(out), years=year_list)
    except VektisValidationFailed as exc:
        raise UserError(str(exc)) from exc
    typer.echo(f"harmonised {result['rows']:,} rows for {', '.join(result['releases'])}")
    typer.echo(f"long table (Hive-partitioned by year): {result['vektis_long']}")
    typer.echo(f"national totals:                       {result['national_totals']}")
    typer.echo(f"unmapped gemeenten:                    {result['unmapped_gemeenten']}")
    typer.echo(f"validation summary:                    {result['validation_summary']}")
    typer.echo(f"Data Docs:                             {result['data_docs_index']}")
