"""Verification sees every file, says the cause first, and recognises misplaced unpacks.

Fakes in the real on-disk formats come from tests/data/fakes.py; the damage (a missing or
empty image, stray ``.DS_Store`` files, a copy unpacked a folder too shallow or too deep, a
traversal member in an archive) is done here.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import shutil
import tarfile
import zipfile
from pathlib import Path

import pytest

from ucat.data import real
from ucat.data.real import archives as real_archives
from ucat.data.transforms import eval_transform
from ucat.errors import DataError

from . import fakes

#: the sets that read a list of image files (the issue's six, TinyImageNet, and Caltech101 whose
#: list is torchvision's numbering 1..n of each category folder)
LISTED = ["dtd", "food101", "oxford_pets", "flowers102", "fgvc_aircraft", "stanford_cars", "tinyimagenet",
          "caltech101"]


class Recorder:
    """Stands in for the network: records every URL and fails like a machine without network."""

    def __init__(self):
        self.calls = []

    def __call__(self, url, dest):
        self.calls.append(url)
        raise OSError("<urlopen error [Errno -3] Temporary failure in name resolution>")


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    net = Recorder()
    monkeypatch.setattr(real_archives, "fetch", net)
    return net


def _fake(name, tmp_path, monkeypatch):
    fake = fakes.build(name, tmp_path / "data")
    fakes.expect(monkeypatch, fake)
    return fake


def _listed(fake) -> list[Path]:
    return [Path(p) for p in real.open_real(fake.name, fake.root)._paths]


# ----------------------------------------------------------------------------- every listed file

@pytest.mark.parametrize("name", LISTED)
@pytest.mark.parametrize("damage", ["missing", "empty"])
def test_a_missing_or_empty_image_fails_verification_before_any_manifest(name, damage, tmp_path, monkeypatch,
                                                                         offline):
    fake = _fake(name, tmp_path, monkeypatch)
    paths = _listed(fake)
    # in a numbered folder (Caltech) a gap must sit below the count: take the first of a pair
    victim = next((p for p, q in zip(paths, paths[1:]) if p.parent == q.parent), paths[-1])
    content = victim.read_bytes()
    victim.unlink() if damage == "missing" else victim.write_bytes(b"")
    expected = rf"{name}: 1 of the \d+ images of split '\w+' listed in .* are {damage} \(first: {victim}\)"
    with pytest.raises(DataError, match=expected):
        real.verify_real(name, fake.root)
    with pytest.raises(DataError, match=expected):  # evaluation fails at open, not at sample N
        real.open_real(name, fake.root)
    with pytest.raises(DataError) as e:
        real.download_real(name, fake.root)
    assert str(e.value).startswith(f"{name}: 1 of the ")  # the cause first, not the download failure
    assert not (fake.dir / real.MANIFEST).exists()
    assert bool(offline.calls) == real.REAL_DATASETS[name].auto_download  # it tried a fresh copy if it could
    tried = len(offline.calls)
    victim.write_bytes(content)  # restored: accepted without any network, no stale manifest in the way
    m = real.download_real(name, fake.root)
    assert (fake.dir / real.MANIFEST).is_file() and m == real.verify_real(name, fake.root)
    assert len(offline.calls) == tried


def test_stray_files_do_not_change_the_fingerprint(tmp_path, monkeypatch):
    for name in ("dtd", "caltech101", "caltech256", "eurosat", "food101"):
        fake = _fake(name, tmp_path / name, monkeypatch)
        m = real.download_real(name, fake.root)
        n = 0
        for dirpath, _, _ in os.walk(fake.dir):  # what a macOS copy leaves everywhere
            (Path(dirpath) / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
            n += 1
        for p in _listed(fake)[:2]:
            (p.parent / f"._{p.name}").write_bytes(b"AppleDouble")
        assert n > 3
        assert real.verify_real(name, fake.root) == m, name
        ds = real.open_real(name, fake.root)
        assert [fakes.decode(eval_transform(16)(ds[i][0])) for i in (0, len(ds) - 1)] == [ds.labels[0], ds.labels[-1]]


def test_caltech_index_equals_torchvisions_on_a_clean_copy(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    for name, cls, sub, pattern in (("caltech101", tvd.Caltech101, "101_ObjectCategories", "image_{i:04d}.jpg"),
                                    ("caltech256", tvd.Caltech256, "256_ObjectCategories", "{y:03d}_{i:04d}.jpg")):
        fake = _fake(name, tmp_path, monkeypatch)
        ours = real.open_real(name, fake.root)
        tv = cls(str(fake.dir), download=False)
        folder = fake.dir / name / sub
        theirs = [str(folder / tv.categories[y] / pattern.format(y=y + 1, i=i)) for y, i in zip(tv.y, tv.index)]
        assert ours._paths == theirs and ours.labels == [int(y) for y in tv.y], name


def test_manifest_mismatch_says_what_changed(tmp_path, monkeypatch):
    fake = _fake("eurosat", tmp_path, monkeypatch)
    real.download_real("eurosat", fake.root)
    img = _listed(fake)[0]
    img.write_bytes(img.read_bytes() + b"\0" * 10)  # same files, other sizes
    with pytest.raises(DataError, match=r"changed since .*MANIFEST.json.*the same 20 files but \d+ bytes now, "
                                        r"\d+ recorded"):
        real.verify_real("eurosat", fake.root)
    img.write_bytes(img.read_bytes()[:-10])
    real.verify_real("eurosat", fake.root)
    fakes._jpeg(img.parent / "extra.jpg", 0)  # one more image (and a registry that expects it)
    monkeypatch.setitem(real.REAL_DATASETS, "eurosat",
                        dataclasses.replace(real.REAL_DATASETS["eurosat"], num_eval_samples=21))
    with pytest.raises(DataError, match=r"21 image files listed now, 20 recorded"):
        real.verify_real("eurosat", fake.root)


def test_a_manifest_of_the_previous_format_is_rewritten_not_compared(tmp_path, monkeypatch):
    fake = _fake("dtd", tmp_path, monkeypatch)
    old = {"manifest_format": 1, "num_samples": {"test": 47},
           "trees": {"dtd/dtd/images": {"files": 1, "bytes": 1, "sha256": "0" * 64}}}
    (fake.dir / real.MANIFEST).write_text(json.dumps(old))
    m = real.download_real("dtd", fake.root)
    assert m["manifest_format"] == real.MANIFEST_FORMAT and "trees" not in m
    assert json.loads((fake.dir / real.MANIFEST).read_text()) == m


# ----------------------------------------------------------------------------- the cause first

def test_offline_hand_placed_copy_reports_the_verification_failure_first(tmp_path, monkeypatch, offline):
    fake = _fake("food101", tmp_path, monkeypatch)
    victim = _listed(fake)[3]
    victim.unlink()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError) as e:
        real.download_real("food101", "data")  # a relative data.root, as in params.yaml
    msg = str(e.value)
    assert offline.calls  # it did try a fresh copy
    first = msg.split(". ")[0]
    assert first.startswith("food101: 1 of the 101 images") and "missing" in first and "could not download" not in first
    assert msg.index("images of split") < msg.index("could not download")
    assert str(victim.resolve()) in msg and str((tmp_path / "data" / "food101").resolve()) in msg
    assert "<root>" not in msg and "\n" not in msg


def test_messages_name_resolved_paths_not_placeholders(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for call in (lambda: real.open_real("sun397", "data"), lambda: real.download_real("stanford_cars", "data")):
        with pytest.raises(DataError) as e:
            call()
        assert "<root>" not in str(e.value) and str(tmp_path / "data") in str(e.value)


# ----------------------------------------------------------------------------- misplaced unpacks

#: sets whose anchor lies in a folder of the set (ImageNet and COCO are anchored at the set's folder itself)
IN_A_FOLDER = sorted(n for n in real.REGISTRY if real.REGISTRY[n].adapter.anchor[0])


def _move(src: Path, dst: Path) -> None:
    tmp = src.parent.parent / f".move-{src.name}"
    shutil.move(str(src), str(tmp))
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():  # dst is a folder that held src: move the contents in
        for entry in tmp.iterdir():
            shutil.move(str(entry), str(dst / entry.name))
        tmp.rmdir()
    else:
        shutil.move(str(tmp), str(dst))


def _anchor(name, d):
    container, marker = real.REGISTRY[name].adapter.anchor
    parts = Path(container).parts
    return parts, d.joinpath(*parts), marker


def _follow(msg: str, found: Path, expected: Path) -> None:
    assert f"Move the folder {found} " in msg and f"so that it becomes {expected}," in msg, msg
    _move(found, expected)


@pytest.mark.parametrize("name", IN_A_FOLDER)
def test_one_folder_too_shallow_is_recognised_and_the_move_fixes_it(name, tmp_path, monkeypatch, offline):
    fake = _fake(name, tmp_path, monkeypatch)
    d = fake.dir.resolve()
    parts, expected, marker = _anchor(name, d)
    shallow = d.joinpath(*parts[1:])
    _move(expected, shallow)  # unpacked without the archive's top folder
    for call in (real.verify_real, real.open_real, real.download_real):
        with pytest.raises(DataError, match=f"{name}: the data set is unpacked 1 folder too shallow") as e:
            call(name, fake.root)
    assert offline.calls == []  # nothing is downloaded for a copy that only needs moving
    _follow(str(e.value), shallow, expected)
    assert real.download_real(name, fake.root)["num_samples"]


@pytest.mark.parametrize("name", sorted(real.REGISTRY))
def test_one_folder_too_deep_is_recognised_and_the_move_fixes_it(name, tmp_path, monkeypatch):
    fake = _fake(name, tmp_path, monkeypatch)
    d = fake.dir.resolve()
    parts, expected, marker = _anchor(name, d)
    extra = d / "unpacked-here"
    extra.mkdir()
    for entry in list(d.iterdir()):
        if entry != extra:
            shutil.move(str(entry), str(extra / entry.name))
    deep = extra.joinpath(*parts)
    with pytest.raises(DataError, match=f"{name}: the data set is unpacked 1 folder too deep") as e:
        real.verify_real(name, fake.root)
    if name == "imagenet":  # the anchor is the set's folder itself: move what it holds
        assert f"Move the folder {deep} " in str(e.value)
        for entry in list(extra.iterdir()):
            shutil.move(str(entry), str(d / entry.name))
    else:
        _follow(str(e.value), deep, expected)
    real.verify_real(name, fake.root)


def test_dtd_unpacked_into_its_folder_or_into_data_root(tmp_path, monkeypatch):
    """The issue's two cases: dtd-r1.0.1.tar.gz (top folder dtd/) unpacked into <root>/dtd/ or <root>."""
    fake = _fake("dtd", tmp_path, monkeypatch)
    archive = fakes.pack(fake, tmp_path / "archives")["dtd-r1.0.1.tar.gz"]
    root = fake.root.resolve()
    shutil.rmtree(fake.dir)
    (root / "dtd").mkdir()
    with tarfile.open(archive) as t:
        t.extractall(root / "dtd", filter="data")  # -> <root>/dtd/dtd/{images,labels}
    with pytest.raises(DataError, match=rf"1 folder too shallow: {root}/dtd/dtd/labels exists but "
                                        rf"{root}/dtd/dtd/dtd/labels does not") as e:
        real.download_real("dtd", root)
    _follow(str(e.value), root / "dtd" / "dtd", root / "dtd" / "dtd" / "dtd")
    real.verify_real("dtd", root)

    shutil.rmtree(root / "dtd")
    with tarfile.open(archive) as t:
        t.extractall(root, filter="data")  # -> <root>/dtd/{images,labels}
    with pytest.raises(DataError, match="2 folders too shallow") as e:
        real.open_real("dtd", root)
    _follow(str(e.value), root / "dtd", root / "dtd" / "dtd" / "dtd")
    assert len(real.open_real("dtd", root)) == 47


def test_cifar_unpacked_into_data_root(tmp_path, monkeypatch, offline):
    fake = _fake("cifar10", tmp_path, monkeypatch)
    root = fake.root.resolve()
    shutil.move(str(fake.dir / "cifar-10-batches-py"), str(root / "cifar-10-batches-py"))
    shutil.rmtree(fake.dir)
    with pytest.raises(DataError, match="1 folder too shallow") as e:
        real.download_real("cifar10", root)
    assert offline.calls == []
    _follow(str(e.value), root / "cifar-10-batches-py", root / "cifar10" / "cifar-10-batches-py")
    assert real.download_real("cifar10", root)["num_samples"] == {"test": 20}


# ----------------------------------------------------------------------------- known checksums

def test_fgvc_aircraft_archive_is_checked_against_its_published_md5(tmp_path, monkeypatch):
    fake = fakes.build("fgvc_aircraft", tmp_path / "src")
    archive = fakes.pack(fake, tmp_path / "archives")["fgvc-aircraft-2013b.tar.gz"]
    root = tmp_path / "root"
    fakes._copy(root / "fgvc_aircraft" / archive.name, archive)
    with pytest.raises(DataError, match=r"fgvc-aircraft-2013b.tar.gz does not match the official "
                                        r"fgvc-aircraft-2013b.tar.gz \(md5 [0-9a-f]{32}, expected "
                                        r"d4acdd33327262359767eeaa97a4f732\)"):
        real.download_real("fgvc_aircraft", root)
    assert not (root / "fgvc_aircraft" / real.MANIFEST).exists()


@pytest.mark.parametrize("split, file", [("test", "test_batch"), ("test", "batches.meta"),
                                         ("train", "data_batch_3")])
@pytest.mark.parametrize("known_md5", [True, False])
def test_a_broken_cifar_batch_is_named_by_file(split, file, known_md5, tmp_path, monkeypatch):
    fake = _fake("cifar10", tmp_path, monkeypatch)
    if not known_md5:
        monkeypatch.setitem(real.KNOWN_FILE_MD5, "cifar10", {})
    path = (fake.dir / "cifar-10-batches-py" / file).resolve()
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    what = r"is corrupt or truncated \(md5 [0-9a-f]{32}, expected" if known_md5 else r"\(UnpicklingError|cannot read"
    with pytest.raises(DataError, match=rf"cifar10: (cannot read )?{path} ?{what}") as e:
        real.open_real("cifar10", fake.root, split=split)
    assert str(path) in str(e.value)


def _tar_with(out: Path, members: list[tuple[tarfile.TarInfo, bytes]]) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(out, "w:gz") as t:
        for info, data in members:
            t.addfile(info, io.BytesIO(data) if data else None)
    return out


def _file(name: str, data: bytes = b"x") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _link(name: str, target: str) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    return info, b""


@pytest.mark.parametrize("member", ["../escaped.txt", "/tmp/ucat-absolute-escape.txt", "link"])
def test_traversal_member_in_a_tar_is_reported_as_such(member, tmp_path, monkeypatch):
    fake = fakes.build("cifar10", tmp_path / "src")
    good = fakes.pack(fake, tmp_path / "archives")["cifar-10-python.tar.gz"]
    with tarfile.open(good) as t:
        members = [(m, t.extractfile(m).read() if m.isfile() else b"") for m in t.getmembers()]
    bad = [_link("cifar-10-batches-py/link", "../../../outside")] if member == "link" else [_file(member)]
    archive = _tar_with(tmp_path / "bad" / "cifar-10-python.tar.gz", members + bad)
    fakes.expect_archives(monkeypatch, "cifar10", {"cifar-10-python.tar.gz": archive})
    root = tmp_path / "root"
    fakes._copy(root / "cifar10" / archive.name, archive)
    with pytest.raises(DataError, match=r"unsafe member .*\(path traversal") as e:
        real.download_real("cifar10", root)
    assert "corrupt or truncated" not in str(e.value)
    assert not (tmp_path / "root" / "escaped.txt").exists() and not Path("/tmp/ucat-absolute-escape.txt").exists()
    assert not (root / "cifar10" / real.MANIFEST).exists() and not (root / ".cifar10.staging").exists()


def test_traversal_member_in_a_zip_is_reported_as_such(tmp_path, monkeypatch):
    archive = tmp_path / "EuroSAT.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("2750/Forest/Forest_1.jpg", b"x")
        z.writestr("../../escaped.txt", b"x")
    fakes.expect_archives(monkeypatch, "eurosat", {"EuroSAT.zip": archive})
    fakes._copy(tmp_path / "root" / "eurosat" / "EuroSAT.zip", archive)
    with pytest.raises(DataError, match=r"unsafe member '../../escaped.txt' \(path traversal"):
        real.download_real("eurosat", tmp_path / "root")
    assert not (tmp_path / "escaped.txt").exists()


def test_a_truncated_tar_is_still_reported_as_corrupt(tmp_path, monkeypatch):
    fake = fakes.build("dtd", tmp_path / "src")
    archive = fakes.pack(fake, tmp_path / "archives")["dtd-r1.0.1.tar.gz"]
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    fakes.expect_archives(monkeypatch, "dtd", {"dtd-r1.0.1.tar.gz": archive})
    fakes._copy(tmp_path / "root" / "dtd" / archive.name, archive)
    with pytest.raises(DataError, match=r"cannot extract .*dtd-r1.0.1.tar.gz .*corrupt or truncated"):
        real.download_real("dtd", tmp_path / "root")
