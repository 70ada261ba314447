"""Text normalisation and the patient hash on generated values: a blank is what stripping
whitespace would empty, leading zeros are restored only on short all-digit codes, and FNV-1a is
the published algorithm on every layout of the Arrow string buffers."""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from transforms.contract import load_contract
from transforms.ingest.keys import fnv1a64
from transforms.ingest.normalise import normalise

PROPERTY = settings(max_examples=200, deadline=None)
WHITESPACE = " \t\n\r\x0b\x0c\u00a0\u2003\u3000\u200b\x1c"
TEXT = st.one_of(
    st.none(),
    st.text(alphabet=st.sampled_from(WHITESPACE + "0123456789aé"), max_size=8),
    st.text(max_size=6),
)


def _reference_fnv(value: str | None) -> int:
    h = 0xCBF29CE484222325
    for byte in (value or "").encode():
        h = ((h ^ byte) * 0x100000001B3) % 2**64
    return h


def _table_with_text(values: list[str | None]):
    """A providers partition whose ``provider_agb`` (a code of fixed length) holds ``values``."""
    table = load_contract().table("providers")
    columns = {}
    for col in table.columns:
        if col.name == "provider_agb":
            columns[col.name] = pa.array(values, pa.string())
        else:
            columns[col.name] = pa.nulls(len(values), col.arrow_type)
    return table, pa.table(columns)


@PROPERTY
@given(st.lists(TEXT, min_size=1, max_size=30))
def test_blank_and_padding_follow_their_definitions(values):
    table, raw = _table_with_text(values)
    length = table.column("provider_agb").length
    out = normalise(raw, table)
    series = pl.Series(values, dtype=pl.String)
    blank = (series.str.strip_chars().str.len_bytes() == 0).fill_null(False)
    assert out.blank_to_null.get("provider_agb", 0) == int(blank.sum())
    expected = [
        None if v is None or b else (v.zfill(length) if v.isascii() and v.isdigit() and len(v) < length else v)
        for v, b in zip(values, blank.to_list())
    ]
    assert out.frame["provider_agb"].to_list() == expected
    padded = sum(1 for v, b in zip(values, blank) if v and not b and v.isascii() and v.isdigit() and len(v) < length)
    assert out.padded.get("provider_agb", 0) == padded


@PROPERTY
@given(
    st.lists(st.one_of(st.none(), st.text(max_size=12)), max_size=40),
    st.integers(min_value=0, max_value=5),
    st.integers(min_value=0, max_value=30),
    st.text(alphabet="ABC0123456789", min_size=0, max_size=14),
)
def test_fnv1a64_is_the_published_hash_on_every_buffer_layout(values, start, fixed_count, fixed):
    """Mixed lengths with nulls, a slice (an offset into the buffers) and ids all of one length
    (the fast path) hash as the byte-by-byte definition; nulls hash as the empty string."""
    same_length = [fixed] * fixed_count
    for sample in (values, values[start:], same_length):
        series = pl.Series(sample, dtype=pl.String)
        assert fnv1a64(series).tolist() == [_reference_fnv(v) for v in sample]
    sliced = pa.array(["x" * 3] * 10 + ["abcdefgh"] * 10, pa.string()).slice(start + 8, 7)
    assert fnv1a64(sliced).tolist() == [_reference_fnv(v) for v in sliced.to_pylist()]
    assert fnv1a64(pl.Series(same_length, dtype=pl.String)).dtype == np.uint64
