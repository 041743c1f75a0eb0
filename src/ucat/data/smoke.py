"""``data.source: smoke``: the real data sets replaced by tiny replicas, and said so.

The smoke run of the paper path needs the 16 sets in their real on-disk formats without
the real data.  ``prepare`` writes a replica (:mod:`ucat.data.replica`) into
``<root>/<name>/`` and a ``MANIFEST.json`` that declares it a smoke replica
(``"smoke": true``) with the sha256 of every file.  ``open_split`` checks every file
against that manifest and then reads the replica with the real loaders, expecting, for the
files whose official md5 the real loaders check, the replica's md5 recorded in the manifest.

Nothing here touches the checks of real data: ``ucat.data`` refuses a replica where real
data are expected, and real verification (published counts, official checksums) still
rejects a replica, which matches none of them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from ..errors import DataError
from ..io import write_json
from . import integrity, real, replica

MANIFEST = "MANIFEST.json"
NOT_DATA = {MANIFEST, ".snakemake_timestamp"}  # Snakemake stamps the directory outputs it made
SOURCE = "smoke replica written by ucat.data.replica: NOT the real data set; its numbers mean nothing"


def is_replica(manifest: dict | None) -> bool:
    return bool(manifest) and manifest.get("smoke") is True


def read_manifest(d: Path) -> dict | None:
    """The folder's MANIFEST.json (None if absent); the real-data reader, one format for both."""
    from .real.verify import read_manifest as read

    return read(d)


def _file_digests(d: Path) -> dict[str, str]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(d):
        dirnames.sort()
        for f in sorted(filenames):
            p = Path(dirpath) / f
            rel = p.relative_to(d).as_posix()
            if rel not in NOT_DATA:
                out[rel] = integrity.sha256(p)
    return out


def _manifest(rep: replica.Replica, d: Path) -> dict:
    spec = real.REAL_DATASETS[rep.name]
    return {"manifest_format": 1, "name": rep.name, "paper_name": spec.paper_name, "smoke": True,
            "source": SOURCE, "eval_split": spec.eval_split, "num_classes": spec.num_classes,
            "num_samples": dict(rep.counts),
            "classnames_sha256": integrity.names_hash(real.classnames(rep.name)),
            "replica_md5": dict(sorted(rep.file_md5.items())), "files": _file_digests(d)}


def verify(name: str, root: str | Path) -> dict:
    """The replica's manifest, after checking every file against it; DataError if anything differs."""
    d = Path(root) / name
    manifest = read_manifest(d)
    if not is_replica(manifest):
        raise DataError(f"{name}: no smoke replica in {d} (no MANIFEST.json with \"smoke\": true); "
                        f"run `ucat data {name}` with data.source: smoke")
    found = _file_digests(d)
    if found != manifest["files"]:
        changed = sorted(set(found) ^ set(manifest["files"]) | {k for k in found if manifest["files"].get(k) != found[k]})
        raise DataError(f"{name}: the smoke replica in {d} changed since {d / MANIFEST} was written "
                        f"({len(changed)} file(s), e.g. {changed[0]}); rerun `ucat data {name}`")
    return manifest


def prepare(name: str, root: str | Path) -> dict:
    """Write the replica of ``name`` under ``root/name`` (kept if it verifies) and its manifest."""
    root = Path(root)
    d = root / name
    manifest = read_manifest(d)
    if is_replica(manifest):
        try:
            return verify(name, root)
        except DataError:
            pass  # rebuilt below
    elif d.exists() and any(d.iterdir()):
        raise DataError(f"{name}: {d} holds data that are not a smoke replica; data.source: smoke will not "
                        f"overwrite it: use another data.root (config/paper-smoke.yaml uses data/smoke)")
    stage = root / f".{name}.smoke-staging"
    shutil.rmtree(stage, ignore_errors=True)
    try:
        rep = replica.build(name, stage)
        shutil.rmtree(d, ignore_errors=True)
        d.parent.mkdir(parents=True, exist_ok=True)
        os.replace(stage / name, d)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    rep = replica.Replica(name, root, rep.counts, rep.file_md5)
    manifest = _manifest(rep, d)
    write_json(d / MANIFEST, manifest)  # last: a replica without it is incomplete
    return manifest


@contextlib.contextmanager
def _replica_checksums(name: str, md5s: dict[str, str]):
    """The real loaders' md5 check, expecting the replica's recorded md5s instead of the official ones."""
    table = real.KNOWN_FILE_MD5
    had, old = name in table, table.get(name)
    if had:
        table[name] = dict(md5s)
    try:
        yield
    finally:
        if had:
            table[name] = old


def open_split(name: str, root: str | Path, split: str | None = None, transform=None):
    """A split of the replica, read by the real loader after checking it against its manifest."""
    manifest = verify(name, root)
    with _replica_checksums(name, manifest.get("replica_md5", {})):
        return real.open_real(name, root, split=split, transform=transform)
