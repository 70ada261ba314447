"""The generator's own episodes: what the episode rules must give on a clean delivery.

For every bundle the generator reads its own delivered lines of a block (the frames it is about to
write: every care-path *and* background line, with amounts, dates, codes and activities), the
insured spells and deaths it drew, and ``data_as_of``, and applies the rules of
``docs/episode-rules.md`` to them in plain code of its own (it does not import
``transforms.episodes``): trigger events (rule 1), one episode at a time with non-overlapping
windows (rules 2-3), the in-bundle lines of each episode prorated by their days in the window
(rule 4), birth-care phases, the status (rule 7) and the Boolean outcomes of the bundle (any_line,
n_triggers_at_least, death_within). The bundles' line rules (which lines trigger, which are in the
bundle) are read from the bundle definitions (``transforms.bundles``), the declarative input both
engines share.

Standardised amounts (rule 6) need the national mean price per product and year over the whole
delivery, so a block reports its partial sums and ``finish_truth`` adds the standardised amounts
once every block is done.

This is exact only for a delivery without faults, corrections and withheld late declarations
(``SynthConfig.exact_truth``): then the store holds exactly these lines.
"""

from __future__ import annotations

import calendar
import hashlib
from collections import defaultdict
from datetime import date, timedelta
from pathlib import Path

import polars as pl

from transforms.bundles import BundleDefinition, LineRule, load_bundles
from transforms.contract import load_contract
from transforms.synth.calendar import EPOCH

RUNOUT_MONTHS = 12
BOOLEAN_OUTCOMES = ("any_line", "n_triggers_at_least", "death_within")
LINE_TABLES = load_contract().claim_tables
_TEXT_COLUMNS = ("provider_agb", "specialism_cd", "diagnosis_cd", "product_cd", "atc_cd", "service_cd", "discipline")


def completeness_day(as_of: date, runout_months: int = RUNOUT_MONTHS) -> int:
    """``data_as_of`` minus the run-out months (the same day of the month, clamped to the month's
    last day), as a day number."""
    months = as_of.year * 12 + as_of.month - 1 - runout_months
    year, month = divmod(months, 12)
    month += 1
    d = date(year, month, min(as_of.day, calendar.monthrange(year, month)[1]))
    return (d - EPOCH).days


def to_date(day: int) -> date:
    return EPOCH + timedelta(days=int(day))


def episode_id(bundle_id: str, patient_id: str, anchor_day: int, provider: str) -> str:
    text = f"{bundle_id}|{patient_id}|{to_date(anchor_day):%Y-%m-%d}|{provider}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:20]


# ------------------------------------------------------------------------------------- the lines
def money_lines(tables: dict[str, pl.DataFrame | None]) -> pl.DataFrame:
    """All money lines of a block in one frame (days as ints); lines of amount 0 are left out, as a
    fully credited line contributes nothing."""
    parts = []
    for table in LINE_TABLES:
        frame = tables.get(table)
        if frame is None or frame.height == 0:
            continue
        start, end = ("start_date", "end_date") if table == "dbc" else ("service_date", "service_date")
        parts.append(
            frame.select(
                pl.col("patient_id"),
                pl.lit(table).alias("source_table"),
                pl.col("claim_id"),
                pl.col(start).cast(pl.Int64).alias("start"),
                pl.col(end).cast(pl.Int64).alias("end"),
                pl.col("amount_cents").cast(pl.Int64),
                *[(pl.col(c) if c in frame.columns else pl.lit(None)).cast(pl.String).alias(c) for c in _TEXT_COLUMNS],
            )
        )
    if not parts:
        return pl.DataFrame(
            schema={
                "patient_id": pl.String,
                "source_table": pl.String,
                "claim_id": pl.String,
                "start": pl.Int64,
                "end": pl.Int64,
                "amount_cents": pl.Int64,
                **{c: pl.String for c in _TEXT_COLUMNS},
            }
        )
    return pl.concat(parts).filter(pl.col("amount_cents") != 0)


def _rule_expr(rule: LineRule, activities: pl.DataFrame) -> pl.Expr:
    """Does a line satisfy the rule? (every given criterion; ATC codes are prefixes; a rule naming
    activities needs one of them among the line's care activities)."""
    cond = pl.col("source_table") == rule.table
    for column, values in (
        ("specialism_cd", rule.specialism),
        ("diagnosis_cd", rule.diagnosis),
        ("service_cd", rule.service),
        ("discipline", rule.discipline),
    ):
        if values:
            cond = cond & pl.col(column).is_in(list(values))
    if rule.atc:
        atc = pl.lit(False)
        for prefix in rule.atc:
            atc = atc | pl.col("atc_cd").str.starts_with(prefix)
        cond = cond & atc
    if rule.activity:
        claims = activities.filter(pl.col("activity_cd").is_in(list(rule.activity)))["claim_id"].unique()
        cond = cond & pl.col("claim_id").is_in(claims.implode())
    return cond.fill_null(False)


def _any_rule(rules: tuple[LineRule, ...], activities: pl.DataFrame) -> pl.Expr:
    expr = pl.lit(False)
    for rule in rules:
        expr = expr | _rule_expr(rule, activities)
    return expr


def _dated(rule: LineRule, lines: pl.DataFrame, activities: pl.DataFrame) -> pl.DataFrame:
    """Lines matching the rule with their event date: the activity date of each matching activity
    for a rule naming activities, else the line's start."""
    base = rule.model_copy(update={"activity": None})
    matched = lines.filter(_rule_expr(base, activities))
    if rule.activity:
        acts = activities.filter(pl.col("activity_cd").is_in(list(rule.activity))).select("claim_id", "activity_date")
        return (
            matched.join(acts, on="claim_id").with_columns(pl.col("activity_date").alias("date")).drop("activity_date")
        )
    return matched.with_columns(pl.col("start").alias("date"))


# ------------------------------------------------------------------------------------- episodes
class Person:
    """Spells and death of one patient, from the generator's insured frame."""

    __slots__ = ("birth_year", "death", "sex", "spells")

    def __init__(self) -> None:
        self.spells: list[tuple[int, int | None]] = []
        self.death: int | None = None
        self.sex: str | None = None
        self.birth_year: int | None = None

    def covered_days(self, first: int, last: int) -> int:
        total = 0
        for start, end in self.spells:
            hi = last if end is None else min(end, last)
            total += max(0, hi - max(start, first) + 1)
        return total


def people(insured: pl.DataFrame) -> dict[str, Person]:
    out: dict[str, Person] = defaultdict(Person)
    for pid, start, end, end_null, death, death_null, sex, birth_year in insured.select(
        "patient_id",
        "enrolled_from",
        "enrolled_to",
        "enrolled_to_null",
        "death_date",
        "death_date_null",
        "sex",
        "birth_year",
    ).iter_rows():
        person = out[pid]
        person.spells.append((int(start), None if end_null else int(end)))
        if not death_null:
            person.death = int(death) if person.death is None else max(person.death, int(death))
        if person.sex is None:
            person.sex, person.birth_year = sex, int(birth_year)
    return dict(out)


def trigger_events(
    bundle: BundleDefinition, lines: pl.DataFrame, activities: pl.DataFrame, persons: dict[str, Person]
) -> list[tuple[str, int, str, str, str]]:
    """Rule 1: (patient, date, claim id, provider, table) of every trigger event, sorted."""
    parts = [
        _dated(rule, lines, activities).select("patient_id", "date", "claim_id", "provider_agb", "source_table")
        for rule in bundle.trigger.any_of
    ]
    events = pl.concat(parts).unique(["claim_id", "date"])
    if bundle.trigger.requires:
        required = pl.concat(
            [
                lines.filter(_rule_expr(r, activities)).select("patient_id", "start", "end")
                for r in bundle.trigger.requires
            ]
        )
        if bundle.window.kind == "calendar_year":
            have = required.select("patient_id", _year("start").alias("_y")).unique()
            events = (
                events.with_columns(_year("date").alias("_y"))
                .join(have, on=["patient_id", "_y"], how="semi")
                .drop("_y")
            )
        else:
            pre, post = bundle.window.pre_days, bundle.window.post_days
            hits = events.join(required, on="patient_id").filter(
                (pl.col("start") <= pl.col("date") + post) & (pl.col("end") >= pl.col("date") - pre)
            )
            events = events.join(hits.select("claim_id", "date").unique(), on=["claim_id", "date"], how="semi")
    rows = events.sort("patient_id", "date", "claim_id").iter_rows()
    ex = bundle.exclusions
    out = []
    for pid, d, claim, agb, table in rows:
        person = persons.get(pid)
        if ex.sex is not None and (person is None or person.sex != ex.sex):
            continue
        age = to_date(d).year - (person.birth_year if person else 0)
        if (ex.min_age is not None and age < ex.min_age) or (ex.max_age is not None and age > ex.max_age):
            continue
        out.append((pid, int(d), claim, agb, table))
    return out


def _year(column: str) -> pl.Expr:
    return (pl.lit(EPOCH) + pl.duration(days=pl.col(column))).dt.year()


def form_episodes(bundle: BundleDefinition, events: list[tuple[str, int, str, str, str]]) -> list[dict]:
    """Rules 2-3: one episode at a time per patient; later triggers up to the window end join it; a
    window starts no earlier than the day after the previous window's end."""
    window = bundle.window
    episodes: list[dict] = []
    current: dict | None = None
    for pid, d, claim, agb, table in events:
        if window.kind == "calendar_year":
            year = to_date(d).year
            if current is not None and current["patient_id"] == pid and current["_year"] == year:
                current["n_triggers"] += 1
                continue
            first, last = (date(year, 1, 1) - EPOCH).days, (date(year, 12, 31) - EPOCH).days
            current = {
                "patient_id": pid,
                "_year": year,
                "anchor_day": d,
                "anchor_claim_id": claim,
                "anchor_provider_agb": agb,
                "anchor_table": table,
                "window_start": first,
                "window_end": last,
                "n_triggers": 1,
            }
            episodes.append(current)
            continue
        if current is not None and current["patient_id"] == pid and d <= current["window_end"]:
            current["n_triggers"] += 1
            continue
        start = d - window.pre_days
        if current is not None and current["patient_id"] == pid:
            start = max(start, current["window_end"] + 1)
        current = {
            "patient_id": pid,
            "anchor_day": d,
            "anchor_claim_id": claim,
            "anchor_provider_agb": agb,
            "anchor_table": table,
            "window_start": start,
            "window_end": d + window.post_days,
            "n_triggers": 1,
        }
        episodes.append(current)
    for e in episodes:
        e.pop("_year", None)
        e["episode_id"] = episode_id(bundle.id, e["patient_id"], e["anchor_day"], e["anchor_provider_agb"])
    return episodes


def status(episode: dict, person: Person | None, completeness: int) -> str:
    """Rule 7: death > censored_enrolment > censored_data > complete."""
    first, last = episode["window_start"], episode["window_end"]
    if person is not None and person.death is not None and first <= person.death <= last:
        return "death"
    if person is None or person.covered_days(first, last) < last - first + 1:
        return "censored_enrolment"
    if last > completeness:
        return "censored_data"
    return "complete"


def _prorate(cents: pl.Expr, days_in: pl.Expr, days: pl.Expr) -> pl.Expr:
    magnitude = (2 * cents.abs() * days_in + days) // (2 * days)
    return pl.when(cents < 0).then(-magnitude).otherwise(magnitude)


def _phase() -> pl.Expr:
    return (
        pl.when(pl.col("claim_id") == pl.col("anchor_claim_id"))
        .then(pl.lit("natal"))
        .when(pl.col("service_cd") == "maternity_care_hours")
        .then(pl.lit("maternity_care"))
        .when(pl.col("start") < pl.col("anchor_day"))
        .then(pl.lit("prenatal"))
        .when(pl.col("start") <= pl.col("anchor_day") + 1)
        .then(pl.lit("natal"))
        .otherwise(pl.lit("postnatal"))
    )


EPISODE_SCHEMA = {
    "bundle_id": pl.String,
    "episode_id": pl.String,
    "patient_id": pl.String,
    "anchor_day": pl.Int64,
    "anchor_claim_id": pl.String,
    "anchor_provider_agb": pl.String,
    "anchor_table": pl.String,
    "window_start": pl.Int64,
    "window_end": pl.Int64,
    "n_triggers": pl.Int32,
    "status": pl.String,
}
LINE_SCHEMA = {
    "bundle_id": pl.String,
    "episode_id": pl.String,
    "source_table": pl.String,
    "claim_id": pl.String,
    "product_cd": pl.String,
    "price_year": pl.Int32,
    "phase": pl.String,
    "days_in": pl.Int64,
    "days": pl.Int64,
    "amount_cents": pl.Int64,
    "allocated_cents": pl.Int64,
}


def bundle_truth(
    bundle: BundleDefinition,
    lines: pl.DataFrame,
    activities: pl.DataFrame,
    persons: dict[str, Person],
    completeness: int,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(episodes, in-bundle lines) of one bundle on one block."""
    episodes = form_episodes(bundle, trigger_events(bundle, lines, activities, persons))
    if not episodes:
        return pl.DataFrame(schema={**EPISODE_SCHEMA, "in_bundle_cents": pl.Int64}), pl.DataFrame(schema=LINE_SCHEMA)
    for e in episodes:
        e["status"] = status(e, persons.get(e["patient_id"]), completeness)
    frame = (
        pl.DataFrame(episodes, schema_overrides={"n_triggers": pl.Int32})
        .with_columns(pl.lit(bundle.id).alias("bundle_id"))
        .select(list(EPISODE_SCHEMA))
    )
    windows = frame.select("episode_id", "patient_id", "anchor_day", "anchor_claim_id", "window_start", "window_end")

    in_bundle = lines.filter(_any_rule(bundle.in_bundle, activities))
    joined = in_bundle.join(windows, on="patient_id").filter(
        (pl.col("start") <= pl.col("window_end")) & (pl.col("end") >= pl.col("window_start"))
    )
    allocated = joined.with_columns(
        (pl.min_horizontal("end", "window_end") - pl.max_horizontal("start", "window_start") + 1).alias("days_in"),
        (pl.col("end") - pl.col("start") + 1).alias("days"),
        pl.when(pl.col("source_table") == "dbc").then(_year("end")).otherwise(None).cast(pl.Int32).alias("price_year"),
        (_phase() if bundle.window.kind == "phases" else pl.lit(None, pl.String)).alias("phase"),
    ).with_columns(_prorate(pl.col("amount_cents"), pl.col("days_in"), pl.col("days")).alias("allocated_cents"))
    allocated = allocated.with_columns(pl.lit(bundle.id).alias("bundle_id")).select(list(LINE_SCHEMA))

    totals = allocated.group_by("episode_id").agg(pl.col("allocated_cents").sum().alias("in_bundle_cents"))
    frame = frame.join(totals, on="episode_id", how="left").with_columns(pl.col("in_bundle_cents").fill_null(0))
    frame = _outcomes(bundle, frame, lines, activities, in_bundle, persons)
    return frame, allocated


def _outcomes(
    bundle: BundleDefinition,
    frame: pl.DataFrame,
    lines: pl.DataFrame,
    activities: pl.DataFrame,
    in_bundle: pl.DataFrame,
    persons: dict[str, Person],
) -> pl.DataFrame:
    """The bundle's Boolean outcomes: any_line (a matching line, or activity, dated after the anchor
    within N days, or anywhere in the window without N; among the in-bundle lines or any line
    overlapping the window), n_triggers_at_least and death_within."""
    windows = frame.select("episode_id", "patient_id", "anchor_day", "window_start", "window_end")
    for outcome in bundle.outcomes:
        if outcome.kind == "n_triggers_at_least":
            frame = frame.with_columns((pl.col("n_triggers") >= outcome.value).alias(outcome.name))
        elif outcome.kind == "death_within":
            within = outcome.within_days or 365
            died = [
                persons.get(p) is not None and persons[p].death is not None and a <= persons[p].death <= a + within
                for p, a in frame.select("patient_id", "anchor_day").iter_rows()
            ]
            frame = frame.with_columns(pl.Series(outcome.name, died, dtype=pl.Boolean))
        elif outcome.kind == "any_line":
            scope = in_bundle if outcome.component == "in_bundle" else lines
            dated = pl.concat(
                [
                    _dated(rule, scope, activities).select("patient_id", "claim_id", "start", "end", "date")
                    for rule in outcome.rules
                ]
            )
            hits = dated.join(windows, on="patient_id").filter(
                (pl.col("start") <= pl.col("window_end")) & (pl.col("end") >= pl.col("window_start"))
            )
            if outcome.within_days is None:
                hits = hits.filter(
                    (pl.col("date") >= pl.col("window_start")) & (pl.col("date") <= pl.col("window_end"))
                )
            else:
                hits = hits.filter(
                    (pl.col("date") > pl.col("anchor_day"))
                    & (pl.col("date") <= pl.col("anchor_day") + outcome.within_days)
                )
            flagged = hits.select("episode_id").unique().with_columns(pl.lit(True).alias(outcome.name))
            frame = frame.join(flagged, on="episode_id", how="left").with_columns(pl.col(outcome.name).fill_null(False))
    return frame


def block_truth(
    tables: dict[str, pl.DataFrame | None],
    insured: pl.DataFrame,
    as_of: date,
    bundle_ids: tuple[str, ...] | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(episodes, in-bundle lines, price partial sums) of one block, for every bundle."""
    definitions = load_bundles()
    lines = money_lines(tables)
    acts = tables.get("dbc_activity")
    activities = (
        acts.select("claim_id", "activity_cd", pl.col("activity_date").cast(pl.Int64))
        if acts is not None and acts.height
        else pl.DataFrame(schema={"claim_id": pl.String, "activity_cd": pl.String, "activity_date": pl.Int64})
    )
    activities = activities.join(
        lines.filter(pl.col("source_table") == "dbc").select("claim_id"), on="claim_id", how="semi"
    )
    persons = people(insured)
    completeness = completeness_day(as_of)
    episodes, allocated = [], []
    for bundle_id in bundle_ids or tuple(definitions):
        e, a = bundle_truth(definitions[bundle_id], lines, activities, persons, completeness)
        episodes.append(e)
        allocated.append(a)
    prices = (
        lines.filter(pl.col("source_table") == "dbc")
        .group_by("product_cd", _year("end").cast(pl.Int32).alias("year"))
        .agg(pl.col("amount_cents").sum().alias("sum_cents"), pl.len().cast(pl.Int64).alias("n_lines"))
    )
    frame = pl.concat(episodes, how="diagonal")
    missing = [
        o.name
        for b in definitions.values()
        for o in b.outcomes
        if o.kind in BOOLEAN_OUTCOMES and o.name not in frame.columns
    ]
    frame = frame.with_columns([pl.lit(None, pl.Boolean).alias(name) for name in dict.fromkeys(missing)])
    return frame, pl.concat(allocated), prices


# ------------------------------------------------------------------------------- the whole delivery
def reference_prices(partials: list[pl.DataFrame]) -> pl.DataFrame:
    """Rule 6: national mean declared cents per product and year of the end date (half away from
    zero), from the blocks' partial sums."""
    total = pl.concat(partials).group_by("product_cd", "year").agg(pl.col("sum_cents").sum(), pl.col("n_lines").sum())
    s, n = pl.col("sum_cents"), pl.col("n_lines")
    magnitude = (2 * s.abs() + n) // (2 * n)
    return total.select(
        "product_cd", "year", pl.when(s < 0).then(-magnitude).otherwise(magnitude).alias("reference_cents"), "n_lines"
    ).sort("product_cd", "year")


def finish_truth(truth: Path, blocks: list[int], prices: pl.DataFrame, registry_frame: pl.DataFrame) -> None:
    """Add standardised amounts to the blocks' truth lines and episodes (per block, in place), the
    anchor provider's type and province, and dates as dates."""
    PHASE_BUNDLES = [b.id for b in load_bundles().values() if b.window.kind == "phases"]
    price = prices.select("product_cd", pl.col("year").alias("price_year"), "reference_cents")
    for block in blocks:
        name = f"part-{block:05d}.parquet"
        lines = pl.read_parquet(truth / "episode_lines" / name)
        lines = (
            lines.join(price, on=["product_cd", "price_year"], how="left")
            .with_columns(
                pl.when(pl.col("source_table") == "dbc")
                .then(_prorate(pl.col("reference_cents"), pl.col("days_in"), pl.col("days")))
                .otherwise(pl.col("allocated_cents"))
                .alias("allocated_standardised_cents")
            )
            .drop("reference_cents")
        )
        lines = lines.sort("bundle_id", "episode_id", "source_table", "claim_id")
        episodes = pl.read_parquet(truth / "episodes" / name)
        std = lines.group_by("episode_id").agg(
            pl.col("allocated_standardised_cents").sum().alias("in_bundle_standardised_cents")
        )
        phases = lines.group_by("episode_id").agg(
            *[
                pl.col(c).filter(pl.col("phase") == p).sum().alias(f"{p}_{suffix}")
                for p in ("prenatal", "natal", "postnatal", "maternity_care")
                for c, suffix in (("allocated_cents", "cents"), ("allocated_standardised_cents", "standardised_cents"))
            ]
        )
        day = pl.lit(EPOCH)
        phase_columns = [c for c in phases.columns if c != "episode_id"]
        episodes = (
            episodes.join(std, on="episode_id", how="left")
            .with_columns(pl.col("in_bundle_standardised_cents").fill_null(0))
            .join(phases, on="episode_id", how="left")
            .with_columns(
                [
                    pl.when(pl.col("bundle_id").is_in(PHASE_BUNDLES))
                    .then(pl.col(c).fill_null(0))
                    .otherwise(None)
                    .alias(c)
                    for c in phase_columns
                ]
            )
            .join(registry_frame, on="anchor_provider_agb", how="left")
            .with_columns(
                *[
                    (day + pl.duration(days=pl.col(c))).cast(pl.Date).alias(c.replace("_day", "_date"))
                    for c in ("anchor_day",)
                ],
                *[(day + pl.duration(days=pl.col(c))).cast(pl.Date).alias(c) for c in ("window_start", "window_end")],
            )
            .with_columns(pl.col("anchor_date").dt.year().cast(pl.Int32).alias("anchor_year"))
            .drop("anchor_day")
        )
        first = [
            "bundle_id",
            "episode_id",
            "patient_id",
            "anchor_date",
            "anchor_year",
            "anchor_provider_agb",
            "anchor_provider_type",
            "anchor_province",
            "anchor_claim_id",
            "anchor_table",
            "window_start",
            "window_end",
            "n_triggers",
            "status",
            "in_bundle_cents",
            "in_bundle_standardised_cents",
        ]
        episodes = episodes.select(*first, *[c for c in episodes.columns if c not in first]).sort(
            "bundle_id", "episode_id"
        )
        lines.write_parquet(truth / "episode_lines" / name, compression="zstd")
        episodes.write_parquet(truth / "episodes" / name, compression="zstd")
