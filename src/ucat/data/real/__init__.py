"""The real data sets of the paper (16 zero-shot classification sets and the multi-label
MS-COCO 2017): registry, verification, download, loading.

Every set lives under ``<root>/<name>/`` in the on-disk layout of the torchvision class that
reads it (TinyImageNet and MS-COCO 2017, which torchvision does not download, in the layout
of their official zips).

* ``registry``: one ``Record`` per set (spec, official files with URLs and checksums, published
  counts, adapter, post-processing);
* ``adapters``: how each set is read; ``layout``: copies unpacked in the wrong folder;
* ``verify``: ``verify_real`` and the manifest; ``archives``/``download``: ``download_real``;
* ``dataset``: ``open_real``.

``REAL_DATASETS``, ``DOWNLOADS``, ``KNOWN_FILE_MD5`` and ``EXTRA_SPLIT_COUNTS`` are views of the
registry by field (assigning to an entry replaces that field of the record), kept for callers
and test helpers written against them.  ``docs/datasets.md`` documents every set.
"""

from __future__ import annotations

import dataclasses
from collections.abc import MutableMapping

from .adapters import source_ids
from .dataset import RealDataset, open_real
from .download import CACHE_DIR, download_real
from .registry import REGISTRY
from .spec import DatasetSpec, Record, Resource
from .verify import MANIFEST, MANIFEST_FORMAT, check_installed, classnames, record, verify_real

__all__ = ["CACHE_DIR", "DOWNLOADS", "DatasetSpec", "EXTRA_SPLIT_COUNTS", "KNOWN_FILE_MD5", "MANIFEST",
           "MANIFEST_FORMAT", "REAL_DATASETS", "REGISTRY", "RealDataset", "Record", "Resource", "check_installed",
           "class_ids", "classnames", "download_real", "open_real", "record", "splits", "verify_real"]


def class_ids(name: str) -> list[str] | None:
    """The class identifiers the loader finds on disk (folder names, wnids, ...), in label order;
    None where the on-disk format carries no class list (labels are plain indices)."""
    record(name)
    return source_ids(name)


def splits(name: str) -> tuple[str, ...]:
    """The splits ``open_real`` accepts for ``name`` ("all" where the set has no official split)."""
    return record(name).adapter.splits


class _FieldView(MutableMapping):
    """name -> one field of the record; sets whose field is empty are absent (``optional``)."""

    def __init__(self, field: str, to_field=lambda v: v, from_field=lambda v: v, optional: bool = False):
        self.field, self.to_field, self.from_field, self.optional = field, to_field, from_field, optional

    def _has(self, name) -> bool:
        return name in REGISTRY and (not self.optional or bool(getattr(REGISTRY[name], self.field)))

    def __getitem__(self, name):
        if not self._has(name):
            raise KeyError(name)
        return self.from_field(getattr(REGISTRY[name], self.field))

    def __setitem__(self, name, value) -> None:
        REGISTRY[name] = dataclasses.replace(REGISTRY[name], **{self.field: self.to_field(value)})

    def __delitem__(self, name) -> None:
        if not self.optional or not self._has(name):
            raise KeyError(name)
        empty = {} if isinstance(getattr(REGISTRY[name], self.field), dict) else ()
        REGISTRY[name] = dataclasses.replace(REGISTRY[name], **{self.field: empty})

    def __iter__(self):
        return (n for n in REGISTRY if self._has(n))

    def __len__(self) -> int:
        return sum(1 for _ in self)


#: name -> DatasetSpec
REAL_DATASETS: MutableMapping[str, DatasetSpec] = _FieldView("spec")
#: name -> list of the official files (Resource)
DOWNLOADS: MutableMapping[str, list[Resource]] = _FieldView("resources", tuple, list)
#: name -> {path relative to <root>/<name>/: official md5} (only sets that have such files)
KNOWN_FILE_MD5: MutableMapping[str, dict[str, str]] = _FieldView("file_md5", dict, dict, optional=True)
#: name -> {split: published size} for splits verified besides the evaluation split
EXTRA_SPLIT_COUNTS: MutableMapping[str, dict[str, int]] = _FieldView("extra_counts", dict, dict, optional=True)
