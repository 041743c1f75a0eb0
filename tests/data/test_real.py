"""The real data sets: registry, class names, loading, verification and (mocked) download.

No network: ``ucat.data.real.archives.fetch`` and urllib are replaced by an autouse fixture; downloads are
served from fake archives built in each set's official format (tests/data/fakes.py).
"""

from __future__ import annotations

import dataclasses
import io
import json
import pickle
import shutil
import urllib.request

import h5py
import numpy as np
import pytest
import torch

from ucat.data import integrity, real
from ucat.data.real import archives as real_archives
from ucat.data.transforms import eval_transform
from ucat.errors import ConfigError, DataError

from . import fakes

# the 16 single-label sets (the multi-label coco2017 has its own tests: tests/data/test_coco.py)
NAMES = sorted(n for n, s in real.REAL_DATASETS.items() if not s.multilabel)
_ORIGINAL_FETCH = real_archives.fetch  # captured before the autouse fixture replaces it


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a test tried to use the network")

    monkeypatch.setattr(real_archives, "fetch", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)


@pytest.fixture(scope="session")
def built(tmp_path_factory):
    """One fake copy of every set (read-only for the tests that use it)."""
    root = tmp_path_factory.mktemp("fakes")
    return {name: fakes.build(name, root) for name in NAMES}


@pytest.fixture
def fresh(tmp_path):
    """Build a private fake copy (for tests that damage it)."""
    return lambda name, **kw: fakes.build(name, tmp_path / "data", **kw)


# ----------------------------------------------------------------------------- registry

def test_registry_has_the_papers_16_sets_and_coco():
    assert len(NAMES) == 16 and set(real.REAL_DATASETS) == set(NAMES) | {"coco2017"}
    assert {real.REAL_DATASETS[n].paper_name for n in NAMES} == {
        "TinyImageNet", "CIFAR10", "CIFAR100", "STL10", "ImageNet", "Caltech101", "Caltech256", "OxfordPets",
        "Flowers102", "FGVCAircraft", "StanfordCars", "SUN397", "Food101", "EuroSAT", "DTD", "PCAM"}
    # the paper tables' column names, as shipped with ucat.report
    import csv
    from importlib import resources

    table = resources.files("ucat.report").joinpath("reference", "table16_main.csv")
    columns = {row["dataset"] for row in csv.DictReader(table.read_text().splitlines())}
    summaries = {"average", "harmonic_mean_clean_robust"}
    assert {real.REAL_DATASETS[n].paper_name for n in NAMES} == columns - summaries
    for name, spec in real.REAL_DATASETS.items():
        assert spec.name == name and name == name.lower()
        assert spec.eval_split in real.splits(name)
        assert spec.num_eval_samples > 0 and spec.source and spec.manual_instructions
        assert f"<root>/{name}/" in spec.manual_instructions
    assert {n for n, s in real.REAL_DATASETS.items() if not s.auto_download} == {"imagenet", "stanford_cars",
                                                                                  "sun397"}


@pytest.mark.parametrize("name", NAMES)
def test_classnames_have_num_classes_unique_readable_entries(name):
    spec = real.REAL_DATASETS[name]
    names = real.classnames(name)
    assert len(names) == spec.num_classes
    assert all(isinstance(n, str) and n.strip() == n and n and "_" not in n for n in names)
    ids = real.class_ids(name)
    if ids is not None:
        assert len(ids) == spec.num_classes and len(set(ids)) == spec.num_classes
    # ImageNet: two of CLIP's names repeat ("missile", "sunglasses"), as in CLIP_benchmark
    assert len(set(names)) == spec.num_classes - (2 if name == "imagenet" else 0)
    names[0] = "mutated"
    assert real.classnames(name)[0] != "mutated"  # a copy, not the cache


@pytest.mark.parametrize("name, ident, readable", [
    ("tinyimagenet", "n02123045", "tabby"), ("tinyimagenet", "n12267677", "acorn"),
    ("imagenet", "n01440764", "tench"), ("imagenet", "n15075141", "toilet paper"),
    ("cifar100", "aquarium_fish", "aquarium fish"), ("cifar10", "automobile", "automobile"),
    ("caltech101", "Faces_easy", "centered face"), ("caltech101", "yin_yang", "yin and yang symbol"),
    ("caltech256", "257.clutter", "clutter"), ("caltech256", "063.electric-guitar-101", "electric guitar"),
    ("eurosat", "HerbaceousVegetation", "brushland or shrubland"), ("eurosat", "SeaLake", "lake or sea"),
    ("sun397", "apartment_building/outdoor", "apartment building outdoor"),
    ("food101", "cheese_plate", "cheese plate"), ("food101", "cheesecake", "cheesecake"),
    ("stanford_cars", "smart fortwo Convertible 2012", "smart fortwo Convertible 2012"),
    ("fgvc_aircraft", "F/A-18", "F/A-18"), ("dtd", "polka-dotted", "polka-dotted"),
])
def test_class_ids_and_names_are_aligned(name, ident, readable):
    ids = real.class_ids(name)
    assert real.classnames(name)[ids.index(ident)] == readable


def test_label_order_follows_the_loaders_conventions():
    assert real.class_ids("tinyimagenet") == sorted(real.class_ids("tinyimagenet"))  # sorted wnids
    assert real.class_ids("imagenet") == sorted(real.class_ids("imagenet"))
    assert set(real.class_ids("tinyimagenet")) <= set(real.class_ids("imagenet"))
    # torchvision: sorted folder listing (upper case first); Food101: sorted json keys
    for name in ("caltech101", "caltech256", "eurosat", "food101", "dtd", "cifar100", "fgvc_aircraft"):
        assert real.class_ids(name) == sorted(real.class_ids(name)), name
    assert real.class_ids("caltech101")[:4] == ["Faces", "Faces_easy", "Leopards", "Motorbikes"]
    assert "BACKGROUND_Google" not in real.class_ids("caltech101")
    assert real.classnames("pcam")[1] == "lymph node containing metastatic tumor tissue"
    assert real.classnames("flowers102")[0] == "pink primrose" and real.classnames("oxford_pets")[0] == "Abyssinian"


def test_unknown_names_and_splits_are_config_errors(tmp_path):
    for call in (lambda: real.classnames("mnist"), lambda: real.open_real("mnist", tmp_path),
                 lambda: real.download_real("mnist", tmp_path), lambda: real.verify_real("mnist", tmp_path)):
        with pytest.raises(ConfigError, match="data.datasets.*mnist"):
            call()
    with pytest.raises(ConfigError, match="split"):
        real.open_real("cifar10", tmp_path, split="validation")


# ----------------------------------------------------------------------------- transforms

def test_eval_transform_resizes_crops_and_keeps_pixels_in_unit_range():
    from PIL import Image

    t = eval_transform(32)
    rgba = Image.new("RGBA", (64, 40), (255, 0, 0, 128))
    x = t(rgba)
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32
    assert torch.allclose(x[0], torch.ones(32, 32)) and float(x[1:].max()) == 0.0
    gray = t(Image.new("L", (20, 50), 200))
    assert gray.shape == (3, 32, 32) and torch.allclose(gray[0], gray[2])
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8))
    y = t(noise)
    assert 0.0 <= float(y.min()) and float(y.max()) <= 1.0
    pickle.loads(pickle.dumps(t))
    with pytest.raises(ValueError):
        eval_transform(0)


# ----------------------------------------------------------------------------- loading the fakes

def _split_items(fake):
    spec = real.REAL_DATASETS[fake.name]
    yield spec.eval_split
    if fake.name == "tinyimagenet":
        yield "train"


@pytest.mark.parametrize("name", NAMES)
def test_open_real_reads_the_fake_in_its_real_format(name, built, monkeypatch):
    fake = built[name]
    fakes.expect(monkeypatch, fake)
    spec = real.REAL_DATASETS[name]
    for split in _split_items(fake):
        ds = real.open_real(name, fake.root, split=None if split == spec.eval_split else split,
                            transform=eval_transform(32))
        assert len(ds) == fake.counts[split]
        assert ds.classnames == real.classnames(name) and len(ds.labels) == len(ds)
        seen = set()
        for i in range(len(ds)):
            x, y = ds[i]
            assert isinstance(y, int) and 0 <= y < spec.num_classes
            assert x.shape == (3, 32, 32) and x.dtype == torch.float32
            assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
            assert fakes.decode(x) == y, f"{name}/{split} item {i}: image of class {fakes.decode(x)} labelled {y}"
            assert ds.labels[i] == y
            seen.add(y)
        if split == spec.eval_split:
            assert len(seen) == spec.num_classes  # fakes carry every class
        pickle.loads(pickle.dumps(ds))  # usable by spawned DataLoader workers


def test_without_transform_items_are_rgb_pil_images(built, monkeypatch):
    fake = built["caltech101"]  # label 0 is stored as a grayscale JPEG, as some real Caltech101 images
    fakes.expect(monkeypatch, fake)
    img, label = real.open_real("caltech101", fake.root)[0]
    assert label == 0 and img.mode == "RGB"


def test_sequence_protocol(built, monkeypatch):
    fake = built["pcam"]
    ds = real.open_real("pcam", fake.root)
    assert [y for _, y in ds] == [0, 1, 1, 0, 1, 0] == ds.targets  # iteration stops at the end
    assert ds[-1][1] == 0
    with pytest.raises(IndexError):
        ds[6]


def test_dataloader_batches(built, monkeypatch):
    fake = built["cifar10"]
    fakes.expect(monkeypatch, fake)
    loader = torch.utils.data.DataLoader(real.open_real("cifar10", fake.root, transform=eval_transform(32)),
                                         batch_size=8)
    x, y = next(iter(loader))
    assert x.shape == (8, 3, 32, 32) and y.dtype == torch.int64


def test_sun397_sample_order_is_deterministic(built, monkeypatch):
    fake = built["sun397"]
    fakes.expect(monkeypatch, fake)
    ds = real.open_real("sun397", fake.root)
    assert ds._paths == sorted(ds._paths)
    assert ds.labels == list(range(397))  # ClassName.txt order == path order


# ----------------------------------------------------------------------------- verification

@pytest.mark.parametrize("name", NAMES)
def test_verify_real_accepts_a_complete_copy(name, built, monkeypatch):
    fake = built[name]
    fakes.expect(monkeypatch, fake)
    m = real.verify_real(name, fake.root)
    spec = real.REAL_DATASETS[name]
    assert m["name"] == name and m["num_classes"] == spec.num_classes and m["paper_name"] == spec.paper_name
    assert m["num_samples"][spec.eval_split] == fake.counts[spec.eval_split]
    assert m["classnames_sha256"] == integrity.names_hash(real.classnames(name))
    assert m["files"] or m["images"]
    if m["images"]:  # the fingerprint covers exactly the listed images of the split
        assert m["images"][spec.eval_split]["files"] == fake.counts[spec.eval_split]
    if name in real.KNOWN_FILE_MD5:  # the official md5 of every such file the split needs was checked
        assert m["official_md5_checked"] and set(m["official_md5_checked"]) == set(fake.file_md5) & set(m["files"])
    json.dumps(m)
    assert not (fake.dir / real.MANIFEST).exists()  # verify_real does not write


def test_verify_real_rejects_wrong_counts_and_missing_classes(fresh, monkeypatch):
    fake = fresh("eurosat")
    fakes.expect(monkeypatch, fake)
    real.verify_real("eurosat", fake.root)
    monkeypatch.setitem(real.REAL_DATASETS, "eurosat",
                        dataclasses.replace(real.REAL_DATASETS["eurosat"], num_eval_samples=27000))
    with pytest.raises(DataError, match=r"20 samples .*2750.*expected 27000"):
        real.verify_real("eurosat", fake.root)
    # a class that is listed (so the class list is complete) but has no sample, at the right count
    food = fresh("food101")
    fakes.expect(monkeypatch, food)
    meta = food.dir / "food-101" / "meta" / "test.json"
    listed = json.loads(meta.read_text())
    listed["apple_pie"] = []
    meta.write_text(json.dumps(listed))
    monkeypatch.setitem(real.REAL_DATASETS, "food101",
                        dataclasses.replace(real.REAL_DATASETS["food101"], num_eval_samples=100))
    assert len(real.open_real("food101", food.root)) == 100  # reading alone does not notice
    with pytest.raises(DataError, match=r"split 'test' under .*test.json contains 100 of the 101 classes"):
        real.verify_real("food101", food.root)


def test_verify_detects_changes_after_the_manifest(fresh, monkeypatch):
    fake = fresh("fgvc_aircraft")
    fakes.expect(monkeypatch, fake)
    m = real.verify_real("fgvc_aircraft", fake.root)
    (fake.dir / real.MANIFEST).write_text(json.dumps(m))
    ann = fake.dir / "fgvc-aircraft-2013b" / "data" / "images_variant_test.txt"
    lines = ann.read_text().splitlines()
    ann.write_text("\n".join(lines[1:] + lines[:1]) + "\n")  # same content, other order
    with pytest.raises(DataError, match="images_variant_test.txt changed since"):
        real.verify_real("fgvc_aircraft", fake.root)


def test_open_real_checks_the_recorded_sample_count(fresh, monkeypatch):
    fake = fresh("dtd")
    fakes.expect(monkeypatch, fake)
    (fake.dir / real.MANIFEST).write_text(json.dumps({"num_samples": {"test": 9999}}))
    with pytest.raises(DataError, match="recorded 9999"):
        real.open_real("dtd", fake.root)


# ----------------------------------------------------------------------------- corrupt and missing files

def test_missing_data_set_names_the_path_and_how_to_get_it(tmp_path):
    with pytest.raises(DataError) as e:
        real.open_real("cifar10", tmp_path)
    assert str(tmp_path / "cifar10") in str(e.value) and "ucat data cifar10" in str(e.value)
    with pytest.raises(DataError) as e:
        real.open_real("sun397", tmp_path)
    assert "SUN397.tar.gz" in str(e.value) and "404" in str(e.value)  # manual instructions


def test_truncated_cifar_batch_is_rejected_naming_the_file(fresh, monkeypatch):
    fake = fresh("cifar10")
    fakes.expect(monkeypatch, fake)
    batch = fake.dir / "cifar-10-batches-py" / "test_batch"
    batch.write_bytes(batch.read_bytes()[:1000])
    with pytest.raises(DataError, match=r"test_batch is corrupt or truncated \(md5"):
        real.open_real("cifar10", fake.root)
    # even without a known checksum the unpickling error names the file's folder
    monkeypatch.setitem(real.KNOWN_FILE_MD5, "cifar10", {})
    with pytest.raises(DataError, match="cifar-10-batches-py"):
        real.open_real("cifar10", fake.root)


def test_missing_cifar_batch_is_named(fresh, monkeypatch):
    fake = fresh("cifar100")
    fakes.expect(monkeypatch, fake)
    (fake.dir / "cifar-100-python" / "meta").unlink()
    with pytest.raises(DataError, match=r"cifar-100-python/meta is missing"):
        real.open_real("cifar100", fake.root)


def test_truncated_hdf5_is_rejected_naming_the_file(fresh, monkeypatch):
    fake = fresh("pcam")
    fakes.expect(monkeypatch, fake)
    x = fake.dir / "pcam" / "camelyonpatch_level_2_split_test_x.h5"
    x.write_bytes(x.read_bytes()[:3000])
    with pytest.raises(DataError, match="camelyonpatch_level_2_split_test_x.h5"):
        real.open_real("pcam", fake.root)


def test_pcam_label_count_mismatch_is_rejected(fresh, monkeypatch):
    fake = fresh("pcam")
    y = fake.dir / "pcam" / "camelyonpatch_level_2_split_test_y.h5"
    with h5py.File(y, "w") as f:
        f.create_dataset("y", data=np.zeros((2, 1, 1, 1), np.uint8))
    with pytest.raises(DataError, match="camelyonpatch_level_2_split_test_y.h5.*2 labels for 6 images"):
        real.open_real("pcam", fake.root)


def test_truncated_stl_binary_is_rejected(fresh, monkeypatch):
    fake = fresh("stl10")
    monkeypatch.setitem(real.KNOWN_FILE_MD5, "stl10", {})  # the size check alone must catch it
    x = fake.dir / "stl10_binary" / "test_X.bin"
    x.write_bytes(x.read_bytes()[:-100])
    with pytest.raises(DataError, match="test_X.bin is truncated"):
        real.open_real("stl10", fake.root)


def test_missing_val_annotations_is_named(fresh):
    fake = fresh("tinyimagenet")
    (fake.dir / "tiny-imagenet-200" / "val" / "val_annotations.txt").unlink()
    with pytest.raises(DataError, match=r"val/val_annotations.txt is missing.*tiny-imagenet-200.zip"):
        real.open_real("tinyimagenet", fake.root)
    # the training split does not need it
    assert len(real.open_real("tinyimagenet", fake.root, split="train")) == 200


def test_malformed_val_annotation_line_is_named(fresh):
    fake = fresh("tinyimagenet")
    ann = fake.dir / "tiny-imagenet-200" / "val" / "val_annotations.txt"
    ann.write_text(ann.read_text().replace("\tn0", "\tx0", 1))
    with pytest.raises(DataError, match=r"val_annotations.txt:\d+: malformed"):
        real.open_real("tinyimagenet", fake.root)


def test_wrong_wnids_are_rejected(fresh):
    fake = fresh("tinyimagenet")
    w = fake.dir / "tiny-imagenet-200" / "wnids.txt"
    w.write_text("\n".join(w.read_text().split()[:-1]) + "\n")
    with pytest.raises(DataError, match="wnids.txt lists 199 wnids"):
        real.open_real("tinyimagenet", fake.root)


def test_a_missing_class_folder_would_shift_labels_and_is_rejected(fresh):
    fake = fresh("caltech256")
    shutil.rmtree(fake.dir / "caltech256" / "256_ObjectCategories" / "100.hawksbill-101")
    with pytest.raises(DataError, match=r"\(256\) are not the 257 expected ones \(missing \['100.hawksbill-101'\]"):
        real.open_real("caltech256", fake.root)


def test_incomplete_dtd_split_file_is_rejected(fresh):
    fake = fresh("dtd")
    lab = fake.dir / "dtd" / "dtd" / "labels" / "test1.txt"
    lab.write_text("".join(lab.read_text().splitlines(True)[1:]))  # drops class "banded"
    with pytest.raises(DataError, match=r"missing \['banded'\]"):
        real.open_real("dtd", fake.root)


def test_corrupt_flowers_mat_is_named(fresh, monkeypatch):
    fake = fresh("flowers102")
    fakes.expect(monkeypatch, fake)
    mat = fake.dir / "flowers-102" / "setid.mat"
    mat.write_bytes(b"garbage" * 10)
    with pytest.raises(DataError, match="setid.mat is corrupt or truncated"):
        real.open_real("flowers102", fake.root)
    monkeypatch.setitem(real.KNOWN_FILE_MD5, "flowers102", {})
    with pytest.raises(DataError, match="cannot read .*setid.mat"):
        real.open_real("flowers102", fake.root)


def test_truncated_image_is_reported_at_read_time_with_its_path(fresh):
    fake = fresh("food101")
    img = fake.dir / "food-101" / "images" / "apple_pie" / "100.jpg"
    img.write_bytes(img.read_bytes()[:40])
    ds = real.open_real("food101", fake.root, transform=eval_transform(32))
    with pytest.raises(DataError, match=r"food101/test: cannot read sample 0 \(.*apple_pie/100.jpg\)"):
        ds[0]


def test_pets_breed_label_mismatch_is_rejected(fresh):
    fake = fresh("oxford_pets")
    ann = fake.dir / "oxford-iiit-pet" / "annotations" / "test.txt"
    lines = ann.read_text().splitlines(True)
    stem, _, species, breed = lines[0].split()
    lines[0] = f"{stem} 2 {species} {breed}\n"  # Abyssinian filed under American Bulldog's id
    ann.write_text("".join(lines))
    with pytest.raises(DataError, match="test.txt"):
        real.open_real("oxford_pets", fake.root)


def test_imagenet_without_meta_bin_reads_a_sorted_val_tree(fresh, monkeypatch):
    fake = fresh("imagenet")
    (fake.dir / "meta.bin").unlink()
    ds = real.open_real("imagenet", fake.root, transform=eval_transform(32))
    assert len(ds) == 1000 and all(fakes.decode(ds[i][0]) == ds[i][1] for i in (0, 499, 999))
    (fake.dir / "meta.bin").write_bytes(b"not a torch file")
    with pytest.raises(DataError, match="meta.bin"):
        real.open_real("imagenet", fake.root)


# ----------------------------------------------------------------------------- download (mocked network)

def _serve(monkeypatch, fake, tmp_path, corrupt=0, mode="truncate", keep_checksum=True):
    archives = fakes.pack(fake, tmp_path / "archives")
    fakes.expect(monkeypatch, fake)
    fakes.expect_archives(monkeypatch, fake.name, archives, keep_checksum)
    net = fakes.FakeNetwork(archives, corrupt, mode)
    monkeypatch.setattr(real_archives, "fetch", net)
    return archives, net


@pytest.mark.parametrize("name", NAMES)
def test_download_real_installs_verifies_and_writes_the_manifest(name, tmp_path, monkeypatch):
    fake = fakes.build(name, tmp_path / "src")
    archives, net = _serve(monkeypatch, fake, tmp_path)
    root = tmp_path / "root"
    spec = real.REAL_DATASETS[name]
    if not spec.auto_download:  # the user places the official files by hand
        for fname, path in archives.items():
            fakes._copy(root / name / fname, path)
    m = real.download_real(name, root)
    assert m == json.loads((root / name / real.MANIFEST).read_text())
    assert m["num_samples"][spec.eval_split] == fake.counts[spec.eval_split]
    assert set(m["archives"]) == set(archives)
    assert all(a["md5"] == fakes.md5(archives[f]) for f, a in m["archives"].items())
    assert len(net.calls) == (len(archives) if spec.auto_download else 0)
    ds = real.open_real(name, root, transform=eval_transform(32))
    assert len(ds) == fake.counts[spec.eval_split]
    assert fakes.decode(ds[len(ds) - 1][0]) == ds[len(ds) - 1][1]
    assert not (root / f".{name}.staging").exists() and not (root / real.CACHE_DIR).exists()
    # present and verified: no second download, same manifest
    assert real.download_real(name, root) == m and len(net.calls) == (len(archives) if spec.auto_download else 0)


def test_corrupt_archive_is_rejected_and_a_rerun_succeeds(tmp_path, monkeypatch):
    fake = fakes.build("cifar10", tmp_path / "src")
    archives, net = _serve(monkeypatch, fake, tmp_path, corrupt=1)
    root = tmp_path / "root"
    with pytest.raises(DataError) as e:
        real.download_real("cifar10", root)
    assert "cifar-10-python.tar.gz" in str(e.value) and "md5" in str(e.value)
    assert not (root / "cifar10" / real.MANIFEST).exists()
    assert not (root / "cifar10").exists() and not (root / real.CACHE_DIR).exists()  # nothing accepted
    with pytest.raises(DataError):
        real.open_real("cifar10", root)
    m = real.download_real("cifar10", root)
    assert len(net.calls) == 2 and m["num_samples"] == {"test": 20}
    assert (root / "cifar10" / real.MANIFEST).is_file()


def test_archive_without_checksum_is_checked_by_extraction_and_content(tmp_path, monkeypatch):
    fake = fakes.build("fgvc_aircraft", tmp_path / "src")
    archives, net = _serve(monkeypatch, fake, tmp_path, corrupt=1, keep_checksum=False)
    assert real.DOWNLOADS["fgvc_aircraft"][0].md5 is None  # as if no checksum were published
    root = tmp_path / "root"
    with pytest.raises(DataError, match="fgvc-aircraft-2013b.tar.gz"):
        real.download_real("fgvc_aircraft", root)
    assert not (root / "fgvc_aircraft" / real.MANIFEST).exists()
    assert not (root / "fgvc_aircraft" / "fgvc-aircraft-2013b").exists()
    assert not (root / real.CACHE_DIR / "fgvc_aircraft" / "fgvc-aircraft-2013b.tar.gz").exists()
    m = real.download_real("fgvc_aircraft", root)
    record = m["archives"]["fgvc-aircraft-2013b.tar.gz"]
    assert record["md5"] == fakes.md5(archives["fgvc-aircraft-2013b.tar.gz"]) and len(record["sha256"]) == 64
    assert record["checked_against"].startswith("none published")
    assert "fgvc-aircraft-2013b/data/images_variant_test.txt" in m["files"]


def test_incomplete_archive_is_not_accepted(tmp_path, monkeypatch):
    fake = fakes.build("tinyimagenet", tmp_path / "src")
    for p in list((fake.dir / "tiny-imagenet-200" / "val" / "images").iterdir())[:3]:
        p.unlink()  # the archive will lack 3 val images listed in val_annotations.txt
    _serve(monkeypatch, fake, tmp_path)
    root = tmp_path / "root"
    with pytest.raises(DataError, match=r"3 of the 200 images of split 'val' listed in .*val_annotations.txt are missing"):
        real.download_real("tinyimagenet", root)
    assert not (root / "tinyimagenet" / real.MANIFEST).exists()
    assert not (root / "tinyimagenet" / "tiny-imagenet-200").exists()
    assert not (root / ".tinyimagenet.staging").exists()


def test_present_data_that_fail_verification_are_replaced(tmp_path, monkeypatch):
    fake = fakes.build("eurosat", tmp_path / "src")
    archives, net = _serve(monkeypatch, fake, tmp_path)
    root = tmp_path / "root"
    real.download_real("eurosat", root)
    victim = next((root / "eurosat" / "eurosat" / "2750" / "Forest").iterdir())
    victim.unlink()
    with pytest.raises(DataError):
        real.verify_real("eurosat", root)
    m = real.download_real("eurosat", root)
    assert len(net.calls) == 2 and victim.is_file() and m["num_samples"] == {"all": 20}


def test_interrupted_download_leftovers_are_discarded(tmp_path, monkeypatch):
    fake = fakes.build("pcam", tmp_path / "src")
    archives, net = _serve(monkeypatch, fake, tmp_path)
    root = tmp_path / "root"
    cache = root / real.CACHE_DIR / "pcam"
    cache.mkdir(parents=True)
    (cache / "camelyonpatch_level_2_split_test_x.h5.gz.part").write_bytes(b"half")
    (cache / "camelyonpatch_level_2_split_test_y.h5.gz").write_bytes(b"corrupt earlier download")
    (root / ".pcam.staging" / "pcam").mkdir(parents=True)
    m = real.download_real("pcam", root)
    assert m["num_samples"] == {"test": 6} and len(net.calls) == 2
    assert not (root / ".pcam.staging").exists() and not cache.exists()


def test_manual_sets_without_files_explain_what_to_do(tmp_path):
    for name, needle in (("stanford_cars", "car_devkit.tgz"), ("imagenet", "ILSVRC2012_img_val.tar"),
                         ("sun397", "SUN397.tar.gz")):
        with pytest.raises(DataError, match=needle):
            real.download_real(name, tmp_path)
        assert not (tmp_path / name / real.MANIFEST).exists()


def test_hand_placed_archive_with_wrong_checksum_is_named(tmp_path, monkeypatch):
    fake = fakes.build("sun397", tmp_path / "src")
    archives, _ = _serve(monkeypatch, fake, tmp_path)
    root = tmp_path / "root"
    placed = fakes._copy(root / "sun397" / "SUN397.tar.gz", archives["SUN397.tar.gz"])
    placed.write_bytes(placed.read_bytes()[:-10])
    with pytest.raises(DataError, match=r"SUN397.tar.gz does not match the official"):
        real.download_real("sun397", root)
    assert not (root / "sun397" / real.MANIFEST).exists()


def test_hand_extracted_manual_set_is_adopted(built, monkeypatch, tmp_path):
    fake = fakes.build("stanford_cars", tmp_path)
    fakes.expect(monkeypatch, fake)
    m = real.download_real("stanford_cars", tmp_path)
    assert m["num_samples"] == {"test": 196} and (fake.dir / real.MANIFEST).is_file()


def test_google_drive_fallback_needs_gdown(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "gdown", None)  # makes `import gdown` fail
    with pytest.raises(DataError, match="gdown"):
        _ORIGINAL_FETCH("gdrive:abc", tmp_path / "x")


class _Response(io.BytesIO):
    """What torchvision's download_url reads from urlopen: a context manager with url and length."""

    def __init__(self, body: bytes, url: str):
        super().__init__(body)
        self.url, self.length, self.headers = url, len(body), {"Content-Length": str(len(body))}


def test_fetch_downloads_through_torchvision_with_its_user_agent(tmp_path, monkeypatch):
    from torchvision.datasets.utils import USER_AGENT

    seen = []

    def urlopen(req, *args, **kwargs):
        import socket

        seen.append((req.full_url, req.get_header("User-agent")))
        assert socket.getdefaulttimeout() == real_archives.TIMEOUT_S  # a stalled server cannot hang the run
        return _Response(b"payload" * 100, req.full_url)

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    _ORIGINAL_FETCH("https://example.org/a.tar.gz", tmp_path / "a.tar.gz.part")
    assert (tmp_path / "a.tar.gz.part").read_bytes() == b"payload" * 100
    assert seen and all(url == "https://example.org/a.tar.gz" and ua == USER_AGENT for url, ua in seen)
    import socket

    assert socket.getdefaulttimeout() is None  # restored
