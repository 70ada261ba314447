"""Render ``docs/panels.md``, the data dictionary of the panels, from the table declarations in
``transforms/panels/tables/``. Regenerate with ``python -m transforms.panels.docs``; a test fails
when the committed file differs, so the dictionary cannot drift from the files."""

from __future__ import annotations

from pathlib import Path

from transforms.panels.tables import PANEL_TABLES

DOCS_PATH = Path(__file__).resolve().parents[2] / "docs" / "panels.md"

INTRO = """# Panels: data dictionary

Generated from `transforms/panels/tables/*.yml` by `python -m transforms.panels.docs`; do not edit by
hand (a test compares). Built by `zorgpad panels --store STORE --episodes EPISODES --out PANELS`.

```
PANELS/manifest.json                  inputs (store and episodes manifests, hashes), options, row counts,
                                      statuses left out, data_as_of, versions, timings
PANELS/<table>/bundle_id=<id>/[year=<y>/]part-0.parquet   every table below, Hive-partitioned
PANELS/funnel_plots/bundle_id=<id>/year=<y>/<cost_basis>.png   one funnel plot per bundle, year and basis
```

Money is integer cents, rounded half away from zero once; divide by 100 for euros. Every table has a
declared grain and key: the key is unique, and the rows are sorted by partition and key, so a
rebuild from the same store and episodes gives the same bytes. Query one table with its partitions,
for example in DuckDB:

```sql
SELECT * FROM read_parquet('PANELS/benchmark/**/*.parquet', hive_partitioning = true)
WHERE bundle_id = 'hip_oa' AND year = 2019 AND level = 'provider' AND outlier IS NOT NULL;
```
"""


def render() -> str:
    lines = [INTRO]
    for table in PANEL_TABLES.values():
        lines += table.markdown()
    return "\n".join(lines)


if __name__ == "__main__":
    DOCS_PATH.write_text(render(), encoding="utf-8")
    print(f"wrote {DOCS_PATH}")
