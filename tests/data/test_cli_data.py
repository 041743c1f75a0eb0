"""`ucat data` as a user meets it: the help lists the sets, errors are one line, cause first."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ucat import cli
from ucat.data import dataset_names
from ucat.data.real import archives as real_archives

from . import fakes

REPO = Path(__file__).resolve().parents[2]


def test_data_help_lists_every_set_and_points_to_the_docs(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["data", "--help"])
    assert e.value.code == 0
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert "docs/datasets.md" in out
    names = dataset_names()
    assert len(names) >= 16 + 1 and all(f" {n}," in out or f" {n}." in out for n in names)


def test_misplaced_set_is_one_line_naming_the_move(tmp_path, capsys, monkeypatch):
    calls = []
    monkeypatch.setattr(real_archives, "fetch", lambda url, dest: calls.append(url))
    fake = fakes.build("cifar10", tmp_path / "data")
    shutil.move(str(fake.dir / "cifar-10-batches-py"), str(tmp_path / "data" / "cifar-10-batches-py"))
    shutil.rmtree(fake.dir)
    rc = cli.main(["data", "cifar10", "--params", str(REPO / "params.yaml"),
                   "--set", f"data.root={tmp_path / 'data'}"])
    err = capsys.readouterr().err
    assert rc == 2 and calls == []
    assert err.count("\n") == 1 and err.startswith("error: cifar10: the data set is unpacked 1 folder too shallow")
    assert f"Move the folder {(tmp_path / 'data' / 'cifar-10-batches-py').resolve()} " in err


def test_google_drive_refusal_is_named(tmp_path, monkeypatch):
    import sys
    import types

    from ucat.errors import DataError

    gdown = types.ModuleType("gdown")
    gdown.download = lambda **kwargs: None  # what gdown does on a quota page: returns None, saves nothing
    monkeypatch.setitem(sys.modules, "gdown", gdown)
    with pytest.raises(DataError, match="gdrive:abc: Google Drive refused the download"):
        real_archives.fetch("gdrive:abc", tmp_path / "x.part")
    assert not (tmp_path / "x.part").exists()
