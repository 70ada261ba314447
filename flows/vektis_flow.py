"""Prefect flow behind ``zorgpad ingest-vektis``: harmonise, validate and report the Vektis open data.

Tasks hand each other *paths*, not data frames: the harmonised table is written once as a
Hive-partitioned parquet dataset and every later task reads what an analyst will read, so the
validation checks the delivered files, not an in-memory copy. The work is small (14 files, about
4.5 million long rows), so no Dask: plain tasks in sequence.

A failed validation still writes the Data Docs, the JSON summary and the reports, and then makes
the flow fail with :class:`VektisValidationFailed`, so a broken harmonisation is loud but
inspectable.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from expectations.vektis_suite import validate_vektis, write_summary
from transforms.errors import UserFacingError
from transforms.output_folder import Publication
from transforms.vektis.harmonise import harmonise_vektis, national_totals, unmapped_gemeenten
from transforms.vektis.storage import read_long, write_long_partitioned

LONG_DIR = "vektis_long"
DATA_DOCS_DIR = "data_docs"
SUMMARY_FILE = "validation_summary.json"
UNMAPPED_FILE = "unmapped_gemeenten.csv"
TOTALS_FILE = "national_totals.parquet"


class VektisValidationFailed(UserFacingError):
    """The harmonised Vektis table did not pass its Great Expectations suites."""


@task(name="harmonise-vektis", cache_policy=NO_CACHE)
def harmonise_task(out: str, years: list[int] | None) -> str:
    """Harmonise the bundled files and write ``OUT/vektis_long/year=YYYY/``; returns that path."""
    long = harmonise_vektis(years)
    root = write_long_partitioned(long, Path(out) / LONG_DIR)
    get_run_logger().info(
        "harmonised %d rows (%d files) into %s",
        long.height,
        long.select("year", "release").n_unique(),
        root,
    )
    return str(root)


@task(name="validate-vektis", cache_policy=NO_CACHE)
def validate_task(long_path: str, out: str, years: list[int] | None) -> str:
    """Run the GX suites on the written dataset; Data Docs and JSON summary go under ``out``."""
    validation = validate_vektis(read_long(long_path), years=years, out_dir=out)
    summary_path = write_summary(validation, Path(out) / SUMMARY_FILE)
    logger = get_run_logger()
    if validation.success:
        logger.info("validation passed; Data Docs at %s", validation.data_docs_index)
    else:
        logger.error("validation FAILED; see %s and %s", summary_path, validation.data_docs_index)
    return str(summary_path)


@task(name="report-vektis", cache_policy=NO_CACHE)
def report_task(long_path: str, out: str) -> dict[str, str]:
    """Write the national totals (parquet) and the unmapped-gemeente report (CSV)."""
    long = read_long(long_path)
    totals_path = Path(out) / TOTALS_FILE
    national_totals(long).write_parquet(totals_path, compression="zstd")
    unmapped = unmapped_gemeenten(long)
    unmapped_path = Path(out) / UNMAPPED_FILE
    unmapped.write_csv(unmapped_path)
    get_run_logger().info("%d gemeente name(s) without a CBS code, listed in %s", unmapped.height, unmapped_path)
    return {"national_totals": str(totals_path), "unmapped_gemeenten": str(unmapped_path)}


@flow(name="ingest-vektis", log_prints=False)
def ingest_vektis_flow(out: str, years: list[int] | None = None) -> dict[str, Any]:
    """Harmonise, validate and report the Vektis open data into ``out``.

    ``years`` selects bundled years (all when None); the 2015 first release is included whenever
    2015 is. Returns a small summary with the output paths and the validation outcome; raises
    :class:`VektisValidationFailed` (after writing everything) when validation fails.
    """
    publication = Publication.begin(out, "vektis")
    work, target = publication.work, publication.target
    try:
        long_path = harmonise_task(work, years)
        summary_path = validate_task(long_path, work, years)
        reports = report_task(long_path, work)
        summary_file = Path(summary_path)
        # the summary names its Data Docs by absolute path: name them where they will be
        summary_file.write_text(summary_file.read_text(encoding="utf-8").replace(work, target), encoding="utf-8")
        validation = json.loads(summary_file.read_text(encoding="utf-8"))
    except BaseException:
        publication.abandon()
        raise
    publication.commit(
        {
            "years": validation["years"],
            "releases": validation["releases"],
            "rows": validation["rows"],
            "validation_success": validation["success"],
        }
    )

    def final(path: str) -> str:
        return path.replace(work, target, 1)

    summary_path = final(summary_path)
    result: dict[str, Any] = {
        "out": target,
        "vektis_long": final(long_path),
        "years": validation["years"],
        "releases": validation["releases"],
        "rows": validation["rows"],
        "validation_success": validation["success"],
        "validation_summary": summary_path,
        "data_docs_index": validation["data_docs_index"],
        **{name: final(path) for name, path in reports.items()},
    }
    if not validation["success"]:
        failed = [f["expectation"] for s in validation["suites"] for f in s["failed"]]
        raise VektisValidationFailed(
            f"Vektis validation failed ({len(failed)} expectation(s): {', '.join(sorted(set(failed)))}); "
            f"see {summary_path} and {validation['data_docs_index']}"
        )
    return result
