"""How each set is read: the files a split needs, and an index of (image source, label) per sample.

Most adapters delegate to the torchvision class that reads the set (``torchvision.datasets``,
private attributes included: hence the upper version bound on torchvision); ``index`` returns
the labels, the image file of every sample (for the existence check and the fingerprint) and
the class identifiers found on disk (checked against ``classnames/_source_ids.json``).
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torchvision.datasets as tvd
from PIL import Image
from torch.utils.data import Dataset

from ucat.errors import DataError

from ..transforms import to_rgb
from .classes import all_source_ids, load_names
from .messages import Reading, how_to_get, missing
from .spec import DatasetSpec


class Ctx(NamedTuple):
    """What an adapter needs besides the split: the set, the resolved ``data.root`` and the set's folder."""

    spec: DatasetSpec
    root: Path
    d: Path

    def reading(self, path: Path) -> Reading:
        return Reading(self.spec, self.root, path)

    def missing(self, path: Path, what: str = "missing") -> DataError:
        return missing(self.spec, self.root, path, what)

    def how_to_get(self) -> str:
        return how_to_get(self.spec, self.root)


class Index(NamedTuple):
    base: Dataset                    # yields (PIL image or array, label); its own transform is None
    labels: list                     # class index per sample; multi-label sets: a tuple of class indices
    paths: list[str] | None          # image file per sample (None: images live in array files)
    raw_classes: list[str] | None    # class identifiers found on disk, in label order
    location: Path                   # the file or folder that lists the samples (for messages)


def source_ids(name: str) -> list[str] | None:
    ids = all_source_ids().get(name)
    return None if ids is None else list(ids)


def visible(names) -> list[str]:
    """Directory entries without hidden files (``.DS_Store``, ``._x.jpg`` of macOS copies)."""
    return [n for n in names if not n.startswith(".")]


def drop_hidden(ds) -> None:
    """Remove hidden files (``._x.jpg`` of macOS copies) from a torchvision ``ImageFolder``'s samples."""
    keep = [s for s in ds.samples if not os.path.basename(s[0]).startswith(".")]
    ds.samples = ds.imgs = keep
    ds.targets = [t for _, t in keep]


class ImageList(Dataset):
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


class Adapter:
    splits: tuple[str, ...] = ()
    top: tuple[str, ...] = ()      # entries under <root>/<name>/ that belong to the data set
    #: (folder relative to <root>/<name>/, an entry inside it that only this set has): where the
    #: unpacked data must be; used to recognise a copy unpacked one folder too shallow or too deep
    anchor: tuple[str, str] = ("", "")

    def required(self, d: Path, split: str) -> list[Path]:
        raise NotImplementedError

    def index(self, ctx: Ctx, split: str) -> Index:
        raise NotImplementedError

    def key_files(self, d: Path, split: str) -> list[Path]:
        """Metadata files whose sha256 the manifest records."""
        return []


class Tiny(Adapter):
    splits, top = ("train", "val"), ("tiny-imagenet-200",)
    anchor = ("tiny-imagenet-200", "wnids.txt")
    EXT = {".jpeg", ".jpg", ".png"}

    def required(self, d, split):
        b = d / "tiny-imagenet-200"
        if split == "train":
            return [b / "wnids.txt", b / "train"]
        return [b / "wnids.txt", b / "val" / "val_annotations.txt", b / "val" / "images"]

    def index(self, ctx, split):
        b = ctx.d / "tiny-imagenet-200"
        expected = source_ids("tinyimagenet")
        with ctx.reading(b / "wnids.txt"):
            wnids = [w.strip() for w in (b / "wnids.txt").read_text().splitlines() if w.strip()]
        if sorted(wnids) != expected:
            raise DataError(f"tinyimagenet: {b / 'wnids.txt'} lists {len(wnids)} wnids that differ from the "
                            f"{len(expected)} TinyImageNet-200 wnids. {ctx.how_to_get()}")
        label_of = {w: i for i, w in enumerate(expected)}
        paths, labels = [], []
        if split == "train":
            for w in expected:
                folder = b / "train" / w / "images"
                if not folder.is_dir():
                    raise ctx.missing(folder)
                files = sorted(p for p in folder.iterdir() if p.suffix.lower() in self.EXT
                               and not p.name.startswith("."))
                paths += [str(p) for p in files]
                labels += [label_of[w]] * len(files)
            location = b / "train"
        else:
            ann = b / "val" / "val_annotations.txt"
            seen = set()
            with ctx.reading(ann):
                lines = ann.read_text().splitlines()
            for lineno, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                parts = line.split("\t")
                if len(parts) < 2 or parts[1].strip() not in label_of or parts[0] in seen:
                    raise DataError(f"tinyimagenet: {ann}:{lineno}: malformed line {line[:80]!r} (expected "
                                    f"'<file>\\t<wnid>\\t<bbox>' with a known wnid and a new file name). "
                                    f"{ctx.how_to_get()}")
                seen.add(parts[0])
                paths.append(str(b / "val" / "images" / parts[0]))
                labels.append(label_of[parts[1].strip()])
            location = ann
        return Index(ImageList(paths, labels), labels, paths, sorted(wnids), location)

    def key_files(self, d, split):
        b = d / "tiny-imagenet-200"
        return [b / "wnids.txt", b / "words.txt"] + ([b / "val" / "val_annotations.txt"] if split == "val" else [])


class Cifar(Adapter):
    splits = ("train", "test")

    def __init__(self, cls, folder: str):
        self.cls, self.folder, self.top = cls, folder, (folder,)
        self.anchor = (folder, cls.meta["filename"])

    def _files(self, d, split):
        f = d / self.folder
        names = self.cls.train_list if split == "train" else self.cls.test_list
        return [f / n for n, _ in names] + [f / self.cls.meta["filename"]]

    def required(self, d, split):
        return self._files(d, split)

    def index(self, ctx, split):
        for f in self._files(ctx.d, split):  # unpickle each file alone so a broken one is named
            with ctx.reading(f), open(f, "rb") as fh:
                pickle.load(fh, encoding="latin1")
        with ctx.reading(ctx.d / self.folder):
            ds = self.cls(str(ctx.d), train=split == "train", download=False)
            labels = [int(t) for t in ds.targets]
            if len(ds.data) != len(labels):
                raise ValueError(f"{len(ds.data)} images but {len(labels)} labels")
        return Index(ds, labels, None, list(ds.classes), ctx.d / self.folder)

    def key_files(self, d, split):
        return self._files(d, split)


class Stl(Adapter):
    splits, top = ("train", "test"), ("stl10_binary",)
    anchor = ("stl10_binary", "class_names.txt")
    IMAGE_BYTES = 3 * 96 * 96

    def _files(self, d, split):
        b = d / "stl10_binary"
        x, y = ("train_X.bin", "train_y.bin") if split == "train" else ("test_X.bin", "test_y.bin")
        return [b / x, b / y, b / "class_names.txt"]

    def required(self, d, split):
        return self._files(d, split)

    def index(self, ctx, split):
        x, y, _ = self._files(ctx.d, split)
        n_x, rest = divmod(x.stat().st_size, self.IMAGE_BYTES)
        if rest or n_x != y.stat().st_size:
            bad = x if rest else y
            raise DataError(f"stl10: {bad} is truncated or corrupt ({x.name}: {x.stat().st_size} bytes, "
                            f"{y.name}: {y.stat().st_size} labels). {ctx.how_to_get()}")
        with ctx.reading(ctx.d / "stl10_binary"):
            ds = _STL10(str(ctx.d), split=split, download=False)
            labels = [int(v) for v in ds.labels]
        return Index(ds, labels, None, list(getattr(ds, "classes", [])) or None, x)

    def key_files(self, d, split):
        return self._files(d, split)


class Food(Adapter):
    splits, top = ("train", "test"), ("food-101",)
    anchor = ("food-101", "meta")

    def required(self, d, split):
        return [d / "food-101" / "meta" / f"{split}.json", d / "food-101" / "images"]

    def index(self, ctx, split):
        meta = ctx.d / "food-101" / "meta" / f"{split}.json"
        with ctx.reading(meta):
            ds = tvd.Food101(str(ctx.d), split=split, download=False)
        return Index(ds, list(ds._labels), [str(p) for p in ds._image_files], list(ds.classes), meta)

    def key_files(self, d, split):
        return [d / "food-101" / "meta" / f"{split}.json"]


class Pets(Adapter):
    splits, top = ("trainval", "test"), ("oxford-iiit-pet",)
    anchor = ("oxford-iiit-pet", "annotations")

    def required(self, d, split):
        b = d / "oxford-iiit-pet"
        return [b / "annotations" / f"{split}.txt", b / "images"]

    def index(self, ctx, split):
        ann = ctx.d / "oxford-iiit-pet" / "annotations" / f"{split}.txt"
        with ctx.reading(ann):
            ds = tvd.OxfordIIITPet(str(ctx.d), split=split, target_types="category", download=False)
        labels = list(ds._labels)
        # torchvision names the present breeds from the file names; they must match our names
        names = load_names(ctx.spec.name)
        for breed, label in zip(ds.classes, sorted(set(labels))):
            if not 0 <= label < len(names) or breed != names[label]:
                raise DataError(f"oxford_pets: {ann}: class id {label + 1} is breed {breed!r}, expected "
                                f"{names[label] if 0 <= label < len(names) else '?'!r}. {ctx.how_to_get()}")
        return Index(ds, labels, [str(p) for p in ds._images], None, ann)

    def key_files(self, d, split):
        return [d / "oxford-iiit-pet" / "annotations" / f"{split}.txt"]


class Flowers(Adapter):
    splits, top = ("train", "val", "test"), ("flowers-102",)
    anchor = ("flowers-102", "setid.mat")

    def _mats(self, d):
        b = d / "flowers-102"
        return [b / "imagelabels.mat", b / "setid.mat"]

    def required(self, d, split):
        return [d / "flowers-102" / "jpg"] + self._mats(d)

    def index(self, ctx, split):
        from scipy.io import loadmat

        for mat in self._mats(ctx.d):  # name the broken file, not just the folder
            with ctx.reading(mat):
                loadmat(mat)
        with ctx.reading(ctx.d / "flowers-102"):
            ds = _Flowers102(str(ctx.d), split=split, download=False)
        return Index(ds, [int(v) for v in ds._labels], [str(p) for p in ds._image_files], None,
                     self._mats(ctx.d)[1])

    def key_files(self, d, split):
        return self._mats(d)


class Dtd(Adapter):
    splits, top = ("train", "val", "test"), ("dtd",)
    anchor = ("dtd/dtd", "labels")

    def required(self, d, split):
        b = d / "dtd" / "dtd"
        return [b / "labels" / f"{split}1.txt", b / "images"]

    def index(self, ctx, split):
        lab = ctx.d / "dtd" / "dtd" / "labels" / f"{split}1.txt"
        with ctx.reading(lab):
            ds = tvd.DTD(str(ctx.d), split=split, partition=1, download=False)
        return Index(ds, list(ds._labels), [str(p) for p in ds._image_files], list(ds.classes), lab)

    def key_files(self, d, split):
        return [d / "dtd" / "dtd" / "labels" / f"{split}1.txt"]


class EuroSat(Adapter):
    splits, top = ("all",), ("eurosat",)
    anchor = ("eurosat/2750", "SeaLake")

    def required(self, d, split):
        return [d / "eurosat" / "2750"]

    def index(self, ctx, split):
        folder = ctx.d / "eurosat" / "2750"
        with ctx.reading(folder):
            ds = tvd.EuroSAT(str(ctx.d), download=False)
            drop_hidden(ds)
        return Index(ds, list(ds.targets), [s[0] for s in ds.samples], list(ds.classes), folder)


class Caltech(Adapter):
    """torchvision's Caltech101/256 order and file numbering (category folders sorted, files
    numbered 1..n), indexed here: torchvision counts every directory entry, so a stray
    ``.DS_Store`` would shift its numbering or crash it."""

    splits = ("all",)

    def __init__(self, sub: str, folder: str, pattern: str, drop: tuple[str, ...], marker: str):
        self.sub, self.folder, self.pattern, self.drop, self.top = sub, folder, pattern, drop, (sub,)
        self.anchor = (f"{sub}/{folder}", marker)

    def required(self, d, split):
        return [d / self.sub / self.folder]

    def index(self, ctx, split):
        folder = ctx.d / self.sub / self.folder
        with ctx.reading(folder):
            categories = sorted(c for c in visible(os.listdir(folder))
                                if c not in self.drop and (folder / c).is_dir())
            paths, labels = [], []
            for y, c in enumerate(categories):
                n = sum(1 for f in visible(os.listdir(folder / c)) if f.endswith(".jpg"))
                paths += [str(folder / c / self.pattern.format(y=y + 1, i=i)) for i in range(1, n + 1)]
                labels += [y] * n
        return Index(ImageList(paths, labels), labels, paths, categories, folder)


class Fgvc(Adapter):
    splits, top = ("train", "val", "trainval", "test"), ("fgvc-aircraft-2013b",)
    anchor = ("fgvc-aircraft-2013b/data", "variants.txt")

    def _data(self, d):
        return d / "fgvc-aircraft-2013b" / "data"

    def required(self, d, split):
        b = self._data(d)
        return [b / "variants.txt", b / f"images_variant_{split}.txt", b / "images"]

    def index(self, ctx, split):
        lab = self._data(ctx.d) / f"images_variant_{split}.txt"
        with ctx.reading(lab):
            ds = tvd.FGVCAircraft(str(ctx.d), split=split, annotation_level="variant", download=False)
        return Index(ds, list(ds._labels), list(ds._image_files), list(ds.classes), lab)

    def key_files(self, d, split):
        b = self._data(d)
        return [b / "variants.txt", b / f"images_variant_{split}.txt"]


class Cars(Adapter):
    splits, top = ("train", "test"), ("stanford_cars",)
    anchor = ("stanford_cars", "devkit")

    def _files(self, d, split):
        b = d / "stanford_cars"
        if split == "train":
            return [b / "devkit" / "cars_meta.mat", b / "devkit" / "cars_train_annos.mat", b / "cars_train"]
        return [b / "devkit" / "cars_meta.mat", b / "cars_test_annos_withlabels.mat", b / "cars_test"]

    def required(self, d, split):
        return self._files(d, split)

    def index(self, ctx, split):
        from scipy.io import loadmat

        meta, ann, _ = self._files(ctx.d, split)
        for mat in (meta, ann):
            with ctx.reading(mat):
                loadmat(mat)
        with ctx.reading(ann):
            ds = tvd.StanfordCars(str(ctx.d), split=split, download=False)
            labels = [int(s[1]) for s in ds._samples]
        return Index(ds, labels, [s[0] for s in ds._samples], [str(c) for c in ds.classes], ann)

    def key_files(self, d, split):
        return self._files(d, split)[:2]


class Sun(Adapter):
    splits, top = ("all",), ("SUN397",)
    anchor = ("SUN397", "ClassName.txt")

    def required(self, d, split):
        return [d / "SUN397" / "ClassName.txt"]

    def index(self, ctx, split):
        names = ctx.d / "SUN397" / "ClassName.txt"
        with ctx.reading(names):
            ds = tvd.SUN397(str(ctx.d), download=False)
        # torchvision keeps rglob's file-system order; sort so the sample order is reproducible
        order = sorted(range(len(ds._image_files)), key=lambda i: ds._image_files[i].as_posix())
        ds._image_files = [ds._image_files[i] for i in order]
        ds._labels = [ds._labels[i] for i in order]
        return Index(ds, list(ds._labels), [str(p) for p in ds._image_files], list(ds.classes), names)

    def key_files(self, d, split):
        return [d / "SUN397" / "ClassName.txt"]


class Pcam(Adapter):
    splits, top = ("train", "val", "test"), ("pcam",)
    anchor = ("pcam", "camelyonpatch_level_2_split_test_y.h5")

    def _files(self, d, split):
        s = {"train": "train", "val": "valid", "test": "test"}[split]
        b = d / "pcam"
        return [b / f"camelyonpatch_level_2_split_{s}_x.h5", b / f"camelyonpatch_level_2_split_{s}_y.h5"]

    def required(self, d, split):
        return self._files(d, split)

    def index(self, ctx, split):
        import h5py

        xf, yf = self._files(ctx.d, split)
        with ctx.reading(xf), h5py.File(xf, "r") as fx:
            xshape = fx["x"].shape
            if len(xshape) != 4 or xshape[1:] != (96, 96, 3):
                raise ValueError(f"dataset 'x' has shape {xshape}, expected (N, 96, 96, 3)")
        with ctx.reading(yf), h5py.File(yf, "r") as fy:
            y = np.asarray(fy["y"][:]).reshape(-1)
            if len(y) != xshape[0]:
                raise ValueError(f"{len(y)} labels for {xshape[0]} images in {xf.name}")
        with ctx.reading(ctx.d / "pcam"):
            ds = _PCAM(str(ctx.d), split=split, download=False)
        return Index(ds, [int(v) for v in y], None, None, xf)

    def key_files(self, d, split):
        return self._files(d, split)


class ImageNet(Adapter):
    splits, top = ("train", "val"), ("meta.bin", "train", "val")
    anchor = ("", "val/n01440764")

    def required(self, d, split):
        return [d / split]

    def index(self, ctx, split):
        folder = ctx.d / split
        if (ctx.d / "meta.bin").is_file():
            with ctx.reading(ctx.d / "meta.bin"):
                tvd.imagenet.load_meta_file(str(ctx.d))
            with ctx.reading(folder):
                ds = tvd.ImageNet(str(ctx.d), split=split)
                drop_hidden(ds)
                raw = list(ds.wnids)
        else:  # a sorted <split>/<wnid>/ tree without torchvision's meta.bin: same label order
            with ctx.reading(folder):
                ds = tvd.ImageFolder(str(folder))
                drop_hidden(ds)
                raw = list(ds.classes)
        return Index(ds, list(ds.targets), [s[0] for s in ds.samples], raw, folder)

    def key_files(self, d, split):
        return [d / "meta.bin"] if (d / "meta.bin").is_file() else []


class Coco(Adapter):
    """MS-COCO 2017 instance annotations through pycocotools, read as the official code's
    ``COCOMultiLabel2017`` reads them (``replace/datasets/coco_multilabel_2017.py:84-121``):
    the categories in id order; the images in the annotation file's order (``getImgIds``); an
    image's label set is every category it has an annotation of (crowd annotations kept, no
    minimum area); images without annotations are kept, with the empty set.
    """

    splits, top = ("val",), ("annotations", "val2017")
    anchor = ("", "annotations/instances_val2017.json")   # two zips, two top folders: anchored at the set's folder
    #: the 80 category ids of the 2017 instance annotations (1..90 with gaps), in label order
    CATEGORY_IDS = tuple(i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83))

    @staticmethod
    def annotations(d: Path, split: str) -> Path:
        return d / "annotations" / f"instances_{split}2017.json"

    def required(self, d, split):
        return [self.annotations(d, split), d / f"{split}2017"]

    def index(self, ctx, split):
        from pycocotools.coco import COCO

        ann = self.annotations(ctx.d, split)
        with ctx.reading(ann), contextlib.redirect_stdout(io.StringIO()):  # COCO() prints progress
            coco = COCO(str(ann))
            names = {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())}
        ids = sorted(names)
        if tuple(ids) != self.CATEGORY_IDS:
            raise DataError(f"{ctx.spec.name}: {ann} has {len(ids)} categories with ids {ids[:3]}...{ids[-3:]}, "
                            f"not the 80 of the 2017 instance annotations (ids 1..90 with 10 gaps). "
                            f"{ctx.how_to_get()}")
        label_of = {cid: i for i, cid in enumerate(ids)}
        folder = ctx.d / f"{split}2017"
        paths, labels = [], []
        for img_id in coco.getImgIds():
            paths.append(str(folder / coco.imgs[img_id]["file_name"]))
            found = {a["category_id"] for a in coco.loadAnns(coco.getAnnIds(imgIds=[img_id]))}
            if not found <= label_of.keys():
                raise DataError(f"{ctx.spec.name}: {ann}: image {img_id} has annotations of unknown category ids "
                                f"{sorted(found - label_of.keys())}. {ctx.how_to_get()}")
            labels.append(tuple(sorted(label_of[c] for c in found)))
        return Index(ImageList(paths, labels), labels, paths, [names[c] for c in ids], ann)

    def key_files(self, d, split):
        return [self.annotations(d, split)]


def caltech101() -> Caltech:
    return Caltech("caltech101", "101_ObjectCategories", "image_{i:04d}.jpg", ("BACKGROUND_Google",), "Faces_easy")


def caltech256() -> Caltech:
    return Caltech("caltech256", "256_ObjectCategories", "{y:03d}_{i:04d}.jpg", (), "257.clutter")


def cifar10() -> Cifar:
    return Cifar(_CIFAR10, "cifar-10-batches-py")


def cifar100() -> Cifar:
    return Cifar(_CIFAR100, "cifar-100-python")
