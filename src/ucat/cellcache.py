"""Evaluated cells under a content address: a re-run evaluation job recomputes only what changed.

One evaluation job scores every condition (clean, each attack at each ε) of one (model, data set):
the model, data and text features load once instead of once per cell.  The engines rerun a job
when any of its cells' inputs change (a new ε, one attack's settings, an edited module) and
delete its outputs first, so without this cache a new ε would re-attack every old one.  Each
cell is keyed by the sha256 of everything that decides its bytes:

- the checkpoint file's bytes and the data set's ``MANIFEST.json`` (which fingerprints its files),
- the values of the parameter keys the cell reads (``ucat.keys.evaluate_params``),
- the cell (method, data set, attack, ε), the device type, torch's version,
- the source of every package module the evaluation runs (``ucat.codedeps.code_deps``);

a hit restores the cell's metrics JSON and per-sample npz byte for byte.  The cache lives in
``$UCAT_CACHE/cells`` (default ``.ucat/cache/cells``); deleting it only costs time.  Entries are
written atomically; a damaged one is recomputed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import zipfile
from functools import cache
from pathlib import Path

from .codedeps import SRC, code_deps
from .io import atomic_path

FORMAT = "ucat-cell-v1"
JSON_FILE, NPZ_FILE = "cell.json", "samples.npz"
PACKAGE_DIR = Path(__file__).resolve().parent


def cache_dir() -> Path:
    return Path(os.environ.get("UCAT_CACHE", ".ucat/cache")) / "cells"


@cache
def code_digest() -> str:
    """sha256 over the evaluation's package modules (path and bytes of each)."""
    h = hashlib.sha256()
    for rel in code_deps("ucat.evaluate"):
        h.update(rel.encode() + b"\0")
        h.update((PACKAGE_DIR / Path(rel).relative_to(SRC)).read_bytes())
    return h.hexdigest()


def key(*, checkpoint_digest: str, data_digest: str, values: dict, cell: dict, device: str, torch_version: str) -> str:
    record = {"format": FORMAT, "checkpoint": checkpoint_digest, "data": data_digest, "params": values,
              "cell": cell, "device": device, "torch": torch_version, "code": code_digest()}
    return hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()


def _copy(src: Path, dst: str | Path) -> None:
    with atomic_path(dst) as tmp:       # creates dst's folder too
        shutil.copyfile(src, tmp)


def restore(cell_key: str, json_path: str | Path, npz_path: str | Path) -> bool:
    """Copy a cached cell to its outputs (atomically); False when absent or incomplete."""
    entry = cache_dir() / cell_key
    cached_json, cached_npz = entry / JSON_FILE, entry / NPZ_FILE
    if not (cached_json.is_file() and cached_npz.is_file()):
        return False
    try:                                             # a damaged entry is a miss, not an output
        json.loads(cached_json.read_text())
        with zipfile.ZipFile(cached_npz) as zf:
            if zf.testzip() is not None:
                return False
    except (OSError, ValueError, zipfile.BadZipFile):
        return False
    _copy(cached_npz, npz_path)
    _copy(cached_json, json_path)                    # JSON last: it marks the cell done
    return True


def store(cell_key: str, json_path: str | Path, npz_path: str | Path) -> None:
    """Keep a freshly written cell; the entry appears whole or not at all (the JSON is written last)."""
    entry = cache_dir() / cell_key
    _copy(Path(npz_path), entry / NPZ_FILE)
    _copy(Path(json_path), entry / JSON_FILE)
