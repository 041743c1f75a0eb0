"""MS-COCO 2017 (multi-label): the registry record, the replica in the real on-disk format, the
pycocotools loader against the annotation file read here with plain ``json``, verification and
its one-line messages, the (mocked) download, and the smoke source."""

from __future__ import annotations

import copy
import dataclasses
import json
import pickle

import pytest
import torch
from torch.utils.data import DataLoader

from ucat import data
from ucat.data import real, replica
from ucat.data.real import archives as real_archives
from ucat.data.transforms import eval_transform
from ucat.errors import DataError

from . import fakes

COCO = "coco2017"


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a test tried to use the network")

    monkeypatch.setattr(real_archives, "fetch", refuse)


@pytest.fixture
def fake(tmp_path, monkeypatch):
    rep = fakes.build(COCO, tmp_path / "data")
    fakes.expect(monkeypatch, rep)
    return rep


def _annotations(rep) -> dict:
    return json.loads((rep.dir / "annotations" / "instances_val2017.json").read_text())


def _expected_label_sets(coco: dict) -> list[tuple[int, ...]]:
    """Independent reading: per image in file order, the sorted indices (by category id) of its categories."""
    index = {cid: i for i, cid in enumerate(sorted(c["id"] for c in coco["categories"]))}
    per_image = {img["id"]: set() for img in coco["images"]}
    for a in coco["annotations"]:
        per_image[a["image_id"]].add(index[a["category_id"]])
    return [tuple(sorted(per_image[img["id"]])) for img in coco["images"]]


# ----------------------------------------------------------------------------- registry

def test_record_has_the_official_files_and_the_published_checksums():
    rec = real.REGISTRY[COCO]
    s = rec.spec
    assert (s.num_classes, s.eval_split, s.num_eval_samples, s.multilabel, s.auto_download) == (80, "val", 5000,
                                                                                                True, True)
    files = {r.filename: r for r in rec.resources}
    # TFDS, tensorflow_datasets/url_checksums/coco2017.txt
    assert files["val2017.zip"].urls == ("http://images.cocodataset.org/zips/val2017.zip",)
    assert (files["val2017.zip"].size, files["val2017.zip"].sha256) == (
        815585330, "4f7e2ccb2866ec5041993c9cf2a952bbed69647b115d0f74da7ce8f4bef82f05")
    ann = files["annotations_trainval2017.zip"]
    assert ann.urls == ("http://images.cocodataset.org/annotations/annotations_trainval2017.zip",)
    assert (ann.size, ann.sha256) == (252907541, "113a836d90195ee1f884e704da6304dfaaecff1f023f49b6ca93c4aaae470268")
    assert real.splits(COCO) == ("val",) and data.is_multilabel(COCO) and not data.is_multilabel("cifar10")
    assert not data.is_multilabel("demo_shapes")


def test_class_names_are_the_80_categories_in_id_order():
    names, ids = real.classnames(COCO), real.REGISTRY[COCO].adapter.CATEGORY_IDS
    assert real.class_ids(COCO) == names and len(set(names)) == 80 == len(ids)
    assert ids == tuple(sorted(ids)) and ids[0] == 1 and ids[-1] == 90
    assert set(range(1, 91)) - set(ids) == {12, 26, 29, 30, 45, 66, 68, 69, 71, 83}
    by_id = dict(zip(ids, names))   # spot checks against the annotation file's categories
    assert (by_id[1], by_id[13], by_id[64], by_id[67], by_id[72], by_id[89], by_id[90]) == (
        "person", "stop sign", "potted plant", "dining table", "tv", "hair drier", "toothbrush")


def test_official_prompts_are_the_generic_template():
    from ucat import prompts

    out = prompts.official_prompts(COCO)
    assert len(out) == 80 and out[0] == "This is a photo of a person" and out[-1] == "This is a photo of a toothbrush"


# ----------------------------------------------------------------------------- reading the replica

def test_open_real_yields_multi_hot_targets_in_the_annotation_files_order(fake):
    coco = _annotations(fake)
    expected = _expected_label_sets(coco)
    ds = real.open_real(COCO, fake.root, transform=eval_transform(32))
    assert len(ds) == len(coco["images"]) == fake.counts["val"] and ds.labels == expected
    ids_in_file = [img["id"] for img in coco["images"]]
    assert ids_in_file != sorted(ids_in_file)   # order is the file's (getImgIds), not the ids'
    for i, classes in enumerate(expected):
        x, y = ds[i]
        assert x.shape == (3, 32, 32) and y.dtype == torch.float32 and y.shape == (80,)
        assert y.nonzero().flatten().tolist() == list(classes)
        assert replica.decode(x) == min(classes, default=999)   # the image filed for this entry
    # crowd and zero-area annotations count; an image without annotations is kept, empty
    assert 1 in expected[0] and 3 in expected[1] and expected[-1] == ()
    batch = next(iter(DataLoader(ds, batch_size=5)))
    assert batch[1].shape == (5, 80)
    pickle.loads(pickle.dumps(ds))


def test_verify_real_accepts_the_replica_and_fingerprints_it(fake):
    m = real.verify_real(COCO, fake.root)
    assert m["num_samples"] == {"val": fake.counts["val"]} and m["num_classes"] == 80
    assert list(m["files"]) == ["annotations/instances_val2017.json"]
    assert m["images"]["val"]["files"] == fake.counts["val"]


# ----------------------------------------------------------------------------- what can be missing or wrong

def _one_line(e) -> str:
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"{COCO}: "), msg
    return msg


def test_missing_annotations_or_image_folder_is_named(fake, tmp_path):
    ann = fake.dir / "annotations" / "instances_val2017.json"
    ann.unlink()
    with pytest.raises(DataError) as e:
        real.open_real(COCO, fake.root)
    assert f"{ann.resolve()} is missing. Run `ucat data coco2017`" in _one_line(e)
    fresh = fakes.build(COCO, tmp_path / "other")
    for p in (fresh.dir / "val2017").iterdir():
        p.unlink()
    (fresh.dir / "val2017").rmdir()
    with pytest.raises(DataError) as e:
        real.open_real(COCO, fresh.root)
    assert f"{fresh.dir.resolve() / 'val2017'} is missing" in _one_line(e)
    assert "val2017.zip" in str(e.value)   # how to get it


def test_missing_or_empty_image_is_counted_and_named(fake):
    victim = sorted((fake.dir / "val2017").iterdir())[3]
    victim.unlink()
    with pytest.raises(DataError) as e:
        real.verify_real(COCO, fake.root)
    assert f"1 of the 41 images of split 'val' listed in" in _one_line(e) and victim.name in str(e.value)


def test_corrupt_annotation_file_is_named(fake):
    ann = fake.dir / "annotations" / "instances_val2017.json"
    ann.write_text(ann.read_text()[:500])
    with pytest.raises(DataError) as e:
        real.open_real(COCO, fake.root)
    assert f"cannot read {ann.resolve()}" in _one_line(e) and "corrupt, truncated" in str(e.value)


def _rewrite(rep, change) -> None:
    ann = rep.dir / "annotations" / "instances_val2017.json"
    coco = json.loads(ann.read_text())
    change(coco)
    ann.write_text(json.dumps(coco))


def test_wrong_categories_are_rejected(fake, tmp_path, monkeypatch):
    _rewrite(fake, lambda c: c["categories"].pop(11))              # 79 categories
    with pytest.raises(DataError) as e:
        real.open_real(COCO, fake.root)
    assert "has 79 categories" in _one_line(e) and "not the 80 of the 2017 instance annotations" in str(e.value)

    renamed = fakes.build(COCO, tmp_path / "renamed")
    _rewrite(renamed, lambda c: c["categories"][0].update(name="human"))
    with pytest.raises(DataError) as e:
        real.open_real(COCO, renamed.root)
    assert "are not the 80 expected ones" in _one_line(e)

    stray = fakes.build(COCO, tmp_path / "stray")
    _rewrite(stray, lambda c: c["annotations"][0].update(category_id=12))   # an id with no category
    with pytest.raises(DataError) as e:
        real.open_real(COCO, stray.root)
    assert "unknown category ids [12]" in _one_line(e)


def test_wrong_counts_and_absent_categories_are_rejected(fake, tmp_path, monkeypatch):
    monkeypatch.setitem(real.REAL_DATASETS, COCO, dataclasses.replace(real.REAL_DATASETS[COCO], num_eval_samples=5000))
    with pytest.raises(DataError) as e:
        real.verify_real(COCO, fake.root)
    assert "has 41 samples" in _one_line(e) and "expected 5000" in str(e.value)
    fakes.expect(monkeypatch, fake)
    # every annotation of category 'toothbrush' (label 79) dropped: the copy is not the published one
    last = real.REGISTRY[COCO].adapter.CATEGORY_IDS[-1]
    _rewrite(fake, lambda c: c.update(annotations=[a for a in c["annotations"] if a["category_id"] != last]))
    assert len(real.open_real(COCO, fake.root)) == 41   # reading alone does not notice
    with pytest.raises(DataError) as e:
        real.verify_real(COCO, fake.root)
    assert "contains 79 of the 80 classes" in _one_line(e)


def test_changed_annotations_after_the_manifest_are_detected(fake):
    (fake.dir / real.MANIFEST).write_text(json.dumps(real.verify_real(COCO, fake.root)))
    _rewrite(fake, lambda c: c["annotations"].reverse())
    with pytest.raises(DataError) as e:
        real.verify_real(COCO, fake.root)
    assert "instances_val2017.json changed since" in _one_line(e)


# ----------------------------------------------------------------------------- download and smoke

def test_download_installs_both_zips_verifies_and_reads(tmp_path, monkeypatch):
    rep = fakes.build(COCO, tmp_path / "src")
    archives = fakes.pack(rep, tmp_path / "archives")
    assert set(archives) == {"val2017.zip", "annotations_trainval2017.zip"}
    fakes.expect(monkeypatch, rep)
    fakes.expect_archives(monkeypatch, COCO, archives)
    net = fakes.FakeNetwork(archives)
    monkeypatch.setattr(real_archives, "fetch", net)
    root = tmp_path / "root"
    m = real.download_real(COCO, root)
    assert sorted(net.calls) == sorted(r.urls[0] for r in real.REGISTRY[COCO].resources)
    assert m == json.loads((root / COCO / real.MANIFEST).read_text()) and m["num_samples"] == {"val": 41}
    ds = real.open_real(COCO, root)
    assert ds.labels == _expected_label_sets(_annotations(rep))
    assert real.download_real(COCO, root) == m and len(net.calls) == 2   # present and verified: no download


def test_a_corrupt_download_is_rejected(tmp_path, monkeypatch):
    rep = fakes.build(COCO, tmp_path / "src")
    archives = fakes.pack(rep, tmp_path / "archives")
    fakes.expect(monkeypatch, rep)
    fakes.expect_archives(monkeypatch, COCO, archives)
    monkeypatch.setattr(real_archives, "fetch", fakes.FakeNetwork(archives, corrupt=1))
    with pytest.raises(DataError) as e:
        real.download_real(COCO, tmp_path / "root")
    assert "val2017.zip" in _one_line(e) and not (tmp_path / "root" / COCO / real.MANIFEST).exists()


def test_smoke_source_writes_and_reads_the_replica(params, tmp_path):
    p = copy.deepcopy(params)
    p["data"].update(root=str(tmp_path / "smoke"), source="smoke", subsample=None)
    manifest = data.prepare(COCO, p)
    assert manifest["smoke"] is True and manifest["num_samples"] == {"val": 41}
    ds, names = data.open_eval(COCO, p, 16)
    assert names == real.classnames(COCO) and len(ds) == 41
    x, y = ds[3]
    assert x.shape == (3, 16, 16) and y.nonzero().flatten().tolist() == [6, 7, 40] and replica.decode(x) == 6
    with pytest.raises(DataError, match="smoke replica"):
        data.open_eval(COCO, dict(p, data=dict(p["data"], source="real")), 16)
