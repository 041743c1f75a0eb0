"""Reading a verified split: ``open_real`` -> ``RealDataset`` of ``(transform(RGB image), label)``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ucat.errors import DataError

from ..transforms import to_rgb
from .adapters import Index
from .verify import MANIFEST, check_split, classnames, context, index, record


class RealDataset(Dataset):
    """A split of a real data set: items are ``(transform(RGB PIL image), int label)``; for a
    multi-label set the label is a float32 multi-hot vector over the classes instead."""

    def __init__(self, name: str, split: str, idx: Index, transform=None):
        self.name, self.split, self.transform = name, split, transform
        self.classnames = classnames(name)
        self.multilabel = record(name).spec.multilabel
        self.labels: list = idx.labels    # int per sample; multi-label: tuple of class indices
        self._base, self._paths = idx.base, idx.paths

    @property
    def targets(self) -> list[int]:
        return self.labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        n = len(self.labels)
        if not -n <= i < n:
            raise IndexError(f"{self.name}/{self.split}: index {i} out of range for {n} samples")
        i = i % n
        try:
            img, label = self._base[i]
        except Exception as e:
            where = f" ({self._paths[i]})" if self._paths is not None else ""
            raise DataError(f"{self.name}/{self.split}: cannot read sample {i}{where}: "
                            f"{type(e).__name__}: {e}") from e
        if not isinstance(img, Image.Image):
            img = Image.fromarray(np.asarray(img))
        img = to_rgb(img)
        if self.transform is not None:
            img = self.transform(img)
        if self.multilabel:
            target = torch.zeros(len(self.classnames), dtype=torch.float32)
            target[list(label)] = 1.0
            return img, target
        return img, int(label)

    def __repr__(self) -> str:
        return f"RealDataset({self.name!r}, split={self.split!r}, n={len(self)})"


def open_real(name: str, root: str | Path, split: str | None = None, transform=None) -> Dataset:
    """Open split ``split`` (default: the evaluation split) of ``name`` from ``root/name``."""
    spec = record(name).spec
    split = spec.eval_split if split is None else split
    check_split(name, split)
    ctx = context(name, root)
    idx = index(ctx, split)
    manifest_path = ctx.d / MANIFEST
    if manifest_path.is_file():
        try:
            recorded = json.loads(manifest_path.read_text()).get("num_samples", {}).get(split)
        except (ValueError, AttributeError) as e:
            raise DataError(f"{name}: {manifest_path} is not valid JSON; delete it and rerun "
                            f"`ucat data {name}`") from e
        if recorded is not None and recorded != len(idx.labels):
            raise DataError(f"{name}: {len(idx.labels)} samples in split {split!r} but {manifest_path} recorded "
                            f"{recorded}: the data changed after verification; rerun `ucat data {name}`")
    return RealDataset(name, split, idx, transform)
