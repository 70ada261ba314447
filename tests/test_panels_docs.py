"""The panels' data dictionary is generated from the table declarations and must not drift."""

from __future__ import annotations

from transforms.panels import docs


def test_panels_dictionary_is_up_to_date():
    assert docs.DOCS_PATH.read_text(encoding="utf-8") == docs.render(), (
        "docs/panels.md is stale: run python -m transforms.panels.docs"
    )
