"""Property tests of ``transforms.money``, the one path of money between euros and cents.

The references are independent of the code under test: Python's ``decimal`` module
(``Decimal.quantize`` with ``ROUND_HALF_UP``, which rounds half away from zero) and Arrow's own
decimal arrays built from Python Decimals.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from transforms.contract import MONEY
from transforms.money import MAX_CENTS, cents_to_decimal, decimal_cents, delivered_cents, euros_to_cents, exact_euros

#: the largest amount decimal(12, 2) holds, the contract's range for money
LARGEST = Decimal("9999999999.99")
CENT = Decimal("0.01")

amounts = st.decimals(min_value=-LARGEST, max_value=LARGEST, places=2, allow_nan=False, allow_infinity=False)
nullable_amounts = st.lists(st.one_of(st.none(), amounts), max_size=60)
PROPERTY = settings(max_examples=300, deadline=None)


def reference_cents(x: float) -> int:
    """Half away from zero to the cent of the decimal a float prints as, by the decimal module."""
    return int(Decimal(repr(float(x))).quantize(CENT, rounding=ROUND_HALF_UP).scaleb(2))


# ------------------------------------------------------------------ decimal128 <-> cents, exactly
@PROPERTY
@given(nullable_amounts, st.integers(min_value=0, max_value=5))
def test_decimal128_to_cents_and_back_is_exact_over_the_contract_range(values, offset):
    array = pa.array([None] * offset + values, MONEY).slice(offset)  # a slice: the words start later
    cents, null, problem = delivered_cents(array)
    assert not problem.any()
    assert null.tolist() == [v is None for v in values]
    assert cents.tolist() == [0 if v is None else int(v * 100) for v in values]
    back = cents_to_decimal(cents, null)
    assert back.type == MONEY and back.to_pylist() == values
    assert back.equals(array)


@PROPERTY
@given(nullable_amounts)
def test_the_polars_expression_gives_the_same_cents(values):
    frame = pl.from_arrow(pa.table({"amount": pa.array(values, MONEY)}))
    got = frame.select(decimal_cents("amount")).to_series().to_list()
    assert got == [None if v is None else int(v * 100) for v in values]


@PROPERTY
@given(amounts)
def test_exact_euros_of_the_cents_is_the_amount(value):
    cents, _, _ = delivered_cents(pa.array([value], MONEY))
    euros = exact_euros(int(cents[0]))
    assert euros == value and euros.as_tuple().exponent == -2


def test_the_ends_of_the_range_and_beyond():
    edge = [LARGEST, -LARGEST, CENT, -CENT, Decimal("0.00")]
    cents, _, problem = delivered_cents(pa.array(edge, MONEY))
    assert cents.tolist() == [MAX_CENTS - 1, -(MAX_CENTS - 1), 1, -1, 0] and not problem.any()
    assert cents_to_decimal(cents).to_pylist() == edge
    beyond = pa.array([Decimal("10000000000.00"), Decimal("-10000000000.00"), Decimal("1.00")], pa.decimal128(13, 2))
    cents, _, problem = delivered_cents(beyond)
    assert problem.tolist() == [True, True, False] and cents.tolist() == [0, 0, 100]
    with pytest.raises(ValueError):
        euros_to_cents(10_000_000_000.0)
    with pytest.raises(ValueError):
        euros_to_cents(9_999_999_999.995)  # rounds to 10**12 cents


def test_exact_euros_prints_two_decimals():
    assert [str(exact_euros(c)) for c in (0, 1, -5, 1999, -100, MAX_CENTS - 1)] == [
        "0.00",
        "0.01",
        "-0.05",
        "19.99",
        "-1.00",
        "9999999999.99",
    ]


# ---------------------------------------------------------------------------------- sums in cents
@PROPERTY
@given(st.lists(amounts, max_size=80))
def test_sums_in_cents_equal_the_decimal_sum(values):
    cents, _, _ = delivered_cents(pa.array(values, MONEY))
    total = int(cents.sum())
    assert exact_euros(total) == sum(values, Decimal(0))
    frame = pl.from_arrow(pa.table({"amount": pa.array(values, MONEY)}))
    assert int(frame.select(decimal_cents("amount").sum()).item() or 0) == total


# ------------------------------------------------------------------- float euros -> cents, rounded
@pytest.mark.parametrize(
    ("euros", "cents"),
    [
        (0.125, 13),
        (-0.125, -13),
        (0.005, 1),
        (-0.005, -1),
        (0.015, 2),
        (-0.015, -2),
        (2.675, 268),
        (-2.675, -268),  # binary 2.67499999999999982236431605997495353221893310546875
        (1.005, 101),
        (-1.005, -101),  # binary 1.00499999999999989341858963598497211933135986328125
        (5.865, 587),  # 5.75 grown by 2%: a GP tariff of 2024
        (0.0, 0),
        (-0.0, 0),
        (0.1, 10),
        (19.99, 1999),
        (0.994999, 99),
        (0.995, 100),
        (12.5, 1250),
        (7, 700),
        (9_999_999_999.99, MAX_CENTS - 1),
        (-9_999_999_999.985, -(MAX_CENTS - 1)),
    ],
)
def test_hand_computed_cents(euros, cents):
    assert euros_to_cents(euros) == cents
    assert euros_to_cents([euros]).tolist() == [cents]


@PROPERTY
@given(st.floats(min_value=-9_999_999_999.98, max_value=9_999_999_999.98, allow_nan=False, allow_infinity=False))
def test_rounding_matches_decimal_half_up(x):
    assert int(euros_to_cents(x)) == reference_cents(x)


@PROPERTY
@given(st.integers(min_value=-(MAX_CENTS - 1), max_value=MAX_CENTS - 2))
def test_half_cents_round_away_from_zero(whole):
    """Every half cent of the range, and the floats next to it."""
    half = Decimal(10 * whole + 5).scaleb(-3)  # whole + 0.5 cents
    x = float(half)
    assert Decimal(repr(x)) == half  # at most 13 digits: the float prints as the half cent
    expected = whole + 1 if whole >= 0 else whole
    assert int(euros_to_cents(x)) == expected == reference_cents(x)
    for near in (np.nextafter(x, np.inf), np.nextafter(x, -np.inf)):
        assert int(euros_to_cents(near)) == reference_cents(near)


@PROPERTY
@given(st.lists(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False), max_size=40))
def test_arrays_round_like_their_elements(xs):
    got = euros_to_cents(np.array(xs, dtype=np.float64))
    assert got.dtype == np.int64 and got.shape == (len(xs),)
    assert got.tolist() == [reference_cents(x) for x in xs]


def test_what_is_not_a_float_amount_is_refused():
    for bad in (float("nan"), float("inf"), -float("inf")):
        with pytest.raises(ValueError):
            euros_to_cents([1.0, bad])
    with pytest.raises(TypeError):
        euros_to_cents([Decimal("0.125")])
    with pytest.raises(TypeError):
        euros_to_cents("0.125")


# -------------------------------------------------------------------- delivered floats, not rounded
def test_delivered_floats_convert_only_when_they_are_whole_cents():
    cents, null, problem = delivered_cents(pa.array([0.1, -19.99, 0.125, 1.005, None, float("nan"), 1e10]))
    assert cents.tolist() == [10, -1999, 0, 0, 0, 0, 0]
    assert problem.tolist() == [False, False, True, True, False, True, True]
    assert null.tolist() == [False, False, False, False, True, False, False]


@PROPERTY
@given(st.lists(amounts, max_size=40))
@example([Decimal("8724773567.03"), Decimal("-99999999.99"), Decimal("0.30")])  # doubles 1.6e-4 cents apart
def test_delivered_floats_of_whole_cents_are_those_cents(values):
    cents, _, problem = delivered_cents(pa.array([float(v) for v in values], pa.float64()))
    assert not problem.any() and cents.tolist() == [int(v * 100) for v in values]
