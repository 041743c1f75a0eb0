"""Shared fixtures: a tiny CLIP (open_clip architecture) and a tiny demo configuration."""

from __future__ import annotations

import copy
import os
import tempfile

import pytest
import torch

os.environ.setdefault("DVC_NO_ANALYTICS", "1")
# the content-addressed text-feature cache of this test session (subprocesses inherit it), not the checkout's
_CACHE = tempfile.TemporaryDirectory(prefix="ucat-test-cache-")
os.environ.setdefault("UCAT_CACHE", _CACHE.name)
# Thread count decides float reduction order.  The default run uses up to 2 (CI's machine); CI runs the
# tests marked `numerics` again with 1 thread and another CPU kernel set (.ci/run) so that no assertion
# rests on what one configuration's rounding produced.
THREADS = int(os.environ.get("UCAT_TEST_THREADS") or max(1, min(2, os.cpu_count() or 1)))
torch.set_num_threads(THREADS)

TINY_DEMO = {"image_size": 32, "patch_size": 8, "vision_width": 64, "vision_layers": 2, "text_width": 64,
             "text_layers": 1, "embed_dim": 32, "context_length": 12, "steps": 20, "batch_size": 32,
             "lr": 2e-3, "warmup_steps": 5, "weight_decay": 0.1}


@pytest.fixture(scope="session")
def params():
    """The repository's params.yaml, validated, shrunk for unit tests."""
    from ucat import config

    p = config.load(os.path.join(os.path.dirname(__file__), "..", "params.yaml"))
    p["backbone"]["demo"] = dict(TINY_DEMO)
    p["data"].update(demo_train_per_class=4, demo_eval_per_class=4)
    p["finetune"].update(epochs=1, batch_size=16, max_steps_per_epoch=3, warmup_steps=1, checkpoint_every=1)
    p["evaluate"].update(batch_size=16, pgd={"steps": 3, "step_size": 2}, cw={"steps": 3, "step_size": 2, "kappa": 50},
                         autoattack={"steps": 3}, caa={"steps": 3, "step_rule_eps": 4},
                         a3={"steps": 3, "step_size": 2, "restarts": 1, "osd_start": 0.0, "osd_increment": 0.1,
                             "early_stop": True, "random_start": True, "adi": True})
    p["run"]["device"] = "cpu"
    return config.validate(p)


@pytest.fixture()
def tmp_params(params, tmp_path):
    p = copy.deepcopy(params)
    p["data"]["root"] = str(tmp_path / "data")
    return p


@pytest.fixture()
def tiny_checkpoint(tiny_clip, tmp_path):
    """The tiny CLIP saved as a ucat checkpoint (a backbone file)."""
    from ucat import models

    clip, arch = tiny_clip
    path = tmp_path / "m.pt"
    models.save_checkpoint(path, clip, arch)
    return path


@pytest.fixture(scope="session")
def tiny_clip():
    """A randomly initialised tiny CLIP and its architecture record."""
    from ucat import models

    torch.manual_seed(0)
    arch = models.demo_arch(TINY_DEMO)
    return models.create_clip(arch), arch


@pytest.fixture(scope="session")
def trained_classifier():
    """A tiny zero-shot classifier fitted (CE, full batch) to the 96 demo-shapes images it is returned with.

    Attack tests need a model that classifies its inputs decisively, so that an attack has
    something to destroy; generalisation is beside the point.  Fitting the images themselves
    reaches 100 % within 150 steps whatever the platform's rounding, where training on fresh
    renders stalled near 50 % and fell below a 50 % threshold on some machines.
    """
    from ucat import models
    from ucat.data import demo

    torch.manual_seed(0)
    arch = models.demo_arch(TINY_DEMO)
    clip = models.create_clip(arch)
    names = list(demo.DEMO_SETS["demo_shapes"].classnames)
    clf = models.ZeroShotClassifier.from_clip(clip, arch, names, ["This is a photo of a {}"])
    clf.logit_scale = 20.0
    images, labels, _ = demo.make_set("demo_shapes", 16, seed=5)
    x = images.float() / 255
    opt = torch.optim.AdamW(clf.visual.parameters(), lr=3e-3)
    for _ in range(150):
        loss = torch.nn.functional.cross_entropy(clf(x), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    clf.eval().requires_grad_(False)
    return clf, x, labels


@pytest.fixture()
def edit_package(tmp_path, monkeypatch):
    """``edit_package("losses.py", old, new)``: the cache keys now read a copy of the package in which
    that file is edited, as a user's edit of ``src/ucat/<file>`` would be seen (the running code is
    unchanged; a test patches the behaviour separately where it matters)."""
    import shutil

    from ucat import codedeps, fingerprint

    copy_dir = tmp_path / "edited_ucat"
    shutil.copytree(codedeps.PACKAGE_DIR, copy_dir, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(fingerprint, "PACKAGE_DIR", copy_dir)
    fingerprint.code_record.cache_clear()

    def edit(rel: str, old: str, new: str) -> None:
        path = copy_dir / rel
        text = path.read_text()
        assert old in text, f"{rel} no longer contains {old!r}"
        path.write_text(text.replace(old, new, 1))
        fingerprint.code_record.cache_clear()

    yield edit
    fingerprint.code_record.cache_clear()
