"""Tiny replicas of the real data sets, each written in its source's real on-disk format.

The smoke run of the paper path (``data.source: smoke``, ``config/paper-smoke.yaml``) and the
loader tests read these instead of the real data: CIFAR pickles, STL binaries, PCAM HDF5, the
Caltech/DTD/Pets/Flowers/Food/EuroSAT/Aircraft/Cars/SUN/ImageNet trees and annotation files,
the TinyImageNet zip layout, COCO's instance-annotation JSON, with the real class identifiers
(``real.class_ids``) and class counts (1000 for ImageNet, 397 for SUN397, 2 for PCAM, ...) and
a few images per class.

Every image of class ``k`` is a small solid colour that encodes ``k`` (``colour``/``decode``),
so a test can check, after the full loading pipeline, that the label a loader returns is the
class the file was filed under.  ``build(name, root)`` writes ``root/name/...`` and returns a
``Replica`` (sample counts per split, md5 of the files whose official md5 ucat checks);
``pack(replica, out)`` writes the set's official archives (same file names and inner layout).
The values are meaningless: a replica exercises formats and code paths, never accuracy.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import pickle
import random
import shutil
import tarfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import scipy.io as sio
import torch
from PIL import Image

from ..errors import unknown_choice
from . import real
from .integrity import md5

# ----------------------------------------------------------------------------- colours

_BASE, _STEP = 12, 25


def colour(k: int) -> tuple[int, int, int]:
    """Label k (0..999) -> an RGB colour, one decimal digit per channel."""
    if not 0 <= k < 1000:
        raise ValueError(f"label {k} outside 0..999")
    return (_BASE + _STEP * (k % 10), _BASE + _STEP * (k // 10 % 10), _BASE + _STEP * (k // 100))


def decode(img: torch.Tensor) -> int:
    """A (3, H, W) tensor in [0, 1] of a solid ``colour(k)`` image -> k."""
    digits = [int(np.clip(round((float(c.mean()) * 255 - _BASE) / _STEP), 0, 9)) for c in img]
    return digits[0] + 10 * digits[1] + 100 * digits[2]


def _image(k: int, size=(10, 8), mode: str = "RGB") -> Image.Image:
    c = colour(k)
    return Image.new("L", size, c[0]) if mode == "L" else Image.new("RGB", size, c)


def _jpeg(path: Path, k: int, mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    _image(k, mode=mode).save(path, format="JPEG", quality=95)


def _array(k: int, hw: int) -> np.ndarray:
    """(hw, hw, 3) uint8 solid colour."""
    return np.broadcast_to(np.array(colour(k), np.uint8), (hw, hw, 3)).copy()


# ----------------------------------------------------------------------------- one builder per format

@dataclass
class Replica:
    name: str
    root: Path                                      # pass this to open_real; data in root/name
    counts: dict[str, int]                          # split -> number of samples
    file_md5: dict[str, str] = field(default_factory=dict)   # rel path -> md5 (official-md5 files)

    @property
    def dir(self) -> Path:
        return self.root / self.name


def _ids(name: str) -> list[str]:
    return real.class_ids(name)


def _pickle(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        pickle.dump(obj, fh, protocol=2)


def _rel_md5(d: Path, paths) -> dict[str, str]:
    return {p.relative_to(d).as_posix(): md5(p) for p in paths}


def _tinyimagenet(root: Path, train_per_class: int = 1) -> Replica:
    d = root / "tinyimagenet"
    b = d / "tiny-imagenet-200"
    wnids = _ids("tinyimagenet")
    rng = random.Random(0)
    shuffled = wnids[:]
    rng.shuffle(shuffled)  # the real wnids.txt is not sorted either
    b.mkdir(parents=True)
    (b / "wnids.txt").write_text("".join(w + "\n" for w in shuffled))
    names = real.classnames("tinyimagenet")
    (b / "words.txt").write_text("n00001740\tentity\n" + "".join(f"{w}\t{n}\n" for w, n in zip(wnids, names)))
    for k, w in enumerate(wnids):
        boxes = []
        for i in range(train_per_class):
            _jpeg(b / "train" / w / "images" / f"{w}_{i}.JPEG", k)
            boxes.append(f"{w}_{i}.JPEG\t0\t0\t8\t8\n")
        (b / "train" / w / f"{w}_boxes.txt").write_text("".join(boxes))
    order = list(range(len(wnids)))
    rng.shuffle(order)  # val images are not in label order
    lines = []
    for j, k in enumerate(order):
        _jpeg(b / "val" / "images" / f"val_{j}.JPEG", k)
        lines.append(f"val_{j}.JPEG\t{wnids[k]}\t0\t0\t8\t8\n")
    (b / "val" / "val_annotations.txt").write_text("".join(lines))
    _jpeg(b / "test" / "images" / "test_0.JPEG", 0)
    return Replica("tinyimagenet", root, {"train": train_per_class * len(wnids), "val": len(wnids)})


def _cifar_rows(labels: list[int]) -> np.ndarray:
    return np.stack([_array(k, 32).transpose(2, 0, 1).reshape(-1) for k in labels]).astype(np.uint8)


def _cifar10(root: Path) -> Replica:
    d = root / "cifar10"
    b = d / "cifar-10-batches-py"
    ids = _ids("cifar10")
    test = [k for k in range(10) for _ in range(2)]
    _pickle(b / "test_batch", {"batch_label": "testing batch 1 of 1", "labels": test,
                               "data": _cifar_rows(test), "filenames": [f"t{i}.png" for i in range(len(test))]})
    train = []
    for i in range(1, 6):
        labels = [(2 * i) % 10, (2 * i + 1) % 10]
        train += labels
        _pickle(b / f"data_batch_{i}", {"batch_label": f"training batch {i} of 5", "labels": labels,
                                        "data": _cifar_rows(labels), "filenames": ["a.png", "b.png"]})
    _pickle(b / "batches.meta", {"label_names": ids, "num_cases_per_batch": 2, "num_vis": 3072})
    return Replica("cifar10", root, {"train": len(train), "test": len(test)}, _rel_md5(d, sorted(b.iterdir())))


def _cifar100(root: Path) -> Replica:
    d = root / "cifar100"
    b = d / "cifar-100-python"
    ids = _ids("cifar100")
    test, train = list(range(100)), [3, 14, 15, 92, 65]
    for fname, labels in (("test", test), ("train", train)):
        _pickle(b / fname, {"batch_label": fname, "fine_labels": labels, "coarse_labels": [k // 5 for k in labels],
                            "data": _cifar_rows(labels), "filenames": [f"{i}.png" for i in range(len(labels))]})
    _pickle(b / "meta", {"fine_label_names": ids, "coarse_label_names": [f"super{i}" for i in range(20)]})
    return Replica("cifar100", root, {"train": len(train), "test": len(test)}, _rel_md5(d, sorted(b.iterdir())))


def _stl10(root: Path) -> Replica:
    d = root / "stl10"
    b = d / "stl10_binary"
    b.mkdir(parents=True)
    for prefix, labels in (("test", [k for k in range(10) for _ in range(2)]), ("train", list(range(10)))):
        x = np.stack([_array(k, 96).transpose(2, 0, 1) for k in labels]).astype(np.uint8)
        x.tofile(b / f"{prefix}_X.bin")
        (np.array(labels, np.uint8) + 1).tofile(b / f"{prefix}_y.bin")
    (b / "class_names.txt").write_text("\n".join(_ids("stl10")) + "\n")
    return Replica("stl10", root, {"train": 10, "test": 20},
                _rel_md5(d, [b / f for f in ("test_X.bin", "test_y.bin", "train_X.bin", "train_y.bin")]))


def _imagenet(root: Path) -> Replica:
    d = root / "imagenet"
    wnids, names = _ids("imagenet"), real.classnames("imagenet")
    val_wnids = []
    for k, w in enumerate(wnids):
        _jpeg(d / "val" / w / f"ILSVRC2012_val_{k + 1:08d}.JPEG", k)
        val_wnids.append(w)
    torch.save(({w: (n,) for w, n in zip(wnids, names)}, val_wnids), d / "meta.bin")
    return Replica("imagenet", root, {"val": len(wnids)})


def _caltech101(root: Path) -> Replica:
    d = root / "caltech101"
    b = d / "caltech101" / "101_ObjectCategories"
    _jpeg(b / "BACKGROUND_Google" / "image_0001.jpg", 999)
    n = 0
    for k, cat in enumerate(_ids("caltech101")):
        per = 2 if k == 5 else 1
        for i in range(per):
            # label 0 ("Faces") as a grayscale JPEG: Caltech101 has some, torchvision keeps them "L"
            _jpeg(b / cat / f"image_{i + 1:04d}.jpg", k, mode="L" if k == 0 else "RGB")
        n += per
    return Replica("caltech101", root, {"all": n})


def _caltech256(root: Path) -> Replica:
    d = root / "caltech256"
    b = d / "caltech256" / "256_ObjectCategories"
    for k, cat in enumerate(_ids("caltech256")):
        _jpeg(b / cat / f"{k + 1:03d}_0001.jpg", k)
    (b / "198.spider" / "RENAME2").write_text("stray file shipped in the real archive\n")
    return Replica("caltech256", root, {"all": 257})


_PET_CATS = {"Abyssinian", "Bengal", "Birman", "Bombay", "British Shorthair", "Egyptian Mau", "Maine Coon",
             "Persian", "Ragdoll", "Russian Blue", "Siamese", "Sphynx"}


def _oxford_pets(root: Path) -> Replica:
    d = root / "oxford_pets"
    b = d / "oxford-iiit-pet"
    names = real.classnames("oxford_pets")
    lines = {"test": [], "trainval": []}
    for k, breed in enumerate(names):
        cat = breed in _PET_CATS
        stem = breed.replace(" ", "_") if cat else breed.lower().replace(" ", "_")
        for split, i in (("trainval", 1), ("test", 2)):
            _jpeg(b / "images" / f"{stem}_{i}.jpg", k)
            lines[split].append(f"{stem}_{i} {k + 1} {1 if cat else 2} 1\n")
    (b / "annotations").mkdir(parents=True)
    for split, ls in lines.items():
        (b / "annotations" / f"{split}.txt").write_text("".join(ls))
    return Replica("oxford_pets", root, {"test": len(names), "trainval": len(names)})


def _flowers102(root: Path) -> Replica:
    d = root / "flowers102"
    b = d / "flowers-102"
    labels, tst, trn, val = [], [], [], []
    for k in range(102):
        labels.append(k + 1)
        tst.append(len(labels))
    for split in (trn, val):
        for k in (7, 50):
            labels.append(k + 1)
            split.append(len(labels))
    for image_id, label in enumerate(labels, 1):
        _jpeg(b / "jpg" / f"image_{image_id:05d}.jpg", label - 1)
    sio.savemat(b / "imagelabels.mat", {"labels": np.array([labels], np.uint8)})
    sio.savemat(b / "setid.mat", {"trnid": np.array([trn], np.uint16), "valid": np.array([val], np.uint16),
                                  "tstid": np.array([tst], np.uint16)})
    return Replica("flowers102", root, {"test": len(tst), "train": len(trn), "val": len(val)},
                _rel_md5(d, [b / "imagelabels.mat", b / "setid.mat"]))


def _fgvc_aircraft(root: Path) -> Replica:
    d = root / "fgvc_aircraft"
    b = d / "fgvc-aircraft-2013b" / "data"
    variants = _ids("fgvc_aircraft")
    b.mkdir(parents=True)
    (b / "variants.txt").write_text("".join(v + "\n" for v in variants))
    lines = []
    for k, v in enumerate(variants):
        image_id = f"{1000000 + 7 * k:07d}"
        _jpeg(b / "images" / f"{image_id}.jpg", k)
        lines.append(f"{image_id} {v}\n")
    (b / "images_variant_test.txt").write_text("".join(lines))
    (b / "images_variant_trainval.txt").write_text("".join(lines[:3]))
    return Replica("fgvc_aircraft", root, {"test": len(variants), "trainval": 3})


def _cars_annotations(labels: list[int]) -> np.ndarray:
    dt = [(f, "O") for f in ("bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "fname")]
    arr = np.zeros((1, len(labels)), dtype=dt)
    for i, k in enumerate(labels):
        arr[0, i] = (np.array([[0]]), np.array([[0]]), np.array([[9]]), np.array([[7]]),
                     np.array([[k + 1]], np.uint8), np.array([f"{i + 1:05d}.jpg"]))
    return arr


def _stanford_cars(root: Path) -> Replica:
    d = root / "stanford_cars"
    b = d / "stanford_cars"
    names = _ids("stanford_cars")
    (b / "devkit").mkdir(parents=True)
    cells = np.empty((1, len(names)), dtype=object)
    cells[0, :] = names
    sio.savemat(b / "devkit" / "cars_meta.mat", {"class_names": cells})
    labels = list(range(len(names)))
    rng = random.Random(1)
    rng.shuffle(labels)
    for i, k in enumerate(labels):
        _jpeg(b / "cars_test" / f"{i + 1:05d}.jpg", k)
    sio.savemat(b / "cars_test_annos_withlabels.mat", {"annotations": _cars_annotations(labels)})
    return Replica("stanford_cars", root, {"test": len(labels)})


def _sun397(root: Path) -> Replica:
    d = root / "sun397"
    b = d / "SUN397"
    ids = _ids("sun397")
    b.mkdir(parents=True)
    (b / "ClassName.txt").write_text("".join(f"/{c[0]}/{c}\n" for c in ids))
    for k, c in enumerate(ids):
        _jpeg(b / c[0] / c / f"sun_{hashlib.md5(c.encode()).hexdigest()[:16]}.jpg", k)
    (b / "README.txt").write_text("replica\n")
    return Replica("sun397", root, {"all": len(ids)})


def _food101(root: Path) -> Replica:
    d = root / "food101"
    b = d / "food-101"
    ids = _ids("food101")
    test, train = {}, {}
    for k, c in enumerate(ids):
        _jpeg(b / "images" / c / f"{100 + k}.jpg", k)
        test[c] = [f"{c}/{100 + k}"]
        train[c] = []
    train[ids[0]] = [f"{ids[0]}/100"]
    (b / "meta").mkdir(parents=True)
    (b / "meta" / "test.json").write_text(json.dumps(test))
    (b / "meta" / "train.json").write_text(json.dumps(train))
    (b / "meta" / "classes.txt").write_text("".join(c + "\n" for c in ids))
    return Replica("food101", root, {"test": len(ids), "train": 1})


def _eurosat(root: Path) -> Replica:
    d = root / "eurosat"
    for k, c in enumerate(_ids("eurosat")):
        for i in range(2):
            _jpeg(d / "eurosat" / "2750" / c / f"{c}_{i + 1}.jpg", k)
    return Replica("eurosat", root, {"all": 20})


def _dtd(root: Path) -> Replica:
    d = root / "dtd"
    b = d / "dtd" / "dtd"
    lines = []
    for k, c in enumerate(_ids("dtd")):
        _jpeg(b / "images" / c / f"{c}_0001.jpg", k)
        lines.append(f"{c}/{c}_0001.jpg\n")
    (b / "labels").mkdir(parents=True)
    for split in ("train", "val", "test"):
        (b / "labels" / f"{split}1.txt").write_text("".join(lines))
    return Replica("dtd", root, {"test": len(lines), "train": len(lines), "val": len(lines)})


def _pcam(root: Path) -> Replica:
    d = root / "pcam"
    b = d / "pcam"
    b.mkdir(parents=True)
    labels = [0, 1, 1, 0, 1, 0]
    with h5py.File(b / "camelyonpatch_level_2_split_test_x.h5", "w") as f:
        f.create_dataset("x", data=np.stack([_array(k, 96) for k in labels]))
    with h5py.File(b / "camelyonpatch_level_2_split_test_y.h5", "w") as f:
        f.create_dataset("y", data=np.array(labels, np.uint8).reshape(-1, 1, 1, 1))
    return Replica("pcam", root, {"test": len(labels)})


def coco_labels(n_classes: int = 80) -> list[tuple[int, ...]]:
    """The replica's label set per image, in the annotation file's order: image ``j`` holds
    classes ``2j`` and ``2j + 1`` (every class present), one image holds three, the last none
    (val2017 has 48 images without annotations, which the official code keeps)."""
    labels = [(2 * j, 2 * j + 1) for j in range(n_classes // 2)]
    labels[3] = (6, 7, 40)
    return labels + [()]


def _coco2017(root: Path) -> Replica:
    """instances_val2017.json + val2017/<12-digit id>.jpg; each image's colour encodes its lowest
    class (999: no class).  The file lists images out of id order (as the real one does), and
    the annotations include a crowd annotation, a zero-area one and a repeated category,
    which all count towards the image's label set."""
    d = root / "coco2017"
    ids, names = real.REGISTRY["coco2017"].adapter.CATEGORY_IDS, real.classnames("coco2017")
    labels = coco_labels(len(ids))
    image_ids = [139 + 97 * j for j in range(len(labels))]
    random.Random(2).shuffle(image_ids)
    images, annotations = [], []
    for image_id, classes in zip(image_ids, labels):
        fname = f"{image_id:012d}.jpg"
        _jpeg(d / "val2017" / fname, min(classes, default=999))
        images.append({"id": image_id, "file_name": fname, "width": 10, "height": 8, "license": 1})
        for k in classes + classes[:1]:   # the first category twice: one label all the same
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": ids[k],
                                "iscrowd": 0, "area": 12.5, "bbox": [0.0, 0.0, 5.0, 2.5], "segmentation": []})
    # the only annotations of class 1 (crowd) and of class 3 (zero area): the label sets keep them
    annotations[1].update(iscrowd=1, segmentation={"counts": [0, 80], "size": [8, 10]})
    annotations[4].update(area=0.0, bbox=[0.0, 0.0, 0.0, 0.0])
    coco = {"info": {"description": "ucat smoke replica of COCO 2017 val"}, "licenses": [{"id": 1, "name": "-"}],
            "images": images, "annotations": annotations,
            "categories": [{"id": i, "name": n} for i, n in zip(ids, names)]}
    (d / "annotations").mkdir(parents=True)
    (d / "annotations" / "instances_val2017.json").write_text(json.dumps(coco))
    return Replica("coco2017", root, {"val": len(labels)})


BUILDERS = {
    "tinyimagenet": _tinyimagenet, "cifar10": _cifar10, "cifar100": _cifar100, "stl10": _stl10,
    "imagenet": _imagenet, "caltech101": _caltech101, "caltech256": _caltech256, "oxford_pets": _oxford_pets,
    "flowers102": _flowers102, "fgvc_aircraft": _fgvc_aircraft, "stanford_cars": _stanford_cars,
    "sun397": _sun397, "food101": _food101, "eurosat": _eurosat, "dtd": _dtd, "pcam": _pcam,
    "coco2017": _coco2017,
}


def build(name: str, root: Path, **kwargs) -> Replica:
    if name not in BUILDERS:
        raise unknown_choice("data set", name, BUILDERS)
    return BUILDERS[name](Path(root), **kwargs)


# ----------------------------------------------------------------------------- official archives

def _tar(out: Path, base: Path, members: list[str], mode: str = "w:gz") -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(out, mode) as t:
        for m in members:
            t.add(base / m, arcname=m)
    return out


def _zip(out: Path, base: Path, members: list[str]) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w") as z:
        for m in members:
            src = base / m
            for p in sorted([src] if src.is_file() else src.rglob("*")):
                z.write(p, p.relative_to(base).as_posix())
    return out


def _gz(out: Path, src: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(src, "rb") as fin, gzip.open(out, "wb") as fout:
        shutil.copyfileobj(fin, fout)
    return out


def _copy(out: Path, src: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, out)
    return out


def _imagenet_archives(rep: Replica, out: Path) -> dict[str, Path]:
    from torchvision.datasets.imagenet import ARCHIVE_META

    d = rep.dir
    wnids, names = _ids("imagenet"), real.classnames("imagenet")
    dt = [(f, "O") for f in ("ILSVRC2012_ID", "WNID", "words", "gloss", "num_children", "children",
                             "wordnet_height", "num_train_images")]
    syn = np.zeros((1, len(wnids) + 1), dtype=dt)
    for k, (w, n) in enumerate(zip(wnids, names)):
        syn[0, k] = (np.array([[k + 1]]), np.array([w]), np.array([n]), np.array(["gloss"]), np.array([[0]]),
                     np.zeros((1, 0)), np.array([[0]]), np.array([[1300]]))
    syn[0, -1] = (np.array([[1001]]), np.array(["n00001740"]), np.array(["entity"]), np.array(["gloss"]),
                  np.array([[3]]), np.array([[1, 2, 3]]), np.array([[19]]), np.array([[0]]))
    stage = out / "_imagenet"
    dev = stage / "ILSVRC2012_devkit_t12" / "data"
    dev.mkdir(parents=True)
    sio.savemat(dev / "meta.mat", {"synsets": syn})
    files = sorted((d / "val").rglob("*.JPEG"), key=lambda p: p.name)
    (dev / "ILSVRC2012_validation_ground_truth.txt").write_text(
        "".join(f"{wnids.index(p.parent.name) + 1}\n" for p in files))
    flat = stage / "val"
    flat.mkdir()
    for p in files:
        shutil.copyfile(p, flat / p.name)
    archives = {
        ARCHIVE_META["devkit"][0]: _tar(out / ARCHIVE_META["devkit"][0], stage, ["ILSVRC2012_devkit_t12"]),
        ARCHIVE_META["val"][0]: _tar(out / ARCHIVE_META["val"][0], flat, [p.name for p in files], "w"),
    }
    shutil.rmtree(stage)
    return archives


def pack(rep: Replica, out: Path) -> dict[str, Path]:
    """The official archives/files of the replica's data set, built from it: {file name: path}."""
    d, out = rep.dir, Path(out)
    n = rep.name
    if n == "tinyimagenet":
        return {"tiny-imagenet-200.zip": _zip(out / "tiny-imagenet-200.zip", d, ["tiny-imagenet-200"])}
    if n in ("cifar10", "cifar100"):
        folder = "cifar-10-batches-py" if n == "cifar10" else "cifar-100-python"
        fname = f"{n.replace('cifar', 'cifar-')}-python.tar.gz"
        return {fname: _tar(out / fname, d, [folder])}
    if n == "stl10":
        return {"stl10_binary.tar.gz": _tar(out / "stl10_binary.tar.gz", d, ["stl10_binary"])}
    if n == "imagenet":
        return _imagenet_archives(rep, out)
    if n == "caltech101":
        inner = out / "_c101" / "caltech-101"
        _tar(inner / "101_ObjectCategories.tar.gz", d / "caltech101", ["101_ObjectCategories"])
        (out / "_c101" / "Annotations" / "Faces_2").mkdir(parents=True)
        _tar(inner / "Annotations.tar", out / "_c101", ["Annotations"], "w")
        (inner / "show_annotation.m").write_text("% replica\n")
        z = _zip(out / "caltech-101.zip", out / "_c101", ["caltech-101"])
        shutil.rmtree(out / "_c101")
        return {"caltech-101.zip": z}
    if n == "caltech256":
        return {"256_ObjectCategories.tar": _tar(out / "256_ObjectCategories.tar", d / "caltech256",
                                                 ["256_ObjectCategories"], "w")}
    if n == "oxford_pets":
        b = d / "oxford-iiit-pet"
        return {"images.tar.gz": _tar(out / "images.tar.gz", b, ["images"]),
                "annotations.tar.gz": _tar(out / "annotations.tar.gz", b, ["annotations"])}
    if n == "flowers102":
        b = d / "flowers-102"
        return {"102flowers.tgz": _tar(out / "102flowers.tgz", b, ["jpg"]),
                "imagelabels.mat": _copy(out / "imagelabels.mat", b / "imagelabels.mat"),
                "setid.mat": _copy(out / "setid.mat", b / "setid.mat")}
    if n == "fgvc_aircraft":
        return {"fgvc-aircraft-2013b.tar.gz": _tar(out / "fgvc-aircraft-2013b.tar.gz", d, ["fgvc-aircraft-2013b"])}
    if n == "stanford_cars":
        b = d / "stanford_cars"
        return {"car_devkit.tgz": _tar(out / "car_devkit.tgz", b, ["devkit"]),
                "cars_test.tgz": _tar(out / "cars_test.tgz", b, ["cars_test"]),
                "cars_test_annos_withlabels.mat": _copy(out / "cars_test_annos_withlabels.mat",
                                                        b / "cars_test_annos_withlabels.mat")}
    if n == "sun397":
        return {"SUN397.tar.gz": _tar(out / "SUN397.tar.gz", d, ["SUN397"])}
    if n == "food101":
        return {"food-101.tar.gz": _tar(out / "food-101.tar.gz", d, ["food-101"])}
    if n == "eurosat":
        return {"EuroSAT.zip": _zip(out / "EuroSAT.zip", d / "eurosat", ["2750"])}
    if n == "dtd":
        return {"dtd-r1.0.1.tar.gz": _tar(out / "dtd-r1.0.1.tar.gz", d / "dtd", ["dtd"])}
    if n == "pcam":
        b = d / "pcam"
        return {f"{f}.gz": _gz(out / f"{f}.gz", b / f) for f in
                ("camelyonpatch_level_2_split_test_x.h5", "camelyonpatch_level_2_split_test_y.h5")}
    if n == "coco2017":
        return {"val2017.zip": _zip(out / "val2017.zip", d, ["val2017"]),
                "annotations_trainval2017.zip": _zip(out / "annotations_trainval2017.zip", d, ["annotations"])}
    raise KeyError(n)
