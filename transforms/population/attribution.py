"""Attribution of insured to GP practices per calendar quarter (``docs/panels-spec.md`` section 4).

A shared-savings contract on a population pays a GP practice (or a care group of practices) for
the total spending of "its" insured. Dutch GPs are paid a registration fee (inschrijftarief, NZa
codes ``11000``-``11104``, by age band and deprived-area status) per registered patient per quarter,
so the fee is the insurer's own record of which practice a person was registered with, quarter by
quarter. The rules, each one function or expression here:

1. **Registration fee** (:func:`registration_fee_codes`, :func:`is_registration_fee`): a ``gp``
   line whose ``service_cd`` is in the contract's GP code list (``gp_service``) within the range
   the contract gives for registration fees (:data:`REGISTRATION_FEE_RANGE`); the POH-GGZ module
   ``11201`` and everything else is not a fee.
2. **Quarter** (:func:`quarter_start`): the calendar quarter of the fee's ``service_date``, never of
   its declaration date (fees are declared late, and in advance, but they are for a quarter).
3. **Counting fee** (:func:`counts_as_fee`): corrections are already netted in the store (one line
   per original, its net amount, ``fully_credited`` when every link was withdrawn). A fee counts
   when it is not fully credited and its net amount is above zero; a fee credited to zero (or
   below) is no registration: it is left out (reason ``credited``).
4. **Enrolment** (:func:`insured_quarters`): only insured-quarters are attributed, i.e. a patient
   and a quarter that one of the patient's insured spells overlaps (``enrolled_from`` to
   ``enrolled_to``, open = still insured, cut at ``death_date``). A counting fee for a patient with
   no spell in its quarter is left out (reason ``not_enrolled``), never attributed: the benchmark's
   denominator is the insured population, and the contract makes such a line a finding anyway.
   Enrolment is judged per quarter, not per day: a fee dated on the quarter's first day for a
   spell that starts later in the quarter counts.
5. **One practice** in the insured-quarter: the insured is attributed to it (``rule = "single"``),
   however many fees it declared (a second fee of the same practice is counted ``same_practice``).
6. **Several practices** (the insured switched practice, or two practices both declared): the
   practice of the **latest** counting fee in the quarter, by ``service_date``; on the same day the
   fee with the **higher net amount**; then the **lowest AGB** (``rule = "latest_of_several"``).
   Why the latest: the fee is paid per quarter for the practice a patient is registered with, so a
   second practice's fee in the same quarter means the patient moved on to it. The practice of the
   latest registration is the one the insured is registered with at the quarter's end, the one
   that will declare the next quarter, and the one a contract manager holds responsible from now
   on: an analyst expects a switch to move the insured once, at the switch, and not to leave them
   for a quarter with a practice they have left. Taking the first (the registration at the
   quarter's start) would lag every switch by a quarter. On the same day the higher net amount is
   the fuller registration (a fee partly credited back, or a lower tariff band, is the weaker
   claim); the lowest AGB has no meaning but makes the rule deterministic under any row order. The
   fees of the other practices are counted ``other_practice``.
7. **No practice** in an insured-quarter: the insured is **not attributed** that quarter, and the
   insured-quarter is counted (``unattributed_no_fee``, or ``unattributed_credited_fee_only`` when
   its only fees were credited). It is never carried forward from an earlier quarter: a missing
   fee is what the data say about that quarter (the insured left the practice, moved abroad, was
   born or enrolled after the quarter's fee was declared, or the fee is still to be declared in a
   quarter that is not yet mature); guessing from history would put people in a contract
   population that the insurer did not pay a registration for, and would make a quarter's
   population depend on how far back the data go. The share unattributed is reported instead.
8. **Period** (``period``): the first and last day of the study window, widened to whole quarters.
   Insured-quarters are counted only inside it, and a fee outside it is counted
   ``outside_period``. By default the quarters from the earliest to the latest registration fee of
   the input.

:func:`attribute` gives one row per attributed insured-quarter, :func:`attribution_counts` the
insured-quarters per outcome and the fees per outcome, :func:`classify_fees` the outcome of every
fee line. An :class:`EnrolledPopulation` is a list of practices (or the GP practices of a contract)
and a start date; :func:`population_quarters` gives its attributed insured per quarter.

Every function takes polars frames (eager or lazy) and returns eager frames sorted on their key,
so the result does not depend on the order of the input rows.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import date
from pathlib import Path
from typing import Annotated

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from transforms.contract import Contract, load_contract
from transforms.errors import UserFacingError
from transforms.money import decimal_cents

#: The registration fees within the contract's GP code list: ``11000``-``11104`` (the input contract,
#: ``gp.service_cd``: "quarterly registration fees"). The codes themselves come from the code list.
REGISTRATION_FEE_RANGE = ("11000", "11104")
#: The zorgsoort (first two digits of the AGB code) of GP practices, used to find a contract's GP
#: practices when no providers table is given.
GP_ZORGSOORT = "01"
GP_PROVIDER_TYPE = "gp"

RULE_SINGLE = "single"
RULE_LATEST = "latest_of_several"

#: Outcome of a registration fee line (:func:`classify_fees`), in the order they are decided.
FEE_OUTCOMES = ("outside_period", "credited", "not_enrolled", "attributed", "same_practice", "other_practice")
#: Outcome of an insured-quarter (:func:`attribution_counts`).
QUARTER_OUTCOMES = (
    "attributed_single",
    "attributed_latest_of_several",
    "unattributed_no_fee",
    "unattributed_credited_fee_only",
)

ATTRIBUTED_SCHEMA = {
    "patient_id": pl.String,
    "year": pl.Int16,
    "quarter": pl.Int8,
    "quarter_start": pl.Date,
    "practice_agb": pl.String,
    "n_practices": pl.Int32,
    "rule": pl.String,
    "registration_date": pl.Date,
    "fee_cents": pl.Int64,
}
FEE_SCHEMA = {
    "patient_id": pl.String,
    "practice_agb": pl.String,
    "service_date": pl.Date,
    "cents": pl.Int64,
    "year": pl.Int16,
    "quarter": pl.Int8,
    "quarter_start": pl.Date,
    "outcome": pl.String,
}
COUNT_SCHEMA = {
    "unit": pl.String,
    "outcome": pl.String,
    "year": pl.Int16,
    "quarter": pl.Int8,
    "quarter_start": pl.Date,
    "n": pl.Int64,
}
INSURED_QUARTER_SCHEMA = {"patient_id": pl.String, "quarter_start": pl.Date}

Frame = pl.DataFrame | pl.LazyFrame
Period = tuple[date, date]
_KEY = ["patient_id", "quarter_start"]


# -- rule 1-3: which lines are registration fees, their quarter, whether they count ----------------


def registration_fee_codes(contract: Contract | None = None) -> tuple[str, ...]:
    """The registration-fee codes: the codes of the code list the contract names for
    ``gp.service_cd`` that lie in :data:`REGISTRATION_FEE_RANGE` (``11000``, ``11100``-``11104``)."""
    contract = contract or load_contract()
    list_name = contract.table("gp").column("service_cd").code_list
    codes = contract.code_lists[list_name].codes
    lo, hi = REGISTRATION_FEE_RANGE
    found = tuple(sorted(c for c in codes if c.isdigit() and len(c) == len(lo) and lo <= c <= hi))
    if not found:
        raise ValueError(f"the code list {list_name!r} has no registration fee code in {lo}-{hi}")
    return found


def quarter_start(column: str | pl.Expr) -> pl.Expr:
    """The first day of the calendar quarter of a date."""
    expr = pl.col(column) if isinstance(column, str) else column
    return expr.dt.truncate("1q")


def is_registration_fee(codes: Iterable[str]) -> pl.Expr:
    """Rule 1: the line's ``service_cd`` is a registration fee code."""
    return pl.col("service_cd").is_in(list(codes))


def counts_as_fee() -> pl.Expr:
    """Rule 3: a fee counts when it is not fully credited and its net amount is above zero."""
    return ~pl.col("fully_credited") & (pl.col("cents") > 0)


def latest_first() -> tuple[list[str], list[bool]]:
    """Rule 6 as sort keys (columns, descending): latest ``service_date``, then the higher net
    amount, then the lowest AGB."""
    return ["service_date", "cents", "practice_agb"], [True, True, False]


# -- inputs -----------------------------------------------------------------------------------


def _cents(lf: pl.LazyFrame) -> pl.Expr:
    schema = lf.collect_schema()
    if "amount_cents" in schema:
        return pl.col("amount_cents").cast(pl.Int64)
    return decimal_cents("amount")


def _fees(gp: Frame, codes: Iterable[str] | None) -> pl.LazyFrame:
    """The registration fee lines of ``gp`` (store columns; money as ``amount`` in euros or
    ``amount_cents``; ``fully_credited`` optional) as patient, practice, service date, net cents."""
    codes = registration_fee_codes() if codes is None else tuple(codes)
    lf = gp.lazy()
    names = lf.collect_schema().names()
    fully = pl.col("fully_credited").fill_null(False) if "fully_credited" in names else pl.lit(False)
    return lf.filter(is_registration_fee(codes)).select(
        pl.col("patient_id").cast(pl.String),
        pl.col("provider_agb").cast(pl.String).alias("practice_agb"),
        pl.col("service_date").cast(pl.Date),
        _cents(lf).alias("cents"),
        fully.alias("fully_credited"),
    )


def _spells(insured: Frame) -> pl.LazyFrame:
    """Patient, first and last insured day (null = open), the last day cut at ``death_date``."""
    lf = insured.lazy()
    end = pl.col("enrolled_to")
    if "death_date" in lf.collect_schema().names():
        end = pl.min_horizontal(end, pl.col("death_date"))  # ignores nulls: null only when both are
    return lf.select(
        pl.col("patient_id").cast(pl.String),
        pl.col("enrolled_from").cast(pl.Date),
        end.cast(pl.Date).alias("enrolled_to"),
    )


def _whole_quarters(period: Period) -> Period:
    first, last = period
    if first > last:
        raise ValueError(f"period: the first day {first} is after the last day {last}")
    q_first = pl.select(quarter_start(pl.lit(first))).item()
    q_last = pl.select(quarter_start(pl.lit(last))).item()
    return q_first, q_last


def _resolve_period(fees: pl.LazyFrame, period: Period | None) -> Period | None:
    """``(first quarter start, last quarter start)``; by default those of the fees' service dates
    (None when there is no fee and no period)."""
    if period is not None:
        return _whole_quarters(period)
    day = pl.col("service_date")
    lo, hi = fees.select(day.min().alias("lo"), day.max().alias("hi")).collect().row(0)
    return None if lo is None else _whole_quarters((lo, hi))


def _calendar(quarter: str = "quarter_start") -> list[pl.Expr]:
    return [
        pl.col(quarter).dt.year().cast(pl.Int16).alias("year"),
        pl.col(quarter).dt.quarter().cast(pl.Int8).alias("quarter"),
    ]


# -- rule 4: the insured-quarters -------------------------------------------------------------


def _insured_quarters(insured: Frame, quarters: Period) -> pl.LazyFrame:
    q_first, q_last = quarters
    first_day = pl.lit(q_first)
    last_day = pl.lit(q_last).dt.offset_by("3mo").dt.offset_by("-1d")
    spells = (
        _spells(insured)
        .with_columns(
            pl.max_horizontal("enrolled_from", first_day).alias("_from"),
            pl.min_horizontal(pl.col("enrolled_to").fill_null(last_day), last_day).alias("_to"),
        )
        .filter(pl.col("_from") <= pl.col("_to"))
    )
    return (
        spells.select(
            "patient_id",
            pl.date_ranges(quarter_start("_from"), quarter_start("_to"), interval="1q").alias("quarter_start"),
        )
        .explode("quarter_start")
        .unique()
    )


def insured_quarters(insured: Frame, period: Period) -> pl.DataFrame:
    """Rule 4: one row per ``patient_id`` x ``quarter_start`` that an insured spell overlaps, within
    ``period`` (first and last day, widened to whole quarters). A spell ends at ``enrolled_to``
    (null = open) or at ``death_date`` when that is earlier."""
    quarters = _whole_quarters(period)
    return _insured_quarters(insured, quarters).collect().sort(_KEY)


# -- rules 5-7: classification of the fees and the choice of practice ------------------------------


def _classify(
    gp: Frame, insured: Frame, codes: Iterable[str] | None, period: Period | None
) -> tuple[pl.LazyFrame, pl.LazyFrame] | None:
    """The insured-quarters and every fee with its outcome, ``n_practices`` and (on the chosen fee)
    the rule; None when there is nothing to attribute (no fee and no period)."""
    fees = _fees(gp, codes).with_columns(quarter_start("service_date").alias("quarter_start"))
    quarters = _resolve_period(fees, period)
    if quarters is None:
        return None
    q_first, q_last = quarters
    iq = _insured_quarters(insured, quarters)
    fees = fees.join(iq.with_columns(pl.lit(True).alias("_enrolled")), on=_KEY, how="left")
    excluded = (
        pl.when(~pl.col("quarter_start").is_between(pl.lit(q_first), pl.lit(q_last)))
        .then(pl.lit("outside_period"))
        .when(~counts_as_fee())
        .then(pl.lit("credited"))
        .when(pl.col("_enrolled").is_null())
        .then(pl.lit("not_enrolled"))
    )
    fees = fees.with_columns(excluded.alias("outcome"))
    by, descending = latest_first()
    valid = (
        fees.filter(pl.col("outcome").is_null())
        .sort([*_KEY, *by], descending=[False, False, *descending])
        .with_columns(
            (pl.int_range(pl.len()).over(_KEY) == 0).alias("_first"),
            pl.col("practice_agb").first().over(_KEY).alias("_chosen"),
            pl.col("practice_agb").n_unique().over(_KEY).cast(pl.Int32).alias("n_practices"),
        )
        .with_columns(
            pl.when(pl.col("_first"))
            .then(pl.lit("attributed"))
            .when(pl.col("practice_agb") == pl.col("_chosen"))
            .then(pl.lit("same_practice"))
            .otherwise(pl.lit("other_practice"))
            .alias("outcome"),
        )
    )
    rest = fees.filter(pl.col("outcome").is_not_null()).with_columns(pl.lit(None, pl.Int32).alias("n_practices"))
    cols = ["patient_id", "practice_agb", "service_date", "cents", "quarter_start", "outcome", "n_practices"]
    return iq, pl.concat([valid.select(cols), rest.select(cols)])


def classify_fees(
    gp: Frame, insured: Frame, *, codes: Iterable[str] | None = None, period: Period | None = None
) -> pl.DataFrame:
    """Every registration fee line of ``gp`` with its ``outcome`` (:data:`FEE_OUTCOMES`):
    ``outside_period``, ``credited`` (rule 3), ``not_enrolled`` (rule 4), else ``attributed`` (the one
    fee that decided the insured-quarter), ``same_practice`` (another fee of that practice) or
    ``other_practice`` (a fee of a practice that lost under rule 6). ``codes`` default to
    :func:`registration_fee_codes`; ``period`` (first, last day) to the fees' own quarters."""
    out = _classify(gp, insured, codes, period)
    if out is None:
        return pl.DataFrame(schema=FEE_SCHEMA)
    _, fees = out
    return (
        fees.select("patient_id", "practice_agb", "service_date", "cents", *_calendar(), "quarter_start", "outcome")
        .collect()
        .sort(list(FEE_SCHEMA))
    )


def attribute(
    gp: Frame, insured: Frame, *, codes: Iterable[str] | None = None, period: Period | None = None
) -> pl.DataFrame:
    """One row per attributed insured-quarter (rules 1-8 of the module): ``patient_id``, ``year``,
    ``quarter`` (1-4), ``quarter_start``, ``practice_agb``, ``n_practices`` (distinct practices with a
    counting fee that quarter), ``rule`` (``single`` | ``latest_of_several``), and the deciding fee's
    ``registration_date`` and ``fee_cents``. Insured-quarters without a counting fee have no row
    (see :func:`attribution_counts`).

    ``gp``: the store's ``gp`` lines (``patient_id``, ``provider_agb``, ``service_date``,
    ``service_cd``, ``amount`` in euros or ``amount_cents``, optional ``fully_credited``);
    ``insured``: the spells (``patient_id``, ``enrolled_from``, ``enrolled_to``, optional
    ``death_date``)."""
    out = _classify(gp, insured, codes, period)
    if out is None:
        return pl.DataFrame(schema=ATTRIBUTED_SCHEMA)
    _, fees = out
    chosen = fees.filter(pl.col("outcome") == "attributed").select(
        "patient_id",
        *_calendar(),
        "quarter_start",
        "practice_agb",
        "n_practices",
        pl.when(pl.col("n_practices") == 1).then(pl.lit(RULE_SINGLE)).otherwise(pl.lit(RULE_LATEST)).alias("rule"),
        pl.col("service_date").alias("registration_date"),
        pl.col("cents").alias("fee_cents"),
    )
    return chosen.collect().sort(_KEY).select([pl.col(c).cast(t) for c, t in ATTRIBUTED_SCHEMA.items()])


def attribution_counts(
    gp: Frame, insured: Frame, *, codes: Iterable[str] | None = None, period: Period | None = None
) -> pl.DataFrame:
    """What attribution did with every insured-quarter and every fee, per quarter: ``unit``
    (``insured_quarter`` | ``fee``), ``outcome``, ``year``, ``quarter``, ``quarter_start``, ``n``.

    Insured-quarter outcomes (:data:`QUARTER_OUTCOMES`): ``attributed_single``,
    ``attributed_latest_of_several``, ``unattributed_no_fee`` and ``unattributed_credited_fee_only``
    (rule 7). Fee outcomes: :data:`FEE_OUTCOMES`, as :func:`classify_fees` gives them; a fee
    ``outside_period`` is counted in its own quarter. Per quarter, the attributed insured-quarters
    equal the ``attributed`` fees, and insured-quarters of every outcome add up to
    :func:`insured_quarters`."""
    out = _classify(gp, insured, codes, period)
    if out is None:
        return pl.DataFrame(schema=COUNT_SCHEMA)
    iq, fees = out
    decided = fees.filter(pl.col("outcome") == "attributed").select(*_KEY, "n_practices")
    credited = (
        fees.filter(pl.col("outcome") == "credited").select(_KEY).unique().with_columns(pl.lit(True).alias("_credited"))
    )
    quarter_outcome = (
        pl.when(pl.col("n_practices") == 1)
        .then(pl.lit("attributed_single"))
        .when(pl.col("n_practices") > 1)
        .then(pl.lit("attributed_latest_of_several"))
        .when(pl.col("_credited"))
        .then(pl.lit("unattributed_credited_fee_only"))
        .otherwise(pl.lit("unattributed_no_fee"))
    )
    per_quarter = (
        iq.join(decided, on=_KEY, how="left")
        .join(credited, on=_KEY, how="left")
        .select("quarter_start", quarter_outcome.alias("outcome"), pl.lit("insured_quarter").alias("unit"))
    )
    per_fee = fees.select("quarter_start", "outcome", pl.lit("fee").alias("unit"))
    counts = (
        pl.concat([per_quarter, per_fee])
        .group_by("unit", "outcome", "quarter_start")
        .agg(pl.len().cast(pl.Int64).alias("n"))
        .select("unit", "outcome", *_calendar(), "quarter_start", "n")
    )
    return counts.collect().sort("unit", "quarter_start", "outcome").select(list(COUNT_SCHEMA))


# -- an enrolled population -------------------------------------------------------------------

AGB = Annotated[str, StringConstraints(pattern=r"^\d{8}$")]


class EnrolledPopulation(BaseModel):
    """A population enrolled in a shared-savings arrangement from ``start_date``: the insured
    attributed (per quarter) to one of ``practices``, or to one of the GP practices among the
    providers of contract ``contract_id`` in the store's contracts table (exactly one of the two).

    The quarter containing ``start_date`` is the first contract quarter (a quarter that is partly
    under the contract is never pre-period, so a placebo over the pre-period sees no treated
    care); quarters after the one containing ``end_date`` (if any) are ``after``. The population is
    per practice, across insurers: a contract row's ``insurer_uzovi`` does not narrow it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    practices: list[AGB] | None = None
    contract_id: str | None = Field(None, min_length=1)
    start_date: date
    end_date: date | None = None

    @model_validator(mode="after")
    def _one_source(self) -> EnrolledPopulation:
        if (self.practices is None) == (self.contract_id is None):
            raise ValueError(f"population {self.name!r}: give either practices or contract_id, not both or neither")
        if self.practices is not None:
            if not self.practices:
                raise ValueError(f"population {self.name!r}: practices is empty")
            doubles = sorted({p for p in self.practices if self.practices.count(p) > 1})
            if doubles:
                raise ValueError(f"population {self.name!r}: practices named twice: {', '.join(doubles)}")
        if self.end_date is not None and self.end_date < self.start_date:
            raise ValueError(
                f"population {self.name!r}: end_date {self.end_date} is before start_date {self.start_date}"
            )
        return self


def population_practices(
    population: EnrolledPopulation, contracts: Frame | None = None, providers: Frame | None = None
) -> list[str]:
    """The population's practices, sorted. For a contract: its providers (``contracts`` rows of
    ``contract_id``) that are GP practices, by ``provider_type == "gp"`` in ``providers`` when given,
    else by the AGB's zorgsoort ``01``. A contract that is missing or has no GP practice is an
    error naming it."""
    if population.practices is not None:
        return sorted(population.practices)
    cid = population.contract_id
    if contracts is None:
        raise UserFacingError(f"population {population.name!r}: contract {cid!r} needs the contracts table")
    rows = contracts.lazy().filter(pl.col("contract_id") == cid).select("provider_agb").unique().collect()
    if rows.height == 0:
        known = contracts.lazy().select(pl.col("contract_id").unique().sort()).collect().to_series().to_list()
        raise UserFacingError(
            f"population {population.name!r}: contract {cid!r} is not in the contracts table "
            f"(contracts: {', '.join(known) or 'none'})"
        )
    if providers is not None:
        typed = rows.join(
            providers.lazy().select("provider_agb", "provider_type").collect(), on="provider_agb", how="left"
        )
        gp = typed.filter(pl.col("provider_type") == GP_PROVIDER_TYPE)
        found = ", ".join(sorted({str(t) for t in typed["provider_type"].to_list()}))
    else:
        gp = rows.filter(pl.col("provider_agb").str.starts_with(GP_ZORGSOORT))
        found = f"AGB zorgsoort {', '.join(sorted(set(rows['provider_agb'].str.slice(0, 2).to_list())))}"
    if gp.height == 0:
        raise UserFacingError(
            f"population {population.name!r}: contract {cid!r} has no GP practice among its "
            f"{rows.height} providers ({found})"
        )
    return sorted(gp["provider_agb"].to_list())


def population_quarters(
    attributed: Frame, population: EnrolledPopulation, *, contracts: Frame | None = None, providers: Frame | None = None
) -> pl.DataFrame:
    """The population's attributed insured per quarter: the rows of ``attributed`` (as
    :func:`attribute` gives them) whose ``practice_agb`` is one of the population's practices
    (:func:`population_practices`), with ``population`` (its name), ``period`` (``pre`` |
    ``contract`` | ``after``, see :class:`EnrolledPopulation`) and ``relative_quarter`` (0 = the
    quarter containing ``start_date``, negative = pre-period). Every quarter of ``attributed`` is
    kept, so the pre-period is there for a placebo."""
    practices = population_practices(population, contracts, providers)
    q0 = pl.select(quarter_start(pl.lit(population.start_date))).item()
    index = pl.col("quarter_start").dt.year().cast(pl.Int32) * 4 + pl.col("quarter_start").dt.quarter().cast(pl.Int32)
    start_index = q0.year * 4 + (q0.month - 1) // 3 + 1
    period = pl.when(pl.col("quarter_start") < pl.lit(q0)).then(pl.lit("pre"))
    if population.end_date is not None:
        q_end = pl.select(quarter_start(pl.lit(population.end_date))).item()
        period = period.when(pl.col("quarter_start") > pl.lit(q_end)).then(pl.lit("after"))
    period = period.otherwise(pl.lit("contract"))
    out = (
        attributed.lazy()
        .filter(pl.col("practice_agb").is_in(practices))
        .with_columns(
            pl.lit(population.name).alias("population"),
            period.alias("period"),
            (index - start_index).cast(pl.Int32).alias("relative_quarter"),
        )
    )
    return out.collect().sort(_KEY)


# -- reading a store --------------------------------------------------------------------------


def scan_store(store: Path | str, codes: Iterable[str] | None = None) -> tuple[pl.LazyFrame, pl.LazyFrame]:
    """``(fees, insured)`` of a store written by ``zorgpad ingest``: the registration fee lines of
    ``gp`` (only the columns :func:`attribute` reads) and the insured spells, as lazy scans."""
    store = Path(store)
    codes = registration_fee_codes() if codes is None else tuple(codes)
    gp_files = sorted((store / "gp").glob("bucket=*/*.parquet"))
    insured_files = sorted((store / "insured").glob("bucket=*/*.parquet"))
    if not insured_files:
        raise UserFacingError(
            f"{store} has no insured table (bucket=*/*.parquet): is it a store written by zorgpad ingest?"
        )
    cols = ["patient_id", "provider_agb", "service_date", "service_cd", "amount", "fully_credited"]
    if gp_files:
        gp = pl.scan_parquet(gp_files, hive_partitioning=False).select(cols).filter(is_registration_fee(codes))
    else:
        gp = pl.LazyFrame(
            schema={
                "patient_id": pl.String,
                "provider_agb": pl.String,
                "service_date": pl.Date,
                "service_cd": pl.String,
                "amount": pl.Decimal(12, 2),
                "fully_credited": pl.Boolean,
            }
        )
    insured = pl.scan_parquet(insured_files, hive_partitioning=False).select(
        "patient_id", "enrolled_from", "enrolled_to", "death_date"
    )
    return gp, insured


def store_period(store: Path | str) -> Period:
    """The delivery's years as a period: 1 January of ``first_year`` to 31 December of
    ``last_year`` or ``data_as_of``, whichever is earlier (from the store's ``manifest.json``)."""
    meta = json.loads((Path(store) / "manifest.json").read_text())["delivery"]
    last = min(date(int(meta["last_year"]), 12, 31), date.fromisoformat(meta["data_as_of"]))
    return date(int(meta["first_year"]), 1, 1), last


__all__ = [
    "AGB",
    "FEE_OUTCOMES",
    "QUARTER_OUTCOMES",
    "REGISTRATION_FEE_RANGE",
    "RULE_LATEST",
    "RULE_SINGLE",
    "EnrolledPopulation",
    "attribute",
    "attribution_counts",
    "classify_fees",
    "counts_as_fee",
    "insured_quarters",
    "is_registration_fee",
    "latest_first",
    "population_practices",
    "population_quarters",
    "quarter_start",
    "registration_fee_codes",
    "scan_store",
    "store_period",
]
