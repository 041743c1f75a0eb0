"""The key rule: every input a cached or resumed computation reads is in its key.

Each stage is run on the tiny demo with its parameters wrapped so that every value read is
recorded, and with an audit hook recording every package file opened; what was read must be
covered by the stage's key (its parameter keys, its code files), so a new input that is not
in the key fails here instead of giving stale results.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest
import torch

from ucat import attacks, cache, codedeps, data, evaluate, fingerprint, keys, methods, models, train

CPU = torch.device("cpu")
# read by the stages without deciding any stored byte: where inputs lie, how fast they load, which
# cells exist (each cell keys its own attack and ε), bookkeeping, and the device request (the
# device actually used is in every key)
NOT_DECIDING = {"data.root", "data.num_workers", "run.device", "evaluate.attacks", "evaluate.eps",
                "finetune.checkpoint_every", "finetune.log_every", "data.finetune"}


class Tracked(dict):
    """A params dict that records the dotted name of every value read (sections read whole count as read)."""

    def __init__(self, d: Mapping, log: set, prefix: str = ""):
        items = dict.items(d) if isinstance(d, dict) else d.items()     # building it is not reading it
        super().__init__({k: Tracked(v, log, f"{prefix}{k}.") if isinstance(v, Mapping) else v for k, v in items})
        self.log, self.prefix = log, prefix

    def _read(self, k, v):
        if not isinstance(v, Tracked):
            self.log.add(f"{self.prefix}{k}")
        return v

    def __getitem__(self, k):
        return self._read(k, super().__getitem__(k))

    def get(self, k, default=None):
        return self._read(k, super().get(k, default)) if k in self else default

    def _whole(self):
        self.log.add(self.prefix.rstrip("."))

    def __iter__(self):
        self._whole()
        return super().__iter__()

    def keys(self):
        self._whole()
        return super().keys()

    def items(self):
        self._whole()
        return super().items()

    def values(self):
        self._whole()
        return super().values()

    def __deepcopy__(self, memo):
        return Tracked(copy.deepcopy(dict(super().items()), memo), self.log, self.prefix)


def _covered(read: set[str], key_list: list[str]) -> set[str]:
    """What was read but is neither in the key (a key covers its sub-keys) nor bookkeeping."""
    return {r for r in read if r not in NOT_DECIDING
            and not any(r == k or r.startswith(f"{k}.") for k in key_list)}


_OPENED: list[str] | None = None


def _audit(event, args):
    if event == "open" and _OPENED is not None and isinstance(args[0], (str, Path)):
        _OPENED.append(str(args[0]))


sys.addaudithook(_audit)


@pytest.fixture()
def opened_package_files():
    """``opened()``: package files opened since the test began (compiled modules named by their source)."""
    global _OPENED
    _OPENED = []

    def opened() -> set[str]:
        found, pkg = set(), codedeps.PACKAGE_DIR
        for raw in _OPENED:
            p = Path(raw).resolve()
            if pkg not in p.parents:
                continue
            if p.parent.name == "__pycache__":
                p = p.parent.parent / f"{p.name.split('.')[0]}.py"
            found.add(f"{codedeps.SRC}/{p.relative_to(pkg).as_posix()}")
        return found

    yield opened
    _OPENED = None


def test_every_package_data_file_is_declared_by_the_module_that_reads_it():
    declared = {p for globs in codedeps.PACKAGE_DATA.values() for g in globs for p in codedeps.PACKAGE_DIR.glob(g)}
    shipped = {p for p in codedeps.PACKAGE_DIR.rglob("*") if p.is_file() and p.suffix not in (".py", ".pyc")
               and "__pycache__" not in p.parts}
    assert shipped - declared == set(), "declare these in codedeps.PACKAGE_DATA"
    assert "src/ucat/data/classnames/cifar10.json" in codedeps.code_deps("ucat.evaluate")


def test_evaluation_reads_nothing_outside_its_cell_key(tmp_params, tiny_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("UCAT_CACHE", str(tmp_path / "cache"))
    p = copy.deepcopy(tmp_params)
    attacked = [a for a in attacks.ATTACKS if a != "clean"]         # every registered attack
    p["evaluate"].update(attacks=attacked, eps=[4])
    data.prepare("demo_shapes", p)
    read: set[str] = set()
    evaluate.evaluate_dataset(Tracked(p, read), tiny_checkpoint, "demo_shapes", CPU, method="clip",
                              out_paths=lambda a, e: (tmp_path / f"{a}{e}.json", tmp_path / f"{a}{e}.npz"),
                              progress=False, use_cache=False)
    union = sorted({k for a in ["clean", *attacked] for k in keys.evaluate_params(a)})
    assert _covered(read, union) == set()
    assert "run.compile" in read and "evaluate.autoattack.steps" in read   # the tracking works


@pytest.mark.parametrize("method", [m for m, s in methods.METHODS.items() if s.finetuned])
def test_fine_tuning_reads_nothing_outside_its_fingerprint(method, tmp_params, tiny_checkpoint, tmp_path):
    data.prepare("demo_train", tmp_params)
    read: set[str] = set()
    train.finetune(Tracked(tmp_params, read), method, tiny_checkpoint, tmp_path / "m.pt", tmp_path / "ck",
                   tmp_path / "live", CPU, progress=False)
    assert _covered(read, keys.finetune_params(method)) == set()
    assert "finetune.lr" in read


def test_fine_tuning_with_selection_on_the_test_sets_keys_them(tmp_params, tiny_checkpoint, tmp_path):
    p = copy.deepcopy(tmp_params)
    p["finetune"]["select"] = "best_on_test"
    for name in ["demo_train", *p["data"]["datasets"]]:
        data.prepare(name, p)
    record = train.fingerprint_record(p, "tecoa", tiny_checkpoint, CPU)
    read: set[str] = set()
    train.finetune(Tracked(p, read), "tecoa", tiny_checkpoint, tmp_path / "m.pt", tmp_path / "ck",
                   tmp_path / "live", CPU, progress=False)
    # selection reads data.subsample on its own copy, where finetune.select_subsample has replaced it
    assert _covered(read, keys.finetune_params("tecoa") + list(record["params"])) == {"data.subsample"}
    assert "data.datasets" in record["params"]
    assert set(record["inputs"]) >= {f"selection:{d}" for d in p["data"]["datasets"]}


def test_the_package_files_a_stage_opens_are_in_its_key(params, tiny_checkpoint, tmp_path, monkeypatch,
                                                         opened_package_files):
    from ucat.data.real import classes

    monkeypatch.setenv("UCAT_CACHE", str(tmp_path / "cache"))
    p = copy.deepcopy(params)
    p["data"].update(root=str(tmp_path / "smoke"), source="smoke")
    p["evaluate"].update(attacks=["pgd"], eps=[4])
    data.prepare("cifar10", p)
    classes.load_names.cache_clear()            # read the class-name files again, under the audit hook
    classes.all_source_ids.cache_clear()
    evaluate.evaluate_dataset(p, tiny_checkpoint, "cifar10", CPU, method="clip", progress=False,
                              out_paths=lambda a, e: (tmp_path / f"{a}{e}.json", tmp_path / f"{a}{e}.npz"))
    opened = opened_package_files()
    assert "src/ucat/data/classnames/cifar10.json" in opened        # the hook sees what is read
    assert opened - set(codedeps.code_deps("ucat.evaluate")) == set()


def test_textcache_key_covers_the_text_code(tiny_clip):
    clip, arch = tiny_clip
    rec_files = set(fingerprint.code_record("ucat.textcache"))
    assert {"src/ucat/models.py", "src/ucat/textcache.py"} <= rec_files


def test_the_cache_lives_in_the_project_root_not_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.delenv("UCAT_CACHE", raising=False)
    (tmp_path / "proj" / "sub" / "deeper").mkdir(parents=True)
    (tmp_path / "proj" / "dvc.yaml").write_text("stages: {}\n")
    monkeypatch.chdir(tmp_path / "proj" / "sub" / "deeper")
    assert cache.root() == (tmp_path / "proj" / ".ucat" / "cache").resolve()
    monkeypatch.setenv("UCAT_CACHE", str(tmp_path / "elsewhere"))
    assert cache.cache_dir("cells") == tmp_path / "elsewhere" / "cells"


def test_differences_name_what_changed():
    a = {"code": {"src/ucat/losses.py": "1", "src/ucat/train.py": "2"}, "params": {"ucat.tau": 1}}
    b = {"code": {"src/ucat/losses.py": "9", "src/ucat/train.py": "2"}, "params": {"ucat.tau": 1}}
    assert fingerprint.differences(a, b) == "code (src/ucat/losses.py)"
    assert fingerprint.differences(None, b) == "no record of what it was made from"


def test_the_cpu_kernel_set_is_in_every_key(monkeypatch):
    """AVX2 and AVX512 kernels round differently (FARE's demo row moves by points): never share their results."""
    base = fingerprint.device_record("cpu")
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2" if base["kernels"] != "AVX2" else "AVX512")
    assert fingerprint.device_record("cpu") != base
