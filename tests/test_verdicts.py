"""Verdict files and their Great Expectations batches: the rows the routing fails are the rows GX
finds unexpected, counts add up over files, and examples keep batch order."""

from __future__ import annotations

from collections import Counter

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from expectations.suites import suite_checks
from transforms.ingest.validation_stage import validate_verdicts
from transforms.ingest.verdicts import (
    VerdictFile,
    combined_examples,
    failing_rows,
    read_verdicts,
    validation_batches,
    write_verdicts,
)

CHECKS = suite_checks("gp", "row")


def _frame(verdicts: dict[str, list[bool | None]], n: int) -> pl.DataFrame:
    columns = {"_row": list(range(n))}
    for check in CHECKS:
        columns[check.flag] = verdicts.get(check.id, [True] * n)
    return pl.DataFrame(columns, schema={"_row": pl.Int64, **{c.flag: pl.Boolean for c in CHECKS}})


def test_failing_rows_are_the_false_verdicts_not_the_missing_ones():
    first, second = CHECKS[0], CHECKS[1]
    frame = _frame({first.id: [True, False, None, False], second.id: [None, None, None, None]}, 4)
    failing = failing_rows(frame, CHECKS)
    assert failing[first.id].tolist() == [1, 3]
    assert failing[second.id].tolist() == []
    assert set(failing) == {c.id for c in CHECKS}


def test_validation_batches_group_per_table_in_batch_order_and_size():
    files = [VerdictFile("gp", "row", f"p{i}", f"/x/{i}", rows) for i, rows in enumerate([5, 4, 3, 9, 1])]
    files.append(VerdictFile("dbc", "row", "p0", "/y/0", 2))
    batches = validation_batches(reversed(files), rows=8)
    assert [[f.batch for f in b] for b in batches] == [["p0"], ["p0"], ["p1", "p2"], ["p3"], ["p4"]]
    assert [b[0].table for b in batches] == ["dbc", "gp", "gp", "gp", "gp"]


def test_combined_examples_keep_batch_order_and_sum_counts():
    a = VerdictFile(
        "gp", "row", "p0", "", 1, {"c": (["x", "y"], [{"value": "x", "count": 2}, {"value": "y", "count": 1}])}
    )
    b = VerdictFile("gp", "row", "p1", "", 1, {"c": (["y"], [{"value": "y", "count": 4}])})
    first, counts = combined_examples([a, b])["c"]
    assert first == ["x", "y", "y"]
    assert counts == [{"value": "y", "count": 5}, {"value": "x", "count": 2}]


@settings(max_examples=15, deadline=None)
@given(
    st.lists(
        st.lists(st.sampled_from([True, True, True, False, None]), min_size=1, max_size=40), min_size=1, max_size=3
    )
)
def test_gx_finds_exactly_the_routed_rows_over_several_files(tmp_path_factory, parts):
    """Each file's first check gets the generated verdicts; GX validates the files as one batch, and
    its counts are those of the verdicts (False unexpected, None missing)."""
    folder = tmp_path_factory.mktemp("verdicts")
    check = CHECKS[0]
    files = []
    for i, verdicts in enumerate(parts):
        frame = _frame({check.id: verdicts}, len(verdicts))
        path = folder / f"p{i}.parquet"
        files.append(VerdictFile("gp", "row", f"p{i}", str(path), write_verdicts(frame, CHECKS, path)))
    everything = [v for part in parts for v in part]
    combined = read_verdicts(files)
    assert combined.height == len(everything)
    assert failing_rows(combined, [check])[check.id].tolist() == [i for i, v in enumerate(everything) if v is False]

    validation = validate_verdicts(files)  # raises ValidationDisagreement if GX saw other rows
    by_check = {r["expectation_config"]["meta"]["check"]: r for r in validation.result["results"]}
    counts = Counter(everything)
    result = by_check[check.id]["result"]
    assert result["element_count"] == len(everything)
    assert result["unexpected_count"] == counts[False]
    assert result["missing_count"] == counts[None]
    assert by_check[check.id]["success"] is (counts[False] == 0)
    assert all(by_check[c.id]["result"]["unexpected_count"] == 0 for c in CHECKS[1:])
    assert validation.rows == len(everything)
    assert validation.result["meta"]["batch"] == ("p0" if len(parts) == 1 else f"p0..p{len(parts) - 1}")
