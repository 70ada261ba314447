"""Folding per-batch Great Expectations results into one per suite: validating a table in slices
and folding must say what validating it whole says."""

from __future__ import annotations

import json
from itertools import pairwise

import polars as pl
import pytest

from expectations.results import ValidationMerger, load_results
from expectations.runner import retained_by_gx, validate_batch
from transforms.contract import load_contract
from transforms.ingest.checks import add_row_flags
from transforms.ingest.delivery import inspect_delivery
from transforms.ingest.normalise import normalise, read_partition
from transforms.synth import FaultRates, SynthConfig, generate_delivery


@pytest.fixture(scope="module")
def checked_dbc(tmp_path_factory) -> pl.DataFrame:
    """The dbc rows of a small faulty delivery, normalised and flagged as the partition stage does."""
    out = tmp_path_factory.mktemp("fold") / "delivery"
    generate_delivery(
        SynthConfig(
            patients=600, seed=5, block_size=600, faults=FaultRates(duplicate=0.01, invalid_code=0.02, bsn_in_id=0.01)
        ),
        out,
    )
    plan = inspect_delivery(out)
    table = load_contract().table("dbc")
    frames = [normalise(read_partition(p), table).frame for p in plan.partitions["dbc"]]
    frame = pl.concat(frames).with_columns(pl.int_range(pl.len(), dtype=pl.Int64).alias("_row"))
    return add_row_flags(frame, table, plan.meta.data_as_of, load_contract())


def _by_check(result: dict) -> dict[str, dict]:
    return {r["expectation_config"]["meta"]["check"]: r for r in result["results"]}


def test_folding_slices_gives_the_counts_of_the_whole(checked_dbc):
    whole = validate_batch(checked_dbc, "dbc", "row", "whole").result
    merger = ValidationMerger()
    bounds = [0, 100, 900, checked_dbc.height]
    for i, (a, b) in enumerate(pairwise(bounds)):
        merger.absorb(validate_batch(checked_dbc.slice(a, b - a), "dbc", "row", f"slice-{i}").result)
    [folded] = merger.results()
    assert folded["meta"]["batches"] == 3 and folded["suite_name"] == whole["suite_name"]
    assert folded["success"] == whole["success"] is False  # the injected faults fail some checks
    assert folded["statistics"] == whole["statistics"]
    expected, got = _by_check(whole), _by_check(folded)
    assert expected.keys() == got.keys()
    failing = 0
    for check, want in expected.items():
        have = got[check]
        assert have["success"] == want["success"], check
        for key in ("element_count", "unexpected_count", "missing_count"):
            assert have["result"].get(key) == want["result"].get(key), (check, key)
        if "unexpected_percent" in want["result"]:
            assert have["result"]["unexpected_percent"] == pytest.approx(want["result"]["unexpected_percent"])
        failing += not want["success"]
        assert len(have["result"].get("partial_unexpected_list", [])) <= 20
    assert failing >= 2


def test_saved_results_fold_again_and_keep_their_batch_counts(checked_dbc, tmp_path):
    half = checked_dbc.height // 2
    first, second = ValidationMerger(), ValidationMerger()
    first.absorb(validate_batch(checked_dbc.slice(0, half), "dbc", "row", "a").result)
    second.absorb(validate_batch(checked_dbc.slice(half), "dbc", "row", "b").result)
    second.absorb(validate_batch(checked_dbc.slice(half), "dbc", "row", "c").result)
    paths = [first.save(tmp_path / "one.json"), second.save(tmp_path / "two.json"), tmp_path / "missing.json"]
    [folded] = load_results(paths)
    assert folded["meta"]["batches"] == 3
    unexpected = {c: r["result"].get("unexpected_count") for c, r in _by_check(folded).items()}
    single = {
        c: r["result"].get("unexpected_count")
        for c, r in _by_check(json.loads((tmp_path / "one.json").read_text())[0]).items()
    }
    assert all((unexpected[c] or 0) >= (single[c] or 0) for c in single)


def test_a_worker_keeps_no_copy_of_validated_batches(checked_dbc):
    """Neither the results store nor the execution engine hold on to a batch after validation
    (GX would keep the last pandas batch of every suite for the life of a worker)."""
    for i in range(3):
        validate_batch(checked_dbc, "dbc", "row", f"again-{i}")
        validate_batch(checked_dbc.slice(0, 50), "dbc", "row", f"slice-{i}")
    assert retained_by_gx() == {"stored_results": 0, "batch_data": 0, "batches": 0, "metrics": 0}
