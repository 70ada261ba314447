"""Finishing touches and a link check for the GX Data Docs sites zorgpad writes.

Three fixes, by :func:`localise_static_links`, after GX has rendered a site:

- GX renders every page with its logo loaded from a GX web server, the URL carrying the project's
  ``dataContextId``: opening the report would tell an outside server that this project looked at a
  validation. zorgpad turns analytics off, so the logo is pointed at the copy GX already writes into
  the site's ``static/`` folder.
- GX writes the favicon link of validation pages for a fixed folder depth; zorgpad's suite names
  (``dbc.row``) add a folder level, so the link missed. Every link into ``static/`` is rewritten
  relative to the page's real folder.

- GX pages load jQuery, Bootstrap, bootstrap-table and Font Awesome from public CDNs; without
  internet (common where health data is read) the index's tables and filters do not render at all.
  Those files are copied into the site (``static/vendor/``, from ``expectations/data_docs_assets``,
  origins in its README) and the pages load them from there. Vega, for charts zorgpad's suites do
  not draw, is dropped from pages that hold no chart.

:func:`broken_links` walks the site from ``index.html`` (the index lists its pages inside a
script, so plain ``href`` parsing is not enough) and reports every local link that points at no
file: what a reader would hit as a broken page in the browser.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

_REMOTE_LOGO = re.compile(
    r"https://great-expectations-web-assets\.s3[^\"'\s)]*/(logo-long\.png|short-logo\.png)[^\"'\s)]*"
)
_LINK = re.compile(r"""(?:href|src)\s*=\s*["']([^"']+)["']""")
_STATIC = re.compile(r"""((?:href|src)\s*=\s*["'])((?:\.\./)*|\./)static/([^"']+)(["'])""")
_PAGE = re.compile(r"""["']((?:validations|expectations)/[^"']+?\.html)["']""")

ASSETS = Path(__file__).parent / "data_docs_assets"
#: CDN address (as GX's templates write it) -> the copy in ``static/vendor/``
_CDN = {
    "https://code.jquery.com/jquery-3.7.1.min.js": "jquery.min.js",
    "https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css": "bootstrap.min.css",
    "https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js": "bootstrap.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js": "popper.min.js",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.js": "bootstrap-table.min.js",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.css": "bootstrap-table.min.css",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/extensions/filter-control/bootstrap-table-filter-control.min.js": "bootstrap-table-filter-control.min.js",
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.min.css": "bootstrap-table-filter-control.min.css",
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.css": "bootstrap-table-filter-control.min.css",
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/js/bootstrap-datepicker.min.js": "bootstrap-datepicker.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/css/bootstrap-datepicker.min.css": "bootstrap-datepicker.min.css",
    "https://cdn.jsdelivr.net/npm/@forevolve/bootstrap-dark@1.1.0/dist/css/bootstrap-prefers-dark.css": "bootstrap-prefers-dark.min.css",
    "https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css": "fontawesome/css/all.min.css",
}
_VEGA = re.compile(
    r"""<script[^>]*src=["']https://cdn\.jsdelivr\.net/npm/vega(?:-lite|-embed)?@\d+["'][^>]*>\s*</script>\s*"""
)
#: a tag loading a local copy, and the CDN attributes that make a browser refuse it from a file://
#: page (``crossorigin`` asks for CORS, which local files cannot answer)
_LOCAL_TAG = re.compile(r"""<(?:script|link)\b[^>]*static/vendor/[^>]*>""")
_CORS_ATTRIBUTES = re.compile(r"""\s+(?:integrity|crossorigin)(?:\s*=\s*["'][^"']*["'])?""")
#: any script or stylesheet still loaded from another server after localising
REMOTE_ASSET = re.compile(r"""<(?:script[^>]*\ssrc|link[^>]*\shref)\s*=\s*["'](https?://[^"']+)["']""")


def localise_static_links(docs_dir: Path | str) -> int:
    """Point the remote GX logo (with its tracking query) at the local copy, load the pages'
    scripts and stylesheets from copies inside the site, and make every link into ``static/``
    relative to its page's folder; returns the number of pages changed."""
    docs_dir = Path(docs_dir)
    vendor = docs_dir / "static" / "vendor"
    shutil.copytree(ASSETS, vendor, dirs_exist_ok=True, ignore=shutil.ignore_patterns("README.md", "LICENSE-*"))
    changed = 0
    for page in docs_dir.rglob("*.html"):
        text = page.read_text(encoding="utf-8")

        def relative(target: str, page: Path = page) -> str:
            return Path(os.path.relpath(docs_dir / "static" / target, page.parent)).as_posix()

        new = _REMOTE_LOGO.sub(lambda m: relative(f"images/{m.group(1)}"), text)
        new = _STATIC.sub(lambda m: f"{m.group(1)}{relative(m.group(3))}{m.group(4)}", new)
        for address, local in _CDN.items():
            new = new.replace(f'"{address}"', f'"{relative("vendor/" + local)}"')
        new = _LOCAL_TAG.sub(lambda m: _CORS_ATTRIBUTES.sub("", m.group(0)), new)
        if "vegaEmbed" not in new:
            new = _VEGA.sub("", new)
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


def remote_assets(docs_dir: Path | str) -> dict[str, list[str]]:
    """Scripts and stylesheets that pages of the site still load from another server (page ->
    addresses); empty when the site works offline."""
    docs_dir = Path(docs_dir)
    found = {}
    for page in sorted(docs_dir.rglob("*.html")):
        addresses = REMOTE_ASSET.findall(page.read_text(encoding="utf-8"))
        if addresses:
            found[str(page.relative_to(docs_dir))] = sorted(set(addresses))
    return found
