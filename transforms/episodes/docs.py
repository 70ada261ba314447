"""Render ``docs/episodes.md``: the bundles (from their definitions) and the output schema (from a
real build). Regenerate with ``python -m transforms.episodes.docs``; a test compares."""

from __future__ import annotations

from pathlib import Path

from transforms.bundles import load_bundles
from transforms.episodes.build import EPISODE_BASE_COLUMNS, LINE_COLUMNS

DOCS_PATH = Path(__file__).resolve().parents[2] / "docs" / "episodes.md"

COLUMN_TEXT = {
    "episode_id": "rule 9: first 20 hex digits of SHA-256 of bundle|patient|anchor date|anchor provider",
    "patient_id": "pseudonymised patient",
    "anchor_date": "date of the first trigger event (rule 1)",
    "anchor_provider_agb": "AGB code on the triggering line",
    "anchor_claim_id": "claim of the triggering line",
    "anchor_table": "table of the triggering line",
    "window_start": "first day of the window (rule 3, no overlap)",
    "window_end": "last day of the window",
    "n_triggers": "trigger events inside the episode (rule 2)",
    "status": "complete / censored_enrolment / censored_data / death (rule 7)",
    "death_date": "the patient's death date, if any",
    "contract_id": "the anchor provider's contract for this bundle",
    "contract_start_date": "first start date of that contract",
    "treated": "the anchor falls inside the contract period",
    "age_at_anchor": "year of anchor minus birth year (rule 8)",
    "sex": "M or V",
    "postcode3": "residence at the anchor",
    "gemeente_code": "CBS gemeente at the anchor",
    "n_chronic_conditions": "number of chronic-condition flags set",
    "prior_year_standardised_cents": "standardised cost in the 365 days before the anchor, prorated (cents)",
    "total_cents": "all allocated declared amounts (cents)",
    "total_standardised_cents": "all allocated standardised amounts",
    "first_gp_contact": "first GP consult/visit in the window before the anchor",
    "referral": "last GP referral before the anchor",
    "first_specialist_visit": "start of the first in-bundle DBC line",
    "discharge": "anchor + care days of the anchor subtraject",
    "first_physiotherapy": "first paramedical line on or after the anchor",
    "last_contact": "latest line start in the window",
}
LINE_TEXT = {
    "episode_id": "the episode",
    "patient_id": "pseudonymised patient",
    "source_table": "dbc, gp, pharmacy, paramedical, maternity",
    "claim_id": "the (original) claim id in the store",
    "component": "in_bundle, msz_other, gp, pharmacy, paramedical, maternity",
    "phase": "birth care only: prenatal, natal, postnatal, maternity_care",
    "start": "line start (service) date",
    "end": "line end date",
    "days_in": "days of the line inside the window",
    "days": "days of the line",
    "allocated_cents": "declared amount x days_in / days, rounded half away from zero (cents)",
    "allocated_standardised_cents": "the same for the standardised amount",
}


def render() -> str:
    out = [
        "# Episodes: bundles and output tables",
        "",
        "Generated from `transforms/bundles/*.yml` and `transforms/episodes/` by `python -m transforms.episodes.docs`;",
        "do not edit by hand (a test compares). The rules are in `docs/episode-rules.md`.",
        "",
        "Run: `zorgpad episodes --store STORE --out OUT [--bundles hip_oa,cataract]`. `STORE` is a store written by",
        "`zorgpad ingest` (validated, netted, patient-bucketed); a delivery is refused: ingest it first.",
        "Output (Hive-partitioned):",
        "",
        "```",
        "OUT/episodes/bundle_id=<id>/anchor_year=<year>/part-<bucket>.parquet       one row per episode",
        "OUT/episode_lines/bundle_id=<id>/anchor_year=<year>/part-<bucket>.parquet  one row per allocated line",
        "OUT/reference_prices.parquet                                              national mean price per product and year",
        "OUT/manifest.json                                                         counts, money, versions, timing",
        "```",
        "",
        "`<bucket>` is the first patient bucket of the task that wrote the file: a task builds a group of buckets",
        "(`--buckets-per-task`, by default two tasks per worker of at most 4 buckets each) and writes one file per bundle and anchor year,",
        "so a national run leaves analysts a few files per partition, not thousands of tiny ones.",
        "",
        "Each bundle has its own outcome columns, so read one bundle at a time, or use DuckDB's",
        "`read_parquet('OUT/episodes/**/*.parquet', hive_partitioning=true, union_by_name=true)`.",
        "Money is in integer cents (exact); divide by 100 for euros.",
        "",
        "## Bundles",
        "",
        "| id | window | trigger | in bundle | outcomes | contract start |",
        "|---|---|---|---|---|---|",
    ]
    for b in load_bundles().values():
        w = b.window
        window = (
            "calendar year"
            if w.kind == "calendar_year"
            else f"-{w.pre_days} to +{w.post_days} days" + (" (phases)" if w.kind == "phases" else "")
        )
        trig = "; ".join(_rule(r) for r in b.trigger.any_of) + (
            f"; requires {'; '.join(_rule(r) for r in b.trigger.requires)}" if b.trigger.requires else ""
        )
        out.append(
            f"| `{b.id}` | {window} | {trig} | {'; '.join(_rule(r) for r in b.in_bundle)} | "
            f"{', '.join(f'`{o.name}`' for o in b.outcomes)} | {', '.join(map(str, b.contract_start_years))} |"
        )
    out += ["", "## `episodes` columns", "", "| column | meaning |", "|---|---|"]
    for c in EPISODE_BASE_COLUMNS:
        out.append(f"| `{c}` | {column_text(c)} |")
    out.append("| *outcomes* | one column per outcome of the bundle (see below) |")
    out += [
        "",
        "Partition columns: `bundle_id`, `anchor_year`.",
        "",
        "### Outcomes per bundle",
        "",
        "| bundle | outcome | kind | meaning |",
        "|---|---|---|---|",
    ]
    for b in load_bundles().values():
        for o in b.outcomes:
            out.append(f"| `{b.id}` | `{o.name}` | {o.kind} | {o.description} |")
    out += ["", "## `episode_lines` columns", "", "| column | meaning |", "|---|---|"]
    for c in LINE_COLUMNS:
        out.append(f"| `{c}` | {LINE_TEXT.get(c, '')} |")
    out.append("")
    return "\n".join(out)


def _rule(rule) -> str:
    parts = [rule.table]
    for name in ("specialism", "diagnosis", "activity", "atc", "service", "discipline"):
        value = getattr(rule, name)
        if value:
            parts.append(f"{name} {'/'.join(value)}")
    return " ".join(parts)


def column_text(c: str) -> str:
    """The dictionary's meaning of an episode column."""
    if c in COLUMN_TEXT:
        return COLUMN_TEXT[c]
    if c.endswith("_standardised_cents"):
        return f"allocated standardised amount of component {c[: -len('_standardised_cents')]} (cents)"
    if c.endswith("_cents"):
        return f"allocated declared amount of component {c[: -len('_cents')]} (cents)"
    if c.startswith("days_"):
        return "days between the two care-path events"
    return "chronic-condition flag from dispensings in the 365 days before the anchor (rule 8)"


if __name__ == "__main__":
    DOCS_PATH.write_text(render())
    print(f"wrote {DOCS_PATH}")
