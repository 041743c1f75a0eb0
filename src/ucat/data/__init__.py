"""Data sets by name: the embedded demo world and the real zero-shot benchmarks.

``prepare(name, params)`` materialises a set under ``data.root/<name>/`` (generating the
demo, downloading and verifying a real source, or, with ``data.source: smoke``, writing a
tiny replica in the real on-disk format, :mod:`ucat.data.smoke`) and returns its manifest;
``open_eval``/``open_finetune`` return a torch ``Dataset`` of ``(image in [0, 1], label)``
at the model's resolution together with the class names, checked to agree (for a multi-label
set, ``is_multilabel``, the label is a multi-hot float vector).
``verified_digest(name, params)`` checks a prepared set against its manifest (cheaply when no
file's size or mtime moved) and returns the content fingerprint every cache key uses.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, Subset

from ..errors import DataError, unknown_choice
from ..io import atomic_path, write_json
from . import demo
from .integrity import names_hash, sha256

MANIFEST = "MANIFEST.json"


def _real():
    from . import real  # imported lazily: pulls in torchvision's data set classes

    return real


def dataset_names() -> list[str]:
    return sorted(demo.DEMO_SETS) + sorted(_real().REAL_DATASETS)


def is_demo(name: str) -> bool:
    return name in demo.DEMO_SETS


def is_multilabel(name: str) -> bool:
    """Whether every image of ``name`` carries a set of classes (labels are multi-hot vectors)."""
    if is_demo(name):
        return False
    real = _real()
    if name not in real.REAL_DATASETS:
        raise unknown_choice("data.datasets", name, dataset_names())
    return real.REAL_DATASETS[name].multilabel


def classnames(name: str) -> list[str]:
    if is_demo(name):
        return list(demo.DEMO_SETS[name].classnames)
    real = _real()
    if name not in real.REAL_DATASETS:
        raise unknown_choice("data.datasets", name, dataset_names())
    return real.classnames(name)


def source(params: dict) -> str:
    """Where the real data sets come from: ``real`` (downloads, hand-placed data) or ``smoke`` (replicas)."""
    return params["data"]["source"]


def _check_provenance(name: str, params: dict) -> None:
    """Real data where real data are expected, a replica where the smoke source is configured."""
    from . import smoke

    d = Path(params["data"]["root"]) / name
    manifest = smoke.read_manifest(d)
    if source(params) == "real" and smoke.is_replica(manifest):
        raise DataError(f"{name}: {d} holds a smoke replica ({d / MANIFEST} says so), not the real data; "
                        f"use another data.root for real data or delete {d}")


def paper_name(name: str) -> str | None:
    return None if is_demo(name) else _real().REAL_DATASETS[name].paper_name


class UInt8Images(Dataset):
    """uint8 (N, 3, H, W) images + labels -> (float image in [0, 1] at ``size``, label)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, size: int | None = None):
        self.images, self.labels, self.size = images, labels, size

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        img = self.images[i].float() / 255
        if self.size is not None and img.shape[-1] != self.size:
            img = F.interpolate(img[None], size=(self.size, self.size), mode="bicubic",
                                align_corners=False, antialias=True)[0].clamp(0, 1)
        return img, int(self.labels[i])


def manifest_path(name: str, params: dict) -> Path:
    """The manifest ``ucat data NAME`` writes beside a prepared set (it fingerprints the files)."""
    return Path(params["data"]["root"]) / name / MANIFEST


def _demo_file(root: Path, name: str) -> Path:
    return root / name / "images.npz"


def prepare(name: str, params: dict) -> dict:
    """Generate (demo) or download + verify (real) a data set; write and return its manifest."""
    root = Path(params["data"]["root"])
    if not is_demo(name):
        real = _real()
        if name not in real.REAL_DATASETS:
            raise unknown_choice("data.datasets", name, dataset_names())
        if source(params) == "smoke":
            from . import smoke

            return smoke.prepare(name, root)
        _check_provenance(name, params)
        return real.download_real(name, root)
    per_class = params["data"]["demo_train_per_class" if name == "demo_train" else "demo_eval_per_class"]
    size = params["backbone"]["demo"]["image_size"]
    images, labels, names = demo.make_set(name, per_class, params["data"]["seed"], size)
    path = _demo_file(root, name)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, images=images.numpy(), labels=labels.numpy(), classnames=np.array(names))
    manifest = {"name": name, "source": "ucat.data.demo (generated)", "seed": params["data"]["seed"],
                "files": {path.name: sha256(path)}, "num_samples": {"all": int(len(labels))},
                "num_classes": len(names), "classnames_sha256": names_hash(names)}
    write_json(root / name / MANIFEST, manifest)
    return manifest


def _load_demo(root: Path, name: str, size: int) -> tuple[Dataset, list[str]]:
    path = _demo_file(root, name)
    manifest_path = root / name / MANIFEST
    if not path.is_file() or not manifest_path.is_file():
        raise DataError(f"{path}: demo data set missing; run `ucat data {name}` first")
    manifest = json.loads(manifest_path.read_text())
    if manifest["files"].get(path.name) != sha256(path):
        raise DataError(f"{path}: checksum differs from {manifest_path}; regenerate with `ucat data {name}`")
    with np.load(path) as z:
        images, labels, names = torch.from_numpy(z["images"]), torch.from_numpy(z["labels"]), list(z["classnames"])
    return UInt8Images(images, labels, size), [str(n) for n in names]


NOT_DATA = {".snakemake_timestamp"}   # Snakemake stamps the directory outputs it made


def _check_demo(root: Path, name: str) -> None:
    """The demo set's files are exactly the ones its manifest lists, with their recorded bytes."""
    d, manifest_path = root / name, root / name / MANIFEST
    manifest = json.loads(manifest_path.read_text())
    found = sorted(p.name for p in d.iterdir() if p.name not in NOT_DATA | {MANIFEST})
    if found != sorted(manifest["files"]):
        extra = sorted(set(found) ^ set(manifest["files"]))
        raise DataError(f"{name}: the files in {d} changed since {manifest_path} was written ({extra[0]} "
                        f"{'added' if extra[0] in found else 'missing'}); rerun `ucat data {name}`")
    for rel, sha in manifest["files"].items():
        if sha256(d / rel) != sha:
            raise DataError(f"{name}: {d / rel} changed since {manifest_path} was written; rerun `ucat data {name}`")


def _stat_digest(d: Path) -> str:
    """sha256 over (path, size, mtime) of every file under ``d``: moves when any file is touched."""
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(d):
        dirnames.sort()
        for f in sorted(filenames):
            p = Path(dirpath) / f
            if f in NOT_DATA and p.parent == d:
                continue
            st = p.stat()
            h.update(f"{p.relative_to(d).as_posix()}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def verified_digest(name: str, params: dict) -> str:
    """Verify the prepared set ``name`` against its ``MANIFEST.json``; return the manifest's sha256.

    The manifest fingerprints the files' contents, so its digest is the data's content
    fingerprint.  The full check (every checksum) runs only when some file's size or mtime moved
    since the last full check that passed, which is recorded in the cache (``verified/``)."""
    from .. import cache

    root = Path(params["data"]["root"])
    d = root / name
    manifest_path = d / MANIFEST
    if not manifest_path.is_file():
        raise DataError(f"{name}: {manifest_path} not found: the data set is not prepared; run `ucat data {name}`")
    digest = sha256(manifest_path)
    stats = _stat_digest(d)
    record = cache.cache_dir("verified") / f"{hashlib.sha256(str(d.resolve()).encode()).hexdigest()}.json"
    try:
        if json.loads(record.read_text()) == {"manifest": digest, "stats": stats}:
            return digest
    except (OSError, ValueError):
        pass
    if is_demo(name):
        _check_demo(root, name)
    elif source(params) == "smoke":
        from . import smoke

        smoke.verify(name, root)
    else:
        _check_provenance(name, params)
        _real().check_installed(name, root)
    write_json(record, {"manifest": digest, "stats": stats})
    return digest


def _check_labels(name: str, dataset: Dataset, names: list[str], expected: list[str]) -> None:
    if names != expected:
        raise DataError(f"{name}: class names on disk ({len(names)}) differ from the registry's ({len(expected)})")
    labels = getattr(dataset, "labels", None)
    if labels is not None and len(labels) and int(max(labels)) >= len(names):
        raise DataError(f"{name}: label {int(max(labels))} out of range for {len(names)} class names")


def subsample(dataset: Dataset, n: int | None, seed: int) -> Dataset:
    """A fixed, seeded subset of ``n`` items (sorted indices); the whole set when n is None or large."""
    if n is None or n >= len(dataset):
        return dataset
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(dataset), generator=g)[:n].sort().values.tolist()
    return Subset(dataset, idx)


def _open(name: str, params: dict, image_size: int, split: str | None) -> tuple[Dataset, list[str]]:
    root = Path(params["data"]["root"])
    expected = classnames(name)
    if is_demo(name):
        dataset, names = _load_demo(root, name, image_size)
        _check_labels(name, dataset, names, expected)
        return dataset, names
    real = _real()
    from .transforms import transform_for

    transform = transform_for(name, params["data"].get("preprocess", "open_clip"), image_size)
    if source(params) == "smoke":
        from . import smoke

        return smoke.open_split(name, root, split=split, transform=transform), expected
    _check_provenance(name, params)
    dataset = real.open_real(name, root, split=split, transform=transform)
    return dataset, expected


def open_eval(name: str, params: dict, image_size: int) -> tuple[Dataset, list[str]]:
    """The zero-shot evaluation split of ``name`` (seeded subset if ``data.subsample``)."""
    dataset, names = _open(name, params, image_size, split=None)
    return subsample(dataset, params["data"]["subsample"], params["data"]["seed"]), names


def open_finetune(params: dict, image_size: int) -> tuple[Dataset, list[str]]:
    """The fine-tuning set (``data.finetune``; its train split for real data)."""
    name = params["data"]["finetune"]
    return _open(name, params, image_size, split=None if is_demo(name) else "train")
