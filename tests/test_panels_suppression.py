"""Small-cell suppression: no withheld value can be recomputed from the published ones.

A withheld cell value x is recomputable exactly when the published totals pin it down: with the
withheld cells as unknowns, every published total gives one linear equation (its parts add up to
it), and x is determined iff its unit vector lies in the row space of those equations. The property
test checks that with numpy's matrix rank on random hierarchies."""

from __future__ import annotations

import numpy as np
import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from transforms.panels.suppression import COMPLEMENTARY, SMALL_CELL, suppress, suppression_flags


def _group(regions: list[list[int]], with_regions: bool) -> tuple[list[str], list[str | None], list[int]]:
    levels, codes, n = ["national"], [None], [sum(sum(r) for r in regions)]
    for r, sizes in enumerate(regions):
        if with_regions:
            levels.append("region")
            codes.append(f"PV{r}")
            n.append(sum(sizes))
        for size in sizes:
            levels.append("provider")
            codes.append(f"PV{r}")
            n.append(size)
    return levels, codes, n


def _recomputable(levels, codes, reasons) -> list[int]:
    """Indices of withheld cells whose value the published totals determine."""
    hidden = [i for i, r in enumerate(reasons) if r is not None]
    if not hidden:
        return []
    column = {cell: j for j, cell in enumerate(hidden)}
    rows = []
    national = levels.index("national")
    providers = [i for i, lv in enumerate(levels) if lv == "provider"]
    region_cells = {codes[i]: i for i, lv in enumerate(levels) if lv == "region"}
    sets = [(national, providers)]
    if region_cells:
        sets.append((national, list(region_cells.values())))
    sets += [(total, [i for i in providers if codes[i] == code]) for code, total in region_cells.items()]
    for total, parts in sets:
        if reasons[total] is not None:
            continue  # the total is withheld: no equation (its value is unknown and not published)
        row = np.zeros(len(hidden))
        for p in parts:
            if p in column:
                row[column[p]] = 1.0
        rows.append(row)
    # a withheld total that is itself a part of a published total appears in that equation; its own
    # parts relate to it: total - sum(parts) = 0 with the total unknown
    for total, parts in sets:
        if reasons[total] is None or total == national:
            continue
        row = np.zeros(len(hidden))
        row[column[total]] = 1.0
        for p in parts:
            if p in column:
                row[column[p]] -= 1.0
        rows.append(row)
    if not rows:
        return []
    system = np.array(rows)
    rank = np.linalg.matrix_rank(system)
    determined = []
    for cell, j in column.items():
        unit = np.zeros(len(hidden))
        unit[j] = 1.0
        if np.linalg.matrix_rank(np.vstack([system, unit])) == rank:
            determined.append(cell)
    return determined


@settings(max_examples=400, deadline=None)
@given(
    st.lists(st.lists(st.integers(0, 40), min_size=1, max_size=6), min_size=1, max_size=5),
    st.booleans(),
    st.integers(1, 15),
)
def test_no_withheld_value_can_be_recomputed_from_published_totals(regions, with_regions, min_cell):
    levels, codes, n = _group(regions, with_regions)
    reasons = suppression_flags(levels, codes, n, min_cell)
    assert all((r == SMALL_CELL) == (count < min_cell) for r, count in zip(reasons, n) if r != COMPLEMENTARY)
    assert _recomputable(levels, codes, reasons) == []


def test_one_small_provider_takes_the_next_smallest_with_it():
    levels, codes, n = _group([[3, 50, 20], [40, 45]], with_regions=True)
    reasons = suppression_flags(levels, codes, n, 10)
    by_n = dict(zip(n[1:], reasons[1:]))  # sizes are distinct here
    assert by_n[3] == SMALL_CELL and by_n[20] == COMPLEMENTARY
    assert by_n[50] is None and by_n[40] is None and by_n[45] is None and reasons[0] is None


def test_a_region_of_one_small_provider_is_withheld_with_it_and_another_region_too():
    levels, codes, n = _group([[4], [40, 45], [60]], with_regions=True)
    reasons = suppression_flags(levels, codes, n, 10)
    assert reasons[1] == SMALL_CELL and reasons[2] == SMALL_CELL  # region PV0 (n=4) and its provider
    withheld_regions = [c for c, lv, r in zip(codes, levels, reasons) if lv == "region" and r]
    assert len(withheld_regions) == 2, "the country minus the other regions would give PV0 back"


def test_suppress_nulls_the_values_of_withheld_cells():
    cells = pl.DataFrame(
        {
            "year": [2019] * 4,
            "level": ["national", "provider", "provider", "provider"],
            "region_code": [None, "PV1", "PV1", "PV1"],
            "unit": ["NL", "A", "B", "C"],
            "n_episodes": [63, 3, 30, 30],
            "observed_cents": [630, 30, 300, 300],
        }
    )
    out = suppress(cells, ["year"], ["observed_cents"], min_cell=10)
    assert out["suppressed"].to_list() == [False, True, True, False]
    assert out["observed_cents"].to_list() == [630, None, None, 300]
    assert out["n_episodes"].to_list() == [63, None, None, 30]


def test_a_province_of_one_large_and_one_small_provider_loses_its_row_not_its_hospital():
    """Provinces of one hospital and one small ZBC each: withholding the province rows protects the
    small ZBCs (two withheld provinces protect each other in the country's total) and keeps every
    hospital in the benchmark."""
    levels, codes, n = _group([[60, 4], [50, 3], [30, 25]], with_regions=True)
    reasons = suppression_flags(levels, codes, n, 10)
    published_providers = [count for lv, count, r in zip(levels, n, reasons) if lv == "provider" and r is None]
    assert sorted(published_providers) == [25, 30, 50, 60]
    assert [r for lv, c, r in zip(levels, codes, reasons) if lv == "region"] == [COMPLEMENTARY, COMPLEMENTARY, None]
    assert _recomputable(levels, codes, reasons) == []
