"""Checksums shared by the demo generator and the real-data downloader."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any


def _hash(path: str | Path, *hashes):
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            for h in hashes:
                h.update(chunk)
    return hashes


def digests(path: Path) -> dict[str, Any]:
    """Size, md5 and sha256 of a file in one pass (md5 is what most data sets publish)."""
    md5, sha = _hash(path, hashlib.md5(), hashlib.sha256())
    return {"bytes": Path(path).stat().st_size, "md5": md5.hexdigest(), "sha256": sha.hexdigest()}


def sha256(path: str | Path) -> str:
    return _hash(path, hashlib.sha256())[0].hexdigest()


def md5(path: str | Path) -> str:
    return _hash(path, hashlib.md5())[0].hexdigest()


def names_hash(names: list[str]) -> str:
    """Identity of an ordered class-name list (recorded in every manifest)."""
    return hashlib.sha256("\n".join(names).encode()).hexdigest()
