"""What "the Data Docs open in a browser" can be checked as without a browser."""

from __future__ import annotations

from pathlib import Path

from expectations.data_docs import broken_links


def assert_data_docs_browsable(index: Path, min_pages: int) -> None:
    """Every page reachable from ``index`` exists, every local link and asset resolves, and no page
    loads an image that reports the project to an outside server."""
    broken, pages = broken_links(index)
    assert broken == [], broken[:10]
    assert pages >= min_pages, f"only {pages} pages reachable from {index}"
    for page in index.parent.rglob("*.html"):
        assert "dataContextId" not in page.read_text(encoding="utf-8"), page
