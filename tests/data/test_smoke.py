"""``data.source: smoke``: replicas say what they are, and real-data checks stay strict."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from ucat import data
from ucat.data import real, replica, smoke
from ucat.errors import DataError


@pytest.fixture()
def smoke_params(params, tmp_path):
    p = copy.deepcopy(params)
    p["data"].update(root=str(tmp_path / "smoke"), source="smoke", subsample=None)
    return p


def test_replica_has_the_real_class_count_and_a_manifest_that_says_smoke(smoke_params):
    for name in ("imagenet", "sun397", "pcam", "cifar10"):
        manifest = data.prepare(name, smoke_params)
        assert manifest["smoke"] is True and "NOT the real data" in manifest["source"]
        ds, names = data.open_eval(name, smoke_params, 16)
        assert len(names) == real.REAL_DATASETS[name].num_classes == {"imagenet": 1000, "sun397": 397,
                                                                      "pcam": 2, "cifar10": 10}[name]
        assert len(ds) == manifest["num_samples"][real.REAL_DATASETS[name].eval_split]
        image, label = ds[len(ds) - 1]
        assert image.shape == (3, 16, 16) and replica.decode(image) == label  # label survives the real loader


def test_prepare_twice_keeps_the_replica(smoke_params, tmp_path):
    first = data.prepare("dtd", smoke_params)
    stamp = (tmp_path / "smoke" / "dtd" / "MANIFEST.json").stat().st_mtime_ns
    assert data.prepare("dtd", smoke_params) == first
    assert (tmp_path / "smoke" / "dtd" / "MANIFEST.json").stat().st_mtime_ns == stamp


def test_a_changed_replica_file_is_refused_then_rebuilt(smoke_params, tmp_path):
    data.prepare("stl10", smoke_params)
    (tmp_path / "smoke" / "stl10" / ".snakemake_timestamp").write_text("")  # the engine's stamp is not data
    data.open_eval("stl10", smoke_params, 16)
    label_file = tmp_path / "smoke" / "stl10" / "stl10_binary" / "test_y.bin"
    label_file.write_bytes(bytes([1]) * label_file.stat().st_size)  # every label rewritten to class 0
    with pytest.raises(DataError, match="changed since"):
        data.open_eval("stl10", smoke_params, 16)
    data.prepare("stl10", smoke_params)
    ds, _ = data.open_eval("stl10", smoke_params, 16)
    assert {ds[i][1] for i in range(len(ds))} == set(range(10))


def test_real_source_refuses_a_replica_and_smoke_refuses_real_data(smoke_params):
    data.prepare("cifar100", smoke_params)
    as_real = copy.deepcopy(smoke_params)
    as_real["data"]["source"] = "real"
    with pytest.raises(DataError, match="smoke replica"):
        data.open_eval("cifar100", as_real, 16)
    with pytest.raises(DataError, match="smoke replica"):
        data.prepare("cifar100", as_real)
    # a folder that is not a replica (e.g. hand-placed real data) is never overwritten by the smoke source
    other = replica.build("eurosat", smoke_params["data"]["root"])
    with pytest.raises(DataError, match="not a smoke replica"):
        data.prepare("eurosat", smoke_params)
    assert not (other.dir / "MANIFEST.json").exists()
    with pytest.raises(DataError, match="no smoke replica"):
        data.open_eval("eurosat", smoke_params, 16)


def test_real_verification_still_rejects_a_replica_and_a_wrong_checksum(smoke_params, tmp_path):
    """The replicas match no published checksum or size; real verification says so, unchanged."""
    root = tmp_path / "smoke"
    data.prepare("cifar10", smoke_params)
    with pytest.raises(DataError, match="md5"):
        real.verify_real("cifar10", root)          # torchvision's official md5 of the batch files
    with pytest.raises(DataError, match="md5"):
        real.open_real("cifar10", root)            # and the loader itself, outside the smoke source
    # a hand-placed archive with the wrong checksum is rejected by the real downloader
    rep = replica.build("food101", tmp_path / "src")
    archives = replica.pack(rep, tmp_path / "archives")
    placed = tmp_path / "real" / "food101"
    placed.mkdir(parents=True)
    (placed / "food-101.tar.gz").write_bytes(archives["food-101.tar.gz"].read_bytes())
    with pytest.raises(DataError, match="does not match the official food-101.tar.gz"):
        real.download_real("food101", tmp_path / "real")
    assert not (placed / "MANIFEST.json").exists()


def test_smoke_checksum_substitution_is_scoped(smoke_params):
    before = copy.deepcopy(real.KNOWN_FILE_MD5)
    data.prepare("flowers102", smoke_params)
    data.open_eval("flowers102", smoke_params, 16)
    assert real.KNOWN_FILE_MD5 == before
    manifest = smoke.read_manifest(Path(smoke_params["data"]["root"]) / "flowers102")
    assert set(manifest["replica_md5"]) == set(real.KNOWN_FILE_MD5["flowers102"])


def test_a_changed_replica_stops_a_run_whose_cells_are_all_cached(smoke_params, tmp_path, tiny_checkpoint,
                                                                   monkeypatch):
    """Data are verified on every run, cache hit or not: a deleted image or a stray file stops the job."""
    import torch

    from ucat import evaluate

    monkeypatch.setenv("UCAT_CACHE", str(tmp_path / "cache"))
    p = copy.deepcopy(smoke_params)
    p["evaluate"].update(attacks=["pgd"], eps=[4])
    data.prepare("dtd", p)

    def run():
        return evaluate.evaluate_dataset(p, tiny_checkpoint, "dtd", torch.device("cpu"), method="clip", progress=False,
                                         out_paths=lambda a, e: (tmp_path / f"{a}{e}.json", tmp_path / f"{a}{e}.npz"))

    run()
    assert all(c["restored"] for c in run().values())
    d = tmp_path / "smoke" / "dtd"
    image = sorted(d.rglob("*.jpg"))[0]
    content = image.read_bytes()
    image.unlink()
    with pytest.raises(DataError, match="changed since"):
        run()
    image.write_bytes(content)
    assert all(c["restored"] for c in run().values())
    (image.parent / "stray.jpg").write_bytes(content)
    with pytest.raises(DataError, match="changed since"):
        run()
