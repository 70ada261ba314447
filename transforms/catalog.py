"""``zorgpad catalog``: one DuckDB file of views over the parquet tables of zorgpad's output folders,
so that an analyst opens one file and queries every table by name (``docs/querying.md``).

What is catalogued. ``out`` is one output folder (its kind from :func:`output_kind`) or a folder
holding several as subfolders (a ``zorgpad demo`` folder, or any folder of outputs). In each output
folder, a *table* is:

- a folder whose parquet files lie in Hive partition folders (``name=value/...``) or directly in it
  (``store/dbc/bucket=0000/part-0.parquet``, ``episodes/episodes/bundle_id=hip_oa/anchor_year=2018/``,
  ``delivery/dbc/part-00000.parquet``); its other sub-folders are tables of their own
  (``quarantine/dbc_activity/orphans``);
- a parquet file that is not a partition file (``did report/att_gt.parquet``,
  ``episodes/reference_prices.parquet``, ``did panel/adapters/did.parquet``).

Files and folders whose names start with ``_`` or ``.`` (work files) are left out, and so are the
``NAME.zorgpad-new-*`` / ``-old-*`` folders of an unfinished run.

Views. Each table is one view ``<kind>_<table>`` (the table's path inside the output folder with
``/`` as ``_``: ``store_dbc``, ``store_quarantine_dbc``, ``episodes_episodes``, ``panels_benchmark``,
``did_report_att_gt``); when two folders of the same kind are catalogued, the folder's name comes
in between (``store_store2019_dbc``). Views read with ``read_parquet(..., hive_partitioning = true,
union_by_name = true)``, so one view covers every bundle's episodes with their differing outcome
columns (a column a bundle lacks is NULL in its rows); partition columns get the type their YAML
declaration gives them (``period_label`` stays a string). The paths are absolute: DuckDB resolves
a relative path in a view against the working directory of the reader, not the catalog's folder,
so after moving the outputs, run ``zorgpad catalog`` again. ``catalog_tables`` lists every view with
its folder, kind, table, grain, key and path; ``zorgpad_catalog`` marks the file as zorgpad's.

Safety. The catalog is derived data and written atomically (a temporary file beside the target,
then one rename); an existing target is replaced only when it is a catalog zorgpad wrote, anything
else is refused and left as it is. The output folders are only read.
"""

from __future__ import annotations

import os
import re
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

import yaml

from transforms.errors import UserFacingError
from transforms.output_folder import KINDS, output_kind

CATALOG_FILE = "catalog.duckdb"
FORMAT = 1
MARKER_TABLE = "zorgpad_catalog"
LIST_VIEW = "catalog_tables"
#: A container of other outputs, never catalogued itself.
CONTAINERS = {"demo", "run"}
_TRANSFORMS = Path(__file__).resolve().parent
#: Where the YAML declarations of each kind's tables are (the grain, key and partition types).
DECLARATIONS = {
    "store": "contract/tables",
    "synthetic_delivery": "contract/tables",
    "panels": "panels/tables",
    "maturity": "maturity/tables",
    "regional": "regional/tables",
    "population": "population/tables",
    "did_panel": "did_panel/tables",
}
#: Tables declared nowhere in YAML.
KNOWN = {
    ("episodes", "episodes"): (
        "one row per episode (bundle, anchor year as Hive partitions)",
        ["episode_id"],
        {"bundle_id": "VARCHAR", "anchor_year": "INTEGER"},
    ),
    ("episodes", "episode_lines"): (
        "one row per claim line allocated to an episode",
        None,
        {"bundle_id": "VARCHAR", "anchor_year": "INTEGER"},
    ),
}
_DUCKDB_TYPES = {
    "string": "VARCHAR",
    "int32": "INTEGER",
    "int64": "BIGINT",
    "float64": "DOUBLE",
    "bool": "BOOLEAN",
    "date": "DATE",
    "money": "DECIMAL(18,2)",
}
_DEBRIS = re.compile(r"\.zorgpad-(new|old|lock)")
_DUCKDB_MAGIC = b"DUCK"  # bytes 8-11 of every DuckDB database file


class CatalogError(UserFacingError):
    """A catalog zorgpad cannot or must not write: nothing was changed."""


@dataclass(frozen=True)
class Table:
    view: str
    kind: str
    folder: Path  # the output folder
    table: str  # path inside it, with "/"
    patterns: tuple[str, ...]  # absolute globs or files
    hive: bool
    grain: str | None
    key: list[str] | None
    hive_types: dict[str, str]

    def sql(self) -> str:
        files = ", ".join(_literal(p) for p in self.patterns)
        options = ["hive_partitioning = true", "union_by_name = true"]
        if self.hive and self.hive_types:
            options.append(
                "hive_types = {"
                + ", ".join(f"{_literal(k)}: {_literal(v)}" for k, v in sorted(self.hive_types.items()))
                + "}"
            )
        return f"SELECT * FROM read_parquet([{files}], {', '.join(options)})"


def _literal(text: str) -> str:
    return "'" + str(text).replace("'", "''") + "'"


def _ident(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def _name(text: str) -> str:
    return re.sub(r"[^0-9a-z]+", "_", text.lower()).strip("_") or "t"


# ------------------------------------------------------------------------------ declarations
@cache
def _declarations(kind: str) -> dict[str, dict]:
    folder = DECLARATIONS.get(kind)
    found: dict[str, dict] = {}
    if folder is None or not (_TRANSFORMS / folder).is_dir():
        return found
    for path in sorted((_TRANSFORMS / folder).glob("*.yml")):
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError):
            continue
        if isinstance(data, dict) and data.get("table"):
            found[str(data["table"])] = data
    return found


def _describe(kind: str, table: str) -> tuple[str | None, list[str] | None, dict[str, str]]:
    if (kind, table) in KNOWN:
        grain, key, types = KNOWN[(kind, table)]
        return grain, key, dict(types)
    parts = table.split("/")
    quarantine = parts[0] == "quarantine" and len(parts) > 1
    decl = _declarations(kind).get(parts[1] if quarantine else parts[-1])
    if decl is None:
        return None, None, {}
    columns = {c.get("name"): c.get("type") for c in decl.get("columns", []) if isinstance(c, dict)}
    types = {
        c: _DUCKDB_TYPES[columns[c]] for c in decl.get("partition_by", []) or [] if columns.get(c) in _DUCKDB_TYPES
    }
    grain = decl.get("grain")
    key = decl.get("key") or decl.get("primary_key")
    if quarantine:
        grain = f"rows of {parts[1]} set aside by validation ({grain})" if grain else None
    return grain, list(key) if key else None, types


# ------------------------------------------------------------------------------ finding tables
def _skipped(path: Path) -> bool:
    return path.name.startswith(("_", ".")) or bool(_DEBRIS.search(path.name))


def _is_partition(path: Path) -> bool:
    return path.is_dir() and "=" in path.name and not _skipped(path)


def _partition_files(folder: Path, depth: int = 0) -> dict[int, int]:
    """How many parquet files lie at each partition depth below ``folder`` (only through ``k=v`` folders)."""
    depths: Counter[int] = Counter()
    for entry in sorted(folder.iterdir()):
        if _skipped(entry):
            continue
        if entry.is_file() and entry.suffix == ".parquet":
            depths[depth] += 1
        elif _is_partition(entry):
            depths.update(_partition_files(entry, depth + 1))
    return depths


def _tables_in(folder: Path, rel: tuple[str, ...] = ()) -> list[tuple[str, tuple[str, ...], bool]]:
    """(table path, patterns, hive) for every table in ``folder``."""
    here = folder.joinpath(*rel)
    found: list[tuple[str, tuple[str, ...], bool]] = []
    files = sorted(p for p in here.iterdir() if p.is_file() and p.suffix == ".parquet" and not _skipped(p))
    partitions = [p for p in here.iterdir() if _is_partition(p)]
    if rel and (partitions or (files and (len(files) == 1 or all(f.name.startswith("part") for f in files)))):
        depths = _partition_files(here)
        patterns = tuple(str(here.joinpath(*(["*"] * d), "*.parquet")) for d in sorted(depths))
        found.append(("/".join(rel), patterns, bool(partitions)))
    else:
        for f in files:
            found.append(("/".join((*rel, f.stem)), (str(f),), False))
    for sub in sorted(p for p in here.iterdir() if p.is_dir() and not _skipped(p) and not _is_partition(p)):
        found.extend(_tables_in(folder, (*rel, sub.name)))
    return found


def output_folders(out: Path) -> list[tuple[str, Path]]:
    """The output folders (kind, path) that ``out`` is or holds: a demo folder holds a run folder,
    a run folder holds ``did/<spec>/`` panels one level down."""
    kind = output_kind(out)
    if kind is not None and kind not in CONTAINERS:
        return [(kind, out)]
    found = []
    for sub in sorted(out.iterdir()):
        if sub.is_dir() and not _skipped(sub):
            sub_kind = output_kind(sub)
            if sub_kind in CONTAINERS:
                found.extend(output_folders(sub))
            elif sub_kind is not None:
                found.append((sub_kind, sub))
            elif kind in CONTAINERS:
                found.extend(
                    (k, p)
                    for p in sorted(sub.iterdir())
                    if p.is_dir() and not _skipped(p) and (k := output_kind(p)) is not None and k not in CONTAINERS
                )
    return found


def find_tables(out: Path) -> list[Table]:
    folders = output_folders(out)
    counts = Counter(kind for kind, _ in folders)
    tables: list[Table] = []
    seen: set[str] = set()
    for kind, folder in folders:
        prefix = kind if counts[kind] == 1 else f"{kind}_{_name(folder.name)}"
        for table, patterns, hive in _tables_in(folder):
            view = _name(f"{prefix}_{table}")
            while view in seen or view in (LIST_VIEW, MARKER_TABLE):
                view += "_"
            seen.add(view)
            grain, key, types = _describe(kind, table)
            tables.append(Table(view, kind, folder, table, patterns, hive, grain, key, types))
    return tables


# ------------------------------------------------------------------------------ writing
def _is_ours(path: Path) -> bool:
    """True when ``path`` is a DuckDB file holding the catalog marker (opened read-only)."""
    try:
        with path.open("rb") as fh:
            head = fh.read(16)
    except OSError:
        return False
    if head[8:12] != _DUCKDB_MAGIC:
        return False
    import duckdb

    try:
        con = duckdb.connect(str(path), read_only=True)
    except Exception:  # noqa: BLE001 - any failure to open: not a catalog we can replace
        return False
    try:
        rows = con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [MARKER_TABLE]
        ).fetchone()
        return bool(rows and rows[0])
    except Exception:  # noqa: BLE001 - a database we cannot query is not a catalog we can replace
        return False
    finally:
        con.close()


def check_catalog_target(target: Path) -> None:
    if target.is_symlink() or (target.exists() and not target.is_file()):
        raise CatalogError(
            f"--catalog {target} exists and is not a file zorgpad wrote; it is left as it is: choose another file"
        )
    if target.exists() and not _is_ours(target):
        raise CatalogError(
            f"--catalog {target} exists and is not a catalog written by `zorgpad catalog`; it is "
            f"left as it is: remove it yourself or choose another file with --catalog"
        )
    if not target.parent.is_dir() or not os.access(target.parent, os.W_OK | os.X_OK):
        raise CatalogError(
            f"--catalog {target}: cannot write in {target.parent} (missing, no permission or a read-only file system)"
        )


def build_catalog(out: Path | str, catalog: Path | str | None = None) -> dict:
    """Write the catalog of ``out`` (default ``out/catalog.duckdb``); returns what it holds:
    ``{"catalog": path, "views": [{"view", "kind", "folder", "table", "grain", "key", "rows"}]}``."""
    import duckdb

    out = Path(out).expanduser().resolve()
    if not out.is_dir():
        raise CatalogError(f"OUT {out} is not a folder: give a zorgpad output folder or a folder holding some")
    target = Path(catalog).expanduser().resolve() if catalog else out / CATALOG_FILE
    check_catalog_target(target)
    tables = find_tables(out)
    if not tables:
        known = ", ".join(sorted(k for k in KINDS if k not in CONTAINERS))
        raise CatalogError(
            f"OUT {out} is not, and holds no, zorgpad output folder with parquet tables "
            f"(recognised by their manifest.json: {known})"
        )
    tmp = target.with_name(f".{target.name}.zorgpad-tmp-{uuid.uuid4().hex[:12]}")
    views = []
    try:
        con = duckdb.connect(str(tmp))
        try:
            con.execute(
                f"CREATE TABLE {MARKER_TABLE} (format INTEGER, written_at VARCHAR, out VARCHAR, writer VARCHAR)"
            )
            con.execute(
                f"INSERT INTO {MARKER_TABLE} VALUES (?, ?, ?, ?)",
                [FORMAT, datetime.now(UTC).isoformat(timespec="seconds"), str(out), "zorgpad catalog"],
            )
            for t in tables:
                try:
                    con.execute(f"CREATE VIEW {_ident(t.view)} AS {t.sql()}")
                    rows = con.execute(f"SELECT count(*) FROM {_ident(t.view)}").fetchone()[0]
                except duckdb.Error as exc:
                    raise CatalogError(
                        f"{t.folder / t.table}: DuckDB cannot read it as one table ({str(exc).splitlines()[0]})"
                    ) from None
                views.append(
                    {
                        "view": t.view,
                        "kind": t.kind,
                        "folder": str(t.folder),
                        "table": t.table,
                        "grain": t.grain,
                        "key": t.key,
                        "rows": int(rows),
                        "path": t.patterns[0]
                        if not t.hive and t.patterns[0].endswith(".parquet") and Path(t.patterns[0]).is_file()
                        else str(t.folder / t.table),
                    }
                )

            def row(v: dict) -> str:
                key = "NULL::VARCHAR[]" if not v["key"] else "[" + ", ".join(map(_literal, v["key"])) + "]::VARCHAR[]"
                text = [
                    ("NULL" if v[k] is None else _literal(v[k])) + "::VARCHAR"
                    for k in ("view", "kind", "folder", "table", "grain")
                ]
                return "(" + ", ".join([*text, key, _literal(v["path"]) + "::VARCHAR"]) + ")"

            con.execute(
                f"CREATE VIEW {LIST_VIEW} AS SELECT * FROM (VALUES {', '.join(row(v) for v in views)}) "
                f'AS t(view_name, kind, folder, "table", grain, "key", path)'
            )
            con.execute("CHECKPOINT")
        finally:
            con.close()
        os.replace(tmp, target)
    finally:
        for leftover in (tmp, tmp.with_name(tmp.name + ".wal")):
            leftover.unlink(missing_ok=True)
    return {"catalog": str(target), "views": views}


__all__ = ["CATALOG_FILE", "CatalogError", "build_catalog", "find_tables", "output_folders"]
