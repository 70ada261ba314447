"""Generate one block of patients: population, care paths, background care, faults; write its files.

A block is independent of every other block (its own random stream ``[seed, block]``), so blocks
can run in any order, on any number of processes, and give byte-identical files.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from transforms.contract import load_contract
from transforms.money import cents_to_decimal
from transforms.synth import background, faults
from transforms.synth.calendar import day, year_start
from transforms.synth.calibration import Calibration
from transforms.synth.catalogue import load_catalogue
from transforms.synth.claims import ClaimBuffer, ClaimIds, population_shift
from transforms.synth.config import SynthConfig
from transforms.synth.episode_truth import block_truth
from transforms.synth.paths import birth, breast, cataract, hand_wrist, heart_failure, joint, rheumatoid, stroke
from transforms.synth.paths.common import PathContext
from transforms.synth.population import OPEN, draw_population
from transforms.synth.providers import INSURERS, ProviderRegistry

PARQUET_OPTIONS = dict(compression="zstd", compression_level=3, use_dictionary=True, write_statistics=True)
#: The patient-level tables a block writes (the contract's bucketed tables).
BLOCK_TABLES = load_contract().bucketed_tables


@dataclass
class BlockResult:
    """What a block reports back: row counts, withheld lines and the truth frames' row counts."""

    block: int
    patients: int
    rows: dict[str, int]
    withheld: dict[str, dict[str, int]]
    faults: int
    prices: pl.DataFrame | None = None  # partial sums of declared cents per product and year (exact truth only)
    service_days: dict[str, np.ndarray] | None = None  # per claim table, deliverable lines and cents per service day
    population_savings: dict[tuple[int, int], list[int]] | None = (
        None  # (year, quarter) -> [lines, cents] (population effect)
    )


def patient_pseudonyms(seed: int, block: int, n: int) -> np.ndarray:
    """Pseudonymous patient ids ("ZP" + 16 hex digits): stable for a seed, never BSN-like."""
    return np.array(
        ["ZP" + hashlib.blake2b(f"{seed}:{block}:{i}".encode(), digest_size=8).hexdigest() for i in range(n)],
        dtype=object,
    )


def generate_block(
    config: SynthConfig, calibration: Calibration, registry: ProviderRegistry, block: int, out: Path, truth: Path
) -> BlockResult:
    rng = np.random.default_rng([config.seed, block])
    n = min(config.block_size, config.patients - block * config.block_size)
    pop = draw_population(block, n, config.first_year, config.last_year, calibration, registry, rng)
    claims = ClaimBuffer(pop, registry, rng)
    ctx = PathContext(
        config=config, pop=pop, registry=registry, catalogue=load_catalogue(), claims=claims, rng=rng, chronic={}
    )
    ctx.chronic = background.draw_chronic(ctx, rng)

    # care paths: conditions that raise mortality first, so later paths see the deaths
    heart_failure.generate(ctx)
    stroke.generate(ctx)
    joint.generate(ctx, "hip_oa")
    joint.generate(ctx, "knee_oa")
    cataract.generate(ctx)
    breast.generate(ctx)
    rheumatoid.generate(ctx)
    hand_wrist.generate(ctx)
    birth.generate(ctx)
    ctx.chronic = background.pad_chronic(ctx.chronic, pop.size)
    background.generate(ctx, calibration)

    patient_ids = pl.Series("patient_id", patient_pseudonyms(config.seed, block, pop.size).tolist(), dtype=pl.String)
    as_of = day(config.as_of)
    tables, withheld, claim_of_row = claims.finalise(
        block=block,
        first_day=int(year_start(config.first_year)),
        last_day=int(year_start(config.last_year + 1)) - 1,
        as_of=as_of,
        withhold_late=config.fault_rates.late_declarations,
        patient_ids=patient_ids,
        population=population_shift(config, calibration, registry),
    )
    for name in load_contract().claim_tables:
        if tables[name] is not None:
            tables[name] = tables[name].with_columns(pl.lit(None, pl.String).alias("corrects_claim_id"))
    tables, fault_frame, corrections = faults.inject(
        tables,
        config.fault_rates,
        rng,
        first_year=config.first_year,
        as_of_day=as_of,
        known_agb=set(registry.agb.tolist()),
    )
    tables["insured"] = _insured_frame(pop, patient_ids, as_of, calibration.gemeente_codes)

    contract = load_contract()
    rows = {}
    for name in BLOCK_TABLES:
        arrow = to_contract_table(tables.get(name), contract.table(name))
        rows[name] = arrow.num_rows
        path = out / name / f"part-{block:05d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(arrow, path, **PARQUET_OPTIONS)

    planted = _planted_frame(ctx, claim_of_row, patient_ids, registry)
    frames = [("planted_triggers", planted), ("faults", fault_frame), ("corrections", corrections)]
    prices = None
    if config.exact_truth:  # the generator's own episodes (standardised amounts added by the delivery)
        episodes, lines, prices = block_truth(tables, tables["insured"], config.as_of)
        frames += [("episodes", episodes), ("episode_lines", lines)]
    for name, frame in frames:
        path = truth / name / f"part-{block:05d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        frame.write_parquet(path, compression="zstd")
    return BlockResult(
        block=block,
        patients=pop.size,
        rows=rows,
        withheld=withheld,
        faults=fault_frame.height,
        prices=prices,
        service_days=claims.service_days,
        population_savings=claims.population_savings,
    )


def _insured_frame(pop, patient_ids: pl.Series, as_of: int, gemeente_codes: tuple[str, ...]) -> pl.DataFrame:
    """One row per enrolment spell; a spell still running at ``data_as_of`` has no end date."""
    s = pop.spell_patient
    end = np.where(pop.spell_end >= OPEN, -1, pop.spell_end)
    open_spell = (end < 0) | (end > as_of)
    death = pop.death_day[s]
    return pl.DataFrame(
        [
            patient_ids.gather(s),
            pl.Series("insurer_uzovi", INSURERS).gather(pop.spell_insurer),
            pl.Series("enrolled_from", pop.spell_start, dtype=pl.Int64),
            pl.Series("enrolled_to", np.where(open_spell, 0, end), dtype=pl.Int64),
            pl.Series("enrolled_to_null", open_spell),
            pl.Series("birth_year", pop.birth_year[s], dtype=pl.Int16),
            pl.Series("sex", ["M", "V"]).gather(pop.sex[s]),
            pl.Series("postcode3", pop.postcode3.tolist(), dtype=pl.String).gather(s),
            pl.Series("gemeente_code", list(gemeente_codes), dtype=pl.String).gather(pop.gemeente[s]),
            pl.Series("death_date", np.where(death >= OPEN, 0, death), dtype=pl.Int64),
            pl.Series("death_date_null", (death >= OPEN) | (death > as_of)),
        ]
    )


def to_contract_table(frame: pl.DataFrame | None, table) -> pa.Table:
    """Turn a generator frame (days as ints, money as cents, ``<col>_null`` masks) into an Arrow
    table with exactly the contract's schema."""
    schema = table.arrow_schema()
    if frame is None or frame.height == 0:
        return schema.empty_table()
    arrays = []
    for col in table.columns:
        null_mask = frame[f"{col.name}_null"].to_numpy() if f"{col.name}_null" in frame.columns else None
        if col.type == "money":
            source = "amount_cents" if col.name == "amount" else col.name
            mask = frame["amount_is_null"].to_numpy() if "amount_is_null" in frame.columns else null_mask
            arrays.append(cents_to_decimal(frame[source].to_numpy(), mask))
        elif col.name not in frame.columns:
            arrays.append(pa.nulls(frame.height, col.arrow_type))
        elif col.type == "date" and frame[col.name].dtype == pl.Date:
            arrays.append(frame[col.name].to_arrow().cast(pa.date32()))
        elif col.type == "date":  # days since the epoch, with an optional ``<col>_null`` mask
            values = frame[col.name].to_numpy().astype(np.int32)
            arrays.append(pa.array(values, type=pa.int32(), mask=null_mask).cast(pa.date32()))
        else:
            series = frame[col.name]
            if series.dtype == pl.Object:
                series = pl.Series(col.name, series.to_list(), dtype=pl.String)
            arr = series.to_arrow()
            if null_mask is not None:
                arr = pa.array(arr.to_pylist(), type=col.arrow_type, mask=null_mask)
            arrays.append(arr.cast(col.arrow_type))
    return pa.Table.from_arrays(arrays, schema=schema)


def _planted_frame(
    ctx: PathContext, claim_ids: dict[str, ClaimIds], patient_ids: pl.Series, registry: ProviderRegistry
) -> pl.DataFrame:
    frames = []
    for t in ctx.planted:
        if t.patient.size == 0:
            continue
        ids = claim_ids[t.table].maybe(t.row)
        anchor = (np.datetime64("1970-01-01") + t.anchor_day.astype("timedelta64[D]")).astype("datetime64[D]")
        frames.append(
            pl.DataFrame(
                {
                    "bundle_id": [t.bundle] * t.patient.size,
                    "role": [t.role] * t.patient.size,
                    "patient_id": patient_ids.gather(t.patient),
                    "anchor_date": anchor,
                    "anchor_provider_agb": registry.agb[t.provider].tolist(),
                    "trigger_table": [t.table] * t.patient.size,
                    "trigger_claim_id": ids,
                    "delivered": [i is not None for i in ids],
                    "treated": t.treated.astype(bool),
                    "price_effect_eur": t.price_effect_cents.astype(np.float64) / 100.0,
                },
                schema_overrides={"trigger_claim_id": pl.String, "anchor_date": pl.Date},
            )
        )
    if not frames:
        return pl.DataFrame(
            schema={
                "bundle_id": pl.String,
                "role": pl.String,
                "patient_id": pl.String,
                "anchor_date": pl.Date,
                "anchor_provider_agb": pl.String,
                "trigger_table": pl.String,
                "trigger_claim_id": pl.String,
                "delivered": pl.Boolean,
                "treated": pl.Boolean,
                "price_effect_eur": pl.Float64,
            }
        )
    return pl.concat(frames)
