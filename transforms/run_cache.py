"""The stage keys of ``zorgpad run``: when a stage's output is still the output its inputs would give.

A stage (ingest, episodes, panels, a DiD spec's panel, the report) is keyed on what determines its
content: the bytes of its inputs, the options that change its output, the contract version and a
fingerprint of the code that computes it. An upstream stage's output is identified by its own key, so
the keys chain: a new delivery changes the ingest key and with it every key below; a new spec changes
only that spec's key. A stage is *fresh* when the run folder's manifest records its key and its folder
is still there, complete, of the right kind. Nothing else is trusted (not timestamps, not the presence
of a folder alone): a folder replaced by hand is rebuilt.

Every stage publishes its folder by rename (``transforms.output_folder``), so a run killed at any
instant leaves each stage either as it was or complete; the run manifest is rewritten (also by rename)
after every finished stage, so a rerun resumes at the first stage whose key is not recorded.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path

from transforms.output_folder import MARKER, marker, output_kind, write_json_atomically

#: The file the run folder is recognised by and resumes from.
MANIFEST = "manifest.json"
#: Source files whose bytes make up the code fingerprint.
_CODE_SUFFIXES = (".py", ".yaml", ".yml", ".json", ".csv", ".md")


def canonical_digest(value: object) -> str:
    """SHA-256 of ``value`` as canonical JSON (sorted keys, no spaces): equal values, equal digests."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def tree_digest(folder: Path | str, *, skip: Iterable[str] = ()) -> str:
    """SHA-256 over every file under ``folder``: its path relative to the folder and its bytes, in
    path order. A delivery is identified by its content, not by where or when it was copied."""
    folder = Path(folder)
    skipped = set(skip)
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        if rel.split("/", 1)[0] in skipped:
            continue
        digest.update(rel.encode("utf-8") + b"\0")
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()


@lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """SHA-256 over the source of the packages that compute outputs (``transforms``, ``expectations``,
    ``reference``): a changed rule, contract or reference table rebuilds what it computes, also when
    the change is not committed (a git commit alone would miss that)."""
    import expectations
    import reference
    import transforms

    digest = hashlib.sha256()
    for package in (transforms, expectations, reference):
        root = Path(package.__file__).parent
        for path in sorted(
            p for p in root.rglob("*") if p.is_file() and p.suffix in _CODE_SUFFIXES and "__pycache__" not in p.parts
        ):
            digest.update(f"{package.__name__}/{path.relative_to(root).as_posix()}".encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def stage_key(stage: str, inputs: Mapping[str, object]) -> str:
    """The key of ``stage`` given what determines it (input digests, upstream keys, options)."""
    from transforms.contract import CONTRACT_VERSION

    return canonical_digest(
        {"stage": stage, "inputs": dict(inputs), "contract_version": CONTRACT_VERSION, "code": code_fingerprint()}
    )


# ----------------------------------------------------------------------------- the run manifest
def read_run_manifest(out: Path) -> dict:
    """The run folder's manifest, or a new one (a first run)."""
    try:
        manifest = json.loads((Path(out) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        manifest = None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("stages"), dict):
        manifest = {MARKER: marker("run"), "stages": {}}
    return manifest


def write_run_manifest(out: Path, manifest: dict) -> None:
    """Write the manifest by rename: a reader (or a rerun) sees the old or the new one, never half."""
    out = Path(out)
    manifest[MARKER] = marker("run")
    manifest["updated"] = datetime.now(UTC).isoformat(timespec="seconds")
    write_json_atomically(out / MANIFEST, manifest)


def is_fresh(manifest: dict, stage: str, key: str, folder: Path, kind: str) -> bool:
    """Does ``folder`` hold the complete output of ``stage`` for ``key``? The key recorded for the
    stage must be ``key`` and the folder a complete output of ``kind`` (its manifest in place)."""
    recorded = manifest.get("stages", {}).get(stage)
    return (
        isinstance(recorded, dict)
        and recorded.get("key") == key
        and recorded.get("status") == "done"
        and Path(folder).is_dir()
        and output_kind(Path(folder)) == kind
    )


def record_stage(manifest: dict, stage: str, key: str, folder: str, *, seconds: float, summary: dict) -> None:
    """Note in ``manifest`` that ``stage`` finished for ``key`` into ``folder`` (relative to the run)."""
    manifest.setdefault("stages", {})[stage] = {
        "key": key,
        "status": "done",
        "folder": folder,
        "seconds": round(seconds, 3),
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "summary": summary,
    }


__all__ = [
    "canonical_digest",
    "code_fingerprint",
    "is_fresh",
    "read_run_manifest",
    "record_stage",
    "stage_key",
    "tree_digest",
    "write_run_manifest",
]
