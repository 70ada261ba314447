"""``zorgpad demo``: generate a small delivery and run every pipeline stage on it, end to end."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from flows.cli import Verbose, app


@app.command("demo")
def demo(
    out: Annotated[Path, typer.Option(help="folder for the demo delivery and the run folder")] = Path("demo"),
    patients: Annotated[int, typer.Option(help="size of the demo delivery")] = 2000,
    workers: Annotated[int, typer.Option(help="local Dask worker processes")] = 2,
    specs: Annotated[Path | None, typer.Option(help="a folder of DiD panel specs to build as well")] = None,
    verbose: Verbose = False,
) -> None:
    """Generate a demo delivery (faults included) and run the whole pipeline on it (`zorgpad run`)."""
    from flows.run_command import run_pipeline
    from transforms.output_folder import check_target
    from transforms.synth import SynthConfig, generate_delivery, truth_dir

    # a folder of its own: the demo writes its delivery and a run folder into it, replaced on a rerun
    out = check_target(out, "demo", option="--out")
    out.mkdir(parents=True, exist_ok=True)
    delivery, run = out / "delivery", out / "run"
    (out / "demo.json").write_text(
        json.dumps(
            {
                "delivery": str(delivery),
                "store": str(run / "store"),
                "episodes": str(run / "episodes"),
                "run": str(run),
            },
            indent=2,
        )
        + "\n"
    )
    typer.echo(f"zorgpad demo: generating a synthetic delivery of {patients:,} patients ...")
    summary = generate_delivery(SynthConfig(patients=patients), delivery, workers=1)
    typer.echo(f"delivery:   {delivery}   ({sum(summary['rows'].values()):,} rows; truth in {truth_dir(delivery)})")
    run_pipeline(delivery, run, workers=workers, specs=specs, verbose=verbose)
