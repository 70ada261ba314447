"""Exact money: euros as integer cents in computation, ``decimal128(12, 2)`` in parquet.

Why cents: a pipeline that sums float euros over hundreds of millions of lines drifts by cents and
cannot prove that money is conserved. Every transform works on int64 cents; only the edges convert,
and each conversion of a claim amount between euros and cents is here, once, so that ingest, the
episode engine and the generator cannot disagree about a cent:

- :func:`delivered_cents`: delivered amounts (Arrow decimal or float64) -> cents, exactly or flagged;
- :func:`decimal_cents`: a contract money column read with polars -> cents (an expression);
- :func:`cents_to_decimal`: cents -> ``decimal128(12, 2)``, to write the store or a delivery;
- :func:`exact_euros`: integer cents -> exact :class:`~decimal.Decimal` euros, for the books;
- :func:`euros_to_cents`: float euros (configured or computed prices) -> cents, rounded.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

import numpy as np
import numpy.typing as npt
import polars as pl
import pyarrow as pa

from transforms.contract import MONEY

#: decimal(12, 2) holds at most 10 digits before the decimal point: |cents| < 10**12
MAX_CENTS = 10**12


def delivered_cents(values: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Delivered euros (decimal of any scale, or float64) -> (cents int64, null mask, problem mask).

    An amount that is not a whole number of cents, not a number, or beyond decimal(12, 2) is a
    problem (its cents are 0): ingest quarantines it rather than guess. A float within a millionth
    of a euro of a whole cent, or the float nearest a whole cent, is that cent, because most cent
    values (0.1) have no exact float.
    Decimals are read from their 128-bit words (little-endian two's complement of the unscaled
    value), which is exact and avoids a Python object per value."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks else pa.array([], values.type)
    n = len(values)
    null = ~np.asarray(values.is_valid()) if n else np.zeros(0, dtype=bool)
    t = values.type
    if pa.types.is_decimal(t):
        scale = t.scale
        wide = values.cast(pa.decimal128(38, scale))
        words = np.frombuffer(wide.buffers()[1], dtype=np.int64)[2 * wide.offset : 2 * (wide.offset + n)]
        low, high = words[0::2], words[1::2]
        fits = high == np.where(low < 0, -1, 0)  # value fits in int64
        unscaled = low.copy()
        if scale <= 2:
            cents = unscaled * 10 ** (2 - scale)
            problem = ~fits | (np.abs(unscaled) >= MAX_CENTS // 10 ** (2 - scale))
        else:
            factor = 10 ** (scale - 2)
            cents = np.sign(unscaled) * ((np.abs(unscaled) + factor // 2) // factor)
            problem = ~fits | (unscaled % factor != 0) | (np.abs(cents) >= MAX_CENTS)
        problem &= ~null
        return np.where(null | problem, 0, cents), null, problem
    floats = np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.float64)
    scaled = floats * 100.0
    with np.errstate(invalid="ignore"):
        cents = np.round(scaled)
        # the double nearest a whole cent is that cent, however far apart doubles are at its size
        # (8724773567.03 EUR is 1.6e-4 cents from its float); below that size the tolerance
        # also takes floats that arithmetic has moved off the nearest double (0.1 + 0.2)
        nearest = (cents / 100.0) == floats
        problem = ~np.isfinite(scaled) | ((np.abs(scaled - cents) > 1e-4) & ~nearest) | (np.abs(cents) >= MAX_CENTS)
    problem &= ~null
    return np.where(null | problem, 0, cents).astype(np.int64), null, problem


def decimal_cents(column: str) -> pl.Expr:
    """A money column (``decimal(12, 2)`` euros, as the contract delivers and the store keeps it)
    -> int64 cents, exactly, as a polars expression so that lazy scans stay lazy.

    The cast to ``decimal(14, 2)`` first makes room for the two digits that ``* 100`` adds; the
    product is a whole number at scale 2, so the cast to Int64 drops only zeros."""
    return (pl.col(column).cast(pl.Decimal(14, 2)) * 100).cast(pl.Int64)


def cents_to_decimal(cents: np.ndarray, mask: np.ndarray | None = None) -> pa.Array:
    """int64 cents -> ``decimal128(12, 2)`` euros, exactly (no float on the way); ``mask``: nulls.

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


def exact_euros(cents: int) -> Decimal:
    """Integer cents -> the exact euros as a Decimal (``1999 -> Decimal('19.99')``): the books
    compare and print euros without a float in between."""
    return Decimal(cents).scaleb(-2)


def euros_to_cents(euros: npt.ArrayLike) -> np.ndarray | np.int64:
    """Float euros -> int64 cents (same shape; a scalar for a scalar), rounded half away from zero,
    the way a declaration rounds: ``0.125 -> 13``, ``-0.125 -> -13``, ``0.005 -> 1``.

    It takes floats (and integers), not Decimals or text: what needs rounding to the cent is a
    price typed into a configuration or computed in float arithmetic (a tariff grown by 2% a year),
    while exact amounts already have whole cents and go through :func:`delivered_cents` or
    :func:`decimal_cents`. A float is rounded as the decimal it prints as, its shortest repr
    (``Decimal(repr(x))``): ``1.005`` is 101 cents, although its binary value is
    1.00499999999999989..., because 1.005 is the amount that was written down; ``np.round(x * 100)``
    would give 100 (and rounds exact halves to even: 0.125 -> 12).

    Vectorised: away from a half cent the nearest integer of ``x * 100`` is that cent (the float
    error of ``x * 100`` and of the repr is below 2**-52 of the value), so only the few values within
    2**-48 of a half cent are rounded through Decimal. Raises ValueError for NaN, infinities and
    amounts beyond decimal(12, 2), and TypeError for anything that is not a number array."""
    values = np.asarray(euros)
    if values.dtype.kind not in "iuf":
        raise TypeError(f"euros_to_cents takes float euros, not {values.dtype} (exact amounts are already cents)")
    floats = values.astype(np.float64).ravel()
    scaled = floats * 100.0
    if not np.isfinite(scaled).all():
        raise ValueError("euros_to_cents: an amount is NaN or infinite")
    magnitude = np.abs(scaled)
    if (magnitude >= MAX_CENTS).any():
        raise ValueError("euros_to_cents: an amount is beyond decimal(12, 2)")
    cents = np.rint(scaled)
    near_half = np.abs(magnitude - np.floor(magnitude) - 0.5) <= magnitude * 2.0**-48
    for i in np.flatnonzero(near_half):
        exact = Decimal(repr(float(floats[i]))).scaleb(2)
        cents[i] = int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP))
    if (np.abs(cents) >= MAX_CENTS).any():
        raise ValueError("euros_to_cents: an amount is beyond decimal(12, 2)")
    return cents.astype(np.int64).reshape(values.shape)[()]
