"""``OUT/report/index.html``: the page a data team opens after a run, static and offline.

Everything on it is read from what the run wrote (the run manifest, the store's books and validation
summary, the episodes' and panels' manifests and tables, each DiD spec's estimates), so the page can
never claim what the outputs do not hold. Images are copied next to the page and linked relatively,
the style sheet is inline, no script runs: the folder can be zipped, mailed and opened anywhere.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import polars as pl
from jinja2 import Environment, FileSystemLoader, select_autoescape

from transforms.ingest.summary import books_line, quarantine_reasons, validation_line
from transforms.output_folder import Publication
from transforms.panels.run import PLOTS_DIR
from transforms.report.charts import episodes_chart_png

#: Funnel plots shown on the page (the panels folder holds one per bundle, year and cost basis).
MAX_FUNNEL_PLOTS = 6
#: Reconciliation rows shown per page (the parquet holds them all).
MAX_RECONCILIATION_ROWS = 20


def _json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _books(store: dict) -> list[dict]:
    rows = []
    for table, entry in (store.get("books") or {}).items():
        rows.append(
            {
                "table": table,
                "rows_in": entry.get("rows_in", 0),
                "rows_stored": entry.get("rows_stored", 0),
                "rows_quarantined": entry.get("rows_quarantined", 0),
                "rows_merged": entry.get("rows_merged", 0),
                "euros_in": entry.get("euros_in_exact", "0.00"),
                "euros_stored": entry.get("euros_stored_exact", "0.00"),
                "euros_quarantined": entry.get("euros_quarantined_exact", "0.00"),
                "balanced": bool(entry.get("balanced")),
            }
        )
    return rows


def _quarantine(store: dict) -> list[dict]:
    rows = []
    for table, reasons in sorted((store.get("quarantine") or {}).items()):
        for reason, n in sorted(reasons.items(), key=lambda kv: (-int(kv[1]), kv[0])):
            rows.append({"table": table, "reason": reason, "rows": int(n)})
    return rows


def _episode_counts(episodes: dict) -> tuple[list[int], list[dict]]:
    """Episodes per bundle (rows) and anchor year (columns), every status counted."""
    counts: dict[str, Counter[int]] = {}
    for entry in episodes.get("by_year_status") or []:
        counts.setdefault(entry["bundle_id"], Counter())[int(entry["anchor_year"])] += int(entry["episodes"])
    years = sorted({y for by_year in counts.values() for y in by_year})
    rows = [
        {"bundle": b, "counts": [counts[b].get(y, 0) for y in years], "total": sum(counts[b].values())}
        for b in sorted(counts)
    ]
    return years, rows


def _table_rows(folder: Path, limit: int) -> tuple[list[str], list[list[str]], int]:
    """The first ``limit`` rows of a Hive-partitioned table, as text, and its row count."""
    files = sorted(folder.rglob("*.parquet")) if folder.is_dir() else []
    if not files:
        return [], [], 0
    frame = pl.scan_parquet(
        folder / "**" / "*.parquet",
        hive_partitioning=True,
        hive_schema=None,
        extra_columns="ignore",
        missing_columns="insert",
    )
    total = frame.select(pl.len()).collect().item()
    head = frame.head(limit).collect()
    text = [[_cell(v) for v in row] for row in head.iter_rows()]
    return head.columns, text, int(total)


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def _copy_images(sources: list[Path], into: Path, prefix: str) -> list[str]:
    into.mkdir(parents=True, exist_ok=True)
    names = []
    for i, source in enumerate(sources):
        name = f"{prefix}-{i + 1}{source.suffix}"
        shutil.copyfile(source, into / name)
        names.append(f"images/{name}")
    return names


def _did_sections(out: Path, images: Path) -> list[dict]:
    sections = []
    for folder in sorted((out / "did").iterdir()) if (out / "did").is_dir() else []:
        manifest = _json(folder / "manifest.json")
        if not manifest:
            continue
        summary_file = folder / "estimates" / "summary.parquet"
        columns, rows = [], []
        if summary_file.is_file():
            summary = pl.read_parquet(summary_file)
            columns = summary.columns
            rows = [[_cell(v) for v in row] for row in summary.iter_rows()]
        plots = sorted((folder / "estimates").rglob("event_study.png")) if (folder / "estimates").is_dir() else []
        sections.append(
            {
                "name": folder.name,
                "rows": manifest.get("rows"),
                "columns": columns,
                "summary": rows,
                "plots": [
                    {"src": src, "outcome": plot.parent.name}
                    for src, plot in zip(_copy_images(plots, images, f"did-{folder.name}"), plots)
                ],
                "report_links": [
                    f"../did/{folder.name}/estimates/{p.parent.name}/report.html"
                    for p in plots
                    if (p.parent / "report.html").is_file()
                ],
            }
        )
    return sections


def build_report(out: Path | str) -> Path:
    """Write ``out/report/`` (``index.html`` and ``images/``) from the run folder ``out``; returns the page."""
    out = Path(out).resolve()
    run = _json(out / "manifest.json")
    store, episodes, panels = (_json(out / name / "manifest.json") for name in ("store", "episodes", "panels"))
    publication = Publication.begin(out / "report", "report", option="--out")
    try:
        work = publication.work_path
        images = work / "images"
        images.mkdir()
        years, episode_rows = _episode_counts(episodes)
        chart = None
        if episode_rows:
            (images / "episodes-per-year.png").write_bytes(episodes_chart_png(years, episode_rows))
            chart = "images/episodes-per-year.png"
        funnels = sorted((out / "panels" / PLOTS_DIR).rglob("*.png"))[:MAX_FUNNEL_PLOTS]
        funnel_images = [
            {"src": src, "caption": " ".join(p.relative_to(out / "panels" / PLOTS_DIR).with_suffix("").parts)}
            for src, p in zip(_copy_images(funnels, images, "funnel"), funnels)
        ]
        rec_columns, rec_rows, rec_total = _table_rows(out / "panels" / "reconciliation", MAX_RECONCILIATION_ROWS)
        docs = (store.get("validation") or {}).get("data_docs")
        context = {
            "run": run,
            "store": store,
            "episodes": episodes,
            "panels": panels,
            "stages": [{"name": k, **v} for k, v in (run.get("stages") or {}).items()],
            "books": _books(store),
            "books_line": books_line(store) if store else "no store",
            "validation_line": validation_line(store) if store else "no store",
            "reasons": quarantine_reasons(store),
            "quarantine": _quarantine(store),
            "data_docs": f"../store/{docs}" if docs else None,
            "years": years,
            "episode_rows": episode_rows,
            "episodes_chart": chart,
            "funnels": funnel_images,
            "panel_rows": sorted((panels.get("rows") or {}).items()),
            "rec_columns": rec_columns,
            "rec_rows": rec_rows,
            "rec_total": rec_total,
            "did": _did_sections(out, images),
            "timings": {
                name: (m.get("timing_seconds") or {})
                for name, m in (("ingest", store), ("episodes", episodes), ("panels", panels))
                if m
            },
        }
        environment = Environment(
            loader=FileSystemLoader(Path(__file__).parent),
            autoescape=select_autoescape(["html", "j2"]),
            keep_trailing_newline=True,
        )
        page = environment.get_template("index.html.j2").render(**context)
        (work / "index.html").write_text(page, encoding="utf-8")
        target = publication.commit({"run": str(out), "images": sorted(p.name for p in images.iterdir())})
    except BaseException:
        publication.abandon()
        raise
    return target / "index.html"


__all__ = ["build_report"]
