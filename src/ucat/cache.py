"""Where the content-addressed caches live, how big they are, and how to trim them.

Two caches make reruns cheap: class text features (``text/``, :mod:`ucat.textcache`) and
evaluated cells (``cells/``, :mod:`ucat.cellcache`).  Both are keyed by :mod:`ucat.fingerprint`
and verified when read, so deleting any part of them only costs time.  ``verified/`` remembers
which data folders passed a full check, and how their files' sizes and mtimes looked then
(:func:`ucat.data.verified_digest`).

Location: ``$UCAT_CACHE`` if set, else ``.ucat/cache`` in the project root: the nearest folder at or
above the working directory that holds ``dvc.yaml``, ``Snakefile`` or ``.git`` (the working
directory itself when none does), so a command run from a subfolder shares the project's cache.

They grow with every new configuration; ``ucat cache info`` shows their size and ``ucat cache
prune --max-size 20G`` removes the least recently used entries (a restore marks an entry used).
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

KINDS = ("cells", "text", "verified")
PROJECT_MARKERS = ("dvc.yaml", "Snakefile", ".git")


def project_root(start: Path | None = None) -> Path:
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if any((folder / m).exists() for m in PROJECT_MARKERS):
            return folder
    return here


def root() -> Path:
    env = os.environ.get("UCAT_CACHE")
    return Path(env) if env else project_root() / ".ucat" / "cache"


def cache_dir(kind: str) -> Path:
    if kind not in KINDS:
        raise ValueError(f"cache kind {kind!r}: one of {', '.join(KINDS)}")
    return root() / kind


def touch(path: Path) -> None:
    """Mark an entry as just used (pruning removes the least recently used first)."""
    try:
        os.utime(path)
    except OSError:
        pass


@dataclass
class Entry:
    kind: str
    path: Path
    size: int
    used: float      # last use (mtime: set when stored, refreshed by every restore)


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def entries(kinds=KINDS) -> list[Entry]:
    """Every complete entry (temporary files of writers in progress are not entries)."""
    out = []
    for kind in kinds:
        d = cache_dir(kind)
        if not d.is_dir():
            continue
        for p in d.iterdir():
            if p.name.startswith("."):
                continue
            try:
                out.append(Entry(kind, p, _size(p), p.stat().st_mtime))
            except FileNotFoundError:      # removed by a concurrent prune
                continue
    return out


def remove(path: Path) -> None:
    """Delete an entry so that no reader sees it half-deleted: rename it away first."""
    doomed = path.with_name(f".{path.name}.removed-{os.getpid()}-{time.monotonic_ns()}")
    try:
        os.replace(path, doomed)
    except FileNotFoundError:
        return
    if doomed.is_dir():
        shutil.rmtree(doomed, ignore_errors=True)
    else:
        doomed.unlink(missing_ok=True)


def prune(max_bytes: int | None = None, older_than_s: float | None = None, kinds=KINDS) -> list[Entry]:
    """Remove entries unused for ``older_than_s``, then the least recently used until the total is
    at most ``max_bytes``; returns what was removed."""
    now, removed = time.time(), []
    found = sorted(entries(kinds), key=lambda e: e.used)
    if older_than_s is not None:
        removed += [e for e in found if now - e.used > older_than_s]
        found = [e for e in found if now - e.used <= older_than_s]
    if max_bytes is not None:
        total = sum(e.size for e in found)
        for e in found:
            if total <= max_bytes:
                break
            removed.append(e)
            total -= e.size
    for e in removed:
        remove(e.path)
    return removed


def parse_size(text: str) -> int:
    """``"500M"``, ``"20G"``, ``"1.5T"`` or a byte count -> bytes."""
    units = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    number, unit = (t[:-1], t[-1]) if t and t[-1] in units else (t, "")
    try:
        value = float(number)
    except ValueError:
        raise ValueError(f"{text!r} is not a size (e.g. 500M, 20G)") from None
    if value < 0 or value != value:
        raise ValueError(f"{text!r} is not a size (e.g. 500M, 20G)")
    return int(value * units[unit])


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"
