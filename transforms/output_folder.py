"""Output folders: which folders zorgpad may write, and how it replaces one without ever destroying
what it did not write, whatever happens to the run.

The rules (``docs/store.md`` states them for users):

- **Recognised folders only.** Every folder zorgpad writes carries a marker: its ``manifest.json``
  holds ``{"zorgpad": {"kind": "store", "format": 1, ...}}`` (a synthetic delivery is recognised by
  its ``delivery.json`` producer). A target that exists must be an empty folder or an output of the
  same kind; anything else is refused and left as it is, so ``--store ~/thesis`` stops with a
  message instead of deleting a thesis. A target may not be, contain or lie inside an input.
- **One writer at a time.** ``NAME.zorgpad-lock`` beside the target names the writer (pid, host,
  command, start). The writer holds an ``flock`` on it, which the kernel releases when the writer
  dies however it dies: a second run finds the lock held and stops with a message naming the
  holder; a lock whose holder is gone is stale and is taken over.
- **Publish by rename.** A run writes ``NAME.zorgpad-new-RUN`` beside the target (the same file
  system), writes the manifest last, then swaps the two folders in one atomic
  ``renameat2(RENAME_EXCHANGE)`` and only then removes the old content. At every instant the
  target is either the old complete folder or the new complete one. Where the file system cannot
  exchange, the old folder is first renamed to ``NAME.zorgpad-old-RUN``; a run killed between the
  two renames leaves no target, and the next run (or a reader's error message) restores it.
- **Debris is cleaned by the next writer.** Under the lock, a run restores a target an interrupted
  swap left missing (the complete new folder if there is one, else the old one), then removes the
  ``-new-`` and ``-old-`` folders of earlier runs, recognised by name *and* by the work marker or
  manifest inside them, never by name alone.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import json
import logging
import os
import re
import socket
import sys
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from transforms.errors import UserFacingError
from transforms.manifests import EpisodesManifest, StoreManifest, parse_manifest

FORMAT = 1
MARKER = "zorgpad"
#: Written first into a run's work folder: it makes the folder recognisable as this run's debris.
WORK_MARKER = ".zorgpad-work.json"
#: What each kind of output is, in the words of an error message.
KINDS = {
    "store": ("zorgpad store", "zorgpad ingest"),
    "episodes": ("zorgpad episodes folder", "zorgpad episodes"),
    "panels": ("zorgpad panels folder", "zorgpad panels"),
    "maturity": ("zorgpad maturity folder", "zorgpad maturity"),
    "vektis": ("zorgpad Vektis folder", "zorgpad ingest-vektis"),
    "synthetic_delivery": ("synthetic delivery", "zorgpad synth"),
    "synthetic_truth": ("synthetic delivery's truth", "zorgpad synth"),
    "demo": ("zorgpad demo folder", "zorgpad demo"),
    "did_report": ("zorgpad DiD report folder", "zorgpad did estimate"),
    "did_panel": ("zorgpad DiD panel folder", "zorgpad panel build"),
    "population": ("zorgpad population benchmark folder", "zorgpad population"),
    "regional": ("zorgpad regional folder", "zorgpad regional"),
    "run": ("zorgpad run folder", "zorgpad run"),
    "report": ("zorgpad run report", "zorgpad run"),
}
SYNTH_PRODUCER = "zorgpad synth"

log = logging.getLogger("zorgpad.output")


class OutputError(UserFacingError):
    """An output folder zorgpad must not write, or cannot: nothing was changed."""


# ------------------------------------------------------------------------------ recognising
def marker(kind: str, run_id: str | None = None) -> dict:
    """The ``zorgpad`` entry of a manifest: what kind of output the folder is."""
    return {"kind": kind, "format": FORMAT, **({"run_id": run_id} if run_id else {})}


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def output_kind(folder: Path) -> str | None:
    """The kind of zorgpad output ``folder`` is (``store``, ``episodes``, ...), or None when it is
    not one. Folders written before the marker existed are recognised by their manifest's keys."""
    folder = Path(folder)
    manifest = _read_json(folder / "manifest.json")
    if isinstance(manifest, dict):
        entry = manifest.get(MARKER)
        if isinstance(entry, dict) and entry.get("kind") in KINDS:
            return entry["kind"]
        if {"delivery_id", "books", "buckets", "contract_version"} <= manifest.keys():
            return "store"
        if {"bundles", "episodes", "episode_lines", "buckets_per_task"} <= manifest.keys():
            return "episodes"
    delivery = _read_json(folder / "delivery.json")
    if isinstance(delivery, dict) and delivery.get("producer") == SYNTH_PRODUCER:
        return "synthetic_delivery"
    truth = _read_json(folder / "truth.json")
    if isinstance(truth, dict) and (folder / "planted_triggers").is_dir():
        return "synthetic_truth"
    if (folder / "vektis_long").is_dir() and (folder / "validation_summary.json").is_file():
        return "vektis"
    demo = _read_json(folder / "demo.json")
    if isinstance(demo, dict) and {"delivery", "store", "episodes"} <= demo.keys():
        return "demo"
    return None


def _examples(folder: Path, n: int = 3) -> str:
    names = sorted(p.name for p in folder.iterdir())
    shown = ", ".join(names[:n])
    return shown + (f" and {len(names) - n} more" if len(names) > n else "")


# ------------------------------------------------------------------------------ checking a target
def _overlaps(a: Path, b: Path) -> bool:
    return a == b or a.is_relative_to(b) or b.is_relative_to(a)


def check_target(
    target: Path | str, kind: str, *, inputs: Mapping[str, Path | str] | None = None, option: str = "--out"
) -> Path:
    """Refuse a target zorgpad must not write (raises :class:`OutputError`); returns its absolute
    path. ``inputs`` names the run's inputs (``{"delivery": path}``): the target may not be one of
    them, lie inside one or contain one."""
    target = Path(target).expanduser().resolve()
    what, writer = KINDS[kind]
    if target.parent == target:
        raise OutputError(f"{option} {target}: the root of the file system cannot be a {what}")
    for label, path in (inputs or {}).items():
        path = Path(path).expanduser().resolve()
        if _overlaps(target, path):
            relation = "is" if target == path else "lies inside" if target.is_relative_to(path) else "contains"
            raise OutputError(
                f"{option} {target} {relation} the {label} {path}: the {what} must be a folder "
                f"of its own, outside the {label}; choose another folder"
            )
    if target.exists():
        if not target.is_dir():
            raise OutputError(f"{option} {target} is a file, not a folder: choose a folder for the {what}")
        if any(target.iterdir()):
            found = output_kind(target)
            if found != kind:
                holds = f"a {KINDS[found][0]}" if found else f"files that are not a {what}"
                raise OutputError(
                    f"{option} {target} holds {holds} ({_examples(target)}); zorgpad replaces only an empty "
                    f"folder or one written by `{writer}`, and leaves this one as it is: choose another folder"
                )
    existing = target.parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(
            f"{option} {target}: cannot write in {existing} (no permission, or a read-only file "
            f"system): choose a folder you can write to"
        )
    return target


def require_output(folder: Path | str, kind: str, *, option: str = "--store") -> dict:
    """The manifest of a complete output of ``kind`` a command is about to read (raises
    :class:`OutputError` with what to do when ``folder`` is not one)."""
    folder = Path(folder).expanduser().resolve()
    what, writer = KINDS[kind]
    if not folder.exists():
        complete = [d for d, state in _debris(folder) if state == "complete"]
        if complete:
            raise OutputError(
                f"{option} {folder} does not exist, but an interrupted `{writer}` left a complete "
                f"{what} beside it ({complete[0].name}); run `{writer}` again to finish"
            )
        raise OutputError(f"{option} {folder} does not exist: it must be a {what}; run `{writer}` first")
    if not folder.is_dir():
        raise OutputError(f"{option} {folder} is a file, not a {what}")
    found = output_kind(folder)
    if found != kind:
        holds = f"a {KINDS[found][0]}" if found else "no manifest.json with the zorgpad marker"
        raise OutputError(f"{option} {folder} is not a {what} (it holds {holds}); run `{writer}` first")
    manifest = _read_json(folder / "manifest.json")
    return manifest if isinstance(manifest, dict) else {}


# ------------------------------------------------------------------------------ locking
_HELD: dict[str, int] = {}  # lock path -> file descriptor holding its flock, in this process


def lock_path(target: Path) -> Path:
    return target.with_name(f"{target.name}.zorgpad-lock")


def _holder(path: Path) -> dict:
    data = _read_json(path)
    return data if isinstance(data, dict) else {}


def describe_holder(holder: dict) -> str:
    if not holder:
        return "a zorgpad run that has not written its name yet"
    return (
        f"pid {holder.get('pid')} on {holder.get('host')}, started {holder.get('started')}: "
        f"{holder.get('command', '?')}"
    )


def lock_holder(target: Path | str) -> dict | None:
    """Who holds the lock of ``target`` now (None when nobody does): a cheap check a command makes
    before it starts anything heavy; the run itself takes the lock with :func:`acquire_lock`."""
    path = lock_path(Path(target).expanduser().resolve())
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _holder(path)
    finally:
        os.close(fd)
    return None


def require_unlocked(target: Path | str) -> None:
    """Refuse (``OutputError``) a target another zorgpad run is writing: checked in the preflight, so
    the user hears it in a second rather than after the work (the lock itself is taken later)."""
    holder = lock_holder(target)
    if holder is not None:
        raise OutputError(
            f"{target} is being written by another zorgpad run ({describe_holder(holder)}); "
            "wait for it to finish, or stop it, and run again"
        )


def require_episodes_of(store: Path | str, episodes: Path | str) -> tuple[StoreManifest, EpisodesManifest]:
    """The manifests of a complete store and of complete episodes built from it for the same delivery
    (``--store``, ``--episodes``); one ``OutputError`` naming the mismatch otherwise, one
    ``ManifestError`` when a manifest is not of its form."""
    store_path = Path(store).expanduser().resolve()
    episodes_path = Path(episodes).expanduser().resolve()
    store_manifest = parse_manifest(
        StoreManifest,
        require_output(store, "store", option="--store"),
        f"--store {store_path / 'manifest.json'}",
        hint="run `zorgpad ingest` again",
    )
    episodes_manifest = parse_manifest(
        EpisodesManifest,
        require_output(episodes, "episodes", option="--episodes"),
        f"--episodes {episodes_path / 'manifest.json'}",
        hint="run `zorgpad episodes` again",
    )
    if episodes_manifest.store and episodes_manifest.store != str(store_path):
        raise OutputError(
            f"--episodes {episodes} were built from the store {episodes_manifest.store}, not from "
            f"--store {store_path}: build the episodes from this store, or pass their store"
        )
    as_of = store_manifest.delivery.data_as_of
    if episodes_manifest.data_as_of != as_of:
        raise OutputError(
            f"--episodes have data_as_of {episodes_manifest.data_as_of}, the store {as_of}: "
            "they are of another delivery; rebuild the episodes"
        )
    return store_manifest, episodes_manifest


def acquire_lock(target: Path, *, command: str | None = None) -> dict | None:
    """Take the exclusive lock of ``target`` (raises :class:`OutputError` when a live run holds it).
    Returns what a stale lock said about its dead holder, None when there was none."""
    path = lock_path(target)
    if str(path) in _HELD:
        raise OutputError(f"{target} is already being written by this process")
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise OutputError(f"cannot create the lock file {path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OutputError(
                f"{target} is being written by another zorgpad run ({describe_holder(_holder(path))}); "
                f"wait for it to finish, or stop it, and run again"
            ) from None
        try:  # the holder before us may have removed the file between our open and our flock
            current = os.stat(path).st_ino
        except FileNotFoundError:
            current = None
        if current == os.fstat(fd).st_ino:
            break
        os.close(fd)
    stale = _holder(path) or None
    info = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command or " ".join(["zorgpad", *sys.argv[1:]]),
    }
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
    _HELD[str(path)] = fd
    if stale:
        log.warning("took over the stale lock of %s: %s is no longer running", target, describe_holder(stale))
    return stale


def release_lock(target: Path) -> None:
    """Remove and release the lock of ``target`` if this process holds it."""
    path = lock_path(target)
    fd = _HELD.pop(str(path), None)
    if fd is None:
        return
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    finally:
        os.close(fd)


# ------------------------------------------------------------------------------ debris
_DEBRIS = re.compile(r"\.zorgpad-(new|old)-([0-9a-f]{12})$")
_LEGACY = re.compile(r"\.tmp-([0-9a-f]{8})$")  # the temporary folders of zorgpad before 0.2


def _debris(target: Path) -> list[tuple[Path, str]]:
    """Folders earlier runs left beside ``target``, each with its state: ``complete`` (a finished
    new output whose swap was interrupted), ``old`` (a replaced output) or ``partial``. Only
    folders recognised as zorgpad's by name and content are listed."""
    parent = target.parent
    if not parent.is_dir():
        return []
    found = []
    for entry in sorted(parent.iterdir()):
        if not entry.name.startswith(target.name + ".") or not entry.is_dir() or entry.is_symlink():
            continue
        suffix = entry.name[len(target.name) :]
        match = _DEBRIS.fullmatch(suffix)
        if match:
            role, run = match.groups()
            work = _read_json(entry / WORK_MARKER)
            ours = isinstance(work, dict) and work.get("target") == str(target)
            manifest = _read_json(entry / "manifest.json")
            entry_marker = manifest.get(MARKER) if isinstance(manifest, dict) else None
            if role == "new" and isinstance(entry_marker, dict) and entry_marker.get("run_id") == run:
                found.append((entry, "complete"))
            elif role == "old" and (output_kind(entry) is not None or ours or not any(entry.iterdir())):
                found.append((entry, "old"))
            elif ours or output_kind(entry) is not None or not any(entry.iterdir()):
                found.append((entry, "partial"))
        elif _LEGACY.fullmatch(suffix) and ((entry / "_staging").is_dir() or output_kind(entry) is not None):
            found.append((entry, "partial"))
    return found


def _remove(folder: Path, target: Path) -> list[str]:
    """Remove a folder zorgpad wrote, deepest entries first and its work marker last, so that a
    removal cut short by a kill leaves a folder the next run still recognises as debris. Returns
    what could not be removed (nothing is raised: when old content is removed, the new output is
    already in place)."""
    problems: list[str] = []
    mark = folder / WORK_MARKER
    try:
        if not mark.exists():
            write_json_atomically(mark, {"target": str(target), "removing": True})
    except OSError:
        pass
    for root, dirs, files in os.walk(folder, topdown=False):
        here = Path(root)
        for name in files:
            if here / name != mark:
                _try(lambda p=here / name: p.unlink(), here / name, problems)
        for name in dirs:
            entry = here / name
            _try(entry.unlink if entry.is_symlink() else entry.rmdir, entry, problems)
    if not problems:  # with something left, the marker stays: the next run recognises the folder
        _try(lambda: mark.unlink(missing_ok=True), mark, problems)
        _try(folder.rmdir, folder, problems)
    return problems


def _try(action, path: Path, problems: list[str]) -> None:
    try:
        action()
    except FileNotFoundError:
        pass
    except OSError as exc:
        problems.append(f"{path}: {exc.strerror or exc}")


def recover(target: Path) -> None:
    """Under the lock: restore a target an interrupted swap left missing, then remove the debris
    of earlier runs (see the module docstring)."""
    debris = _debris(target)
    if not target.exists():
        complete = [d for d, state in debris if state == "complete"]
        old = [d for d, state in debris if state == "old"]
        restore = complete[-1] if complete else (old[-1] if old else None)
        if restore is not None:
            os.rename(restore, target)
            log.warning("restored %s from %s, left by an interrupted run", target, restore.name)
            debris = [(d, s) for d, s in debris if d != restore]
    for folder, _ in debris:
        problems = _remove(folder, target)
        if problems:
            log.warning("could not remove %s, left by an earlier run: %s", folder, "; ".join(problems[:3]))


# ------------------------------------------------------------------------------ publishing
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def exchange(a: Path, b: Path) -> bool:
    """Swap two folders in one atomic step (Linux ``renameat2`` with ``RENAME_EXCHANGE``); False
    where the system or the file system cannot."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(b))


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_json_atomically(path: Path, data: dict) -> None:
    """Write JSON so that a reader sees the old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with tmp.open("w", encoding="utf-8") as fh:
        fh.write(json.dumps(data, indent=2, default=str) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


@dataclass
class Publication:
    """One run writing one output folder: the work folder it writes into, under the lock, until
    :meth:`commit` swaps it into place or :meth:`abandon` removes it. Small and picklable (the lock
    itself stays in the process that took it)."""

    target: str
    kind: str
    run_id: str
    work: str

    @classmethod
    def begin(
        cls,
        target: Path | str,
        kind: str,
        *,
        inputs: Mapping[str, Path | str] | None = None,
        option: str = "--out",
        command: str | None = None,
    ) -> Publication:
        """Check the target, take its lock, clean up after earlier runs and create the work folder."""
        path = check_target(target, kind, inputs=inputs, option=option)
        acquire_lock(path, command=command)
        try:
            recover(path)
            check_target(path, kind, inputs=inputs, option=option)  # again, now that nobody else writes
            run_id = uuid.uuid4().hex[:12]
            work = path.with_name(f"{path.name}.zorgpad-new-{run_id}")
            work.mkdir()
            write_json_atomically(
                work / WORK_MARKER,
                {"target": str(path), "kind": kind, "run_id": run_id, "pid": os.getpid(), "host": socket.gethostname()},
            )
        except OSError as exc:
            release_lock(path)
            raise OutputError(f"{option} {path}: cannot prepare the output ({exc.strerror or exc})") from None
        except BaseException:
            release_lock(path)
            raise
        return cls(str(path), kind, run_id, str(work))

    @property
    def work_path(self) -> Path:
        return Path(self.work)

    def commit(self, manifest: dict | None = None) -> Path:
        """Write ``manifest.json`` (with the marker) into the work folder, swap it into place and
        remove the old content; returns the target. ``manifest=None`` writes none (a synthetic
        delivery is recognised by its ``delivery.json``)."""
        target, work = Path(self.target), Path(self.work)
        try:
            (work / WORK_MARKER).unlink(missing_ok=True)
            if manifest is not None:
                write_json_atomically(work / "manifest.json", {MARKER: marker(self.kind, self.run_id), **manifest})
            _fsync_dir(work)
            if not target.exists():
                os.rename(work, target)
                old = None
            elif exchange(work, target):
                old = work  # the old content now sits under the work folder's name
            else:
                old = target.with_name(f"{target.name}.zorgpad-old-{self.run_id}")
                os.rename(target, old)
                os.rename(work, target)
            _fsync_dir(target.parent)
            if old is not None:
                problems = _remove(old, target)
                if problems:
                    log.warning(
                        "%s is published, but the previous content could not all be removed from %s "
                        "(the next run tries again): %s",
                        target,
                        old,
                        "; ".join(problems[:3]),
                    )
        finally:
            release_lock(target)
        return target

    def abandon(self) -> None:
        """Remove the work folder and release the lock: the target stays as it was."""
        try:
            _remove(Path(self.work), Path(self.target))
        finally:
            release_lock(Path(self.target))


__all__ = ["KINDS", "OutputError", "Publication", "check_target", "lock_holder", "output_kind", "require_output"]
