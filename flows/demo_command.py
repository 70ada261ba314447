"""``zorgpad demo``: generate a small delivery and run every pipeline stage on it, end to end."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from flows.cli import app


@app.command("demo")
def demo(
    out: Annotated[Path, typer.Option(help="folder for the demo delivery and all outputs")] = Path("demo"),
    patients: Annotated[int, typer.Option(help="size of the demo delivery")] = 2000,
    workers: Annotated[int, typer.Option(help="local Dask worker processes")] = 2,
) -> None:
    """Generate a demo delivery (faults included), ingest and validate it, build all episodes and the panels."""
    from flows.episodes_flow import episodes_flow
    from flows.panels_flow import panels_flow
    from flows.ingest_flow import ingest_flow
    from flows.prefect_api import ensure_api
    from transforms.output_folder import check_target
    from transforms.synth import SynthConfig, generate_delivery, truth_dir

    # a folder of its own: the demo writes four folders into it and replaces them on a rerun
    out = check_target(out, "demo", option="--out")
    out.mkdir(parents=True, exist_ok=True)
    delivery, store, episodes, panels = out / "delivery", out / "store", out / "episodes", out / "panels"
    (out / "demo.json").write_text(json.dumps({"delivery": str(delivery), "store": str(store),
                                               "episodes": str(episodes), "panels": str(panels)}, indent=2) + "\n")
    typer.echo(f"1/4 generating a synthetic delivery of {patients:,} patients ...")
    summary = generate_delivery(SynthConfig(patients=patients), delivery, workers=1)
    typer.echo(f"    {sum(summary['rows'].values()):,} rows in {summary['seconds']} s")
    typer.echo("2/4 ingesting: validation, quarantine, netting, patient buckets ...")
    ensure_api()
    manifest = ingest_flow(str(delivery), str(store), workers=workers)
    from transforms.ingest.summary import books_line, validation_line

    typer.echo(f"    books {books_line(manifest)}")
    typer.echo(f"    validation: {validation_line(manifest)}")
    typer.echo("3/4 building care-path episodes for every bundle ...")
    built = episodes_flow(str(store), str(episodes), workers=workers)
    typer.echo("    " + ", ".join(f"{b}: {n:,}" for b, n in built["episodes"].items()))
    typer.echo("4/4 panels: case-mix models, benchmarks, bundle costs, reconciliation, placebo ...")
    made = panels_flow(str(store), str(episodes), str(panels), workers=workers)
    typer.echo(f"    {made['rows']['benchmark']:,} benchmark rows, {made['rows']['reconciliation']:,} settlements, "
               f"{made['plots']:,} funnel plots (a small demo has few publishable cells)")
    typer.echo("")
    typer.echo(f"delivery:   {delivery}")
    typer.echo(f"truth:      {truth_dir(delivery)}")
    typer.echo(f"store:      {store}   (manifest.json, quarantine/)")
    typer.echo(f"data docs:  {store / manifest['validation']['data_docs']}")
    typer.echo(f"episodes:   {episodes / 'episodes'}   (Hive-partitioned by bundle_id and anchor_year)")
    typer.echo(f"lines:      {episodes / 'episode_lines'}")
    typer.echo(f"panels:     {panels}   (benchmark/, bundle_costs/, reconciliation/, placebo/, ...; docs/panels.md)")
