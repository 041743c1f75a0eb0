"""The registry's URLs, checksums, counts and class facts: equal to torchvision's own class
attributes where torchvision has them, and to the values the pre-refactor tables held
(verified then against torchvision and TFDS) everywhere else."""

from __future__ import annotations

import dataclasses
import inspect
import re
import tomllib
from pathlib import Path

import pytest
import torchvision
import torchvision.datasets as tvd
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from ucat.data import real
from ucat.data.real import adapters

REPO = Path(__file__).resolve().parents[2]


def _res(name: str) -> dict[str, real.Resource]:
    return {r.filename: r for r in real.REGISTRY[name].resources}


def _one(name: str) -> real.Resource:
    (res,) = real.REGISTRY[name].resources
    return res


@pytest.mark.parametrize("name, cls", [("cifar10", tvd.CIFAR10), ("cifar100", tvd.CIFAR100), ("stl10", tvd.STL10)])
def test_array_sets_match_torchvision(name, cls):
    res = _one(name)
    assert (res.filename, res.urls, res.md5) == (cls.filename, (cls.url,), cls.tgz_md5)
    files = {f"{cls.base_folder}/{f}": m for f, m in cls.train_list + cls.test_list}
    if hasattr(cls, "meta"):
        files[f"{cls.base_folder}/{cls.meta['filename']}"] = cls.meta["md5"]
    assert real.REGISTRY[name].file_md5 == files
    assert real.REGISTRY[name].adapter.top == (cls.base_folder,)


def test_image_sets_match_torchvision_class_attributes():
    assert (_one("dtd").urls, _one("dtd").md5) == ((tvd.DTD._URL,), tvd.DTD._MD5)
    assert (_one("food101").urls, _one("food101").md5) == ((tvd.Food101._URL,), tvd.Food101._MD5)
    assert (_one("sun397").urls, _one("sun397").md5) == ((tvd.SUN397._DATASET_URL,), tvd.SUN397._DATASET_MD5)
    assert _one("fgvc_aircraft").urls == (tvd.FGVCAircraft._URL,)
    pets = _res("oxford_pets")
    assert {(r.urls, r.md5) for r in pets.values()} == {((u,), m) for u, m in tvd.OxfordIIITPet._RESOURCES}
    assert all(f == r.urls[0].rsplit("/", 1)[1] for f, r in pets.items())
    flowers = _res("flowers102")
    for key in ("image", "label", "setid"):
        fname, md5 = tvd.Flowers102._file_dict[key]
        assert flowers[fname].urls == (tvd.Flowers102._download_url_prefix + fname,) and flowers[fname].md5 == md5
    assert real.REGISTRY["flowers102"].file_md5 == {
        f"flowers-102/{tvd.Flowers102._file_dict[k][0]}": tvd.Flowers102._file_dict[k][1] for k in ("label", "setid")}
    from torchvision.datasets.imagenet import ARCHIVE_META

    assert {f: r.md5 for f, r in _res("imagenet").items()} == {ARCHIVE_META[k][0]: ARCHIVE_META[k][1] for k in ("devkit", "val")}
    pcam = _res("pcam")
    for key in ("images", "targets"):
        fname, gdrive_id, md5 = tvd.PCAM._FILES["test"][key]
        res = pcam[fname + ".gz"]
        assert res.md5 == md5 and res.urls[-1] == f"gdrive:{gdrive_id}" and res.action == "gunzip"


@pytest.mark.parametrize("name, cls", [("caltech101", tvd.Caltech101), ("caltech256", tvd.Caltech256),
                                       ("eurosat", tvd.EuroSAT)])
def test_sets_whose_url_torchvision_keeps_in_its_download_method(name, cls):
    source = inspect.getsource(cls.download)
    res = _one(name)
    assert f'"{res.urls[0]}"' in source and f'"{res.md5}"' in source


def test_fgvc_aircraft_has_its_published_md5():
    assert _one("fgvc_aircraft").md5 == "d4acdd33327262359767eeaa97a4f732"


def test_every_official_file_has_a_published_checksum():
    for name, rec in real.REGISTRY.items():
        for res in rec.resources:
            assert res.md5 is not None or res.sha256 is not None, (name, res.filename)
            assert res.action in ("extract", "file", "gunzip", "keep")


# The registry before the refactor into records (src/ucat/data/real.py at d816e68): the values
# torchvision does not hold (TFDS's sha256 and sizes, TinyImageNet, Stanford Cars, counts).
OLD = {
    "tinyimagenet": (200, "val", 10000, True, [("tiny-imagenet-200.zip", "90528d7ca1a48142e341f4ef8d21d0de", None,
                                                 248100043, "extract", ".")]),
    "cifar10": (10, "test", 10000, True, [("cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a", None, None,
                                           "extract", ".")]),
    "cifar100": (100, "test", 10000, True, [("cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85", None,
                                             None, "extract", ".")]),
    "stl10": (10, "test", 8000, True, [("stl10_binary.tar.gz", "91f7769df0f17e558f3565bffb0c7dfb",
                                        "f31fd99273a1acb8609c8db427cebb1de3f71de77758cdc0e22956e1289b9866",
                                        2640397119, "extract", ".")]),
    "imagenet": (1000, "val", 50000, False, [
        ("ILSVRC2012_devkit_t12.tar.gz", "fa75699e90414af021442c21a62c3abf", None, None, "keep", "."),
        ("ILSVRC2012_img_val.tar", "29b22e2961454d5413ddabcf34fc5622", None, None, "keep", ".")]),
    "caltech101": (101, "all", 8677, True, [("caltech-101.zip", "3138e1922a9193bfa496528edbbc45d0",
                                             "331234750fc7f77520e50d9565e8b6907b03565e30320da1401130db08c61f91",
                                             137414764, "extract", "caltech101/.zip")]),
    "caltech256": (257, "all", 30607, True, [("256_ObjectCategories.tar", "67b4f42ca05d46448c6bb8ecd2220f6d", None,
                                              None, "extract", "caltech256")]),
    "oxford_pets": (37, "test", 3669, True, [
        ("images.tar.gz", "5c4f3ee8e5d25df40f4fd59a7f44e54c", None, None, "extract", "oxford-iiit-pet"),
        ("annotations.tar.gz", "95a8c909bbe2e81eed6a22bccdf3f68f", None, None, "extract", "oxford-iiit-pet")]),
    "flowers102": (102, "test", 6149, True, [
        ("102flowers.tgz", "52808999861908f626f3c1f4e79d11fa",
         "2d01ecc807db462958cfe3d92f57a8c252b4abd240eb955770201e45f783b246", 344862509, "extract", "flowers-102"),
        ("imagelabels.mat", "e0620be6f572b9609742df49c70aed4d",
         "4903e94206bac23bf772aadf06451916df56b58fc483a62db32a97b82656651d", 502, "file", "flowers-102"),
        ("setid.mat", "a5357ecc9cb78c4bef273ce3793fc85c",
         "46b8678f91fd95d3c8f4feab80d271a6c834a1dd896fe29fd3e6ad9ce5c8dccd", 14989, "file", "flowers-102")]),
    # md5: None before this refactor, the published one since (test_fgvc_aircraft_has_its_published_md5)
    "fgvc_aircraft": (100, "test", 3333, True, [("fgvc-aircraft-2013b.tar.gz", "d4acdd33327262359767eeaa97a4f732",
                                                 None, None, "extract", ".")]),
    "stanford_cars": (196, "test", 8041, False, [
        ("car_devkit.tgz", None, "b97deb463af7d58b6bfaa18b2a4de9829f0f79e8ce663dfa9261bf7810e9accd", 330960,
         "extract", "stanford_cars"),
        ("cars_test.tgz", None, "bffea656d6f425cba3c91c6d83336e4c5f86c6cffd8975b0f375d3a10da8e243", 977350468,
         "extract", "stanford_cars"),
        ("cars_test_annos_withlabels.mat", None, "790f75be8ea34eeded134cc559332baf23e30e91367e9ddca97d26ed9b895f05",
         185758, "file", "stanford_cars")]),
    "sun397": (397, "all", 108754, False, [("SUN397.tar.gz", "8ca2778205c41d23104230ba66911c7a",
                                            "f404130965a7ad77bed5ececc71e720ab50f3cc1e1bb257257610d38f3b928ec",
                                            39077296924, "extract", ".")]),
    "food101": (101, "test", 25250, True, [("food-101.tar.gz", "85eeb15f3717b99a5da872d97d918f87",
                                            "d97d15e438b7f4498f96086a4f7e2fa42a32f2712e87d3295441b2b6314053a4",
                                            4996278331, "extract", ".")]),
    "eurosat": (10, "all", 27000, True, [("EuroSAT.zip", "c8fa014336c82ac7804f0398fcb19387", None, None, "extract",
                                          "eurosat")]),
    "dtd": (47, "test", 1880, True, [("dtd-r1.0.1.tar.gz", "fff73e5086ae6bdbea199a49dfb8a4c1",
                                      "e42855a52a4950a3b59612834602aa253914755c95b0cff9ead6d07395f8e205", 625239812,
                                      "extract", "dtd")]),
    "pcam": (2, "test", 32768, True, [
        ("camelyonpatch_level_2_split_test_x.h5.gz", "d8c2d60d490dbd479f8199bdfa0cf6ec",
         "79174c2201ad521602a5888be8f36ee10875f37403dd3f2086caf2182ef87245", 800875929, "gunzip", "pcam"),
        ("camelyonpatch_level_2_split_test_y.h5.gz", "60a7035772fbdb7f34eb86d4420cf66a",
         "0a522005fccc8bbd04c5a117bfaf81d8da2676f03a29d7499f71d0a0bd6068ef", 3040, "gunzip", "pcam")]),
}
OLD_SPLITS = {"tinyimagenet": ("train", "val"), "cifar10": ("train", "test"), "cifar100": ("train", "test"),
              "stl10": ("train", "test"), "imagenet": ("train", "val"), "caltech101": ("all",),
              "caltech256": ("all",), "oxford_pets": ("trainval", "test"), "flowers102": ("train", "val", "test"),
              "fgvc_aircraft": ("train", "val", "trainval", "test"), "stanford_cars": ("train", "test"),
              "sun397": ("all",), "food101": ("train", "test"), "eurosat": ("all",),
              "dtd": ("train", "val", "test"), "pcam": ("train", "val", "test")}


@pytest.mark.parametrize("name", sorted(OLD))
def test_registry_keeps_the_pre_refactor_values(name):
    rec = real.REGISTRY[name]
    classes, split, count, auto, resources = OLD[name]
    s = rec.spec
    assert (s.name, s.num_classes, s.eval_split, s.num_eval_samples, s.auto_download) == (name, classes, split,
                                                                                            count, auto)
    assert [(r.filename, r.md5, r.sha256, r.size, r.action, r.dest) for r in rec.resources] == resources
    assert real.splits(name) == OLD_SPLITS[name]
    assert rec.counts == ({"val": 10000, "train": 100000} if name == "tinyimagenet" else {split: count})
    # one record: the views show the record's fields
    assert real.REAL_DATASETS[name] is s and real.DOWNLOADS[name] == list(rec.resources)


def test_registry_covers_exactly_the_classname_files_the_16_sets_and_coco():
    from importlib import resources

    shipped = {p.name.removesuffix(".json") for p in resources.files("ucat.data").joinpath("classnames").iterdir()
               if p.name.endswith(".json") and not p.name.startswith("_")}
    assert set(real.REGISTRY) == shipped == set(OLD) | {"coco2017"} and len(OLD) == 16


def test_field_views_write_through_to_the_record_and_monkeypatch_restores(monkeypatch):
    before = real.REGISTRY["dtd"]
    with monkeypatch.context() as mp:
        mp.setitem(real.REAL_DATASETS, "dtd", dataclasses.replace(before.spec, num_eval_samples=5))
        mp.setitem(real.KNOWN_FILE_MD5, "dtd", {"dtd/dtd/labels/test1.txt": "0" * 32})
        mp.setitem(real.EXTRA_SPLIT_COUNTS, "dtd", {"train": 7})
        rec = real.REGISTRY["dtd"]
        assert rec.counts == {"test": 5, "train": 7} and rec.file_md5 == {"dtd/dtd/labels/test1.txt": "0" * 32}
        assert rec.adapter is before.adapter and "dtd" in real.KNOWN_FILE_MD5
    assert real.REGISTRY["dtd"] == before
    assert "dtd" not in real.KNOWN_FILE_MD5 and "dtd" not in real.EXTRA_SPLIT_COUNTS
    assert set(real.KNOWN_FILE_MD5) == {"cifar10", "cifar100", "stl10", "flowers102"}


def test_torchvision_has_an_upper_bound_that_admits_the_installed_version():
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    (line,) = [d for d in deps if re.match(r"torchvision\b", d)]
    spec = SpecifierSet(line.removeprefix("torchvision"))
    assert any(s.operator in ("<", "<=", "~=", "==") for s in spec), line  # private attributes are read
    assert Version(torchvision.__version__.split("+")[0]) in spec


def test_every_adapter_anchor_names_a_folder_inside_the_set():
    for name, rec in real.REGISTRY.items():
        container, marker = rec.adapter.anchor
        assert marker, name
        assert isinstance(rec.adapter, adapters.Adapter)
        if container:
            assert container.split("/")[0] in rec.adapter.top, name
