"""``zorgpad demo``: generate a small delivery and run every pipeline stage on it, end to end."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flows.cli import app


@app.command("demo")
def demo(
    out: Annotated[Path, typer.Option(help="folder for the demo delivery and all outputs")] = Path("demo"),
    patients: Annotated[int, typer.Option(help="size of the demo delivery")] = 2000,
) -> None:
    """Generate a demo delivery (faults included) and run the whole pipeline on it."""
    from transforms.synth import SynthConfig, generate_delivery, truth_dir

    out.mkdir(parents=True, exist_ok=True)
    delivery = out / "delivery"
    typer.echo(f"1/1 generating a synthetic delivery of {patients:,} patients ...")
    summary = generate_delivery(SynthConfig(patients=patients), delivery, workers=1)
    typer.echo(f"    {sum(summary['rows'].values()):,} rows in {summary['seconds']} s")
    typer.echo("")
    typer.echo(f"delivery:   {delivery}")
    typer.echo(f"truth:      {truth_dir(delivery)}")
