"""Render ``docs/maturity.md``, the data dictionary of ``zorgpad maturity``, from the table declarations
in ``transforms/maturity/tables/``. Regenerate with ``python -m transforms.maturity.docs``; a test
fails when the committed file differs."""

from __future__ import annotations

from pathlib import Path

from transforms.maturity.tables import ORDER, table

DOCS_PATH = Path(__file__).resolve().parents[2] / "docs" / "maturity.md"

INTRO = """# Claims maturity: data dictionary

Generated from `transforms/maturity/tables/*.yml` by `python -m transforms.maturity.docs`; do not edit
by hand (a test compares). Built by `zorgpad maturity --store STORE --out DIR [--mature-at 0.95]`.

```
DIR/manifest.json                          the store (path, run id, manifest SHA-256, delivery id), data_as_of,
                                           the last complete month, options, per claim table the lines and cents
                                           used and left out, row counts, code version, timings
DIR/<table>/claim_table=<t>/part-0.parquet every table below, Hive-partitioned by claim table
```

Declarations arrive months after care, so the latest months of a delivery look lower than they will
be. Per claim table (`dbc`, `gp`, `pharmacy`, `paramedical`, `maternity`) the declaration triangle
counts the lines and euros of each **service month** by the month they were **declared**, and the
chain-ladder estimates from the older months how much of each recent month is still to come.

How lines are counted:

- **Service month**: the month of `service_date` for the first-line tables; for `dbc` the month of
  `end_date`, the day the subtraject closes: it can only be declared from then on (the contract checks
  `end_date <= declared_on`), and its price is that of its closing date. A subtraject's declaration
  lag is then the insurer's processing time alone, not its length (up to a year). The DBC months after
  the delivery's last year hold the subtrajecten that started in it and closed later.
- **Declaration month**: the month of the **original** line's `declared_on`. A stored line is one
  service, netted by ingest with its credits and re-declarations; its stored `declared_on` is the
  latest of its group, so for a corrected line the original's date is taken from the store's
  corrections audit (`corrections/`, the merged lines; where the original is the stored line itself,
  the earliest date known of its group). A correction never moves a line to a later month.
- **Euros**: each line's net amount (integer cents), counted at its original's declaration. A
  credit arriving later changes the cents of the original's cell, as seen at data_as_of.
- **Fully credited** lines (withdrawn to zero) are no service and count nowhere.
- **Truncation**: a cell is observed when its declaration month lies wholly on or before
  `data_as_of` (the last complete month: `data_as_of`'s month when it is the month's last day, else
  the month before). Lines declared in a later, partial month are left out (the manifest counts them).

The chain-ladder, with `C(m, k)` the cumulative lines (or cents) of service month `m` declared within
`k` development months:

- `f_k = sum C(m, k+1) / sum C(m, k)` over the service months with both ages observed (volume
  weighted); estimated when at least 6 service months have both ages (`min_service_months` in the
  manifest), else 1: beyond the last age with enough data the tail factor is 1, i.e. what has not
  been declared by then is assumed never to come. With a short delivery (a year or two) the slow
  tail of hospital declarations beyond the observed ages is then missed;
- cumulative factor `F_k = f_k x f_(k+1) x ...`, completion `1 / F_k`, estimated ultimate
  `C(m, r) x F_r` for a service month with `r` months of run-out;
- a service month or period is `mature` when its completion in lines **and** in cents is at least
  `--mature-at` (0.95); a period's completion is its observed total over the sum of its months'
  estimated ultimates.

Known limits: credits that arrive after data_as_of are not known, so a recent month's lines and
cents include lines that will later be withdrawn (with the generator's 1% credit rate, about 0.3% of
lines); a delivery that dates its late declarations `data_as_of` instead of leaving them out (`zorgpad
synth --clean`) has its whole tail in the last month, and its completion is meaningless.

```sql
-- DuckDB: which recent hospital months are not yet mature?
SELECT service_month, runout_months, round(completion_cents, 3) AS completion, mature
FROM read_parquet('DIR/completion/**/*.parquet', hive_partitioning = true)
WHERE claim_table = 'dbc' AND NOT mature ORDER BY service_month;
```
"""


def render() -> str:
    lines = [INTRO]
    for name in ORDER:
        lines += table(name).markdown()
    return "\n".join(lines)


if __name__ == "__main__":
    DOCS_PATH.write_text(render(), encoding="utf-8")
    print(f"wrote {DOCS_PATH}")
