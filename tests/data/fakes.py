"""Tiny fake copies of the real data sets for the loader tests: a re-export of
``ucat.data.replica`` (the generator the smoke run uses too) plus test-only helpers.

``expect(monkeypatch, fake)`` makes the registry expect the fake's sizes and checksums;
``expect_archives`` makes ``DOWNLOADS`` expect the checksums of ``pack``'s archives;
``FakeNetwork`` stands in for the downloader's network access.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ucat.data import real
from ucat.data.replica import BUILDERS, Replica, _copy, _jpeg, build, colour, decode, md5, pack  # noqa: F401

Fake = Replica
assert set(BUILDERS) == set(real.REAL_DATASETS)


def expect(monkeypatch, fake: Fake) -> None:
    """Make ucat's registry expect the fake's sizes and file checksums instead of the real ones."""
    spec = real.REAL_DATASETS[fake.name]
    monkeypatch.setitem(real.REAL_DATASETS, fake.name,
                        dataclasses.replace(spec, num_eval_samples=fake.counts[spec.eval_split]))
    if fake.name in real.EXTRA_SPLIT_COUNTS:
        monkeypatch.setitem(real.EXTRA_SPLIT_COUNTS, fake.name,
                            {s: fake.counts[s] for s in real.EXTRA_SPLIT_COUNTS[fake.name]})
    if fake.name in real.KNOWN_FILE_MD5:
        monkeypatch.setitem(real.KNOWN_FILE_MD5, fake.name, dict(fake.file_md5))


def expect_archives(monkeypatch, name: str, archives: dict[str, Path], keep_checksum: bool = True) -> None:
    """Make DOWNLOADS[name] expect the fake archives (md5 where the real entry has a checksum)."""
    resources = []
    for res in real.DOWNLOADS[name]:
        assert res.filename in archives, (name, res.filename, sorted(archives))
        has = res.md5 is not None or res.sha256 is not None
        resources.append(dataclasses.replace(res, md5=md5(archives[res.filename]) if has and keep_checksum else None,
                                             sha256=None, size=None))
    monkeypatch.setitem(real.DOWNLOADS, name, resources)
    if name == "imagenet":
        import torchvision.datasets.imagenet as tvi

        for key in ("devkit", "val"):
            fname = tvi.ARCHIVE_META[key][0]
            monkeypatch.setitem(tvi.ARCHIVE_META, key, (fname, md5(archives[fname])))


class FakeNetwork:
    """Stands in for ``real._fetch``: serves files by URL basename; can corrupt the first N fetches."""

    def __init__(self, archives: dict[str, Path], corrupt: int = 0, mode: str = "truncate"):
        self.archives, self.corrupt, self.mode, self.calls = archives, corrupt, mode, []

    def __call__(self, url: str, dest: Path) -> None:
        self.calls.append(url)
        basename = url.split("?")[0].rsplit("/", 1)[-1]   # exact first: val2017.zip ends annotations_trainval2017.zip
        match = [f for f in self.archives if basename == f] or [f for f in self.archives if url.endswith(f)]
        if not match:
            raise OSError(f"fake network: no route to {url}")
        data = self.archives[match[0]].read_bytes()
        if self.corrupt > 0:
            self.corrupt -= 1
            data = data[: len(data) // 2] if self.mode == "truncate" else bytes(b ^ 0xFF for b in data[:64]) + data[64:]
        Path(dest).write_bytes(data)
