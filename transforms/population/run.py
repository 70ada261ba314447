"""Build the population benchmarks of an enrolled population (``zorgpad population``), step by step
(the Prefect flow runs the same steps as tasks; :func:`build_population` runs them in one process):

1. :func:`plan` -- the population file, the store, the Vektis folder and the output folder are
   checked before anything is read (one ``error:`` line otherwise); the work folder is taken;
2. :func:`spending_step` -- per patient bucket (one Dask task each): spending per insured and quarter;
3. :func:`benchmark_step` -- attribution, the cells, the five benchmarks per quarter, the placebo,
   the attribution counts, written as declared tables (``transforms/population/tables``);
4. :func:`finish` -- the manifest and the swap into place.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import yaml
from pydantic import ValidationError

from transforms.errors import UserFacingError
from transforms.hashing import file_sha256
from transforms.output_folder import Publication, check_target, require_output, require_unlocked
from transforms.output_tables import OutputTable, load_tables
from transforms.panels.inputs import providers_with_region, read_contracts
from transforms.population import benchmark as bench
from transforms.population.attribution import (
    EnrolledPopulation,
    attribute,
    attribution_counts,
    population_practices,
    scan_store,
    store_period,
)
from transforms.population.inputs import bucket_insured, bucket_spending, buckets, vektis_rates
from transforms.runtime import Mapper, code_version, local_map

KIND = "population"
TABLES: dict[str, OutputTable] = load_tables(str(Path(__file__).resolve().parent / "tables"))
PARTS = "_spending"


class PopulationError(UserFacingError):
    """A population or option the benchmarks cannot be built with."""


def load_population(path: Path | str) -> EnrolledPopulation:
    """The enrolled population from a YAML file (name, practices or contract_id, start_date)."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise PopulationError(f"--population {path}: no such file")
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise PopulationError(f"--population {path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise PopulationError(f"--population {path}: a mapping of name, practices (or contract_id) and start_date")
    try:
        return EnrolledPopulation.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "population"
        raise PopulationError(
            f"--population {path}: field `{where}`: {first['msg'].removeprefix('Value error, ')}"
        ) from None


@dataclass
class PopulationRun:
    store: str
    vektis: str
    population: EnrolledPopulation
    population_file: str
    practices: list[str]
    region: str
    cap_pct: float
    excluded_years: tuple[int, ...]
    publication: Publication
    store_manifest: dict
    started: float
    timing: dict[str, float] = field(default_factory=dict)

    @property
    def work(self) -> Path:
        return Path(self.publication.work)


def preflight(
    store: Path | str,
    vektis: Path | str,
    population: Path | str,
    out: Path | str,
    *,
    cap_pct: float = bench.DEFAULT_CAP_PCT,
    excluded_years: tuple[int, ...] = bench.DEFAULT_EXCLUDED_YEARS,
) -> dict:
    """Everything checked in seconds, before a Prefect API or Dask starts."""
    if not 50 <= cap_pct < 100:
        raise PopulationError(f"--cap-pct must be at least 50 and below 100, not {cap_pct}")
    pop = load_population(population)
    store_manifest = require_output(store, "store", option="--store")
    require_output(vektis, "vektis", option="--vektis")
    store_path = Path(store).expanduser().resolve()
    practices = population_practices(pop, read_contracts(store_path), providers_with_region(store_path))
    providers = providers_with_region(store_path)
    known = providers.filter(pl.col("provider_agb").is_in(practices))
    missing = sorted(set(practices) - set(known["provider_agb"]))
    if missing:
        raise PopulationError(f"--population {population}: practice {missing[0]} is not in the store's providers")
    first, last = store_period(store_path)
    if not first < pop.start_date <= last:
        raise PopulationError(
            f"--population {population}: start_date {pop.start_date} must lie after the store's first "
            f"day {first} (a pre-period is needed) and by its last day {last}"
        )
    regions = known.group_by("region_code").len().sort(["len", "region_code"], descending=[True, False])
    target = check_target(
        out, KIND, inputs={"store": Path(store), "vektis": Path(vektis), "population": Path(population)}, option="--out"
    )
    require_unlocked(target)
    return {
        "population": pop,
        "practices": practices,
        "region": regions["region_code"][0],
        "store_manifest": store_manifest,
    }


def plan(
    store: Path | str,
    vektis: Path | str,
    population: Path | str,
    out: Path | str,
    *,
    cap_pct: float = bench.DEFAULT_CAP_PCT,
    excluded_years: tuple[int, ...] = bench.DEFAULT_EXCLUDED_YEARS,
) -> PopulationRun:
    started = time.perf_counter()
    checked = preflight(store, vektis, population, out, cap_pct=cap_pct, excluded_years=excluded_years)
    store_path, vektis_path = Path(store).expanduser().resolve(), Path(vektis).expanduser().resolve()
    population_path = Path(population).expanduser().resolve()
    publication = Publication.begin(
        out, KIND, inputs={"store": store_path, "vektis": vektis_path, "population": population_path}, option="--out"
    )
    (Path(publication.work) / PARTS).mkdir()
    return PopulationRun(
        str(store_path),
        str(vektis_path),
        checked["population"],
        str(population_path),
        checked["practices"],
        checked["region"],
        cap_pct,
        tuple(excluded_years),
        publication,
        checked["store_manifest"],
        started,
    )


def bucket_step(run: PopulationRun, bucket: str) -> str:
    """One Dask task: spending per insured and quarter of one bucket, written to the work folder."""
    path = run.work / PARTS / f"{bucket}.parquet"
    bucket_spending(run.store, bucket).write_parquet(path)
    return str(path)


def spending_step(run: PopulationRun, mapper: Mapper = local_map) -> list[str]:
    t0 = time.perf_counter()
    paths = mapper(bucket_step, [(run, b) for b in buckets(run.store)])
    run.timing["spending"] = time.perf_counter() - t0
    return paths


def cells(run: PopulationRun, spending: pl.DataFrame, attributed: pl.DataFrame, rates: pl.DataFrame) -> pl.DataFrame:
    """One row per attributed insured-quarter: spending (0 without claims), population and region
    membership, age class and sex, and the Vektis expected cost of the quarter (a year outside the
    Vektis folder's years takes the nearest year's rates; the manifest says which years it has)."""
    providers = providers_with_region(Path(run.store)).select("provider_agb", "region_code")
    people = (
        pl.concat([bucket_insured(run.store, b) for b in buckets(run.store)])
        .group_by("patient_id")
        .agg(pl.col("birth_year").first(), pl.col("sex").first())
    )
    first_rate_year, last_rate_year = int(rates["year"].min()), int(rates["year"].max())
    frame = (
        attributed.select("patient_id", pl.col("year").cast(pl.Int32), pl.col("quarter").cast(pl.Int8), "practice_agb")
        .join(spending, on=["patient_id", "year", "quarter"], how="left")
        .join(people, on="patient_id", how="left")
        .join(providers, left_on="practice_agb", right_on="provider_agb", how="left")
        .with_columns(
            pl.col("cents").fill_null(0).cast(pl.Float64),
            pl.col("practice_agb").is_in(run.practices).alias("in_population"),
            (pl.col("region_code") == run.region).fill_null(False).alias("in_region"),
            bench.age_class_min(pl.col("year") - pl.col("birth_year").cast(pl.Int32)).alias("age_min"),
            pl.col("year").clip(first_rate_year, last_rate_year).alias("rate_year"),
        )
    )
    frame = frame.join(rates.rename({"year": "rate_year"}), on=["rate_year", "sex", "age_min"], how="left")
    return frame.with_columns(pl.col("quarter").cast(pl.Int32)).sort("year", "quarter", "patient_id")


def benchmark_step(run: PopulationRun, spending_paths: list[str]) -> dict:
    t0 = time.perf_counter()
    gp, insured = scan_store(run.store)
    period = store_period(run.store)
    attributed = attribute(gp, insured, period=period)
    counts = attribution_counts(gp, insured, period=period)
    spending = pl.concat([pl.read_parquet(p) for p in spending_paths]).with_columns(pl.col("quarter").cast(pl.Int8))
    frame = cells(run, spending, attributed, vektis_rates(run.vektis))
    quarters = bench.quarter_benchmarks(frame, cap_pct=run.cap_pct)
    start = run.population.start_date
    start_index = start.year * 4 + (start.month - 1) // 3 + 1
    index = pl.col("year") * 4 + pl.col("quarter")
    quarters = quarters.with_columns(
        pl.when(index >= start_index)
        .then(pl.lit("contract"))
        .when(pl.col("year").is_in(list(run.excluded_years)))
        .then(pl.lit("excluded"))
        .otherwise(pl.lit("pre"))
        .alias("period")
    )
    placebo = bench.placebo(quarters, start.year)
    saved = bench.savings(quarters)
    TABLES["population_benchmark"].write(quarters.select(TABLES["population_benchmark"].column_names), run.work)
    TABLES["population_placebo"].write(placebo.select(TABLES["population_placebo"].column_names), run.work)
    TABLES["attribution_counts"].write(counts.select(TABLES["attribution_counts"].column_names), run.work)
    if saved.height:
        TABLES["population_savings"].write(saved.select(TABLES["population_savings"].column_names), run.work)
    run.timing["benchmarks"] = time.perf_counter() - t0
    pop_rows = frame.filter(pl.col("in_population"))
    return {
        "placebo": placebo.to_dicts(),
        "savings": saved.to_dicts(),
        "rows": {
            "population_benchmark": quarters.height,
            "population_placebo": placebo.height,
            "attribution_counts": counts.height,
            "population_savings": saved.height,
        },
        "attributed_insured_quarters": attributed.height,
        "population_insured_quarters": pop_rows.height,
        "region_insured_quarters": frame.filter(pl.col("in_region") & ~pl.col("in_population")).height,
        "spending_euros_attributed": round(float(frame["cents"].sum()) / 100, 2),
        "no_vektis_rate": int(frame["expected_cents"].null_count()),
    }


def finish(run: PopulationRun, report: dict) -> dict:
    import shutil

    shutil.rmtree(run.work / PARTS)
    manifest = {
        "population": {
            **run.population.model_dump(mode="json"),
            "practices": run.practices,
            "region": run.region,
            "file": run.population_file,
            "sha256": file_sha256(Path(run.population_file)),
        },
        "store": {
            "path": run.store,
            "delivery_id": run.store_manifest.get("delivery_id"),
            "manifest_sha256": file_sha256(Path(run.store) / "manifest.json"),
        },
        "vektis": {
            "path": run.vektis,
            "manifest_sha256": file_sha256(Path(run.vektis) / "manifest.json")
            if (Path(run.vektis) / "manifest.json").exists()
            else None,
        },
        "options": {"cap_pct": run.cap_pct, "excluded_years": list(run.excluded_years)},
        "benchmarks": list(bench.BENCHMARKS),
        "tables": {
            name: {"grain": t.grain, "key": list(t.key), "partition_by": list(t.partition_by)}
            for name, t in TABLES.items()
        },
        **report,
        "code_version": code_version(),
        "timing_seconds": {k: round(v, 3) for k, v in run.timing.items()},
    }
    manifest["timing_seconds"]["total"] = round(time.perf_counter() - run.started, 3)
    run.publication.commit(manifest)
    return {**manifest, "out": run.publication.target}


def abandon(run: PopulationRun) -> None:
    run.publication.abandon()


def build_population(
    store: Path | str,
    vektis: Path | str,
    population: Path | str,
    out: Path | str,
    *,
    cap_pct: float = bench.DEFAULT_CAP_PCT,
    excluded_years: tuple[int, ...] = bench.DEFAULT_EXCLUDED_YEARS,
    mapper: Mapper = local_map,
) -> dict:
    run = plan(store, vektis, population, out, cap_pct=cap_pct, excluded_years=excluded_years)
    try:
        paths = spending_step(run, mapper)
        return finish(run, benchmark_step(run, paths))
    except BaseException:
        abandon(run)
        raise


__all__ = [
    "KIND",
    "PopulationError",
    "PopulationRun",
    "abandon",
    "benchmark_step",
    "build_population",
    "finish",
    "load_population",
    "plan",
    "preflight",
    "spending_step",
]
