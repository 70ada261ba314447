"""``zorgpad synth``: generate a synthetic national claims delivery (plain code, no Prefect needed)."""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from flows.cli import UserError, app


def _years(value: str) -> tuple[int, int]:
    try:
        first, _, last = value.partition("-")
        return int(first), int(last or first)
    except ValueError:
        raise UserError(f"--years must look like 2015-2022, got {value!r}") from None


def _effects(values: list[str]) -> dict:
    """Parse ``--effect hip_oa:price=-268,volume=8`` options."""
    from transforms.synth import BundleEffect
    from transforms.synth.config import default_effects

    effects = dict(default_effects())
    for value in values:
        bundle, _, spec = value.partition(":")
        fields = {}
        for part in filter(None, spec.split(",")):
            key, _, number = part.partition("=")
            name = {"price": "price_eur", "volume": "volume_pct"}.get(key.strip())
            if name is None:
                raise UserError(f"--effect {value!r}: use price=EUR and/or volume=PCT")
            try:
                fields[name] = float(number)
            except ValueError:
                raise UserError(f"--effect {value!r}: {number!r} is not a number") from None
        effects[bundle.strip()] = BundleEffect(**fields)
    return effects


def _provider_effects(value: str | None):
    """Parse ``--provider-effect hip_oa:utilisation=1.2,price=1.2,share=0.18``."""
    from transforms.synth.config import ProviderEffects

    if value is None:
        return ProviderEffects()
    bundle, _, spec = value.partition(":")
    fields: dict = {"bundle": bundle.strip()}
    names = {"utilisation": "utilisation_factor", "price": "price_factor", "share": "patient_share"}
    for part in filter(None, spec.split(",")):
        key, _, number = part.partition("=")
        name = names.get(key.strip())
        if name is None:
            raise UserError(f"--provider-effect {value!r}: use utilisation=FACTOR, price=FACTOR and/or share=FRACTION")
        try:
            fields[name] = float(number)
        except ValueError:
            raise UserError(f"--provider-effect {value!r}: {number!r} is not a number") from None
    return ProviderEffects(**fields)


def _regional_effects(value: str | None):
    """Parse ``--regional-effect PV28:cataract=1.2,acute_stroke=1.2,tail=0.04``."""
    from transforms.synth.config import RegionalEffects

    if value is None:
        return RegionalEffects()
    province, _, spec = value.partition(":")
    factors: dict[str, float] = {}
    tail = None
    for part in filter(None, spec.split(",")):
        key, _, number = part.partition("=")
        try:
            number_f = float(number)
        except ValueError:
            raise UserError(f"--regional-effect {value!r}: {number!r} is not a number") from None
        if key.strip() == "tail":
            tail = number_f
        else:
            factors[key.strip()] = number_f
    fields = {"province": province.strip(), "factors": factors}
    if tail is not None:
        fields["stroke_tail_share"] = tail
    return RegionalEffects(**fields)


@app.command("synth")
def synth(
    out: Annotated[
        Path,
        typer.Option(
            help="folder for the delivery: new, empty or an earlier synthetic delivery (replaced when the new one is complete); truth goes to OUT.truth"
        ),
    ],
    patients: Annotated[int, typer.Option(help="number of insured persons at the start")] = 2000,
    years: Annotated[str, typer.Option(help="first-last year, e.g. 2015-2022")] = "2015-2022",
    seed: Annotated[int, typer.Option(help="random seed: the same seed gives byte-identical files")] = 7,
    clean: Annotated[bool, typer.Option("--clean", help="no faults, corrections or late declarations")] = False,
    data_as_of: Annotated[str | None, typer.Option(help="YYYY-MM-DD; default 31 March after the last year")] = None,
    fault: Annotated[list[str] | None, typer.Option(help="override a fault rate, e.g. --fault duplicate=0.01")] = None,
    effect: Annotated[
        list[str] | None, typer.Option(help="planted effect, e.g. --effect hip_oa:price=-1300,volume=8")
    ] = None,
    panel_effects: Annotated[
        bool,
        typer.Option(
            "--panel-effects/--no-panel-effects",
            help="plant the benchmark providers, the costlier province and the stroke cost tail (kept with --clean: they are not faults)",
        ),
    ] = True,
    provider_effect: Annotated[
        str | None,
        typer.Option(
            help="planted benchmark providers, e.g. hip_oa:utilisation=1.2,price=1.2,share=0.18 (a factor of 1 turns one off)"
        ),
    ] = None,
    regional_effect: Annotated[
        str | None, typer.Option(help="costlier province, e.g. PV28:cataract=1.2,acute_stroke=1.2,tail=0.04")
    ] = None,
    specialist_scale: Annotated[
        float,
        typer.Option(
            help="multiply the number of hospitals, ZBCs and rehabilitation centres (70/40/16) by this, e.g. 0.2 for a delivery of a few hundred thousand insured with realistic volumes per provider (at least one per province; the contract waves shrink with them)"
        ),
    ] = 1.0,
    population_effect: Annotated[
        float,
        typer.Option(
            help="planted population contract: the patients of the province's largest GP practices spend this percentage more (e.g. -5 for 5% less) from 1 January 2019; 0 = off"
        ),
    ] = 0.0,
    population_province: Annotated[
        str, typer.Option(help="CBS province code of the population contract's GP practices")
    ] = "PV31",
    block_size: Annotated[int, typer.Option(help="patients per generated block (memory per worker)")] = 5_000,
    workers: Annotated[int, typer.Option(help="parallel processes (default: CPU count)")] = 0,
) -> None:
    """Generate a complete delivery (nine tables + delivery.json) with known truth next to it."""
    from transforms.synth import FaultRates, SynthConfig, generate_delivery, truth_dir
    from transforms.synth.config import PopulationEffect

    fault = fault or []  # typer passes None when the option is not given
    effect = effect or []
    first, last = _years(years)
    try:
        faults = FaultRates().model_dump()
        for item in fault:
            key, _, value = item.partition("=")
            if key not in faults:
                raise UserError(f"--fault {item!r}: unknown fault {key!r}; known: {', '.join(faults)}")
            faults[key] = value.lower() in ("1", "true", "yes") if key == "late_declarations" else float(value)
        config = SynthConfig(
            patients=patients,
            first_year=first,
            last_year=last,
            seed=seed,
            clean=clean,
            data_as_of=date.fromisoformat(data_as_of) if data_as_of else None,
            faults=FaultRates(**faults),
            effects=_effects(effect),
            block_size=block_size,
            providers=_provider_effects(provider_effect),
            regional=_regional_effects(regional_effect),
            specialist_scale=specialist_scale,
            population=PopulationEffect(spending_pct=population_effect, province=population_province),
        )
        if not panel_effects:
            config = config.without_panel_effects()
    except (ValidationError, ValueError) as exc:
        raise UserError(f"invalid synth options: {exc}") from None
    n_workers = workers or min(os.cpu_count() or 1, config.n_blocks)
    with typer.progressbar(length=config.n_blocks, label=f"generating {config.n_blocks} block(s)") as bar:
        summary = generate_delivery(config, out, workers=n_workers, progress=lambda done, total: bar.update(1))
    rows = sum(summary["rows"].values())
    typer.echo(f"delivery: {out}  ({rows:,} rows, {summary['patients']:,} patients, {summary['seconds']} s)")
    typer.echo(f"truth:    {truth_dir(out)}")
