"""Checksums shared by the demo generator and the real-data downloader."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any


def digests(path: Path) -> dict[str, Any]:
    """Size, md5 and sha256 of a file in one pass (md5 is what most data sets publish)."""
    md5, sha = hashlib.md5(), hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            md5.update(chunk)
            sha.update(chunk)
    return {"bytes": path.stat().st_size, "md5": md5.hexdigest(), "sha256": sha.hexdigest()}


def sha256(path: Path) -> str:
    return digests(path)["sha256"]


def md5(path: Path) -> str:
    return digests(path)["md5"]


def names_hash(names: list[str]) -> str:
    """Identity of an ordered class-name list (recorded in every manifest)."""
    return hashlib.sha256("\n".join(names).encode()).hexdigest()
