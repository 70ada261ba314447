"""The common episode rules as polars expression builders, one per rule of ``docs/bundles.md``.

Each function returns a ``pl.Expr`` (or a small frame operation) named after the rule, so that a
rule in ``docs/episode-rules.md`` maps to one function here:

- rule 3 windows: :func:`in_window`, :func:`overlaps_window`
- rule 4 allocation and proration: :func:`prorate`, :func:`days_in_window`, :func:`line_days`
- rule 6 prices: :func:`standardised_cents`
- rule 9 identity: :func:`episode_id`
"""

from __future__ import annotations

import hashlib
from datetime import date

import polars as pl

from transforms.bundles import LineRule


def line_days() -> pl.Expr:
    """Days of a line's interval, both ends inclusive."""
    return (pl.col("end") - pl.col("start")).dt.total_days() + 1


def days_in_window(start: str = "window_start", end: str = "window_end") -> pl.Expr:
    """Days of the line's interval inside ``[start, end]`` (0 or negative when outside)."""
    return (
        pl.min_horizontal(pl.col("end"), pl.col(end)) - pl.max_horizontal(pl.col("start"), pl.col(start))
    ).dt.total_days() + 1


def overlaps_window(start: str = "window_start", end: str = "window_end") -> pl.Expr:
    return (pl.col("start") <= pl.col(end)) & (pl.col("end") >= pl.col(start))


def in_window(date_col: str, start: str = "window_start", end: str = "window_end") -> pl.Expr:
    return (pl.col(date_col) >= pl.col(start)) & (pl.col(date_col) <= pl.col(end))


def prorate(cents: pl.Expr, days_in: pl.Expr, days: pl.Expr) -> pl.Expr:
    """Rule 4: ``cents * days_in / days`` rounded half away from zero, in integer arithmetic:
    ``sign(a) * ((2 * |a| * days_in + days) // (2 * days))``."""
    a = cents.cast(pl.Int64)
    d_in = days_in.cast(pl.Int64)
    d = days.cast(pl.Int64)
    magnitude = (2 * a.abs() * d_in + d) // (2 * d)
    return pl.when(a < 0).then(-magnitude).otherwise(magnitude)


def round_half_away(numerator: pl.Expr, denominator: pl.Expr) -> pl.Expr:
    """Integer division rounding half away from zero (for the national mean price)."""
    n = numerator.cast(pl.Int64)
    d = denominator.cast(pl.Int64)
    magnitude = (2 * n.abs() + d) // (2 * d)
    return pl.when(n < 0).then(-magnitude).otherwise(magnitude)


def standardised_cents() -> pl.Expr:
    """Rule 6: the national reference price for DBC lines (joined in as ``reference_cents``), the
    declared amount for first-line lines."""
    return pl.when(pl.col("source_table") == "dbc").then(pl.col("reference_cents")).otherwise(pl.col("amount_cents"))


def line_matches(rule: LineRule, activity_claims: pl.Expr | None = None) -> pl.Expr:
    """Does a line satisfy a bundle's line rule? ``activity_claims`` is the expression telling whether
    the line's claim has one of the rule's activities (needed when the rule names activities)."""
    cond = pl.col("source_table") == rule.table
    if rule.specialism:
        cond = cond & pl.col("specialism_cd").is_in(list(rule.specialism))
    if rule.diagnosis:
        cond = cond & pl.col("diagnosis_cd").is_in(list(rule.diagnosis))
    if rule.service:
        cond = cond & pl.col("service_cd").is_in(list(rule.service))
    if rule.discipline:
        cond = cond & pl.col("discipline").is_in(list(rule.discipline))
    if rule.atc:
        atc = pl.lit(False)
        for prefix in rule.atc:
            atc = atc | pl.col("atc_cd").str.starts_with(prefix)
        cond = cond & atc
    if rule.activity:
        if activity_claims is None:
            raise ValueError("a rule with activities needs the activity_claims expression")
        cond = cond & activity_claims
    return cond.fill_null(False)


def episode_id(bundle_id: str, patient_id: str, anchor: date, provider: str) -> str:
    """Rule 9: the first 20 hex digits of SHA-256 of ``bundle|patient|anchor|provider``."""
    text = f"{bundle_id}|{patient_id}|{anchor:%Y-%m-%d}|{provider}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:20]


def completeness_date(data_as_of: date, runout_months: int) -> date:
    """Rule 7: ``data_as_of`` minus the run-out months; a day that does not exist in the target month
    is clamped to the month's last day."""
    import calendar

    months = data_as_of.year * 12 + data_as_of.month - 1 - runout_months
    year, month = divmod(months, 12)
    month += 1
    return date(year, month, min(data_as_of.day, calendar.monthrange(year, month)[1]))


#: Rule 8: chronic conditions from pharmacy dispensings, by ATC prefix.
CHRONIC_ATC = {
    "diabetes": ("A10",),
    "obstructive_airway": ("R03",),
    "cardiovascular": ("C01", "C03", "C07", "C08", "C09"),
    "lipid": ("C10",),
    "anticoagulants": ("B01A",),
    "depression": ("N06A",),
    "psychosis": ("N05A",),
    "epilepsy": ("N03",),
    "thyroid": ("H03",),
    "cancer": ("L01", "L02"),
}
