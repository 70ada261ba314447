"""Render the data dictionary (``docs/contract.md``) from the contract in code.

Regenerate with ``python -m transforms.contract.dictionary``; a test fails when the committed file
differs from what the contract generates, so documentation cannot drift from the code.
"""

from __future__ import annotations

from pathlib import Path

from transforms.contract import CONTRACT_DIR, Contract, Rule, load_contract, rule_kinds

DOCS_PATH = CONTRACT_DIR.parents[1] / "docs" / "contract.md"


def _field_text(value: object) -> str:
    """A rule field as the dictionary writes it: names in backticks, lists joined, mappings as
    ``column`` in [values], numbers as they are."""
    if isinstance(value, dict):
        return ", ".join(f"`{k}` in {list(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(f"`{v}`" for v in value)
    if isinstance(value, str):
        return f"`{value}`"
    return str(value)


def rule_text(rule: Rule) -> str:
    """What the rule requires, in words: its kind's ``text`` with the rule's fields filled in."""
    template = rule_kinds()[rule.kind].text
    return template.format_map({name: _field_text(getattr(rule, name)) for name in Rule.model_fields})


def _role_text(table) -> str:
    """The table's role for the pipeline, with the dates that place its rows."""
    if table.role == "claim":
        period = (
            f"`{table.period.start}`"
            if table.period.start == table.period.end
            else (f"`{table.period.start}`..`{table.period.end}`")
        )
        return f"claim lines (period {period}), bucketed by patient"
    if table.role in ("person", "claim_detail"):
        return f"{'enrolment spells' if table.role == 'person' else 'detail lines of claims'}, bucketed by patient, ordered by `{table.order_by}`"
    return "reference table, read whole"


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
    return f"| `{rule.id}` | {rule_text(rule)} | `{rule.reason}` | {rule.description} |"


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
            f"Grain: {table.grain}. Primary key: {', '.join(f'`{k}`' for k in table.primary_key)}. "
            f"Role: {_role_text(table)}.",
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
