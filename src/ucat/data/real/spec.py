"""The record types of the real-data registry (plain data: no I/O, no torchvision)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass(frozen=True)
class DatasetSpec:
    """What a user and the report see of a set; ``manual_instructions`` say ``<root>`` for ``data.root``.

    ``multilabel``: every image carries a set of classes (its adapter's labels are tuples of class
    indices, ``open_real`` yields multi-hot float vectors) instead of one class index.
    """

    name: str
    paper_name: str
    num_classes: int
    eval_split: str
    num_eval_samples: int
    source: str
    auto_download: bool
    manual_instructions: str
    multilabel: bool = False


@dataclass(frozen=True)
class Resource:
    """One file of a data set's official distribution."""

    filename: str
    urls: tuple[str, ...] = ()     # tried in order; "gdrive:<id>" = Google Drive; () = manual only
    md5: str | None = None
    sha256: str | None = None
    size: int | None = None
    action: str = "extract"        # extract | file (copy as is) | gunzip | keep (used by a post step)
    dest: str = "."                # where it goes, relative to <root>/<name>/


@dataclass(frozen=True)
class Record:
    """Everything about one data set: torchvision keeps url/md5 on the class, ucat keeps them here.

    ``extra_counts``: published sizes of verified splits besides the evaluation split;
    ``file_md5``: official md5 of files that stay on disk after extraction (relative to
    ``<root>/<name>/``); ``post``: a step run on the staging directory after extraction,
    ``post(spec, stage, {file name: path})``.
    """

    spec: DatasetSpec
    resources: tuple[Resource, ...]
    adapter: Any                   # adapters.Adapter: layout, required files, index of a split
    extra_counts: dict[str, int] = field(default_factory=dict)
    file_md5: dict[str, str] = field(default_factory=dict)
    post: Callable | None = None

    @property
    def counts(self) -> dict[str, int]:
        """Every verified split with its published size, the evaluation split first."""
        return {self.spec.eval_split: self.spec.num_eval_samples, **self.extra_counts}
