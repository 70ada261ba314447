"""Finishing touches and a link check for the GX Data Docs sites zorgpad writes.

Two fixes, by :func:`localise_static_links`, after GX has rendered a site:

- GX renders every page with its logo loaded from a GX web server, the URL carrying the project's
  ``dataContextId``: opening the report would tell an outside server that this project looked at a
  validation. zorgpad turns analytics off, so the logo is pointed at the copy GX already writes into
  the site's ``static/`` folder.
- GX writes the favicon link of validation pages for a fixed folder depth; zorgpad's suite names
  (``dbc.row``) add a folder level, so the link missed. Every link into ``static/`` is rewritten
  relative to the page's real folder.

The rest of the styling still comes from public CDNs (bootstrap, jQuery); offline the pages open
unstyled but complete.

:func:`broken_links` walks the site from ``index.html`` (the index lists its pages inside a
script, so plain ``href`` parsing is not enough) and reports every local link that points at no
file: what a reader would hit as a broken page in the browser.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

_REMOTE_LOGO = re.compile(r"https://great-expectations-web-assets\.s3[^\"'\s)]*/(logo-long\.png|short-logo\.png)[^\"'\s)]*")
_LINK = re.compile(r"""(?:href|src)\s*=\s*["']([^"']+)["']""")
_STATIC = re.compile(r"""((?:href|src)\s*=\s*["'])((?:\.\./)*|\./)static/([^"']+)(["'])""")
_PAGE = re.compile(r"""["']((?:validations|expectations)/[^"']+?\.html)["']""")


def localise_static_links(docs_dir: Path | str) -> int:
    """Point the remote GX logo (with its tracking query) at the local copy and make every link
    into ``static/`` relative to its page's folder; returns the number of pages changed."""
    docs_dir = Path(docs_dir)
    changed = 0
    for page in docs_dir.rglob("*.html"):
        text = page.read_text(encoding="utf-8")

        def relative(target: str) -> str:
            return Path(os.path.relpath(docs_dir / "static" / target, page.parent)).as_posix()

        new = _REMOTE_LOGO.sub(lambda m: relative(f"images/{m.group(1)}"), text)
        new = _STATIC.sub(lambda m: f"{m.group(1)}{relative(m.group(3))}{m.group(4)}", new)
        if new != text:
            page.write_text(new, encoding="utf-8")
            changed += 1
    return changed


def _local_targets(page: Path, text: str) -> set[str]:
    targets = set(_LINK.findall(text)) | set(_PAGE.findall(text))
    return {t for t in targets if not t.startswith(("http:", "https:", "//", "#", "mailto:", "javascript:", "data:"))}


def broken_links(index: Path | str) -> tuple[list[str], int]:
    """Local links of the site reachable from ``index`` that point at no file, and the number of
    pages visited."""
    index = Path(index)
    seen: set[Path] = set()
    todo = [index.resolve()]
    broken: list[str] = []
    while todo:
        page = todo.pop()
        if page in seen:
            continue
        seen.add(page)
        for target in sorted(_local_targets(page, page.read_text(encoding="utf-8"))):
            path = (page.parent / target.split("#")[0].split("?")[0]).resolve()
            if not path.exists():
                broken.append(f"{page.relative_to(index.parent.resolve())} -> {target}")
            elif path.suffix == ".html":
                todo.append(path)
    return broken, len(seen)
