"""How errors about real data are worded: cause first, one line, resolved paths."""

from __future__ import annotations

from pathlib import Path

from ucat.errors import DataError

from .spec import DatasetSpec


def instructions(spec: DatasetSpec, root: Path) -> str:
    """The set's manual instructions with ``<root>`` replaced by the resolved ``data.root``."""
    return spec.manual_instructions.replace("<root>", str(root))


def how_to_get(spec: DatasetSpec, root: Path) -> str:
    if spec.auto_download:
        return (f"Run `ucat data {spec.name}` to download and verify it, or place it by hand: "
                f"{instructions(spec, root)}")
    return instructions(spec, root)


def missing(spec: DatasetSpec, root: Path, path: Path, what: str = "missing") -> DataError:
    return DataError(f"{spec.name}: {path} is {what}. {how_to_get(spec, root)}")


class Reading:
    """Context manager: any failure while parsing ``path`` becomes a DataError naming it."""

    def __init__(self, spec: DatasetSpec, root: Path, path: Path):
        self.spec, self.root, self.path = spec, root, path

    def __enter__(self):
        return self

    def __exit__(self, etype, exc, tb):
        if exc is None or isinstance(exc, DataError) or not isinstance(exc, Exception):
            return False
        raise DataError(f"{self.spec.name}: cannot read {self.path} ({etype.__name__}: {exc}); the file is "
                        f"corrupt, truncated or not in the expected format. "
                        f"{how_to_get(self.spec, self.root)}") from exc
