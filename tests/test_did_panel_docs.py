"""The spec reference in docs/did-panels.md is generated from the pydantic spec and must not drift."""

from __future__ import annotations

from transforms.did_panel import docs
from transforms.did_panel.spec import PanelSpec


def test_the_spec_reference_is_up_to_date():
    text = docs.DOCS_PATH.read_text(encoding="utf-8")
    assert text == docs.render(text), "docs/did-panels.md is stale: run python -m transforms.did_panel.docs"


def test_every_spec_field_is_documented_and_every_example_is_refused_by_its_field():
    table = "\n".join(docs.field_table())  # raises when a field has no note
    for name in PanelSpec.model_fields:
        assert f"| `{name}` |" in table
    rows = docs.example_errors()  # raises when an example is accepted or names another field
    assert len(rows) == len(docs.EXAMPLES) + 2
