"""Small-cell suppression for published panels, with complementary suppression.

A cell describing fewer than ``min_cell`` episodes is not published (its values are null and
``suppressed`` is true). That alone is not enough: the cells of one comparison group add up to
published totals (the providers of a province to the province, the provinces and the providers to
the country), and a total minus the published cells gives back a lone withheld cell. So, within
every total that is published, the number of withheld parts must be zero or at least two: where it
is one, the smallest published part is withheld as well (``complementary``), or, when there is no
other part, the total itself. A province is the exception: it is itself withheld instead when that
hides fewer provider episodes (another province is withheld already, or the next province to go
has a smaller provider than the one that would go here), because the providers are what a benchmark
compares: a province of one large hospital and one small ZBC then loses its province row, not its
hospital. A withheld total must in turn keep at least one of its parts withheld (its published
parts would add up to it). This repeats until nothing changes (a withheld total can make its own
total need a complement).

The hierarchy of a group: ``level`` ``national`` (one cell) over ``region`` cells (by
``region_code``) over ``provider`` cells (each with its ``region_code``); the national total is the
sum of the provinces and also of all providers. A group may lack the region level (then providers
add up to the country directly).
"""

from __future__ import annotations

import polars as pl

SMALL_CELL = "small_cell"
COMPLEMENTARY = "complementary"
DEFAULT_MIN_CELL = 10


def _part_sets(levels: list[str], regions: list[str | None]) -> list[tuple[int | None, list[int]]]:
    """(index of a total, indices of its parts) for every published total of one group."""
    national = [i for i, lv in enumerate(levels) if lv == "national"]
    region_cells = {regions[i]: i for i, lv in enumerate(levels) if lv == "region"}
    providers = [i for i, lv in enumerate(levels) if lv == "provider"]
    sets: list[tuple[int | None, list[int]]] = []
    top = national[0] if national else None
    if top is not None:
        sets.append((top, providers))
        if region_cells:
            sets.append((top, sorted(region_cells.values())))
    for region, total in sorted(region_cells.items(), key=lambda kv: str(kv[0])):
        sets.append((total, [i for i in providers if regions[i] == region]))
    return sets


def suppression_flags(levels: list[str], regions: list[str | None], n: list[int], min_cell: int) -> list[str | None]:
    """The suppression reason of every cell of one group (None = published); see the module
    docstring. Ties between equally small candidates for a complement go to the first cell in the
    given order, so the result is deterministic."""
    reason: list[str | None] = [SMALL_CELL if (count or 0) < min_cell else None for count in n]
    sets = _part_sets(levels, regions)
    parts_of = {total: parts for total, parts in sets if total is not None and levels[total] == "region"}
    national = next((i for i, lv in enumerate(levels) if lv == "national"), None)

    def size(i: int) -> int:
        return n[i] or 0

    def region_cost(region: int) -> tuple[int, int, int]:
        """Provider episodes lost if ``region`` is withheld as a complement: none when one of its
        providers is withheld already (it then has two, and keeps them), else its smallest provider's."""
        published = [i for i in parts_of.get(region, []) if reason[i] is None]
        if len(published) < len(parts_of.get(region, [])) or not published:
            return 0, size(region), region
        return min(size(i) for i in published), size(region), region

    def complement(total: int, candidates: list[int]) -> int:
        """The part to withhold next to a lone withheld part of the published ``total``: the smallest
        published part, or, for a province, the province itself when withholding it (and the
        province the country's total then needs) hides fewer provider episodes. Providers are what
        a benchmark compares; a province row is a summary."""
        if not candidates:
            return total
        if levels[total] == "region" and national is not None and reason[national] is None:
            regions_ = [r for r in parts_of if r != total]
            withheld = [r for r in regions_ if reason[r] is not None]
            cost = 0 if withheld else min((region_cost(r)[0] for r in regions_ if reason[r] is None), default=None)
            if cost is not None and cost < min(size(i) for i in candidates):
                return total
        if all(levels[i] == "region" for i in candidates):
            return min(candidates, key=region_cost)
        return min(candidates, key=lambda i: (size(i), i))

    changed = True
    while changed:
        changed = False
        for total, parts in sets:
            if total is None or not parts:
                continue
            withheld = [i for i in parts if reason[i] is not None]
            candidates = [i for i in parts if reason[i] is None]
            if reason[total] is None:
                if len(withheld) != 1:
                    continue  # none withheld, or two or more: the total gives only their sum away
                pick = complement(total, candidates)
            else:
                if withheld or not candidates:
                    continue  # a withheld total whose parts were all published is their sum
                pick = min(candidates, key=lambda i: (size(i), i))
            reason[pick] = COMPLEMENTARY
            changed = True
    return reason


def suppress(
    cells: pl.DataFrame,
    group: list[str],
    value_columns: list[str],
    *,
    n_column: str = "n_episodes",
    min_cell: int = DEFAULT_MIN_CELL,
) -> pl.DataFrame:
    """``cells`` with ``suppressed`` and ``suppression_reason`` added and ``value_columns`` (and
    ``n_column``) null where withheld. Each group (``group`` columns) holds the ``level``,
    ``region_code`` and ``n_column`` of its cells; the row order inside a group decides ties."""
    if cells.height == 0:
        return cells.with_columns(
            pl.lit(None, pl.Boolean).alias("suppressed"), pl.lit(None, pl.String).alias("suppression_reason")
        )
    indexed = cells.with_row_index("_order")
    reasons: list[pl.DataFrame] = []
    for _, part in indexed.group_by(group, maintain_order=True):
        flags = suppression_flags(
            part["level"].to_list(), part["region_code"].to_list(), part[n_column].to_list(), min_cell
        )
        reasons.append(
            pl.DataFrame(
                {"_order": part["_order"], "suppression_reason": flags},
                schema={"_order": pl.UInt32, "suppression_reason": pl.String},
            )
        )
    flagged = indexed.join(pl.concat(reasons), on="_order", how="left").sort("_order").drop("_order")
    hidden = pl.col("suppression_reason").is_not_null()
    return flagged.with_columns(
        *[pl.when(hidden).then(None).otherwise(pl.col(c)).alias(c) for c in [n_column, *value_columns]],
        hidden.alias("suppressed"),
    )
