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
FILES = ("cell.json", "samples.npz")
PACKAGE_DIR = Path(__file__).resolve().parent


def cache_dir() -> Path:
    return Path(os.environ.get("UCAT_CACHE", ".ucat/cache")) / "cells"


def file_digest(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 22):
            h.update(block)
    return h.hexdigest()


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


def restore(cell_key: str, json_path: str | Path, npz_path: str | Path) -> bool:
    """Copy a cached cell to its outputs (atomically); False when absent or incomplete."""
    entry = cache_dir() / cell_key
    sources = [entry / name for name in FILES]
    if not all(p.is_file() for p in sources):
        return False
    try:                                             # a damaged entry is a miss, not an output
        json.loads(sources[0].read_text())
        with zipfile.ZipFile(sources[1]) as zf:
            if zf.testzip() is not None:
                return False
    except (OSError, ValueError, zipfile.BadZipFile):
        return False
    for src, dst in zip(sources[::-1], (npz_path, json_path)):   # JSON last: it marks the cell done
        Path(dst).parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(dst) as tmp:
            shutil.copyfile(src, tmp)
    return True


def store(cell_key: str, json_path: str | Path, npz_path: str | Path) -> None:
    """Keep a freshly written cell; the entry appears whole or not at all (the JSON is written last)."""
    entry = cache_dir() / cell_key
    entry.mkdir(parents=True, exist_ok=True)
    for src, name in ((npz_path, FILES[1]), (json_path, FILES[0])):
        with atomic_path(entry / name) as tmp:
            shutil.copyfile(src, tmp)
