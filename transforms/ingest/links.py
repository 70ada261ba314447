"""The link rules of the contract: rules decided across rows or tables (``stage: link`` in
``transforms/contract/schema/rule_kinds.yml``), one registered function per kind.

A link rule's function gets the rule (its fields as declared) and a :class:`LinkContext`: the rows of
the table being checked in one patient bucket (or whole, for a small table) and what the bucket
knows already (the valid insured spells, the rows of parent tables). It returns the rule's
``_ok__<rule id>`` flag, one boolean per row of ``context.frame`` in its order: True for the rows
keeping the rule. The bucket stage (``transforms.ingest.bucket_stage``) applies the link rules each
table declares with :func:`add_link_flags`; Great Expectations then validates the flags like every
other check.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta

import polars as pl

from transforms.contract import Contract, Rule, Table, rule_kinds
from transforms.ingest.partition_stage import FAILED

#: How a bucket's rows name a patient (the bucket key and the delivered pseudonym).
PATIENT = ("patient_key", "patient_id")


@dataclass(frozen=True)
class LinkContext:
    """What a link rule may need besides the rule.

    ``frame``: the table's rows (with the row number ``_i``); ``valid_spells``: the bucket's insured
    spells that failed no check (None while the insured table itself is checked, or for a table
    outside the buckets); ``parents``: the rows of the tables checked before, by table name (see
    :func:`parent_rows`).
    """

    table: Table
    frame: pl.DataFrame
    valid_spells: pl.DataFrame | None = None
    parents: Mapping[str, pl.DataFrame] = field(default_factory=dict)


#: A link rule kind's verdict: the ``_ok__<rule id>`` flag of every row of ``context.frame``.
LinkRule = Callable[[Rule, LinkContext], pl.Series]

#: The function of every link rule kind, by its name in ``transforms/contract/schema/rule_kinds.yml``.
LINK_RULES: dict[str, LinkRule] = {}


def link_rule(kind: str) -> Callable[[LinkRule], LinkRule]:
    """Register the function that decides rules of ``kind`` across rows or tables."""

    def register(function: LinkRule) -> LinkRule:
        if kind in LINK_RULES:
            raise ValueError(f"link rule kind {kind!r} is registered twice")
        LINK_RULES[kind] = function
        return function

    return register


def link_rules_of(table: Table) -> list[Rule]:
    """The table's rules of a link kind, in the order the contract declares them."""
    kinds = rule_kinds()
    return [rule for rule in table.rules if kinds[rule.kind].stage == "link"]


def add_link_flags(context: LinkContext) -> pl.DataFrame:
    """``context.frame`` with the ``_ok__<rule id>`` flag of each link rule its table declares."""
    flags = [LINK_RULES[rule.kind](rule, context).alias(f"_ok__{rule.id}") for rule in link_rules_of(context.table)]
    return context.frame.with_columns(flags) if flags else context.frame


def parent_rows(frame: pl.DataFrame, table: str, contract: Contract) -> pl.DataFrame | None:
    """What the link rules of other tables read of ``table`` (their ``parent``): one row per
    referenced key (the first delivered, valid or not), with the key and the parent columns the
    rules name. None when no rule has ``table`` as its parent (nothing is kept)."""
    keys: list[str] = []
    columns: list[str] = []
    for child in contract.tables.values():
        for rule in link_rules_of(child):
            if rule.parent != table:
                continue
            key = _reference(child, table)[1]
            keys += [key] if key not in keys else []
            columns += [c for c in (rule.parent_start, rule.parent_end) if c is not None and c not in columns]
    if not keys:
        return None
    if len(keys) > 1:
        raise ValueError(f"link rules refer to {table} by more than one column: {', '.join(keys)}")
    return frame.unique(keys[0], keep="first").select(keys[0], *[c for c in columns if c != keys[0]])


def _reference(child: Table, parent: str) -> tuple[str, str]:
    """The column of ``child`` that refers to ``parent``, and the column of ``parent`` it names."""
    for column in child.columns:
        if column.references is not None and column.references.partition(".")[0] == parent:
            return column.name, column.references.partition(".")[2]
    raise ValueError(f"{child.table}: no column refers to {parent}")


def _aligned(context: LinkContext, verdict: pl.DataFrame, default: bool) -> pl.Series:
    """A verdict of ``_i`` and ``ok`` joined back onto the rows of ``context.frame``, in its order."""
    joined = context.frame.select("_i").join(verdict, on="_i", how="left", maintain_order="left")
    return joined["ok"].fill_null(default)


def first_valid_kept(frame: pl.DataFrame, key: list[str], flag: str) -> pl.DataFrame:
    """Flag every row of a repeated ``key`` except one: the first delivered (lowest partition and
    row) among the rows that failed no check so far, so a broken copy never pushes out a valid
    one. Nulls compare equal (a contract for all insurers has a null insurer)."""
    order = frame.select(pl.col(FAILED).list.len().gt(0).alias("_bad"), "_partition", "_row", "_i", *key)
    # the first row of each key in that order (one hash pass; a window over the key costs ~4x)
    ranked = order.sort("_bad", "_partition", "_row").with_columns(pl.struct(key).is_first_distinct().alias("_first"))
    ok = ranked.select("_i", pl.col("_first").alias(flag))
    return frame.join(ok, on="_i", how="left", maintain_order="left")


@link_rule("no_overlap")
def _no_overlap(rule: Rule, context: LinkContext) -> pl.Series:
    """No two spells of a ``group`` overlap: a spell starting on or before the end of an earlier one
    (null end = still running) fails."""
    group = list(rule.group)
    s = context.frame.select("_i", "_partition", "_row", *group, rule.start, rule.end).sort(
        *group, rule.start, "_partition", "_row"
    )
    earlier_end = pl.col(rule.end).fill_null(pl.date(9999, 12, 31)).cum_max().shift(1).over(group)
    overlap = (pl.col(rule.start) <= earlier_end).fill_null(False)
    return _aligned(context, s.select("_i", (~overlap).alias("ok")), True)


@link_rule("covered_by_enrolment")
def _covered_by_enrolment(rule: Rule, context: LinkContext) -> pl.Series:
    """Does a valid insured spell of the patient cover the date? Valid spells do not overlap, so the
    latest spell starting on or before the date is the only candidate (an as-of join)."""
    left = context.frame.select("_i", *PATIENT, pl.col(rule.date_column).alias("_d")).sort("_d")
    right = context.valid_spells.select(
        *PATIENT,
        pl.col("enrolled_from").alias("_d"),
        pl.col("enrolled_to").alias("_to"),
        pl.lit(True).alias("_hit"),
    ).sort("_d")
    joined = left.join_asof(right, on="_d", by=list(PATIENT), strategy="backward", check_sortedness=False)
    ok = joined.select(
        "_i",
        (
            pl.col("_d").is_null()
            | (pl.col("_hit").fill_null(False) & (pl.col("_to").is_null() | (pl.col("_to") >= pl.col("_d"))))
        ).alias("ok"),
    )
    return _aligned(context, ok, False)


@link_rule("not_after_death")
def _not_after_death(rule: Rule, context: LinkContext) -> pl.Series:
    """The date is not later than ``grace_days`` after the patient's death (the latest death date of
    the patient's valid spells; no death date passes)."""
    deaths = context.valid_spells.group_by(*PATIENT).agg(pl.col("death_date").max().alias("_death"))
    joined = context.frame.select(*PATIENT, rule.date_column).join(
        deaths, on=list(PATIENT), how="left", maintain_order="left"
    )
    date = pl.col(rule.date_column)
    return joined.select(
        (pl.col("_death").is_null() | (date <= pl.col("_death") + timedelta(days=rule.grace_days))).fill_null(True)
    ).to_series()


@link_rule("within_parent_dates")
def _within_parent_dates(rule: Rule, context: LinkContext) -> pl.Series:
    """The date lies within the dates of the row's parent (the row of ``parent`` its reference
    column names); a row without a parent fails."""
    key, parent_key = _reference(context.table, rule.parent)
    parent = context.parents[rule.parent].select(
        pl.col(parent_key).alias(key), pl.col(rule.parent_start).alias("_s"), pl.col(rule.parent_end).alias("_e")
    )
    joined = context.frame.select(key, rule.date_column).join(parent, on=key, how="left", maintain_order="left")
    date = pl.col(rule.date_column)
    return joined.select(((date >= pl.col("_s")) & (date <= pl.col("_e"))).fill_null(False)).to_series()


@link_rule("unique_key")
def _unique_key(rule: Rule, context: LinkContext) -> pl.Series:
    """One row per ``columns``: the first valid row delivered is kept (see :func:`first_valid_kept`)."""
    return first_valid_kept(context.frame, list(rule.columns), "_ok")["_ok"]
