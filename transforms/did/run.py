"""One ``zorgpad did estimate`` run: check, read, estimate, write the report folder, publish.

The order is the project's (``transforms/output_folder.py``): everything that can be refused in a
second is refused before the panel is read -- the options, the panel's path, the report folder
(new, empty, or an earlier DiD report; never a folder of someone's files, never the panel or a
folder holding it) and its lock. The estimate is made in memory, then written into a work folder
beside the target, which is swapped into place in one rename with ``manifest.json`` written last.
A failing run leaves the earlier report as it was.

Files of a report (``docs/did.md`` describes their columns):
``att_gt.parquet``, ``aggregations.parquet``, ``pretest.parquet``, ``event_study.png``,
``report.html`` and ``manifest.json``. The parquet files, the plot and the page are the same bytes
for the same panel and options (the bootstrap included, with its seed); only the manifest records
when the run was made.
"""

from __future__ import annotations

import hashlib
import platform
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import polars as pl

from transforms.did.estimate import csdid_version, estimate
from transforms.did.inputs import DidOptions, check_panel_path, panel_fingerprint, prepare_panel, read_panel
from transforms.did.report import event_study_png, headline, options_used, render_html
from transforms.output_folder import Publication, check_target, require_unlocked
from transforms.runtime import code_version

KIND = "did_report"
PRETEST_SCHEMA = {
    "W": pl.Float64,
    "df": pl.Int64,
    "p_value": pl.Float64,
    "p_value_csdid": pl.Float64,
    "pre_cells": pl.Int64,
    "note": pl.String,
}
FILES = ("att_gt.parquet", "aggregations.parquet", "pretest.parquet", "event_study.png", "report.html")


def preflight(panel: Path | str, out: Path | str) -> tuple[Path, Path]:
    """What is checked in a second, before any data are read: the panel exists and is readable as
    a panel, the report folder may be written and nobody is writing it, csdid is installed."""
    panel_path = check_panel_path(panel)
    target = check_target(out, KIND, inputs={"panel": panel_path}, option="--out")
    require_unlocked(target)
    csdid_version()
    return panel_path, target


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _write_parquet(frame: pl.DataFrame, path: Path) -> None:
    # no statistics and one row group: the same table gives the same bytes on every run
    frame.write_parquet(path, compression="zstd", statistics=False, row_group_size=max(frame.height, 1))


def write_report(
    frame: pl.DataFrame,
    folder: Path,
    options: DidOptions,
    *,
    source: str,
    fingerprint: dict,
    command: str = "zorgpad did estimate",
) -> dict:
    """Estimate on ``frame`` and write the report files into the existing ``folder``; returns the
    report's manifest (``zorgpad panel build --estimate`` writes one per outcome this way)."""
    started = time.monotonic()
    prepared = prepare_panel(frame, options)
    result = estimate(prepared, options)
    versions = {
        "csdid": csdid_version(),
        "drdid": _version("drdid"),
        "zorgpad": code_version(),
        "python": platform.python_version(),
        "input_sha256": fingerprint["sha256"],
    }
    text = headline(result, options)
    png = event_study_png(result, options)
    page = render_html(result, prepared, options, panel_path=source, headline_text=text, png=png, versions=versions)
    pretest = pl.DataFrame([result.pretest], schema=PRETEST_SCHEMA)
    _write_parquet(result.att_gt, folder / "att_gt.parquet")
    _write_parquet(result.aggregations, folder / "aggregations.parquet")
    _write_parquet(pretest, folder / "pretest.parquet")
    (folder / "event_study.png").write_bytes(png)
    (folder / "report.html").write_text(page, encoding="utf-8")
    return {
        "command": command,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "input": fingerprint,
        "options": options.model_dump(mode="json"),
        "options_in_words": {k: str(v) for k, v in options_used(options, source)},
        "estimator": {
            "package": "csdid",
            "version": versions["csdid"],
            "drdid": versions["drdid"],
            "python": versions["python"],
            "standard_errors": "multiplier bootstrap" if options.bootstrap else "analytic",
            "confidence_intervals": "pointwise 95%",
        },
        "code_version": versions["zorgpad"],
        "rows": {
            "panel": prepared.rows_read,
            "used": prepared.rows_used,
            "units": prepared.units,
            "units_estimated": result.units_estimated,
            "never_treated_units": prepared.never_treated_units,
            "never_treated_recoded": prepared.never_treated_recoded,
            "att_gt": result.att_gt.height,
            "aggregations": result.aggregations.height,
        },
        "periods": prepared.periods,
        "groups": prepared.groups,
        "headline": text,
        "overall": {
            kind: {k: v for k, v in result.overall(kind).items() if k in ("att", "se", "ci_low", "ci_high")}
            for kind in ("simple", "dynamic", "group", "calendar")
        },
        "pretest": result.pretest,
        "notes": prepared.notes + result.notes,
        "files": {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in FILES},
        "seconds": round(time.monotonic() - started, 2),
    }


def run_estimate(panel: Path | str, out: Path | str, options: DidOptions) -> dict:
    """Estimate and publish the report folder ``out``; returns its manifest (with ``out``)."""
    panel_path, target = preflight(panel, out)
    fingerprint = panel_fingerprint(panel_path)
    frame = read_panel(panel_path)
    publication = Publication.begin(target, KIND, inputs={"panel": panel_path}, option="--out")
    try:
        manifest = write_report(frame, publication.work_path, options, source=str(panel_path), fingerprint=fingerprint)
        publication.commit(manifest)
    except BaseException:
        publication.abandon()
        raise
    return {**manifest, "out": str(target)}
