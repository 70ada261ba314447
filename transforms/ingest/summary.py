"""The two lines a person reads after an ingest: whether the books balance, and -- separately -- how
many rows failed validation and why. Great Expectations reports ``success: false`` whenever any row
failed a check; those rows are in the quarantine with their reason, so a failed validation and
balanced books are not a contradiction, and the lines say so."""

from __future__ import annotations

from collections import Counter


def quarantine_reasons(manifest: dict) -> dict[str, int]:
    """Quarantined rows per reason over every table, largest first."""
    totals: Counter[str] = Counter()
    for reasons in (manifest.get("quarantine") or {}).values():
        for reason, rows in reasons.items():
            totals[reason] += int(rows)
    return dict(sorted(totals.items(), key=lambda kv: (-kv[1], kv[0])))


def books_line(manifest: dict) -> str:
    if manifest.get("balanced"):
        return "balanced: every delivered row and euro is in the store or the quarantine (manifest.json books)"
    return "NOT balanced: rows or euros are missing between delivery, store and quarantine (manifest.json books)"


def validation_line(manifest: dict, shown: int = 4) -> str:
    reasons = quarantine_reasons(manifest)
    failed = sum(reasons.values())
    if not failed:
        return "every row passed every check"
    top = ", ".join(f"{reason} {rows:,}" for reason, rows in list(reasons.items())[:shown])
    more = f" and {len(reasons) - shown} more reasons" if len(reasons) > shown else ""
    return f"{failed:,} rows failed a check and are quarantined with their reason ({top}{more})"


__all__ = ["books_line", "quarantine_reasons", "validation_line"]
