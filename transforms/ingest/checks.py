"""The checks a delivery must pass, derived from the contract, and the polars code that prepares them.

Every check is plain data (:class:`Check`): an id, the table, the kind, a severity and the reason
code a failing row gets. ``expectations/suites.py`` turns each check into a Great Expectations
expectation; this module computes the columns those expectations look at when a check needs more
than one column or a reference table (a code valid on the service date, a date order, a BSN-like
value, a claim covered by an enrolment spell...). Such a column is named ``_ok__<check id>`` and is
True when the row passes (null inputs pass; completeness is checked separately).

Stages: ``row`` checks need only the row (run per partition, in parallel); ``link`` checks need other
tables of the same patient (run per patient bucket, after the shuffle); ``delivery`` checks span
the whole delivery (claim-id uniqueness, run on an aggregate of ids).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Literal

import polars as pl

from transforms.contract import Contract, Rule, Table, load_contract, rule_kinds

Stage = Literal["row", "link"]
Severity = Literal["row", "warning"]

#: When a row fails several checks, its primary reason is the first of these.
REASON_PRECEDENCE = (
    "bsn_like_id",
    "missing_key",
    "bad_encoding",
    "inexact_value",
    "bad_format",
    "invalid_value",
    "code_not_valid_on_date",
    "date_out_of_range",
    "outside_delivery_years",
    "date_order",
    "credit_without_original",
    "duplicate_claim_id",
    "duplicate_key",
    "outside_enrolment",
    "after_death",
    "unknown_provider",
    "unknown_reference",
    "correction_cycle",
    "parent_quarantined",
    "overlapping_spell",
    "implausible_value",
)

EARLIEST = date(1990, 1, 1)


@dataclass(frozen=True)
class Check:
    id: str
    table: str
    kind: str  # not_null, length, pattern, in_set, between, derived
    stage: Stage
    reason: str
    severity: Severity
    description: str
    column: str | None = None
    value: object = None  # length, pattern, value set, (min, max)
    #: how a ``derived`` row check's verdict is computed: a key of :data:`DERIVED_ROW_CHECKS`
    derivation: str | None = None

    @property
    def flag(self) -> str:
        """The pass/fail column of the check (True: passes), the column its GX expectation reads."""
        return f"_ok__{self.id}"


def checks_for(table: Table) -> list[Check]:
    """All checks of a table, in a stable order."""
    t = table.table
    out: list[Check] = []
    if any(col.type == "string" for col in table.columns):
        out.append(
            Check(
                f"{t}.text.encoding",
                t,
                "derived",
                "row",
                "bad_encoding",
                "row",
                "every text column holds valid UTF-8 (the row's delivered bytes are kept, escaped)",
                derivation="encoding",
            )
        )
    for col in table.columns:
        c = col.name
        if col.key:
            out.append(
                Check(
                    f"{t}.{c}.not_null",
                    t,
                    "not_null",
                    "row",
                    "missing_key",
                    "row",
                    f"{c} is a key column and must be present",
                    c,
                )
            )
        if col.type == "money" or col.type in ("int16", "int32", "float64"):
            out.append(
                Check(
                    f"{t}.{c}.exact",
                    t,
                    "derived",
                    "row",
                    "inexact_value",
                    "row",
                    f"{c} converts exactly to the contract type (money to whole cents)",
                    c,
                    derivation="exact",
                )
            )
        if col.length is not None:
            out.append(
                Check(
                    f"{t}.{c}.length",
                    t,
                    "length",
                    "row",
                    "bad_format",
                    "row",
                    f"{c} has {col.length} characters",
                    c,
                    col.length,
                )
            )
        if col.pattern is not None:
            out.append(
                Check(
                    f"{t}.{c}.pattern",
                    t,
                    "pattern",
                    "row",
                    "bad_format",
                    "row",
                    f"{c} matches {col.pattern}",
                    c,
                    col.pattern,
                )
            )
        if col.allowed is not None:
            out.append(
                Check(
                    f"{t}.{c}.allowed",
                    t,
                    "in_set",
                    "row",
                    "invalid_value",
                    "row",
                    f"{c} is one of {', '.join(col.allowed)}",
                    c,
                    tuple(col.allowed),
                )
            )
        if col.code_list is not None:
            on = f" on {col.valid_on}" if col.valid_on else ""
            out.append(
                Check(
                    f"{t}.{c}.code_valid",
                    t,
                    "derived",
                    "row",
                    "code_not_valid_on_date",
                    "row",
                    f"{c} is a code of {col.code_list}{' within ' + col.scope if col.scope else ''} valid{on}",
                    c,
                    derivation="code_valid",
                )
            )
        if col.min is not None or col.max is not None:
            # bounds on money are plausibility (suspicious, not impossible): reported, not quarantined
            severity: Severity = "warning" if col.type == "money" else "row"
            reason = "implausible_value" if severity == "warning" else "invalid_value"
            out.append(
                Check(
                    f"{t}.{c}.range",
                    t,
                    "between",
                    "row",
                    reason,
                    severity,
                    f"{c} between {col.min} and {col.max}",
                    c,
                    (col.min, col.max),
                )
            )
        if col.pseudonym:
            out.append(
                Check(
                    f"{t}.{c}.not_bsn",
                    t,
                    "derived",
                    "row",
                    "bsn_like_id",
                    "row",
                    f"{c} is a pseudonym, not a number passing the BSN eleven-test",
                    c,
                    derivation="not_bsn",
                )
            )
        if col.references is not None:
            ref_table = col.references.partition(".")[0]
            if ref_table == "insured" and t != "insured":
                continue  # covered by the enrolment rule (a patient without spells is outside enrolment)
            reason = "unknown_provider" if ref_table == "providers" else "unknown_reference"
            out.append(
                Check(
                    f"{t}.{c}.references",
                    t,
                    "derived",
                    "link",
                    reason,
                    "row",
                    f"{c} exists in {col.references}",
                    c,
                    col.references,
                )
            )
        if col.unique:
            out.append(
                Check(
                    f"{t}.{c}.unique",
                    t,
                    "derived",
                    "link",
                    "duplicate_claim_id" if c == "claim_id" else "duplicate_key",
                    "row",
                    f"{c} is unique in the delivery (the first valid row delivered is kept)",
                    c,
                )
            )
    for rule in table.rules:
        stage: Stage = rule_kinds()[rule.kind].stage
        out.append(
            Check(
                rule.id, t, "derived", stage, rule.reason, "row", rule.description, None, rule.kind, derivation="rule"
            )
        )
    if t == "dbc_activity":
        out.append(
            Check(
                "dbc_activity.parent_valid",
                t,
                "derived",
                "link",
                "parent_quarantined",
                "row",
                "the activity's subtraject was not quarantined",
            )
        )
    if any(c.name == "corrects_claim_id" for c in table.columns):
        out.append(
            Check(
                f"{t}.corrects_claim_id.no_cycle",
                t,
                "derived",
                "link",
                "correction_cycle",
                "row",
                "following corrects_claim_id from line to line reaches an original claim (no cycle)",
                "corrects_claim_id",
            )
        )
    return out


def all_checks(contract: Contract | None = None) -> dict[str, list[Check]]:
    contract = contract or load_contract()
    return {name: checks_for(table) for name, table in contract.tables.items()}


# -------------------------------------------------------------------------------- BSN
#: What is written and shown instead of a value that passes the BSN eleven-test.
BSN_MASK = "<BSN-like value masked>"


def bsn_like(value: pl.Expr | str) -> pl.Expr:
    """True when the value is nine digits passing the BSN eleven-test."""
    col = pl.col(value) if isinstance(value, str) else value
    digits = [col.str.slice(i, 1).cast(pl.Int64, strict=False) for i in range(9)]
    weighted = sum(d * w for d, w in zip(digits[:8], range(9, 1, -1))) - digits[8]
    return col.str.contains(r"^\d{9}$").fill_null(False) & ((weighted % 11) == 0).fill_null(False)


def is_bsn_like(value: object) -> bool:
    """:func:`bsn_like` for one value (any type: only nine-digit text or numbers can be one)."""
    text = str(value).strip()
    if len(text) != 9 or not text.isdigit():
        return False
    digits = [int(c) for c in text]
    return (sum(d * w for d, w in zip(digits[:8], range(9, 1, -1))) - digits[8]) % 11 == 0


def mask_bsn(value: str) -> str:
    """The value, or :data:`BSN_MASK` when it passes the BSN eleven-test: a citizen service number
    must never be echoed into a report, a log or an error message."""
    return BSN_MASK if is_bsn_like(value) else value


def masked_bsn(column: str) -> pl.Expr:
    """A text column with every BSN-like value replaced by :data:`BSN_MASK`."""
    return pl.when(bsn_like(column)).then(pl.lit(BSN_MASK)).otherwise(pl.col(column)).alias(column)


# -------------------------------------------------------------------------------- row stage
def _bsn_like(column: str) -> pl.Expr:
    return bsn_like(column)


def _code_valid(frame: pl.DataFrame, table: Table, column: str, contract: Contract) -> pl.Series:
    """Is the code valid (on its date, within its scope)? One boolean per row; null codes pass."""
    col = table.column(column)
    code_list = contract.code_lists[col.code_list]
    name = f"_ok__{table.table}.{column}.code_valid"
    values = frame.select(
        pl.col(column).alias("_code"),
        (pl.col(col.scope) if col.scope else pl.lit(None, pl.String)).alias("_scope"),
        (pl.col(col.valid_on) if col.valid_on else pl.lit(None, pl.Date)).alias("_on"),
    )
    if code_list.pattern is not None:
        return values["_code"].str.contains(code_list.pattern).fill_null(True).alias(name)
    scoped = bool(code_list.scope and col.scope)
    ref = code_list.frame().rename(
        {code_list.code: "_code", **({code_list.scope: "_scope"} if code_list.scope else {})}
    )
    return valid_by_lookup(values, ref, ["_code", "_scope"] if scoped else ["_code"]).alias(name)


def valid_by_lookup(values: pl.DataFrame, ref: pl.DataFrame, keys: list[str]) -> pl.Series:
    """Is each row's ``_code`` (within ``_scope`` when ``keys`` has it) in the code list ``ref``
    with a validity period holding its date ``_on`` (a null date: any period)? Null codes pass.

    Each row looks its code up once (a hash probe into the list's few thousand codes) and compares
    its date with that code's periods, the k-th periods of all codes gathered side by side (an NZa
    code has at most about eight). A join of the rows with the list, or of their distinct (code,
    date) pairs, costs several times more: a partition's lines hold tens of thousands of pairs."""
    periods = (
        ref.select(*keys, "valid_from", "valid_to")
        .drop_nulls(keys)
        .with_columns(pl.int_range(pl.len(), dtype=pl.UInt32).over(keys).alias("_period"))
    )
    codes = periods.select(keys).unique(maintain_order=True).with_row_index("_key")
    index = (
        values.select(_code_key(keys))
        .to_series()
        .replace_strict(codes.select(_code_key(keys)).to_series(), codes["_key"], default=None)
    )
    on = values["_on"]
    in_period = pl.repeat(False, values.height, dtype=pl.Boolean, eager=True)
    for period in range(int(periods["_period"].max() or 0) + 1 if periods.height else 0):
        kth = codes.join(periods.filter(pl.col("_period") == period), on=keys, how="left", maintain_order="left")
        valid_from, valid_to = kth["valid_from"].gather(index), kth["valid_to"].gather(index)
        holds = kth["_period"].is_not_null().gather(index) & (
            on.is_null() | ((valid_from.is_null() | (valid_from <= on)) & (valid_to.is_null() | (valid_to >= on)))
        )
        in_period = in_period | holds.fill_null(False)
    return values["_code"].is_null() | (index.is_not_null() & in_period)


def _code_key(keys: list[str]) -> pl.Expr:
    """One text per code (and scope): what a row's code is looked up by."""
    return pl.concat_str([pl.col(k) for k in keys], separator="\x1f") if len(keys) > 1 else pl.col(keys[0])


#: A row rule kind's verdict: True for the rows that keep the rule (nulls pass).
RowRule = Callable[[Rule, "RowContext"], pl.Expr]

#: The function of every row rule kind, by its name in ``transforms/contract/schema/rule_kinds.yml``.
ROW_RULES: dict[str, RowRule] = {}


@dataclass(frozen=True)
class RowContext:
    """What a row check may need besides the rows: the delivery's ``data_as_of`` and years (None:
    not given), the table and the contract (code lists)."""

    data_as_of: date
    years: tuple[int, int] | None
    table: Table
    contract: Contract


def row_rule(kind: str) -> Callable[[RowRule], RowRule]:
    """Register the function that decides rules of ``kind`` on each row."""

    def register(function: RowRule) -> RowRule:
        if kind in ROW_RULES:
            raise ValueError(f"row rule kind {kind!r} is registered twice")
        ROW_RULES[kind] = function
        return function

    return register


def _any_of(conditions: list[pl.Expr]) -> pl.Expr:
    return pl.any_horizontal(pl.lit(False), *conditions)


def _all_of(conditions: list[pl.Expr]) -> pl.Expr:
    return pl.all_horizontal(pl.lit(True), *conditions)


@row_rule("column_order")
def _column_order(rule: Rule, context: RowContext) -> pl.Expr:
    return (pl.col(rule.left) <= pl.col(rule.right)).fill_null(True)


@row_rule("max_span_days")
def _max_span_days(rule: Rule, context: RowContext) -> pl.Expr:
    return ((pl.col(rule.end) - pl.col(rule.start)).dt.total_days() <= rule.max_days).fill_null(True)


@row_rule("date_range")
def _date_range(rule: Rule, context: RowContext) -> pl.Expr:
    return _all_of(
        [((pl.col(c) >= EARLIEST) & (pl.col(c) <= context.data_as_of)).fill_null(True) for c in rule.columns]
    )


@row_rule("year_not_after")
def _year_not_after(rule: Rule, context: RowContext) -> pl.Expr:
    return (pl.col(rule.year_column) <= pl.col(rule.date_column).dt.year()).fill_null(True)


@row_rule("prefix_matches")
def _prefix_matches(rule: Rule, context: RowContext) -> pl.Expr:
    prefixes = rule.prefixes or {}
    ok = _any_of(
        [
            (pl.col(rule.by) == kind) & _any_of([pl.col(rule.column).str.starts_with(p) for p in starts])
            for kind, starts in prefixes.items()
        ]
    )
    known = pl.col(rule.by).is_in(list(prefixes.keys()))
    return (ok | ~known).fill_null(True)


@row_rule("required_when")
def _required_when(rule: Rule, context: RowContext) -> pl.Expr:
    when = _any_of([pl.col(column).is_in(list(values)) for column, values in (rule.when or {}).items()])
    return (~when | pl.col(rule.column).is_not_null()).fill_null(True)


@row_rule("required_when_negative")
def _required_when_negative(rule: Rule, context: RowContext) -> pl.Expr:
    return ((pl.col(rule.amount) >= 0) | pl.col(rule.column).is_not_null()).fill_null(True)


@row_rule("within_delivery_years")
def _within_delivery_years(rule: Rule, context: RowContext) -> pl.Expr:
    if context.years is None:
        return pl.lit(True)
    first, last = context.years
    return _all_of([pl.col(c).dt.year().is_between(first, last).fill_null(True) for c in rule.columns])


#: A derived row check's verdict on ``frame`` (an expression, or a series for checks that join).
DerivedRowCheck = Callable[[pl.DataFrame, Check, RowContext], "pl.Expr | pl.Series"]

#: How each derivation of :attr:`Check.derivation` is decided.
DERIVED_ROW_CHECKS: dict[str, DerivedRowCheck] = {
    "rule": lambda frame, check, context: ROW_RULES[check.value](
        next(r for r in context.table.rules if r.id == check.id), context
    ),
    "code_valid": lambda frame, check, context: _code_valid(frame, context.table, check.column, context.contract),
    "not_bsn": lambda frame, check, context: ~_bsn_like(check.column),
    "encoding": lambda frame, check, context: (
        pl.col("_issue").is_null() | ~pl.col("_issue").str.contains("(^|;)bad_encoding:")
    ),
    "exact": lambda frame, check, context: (
        pl.col("_issue").is_null()
        | ~pl.col("_issue").str.contains(f"(^|;)(inexact_amount|out_of_range|not_a_number):{check.column}(;|$)")
    ),
}


def missing_as_gx_sees_it(frame: pl.DataFrame, column: str) -> pl.Expr:
    """True where Great Expectations counts the value as missing: null, and for a float column also
    NaN (pandas treats NaN as missing). Money is shown to GX as euros, which are never NaN."""
    missing = pl.col(column).is_null()
    if frame.schema[column].is_float():
        missing = missing | pl.col(column).is_nan()
    return missing


def _matching(values: pl.Series, pattern: str) -> list[str]:
    """The distinct values that contain a match of ``pattern`` under Python's ``re.search`` (what
    GX's pandas engine applies: ``$`` also matches before a final newline, unlike polars' regex
    engine). Evaluated once per distinct value: code columns hold few."""
    regex = re.compile(pattern)
    return [v for v in values.drop_nulls().unique().to_list() if regex.search(v) is not None]


#: The verdict of a single-column check on the values that are there (missing values are handled by
#: :func:`column_verdict`): frame, check, table -> expression.
ColumnVerdict = Callable[[pl.DataFrame, Check, Table], pl.Expr]


def _between(frame: pl.DataFrame, check: Check, table: Table) -> pl.Expr:
    value = pl.col(check.column) / 100.0 if table.column(check.column).type == "money" else pl.col(check.column)
    low, high = check.value
    ok = pl.lit(True)
    if low is not None:
        ok = ok & (value >= low)
    if high is not None:
        ok = ok & (value <= high)
    return ok


#: How each single-column check kind is decided.
COLUMN_VERDICTS: dict[str, ColumnVerdict] = {
    "length": lambda frame, check, table: pl.col(check.column).str.len_chars() == check.value,
    "pattern": lambda frame, check, table: pl.col(check.column).is_in(
        pl.Series(_matching(frame[check.column], check.value), dtype=pl.String).implode()
    ),
    "in_set": lambda frame, check, table: pl.col(check.column).is_in(
        pl.Series(list(check.value), dtype=frame.schema[check.column]).implode()
    ),
    "between": _between,
}


def column_verdict(frame: pl.DataFrame, check: Check, table: Table) -> pl.Expr:
    """The verdict of a single-column check (``not_null`` and the kinds of :data:`COLUMN_VERDICTS`)
    as GX's pandas engine decides it on the batch ``validate_batch`` used to build: text as Python
    strings, money in euros (cents / 100), NaN as missing. The flag is null where the value is
    missing, so GX counts those rows as missing (not as passing) and its element, missing and
    unexpected counts stay those of the check on the values themselves; ``not_null`` has no missing
    rows of its own."""
    missing = missing_as_gx_sees_it(frame, check.column)
    if check.kind == "not_null":
        return ~missing
    if check.kind not in COLUMN_VERDICTS:
        raise ValueError(f"check {check.id}: no column verdict for kind {check.kind!r}")
    return pl.when(missing).then(None).otherwise(COLUMN_VERDICTS[check.kind](frame, check, table))


def add_row_flags(
    frame: pl.DataFrame,
    table: Table,
    data_as_of: date,
    contract: Contract | None = None,
    *,
    years: tuple[int, int] | None = None,
) -> pl.DataFrame:
    """Add the ``_ok__`` column of every row-stage check of the table (derived checks and the
    single-column ones of :func:`column_verdict`): GX then validates the verdicts of every row
    instead of deciding each check again over the raw values. ``years``: the ``first_year``,
    ``last_year`` of ``delivery.json`` (None: not checked)."""
    context = RowContext(data_as_of, years, table, contract or load_contract())
    flags = [
        (
            DERIVED_ROW_CHECKS[check.derivation](frame, check, context)
            if check.kind == "derived"
            else column_verdict(frame, check, table)
        ).alias(check.flag)
        for check in checks_for(table)
        if check.stage == "row" and (check.kind == "derived" or check.column in frame.columns)
    ]
    return frame.with_columns(flags) if flags else frame
