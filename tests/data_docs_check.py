"""Checks "The Data Docs open in a browser" twice: by walking the site's links and assets (always),
and by opening the index in headless Chromium without network access (where Chromium is installed;
`.ci/run` installs it)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from expectations.data_docs import broken_links, remote_assets

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def browser() -> str | None:
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


def assert_data_docs_browsable(index: Path, min_pages: int) -> None:
    """Every page reachable from ``index`` exists, every local link and asset resolves, no page loads
    a script or stylesheet from another server, and none loads an image that reports the project to
    an outside server. With a browser at hand, the index also renders its table of results offline."""
    broken, pages = broken_links(index)
    assert broken == [], broken[:10]
    assert pages >= min_pages, f"only {pages} pages reachable from {index}"
    assert remote_assets(index.parent) == {}
    for page in index.parent.rglob("*.html"):
        assert "dataContextId" not in page.read_text(encoding="utf-8"), page
    if browser():
        assert_renders_offline(index)


def assert_renders_offline(index: Path) -> None:
    """Open ``index`` in headless Chromium with every network request refused: the page's scripts
    must run (bootstrap-table writes "Showing 1 to N of N rows" under the table of validation
    results) and the console must report no error."""
    command = [
        browser(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        "--virtual-time-budget=10000",
        "--enable-logging=stderr",
        "--v=0",
        "--dump-dom",
        index.resolve().as_uri(),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    shown = re.search(r"Showing 1 to (\d+) of (\d+) rows", done.stdout)
    assert shown and int(shown.group(2)) > 0, f"the results table did not render: {done.stderr[-2000:]}"
    errors = [
        line
        for line in done.stderr.splitlines()
        if "CONSOLE" in line and re.search(r"Uncaught|blocked|Failed to load|ERR_", line)
    ]
    assert errors == [], errors[:5]
