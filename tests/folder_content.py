"""What a rebuild must reproduce: every file's hash, and the manifest without what differs by run."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

#: Manifest keys that name the run rather than its result (run id, timings, the output path).
VOLATILE = ("zorgpad", "timing_seconds", "out")


def folder_content(folder: Path, volatile: tuple[str, ...] = VOLATILE) -> dict[str, str]:
    """Relative path -> SHA-256 of every file under ``folder``; ``manifest.json`` as its JSON without
    the ``volatile`` keys."""
    out = {}
    for path in sorted(folder.rglob("*")):
        if not path.is_file():
            continue
        rel = path.relative_to(folder).as_posix()
        if rel == "manifest.json":
            manifest = json.loads(path.read_text())
            for key in volatile:
                manifest.pop(key)
            out[rel] = json.dumps(manifest, sort_keys=True)
        else:
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out
