"""Write a complete synthetic delivery: nine tables, ``delivery.json``, and the truth next to it.

Layout::

    OUT/                      the delivery (input-contract layout)
      delivery.json
      insured/part-00000.parquet ...   one file per patient block and table
      providers/providers.parquet
      contracts/contracts.parquet
    OUT.truth/                never read by the pipeline; for tests and evaluations
      truth.json              config, planted effects, counts, withheld lines, fault counts,
                              the declaration-lag distribution per claim table (declaration_lag)
      planted_triggers/       every planted trigger line (bundle, patient, anchor, provider, claim, role)
      faults/                 every injected fault (table, claim_id, fault, column, old, new)
      corrections/            every credit / re-declaration pair with the expected net amount
      episodes/               clean deliveries only: every episode the rules must give, with its
                              status, in-bundle cents (declared, standardised, per phase) and outcomes
      episode_lines/          clean deliveries only: the in-bundle lines of those episodes, prorated
      reference_prices.parquet  clean deliveries only: national mean price per product and year
      settlements.parquet     clean deliveries only: expected contract settlements and placebo rows
      settlement_shares.parquet  their distribution over the contracts' providers

Blocks of ``block_size`` patients are generated independently (in parallel with ``workers`` > 1),
so memory stays flat as the number of patients grows.
"""

from __future__ import annotations

import json
import multiprocessing
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from transforms.contract import CONTRACT_VERSION, load_contract
from transforms.manifests import DeliveryJson
from transforms.output_folder import SYNTH_PRODUCER, Publication
from transforms.synth.block import PARQUET_OPTIONS, BlockResult, generate_block, to_contract_table
from transforms.synth.calibration import load_calibration
from transforms.synth.claims import population_practices
from transforms.synth.config import SynthConfig
from transforms.synth.episode_truth import finish_truth, reference_prices
from transforms.synth.lag_truth import declaration_lag_truth
from transforms.synth.providers import ProviderRegistry, build_registry
from transforms.synth.truth_summary import panel_effects_summary, write_settlements

PRODUCER = SYNTH_PRODUCER  # how `transforms.output_folder` recognises a synthetic delivery


def truth_dir(out: Path) -> Path:
    """The truth folder that belongs to delivery ``out`` (a sibling, never inside it)."""
    out = Path(out)
    return out.with_name(out.name + ".truth")


def _prepare(config: SynthConfig) -> tuple:
    calibration = load_calibration(config.first_year, config.last_year)
    registry = build_registry(config, calibration)
    return calibration, registry


def _run_block(args: tuple) -> BlockResult:
    config, block, out, truth = args
    key = config.model_dump_json()
    if key not in _WORKER_STATE:  # once per worker process
        _WORKER_STATE[key] = _prepare(config)
    calibration, registry = _WORKER_STATE[key]
    return generate_block(config, calibration, registry, block, out, truth)


_WORKER_STATE: dict[str, tuple] = {}  # config json -> (calibration, registry), per process


def generate_delivery(
    config: SynthConfig, out: Path, *, workers: int = 1, progress: Callable[[int, int], None] | None = None
) -> dict:
    """Generate the delivery into ``out`` and its truth into ``out.truth``; each must be new,
    empty or written by an earlier ``generate_delivery`` (anything else is refused, see
    ``transforms.output_folder``), and is replaced only when the new one is complete.

    Returns the truth summary (also written to ``truth.json``).
    """
    started = time.perf_counter()
    out = Path(out)
    delivery_publication = Publication.begin(out, "synthetic_delivery")
    try:
        truth_publication = Publication.begin(truth_dir(out), "synthetic_truth")
    except BaseException:
        delivery_publication.abandon()
        raise
    try:
        summary = _generate(config, delivery_publication.work_path, truth_publication.work_path, workers, progress)
    except BaseException:
        truth_publication.abandon()
        delivery_publication.abandon()
        raise
    summary["seconds"] = round(time.perf_counter() - started, 2)
    (truth_publication.work_path / "truth.json").write_text(
        json.dumps(summary, indent=2, sort_keys=True, default=str) + "\n"
    )
    delivery_publication.commit()
    truth_publication.commit()
    return summary


def _generate(
    config: SynthConfig, out: Path, truth: Path, workers: int, progress: Callable[[int, int], None] | None
) -> dict:
    calibration, registry = _prepare(config)
    _WORKER_STATE[config.model_dump_json()] = (calibration, registry)
    contract = load_contract()
    _write_single(registry.frame(), contract.table("providers"), out / "providers" / "providers.parquet")
    _write_single(registry.contracts, contract.table("contracts"), out / "contracts" / "contracts.parquet")

    jobs = [(config, b, out, truth) for b in range(config.n_blocks)]
    results: list[BlockResult] = []
    if workers > 1 and len(jobs) > 1:
        # spawn, not fork: forking a process whose polars/arrow thread pools are running deadlocks
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            for result in pool.map(_run_block, jobs):
                results.append(result)
                if progress:
                    progress(len(results), len(jobs))
    else:
        for job in jobs:
            results.append(_run_block(job))
            if progress:
                progress(len(results), len(jobs))

    delivery = DeliveryJson(
        delivery_id=config.effective_delivery_id,
        data_as_of=config.as_of,
        first_year=config.first_year,
        last_year=config.last_year,
        producer=PRODUCER,
    )
    (out / "delivery.json").write_text(json.dumps(delivery.dump(), indent=2) + "\n")
    summary = _truth_summary(config, registry, results, truth)
    if config.exact_truth:
        prices = reference_prices([r.prices for r in results if r.prices is not None])
        prices.write_parquet(truth / "reference_prices.parquet", compression="zstd")
        finish_truth(
            truth,
            [r.block for r in results],
            prices,
            registry.frame().select(
                pl.col("provider_agb").alias("anchor_provider_agb"),
                pl.col("provider_type").alias("anchor_provider_type"),
                pl.Series("anchor_province", registry.province.tolist(), dtype=pl.String),
            ),
        )
        summary["settlements"] = write_settlements(config, registry, truth)
    else:
        summary["settlements"] = {
            "computed": False,
            "reason": "faults, corrections or withheld late declarations change which lines the store holds; the "
            "truth episodes and settlements are computed for clean deliveries only (--clean)",
        }
    summary["panel_effects"] = panel_effects_summary(config, registry, truth if config.exact_truth else None)
    if config.population.active:
        summary["population_effect"] = _population_effect_truth(config, calibration, registry, results)
    return summary


def _default_options(config: SynthConfig) -> set[str]:
    """Options left out of ``truth.json`` ``config`` at their defaults (added after the first deliveries)."""
    left_out = set()
    if config.specialist_scale == 1.0:
        left_out.add("specialist_scale")
    if not config.population.active:
        left_out.add("population")
    return left_out


def _population_effect_truth(
    config: SynthConfig, calibration, registry: ProviderRegistry, results: list[BlockResult]
) -> dict:
    """The planted population effect: its practices and the cents it took off the delivered lines
    (original minus changed amount) per year and quarter of service -- the gap between the
    counterfactual (the spending without the effect) and the delivered spending."""
    effect = config.population
    savings: dict[tuple[int, int], list[int]] = {}
    for r in results:
        for key, (lines, cents) in (r.population_savings or {}).items():
            entry = savings.setdefault(key, [0, 0])
            entry[0] += lines
            entry[1] += cents
    return {
        "province": effect.province,
        "practices": registry.agb[population_practices(effect, calibration, registry)].tolist(),
        "start_year": effect.start_year,
        "spending_pct": effect.spending_pct,
        "applies_to": "every amount of dbc, gp (not the registration fees), pharmacy and paramedical and maternity "
        "lines of patients whose usual GP is one of the practices, with a service date (dbc: end_date) "
        "on or after 1 January start_year, times 1 + spending_pct/100 rounded half away from zero to "
        "the cent (dbc_activity amounts of such subtrajecten alike); savings are over the delivered "
        "lines before faults and corrections",
        "planted_savings_cents": [
            {"year": y, "quarter": q, "lines": lines, "cents": cents}
            for (y, q), (lines, cents) in sorted(savings.items())
        ],
        "planted_savings_cents_total": sum(cents for _, cents in savings.values()),
    }


def _write_single(frame: pl.DataFrame, table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(to_contract_table(frame, table), path, **PARQUET_OPTIONS)


def _service_days(results: list[BlockResult]) -> dict:
    """Per claim table, the deliverable lines and cents of all blocks per service day (from ``first_year``)."""
    total: dict = {}
    for r in results:
        for table, counts in (r.service_days or {}).items():
            total[table] = counts if table not in total else total[table] + counts
    return total


def _truth_summary(config: SynthConfig, registry: ProviderRegistry, results: list[BlockResult], truth: Path) -> dict:
    rows: Counter[str] = Counter()
    withheld: dict[str, Counter[str]] = {}
    for r in results:
        rows.update(r.rows)
        for table, reasons in r.withheld.items():
            withheld.setdefault(table, Counter()).update(reasons)
    rows["providers"] = int(registry.agb.size)
    rows["contracts"] = registry.contracts.height
    faults = pl.read_parquet(truth / "faults")
    fault_counts = {
        f"{t}/{f}": c for t, f, c in faults.group_by("table", "fault").len().sort("table", "fault").iter_rows()
    }
    planted = pl.read_parquet(truth / "planted_triggers")
    by_bundle_year = (
        planted.filter(pl.col("role") == "trigger")
        .group_by("bundle_id", pl.col("anchor_date").dt.year().alias("year"))
        .agg(
            pl.len().alias("planted"),
            pl.col("delivered").sum().alias("delivered"),
            pl.col("treated").sum().alias("treated"),
        )
        .sort("bundle_id", "year")
    )
    return {
        "delivery_id": config.effective_delivery_id,
        "contract_version": CONTRACT_VERSION,
        # specialist_scale is recorded only when it is not the default, so that the truth of a
        # default delivery stays byte-identical to the one written before the option existed
        # so is the population effect (recorded, with its practices and savings, when it is on)
        "config": json.loads(config.model_dump_json(exclude=_default_options(config) or None)),
        "patients": sum(r.patients for r in results),
        "rows": rows,
        "withheld": withheld,
        "faults": fault_counts,
        "effects": {
            bundle: {
                "price_eur_per_episode": effect.price_eur,
                "price_eur_per_patient_quarter": round(effect.price_eur / (485 / (365.25 / 4)), 2)
                if bundle in ("hip_oa", "knee_oa")
                else None,
                "volume_pct": effect.volume_pct,
                "applies_to": "declared amount of the trigger subtraject (the operation) of episodes anchored at a "
                "treated provider on or after its contract start; volume: trigger rate at treated "
                "providers after the start",
            }
            for bundle, effect in config.effects.items()
        },
        "treated_providers": {
            bundle: int((start < ProviderRegistry.NEVER).sum()) for bundle, start in registry.contract_start.items()
        },
        "planted_triggers": by_bundle_year.to_dicts(),
        # from the generator's lag parameters and service days, not from the declarations it drew: what a
        # claims-maturity estimate should find
        "declaration_lag": declaration_lag_truth(
            config.first_year, config.as_of, _service_days(results), withheld=config.fault_rates.late_declarations
        ),
    }
