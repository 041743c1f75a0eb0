"""Evaluated cells under a content address: a re-run evaluation job recomputes only what changed.

One evaluation job scores every condition (clean, each attack at each ε) of one (model, data set):
the model, data and text features load once instead of once per cell, and the cells left to
compute share one pass over the data.  The engines rerun a job
when any of its cells' inputs change (a new ε, one attack's settings, an edited module) and
delete its outputs first, so without this cache a new ε would re-attack every old one.  Each
cell is keyed by :mod:`ucat.fingerprint` (the checkpoint's bytes, the data set's verified
manifest, the values of the keys the cell reads, the cell itself, the evaluation's code and data
files, the library versions, the device) and a hit restores its metrics JSON and per-sample npz
byte for byte.

An entry is a folder (``cell.json``, ``samples.npz``, ``entry.json`` with the sha256 of both and
the key's record) committed with one rename, so concurrent writers never mix their files.  A
restore checks both digests and that the JSON is exactly what the arrays give
(:func:`ucat.metrics.cell_summary`); an entry that fails is deleted and the cell recomputed.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from . import cache, fingerprint
from .data.integrity import sha256
from .io import UMASK, atomic_path

FORMAT = "ucat-cell-v2"
JSON_FILE, NPZ_FILE, ENTRY_FILE = "cell.json", "samples.npz", "entry.json"


def key(**parts) -> tuple[str, dict]:
    """The cell's key and its record (``fingerprint.record`` of kind ``cell``)."""
    rec = fingerprint.record("cell", code=("ucat.evaluate",), **parts)
    return fingerprint.digest(rec), rec


def _copy(src: Path, dst: str | Path) -> None:
    with atomic_path(dst) as tmp:       # creates dst's folder too
        shutil.copyfile(src, tmp)


def _valid(entry: Path, consistent) -> bool:
    try:
        meta = json.loads((entry / ENTRY_FILE).read_text())
        if meta.get("format") != FORMAT:
            return False
        if sha256(entry / JSON_FILE) != meta["json_sha256"] or sha256(entry / NPZ_FILE) != meta["npz_sha256"]:
            return False
        return bool(consistent(entry / JSON_FILE, entry / NPZ_FILE))
    except (OSError, ValueError, KeyError, TypeError):
        return False


def restore(cell_key: str, json_path: str | Path, npz_path: str | Path, consistent) -> bool:
    """Copy a verified cached cell to its outputs (atomically); False when absent or damaged.

    ``consistent(json_file, npz_file)`` says whether the JSON is what the arrays give.  A damaged
    entry is deleted, so the recomputed cell can take its place."""
    entry = cache.cache_dir("cells") / cell_key
    if not entry.is_dir():
        return False
    if not _valid(entry, consistent):
        cache.remove(entry)
        return False
    _copy(entry / NPZ_FILE, npz_path)
    _copy(entry / JSON_FILE, json_path)             # JSON last: it marks the cell done
    cache.touch(entry)
    return True


def store(cell_key: str, record: dict, json_path: str | Path, npz_path: str | Path) -> None:
    """Keep a freshly written cell: the entry appears whole, with one rename, or not at all.

    When another writer committed the same key first, its entry stays (same inputs, same bytes)."""
    folder = cache.cache_dir("cells")
    folder.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{cell_key[:16]}.", dir=folder))
    try:
        shutil.copyfile(json_path, tmp / JSON_FILE)
        shutil.copyfile(npz_path, tmp / NPZ_FILE)
        meta = {"format": FORMAT, "json_sha256": sha256(tmp / JSON_FILE), "npz_sha256": sha256(tmp / NPZ_FILE),
                "record": record}
        (tmp / ENTRY_FILE).write_text(json.dumps(meta, indent=1, sort_keys=True, default=str) + "\n")
        os.chmod(tmp, 0o777 & ~UMASK)               # mkdtemp's 0700 would hide it from a shared cache's users
        try:
            os.rename(tmp, folder / cell_key)       # atomic; fails if the entry exists (another writer won)
        except OSError:
            if not (folder / cell_key).is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

