"""Verification: every file a split lists exists and is non-empty, the class list is the expected
one in the expected order, counts are the published ones; the manifest records and compares it.

Checked before anything is read: the layout (a copy unpacked a folder too shallow or too deep is
named with the move that fixes it), the required metadata files, the official md5 of files that
have one.  The manifest's fingerprint of the images covers exactly the files the split lists
(path, size and content), so stray files (``.DS_Store``) do not change it and a modified image
of the same size does.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from ucat.errors import DataError, unknown_choice

from .. import integrity
from . import layout
from .adapters import Ctx, Index, source_ids
from .classes import load_names
from .registry import REGISTRY
from .spec import DatasetSpec, Record

MANIFEST = "MANIFEST.json"
#: 2: ``images`` (listed files) replaced ``trees`` (every file under a folder);
#: 3: ``images`` covers each listed file's content, not only its size
MANIFEST_FORMAT = 3


def record(name: str) -> Record:
    if name not in REGISTRY:
        raise unknown_choice("data.datasets", name, REGISTRY)
    return REGISTRY[name]


def classnames(name: str) -> list[str]:
    """Human-readable class names; index k is the name of label k as ``open_real`` yields it."""
    spec = record(name).spec
    names = list(load_names(name))
    if len(names) != spec.num_classes:
        raise DataError(f"classnames/{name}.json: {len(names)} names, expected {spec.num_classes}")
    return names


def class_indices(spec: DatasetSpec, labels: list) -> list[int]:
    """Every class index the labels name (a multi-label set's label is a tuple of them)."""
    return [v for label in labels for v in label] if spec.multilabel else labels


def context(name: str, root: str | Path, d: Path | None = None) -> Ctx:
    """The set's record context with ``data.root`` resolved (messages name absolute paths)."""
    root = Path(root).resolve()
    return Ctx(record(name).spec, root, root / name if d is None else d)


def check_split(name: str, split: str) -> None:
    splits = record(name).adapter.splits
    if split not in splits:
        raise unknown_choice(f"data.split ({name})", split, splits)


def _check_known_md5(ctx: Ctx, files: list[Path]) -> list[str]:
    known = record(ctx.spec.name).file_md5
    checked = []
    for p in files:
        rel = p.relative_to(ctx.d).as_posix()
        md5 = known.get(rel)
        if md5 is None or not p.is_file():
            continue
        got = integrity.md5(p)
        if got != md5:
            raise DataError(f"{ctx.spec.name}: {p} is corrupt or truncated (md5 {got}, expected {md5}). "
                            f"{ctx.how_to_get()}")
        checked.append(rel)
    return checked


def _check_listed_files(ctx: Ctx, split: str, idx: Index) -> None:
    """Every image the split lists exists and is non-empty (else evaluation would die at sample N)."""
    if idx.paths is None:
        return
    missing, empty = [], []
    for p in idx.paths:
        try:
            if os.stat(p).st_size == 0:
                empty.append(p)
        except OSError:
            missing.append(p)
    if missing or empty:
        bad = missing + empty
        kind = "missing or empty" if missing and empty else "missing" if missing else "empty"
        raise DataError(f"{ctx.spec.name}: {len(bad)} of the {len(idx.paths)} images of split {split!r} listed in "
                        f"{idx.location} are {kind} (first: {bad[0]}); the copy is incomplete. {ctx.how_to_get()}")


def index(ctx: Ctx, split: str, md5_checked: list[str] | None = None) -> Index:
    """Check layout, required files, official md5s, classes, labels and listed files; return the index."""
    rec = record(ctx.spec.name)
    ad = rec.adapter
    if ctx.d == ctx.root / ctx.spec.name:  # the installed copy (not a staging folder)
        layout.check(ctx, ad.anchor)
    if not ctx.d.is_dir():
        raise ctx.missing(ctx.d)
    required = ad.required(ctx.d, split)
    for p in required:
        if not p.exists():
            raise ctx.missing(p)
    checked = _check_known_md5(ctx, [p for p in required if p.is_file()])
    if md5_checked is not None:
        md5_checked += checked
    idx = ad.index(ctx, split)
    expected = source_ids(ctx.spec.name)
    if idx.raw_classes is not None and expected is not None and idx.raw_classes != expected:
        found, want = set(idx.raw_classes), set(expected)
        detail = (f"missing {sorted(want - found)[:5]}" if want - found else
                  f"unexpected {sorted(found - want)[:5]}" if found - want else "in a different order")
        raise DataError(f"{ctx.spec.name}: the classes found under {idx.location} ({len(idx.raw_classes)}) are "
                        f"not the {len(expected)} expected ones ({detail}); labels would not match the class "
                        f"names. {ctx.how_to_get()}")
    n_classes = ctx.spec.num_classes
    bad = [v for v in class_indices(ctx.spec, idx.labels) if not 0 <= v < n_classes]
    if bad:
        raise DataError(f"{ctx.spec.name}: label {bad[0]} out of range [0, {n_classes}) in {idx.location}")
    _check_listed_files(ctx, split, idx)
    return idx


# ------------------------------------------------------------------ manifest

def images_digest(d: Path, paths: list[str]) -> dict[str, Any]:
    """Fingerprint of the listed image files: count, total bytes, sha256 of sorted (path, size, content sha256)."""
    rows = sorted((Path(p).relative_to(d).as_posix(), os.stat(p).st_size, p) for p in paths)
    h = hashlib.sha256()
    for rel, size, p in rows:
        h.update(f"{rel}\t{size}\t{integrity.sha256(p)}\n".encode())
    return {"files": len(rows), "bytes": sum(s for _, s, _ in rows), "sha256": h.hexdigest()}


def read_manifest(d: Path) -> dict | None:
    p = d / MANIFEST
    if not p.is_file():
        return None
    try:
        m = json.loads(p.read_text())
    except ValueError as e:
        raise DataError(f"{p} is not valid JSON (interrupted write?); delete it and rerun verification") from e
    if not isinstance(m, dict):
        raise DataError(f"{p} is not a manifest object; delete it and rerun verification")
    return m


def _what_changed(now: dict, then: dict) -> str:
    if now["files"] != then["files"]:
        return f"{now['files']} image files listed now, {then['files']} recorded"
    if now["bytes"] != then["bytes"]:
        return (f"the same {now['files']} files but {now['bytes']} bytes now, {then['bytes']} recorded: "
                f"some images were replaced or modified")
    return f"the same {now['files']} files and bytes, but other file names, per-file sizes or contents"


def _compare(ctx: Ctx, files: dict, images: dict, recorded: dict) -> None:
    where = ctx.d / MANIFEST
    for rel, sha in recorded.get("files", {}).items():
        if rel in files and files[rel] != sha:
            raise DataError(f"{ctx.spec.name}: {ctx.d / rel} changed since {where} was written (sha256 "
                            f"{files[rel]} != {sha}); rerun `ucat data {ctx.spec.name}` to restore it")
    for split, then in recorded.get("images", {}).items():
        now = images.get(split)
        if now is not None and now != then:
            raise DataError(f"{ctx.spec.name}: the images of split {split!r} changed since {where} was written "
                            f"({_what_changed(now, then)}); rerun `ucat data {ctx.spec.name}`")


def verify_dir(ctx: Ctx, recorded: dict | None, archives: dict | None = None) -> dict:
    """Verify the set in ``ctx.d`` (the installed folder or a staging copy); return its manifest."""
    rec = record(ctx.spec.name)
    spec = ctx.spec
    counts, files, images, md5_checked = {}, {}, {}, []
    for split, expected in rec.counts.items():
        idx = index(ctx, split, md5_checked)
        n = len(idx.labels)
        if n != expected:
            raise DataError(f"{spec.name}: split {split!r} has {n} samples under {idx.location}, expected "
                            f"{expected}: the data are incomplete or not the published version. "
                            f"{ctx.how_to_get()}")
        present = len(set(class_indices(spec, idx.labels)))
        if present != spec.num_classes:
            raise DataError(f"{spec.name}: split {split!r} under {idx.location} contains {present} of the "
                            f"{spec.num_classes} classes. {ctx.how_to_get()}")
        counts[split] = n
        for p in rec.adapter.key_files(ctx.d, split):
            if p.is_file():
                files[p.relative_to(ctx.d).as_posix()] = integrity.sha256(p)
        if idx.paths is not None:
            images[split] = images_digest(ctx.d, idx.paths)
    if recorded is not None and recorded.get("manifest_format") == MANIFEST_FORMAT:
        _compare(ctx, files, images, recorded)
    if archives is None:
        archives = (recorded or {}).get("archives", {})
    return {
        "manifest_format": MANIFEST_FORMAT,
        "name": spec.name,
        "paper_name": spec.paper_name,
        "source": spec.source,
        "eval_split": spec.eval_split,
        "num_classes": spec.num_classes,
        "num_samples": counts,
        "classnames_sha256": integrity.names_hash(classnames(spec.name)),
        "archives": archives,
        "files": dict(sorted(files.items())),
        "images": dict(sorted(images.items())),
        "official_md5_checked": sorted(set(md5_checked)),
    }


def verify_real(name: str, root: str | Path) -> dict:
    """Verify ``root/name`` and return its manifest (not written); DataError if anything is off."""
    ctx = context(name, root)
    return verify_dir(ctx, read_manifest(ctx.d) if ctx.d.is_dir() else None)


def check_installed(name: str, root: str | Path) -> None:
    """The installed copy still is what its ``MANIFEST.json`` recorded (every run that reads it asks)."""
    ctx = context(name, root)
    recorded = read_manifest(ctx.d) if ctx.d.is_dir() else None
    if recorded is None:
        raise DataError(f"{name}: {ctx.d / MANIFEST} is missing: the copy was never verified; "
                        f"run `ucat data {name}`")
    if recorded.get("manifest_format") != MANIFEST_FORMAT:
        raise DataError(f"{name}: {ctx.d / MANIFEST} was written by an older ucat (format "
                        f"{recorded.get('manifest_format')}, now {MANIFEST_FORMAT}); run `ucat data {name}` "
                        f"to verify the copy again")
    verify_dir(ctx, recorded)
