"""Build the regional panel of a Vektis folder, step by step (the Prefect flow
``flows/regional_flow.py`` runs the same steps as tasks; :func:`build_regional` runs them in one
process):

1. :func:`plan_regional` -- check the Vektis folder (a complete, validated ``zorgpad ingest-vektis``
   output) and the output folder, take the output's lock, hash the inputs
   (``transforms.output_folder``);
2. :func:`build_tables` -- read the harmonised table, build ``regional`` and ``regional_rates``
   (``transforms.regional.panel``) and write them as declared in ``transforms/regional/tables/``;
3. :func:`draw_plots` -- the funnel per year and the small multiples of the largest gemeenten, from
   the written table;
4. :func:`finish` -- the manifest, the swap into place.

Steps hand each other paths and small dictionaries.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from transforms.hashing import file_sha256
from transforms.output_folder import OutputError, Publication, check_target, require_output, require_unlocked
from transforms.regional.panel import TOTAL, UNKNOWN, regional_panel
from transforms.regional.plots import TREND_LARGEST, funnel_plot, trend_plot
from transforms.regional.tables import REGIONAL_TABLES, table
from transforms.runtime import code_version
from transforms.vektis.harmonise import FINAL
from transforms.vektis.storage import read_long

KIND = "regional"
LONG_DIR = "vektis_long"
PLOTS_DIR = "plots"


@dataclass
class RegionalRun:
    """What the steps of one build share (small, picklable)."""

    vektis: str
    publication: Publication
    inputs: dict
    started: float
    timing: dict[str, float] = field(default_factory=dict)

    @property
    def work(self) -> Path:
        return Path(self.publication.work)


def _long_files(vektis: Path) -> list[Path]:
    return sorted((vektis / LONG_DIR).glob("year=*/*.parquet"))


def preflight(vektis: Path | str, out: Path | str) -> dict:
    """What can be checked in seconds, before a Prefect API starts: ``vektis`` is a complete
    ``zorgpad ingest-vektis`` output whose validation passed and holds the harmonised table, ``out``
    may be written (not inside the Vektis folder, not someone else's folder) and nobody writes it.
    Returns the Vektis manifest and files (raises a ``UserFacingError`` otherwise)."""
    manifest = require_output(vektis, "vektis", option="--vektis")
    folder = Path(vektis).expanduser().resolve()
    if manifest.get("validation_success") is not True:
        raise OutputError(
            f"--vektis {folder}: its validation did not pass (see {folder / 'validation_summary.json'}); "
            "the regional panel is built only from a validated Vektis table: run `zorgpad ingest-vektis` "
            "again"
        )
    files = _long_files(folder)
    if not files:
        raise OutputError(
            f"--vektis {folder} has no harmonised table ({LONG_DIR}/year=*/*.parquet); run "
            "`zorgpad ingest-vektis` again"
        )
    target = check_target(out, KIND, inputs={"Vektis folder": folder}, option="--out")
    require_unlocked(target)
    return {"manifest": manifest, "files": files, "folder": folder}


def plan_regional(vektis: Path | str, out: Path | str) -> RegionalRun:
    """Step 1: :func:`preflight` again, the input hashes, the lock and the work folder."""
    started = time.perf_counter()
    checked = preflight(vektis, out)
    folder = checked["folder"]
    manifest = checked["manifest"]
    inputs = {
        "vektis": {
            "path": str(folder),
            "run_id": manifest.get("zorgpad", {}).get("run_id"),
            "manifest_sha256": file_sha256(folder / "manifest.json"),
            "years": manifest.get("years"),
            "releases": manifest.get("releases"),
            "rows": manifest.get("rows"),
            "files": {f.relative_to(folder).as_posix(): file_sha256(f) for f in checked["files"]},
        }
    }
    publication = Publication.begin(out, KIND, inputs={"Vektis folder": folder}, option="--out")
    run = RegionalRun(str(folder), publication, inputs, started)
    run.timing["plan"] = time.perf_counter() - started
    return run


def _summary(regional: pl.DataFrame) -> dict:
    """Per year, for the ``total`` category: the O/E range and the outlying gemeenten."""
    rows = regional.filter((pl.col("category") == TOTAL) & (pl.col("gemeente") != UNKNOWN))
    out = {}
    for (year,), group in sorted(rows.partition_by("year", as_dict=True).items()):
        shown = group.filter(pl.col("oe").is_not_null())

        def named(flag: str, shown: pl.DataFrame = shown) -> list[str]:
            hit = shown.filter(pl.col("outlier") == flag).sort("oe", descending=flag == "high")
            return [f"{g} {n}" for g, n in hit.select("gemeente", "gemeente_vektis").iter_rows()]

        out[str(year)] = {
            "gemeenten": shown.height,
            "oe_min": shown["oe"].min(),
            "oe_max": shown["oe"].max(),
            "tau2": shown["tau2"].drop_nulls().first() if shown.height else None,
            "outliers_high": named("high"),
            "outliers_low": named("low"),
        }
    return out


def build_tables(run: RegionalRun) -> dict:
    """Step 2: read the harmonised table, build and write both tables; returns a small report."""
    t = time.perf_counter()
    panel = regional_panel(read_long(Path(run.vektis) / LONG_DIR))
    rows = {}
    for name, frame in (("regional", panel.regional), ("regional_rates", panel.rates)):
        spec = table(name)
        spec.write(frame.select(spec.column_names), run.work)
        rows[name] = frame.height
    years = sorted(panel.regional["year"].unique().to_list())
    present = panel.regional.group_by("year").agg(pl.col("category").unique().sort()).sort("year")
    report = {
        "rows": rows,
        "years": years,
        "excluded_rows": panel.excluded,
        "categories": {str(y): c for y, c in present.iter_rows()},
        "cv_person": {
            r["category"]: {k: v for k, v in r.items() if k != "category"}
            for r in panel.dispersion.iter_rows(named=True)
        },
        "summary": _summary(panel.regional),
    }
    run.timing["tables"] = time.perf_counter() - t
    return report


def draw_plots(run: RegionalRun) -> list[str]:
    """Step 3: the funnel of every year and the small multiples (``total`` category), from the
    written table; returns the files, relative to the output folder."""
    t = time.perf_counter()
    regional = table("regional").read(run.work).filter(pl.col("category") == TOTAL)
    written = []
    for (year,), rows in sorted(regional.partition_by("year", as_dict=True).items()):
        path = run.work / PLOTS_DIR / f"funnel_total_{year}.png"
        title = f"Zvw cost per gemeente {year}, all categories: observed / expected (Vektis, age and sex standardised)"
        if funnel_plot(rows, title, path):
            written.append(path)
    years = regional["year"].unique().sort().to_list()
    if years:
        path = run.work / PLOTS_DIR / f"trend_total_largest{TREND_LARGEST}.png"
        span = f"{years[0]}-{years[-1]}" if len(years) > 1 else f"{years[0]}"
        title = (
            f"O/E of the Zvw cost per insured-year, all categories, {span}: the {TREND_LARGEST} largest gemeenten "
            f"(by insured-years in {years[-1]})"
        )
        if trend_plot(regional, title, path):
            written.append(path)
    run.timing["plots"] = time.perf_counter() - t
    return [p.relative_to(run.work).as_posix() for p in written]


def finish(run: RegionalRun, report: dict, plots: list[str]) -> dict:
    """Step 4: the manifest, the swap into place; returns the manifest."""
    manifest = {
        "out": run.publication.target,
        "inputs": run.inputs,
        "release": FINAL,
        "excluded_rows": report["excluded_rows"],
        "years": report["years"],
        "categories": report["categories"],
        "tables": {
            name: {"grain": spec.grain, "key": list(spec.key), "partition_by": list(spec.partition_by)}
            for name, spec in REGIONAL_TABLES.items()
        },
        "rows": report["rows"],
        "plots": plots,
        "cv_person": report["cv_person"],
        "summary": report["summary"],
        "code_version": code_version(),
        "timing_seconds": {k: round(v, 3) for k, v in run.timing.items()},
    }
    manifest["timing_seconds"]["total"] = round(time.perf_counter() - run.started, 3)
    run.publication.commit(manifest)
    return manifest


def abandon(run: RegionalRun) -> None:
    run.publication.abandon()


def build_regional(vektis: Path | str, out: Path | str) -> dict:
    """All steps in order, without Prefect (tests, notebooks); returns the manifest."""
    run = plan_regional(vektis, out)
    try:
        report = build_tables(run)
        plots = draw_plots(run)
        return finish(run, report, plots)
    except BaseException:
        abandon(run)
        raise
