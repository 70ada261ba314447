"""The code-list check (``code_valid``): the hash lookup that decides it gives the verdict of a
join of every line with the code list (the plain relational reading of the rule, kept here as the
reference), for lists with or without a scope and with several validity periods per code; and the
row flags agree with the code list's own ``is_valid`` on real codes."""

from __future__ import annotations

from datetime import date

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from transforms.contract import load_contract
from transforms.ingest.checks import add_row_flags, valid_by_lookup

CODES = st.sampled_from(["A1", "A2", "B7", "C0", "ZZ"])
SCOPES = st.sampled_from(["0303", "0305", "0320"])
DAYS = st.none() | st.dates(date(2015, 1, 1), date(2022, 12, 31))
GP_CASES = [("12000", 2021), ("12000", 2022), ("12010", 2021), ("12010", 2022)]


def valid_by_join(values: pl.DataFrame, ref: pl.DataFrame, keys: list[str]) -> pl.Series:
    """Reference: every line joined with every period of its code (and scope); valid if one of
    them holds its date (a null date: any period); a null code passes."""
    lines = values.with_row_index("_line")
    joined = lines.join(ref, on=keys, how="left", nulls_equal=False)
    holds = pl.col("_hit").fill_null(False) & (
        pl.col("_on").is_null()
        | (
            (pl.col("valid_from").is_null() | (pl.col("valid_from") <= pl.col("_on")))
            & (pl.col("valid_to").is_null() | (pl.col("valid_to") >= pl.col("_on")))
        )
    )
    verdict = joined.group_by("_line").agg((holds.any() | pl.col("_code").first().is_null()).alias("_ok"))
    return lines.join(verdict, on="_line", how="left").sort("_line")["_ok"]


@st.composite
def code_list(draw, scoped: bool) -> pl.DataFrame:
    rows = draw(st.lists(st.tuples(CODES, SCOPES if scoped else st.none(), DAYS, DAYS), max_size=12))
    periods = [(c, s, *sorted([a, b], key=lambda d: d or date.min)) for c, s, a, b in rows]
    return pl.DataFrame(
        periods,
        schema={"_code": pl.String, "_scope": pl.String, "valid_from": pl.Date, "valid_to": pl.Date},
        orient="row",
    ).with_columns(pl.lit(True).alias("_hit"))


@settings(max_examples=300, deadline=None)
@given(
    st.booleans().flatmap(
        lambda scoped: st.tuples(
            st.just(scoped),
            code_list(scoped),
            st.lists(st.tuples(st.none() | CODES, st.none() | SCOPES, DAYS), max_size=40),
        )
    )
)
def test_the_lookup_gives_the_verdict_of_joining_every_line_with_the_list(case):
    scoped, ref, rows = case
    values = pl.DataFrame(rows, schema={"_code": pl.String, "_scope": pl.String, "_on": pl.Date}, orient="row")
    keys = ["_code", "_scope"] if scoped else ["_code"]
    ours = valid_by_lookup(values, ref.drop("_hit"), keys).to_list()
    assert ours == valid_by_join(values, ref, keys).to_list()


def test_the_row_flags_agree_with_the_code_lists_own_is_valid():
    """GP service codes change on 2022-01-01 (12000 until 2021, 12010 from 2022): a consult coded
    the old way after the change and the new way before it fail; an unknown code fails; null
    passes. And for an NZa activity code with several periods, every line's flag is ``is_valid``."""
    contract = load_contract()
    activity = contract.code_lists["nza_activity"].frame()
    many = activity.group_by("activity_cd").len().filter(pl.col("len") >= 4)["activity_cd"].sort().head(5)
    edges = activity.filter(pl.col("activity_cd").is_in(many.implode())).select(
        "activity_cd",
        pl.concat_list(pl.col("valid_from").dt.offset_by(d) for d in ("-1d", "0d")).alias("a"),
        pl.concat_list(pl.col("valid_to").dt.offset_by(d) for d in ("0d", "1d")).alias("b"),
    )
    # every period's first and last day and the days just outside it
    around = [(code, day) for code, a, b in edges.iter_rows() for day in (*a, *b) if day is not None]
    checks = [
        ("gp", "service_cd", "service_date", [(c, date(y, 6, 1)) for c, y in GP_CASES]),
        ("dbc_activity", "activity_cd", "activity_date", around),
    ]
    for table_name, column, on, cases in checks:
        table = contract.table(table_name)
        lines = [*cases, ("99999X", date(2022, 6, 1)), (None, None)]
        frame = pl.DataFrame(
            {c.name: [None] * len(lines) for c in table.columns},
            schema={c.name: (pl.Int64 if c.type == "money" else c.polars_type) for c in table.columns},
        ).with_columns(
            pl.Series(column, [code for code, _ in lines], dtype=pl.String),
            pl.Series(on, [day for _, day in lines], dtype=pl.Date),
            pl.lit(None, pl.String).alias("_issue"),
        )
        flags = add_row_flags(frame, table, date(2024, 6, 1), contract)[f"_ok__{table_name}.{column}.code_valid"]
        code_list = contract.code_lists[table.column(column).code_list]
        expected = [True if code is None else code_list.is_valid(code, on=day) for code, day in lines]
        assert flags.to_list() == expected, table_name
        if table_name == "gp":
            assert expected[:4] == [True, False, False, True]
        else:
            assert True in expected[:-2] and False in expected[:-2]  # days inside and outside periods
