"""A digest of what a zorgpad run folder *contains*, independent of how it was written.

    python -m tests.content_digest OUT_DIR            # JSON on stdout
    python -m tests.content_digest OUT_DIR --out F    # JSON into F

``OUT_DIR`` is a ``zorgpad run --out`` folder (``store/``, ``episodes/``, ``panels/``, ``report/``).
A *table* is every parquet file below one folder of ``store/``, ``episodes/`` or ``panels/`` with
the Hive partition folders (``bucket=0003``, ``bundle_id=hip_oa``, ``anchor_year=2019``) folded in
as columns: ``store/dbc``, ``store/quarantine/dbc``, ``episodes/episodes``, ``panels/benchmark``;
a parquet file directly in a stage folder is a table of its own (``episodes/reference_prices``).

Per table, the rows are made canonical and hashed, so that the digest changes exactly when the
content does and not when only the writing does:

- every file of the table is read (file names such as ``part-0004.parquet`` are not content: they
  name the first bucket of a Dask task, which depends on the number of workers);
- the partition values of the file's path are added as string columns;
- every column is rendered as text: strings as they are, integers and booleans in decimal,
  dates and datetimes in ISO, decimals as their exact decimal text, floats as Python's ``repr``
  of the double (the shortest text that gives back the same bits: a float digest is exact),
  lists element by element; null is rendered as a marker no value has;
  so ``int32`` versus ``int64`` or ``large_string`` versus ``string`` is no difference;
- columns are put in name order and rows sorted by all columns;
- the SHA-256 is taken over the header and the rows (unit separator between fields, newline
  between rows).

Parquet file metadata (``zorgpad.code_version`` and the like) is not read at all.

:data:`RUN_SPECIFIC_COLUMNS` lists the columns dropped because they legitimately differ between
two runs of the same delivery. No table of store/, episodes/ or panels/ has such a column today
(run ids, timings, code versions and paths are in the manifests, which are not tables); the list
is kept, empty, so that a column added for that reason is dropped here on purpose and with a
reason, not by a wider rule.

The store manifest's books (rows and euros per delivered table) are recorded as they are, for the
keys in :data:`BOOK_KEYS`: they are few, and a difference is easier to read as numbers than as a
hash.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import polars as pl

#: The stage folders of a run folder whose parquet tables are digested.
STAGES = ("store", "episodes", "panels")
#: ``{column: reason}``: columns dropped from every table as run-specific. Empty: see the module
#: docstring (file metadata such as ``zorgpad.code_version`` is never read).
RUN_SPECIFIC_COLUMNS: dict[str, str] = {}
#: The entries of ``store/manifest.json`` ``books[table]`` that are recorded.
BOOK_KEYS = (
    "rows_in",
    "rows_stored",
    "rows_quarantined",
    "rows_merged",
    "cents_in",
    "cents_stored",
    "cents_quarantined",
    "fully_credited",
    "euros_in_exact",
    "euros_stored_exact",
    "euros_quarantined_exact",
    "balanced",
)
NULL = "\x00null"
FIELD = "\x1f"
ITEM = "\x1e"


def table_of(rel: Path) -> str:
    """The table a parquet file (relative to the run folder) belongs to."""
    folders = []
    for part in rel.parts[:-1]:
        if "=" in part:
            break
        folders.append(part)
    if len(folders) == 1:  # a file directly in a stage folder
        folders.append(rel.stem)
    return "/".join(folders)


def tables(out: Path) -> dict[str, list[Path]]:
    found: dict[str, list[Path]] = {}
    for stage in STAGES:
        for path in sorted((out / stage).rglob("*.parquet")):
            rel = path.relative_to(out)
            found.setdefault(table_of(rel), []).append(path)
    return dict(sorted(found.items()))


def _read(path: Path, out: Path) -> pl.DataFrame:
    frame = pl.read_parquet(path, hive_partitioning=False)
    partitions = {}
    for part in path.relative_to(out).parts[:-1]:
        if "=" in part:
            key, value = part.split("=", 1)
            if key not in frame.columns:
                partitions[key] = value
    if partitions:
        frame = frame.with_columns(pl.lit(v, pl.String).alias(k) for k, v in partitions.items())
    return frame.drop([c for c in RUN_SPECIFIC_COLUMNS if c in frame.columns])


def _text(value: object) -> str:
    if value is None:
        return NULL
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ITEM.join(_text(v) for v in value) + "]"
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def _column_text(series: pl.Series) -> pl.Series:
    dtype = series.dtype
    if dtype in (pl.String, pl.Categorical, pl.Enum) or isinstance(dtype, pl.Categorical):
        return series.cast(pl.String).fill_null(NULL)
    if dtype.is_integer():
        return series.cast(pl.String).fill_null(NULL)
    if dtype == pl.Boolean:
        return series.replace_strict({True: "true", False: "false"}, return_dtype=pl.String).fill_null(NULL)
    if dtype == pl.Date:
        return series.dt.strftime("%Y-%m-%d").fill_null(NULL)
    # decimals (exact text via Python's Decimal), floats (repr), lists, datetimes: value by value
    return pl.Series(series.name, [_text(v) for v in series.to_list()], dtype=pl.String)


def canonical(frame: pl.DataFrame) -> pl.DataFrame:
    """Every column as text, columns in name order, rows sorted by all columns."""
    columns = sorted(frame.columns)
    text = pl.DataFrame([_column_text(frame[c]) for c in columns]) if columns else frame
    return text.sort(columns) if columns and text.height else text


def table_digest(files: list[Path], out: Path) -> dict:
    frame = pl.concat([_read(f, out) for f in files], how="diagonal_relaxed")
    text = canonical(frame)
    sha = hashlib.sha256()
    sha.update(FIELD.join(text.columns).encode() + b"\n")
    if text.height:
        joined = text.select(pl.concat_str(pl.all(), separator=FIELD))[:, 0]
        for row in joined:
            sha.update(row.encode() + b"\n")
    return {"rows": text.height, "columns": text.columns, "sha256": sha.hexdigest()}


def books(out: Path) -> dict:
    manifest = json.loads((out / "store" / "manifest.json").read_text())
    return {table: {key: entry.get(key) for key in BOOK_KEYS} for table, entry in sorted(manifest["books"].items())}


def delivery_digest(delivery: Path) -> dict:
    """The tables of a delivery folder, digested the same way (to tell a changed generator from
    a changed pipeline)."""
    found: dict[str, list[Path]] = {}
    for path in sorted(Path(delivery).rglob("*.parquet")):
        found.setdefault(path.relative_to(delivery).parts[0], []).append(path)
    return {name: table_digest(files, Path(delivery)) for name, files in sorted(found.items())}


def digest(out: Path | str) -> dict:
    """``{"tables": {table: {rows, columns, sha256}}, "books": {table: {...}}}`` of a run folder."""
    out = Path(out)
    return {
        "tables": {name: table_digest(files, out) for name, files in tables(out).items()},
        "books": books(out),
    }


def differences(expected: dict, actual: dict) -> list[str]:
    """Readable differences between two :func:`digest` results (empty when equal)."""
    found = []
    for section in ("tables", "books"):
        want, got = expected.get(section, {}), actual.get(section, {})
        for name in sorted(want.keys() | got.keys()):
            if name not in got:
                found.append(f"{section}/{name}: missing (expected {want[name]})")
            elif name not in want:
                found.append(f"{section}/{name}: not expected ({got[name]})")
            elif want[name] != got[name]:
                keys = sorted(k for k in want[name].keys() | got[name].keys() if want[name].get(k) != got[name].get(k))
                found.append(
                    f"{section}/{name}: "
                    + ", ".join(f"{k} {want[name].get(k)!r} -> {got[name].get(k)!r}" for k in keys)
                )
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, help="a `zorgpad run --out` folder")
    parser.add_argument("--out", type=Path, help="write the JSON here instead of stdout")
    args = parser.parse_args(argv)
    text = json.dumps(digest(args.out_dir), indent=1, sort_keys=True) + "\n"
    if args.out:
        args.out.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
