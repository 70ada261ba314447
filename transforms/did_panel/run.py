"""Build a DiD panel from a spec, step by step (the Prefect flow ``panel build`` runs the same steps as
tasks; :func:`build_panel` runs them in one process):

1. :func:`plan_build` -- the spec (refused before anything is read, naming the field), the store and
   the episodes (complete, of one delivery), the spec's columns against the episodes' schemas
   (parquet footers only), the output folder and its lock; the provider cohorts from the contracts;
2. :func:`maturity_step` -- the claims maturity of the panel's periods (``transforms.maturity``);
3. :func:`partition_step` -- per bundle and anchor year (one Dask task each): the kept episodes and
   what was left out, written as parquet into the work folder;
4. :func:`assemble_step` -- the unit rows, the panel (Hive partitions by period), the estimator
   adapters, the attrition report and the data dictionary;
5. :func:`estimate_step` (``--estimate``) -- a Callaway & Sant'Anna report per outcome (and, where
   contracts name insurers, per group of insurers: the free-riding report);
6. :func:`finish` -- the manifest (spec and its hash, inputs, rows, content hash) and the swap.

Steps hand each other paths and small frames; every file is the same bytes for the same spec and
inputs (the content hash in the manifest says so), on one machine or a cluster.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import polars as pl
import yaml

from transforms.bundles import load_bundles
from transforms.contract import CONTRACT_VERSION
from transforms.did_panel import columns as panel_columns
from transforms.did_panel import gemeente
from transforms.did_panel.periods import IN_PANEL, periods_frame, provider_cohorts
from transforms.did_panel.spec import VOLUME_OUTCOMES, PanelSpec, SpecError, load_spec, normalised, spec_hash
from transforms.did_panel.units import (
    ATTRITION_SCHEMA,
    BASE_COLUMNS,
    QUARTER_OUTCOMES,
    episode_quarters,
    finish_rows,
    provider_periods,
    select_episodes,
)
from transforms.episodes.rules import CHRONIC_ATC
from transforms.errors import UserFacingError
from transforms.hashing import file_sha256
from transforms.manifests import DidPanelManifest, EpisodesManifest, StoreManifest
from transforms.maturity.store import read_lines as read_claim_lines
from transforms.output_folder import (
    OutputError,
    Publication,
    check_target,
    require_episodes_of,
    require_output,
    require_unlocked,
)
from transforms.panels.inputs import episode_files, read_contracts
from transforms.runtime import Mapper, code_version, local_map

KIND = "did_panel"
PARTS_DIR = "_parts"
MATURITY_FILE = "_maturity.parquet"
ADAPTERS = {"did": "adapters/did.parquet", "differences": "adapters/differences.parquet"}


#: Episode columns measured before the anchor: the only ones a spec may use as covariates.
PRE_ANCHOR_COLUMNS = (
    "age_at_anchor",
    "sex",
    *CHRONIC_ATC,
    "n_chronic_conditions",
    "prior_year_standardised_cents",
    "days_gp_to_referral",
    "days_referral_to_specialist",
    "days_specialist_to_trigger",
)


class PanelInputError(UserFacingError):
    """Inputs a spec cannot be built from."""


@dataclass
class PanelBuild:
    """What the steps of one build share (small, picklable)."""

    spec: PanelSpec
    spec_path: str
    spec_sha256: str
    store: str
    episodes: str
    publication: Publication
    data_as_of: str
    last_year: int | None
    partitions: list[tuple[str, int, list[str]]]
    cohorts: pl.DataFrame
    several_insurers: bool
    maturity_table: str
    schemas: dict[str, dict[str, str]]
    provenance: dict
    started: float
    timing: dict[str, float] = field(default_factory=dict)
    vektis: str | None = None  # the Vektis folder (unit gemeente_year)

    @property
    def work(self) -> Path:
        return Path(self.publication.work)


# ------------------------------------------------------------------------------ step 1: plan
def _schema(files: list[Path]) -> dict[str, pl.DataType]:
    return dict(pl.read_parquet_schema(files[0]))


def _check_columns(spec: PanelSpec, schemas: dict[str, dict[str, pl.DataType]]) -> None:
    """Outcomes, covariates and filters are columns of every bundle's episodes, of a usable type."""

    def of_every(column: str) -> list[str]:
        return [b for b, schema in schemas.items() if column not in schema]

    numeric = (
        pl.Boolean,
        pl.Int8,
        pl.Int16,
        pl.Int32,
        pl.Int64,
        pl.UInt8,
        pl.UInt16,
        pl.UInt32,
        pl.UInt64,
        pl.Float32,
        pl.Float64,
    )
    for field_name, columns in (("outcomes", spec.outcomes), ("covariates", spec.covariates)):
        for column in columns:
            if field_name == "outcomes" and column in VOLUME_OUTCOMES:
                continue
            if spec.unit == "episode_quarter" and field_name == "outcomes":
                if column not in QUARTER_OUTCOMES:
                    raise SpecError(
                        f"{spec.name}: field `outcomes`: {column!r} is not summed per quarter; "
                        f"episode_quarter outcomes are {', '.join(QUARTER_OUTCOMES)}"
                    )
                continue
            missing = of_every(column)
            if missing:
                raise SpecError(
                    f"{spec.name}: field `{field_name}`: {column!r} is not a column of the {missing[0]} "
                    f"episodes (see docs/episodes.md)"
                )
            for bundle, schema in schemas.items():
                dtype = schema[column]
                if not (dtype in numeric or column == "sex"):
                    raise SpecError(
                        f"{spec.name}: field `{field_name}`: {column!r} is {dtype} in the {bundle} "
                        "episodes, not a number or true/false"
                    )
    if spec.unit != "gemeente_year":
        late = [c for c in spec.covariates if c not in PRE_ANCHOR_COLUMNS]
        if late:
            raise SpecError(
                f"{spec.name}: field `covariates`: {late[0]!r} is not measured before the anchor (a "
                "covariate must be fixed before treatment, or it absorbs the effect); covariates are "
                f"{', '.join(PRE_ANCHOR_COLUMNS)}"
            )
    for column in spec.filters:
        missing = of_every(column)
        if missing:
            raise SpecError(f"{spec.name}: field `filters`: {column!r} is not a column of the {missing[0]} episodes")


def _several_insurers(store: Path) -> bool:
    files = sorted((store / "insured").rglob("*.parquet"))
    if not files:
        return False
    return pl.scan_parquet(files).select(pl.col("insurer_uzovi").n_unique()).collect().item() > 1


def _maturity_table(spec: PanelSpec) -> str:
    if spec.maturity_table:
        return spec.maturity_table
    bundles = load_bundles()
    tables = [rule.table for b in spec.bundles for rule in bundles[b].trigger.any_of]
    return max(sorted(set(tables)), key=tables.count)


# -- unit gemeente_year: the Vektis folder (transforms/did_panel/gemeente.py)
def _check_vektis(spec: PanelSpec, spec_path: Path | str, vektis: Path | str | None) -> dict | None:
    """``--vektis``: required by unit gemeente_year (a complete, validated ``zorgpad ingest-vektis``
    folder with the final release of every year of the spec), refused for the other units."""
    if spec.unit != gemeente.UNIT:
        if vektis is not None:
            raise PanelInputError(
                f"--vektis is read only by unit gemeente_year; {spec_path} has unit {spec.unit}: leave --vektis out"
            )
        return None
    if vektis is None:
        raise PanelInputError(
            f"{spec_path}: unit gemeente_year is built from the Vektis open data: pass --vektis DIR "
            "(a folder written by `zorgpad ingest-vektis`)"
        )
    manifest = require_output(vektis, "vektis", option="--vektis")
    if manifest.get("validation_success") is not True:
        raise OutputError(
            f"--vektis {vektis}: its validation failed (see its validation_summary.json); run "
            "`zorgpad ingest-vektis` again"
        )
    have = gemeente.final_years(manifest)
    missing = [y for y in range(spec.years[0], spec.years[1] + 1) if y not in have]
    if missing:
        held = f"{have[0]}-{have[-1]}" if have else "no year"
        raise SpecError(
            f"{spec_path}: field `years`: --vektis {vektis} holds the final release of {held}, not of "
            f"{', '.join(map(str, missing))}; run `zorgpad ingest-vektis --years "
            f"{spec.years[0]}-{spec.years[1]}` (Vektis publishes 2011-2023), or narrow the years"
        )
    return manifest


def _episode_columns(spec: PanelSpec) -> PanelSpec:
    """The spec as far as its columns are episode columns (gemeente_year: only the filters)."""
    return spec.model_copy(update={"outcomes": (), "covariates": ()}) if spec.unit == gemeente.UNIT else spec


# -- end gemeente_year


def preflight(
    spec_path: Path | str, store: Path | str, episodes: Path | str, out: Path | str, vektis: Path | str | None = None
) -> dict:
    """What can be checked in seconds, before a Prefect API or Dask starts: the spec first (a wrong
    field fails before any data are read), then the inputs, the spec's columns against the episodes'
    schemas and the output folder. Raises a :class:`UserFacingError`."""
    spec = load_spec(spec_path)
    vektis_manifest = _check_vektis(spec, spec_path, vektis)
    store_manifest, episodes_manifest = require_episodes_of(store, episodes)
    as_of = store_manifest.delivery.data_as_of.isoformat()
    built = episodes_manifest.bundles
    missing = [b for b in spec.bundles if b not in built]
    if missing:
        raise SpecError(
            f"{spec_path}: field `bundles`: {missing[0]} is not in --episodes (built: {', '.join(built)}); "
            f"run `zorgpad episodes --bundles {','.join(spec.bundles)}`"
        )
    schemas = {}
    for bundle in spec.bundles:
        files = episode_files(Path(episodes), bundle)
        if not files:
            raise PanelInputError(f"--episodes {episodes}: no {bundle} episodes to build the panel from")
        schemas[bundle] = _schema(files)
    try:
        _check_columns(_episode_columns(spec), schemas)
    except SpecError as exc:
        raise SpecError(str(exc).replace(f"{spec.name}:", f"{spec_path}:", 1)) from None
    inputs = {"spec": Path(spec_path), "store": Path(store), "episodes": Path(episodes)}
    inputs.update({"vektis": Path(vektis)} if vektis is not None else {})
    target = check_target(out, KIND, inputs=inputs, option="--out")
    require_unlocked(target)
    last_year = store_manifest.delivery.last_year
    return {
        "spec": spec,
        "store_manifest": store_manifest,
        "episodes_manifest": episodes_manifest,
        "data_as_of": as_of,
        "schemas": schemas,
        "last_year": last_year if isinstance(last_year, int) else None,
        "vektis_manifest": vektis_manifest,
    }


def plan_build(
    spec_path: Path | str, store: Path | str, episodes: Path | str, out: Path | str, vektis: Path | str | None = None
) -> PanelBuild:
    """Step 1: :func:`preflight` again, then the lock, the work folder and the cohorts."""
    started = time.perf_counter()
    checked = preflight(spec_path, store, episodes, out, vektis)
    spec: PanelSpec = checked["spec"]
    store_path = Path(store).expanduser().resolve()
    episodes_path = Path(episodes).expanduser().resolve()
    spec_file = Path(spec_path).expanduser().resolve()
    vektis_path = Path(vektis).expanduser().resolve() if vektis is not None else None
    publication = Publication.begin(
        out,
        KIND,
        inputs={
            "spec": spec_file,
            "store": store_path,
            "episodes": episodes_path,
            **({"vektis": vektis_path} if vektis_path else {}),
        },
        option="--out",
    )
    try:
        partitions = []
        for bundle in spec.bundles:
            by_year: dict[int, list[str]] = {}
            for f in episode_files(episodes_path, bundle):
                by_year.setdefault(int(f.parent.name.split("=")[1]), []).append(str(f))
            partitions += [(bundle, year, files) for year, files in sorted(by_year.items())]
        if vektis_path is not None:  # gemeente_year: one more task reads the Vektis folder
            partitions.append((gemeente.VEKTIS_PART, 0, [str(vektis_path)]))
        cohorts = provider_cohorts(read_contracts(store_path), spec.bundles, spec.period, spec.years)
        store_manifest: StoreManifest = checked["store_manifest"]
        episodes_manifest: EpisodesManifest = checked["episodes_manifest"]
        provenance = {
            "store": {
                "path": str(store_path),
                "run_id": store_manifest.run_id,
                "delivery_id": store_manifest.delivery_id,
                "manifest_sha256": file_sha256(store_path / "manifest.json"),
                "code_version": store_manifest.code_version,
                "inputs": {t: [f.sha256 for f in files] for t, files in store_manifest.inputs.items()},
            },
            "episodes": {
                "path": str(episodes_path),
                "run_id": episodes_manifest.run_id,
                "manifest_sha256": file_sha256(episodes_path / "manifest.json"),
                "code_version": episodes_manifest.code_version,
                "runout_months": episodes_manifest.runout_months,
            },
        }
        if vektis_path is not None:
            vektis_manifest = checked["vektis_manifest"]
            provenance["vektis"] = {
                "path": str(vektis_path),
                "run_id": vektis_manifest.get("zorgpad", {}).get("run_id"),
                "manifest_sha256": file_sha256(vektis_path / "manifest.json"),
                "releases": vektis_manifest.get("releases"),
            }
        # a gemeente_year row holds every insurer's insured: the panel has no insurer columns or split
        several_insurers = _several_insurers(store_path) if spec.unit != gemeente.UNIT else False
        run = PanelBuild(
            spec,
            str(spec_file),
            file_sha256(spec_file),
            str(store_path),
            str(episodes_path),
            publication,
            checked["data_as_of"],
            checked["last_year"],
            partitions,
            cohorts,
            several_insurers,
            _maturity_table(spec),
            {b: {c: str(t) for c, t in s.items()} for b, s in checked["schemas"].items()},
            provenance,
            started,
            vektis=str(vektis_path) if vektis_path else None,
        )
    except BaseException:
        publication.abandon()
        raise
    (run.work / PARTS_DIR).mkdir()
    run.timing["plan"] = time.perf_counter() - started
    return run


# ------------------------------------------------------------------------------ step 2: maturity
def period_maturity(
    completion_period: pl.DataFrame, completion_month: pl.DataFrame, periods: pl.DataFrame, kind: str
) -> pl.DataFrame:
    """``runout_months``, ``completion_lines``, ``completion_cents`` and ``mature`` per panel period
    (null where the claim table has no service month in the period)."""
    if kind == "month":
        months = completion_month.with_columns(
            (pl.col("service_month") // 12).cast(pl.String).alias("_y"),
            (pl.col("service_month") % 12 + 1).cast(pl.String).str.zfill(2).alias("_m"),
        )
        source = months.select(
            (pl.col("_y") + "-" + pl.col("_m")).alias("maturity_period"),
            "runout_months",
            "completion_lines",
            "completion_cents",
            "mature",
        )
    else:
        source = completion_period.filter(pl.col("period_kind") == kind).select(
            pl.col("period").alias("maturity_period"), "runout_months", "completion_lines", "completion_cents", "mature"
        )
    joined = periods.select("period", "maturity_period").join(source, on="maturity_period", how="left")
    return joined.select(
        "period", pl.col("runout_months").cast(pl.Int32), "completion_lines", "completion_cents", "mature"
    ).sort("period")


def maturity_step(run: PanelBuild) -> str:
    """Step 2: the maturity of every period of the panel, from the maturity claim table of the store."""
    from transforms.maturity.run import maturity_of

    t0 = time.perf_counter()
    periods = periods_frame(run.spec.period, run.spec.years)
    lines = read_claim_lines(run.store, run.maturity_table)
    if lines is None:
        frame = periods.select("period").with_columns(
            pl.lit(None, pl.Int32).alias("runout_months"),
            pl.lit(None, pl.Float64).alias("completion_lines"),
            pl.lit(None, pl.Float64).alias("completion_cents"),
            pl.lit(None, pl.Boolean).alias("mature"),
        )
    else:
        built = maturity_of(
            lines, date.fromisoformat(run.data_as_of), last_year=run.last_year, mature_at=run.spec.mature_at
        )
        frame = period_maturity(built["completion_period"], built["completion"], periods, run.spec.period)
    path = run.work / PARTS_DIR / MATURITY_FILE
    frame.write_parquet(path)
    run.timing["maturity"] = time.perf_counter() - t0
    return str(path)


# ------------------------------------------------------------------------------ step 3: per partition
def _insured(store: str, patients: pl.Series) -> pl.DataFrame:
    files = sorted((Path(store) / "insured").rglob("*.parquet"))
    return (
        pl.scan_parquet(files)
        .select("patient_id", "insurer_uzovi", "enrolled_from", "enrolled_to")
        .filter(pl.col("patient_id").is_in(patients.unique().to_list()))
        .collect()
    )


# -- unit gemeente_year
def _gemeente_partition(run: PanelBuild, bundle_id: str, year: int, files: list[str]) -> dict:
    """Step 3 for gemeente_year (a Dask task): the gemeente-year rows from the Vektis folder
    (partition ``vektis``), or one bundle and anchor year's episodes counted per gemeente of the
    patient (only the columns the count needs are read); written in one schema."""
    spec = run.spec
    if bundle_id == gemeente.VEKTIS_PART:
        cells = gemeente.vektis_cells(gemeente.read_vektis(files[0]))
        providers = pl.read_parquet(
            sorted((Path(run.store) / "providers").rglob("*.parquet")), columns=["provider_agb", "gemeente_code"]
        )
        kept, attrition = gemeente.vektis_part(
            cells, gemeente.gemeente_cohorts(run.cohorts, providers, spec.years), spec
        )
        read = cells.height
    else:
        episodes = pl.read_parquet(files, columns=list(dict.fromkeys([*gemeente.EPISODE_COLUMNS, *spec.filters])))
        kept, attrition = gemeente.resident_episodes(episodes.sort("episode_id"), spec, bundle_id)
        read = episodes.height
    path = run.work / PARTS_DIR / f"{bundle_id}-{year}.parquet"
    kept.write_parquet(path)
    return {
        "bundle_id": bundle_id,
        "year": year,
        "path": str(path),
        "episodes": read,
        "attrition": attrition.to_dicts(),
        "unit": gemeente.UNIT,
    }


# -- end gemeente_year


def partition_step(run: PanelBuild, bundle_id: str, year: int, files: list[str]) -> dict:
    """Step 3, one bundle and anchor year (a Dask task): keep the episodes of the spec, write them
    (and for episode_quarter their quarters) to the work folder; return the attrition rows."""
    spec = run.spec
    if spec.unit == gemeente.UNIT:
        return _gemeente_partition(run, bundle_id, year, files)
    wanted = [
        c
        for c in dict.fromkeys([*BASE_COLUMNS, *spec.outcomes, *spec.covariates, *spec.filters])
        if c in run.schemas[bundle_id] and c not in VOLUME_OUTCOMES
    ]
    episodes = pl.read_parquet(files, columns=wanted).sort("episode_id")
    insured = _insured(run.store, episodes["patient_id"]) if run.several_insurers else pl.DataFrame()
    kept, attrition = select_episodes(
        episodes, _for_quarters(spec), run.cohorts, insured, bundle_id, several_insurers=run.several_insurers
    )
    if spec.unit == "episode_quarter":
        line_files = [
            str(f)
            for f in episode_files(Path(run.episodes), bundle_id, "episode_lines")
            if f.parent.name == f"anchor_year={year}"
        ]
        lines = (
            pl.read_parquet(
                line_files,
                columns=["episode_id", "component", "start", "allocated_cents", "allocated_standardised_cents"],
            )
            if line_files
            else pl.DataFrame(
                schema={
                    "episode_id": pl.String,
                    "component": pl.String,
                    "start": pl.Date,
                    "allocated_cents": pl.Int64,
                    "allocated_standardised_cents": pl.Int64,
                }
            )
        )
        kept = episode_quarters(
            kept.with_columns([pl.lit(0.0).alias(o) for o in spec.outcomes]),
            lines,
            spec,
            periods_frame(spec.period, spec.years),
        )
    path = run.work / PARTS_DIR / f"{bundle_id}-{year}.parquet"
    kept.write_parquet(path)
    return {
        "bundle_id": bundle_id,
        "year": year,
        "path": str(path),
        "episodes": episodes.height,
        "attrition": attrition.to_dicts(),
    }


def _for_quarters(spec: PanelSpec) -> PanelSpec:
    """For episode_quarter the outcomes are summed from the lines, not read from the episodes."""
    return spec.model_copy(update={"outcomes": ()}) if spec.unit == "episode_quarter" else spec


def build_partitions(run: PanelBuild, mapper: Mapper = local_map) -> list[dict]:
    t0 = time.perf_counter()
    reports = mapper(partition_step, [(run, b, y, files) for b, y, files in run.partitions])
    run.timing["partitions"] = time.perf_counter() - t0
    return reports


# ------------------------------------------------------------------------------ step 4: assemble
def attrition_table(reports: list[dict], kept: pl.DataFrame) -> pl.DataFrame:
    """Per bundle: the episodes read, what each step left out, and the episodes kept; the counts add up."""
    if any(r.get("unit") == gemeente.UNIT for r in reports):  # gemeente_year: episodes and Vektis cells
        return gemeente.attrition(reports, kept)
    rows = pl.DataFrame([r for rep in reports for r in rep["attrition"]], schema=ATTRITION_SCHEMA)
    read = (
        pl.DataFrame(
            [(rep["bundle_id"], rep["episodes"]) for rep in reports],
            schema={"bundle_id": pl.String, "read": pl.Int64},
            orient="row",
        )
        .group_by("bundle_id")
        .agg(pl.col("read").sum())
    )
    steps = rows.group_by("bundle_id", "step", "reason").agg(pl.col("episodes").sum()).sort("bundle_id", "step")
    kept_n = kept.group_by("bundle_id").agg(pl.col("episode_id").n_unique().cast(pl.Int64).alias("kept"))
    out = []
    for bundle, n_read in read.sort("bundle_id").iter_rows():
        remaining = n_read
        out.append((bundle, 0, "episodes read", n_read, remaining))
        own = steps.filter(pl.col("bundle_id") == bundle)
        for _, step, reason, n in own.iter_rows():
            remaining -= n
            out.append((bundle, step, reason, n, remaining))
        n_kept = kept_n.filter(pl.col("bundle_id") == bundle)["kept"].sum()
        if n_kept != remaining:
            raise AssertionError(f"{bundle}: {remaining} episodes should remain, the panel has {n_kept}")
        out.append((bundle, len(own) + 1, "kept", n_kept, n_kept))
    return pl.DataFrame(
        out,
        schema={
            "bundle_id": pl.String,
            "step": pl.Int32,
            "reason": pl.String,
            "episodes": pl.Int64,
            "remaining": pl.Int64,
        },
        orient="row",
    )


def unit_rows(kept: pl.DataFrame, spec: PanelSpec, periods: pl.DataFrame) -> pl.DataFrame:
    """The panel rows of the spec's unit (before the shared columns)."""
    if spec.unit == "episode":
        return kept.with_columns(
            pl.lit(1, pl.Int64).alias("n_episodes"),
            pl.lit(None, pl.Int64).alias("n_lines"),
            pl.lit(None, pl.Boolean).alias("balanced"),
        )
    if spec.unit == "episode_quarter":
        return kept.with_columns(pl.lit(1, pl.Int64).alias("n_episodes"), pl.lit(None, pl.Boolean).alias("balanced"))
    if spec.unit == "provider_period":
        return provider_periods(kept, spec, periods).with_columns(
            pl.lit(None, pl.Int64).alias("n_lines"), pl.lit(None, pl.String).alias("gemeente_code")
        )
    if spec.unit == gemeente.UNIT:
        return gemeente.unit_rows(kept)
    raise PanelInputError(f"unit {spec.unit} is not built from episodes")


def _unit_id(spec: PanelSpec) -> pl.Expr:
    if spec.unit == "provider_period":
        return pl.col("bundle_id") + ":" + pl.col("provider_agb")
    if spec.unit == gemeente.UNIT:
        return pl.col("gemeente_code")
    return pl.col("episode_id")


def _write_single(frame: pl.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.write_parquet(path, compression="zstd", statistics=False, row_group_size=max(frame.height, 1))


def assemble_step(run: PanelBuild, reports: list[dict], maturity_path: str) -> dict:
    """Step 4: the panel, the adapters, the attrition report and the dictionary into the work folder."""
    t0 = time.perf_counter()
    spec = run.spec
    periods = periods_frame(spec.period, spec.years)
    parts = [pl.read_parquet(r["path"]) for r in sorted(reports, key=lambda r: (r["bundle_id"], r["year"]))]
    parts = [p for p in parts if p.height] or parts[:1]
    kept = pl.concat(parts, how="vertical_relaxed") if parts else pl.DataFrame()
    attrition = attrition_table(reports, kept)
    rows = unit_rows(kept, spec, periods)
    rows = finish_rows(rows, spec, periods, pl.read_parquet(maturity_path), _unit_id(spec))
    table = panel_columns.panel_table(spec, run.several_insurers, run.schemas)
    frame = rows.select(table.column_names)
    table.write(frame, run.work)
    ordered = table.conform(frame)
    _write_single(ordered, run.work / ADAPTERS["did"])
    differences = ordered.with_columns(
        pl.when(pl.col("cohort") == 0).then(float("nan")).otherwise(pl.col("cohort").cast(pl.Float64)).alias("cohort"),
        pl.col("rel_time").cast(pl.Float64).fill_null(float("nan")).alias("rel_time"),
    )
    _write_single(differences, run.work / ADAPTERS["differences"])
    panel_columns.ATTRITION.write(attrition, run.work)
    (run.work / "dictionary.md").write_text(
        panel_columns.dictionary(spec, table, run.several_insurers), encoding="utf-8"
    )
    (run.work / "spec.yaml").write_text(
        yaml.safe_dump(normalised(spec), sort_keys=False, allow_unicode=True), encoding="utf-8"
    )
    run.timing["assemble"] = time.perf_counter() - t0
    return summarise(ordered, spec, attrition)


def summarise(panel: pl.DataFrame, spec: PanelSpec, attrition: pl.DataFrame) -> dict:
    """Counts the manifest reports: rows, units, units per cohort, periods that are not mature."""
    units = panel.group_by("unit_id").agg(pl.col("cohort").first())
    cohorts = units.group_by("cohort").agg(pl.len()).sort("cohort")
    immature = panel.filter(pl.col("mature").not_() | pl.col("mature").is_null())["period_label"].unique().sort()
    return {
        "rows": panel.height,
        "units": units.height,
        "units_per_cohort": {str(c): int(n) for c, n in cohorts.iter_rows()},
        "treated_rows": int(panel["treated"].sum()),
        "providers": int(panel["provider_agb"].n_unique()) if spec.unit != "gemeente_year" else None,
        "immature_periods": immature.to_list(),
        "attrition": attrition.to_dicts(),
    }


# ------------------------------------------------------------------------------ step 5: estimates
def estimate_step(run: PanelBuild) -> dict:
    """Step 5 (``--estimate``): per outcome a DiD report in ``estimates/<outcome>/`` on the did
    adapter, and with insurer-specific contracts, one for the contracting insurers' patients and one
    for the other insurers' patients (``estimates/<outcome>/other_insurers/``: the free-riding)."""
    from transforms.did_panel.estimates import estimate_outcomes

    t0 = time.perf_counter()
    result = estimate_outcomes(
        run.spec,
        run.work / ADAPTERS["did"],
        run.work / "estimates",
        insurer_split=(run.several_insurers and spec_has_insurers(run.spec) and _insurer_specific(run.cohorts)),
    )
    run.timing["estimate"] = time.perf_counter() - t0
    return result


def spec_has_insurers(spec: PanelSpec) -> bool:
    """Only episode units carry the patient's insurer (aggregated units pool every insurer)."""
    return spec.unit in ("episode", "episode_quarter")


def _insurer_specific(cohorts: pl.DataFrame) -> bool:
    treated = cohorts.filter(pl.col("cohort_status") == IN_PANEL)
    return bool(treated.height) and bool((treated["contract_insurers"].list.len() > 0).any())


# ------------------------------------------------------------------------------ step 6: finish
DATA_FILES = ("panel", "adapters", "attrition", "dictionary.md", "spec.yaml")


def content_hash(folder: Path) -> tuple[str, dict[str, str]]:
    """SHA-256 over the panel's data files (path and bytes, in path order) and each file's hash: the
    same spec and inputs give the same hash."""
    files: dict[str, str] = {}
    for name in DATA_FILES:
        path = folder / name
        candidates = sorted(path.rglob("*")) if path.is_dir() else [path]
        for f in candidates:
            if f.is_file():
                files[f.relative_to(folder).as_posix()] = file_sha256(f)
    digest = hashlib.sha256("\n".join(f"{k} {v}" for k, v in files.items()).encode()).hexdigest()
    return digest, files


def finish(run: PanelBuild, summary: dict, estimates: dict | None = None) -> dict:
    """Step 6: the manifest, then the swap into place; returns the manifest (with ``out``)."""
    shutil.rmtree(run.work / PARTS_DIR)
    digest, files = content_hash(run.work)
    spec = run.spec
    cohorts = run.cohorts.with_columns(pl.col("contract_start").cast(pl.String))
    manifest = DidPanelManifest(
        name=spec.name,
        unit=spec.unit,
        period=spec.period,
        years=list(spec.years),
        data_as_of=run.data_as_of,
        spec=normalised(spec),
        spec_hash=spec_hash(spec),
        spec_file={"path": run.spec_path, "sha256": run.spec_sha256},
        **run.provenance,
        contract_version=CONTRACT_VERSION,
        code_version=code_version(),
        maturity={
            "claim_table": run.maturity_table,
            "mature_at": spec.mature_at,
            "immature_periods": summary["immature_periods"],
        },
        several_insurers=run.several_insurers,
        cohorts={
            "providers": {
                s: int(n) for s, n in cohorts.group_by("cohort_status").agg(pl.len()).sort("cohort_status").iter_rows()
            },
            "treated_before_first_period_coded": "left out",
            "treated_after_last_period_coded": "never treated (cohort 0)",
        },
        rows={
            "panel": summary["rows"],
            "units": summary["units"],
            "treated_rows": summary["treated_rows"],
            "providers": summary["providers"],
        },
        units_per_cohort=summary["units_per_cohort"],
        attrition=summary["attrition"],
        tables={
            "panel": {
                "grain": panel_columns.BASE.grain,
                "key": list(panel_columns.BASE.key),
                "partition_by": list(panel_columns.BASE.partition_by),
            },
            "attrition": {"grain": panel_columns.ATTRITION.grain, "key": list(panel_columns.ATTRITION.key)},
        },
        adapters={
            "did": {"file": ADAPTERS["did"], "never_treated": 0, "for": "R did, csdid, pyfixest"},
            "differences": {"file": ADAPTERS["differences"], "never_treated": "NaN", "for": "differences"},
        },
        content_sha256=digest,
        files=files,
        estimates=estimates,
        timing_seconds={k: round(v, 3) for k, v in run.timing.items()},
    )
    manifest.timing_seconds["total"] = round(time.perf_counter() - run.started, 3)
    run.publication.commit(manifest.dump())
    return {**manifest.dump(), "out": run.publication.target}


def abandon(run: PanelBuild) -> None:
    run.publication.abandon()


def build_panel(
    spec_path: Path | str,
    store: Path | str,
    episodes: Path | str,
    out: Path | str,
    *,
    estimate: bool = False,
    mapper: Mapper = local_map,
    vektis: Path | str | None = None,
) -> dict:
    """All steps in this process (or with ``mapper`` on a cluster); returns the manifest."""
    run = plan_build(spec_path, store, episodes, out, vektis)
    try:
        maturity = maturity_step(run)
        reports = build_partitions(run, mapper)
        summary = assemble_step(run, reports, maturity)
        estimates = estimate_step(run) if estimate else None
        return finish(run, summary, estimates)
    except BaseException:
        abandon(run)
        raise


__all__ = [
    "KIND",
    "PanelBuild",
    "PanelInputError",
    "abandon",
    "assemble_step",
    "build_panel",
    "build_partitions",
    "content_hash",
    "estimate_step",
    "finish",
    "maturity_step",
    "partition_step",
    "period_maturity",
    "plan_build",
    "preflight",
]
