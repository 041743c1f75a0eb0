"""The 16 real zero-shot data sets of the paper: registry, download, verification, loading.

Every set lives under ``<root>/<name>/`` in the on-disk layout of the torchvision class that
reads it (TinyImageNet, which torchvision lacks, in the layout of the official zip).

* ``open_real`` reads a split and yields ``(transform(RGB PIL image), int label)``.  It checks
  that the files exist (a missing file is a ``DataError`` that names it and says how to get
  it), checks official checksums where torchvision knows them for small metadata/array files,
  and checks that the class list found on disk is the expected one in the expected order:
  several loaders derive labels from folder listings, so one missing class folder would
  silently shift every label after it.
* ``verify_real`` additionally checks the sample count of each verified split against the
  published size, that every class occurs, and, when a ``MANIFEST.json`` exists, that the
  metadata files and image trees are unchanged since it was written.
* ``download_real`` fetches the official archives into ``<root>/.ucat-downloads/<name>/``
  (``*.part`` until complete), checks size/md5/sha256 where known, extracts into a staging
  directory ``<root>/.<name>.staging``, verifies the staged copy, and only then moves it into
  ``<root>/<name>/`` and writes ``MANIFEST.json`` (atomically, last).  A failure at any step
  leaves no manifest and no half-installed set; a rerun starts cleanly.

Class names (``classnames``) come from ``classnames/<name>.json`` (CLIP_benchmark's English
names where it has them, else the loader's own names made readable); the identifiers the
loader finds on disk (folder names, wnids, ...) are in ``classnames/_source_ids.json``, in
the same label order.  ``docs/datasets.md`` documents every set.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import tarfile
import urllib.request
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Iterable, NamedTuple

import numpy as np
import torchvision.datasets as tvd
from PIL import Image
from torch.utils.data import Dataset

from ucat.errors import DataError, unknown_choice
from ucat.io import write_json

from . import integrity

from .transforms import to_rgb

MANIFEST = "MANIFEST.json"
CACHE_DIR = ".ucat-downloads"
MANIFEST_FORMAT = 1


# --------------------------------------------------------------------------- registry

@dataclass(frozen=True)
class DatasetSpec:
    name: str
    paper_name: str
    num_classes: int
    eval_split: str
    num_eval_samples: int
    source: str
    auto_download: bool
    manual_instructions: str


def _instructions(name: str, files: str, layout: str, verified: str) -> str:
    return (f"Get {files}; put the archive(s) in <root>/{name}/ and run `ucat data {name}` "
            f"(download_real: verifies, extracts, writes MANIFEST.json), or extract them yourself so that "
            f"<root>/{name}/{layout} exists. Verified: {verified}.")


_SPECS = [
    DatasetSpec(
        "tinyimagenet", "TinyImageNet", 200, "val", 10000,
        "http://cs231n.stanford.edu/tiny-imagenet-200.zip (own loader; val read through val_annotations.txt)",
        True,
        _instructions("tinyimagenet", "http://cs231n.stanford.edu/tiny-imagenet-200.zip (248,100,043 bytes)",
                      "tiny-imagenet-200/{wnids.txt,words.txt,train/<wnid>/images/*.JPEG,val/images/*.JPEG,"
                      "val/val_annotations.txt} (do not reorganise val/)",
                      "zip md5 90528d7ca1a48142e341f4ef8d21d0de; the 200 wnids; 100000 train and 10000 val "
                      "images, every class present")),
    DatasetSpec(
        "cifar10", "CIFAR10", 10, "test", 10000,
        "torchvision.datasets.CIFAR10 (https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz)", True,
        _instructions("cifar10", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                      "cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}",
                      "archive md5 and torchvision's md5 of every batch file; 10000 test images")),
    DatasetSpec(
        "cifar100", "CIFAR100", 100, "test", 10000,
        "torchvision.datasets.CIFAR100 (https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz)", True,
        _instructions("cifar100", "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
                      "cifar-100-python/{train,test,meta}",
                      "archive md5 and torchvision's md5 of each file; 10000 test images (fine labels)")),
    DatasetSpec(
        "stl10", "STL10", 10, "test", 8000,
        "torchvision.datasets.STL10 (http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz)", True,
        _instructions("stl10", "http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz (2.6 GB)",
                      "stl10_binary/{test_X.bin,test_y.bin,class_names.txt}",
                      "archive md5 + sha256; torchvision's md5 of test_X.bin/test_y.bin; 8000 test images")),
    DatasetSpec(
        "imagenet", "ImageNet", 1000, "val", 50000,
        "torchvision.datasets.ImageNet (official ILSVRC2012 archives, no public download)", False,
        "Download ILSVRC2012_devkit_t12.tar.gz and ILSVRC2012_img_val.tar from https://image-net.org "
        "(registration required), put both in <root>/imagenet/ and run `ucat data imagenet` (download_real "
        "checks torchvision's md5s, builds meta.bin and sorts val into <root>/imagenet/val/<wnid>/ with "
        "torchvision's own helpers). Alternatively place an already sorted val/<wnid>/*.JPEG tree (1000 wnid "
        "folders) there. Verified: archive md5s (fa75699e90414af021442c21a62c3abf devkit, "
        "29b22e2961454d5413ddabcf34fc5622 val); the 1000 wnids; 50000 val images."),
    DatasetSpec(
        "caltech101", "Caltech101", 101, "all", 8677,
        "torchvision.datasets.Caltech101 (https://data.caltech.edu/records/mzrjq-6wc02/files/caltech-101.zip)",
        True,
        _instructions("caltech101", "https://data.caltech.edu/records/mzrjq-6wc02/files/caltech-101.zip",
                      "caltech101/101_ObjectCategories/<category>/image_NNNN.jpg (BACKGROUND_Google included, "
                      "it is dropped as torchvision does)",
                      "zip md5 + sha256; the 101 category folders; 8677 images (no official split: all are "
                      "evaluated)")),
    DatasetSpec(
        "caltech256", "Caltech256", 257, "all", 30607,
        "torchvision.datasets.Caltech256 (https://data.caltech.edu/records/nyy15-4j048/files/"
        "256_ObjectCategories.tar)", True,
        _instructions("caltech256", "https://data.caltech.edu/records/nyy15-4j048/files/256_ObjectCategories.tar",
                      "caltech256/256_ObjectCategories/NNN.<name>/NNN_MMMM.jpg (257 folders incl. 257.clutter)",
                      "archive md5; the 257 folders; 30607 images (no official split: all are evaluated)")),
    DatasetSpec(
        "oxford_pets", "OxfordPets", 37, "test", 3669,
        "torchvision.datasets.OxfordIIITPet (https://www.robots.ox.ac.uk/~vgg/data/pets/)", True,
        _instructions("oxford_pets", "images.tar.gz and annotations.tar.gz from "
                      "https://www.robots.ox.ac.uk/~vgg/data/pets/data/",
                      "oxford-iiit-pet/{images/*.jpg,annotations/test.txt}",
                      "archive md5s; breed names agree with the labels; 3669 test images")),
    DatasetSpec(
        "flowers102", "Flowers102", 102, "test", 6149,
        "torchvision.datasets.Flowers102 (https://www.robots.ox.ac.uk/~vgg/data/flowers/102/)", True,
        _instructions("flowers102", "102flowers.tgz, imagelabels.mat and setid.mat from "
                      "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/",
                      "flowers-102/{jpg/image_NNNNN.jpg,imagelabels.mat,setid.mat}",
                      "md5 + sha256 of the archive and both .mat files; 6149 test images")),
    DatasetSpec(
        "fgvc_aircraft", "FGVCAircraft", 100, "test", 3333,
        "torchvision.datasets.FGVCAircraft (https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/archives/"
        "fgvc-aircraft-2013b.tar.gz), variant level", True,
        _instructions("fgvc_aircraft", "https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/archives/"
                      "fgvc-aircraft-2013b.tar.gz",
                      "fgvc-aircraft-2013b/data/{variants.txt,images_variant_test.txt,images/*.jpg}",
                      "no published checksum: the archive's md5/sha256 are computed and recorded in "
                      "MANIFEST.json, together with the sha256 of the annotation files; the 100 variants; "
                      "3333 test images")),
    DatasetSpec(
        "stanford_cars", "StanfordCars", 196, "test", 8041,
        "torchvision.datasets.StanfordCars (original URL gone: manual placement)", False,
        "The original Stanford URLs are dead and torchvision's download raises by design. Obtain the original "
        "car_devkit.tgz, cars_test.tgz and cars_test_annos_withlabels.mat (e.g. from a mirror you trust), put "
        "them in <root>/stanford_cars/ and run `ucat data stanford_cars` (checks their sha256 against the "
        "values TFDS publishes and extracts them), or lay out the files yourself as torchvision expects: "
        "<root>/stanford_cars/stanford_cars/{devkit/cars_meta.mat,cars_test_annos_withlabels.mat,"
        "cars_test/*.jpg}. Verified: the 196 class names of cars_meta.mat; 8041 test images."),
    DatasetSpec(
        "sun397", "SUN397", 397, "all", 108754,
        "torchvision.datasets.SUN397 (http://vision.princeton.edu/projects/2010/SUN/SUN397.tar.gz, "
        "currently unreachable: manual placement)", False,
        "torchvision's download URL returns 404. Obtain SUN397.tar.gz (39,077,296,924 bytes, md5 "
        "8ca2778205c41d23104230ba66911c7a) from a mirror you trust, put it in <root>/sun397/ and run "
        "`ucat data sun397` (checks md5 + sha256, extracts), or extract it yourself so that "
        "<root>/sun397/SUN397/{ClassName.txt,a/abbey/sun_*.jpg,...} exists. Verified: the 397 classes of "
        "ClassName.txt; 108754 images (no official split: all are evaluated, as torchvision and the "
        "official UCAT code do)."),
    DatasetSpec(
        "food101", "Food101", 101, "test", 25250,
        "torchvision.datasets.Food101 (http://data.vision.ee.ethz.ch/cvl/food-101.tar.gz)", True,
        _instructions("food101", "http://data.vision.ee.ethz.ch/cvl/food-101.tar.gz (5 GB)",
                      "food-101/{meta/test.json,images/<class>/*.jpg}",
                      "archive md5 + sha256; the 101 classes; 25250 test images")),
    DatasetSpec(
        "eurosat", "EuroSAT", 10, "all", 27000,
        "torchvision.datasets.EuroSAT (RGB, https://huggingface.co/datasets/torchgeo/eurosat)", True,
        _instructions("eurosat", "EuroSAT.zip (RGB) from https://huggingface.co/datasets/torchgeo/eurosat",
                      "eurosat/2750/<Class>/*.jpg",
                      "zip md5; the 10 class folders; 27000 images (no official split: all are evaluated)")),
    DatasetSpec(
        "dtd", "DTD", 47, "test", 1880,
        "torchvision.datasets.DTD (https://www.robots.ox.ac.uk/~vgg/data/dtd/), partition 1", True,
        _instructions("dtd", "https://www.robots.ox.ac.uk/~vgg/data/dtd/download/dtd-r1.0.1.tar.gz",
                      "dtd/dtd/{images/<class>/*.jpg,labels/test1.txt}",
                      "archive md5 + sha256; the 47 classes; 1880 test images (partition 1)")),
    DatasetSpec(
        "pcam", "PCAM", 2, "test", 32768,
        "torchvision.datasets.PCAM (https://zenodo.org/record/2546921, Google Drive as fallback)", True,
        _instructions("pcam", "camelyonpatch_level_2_split_test_x.h5.gz and _test_y.h5.gz from "
                      "https://zenodo.org/record/2546921 (the Google Drive fallback needs `pip install gdown`)",
                      "pcam/camelyonpatch_level_2_split_test_{x,y}.h5 (decompressed)",
                      "md5 (torchvision) + sha256 (TFDS) of the .gz files; HDF5 shapes; 32768 test patches")),
]

REAL_DATASETS: dict[str, DatasetSpec] = {s.name: s for s in _SPECS}

#: Splits verified besides the evaluation split, with their published sizes.
EXTRA_SPLIT_COUNTS: dict[str, dict[str, int]] = {"tinyimagenet": {"train": 100000}}


def _spec(name: str) -> DatasetSpec:
    if name not in REAL_DATASETS:
        raise unknown_choice("data.datasets", name, REAL_DATASETS)
    return REAL_DATASETS[name]


def _how_to_get(spec: DatasetSpec) -> str:
    if spec.auto_download:
        return (f"Run `ucat data {spec.name}` (download_real) to download and verify it, "
                f"or place it by hand: {spec.manual_instructions}")
    return spec.manual_instructions


@lru_cache(maxsize=None)
def _load_names(name: str) -> tuple[str, ...]:
    text = resources.files("ucat.data").joinpath("classnames", f"{name}.json").read_text(encoding="utf-8")
    return tuple(json.loads(text))


@lru_cache(maxsize=None)
def _all_source_ids() -> dict[str, tuple[str, ...]]:
    text = resources.files("ucat.data").joinpath("classnames", "_source_ids.json").read_text(encoding="utf-8")
    return {k: tuple(v) for k, v in json.loads(text).items()}


def classnames(name: str) -> list[str]:
    """Human-readable class names; index k is the name of label k as ``open_real`` yields it."""
    spec = _spec(name)
    names = list(_load_names(name))
    if len(names) != spec.num_classes:
        raise DataError(f"classnames/{name}.json: {len(names)} names, expected {spec.num_classes}")
    return names


def class_ids(name: str) -> list[str] | None:
    """The class identifiers the loader finds on disk (folder names, wnids, ...), in label order;
    None where the on-disk format carries no class list (labels are plain indices)."""
    _spec(name)
    ids = _all_source_ids().get(name)
    return None if ids is None else list(ids)




# ------------------------------------------------------------------ integrity helpers

def _tree_digest(folder: Path) -> dict[str, Any]:
    """Cheap fingerprint of an image tree: sorted relative paths and sizes (no content hashing)."""
    h, n, total = hashlib.sha256(), 0, 0
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        rel_dir = Path(dirpath).relative_to(folder)
        for f in sorted(filenames):
            size = os.stat(os.path.join(dirpath, f)).st_size
            h.update(f"{(rel_dir / f).as_posix()}\t{size}\n".encode())
            n, total = n + 1, total + size
    return {"files": n, "bytes": total, "sha256": h.hexdigest()}


#: torchvision's official md5 of files that stay on disk after extraction (relative to
#: <root>/<name>/); checked by open_real and verify_real.  Tests substitute fakes' values.
KNOWN_FILE_MD5: dict[str, dict[str, str]] = {
    "cifar10": {f"cifar-10-batches-py/{f}": m for f, m in tvd.CIFAR10.train_list + tvd.CIFAR10.test_list}
    | {f"cifar-10-batches-py/{tvd.CIFAR10.meta['filename']}": tvd.CIFAR10.meta["md5"]},
    "cifar100": {f"cifar-100-python/{f}": m for f, m in tvd.CIFAR100.train_list + tvd.CIFAR100.test_list}
    | {f"cifar-100-python/{tvd.CIFAR100.meta['filename']}": tvd.CIFAR100.meta["md5"]},
    "stl10": {f"stl10_binary/{f}": m for f, m in tvd.STL10.train_list + tvd.STL10.test_list},
    "flowers102": {f"flowers-102/{tvd.Flowers102._file_dict[k][0]}": tvd.Flowers102._file_dict[k][1]
                   for k in ("label", "setid")},
}


def _missing(spec: DatasetSpec, path: Path, what: str = "missing") -> DataError:
    return DataError(f"{spec.name}: {path} is {what}. {_how_to_get(spec)}")


def _require(spec: DatasetSpec, paths: Iterable[Path]) -> None:
    for p in paths:
        if not p.exists():
            raise _missing(spec, p)


def _check_known_md5(spec: DatasetSpec, d: Path, files: Iterable[Path]) -> list[str]:
    known = KNOWN_FILE_MD5.get(spec.name, {})
    checked = []
    for p in files:
        rel = p.relative_to(d).as_posix()
        md5 = known.get(rel)
        if md5 is None or not p.is_file():
            continue
        got = integrity.md5(p)
        if got != md5:
            raise DataError(f"{spec.name}: {p} is corrupt or truncated (md5 {got}, expected {md5}). "
                            f"{_how_to_get(spec)}")
        checked.append(rel)
    return checked


class _Reading:
    """Context manager: any failure while parsing ``path`` becomes a DataError naming it."""

    def __init__(self, spec: DatasetSpec, path: Path):
        self.spec, self.path = spec, path

    def __enter__(self):
        return self

    def __exit__(self, etype, exc, tb):
        if exc is None or isinstance(exc, DataError):
            return False
        if isinstance(exc, Exception):
            raise DataError(f"{self.spec.name}: cannot read {self.path} ({etype.__name__}: {exc}); "
                            f"the file is corrupt, truncated or not in the expected format. "
                            f"{_how_to_get(self.spec)}") from exc
        return False


# ------------------------------------------------------------------ loaders (per set)

class _Index(NamedTuple):
    base: Dataset                    # yields (PIL image, label); its own transform is None
    labels: list[int]
    paths: list[str] | None          # image file per sample, for error messages
    raw_classes: list[str] | None    # class identifiers found on disk, in label order
    location: Path                   # what to name when counts are wrong


class _ImageList(Dataset):
    """(path, label) list -> (RGB PIL image, label)."""

    def __init__(self, paths: list[str], labels: list[int]):
        self.paths, self.labels = paths, labels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        with open(self.paths[i], "rb") as fh:
            img = Image.open(fh)
            img.load()
        return to_rgb(img), self.labels[i]


class _CIFAR10(tvd.CIFAR10):
    # ucat checks existence and md5 of exactly the files a split needs, naming the bad one.
    meta = {**tvd.CIFAR10.meta, "md5": None}

    def _check_integrity(self) -> bool:
        return True


class _CIFAR100(tvd.CIFAR100):
    meta = {**tvd.CIFAR100.meta, "md5": None}

    def _check_integrity(self) -> bool:
        return True


class _STL10(tvd.STL10):
    def _check_integrity(self) -> bool:  # torchvision would demand the 2.6 GB unlabeled file too
        return True


class _Flowers102(tvd.Flowers102):
    def _check_integrity(self) -> bool:  # md5 of the .mat files is checked by ucat, naming them
        return self._images_folder.is_dir()


class _PCAM(tvd.PCAM):
    # torchvision keeps the h5py module as an attribute, which cannot be pickled (spawned workers)
    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop("h5py", None)
        return state

    def __setstate__(self, state):
        import h5py

        self.__dict__.update(state)
        self.h5py = h5py


class _Adapter:
    splits: tuple[str, ...] = ()
    top: tuple[str, ...] = ()   # entries under <root>/<name>/ that belong to the data set

    def required(self, d: Path, split: str) -> list[Path]:
        raise NotImplementedError

    def index(self, spec: DatasetSpec, d: Path, split: str) -> _Index:
        raise NotImplementedError

    def key_files(self, d: Path, split: str) -> list[Path]:
        return []

    def trees(self, d: Path, split: str) -> list[Path]:
        return []

    def check(self, spec: DatasetSpec, idx: _Index) -> None:
        """Checks that need the class list to be right first."""


class _Tiny(_Adapter):
    splits, top = ("train", "val"), ("tiny-imagenet-200",)
    EXT = {".jpeg", ".jpg", ".png"}

    def required(self, d, split):
        b = d / "tiny-imagenet-200"
        if split == "train":
            return [b / "wnids.txt", b / "train"]
        return [b / "wnids.txt", b / "val" / "val_annotations.txt", b / "val" / "images"]

    def index(self, spec, d, split):
        b = d / "tiny-imagenet-200"
        expected = class_ids("tinyimagenet")
        with _Reading(spec, b / "wnids.txt"):
            wnids = [w.strip() for w in (b / "wnids.txt").read_text().splitlines() if w.strip()]
        if sorted(wnids) != expected:
            raise DataError(f"tinyimagenet: {b / 'wnids.txt'} lists {len(wnids)} wnids that differ from the "
                            f"{len(expected)} TinyImageNet-200 wnids. {_how_to_get(spec)}")
        label_of = {w: i for i, w in enumerate(expected)}
        paths, labels = [], []
        if split == "train":
            for w in expected:
                folder = b / "train" / w / "images"
                if not folder.is_dir():
                    raise _missing(spec, folder)
                files = sorted(p for p in folder.iterdir() if p.suffix.lower() in self.EXT)
                paths += [str(p) for p in files]
                labels += [label_of[w]] * len(files)
            location = b / "train"
        else:
            ann = b / "val" / "val_annotations.txt"
            seen = set()
            with _Reading(spec, ann):
                lines = ann.read_text().splitlines()
            for lineno, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                parts = line.split("\t")
                if len(parts) < 2 or parts[1].strip() not in label_of or parts[0] in seen:
                    raise DataError(f"tinyimagenet: {ann}:{lineno}: malformed line {line[:80]!r} (expected "
                                    f"'<file>\\t<wnid>\\t<bbox>' with a known wnid and a new file name). "
                                    f"{_how_to_get(spec)}")
                seen.add(parts[0])
                img = b / "val" / "images" / parts[0]
                if not img.is_file():
                    raise _missing(spec, img, f"listed in {ann} but missing")
                paths.append(str(img))
                labels.append(label_of[parts[1].strip()])
            location = ann
        return _Index(_ImageList(paths, labels), labels, paths, sorted(wnids), location)

    def key_files(self, d, split):
        b = d / "tiny-imagenet-200"
        return [b / "wnids.txt", b / "words.txt"] + ([b / "val" / "val_annotations.txt"] if split == "val" else [])

    def trees(self, d, split):
        b = d / "tiny-imagenet-200"
        return [b / "train"] if split == "train" else [b / "val" / "images"]


class _Cifar(_Adapter):
    splits = ("train", "test")

    def __init__(self, cls, folder: str):
        self.cls, self.folder, self.top = cls, folder, (folder,)

    def _files(self, d, split):
        f = d / self.folder
        names = self.cls.train_list if split == "train" else self.cls.test_list
        return [f / n for n, _ in names] + [f / self.cls.meta["filename"]]

    def required(self, d, split):
        return self._files(d, split)

    def index(self, spec, d, split):
        with _Reading(spec, d / self.folder):
            ds = self.cls(str(d), train=split == "train", download=False)
            labels = [int(t) for t in ds.targets]
            if len(ds.data) != len(labels):
                raise ValueError(f"{len(ds.data)} images but {len(labels)} labels")
        return _Index(ds, labels, None, list(ds.classes), d / self.folder)

    def key_files(self, d, split):
        return self._files(d, split)


class _Stl(_Adapter):
    splits, top = ("train", "test"), ("stl10_binary",)
    IMAGE_BYTES = 3 * 96 * 96

    def _files(self, d, split):
        b = d / "stl10_binary"
        x, y = ("train_X.bin", "train_y.bin") if split == "train" else ("test_X.bin", "test_y.bin")
        return [b / x, b / y, b / "class_names.txt"]

    def required(self, d, split):
        return self._files(d, split)

    def index(self, spec, d, split):
        x, y, _ = self._files(d, split)
        n_x, rest = divmod(x.stat().st_size, self.IMAGE_BYTES)
        if rest or n_x != y.stat().st_size:
            bad = x if rest else y
            raise DataError(f"stl10: {bad} is truncated or corrupt ({x.name}: {x.stat().st_size} bytes, "
                            f"{y.name}: {y.stat().st_size} labels). {_how_to_get(spec)}")
        with _Reading(spec, d / "stl10_binary"):
            ds = _STL10(str(d), split=split, download=False)
            labels = [int(v) for v in ds.labels]
        return _Index(ds, labels, None, list(getattr(ds, "classes", [])) or None, x)

    def key_files(self, d, split):
        return self._files(d, split)


class _Food(_Adapter):
    splits, top = ("train", "test"), ("food-101",)

    def required(self, d, split):
        return [d / "food-101" / "meta" / f"{split}.json", d / "food-101" / "images"]

    def index(self, spec, d, split):
        meta = d / "food-101" / "meta" / f"{split}.json"
        with _Reading(spec, meta):
            ds = tvd.Food101(str(d), split=split, download=False)
        return _Index(ds, list(ds._labels), [str(p) for p in ds._image_files], list(ds.classes), meta)

    def key_files(self, d, split):
        return [d / "food-101" / "meta" / f"{split}.json"]

    def trees(self, d, split):
        return [d / "food-101" / "images"]


class _Pets(_Adapter):
    splits, top = ("trainval", "test"), ("oxford-iiit-pet",)

    def required(self, d, split):
        b = d / "oxford-iiit-pet"
        return [b / "annotations" / f"{split}.txt", b / "images"]

    def index(self, spec, d, split):
        ann = d / "oxford-iiit-pet" / "annotations" / f"{split}.txt"
        with _Reading(spec, ann):
            ds = tvd.OxfordIIITPet(str(d), split=split, target_types="category", download=False)
        labels = list(ds._labels)
        # torchvision names the present breeds from the file names; they must match our names
        names = classnames(spec.name)
        for breed, label in zip(ds.classes, sorted(set(labels))):
            if not 0 <= label < len(names) or breed != names[label]:
                raise DataError(f"oxford_pets: {ann}: class id {label + 1} is breed {breed!r}, expected "
                                f"{names[label] if 0 <= label < len(names) else '?'!r}. {_how_to_get(spec)}")
        return _Index(ds, labels, [str(p) for p in ds._images], None, ann)

    def key_files(self, d, split):
        return [d / "oxford-iiit-pet" / "annotations" / f"{split}.txt"]

    def trees(self, d, split):
        return [d / "oxford-iiit-pet" / "images"]


class _Flowers(_Adapter):
    splits, top = ("train", "val", "test"), ("flowers-102",)

    def _mats(self, d):
        b = d / "flowers-102"
        return [b / "imagelabels.mat", b / "setid.mat"]

    def required(self, d, split):
        return [d / "flowers-102" / "jpg"] + self._mats(d)

    def index(self, spec, d, split):
        for mat in self._mats(d):  # name the broken file, not just the folder
            with _Reading(spec, mat):
                from scipy.io import loadmat

                loadmat(mat)
        with _Reading(spec, d / "flowers-102"):
            ds = _Flowers102(str(d), split=split, download=False)
        return _Index(ds, [int(v) for v in ds._labels], [str(p) for p in ds._image_files], None,
                      self._mats(d)[1])

    def key_files(self, d, split):
        return self._mats(d)

    def trees(self, d, split):
        return [d / "flowers-102" / "jpg"]


class _Dtd(_Adapter):
    splits, top = ("train", "val", "test"), ("dtd",)

    def required(self, d, split):
        b = d / "dtd" / "dtd"
        return [b / "labels" / f"{split}1.txt", b / "images"]

    def index(self, spec, d, split):
        lab = d / "dtd" / "dtd" / "labels" / f"{split}1.txt"
        with _Reading(spec, lab):
            ds = tvd.DTD(str(d), split=split, partition=1, download=False)
        return _Index(ds, list(ds._labels), [str(p) for p in ds._image_files], list(ds.classes), lab)

    def key_files(self, d, split):
        return [d / "dtd" / "dtd" / "labels" / f"{split}1.txt"]

    def trees(self, d, split):
        return [d / "dtd" / "dtd" / "images"]


class _EuroSat(_Adapter):
    splits, top = ("all",), ("eurosat",)

    def required(self, d, split):
        return [d / "eurosat" / "2750"]

    def index(self, spec, d, split):
        folder = d / "eurosat" / "2750"
        with _Reading(spec, folder):
            ds = tvd.EuroSAT(str(d), download=False)
        return _Index(ds, list(ds.targets), [s[0] for s in ds.samples], list(ds.classes), folder)

    def trees(self, d, split):
        return [d / "eurosat" / "2750"]


class _Caltech(_Adapter):
    splits = ("all",)

    def __init__(self, cls, sub: str, folder: str, pattern: Callable[[str, int, int], str]):
        self.cls, self.sub, self.folder, self.pattern, self.top = cls, sub, folder, pattern, (sub,)

    def required(self, d, split):
        return [d / self.sub / self.folder]

    def index(self, spec, d, split):
        folder = d / self.sub / self.folder
        with _Reading(spec, folder):
            ds = self.cls(str(d), download=False)
        paths = [str(folder / ds.categories[y] / self.pattern(ds.categories[y], y, i))
                 for y, i in zip(ds.y, ds.index)]
        return _Index(ds, [int(y) for y in ds.y], paths, list(ds.categories), folder)

    def check(self, spec, idx):
        for p in idx.paths:  # torchvision infers file names from counts: make gaps loud, here
            if not os.path.isfile(p):
                raise _missing(spec, Path(p), "expected by torchvision's file numbering but missing")

    def trees(self, d, split):
        return [d / self.sub / self.folder]


class _Fgvc(_Adapter):
    splits, top = ("train", "val", "trainval", "test"), ("fgvc-aircraft-2013b",)

    def _data(self, d):
        return d / "fgvc-aircraft-2013b" / "data"

    def required(self, d, split):
        b = self._data(d)
        return [b / "variants.txt", b / f"images_variant_{split}.txt", b / "images"]

    def index(self, spec, d, split):
        lab = self._data(d) / f"images_variant_{split}.txt"
        with _Reading(spec, lab):
            ds = tvd.FGVCAircraft(str(d), split=split, annotation_level="variant", download=False)
        return _Index(ds, list(ds._labels), list(ds._image_files), list(ds.classes), lab)

    def key_files(self, d, split):
        b = self._data(d)
        return [b / "variants.txt", b / f"images_variant_{split}.txt"]

    def trees(self, d, split):
        return [self._data(d) / "images"]


class _Cars(_Adapter):
    splits, top = ("train", "test"), ("stanford_cars",)

    def _files(self, d, split):
        b = d / "stanford_cars"
        if split == "train":
            return [b / "devkit" / "cars_meta.mat", b / "devkit" / "cars_train_annos.mat", b / "cars_train"]
        return [b / "devkit" / "cars_meta.mat", b / "cars_test_annos_withlabels.mat", b / "cars_test"]

    def required(self, d, split):
        return self._files(d, split)

    def index(self, spec, d, split):
        meta, ann, _ = self._files(d, split)
        for mat in (meta, ann):
            with _Reading(spec, mat):
                from scipy.io import loadmat

                loadmat(mat)
        with _Reading(spec, ann):
            ds = tvd.StanfordCars(str(d), split=split, download=False)
            labels = [int(s[1]) for s in ds._samples]
        return _Index(ds, labels, [s[0] for s in ds._samples], [str(c) for c in ds.classes], ann)

    def key_files(self, d, split):
        return self._files(d, split)[:2]

    def trees(self, d, split):
        return [self._files(d, split)[2]]


class _Sun(_Adapter):
    splits, top = ("all",), ("SUN397",)

    def required(self, d, split):
        return [d / "SUN397" / "ClassName.txt"]

    def index(self, spec, d, split):
        names = d / "SUN397" / "ClassName.txt"
        with _Reading(spec, names):
            ds = tvd.SUN397(str(d), download=False)
        # torchvision keeps rglob's file-system order; sort so the sample order is reproducible
        order = sorted(range(len(ds._image_files)), key=lambda i: ds._image_files[i].as_posix())
        ds._image_files = [ds._image_files[i] for i in order]
        ds._labels = [ds._labels[i] for i in order]
        return _Index(ds, list(ds._labels), [str(p) for p in ds._image_files], list(ds.classes), d / "SUN397")

    def key_files(self, d, split):
        return [d / "SUN397" / "ClassName.txt"]

    def trees(self, d, split):
        return [d / "SUN397"]


class _Pcam(_Adapter):
    splits, top = ("train", "val", "test"), ("pcam",)

    def _files(self, d, split):
        s = {"train": "train", "val": "valid", "test": "test"}[split]
        b = d / "pcam"
        return [b / f"camelyonpatch_level_2_split_{s}_x.h5", b / f"camelyonpatch_level_2_split_{s}_y.h5"]

    def required(self, d, split):
        return self._files(d, split)

    def index(self, spec, d, split):
        try:
            import h5py
        except ImportError as e:  # pragma: no cover - h5py is a dependency
            raise DataError("pcam: reading PCAM needs h5py (pip install h5py)") from e
        xf, yf = self._files(d, split)
        with _Reading(spec, xf), h5py.File(xf, "r") as fx:
            xshape = fx["x"].shape
            if len(xshape) != 4 or xshape[1:] != (96, 96, 3):
                raise ValueError(f"dataset 'x' has shape {xshape}, expected (N, 96, 96, 3)")
        with _Reading(spec, yf), h5py.File(yf, "r") as fy:
            y = np.asarray(fy["y"][:]).reshape(-1)
            if len(y) != xshape[0]:
                raise ValueError(f"{len(y)} labels for {xshape[0]} images in {xf.name}")
        with _Reading(spec, d / "pcam"):
            ds = _PCAM(str(d), split=split, download=False)
        return _Index(ds, [int(v) for v in y], None, None, xf)

    def key_files(self, d, split):
        return self._files(d, split)


class _ImageNet(_Adapter):
    splits, top = ("train", "val"), ("meta.bin", "train", "val")

    def required(self, d, split):
        return [d / split]

    def index(self, spec, d, split):
        folder = d / split
        if (d / "meta.bin").is_file():
            with _Reading(spec, d / "meta.bin"):
                tvd.imagenet.load_meta_file(str(d))
            with _Reading(spec, folder):
                ds = tvd.ImageNet(str(d), split=split)
                raw = list(ds.wnids)
        else:  # a sorted <split>/<wnid>/ tree without torchvision's meta.bin: same label order
            with _Reading(spec, folder):
                ds = tvd.ImageFolder(str(folder))
                raw = list(ds.classes)
        return _Index(ds, list(ds.targets), [s[0] for s in ds.samples], raw, folder)

    def key_files(self, d, split):
        return [d / "meta.bin"] if (d / "meta.bin").is_file() else []

    def trees(self, d, split):
        return [d / split]


def _caltech101_file(cat: str, y: int, i: int) -> str:
    return f"image_{i:04d}.jpg"


def _caltech256_file(cat: str, y: int, i: int) -> str:
    return f"{y + 1:03d}_{i:04d}.jpg"


_ADAPTERS: dict[str, _Adapter] = {
    "tinyimagenet": _Tiny(),
    "cifar10": _Cifar(_CIFAR10, "cifar-10-batches-py"),
    "cifar100": _Cifar(_CIFAR100, "cifar-100-python"),
    "stl10": _Stl(),
    "imagenet": _ImageNet(),
    "caltech101": _Caltech(tvd.Caltech101, "caltech101", "101_ObjectCategories", _caltech101_file),
    "caltech256": _Caltech(tvd.Caltech256, "caltech256", "256_ObjectCategories", _caltech256_file),
    "oxford_pets": _Pets(),
    "flowers102": _Flowers(),
    "fgvc_aircraft": _Fgvc(),
    "stanford_cars": _Cars(),
    "sun397": _Sun(),
    "food101": _Food(),
    "eurosat": _EuroSat(),
    "dtd": _Dtd(),
    "pcam": _Pcam(),
}


def splits(name: str) -> tuple[str, ...]:
    """The splits ``open_real`` accepts for ``name`` ("all" where the set has no official split)."""
    _spec(name)
    return _ADAPTERS[name].splits


def _check_split(name: str, split: str) -> None:
    if split not in _ADAPTERS[name].splits:
        raise unknown_choice(f"data.split ({name})", split, _ADAPTERS[name].splits)


def _index(spec: DatasetSpec, d: Path, split: str, md5_checked: list[str] | None = None) -> _Index:
    ad = _ADAPTERS[spec.name]
    required = ad.required(d, split)
    _require(spec, required)
    checked = _check_known_md5(spec, d, [p for p in required if p.is_file()])
    if md5_checked is not None:
        md5_checked += checked
    idx = ad.index(spec, d, split)
    expected = class_ids(spec.name)
    if idx.raw_classes is not None and expected is not None and idx.raw_classes != expected:
        found, want = set(idx.raw_classes), set(expected)
        detail = (f"missing {sorted(want - found)[:5]}" if want - found else
                  f"unexpected {sorted(found - want)[:5]}" if found - want else "in a different order")
        raise DataError(f"{spec.name}: the classes found under {idx.location} ({len(idx.raw_classes)}) are not "
                        f"the {len(expected)} expected ones ({detail}); labels would not match the class "
                        f"names. {_how_to_get(spec)}")
    bad = [v for v in idx.labels if not 0 <= v < spec.num_classes]
    if bad:
        raise DataError(f"{spec.name}: label {bad[0]} out of range [0, {spec.num_classes}) in {idx.location}")
    ad.check(spec, idx)
    return idx


# ------------------------------------------------------------------ public: open

class RealDataset(Dataset):
    """A split of a real data set: items are ``(transform(RGB PIL image), int label)``."""

    def __init__(self, name: str, split: str, idx: _Index, transform=None):
        self.name, self.split, self.transform = name, split, transform
        self.classnames = classnames(name)
        self.labels: list[int] = idx.labels
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
        return img, int(label)

    def __repr__(self) -> str:
        return f"RealDataset({self.name!r}, split={self.split!r}, n={len(self)})"


def open_real(name: str, root: str | Path, split: str | None = None, transform=None) -> Dataset:
    """Open split ``split`` (default: the evaluation split) of ``name`` from ``root/name``."""
    spec = _spec(name)
    split = spec.eval_split if split is None else split
    _check_split(name, split)
    d = Path(root) / name
    if not d.is_dir():
        raise _missing(spec, d)
    idx = _index(spec, d, split)
    manifest_path = d / MANIFEST
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


# ------------------------------------------------------------------ public: verify

def _verified_splits(spec: DatasetSpec) -> dict[str, int]:
    return {spec.eval_split: spec.num_eval_samples, **EXTRA_SPLIT_COUNTS.get(spec.name, {})}


def _read_manifest(d: Path) -> dict | None:
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


def _verify_dir(spec: DatasetSpec, d: Path, recorded: dict | None, archives: dict | None = None) -> dict:
    ad = _ADAPTERS[spec.name]
    counts, files, trees, md5_checked = {}, {}, {}, []
    for split, expected in _verified_splits(spec).items():
        idx = _index(spec, d, split, md5_checked)
        n = len(idx.labels)
        if n != expected:
            raise DataError(f"{spec.name}: split {split!r} has {n} samples under {idx.location}, expected "
                            f"{expected}: the data are incomplete or not the published version. "
                            f"{_how_to_get(spec)}")
        present = len(set(idx.labels))
        if present != spec.num_classes:
            raise DataError(f"{spec.name}: split {split!r} under {idx.location} contains {present} of the "
                            f"{spec.num_classes} classes. {_how_to_get(spec)}")
        counts[split] = n
        for p in ad.key_files(d, split):
            if p.is_file():
                files[p.relative_to(d).as_posix()] = integrity.sha256(p)
        for t in ad.trees(d, split):
            if t.is_dir():
                trees[t.relative_to(d).as_posix()] = _tree_digest(t)
    if recorded is not None:
        for rel, sha in recorded.get("files", {}).items():
            if rel in files and files[rel] != sha:
                raise DataError(f"{spec.name}: {d / rel} changed since {d / MANIFEST} was written (sha256 "
                                f"{files[rel]} != {sha}); rerun `ucat data {spec.name}` to restore it")
        for rel, tree in recorded.get("trees", {}).items():
            if rel in trees and trees[rel] != tree:
                raise DataError(f"{spec.name}: the files under {d / rel} changed since {d / MANIFEST} was "
                                f"written ({trees[rel]['files']} files now, {tree['files']} recorded); rerun "
                                f"`ucat data {spec.name}`")
    if archives is None:
        archives = (recorded or {}).get("archives", {})
    names = classnames(spec.name)
    return {
        "manifest_format": MANIFEST_FORMAT,
        "name": spec.name,
        "paper_name": spec.paper_name,
        "source": spec.source,
        "eval_split": spec.eval_split,
        "num_classes": spec.num_classes,
        "num_samples": counts,
        "classnames_sha256": integrity.names_hash(names),
        "archives": archives,
        "files": dict(sorted(files.items())),
        "trees": dict(sorted(trees.items())),
        "official_md5_checked": sorted(set(md5_checked)),
    }


def verify_real(name: str, root: str | Path) -> dict:
    """Verify ``root/name`` and return its manifest (not written); DataError if anything is off."""
    spec = _spec(name)
    d = Path(root) / name
    if not d.is_dir():
        raise _missing(spec, d)
    return _verify_dir(spec, d, _read_manifest(d))


# ------------------------------------------------------------------ public: download

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


def _pcam_resources() -> list[Resource]:
    tfds_sha = {  # TFDS url_checksums for the zenodo copies
        "test_x": ("79174c2201ad521602a5888be8f36ee10875f37403dd3f2086caf2182ef87245", 800875929),
        "test_y": ("0a522005fccc8bbd04c5a117bfaf81d8da2676f03a29d7499f71d0a0bd6068ef", 3040),
    }
    out = []
    for key, kind in (("images", "x"), ("targets", "y")):
        fname, gdrive_id, md5 = tvd.PCAM._FILES["test"][key]
        sha, size = tfds_sha[f"test_{kind}"]
        out.append(Resource(fname + ".gz", (f"https://zenodo.org/record/2546921/files/{fname}.gz?download=1",
                                            f"gdrive:{gdrive_id}"), md5, sha, size, "gunzip", "pcam"))
    return out


def _imagenet_resources() -> list[Resource]:
    meta = tvd.imagenet.ARCHIVE_META
    return [Resource(meta["devkit"][0], (), meta["devkit"][1], action="keep"),
            Resource(meta["val"][0], (), meta["val"][1], action="keep")]


_FLOWERS = tvd.Flowers102._download_url_prefix
#: The official files of every set (urls and md5 from torchvision; sha256 and sizes from TFDS's
#: url_checksums where the URL is the same).  Tests substitute fakes' archives and checksums.
DOWNLOADS: dict[str, list[Resource]] = {
    "tinyimagenet": [Resource("tiny-imagenet-200.zip", ("http://cs231n.stanford.edu/tiny-imagenet-200.zip",),
                              "90528d7ca1a48142e341f4ef8d21d0de", size=248100043)],
    "cifar10": [Resource(tvd.CIFAR10.filename, (tvd.CIFAR10.url,), tvd.CIFAR10.tgz_md5)],
    "cifar100": [Resource(tvd.CIFAR100.filename, (tvd.CIFAR100.url,), tvd.CIFAR100.tgz_md5)],
    "stl10": [Resource(tvd.STL10.filename, (tvd.STL10.url,), tvd.STL10.tgz_md5,
                       "f31fd99273a1acb8609c8db427cebb1de3f71de77758cdc0e22956e1289b9866", 2640397119)],
    "imagenet": _imagenet_resources(),
    "caltech101": [Resource("caltech-101.zip", ("https://data.caltech.edu/records/mzrjq-6wc02/files/caltech-101.zip",),
                            "3138e1922a9193bfa496528edbbc45d0",
                            "331234750fc7f77520e50d9565e8b6907b03565e30320da1401130db08c61f91", 137414764,
                            dest="caltech101/.zip")],
    "caltech256": [Resource("256_ObjectCategories.tar",
                            ("https://data.caltech.edu/records/nyy15-4j048/files/256_ObjectCategories.tar",),
                            "67b4f42ca05d46448c6bb8ecd2220f6d", dest="caltech256")],
    "oxford_pets": [Resource(url.rsplit("/", 1)[1], (url,), md5, dest="oxford-iiit-pet")
                    for url, md5 in tvd.OxfordIIITPet._RESOURCES],
    "flowers102": [
        Resource("102flowers.tgz", (_FLOWERS + "102flowers.tgz",), tvd.Flowers102._file_dict["image"][1],
                 "2d01ecc807db462958cfe3d92f57a8c252b4abd240eb955770201e45f783b246", 344862509, dest="flowers-102"),
        Resource("imagelabels.mat", (_FLOWERS + "imagelabels.mat",), tvd.Flowers102._file_dict["label"][1],
                 "4903e94206bac23bf772aadf06451916df56b58fc483a62db32a97b82656651d", 502, "file", "flowers-102"),
        Resource("setid.mat", (_FLOWERS + "setid.mat",), tvd.Flowers102._file_dict["setid"][1],
                 "46b8678f91fd95d3c8f4feab80d271a6c834a1dd896fe29fd3e6ad9ce5c8dccd", 14989, "file", "flowers-102"),
    ],
    "fgvc_aircraft": [Resource("fgvc-aircraft-2013b.tar.gz", (tvd.FGVCAircraft._URL,))],
    "stanford_cars": [
        Resource("car_devkit.tgz", (), sha256="b97deb463af7d58b6bfaa18b2a4de9829f0f79e8ce663dfa9261bf7810e9accd",
                 size=330960, dest="stanford_cars"),
        Resource("cars_test.tgz", (), sha256="bffea656d6f425cba3c91c6d83336e4c5f86c6cffd8975b0f375d3a10da8e243",
                 size=977350468, dest="stanford_cars"),
        Resource("cars_test_annos_withlabels.mat", (),
                 sha256="790f75be8ea34eeded134cc559332baf23e30e91367e9ddca97d26ed9b895f05", size=185758,
                 action="file", dest="stanford_cars"),
    ],
    "sun397": [Resource("SUN397.tar.gz", (tvd.SUN397._DATASET_URL,), tvd.SUN397._DATASET_MD5,
                        "f404130965a7ad77bed5ececc71e720ab50f3cc1e1bb257257610d38f3b928ec", 39077296924)],
    "food101": [Resource("food-101.tar.gz", (tvd.Food101._URL,), tvd.Food101._MD5,
                         "d97d15e438b7f4498f96086a4f7e2fa42a32f2712e87d3295441b2b6314053a4", 4996278331)],
    "eurosat": [Resource("EuroSAT.zip", ("https://huggingface.co/datasets/torchgeo/eurosat/resolve/"
                                         "c877bcd43f099cd0196738f714544e355477f3fd/EuroSAT.zip",),
                         "c8fa014336c82ac7804f0398fcb19387", dest="eurosat")],
    "dtd": [Resource("dtd-r1.0.1.tar.gz", (tvd.DTD._URL,), tvd.DTD._MD5,
                     "e42855a52a4950a3b59612834602aa253914755c95b0cff9ead6d07395f8e205", 625239812, dest="dtd")],
    "pcam": _pcam_resources(),
}


def _fetch(url: str, dest: Path) -> None:
    """Download ``url`` to the new file ``dest``.  The only network access of this module."""
    if url.startswith("gdrive:"):
        try:
            import gdown
        except ImportError as e:
            raise DataError(f"{url}: downloading from Google Drive needs the optional package gdown "
                            f"(pip install gdown, or the `download` extra of ucat)") from e
        out = gdown.download(id=url[len("gdrive:"):], output=str(dest), quiet=True)
        if out is None or not dest.is_file():
            raise DataError(f"{url}: Google Drive refused the download (quota or permission page)")
        return
    from torchvision.datasets.utils import USER_AGENT

    req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    with urllib.request.urlopen(req, timeout=120) as resp, open(dest, "wb") as fh:
        length = resp.headers.get("Content-Length")
        shutil.copyfileobj(resp, fh, 1 << 20)
    if length is not None and dest.stat().st_size != int(length):
        raise DataError(f"{url}: connection closed after {dest.stat().st_size} of {length} bytes")


def _check_file(path: Path, res: Resource) -> tuple[dict, str | None]:
    """Digests of ``path`` and the reason it does not match ``res`` (None if it matches)."""
    size = path.stat().st_size
    if res.size is not None and size != res.size:
        return {"bytes": size}, f"{size} bytes, expected {res.size} (truncated or a different file)"
    info = integrity.digests(path)
    if res.md5 is not None and info["md5"] != res.md5:
        return info, f"md5 {info['md5']}, expected {res.md5}"
    if res.sha256 is not None and info["sha256"] != res.sha256:
        return info, f"sha256 {info['sha256']}, expected {res.sha256}"
    return info, None


def _obtain(spec: DatasetSpec, res: Resource, d: Path, cache: Path) -> tuple[Path, dict, bool]:
    """A verified local copy of ``res``: (path, record, downloaded by us)."""
    cached, placed = cache / res.filename, d / res.filename
    if cached.is_file():
        info, bad = _check_file(cached, res)
        if bad is None:
            return cached, _record(res, info, None), True
        cached.unlink()  # a corrupt earlier download: fetch again
    if placed.is_file():
        info, bad = _check_file(placed, res)
        if bad is not None:
            raise DataError(f"{spec.name}: {placed} does not match the official {res.filename} ({bad}). "
                            f"Replace it. {_how_to_get(spec)}")
        return placed, _record(res, info, None), False
    if not res.urls or not spec.auto_download:
        raise DataError(f"{spec.name}: {res.filename} not found in {d} (automatic download is not possible). "
                        f"{spec.manual_instructions}")
    cache.mkdir(parents=True, exist_ok=True)
    part = cache / (res.filename + ".part")
    errors = []
    for url in res.urls:
        part.unlink(missing_ok=True)
        try:
            _fetch(url, part)
        except DataError as e:
            errors.append(str(e))
            continue
        except Exception as e:  # network errors of any kind
            errors.append(f"{url}: {type(e).__name__}: {e}")
            continue
        if not part.is_file():
            errors.append(f"{url}: nothing was downloaded")
            continue
        info, bad = _check_file(part, res)
        if bad is not None:
            errors.append(f"{url}: downloaded {res.filename} is corrupt or incomplete ({bad}); rejected")
            part.unlink()
            continue
        os.replace(part, cached)
        return cached, _record(res, info, url), True
    part.unlink(missing_ok=True)
    raise DataError(f"{spec.name}: could not download {res.filename}: " + "; ".join(errors)
                    + f". Nothing was installed; rerun to retry, or place it by hand: {spec.manual_instructions}")


def _record(res: Resource, info: dict, url: str | None) -> dict:
    official = [k for k in ("md5", "sha256") if getattr(res, k) is not None]
    return {**info, "url": url, "checked_against": official or "none published: digests recorded here"}


def _safe_members(names: Iterable[str], archive: Path) -> None:
    for n in names:
        p = Path(n)
        if p.is_absolute() or ".." in p.parts:
            raise DataError(f"{archive}: unsafe member path {n!r}; refusing to extract")


def _extract(spec: DatasetSpec, archive: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as z:
                _safe_members(z.namelist(), archive)
                z.extractall(dest)
        else:
            with tarfile.open(archive) as t:
                if hasattr(tarfile, "data_filter"):
                    t.extractall(dest, filter="data")
                else:  # pragma: no cover - Python < 3.11.4
                    _safe_members(t.getnames(), archive)
                    t.extractall(dest)
    except DataError:
        raise
    except Exception as e:
        raise DataError(f"{spec.name}: cannot extract {archive} ({type(e).__name__}: {e}); the archive is "
                        f"corrupt or truncated and was not accepted") from e


def _gunzip(spec: DatasetSpec, archive: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        with gzip.open(archive, "rb") as src, open(dest, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
    except Exception as e:
        raise DataError(f"{spec.name}: cannot decompress {archive} ({type(e).__name__}: {e}); the file is "
                        f"corrupt or truncated and was not accepted") from e


def _post_caltech101(spec: DatasetSpec, stage: Path, files: dict[str, Path]) -> None:
    inner = stage / "caltech101" / ".zip"
    found = list(inner.rglob("101_ObjectCategories.tar.gz"))
    if not found:
        raise DataError("caltech101: caltech-101.zip has no 101_ObjectCategories.tar.gz; not accepted")
    _extract(spec, found[0], stage / "caltech101")
    for extra in inner.rglob("Annotations.tar"):
        _extract(spec, extra, stage / "caltech101")
    shutil.rmtree(inner)


def _post_imagenet(spec: DatasetSpec, stage: Path, files: dict[str, Path]) -> None:
    from torchvision.datasets import imagenet as tvi

    links = []
    try:
        for key in ("devkit", "val"):
            fname = tvi.ARCHIVE_META[key][0]
            link = stage / fname
            link.symlink_to(files[fname].resolve())
            links.append(link)
        with _Reading(spec, files[tvi.ARCHIVE_META["devkit"][0]]):
            tvi.parse_devkit_archive(str(stage))
        with _Reading(spec, files[tvi.ARCHIVE_META["val"][0]]):
            tvi.parse_val_archive(str(stage))
    finally:
        for link in links:
            link.unlink(missing_ok=True)


_POST: dict[str, Callable[[DatasetSpec, Path, dict[str, Path]], None]] = {
    "caltech101": _post_caltech101,
    "imagenet": _post_imagenet,
}


def _has_data(name: str, d: Path) -> bool:
    return any((d / t).exists() for t in _ADAPTERS[name].top)


def download_real(name: str, root: str | Path) -> dict:
    """Download (or adopt already present / hand-placed files), verify, write ``MANIFEST.json``.

    Returns the manifest.  Data already present that verify are not downloaded again.
    """
    spec = _spec(name)
    root = Path(root)
    d = root / name
    manifest_path = d / MANIFEST
    previous_error = None
    if d.is_dir() and _has_data(name, d):
        try:
            manifest = verify_real(name, root)
        except DataError as e:
            previous_error = e
        else:
            if _read_manifest(d) != manifest:
                write_json(manifest_path, manifest)
            return manifest
    if manifest_path.exists():  # stale: what it describes did not verify
        manifest_path.unlink()

    cache = root / CACHE_DIR / name
    stage = root / f".{name}.staging"
    shutil.rmtree(stage, ignore_errors=True)  # leftovers of an interrupted run
    d.mkdir(parents=True, exist_ok=True)
    obtained: dict[str, Path] = {}
    archives: dict[str, dict] = {}
    ours: list[Path] = []
    try:
        try:
            for res in DOWNLOADS[name]:
                path, record, downloaded = _obtain(spec, res, d, cache)
                obtained[res.filename], archives[res.filename] = path, record
                if downloaded:
                    ours.append(path)
                target = stage / res.dest
                if res.action == "extract":
                    _extract(spec, path, target)
                elif res.action == "gunzip":
                    _gunzip(spec, path, target / res.filename.removesuffix(".gz"))
                elif res.action == "file":
                    target.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(path, target / res.filename)
            stage.mkdir(parents=True, exist_ok=True)
            if name in _POST:
                _POST[name](spec, stage, obtained)
            manifest = _verify_dir(spec, stage, None, archives)
        except DataError as e:
            # archives without a published checksum cannot be trusted after a failure: fetch them again
            for res in DOWNLOADS[name]:
                if res.md5 is None and res.sha256 is None:
                    (cache / res.filename).unlink(missing_ok=True)
            _remove_empty_dirs([cache, cache.parent, d])
            hint = f" (the data already in {d} did not verify either: {previous_error})" if previous_error else ""
            raise DataError(f"{e}{hint}") from e
        # install: move the verified entries over, then write the manifest last
        for entry in sorted(stage.iterdir()):
            dst = d / entry.name
            if dst.is_dir() and not dst.is_symlink():
                shutil.rmtree(dst)
            elif dst.exists() or dst.is_symlink():
                dst.unlink()
            os.replace(entry, dst)
        write_json(manifest_path, manifest)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    for p in ours:
        p.unlink(missing_ok=True)
    _remove_empty_dirs([cache, cache.parent])
    return manifest


def _remove_empty_dirs(dirs: Iterable[Path]) -> None:
    for folder in dirs:
        try:
            folder.rmdir()  # only succeeds when empty
        except OSError:
            pass
