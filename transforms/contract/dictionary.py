"""Render the data dictionary (``docs/contract.md``) from the contract in code.

Regenerate with ``python -m transforms.contract.dictionary``; a test fails when the committed file
differs from what the contract generates, so documentation cannot drift from the code.
"""

from __future__ import annotations

from pathlib import Path

from transforms.contract import CONTRACT_DIR, Contract, Rule, load_contract

DOCS_PATH = CONTRACT_DIR.parents[1] / "docs" / "contract.md"

RULE_TEXT = {
    "column_order": lambda r: f"`{r.left}` <= `{r.right}`",
    "max_span_days": lambda r: f"`{r.end}` - `{r.start}` <= {r.max_days} days",
    "date_range": lambda r: f"{', '.join(f'`{c}`' for c in r.columns)} between 1990-01-01 and `data_as_of`",
    "year_not_after": lambda r: f"`{r.year_column}` <= year of `{r.date_column}`",
    "no_overlap": lambda r: f"spells of one `{', '.join(r.group)}` do not overlap",
    "covered_by_enrolment": lambda r: f"an `insured` spell of the patient covers `{r.date_column}`",
    "not_after_death": lambda r: f"`{r.date_column}` <= death date + {r.grace_days} days",
    "within_parent_dates": lambda r: (
        f"`{r.date_column}` within `{r.parent}.{r.parent_start}`..`{r.parent}.{r.parent_end}`"
    ),
    "prefix_matches": lambda r: f"`{r.column}` starts with the AGB zorgsoort of `{r.by}`",
    "required_when": lambda r: (
        f"`{r.column}` present when {', '.join(f'`{k}` in {list(v)}' for k, v in (r.when or {}).items())}"
    ),
    "required_when_negative": lambda r: f"`{r.column}` present when `{r.amount}` < 0",
    "within_delivery_years": lambda r: (
        f"year of {', '.join(f'`{c}`' for c in r.columns)} within `first_year`..`last_year` of `delivery.json`"
    ),
    "unique_key": lambda r: f"no two rows share ({', '.join(f'`{c}`' for c in r.columns)})",
}


def _column_notes(col) -> str:
    notes = []
    if col.length:
        notes.append(f"length {col.length}")
    if col.pattern:
        notes.append(f"pattern `{col.pattern}`")
    if col.allowed:
        notes.append("one of " + ", ".join(f"`{v}`" for v in col.allowed))
    if col.code_list:
        scope = f" within `{col.scope}`" if col.scope else ""
        on = f", valid on `{col.valid_on}`" if col.valid_on else ""
        notes.append(f"code list `{col.code_list}`{scope}{on}")
    if col.min is not None or col.max is not None:
        low = "" if col.min is None else f"{col.min:g}"
        high = "" if col.max is None else f"{col.max:g}"
        notes.append(f"plausible range {low} .. {high}")
    if col.references:
        notes.append(f"refers to `{col.references}`")
    if col.unique:
        notes.append("unique")
    if col.pseudonym:
        notes.append("pseudonym (a BSN-like value is a finding)")
    if col.json_:
        notes.append("JSON")
    return "; ".join(notes)


def _rule_line(rule: Rule) -> str:
    return f"| `{rule.id}` | {RULE_TEXT[rule.kind](rule)} | `{rule.reason}` | {rule.description} |"


def render(contract: Contract | None = None) -> str:
    contract = contract or load_contract()
    lines = [
        "# Data dictionary: the delivery contract",
        "",
        f"Contract version **{contract.version}**. Generated from `transforms/contract/` by",
        "`python -m transforms.contract.dictionary`; do not edit by hand (a test compares).",
        "",
        "Types are Arrow types: `string`, `int16`, `int32`, `float64`, `bool`, `date` (date32),",
        "`money` = decimal128(12, 2) euros (float64 accepted on input and converted exactly to cents).",
        "Key columns are non-null. A row that breaks a rule is quarantined with the rule's reason code.",
        "",
        "## Tables",
        "",
    ]
    for table in contract.tables.values():
        lines += [
            f"### `{table.table}`",
            "",
            f"Grain: {table.grain}. Primary key: {', '.join(f'`{k}`' for k in table.primary_key)}.",
            "",
            "| column | type | key | description | checks |",
            "|---|---|---|---|---|",
        ]
        for col in table.columns:
            lines.append(
                f"| `{col.name}` | {col.type} | {'yes' if col.key else ''} | {col.description} | {_column_notes(col)} |"
            )
        if table.rules:
            lines += ["", "| rule | condition | reason code | why |", "|---|---|---|---|"]
            lines += [_rule_line(rule) for rule in table.rules]
        lines.append("")
    lines += ["## Code lists", "", "| name | source | code | scope | description |", "|---|---|---|---|---|"]
    for cl in contract.code_lists.values():
        source = cl.source + (f" + {cl.extensions}" if cl.extensions else "")
        desc = " ".join(cl.description.split())
        lines.append(f"| `{cl.name}` | `{source}` | `{cl.code}` | {f'`{cl.scope}`' if cl.scope else ''} | {desc} |")
    lines.append("")
    return "\n".join(lines)


def write(path: Path = DOCS_PATH) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render())
    return path


if __name__ == "__main__":
    print(f"wrote {write()}")
