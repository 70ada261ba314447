"""``zorgpad catalog`` and ``docs/querying.md``: the views read what the parquet files hold, one view
covers every bundle's episodes, a rerun replaces the catalog, a foreign file is refused, and every
titled example of the docs runs on a real small output."""

from __future__ import annotations

import os
import re
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from test_cli_safety import assert_one_error_line, digest, zorgpad
from transforms.catalog import CatalogError, build_catalog

# integration: a generated run folder's DuckDB catalog
pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs" / "querying.md"
EXAMPLE = re.compile(r'```(python|sql) title="([^"]+)"\n(.*?)```', re.S)


@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> Path:
    from transforms.episodes.run import build_episodes
    from transforms.ingest.run import ingest
    from transforms.panels.run import build_panels
    from transforms.synth import SynthConfig, generate_delivery

    root = tmp_path_factory.mktemp("catalog")
    generate_delivery(SynthConfig(patients=2_000, seed=11, clean=True, block_size=2_000), root / "delivery")
    ingest(root / "delivery", root / "store", n_buckets=2, data_docs=False)
    build_episodes(root / "store", root / "episodes")
    build_panels(root / "store", root / "episodes", root / "panels")
    return root


def _rows(path: Path) -> int:
    files = [path] if path.is_file() else sorted(path.rglob("*.parquet"))
    return sum(pq.ParquetFile(f).metadata.num_rows for f in files)


def _views(catalog: Path) -> list[tuple]:
    con = duckdb.connect(str(catalog), read_only=True)
    try:
        return con.execute('SELECT view_name, kind, "table", path FROM catalog_tables ORDER BY view_name').fetchall()
    finally:
        con.close()


def test_views_read_what_the_files_hold(outputs: Path) -> None:
    before = {name: digest(outputs / name) for name in ("store", "episodes", "panels")}
    made = build_catalog(outputs)
    catalog = outputs / "catalog.duckdb"
    assert made["catalog"] == str(catalog)
    views = _views(catalog)
    names = {v[0] for v in views}
    for expected in (
        "store_dbc",
        "store_insured",
        "episodes_episodes",
        "episodes_episode_lines",
        "panels_benchmark",
        "panels_reconciliation",
    ):
        assert expected in names
    con = duckdb.connect(str(catalog), read_only=True)
    try:
        for view, _, _, path in views:
            assert con.execute(f'SELECT count(*) FROM "{view}"').fetchone()[0] == _rows(Path(path)), view
        declared = dict(con.execute("SELECT view_name, key FROM catalog_tables").fetchall())
        assert declared["panels_benchmark"] == ["bundle_id", "year", "cost_basis", "level", "unit"]
        assert declared["store_dbc"] == ["claim_id"]
    finally:
        con.close()
    assert {name: digest(outputs / name) for name in before} == before  # the outputs are only read


def test_one_view_over_all_bundles(outputs: Path) -> None:
    catalog = outputs / "one-store.duckdb"
    build_catalog(outputs / "episodes", catalog)  # an output folder itself, the catalog elsewhere
    folder = outputs / "episodes" / "episodes"
    bundles = {p.name.split("=", 1)[1] for p in folder.glob("bundle_id=*")}
    columns: set[str] = {"bundle_id", "anchor_year"}
    schemas = set()
    for f in folder.rglob("*.parquet"):
        names = tuple(pq.read_schema(f).names)
        schemas.add(names)
        columns.update(names)
    assert len(bundles) > 1 and len(schemas) > 1  # the bundles differ in columns
    con = duckdb.connect(str(catalog), read_only=True)
    try:
        found = {r[0] for r in con.execute("SELECT DISTINCT bundle_id FROM episodes_episodes").fetchall()}
        view_columns = {r[0] for r in con.execute("DESCRIBE episodes_episodes").fetchall()}
        kinds = {r[0] for r in con.execute("SELECT DISTINCT kind FROM catalog_tables").fetchall()}
    finally:
        con.close()
    assert found == bundles
    assert view_columns == columns
    assert kinds == {"episodes"}


def test_rerun_replaces_and_foreign_files_are_refused(outputs: Path, tmp_path: Path) -> None:
    catalog = tmp_path / "mine.duckdb"
    done = zorgpad(tmp_path, "catalog", str(outputs), "--catalog", str(catalog))
    assert done.returncode == 0, done.stdout + done.stderr
    con = duckdb.connect(str(catalog))
    con.execute("CREATE TABLE stale AS SELECT 1 AS x")
    con.close()
    done = zorgpad(tmp_path, "catalog", str(outputs), "--catalog", str(catalog))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "stale" not in {v[0] for v in _views(catalog)}
    con = duckdb.connect(str(catalog), read_only=True)
    try:
        assert not con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'stale'").fetchone()[
            0
        ]
    finally:
        con.close()
    assert not [p for p in tmp_path.iterdir() if "zorgpad-tmp" in p.name]

    thesis = tmp_path / "thesis.duckdb"
    thesis.write_bytes(b"my thesis, not a database\n")
    done = zorgpad(tmp_path, "catalog", str(outputs), "--catalog", str(thesis))
    assert_one_error_line(done, str(thesis), "not a catalog")
    assert thesis.read_bytes() == b"my thesis, not a database\n"

    other = tmp_path / "other.duckdb"  # a DuckDB file, but the user's
    con = duckdb.connect(str(other))
    con.execute("CREATE TABLE results AS SELECT 42 AS answer")
    con.close()
    content = other.read_bytes()
    done = zorgpad(tmp_path, "catalog", str(outputs), "--catalog", str(other))
    assert_one_error_line(done, "not a catalog")
    assert other.read_bytes() == content

    empty = tmp_path / "nothing"
    empty.mkdir()
    done = zorgpad(tmp_path, "catalog", str(empty))
    assert_one_error_line(done, "no, zorgpad output folder")
    assert not (empty / "catalog.duckdb").exists()
    with pytest.raises(CatalogError):
        build_catalog(empty)


def test_docs_examples_run(outputs: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    build_catalog(outputs)
    examples = EXAMPLE.findall(DOCS.read_text(encoding="utf-8"))
    assert {lang for lang, _, _ in examples} == {"python", "sql"} and len(examples) >= 6
    monkeypatch.chdir(outputs)
    for lang, title, body in examples:
        if lang == "python":
            exec(compile(body, f"docs/querying.md: {title}", "exec"), {"__name__": "__docs__"})
        else:
            con = duckdb.connect("catalog.duckdb", read_only=True)
            try:
                assert con.sql(body).fetchall(), title
            finally:
                con.close()
    assert os.getcwd() == str(outputs)
