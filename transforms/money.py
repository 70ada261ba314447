"""Exact money: euros as integer cents in computation, ``decimal128(12, 2)`` in parquet.

Why cents: a pipeline that sums float euros over hundreds of millions of lines drifts by cents and
cannot prove that money is conserved. Every transform works on int64 cents; only the edges convert.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from transforms.contract import MONEY


def cents_to_decimal(cents: np.ndarray, mask: np.ndarray | None = None) -> pa.Array:
    """int64 cents -> ``decimal128(12, 2)`` euros, exactly (no float on the way).

    A decimal128 value is a 128-bit little-endian two's-complement integer of the unscaled value, so
    the cents are the unscaled value and the high 64 bits are the sign extension.
    """
    cents = np.ascontiguousarray(cents, dtype=np.int64)
    words = np.empty((cents.size, 2), dtype=np.int64)
    words[:, 0] = cents
    words[:, 1] = np.where(cents < 0, -1, 0)
    validity = None
    null_count = 0
    if mask is not None and mask.any():
        validity = pa.array(~mask, type=pa.bool_()).buffers()[1]
        null_count = int(mask.sum())
    return pa.Array.from_buffers(MONEY, cents.size, [validity, pa.py_buffer(words.tobytes())], null_count=null_count)


def decimal_to_cents(array: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """``decimal128(p, 2)`` euros -> int64 cents (nulls become 0; check nulls separately)."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if array.type.scale != 2:
        array = array.cast(pa.decimal128(array.type.precision + 2 - array.type.scale, 2))
    words = np.frombuffer(array.buffers()[1], dtype=np.int64)[2 * array.offset : 2 * (array.offset + len(array))]
    cents = words[0::2].copy()
    if array.null_count:
        cents[~np.asarray(array.is_valid())] = 0
    return cents


def euros_to_cents(euros: np.ndarray) -> np.ndarray:
    """float euros -> int64 cents, rounding half away from zero (the way a declaration rounds)."""
    return np.round(np.asarray(euros, dtype=np.float64) * 100.0).astype(np.int64)
