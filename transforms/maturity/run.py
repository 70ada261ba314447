"""Build the maturity tables of a store into one output folder (``zorgpad maturity``).

:func:`preflight` checks in seconds what can be checked (the store, the output folder, the
options); :func:`build_maturity` then reads each claim table with polars (a few columns, lazily),
builds its triangle, development factors and completion, writes the four declared tables
(``transforms/maturity/tables/*.yml``) into a new folder beside the target and swaps it into
place with a manifest (``transforms.output_folder``): the same store and options give the same
files, byte for byte.
"""

from __future__ import annotations

import time
from datetime import date
from pathlib import Path

import polars as pl

from transforms.errors import UserFacingError
from transforms.hashing import file_sha256
from transforms.ingest.layout import CLAIM_TABLES
from transforms.maturity.chainladder import (
    DEFAULT_MATURE_AT,
    DEFAULT_MIN_SERVICE_MONTHS,
    completion,
    completion_by_period,
    development_factors,
)
from transforms.maturity.store import SERVICE_DATE, read_lines
from transforms.maturity.tables import MATURITY_TABLES, ORDER, table
from transforms.maturity.triangle import (
    build_triangle,
    declaration_cells,
    last_complete_month,
    month_start,
    month_start_expr,
)
from transforms.output_folder import OutputError, Publication, check_target, require_output, require_unlocked
from transforms.runtime import code_version

KIND = "maturity"


class MaturityOptionsError(UserFacingError):
    """Options the maturity tables cannot be built with."""


def preflight(
    store: Path | str,
    out: Path | str,
    *,
    mature_at: float = DEFAULT_MATURE_AT,
    min_service_months: int = DEFAULT_MIN_SERVICE_MONTHS,
) -> dict:
    """Check the options, that ``store`` is a complete store with a ``data_as_of``, and that ``out``
    may be written and nobody writes it (raises a :class:`UserFacingError`); returns the store's
    manifest and its ``data_as_of``."""
    if not 0 < mature_at <= 1:
        raise MaturityOptionsError(
            f"--mature-at must be above 0 and at most 1 (a share of the ultimate), not {mature_at}"
        )
    if min_service_months < 1:
        raise MaturityOptionsError(f"min_service_months must be at least 1, not {min_service_months}")
    manifest = require_output(store, "store", option="--store")
    as_of = (manifest.get("delivery") or {}).get("data_as_of")
    try:
        as_of_date = date.fromisoformat(str(as_of))
    except ValueError:
        raise OutputError(
            f"--store {store}: its manifest.json has no valid delivery data_as_of ({as_of!r}); "
            "run `zorgpad ingest` again"
        ) from None
    target = check_target(out, KIND, inputs={"store": Path(store)}, option="--out")
    require_unlocked(target)
    last_year = (manifest.get("delivery") or {}).get("last_year")
    return {
        "store_manifest": manifest,
        "data_as_of": as_of_date,
        "last_year": int(last_year) if isinstance(last_year, int) else None,
    }


def maturity_of(
    lines: pl.DataFrame | pl.LazyFrame,
    data_as_of: date,
    *,
    last_year: int | None = None,
    mature_at: float = DEFAULT_MATURE_AT,
    min_service_months: int = DEFAULT_MIN_SERVICE_MONTHS,
) -> dict[str, pl.DataFrame]:
    """The four tables of one claim table (integer months, no ``claim_table`` column) from its
    services dated by their original declaration (``transforms.maturity.triangle.LINES``), and
    what was left out (``left_out``: cells declared after the last complete month). ``last_year``:
    the delivery's last year, whose months are in the triangle even when nothing is declared yet."""
    last = last_complete_month(data_as_of)
    cells = declaration_cells(lines)
    tri = build_triangle(cells, last, last_year * 12 + 11 if last_year is not None else None)
    factors = development_factors(tri, min_service_months)
    months = completion(tri, factors, mature_at)
    periods = completion_by_period(months, mature_at)
    later = cells.filter((pl.col("declaration_month") > last) | (pl.col("service_month") > last))
    return {
        "triangle": tri,
        "development_factors": factors,
        "completion": months,
        "completion_period": periods,
        "left_out": later,
    }


def _dated(frame: pl.DataFrame, columns: tuple[str, ...]) -> pl.DataFrame:
    return frame.with_columns([month_start_expr(c).alias(c) for c in columns if c in frame.columns])


def build_maturity(
    store: Path | str,
    out: Path | str,
    *,
    mature_at: float = DEFAULT_MATURE_AT,
    min_service_months: int = DEFAULT_MIN_SERVICE_MONTHS,
) -> dict:
    """Check, build every claim table's maturity tables, publish ``out``; returns the manifest."""
    started = time.perf_counter()
    checked = preflight(store, out, mature_at=mature_at, min_service_months=min_service_months)
    store_path = Path(store).expanduser().resolve()
    as_of: date = checked["data_as_of"]
    publication = Publication.begin(out, KIND, inputs={"store": store_path}, option="--out")
    try:
        frames: dict[str, list[pl.DataFrame]] = {name: [] for name in ORDER}
        tables: dict[str, dict] = {}
        timing: dict[str, float] = {}
        for claim_table in CLAIM_TABLES:
            t0 = time.perf_counter()
            lines = read_lines(store_path, claim_table)
            if lines is None:
                tables[claim_table] = {"service_date": SERVICE_DATE[claim_table], "lines": 0}
                continue
            built = maturity_of(
                lines, as_of, last_year=checked["last_year"], mature_at=mature_at, min_service_months=min_service_months
            )
            tri, left = built["triangle"], built["left_out"]
            estimated = built["development_factors"].filter(pl.col("estimated"))
            tables[claim_table] = {
                "service_date": SERVICE_DATE[claim_table],
                "lines": int(tri["lines"].sum()),
                "cents": int(tri["cents"].sum()),
                "service_months": [
                    month_start(int(tri["service_month"].min())).isoformat(),
                    month_start(int(tri["service_month"].max())).isoformat(),
                ]
                if tri.height
                else None,
                "estimated_ages": {
                    m: int(estimated.filter(pl.col("measure") == m)["development_age"].max())
                    if estimated.filter(pl.col("measure") == m).height
                    else None
                    for m in ("lines", "cents")
                },
                "left_out_after_last_complete_month": {
                    "lines": int(left["lines"].sum()),
                    "cents": int(left["cents"].sum()),
                },
            }
            for name in ORDER:
                frame = built[name].with_columns(pl.lit(claim_table).alias("claim_table"))
                frames[name].append(frame)
            timing[claim_table] = time.perf_counter() - t0
        rows = {}
        for name in ORDER:
            spec = table(name)
            frame = pl.concat(frames[name]) if frames[name] else pl.DataFrame(schema=spec.polars_schema())
            frame = _dated(frame, ("service_month", "declaration_month", "first_service_month", "last_service_month"))
            if frames[name]:
                spec.write(frame, publication.work_path)
            rows[name] = frame.height
        marker = checked["store_manifest"].get("zorgpad", {})
        manifest = {
            "out": publication.target,
            "data_as_of": as_of.isoformat(),
            "last_complete_month": month_start(last_complete_month(as_of)).isoformat(),
            "store": {
                "path": str(store_path),
                "run_id": marker.get("run_id"),
                "delivery_id": checked["store_manifest"].get("delivery_id"),
                "manifest_sha256": file_sha256(store_path / "manifest.json"),
                "code_version": checked["store_manifest"].get("code_version"),
                "contract_version": checked["store_manifest"].get("contract_version"),
            },
            "options": {"mature_at": mature_at, "min_service_months": min_service_months},
            "claim_tables": tables,
            "tables": {
                name: {"grain": spec.grain, "key": list(spec.key), "partition_by": list(spec.partition_by)}
                for name, spec in MATURITY_TABLES.items()
            },
            "rows": rows,
            "code_version": code_version(),
            "timing_seconds": {k: round(v, 3) for k, v in timing.items()},
        }
        manifest["timing_seconds"]["total"] = round(time.perf_counter() - started, 3)
        publication.commit(manifest)
    except BaseException:
        publication.abandon()
        raise
    return manifest


__all__ = ["KIND", "MaturityOptionsError", "build_maturity", "maturity_of", "preflight"]
