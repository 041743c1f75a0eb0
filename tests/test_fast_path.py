"""The fast-path options give the same results as the plain path (CPU-checkable parts)."""

import copy

import numpy as np
import pytest
import torch

from ucat import data, evaluate


def test_auto_batch_size_on_cpu_and_explicit_values(tiny_clip):
    from ucat import models

    clip, arch = tiny_clip
    clf = models.ZeroShotClassifier.from_clip(clip, arch, ["a", "b"], ["{}"])
    cpu = torch.device("cpu")
    assert evaluate.choose_batch_size(clf, "auto", cpu, None, 10_000) == 256
    assert evaluate.choose_batch_size(clf, "auto", cpu, None, 24) == 24
    assert evaluate.choose_batch_size(clf, 7, cpu, None, 10_000) == 7


@pytest.mark.numerics
def test_batch_size_does_not_change_clean_results(tmp_params, tiny_checkpoint):
    data.prepare("demo_shapes", tmp_params)
    out = []
    for bs in (5, "auto"):
        p = copy.deepcopy(tmp_params)
        p["evaluate"]["batch_size"] = bs
        summary, samples = evaluate.evaluate(p, tiny_checkpoint, "demo_shapes", "clean", 0, torch.device("cpu"),
                                             progress=False)
        out.append(samples)
    np.testing.assert_array_equal(out[0]["pred"], out[1]["pred"])
    np.testing.assert_allclose(out[0]["confidence"], out[1]["confidence"], rtol=1e-5)


@pytest.mark.slow
def test_compiled_image_tower_matches_eager(tmp_params, tiny_checkpoint):
    data.prepare("demo_shapes", tmp_params)
    res = {}
    for flag in (False, True):
        p = copy.deepcopy(tmp_params)
        p["run"]["compile"] = flag
        _, res[flag] = evaluate.evaluate(p, tiny_checkpoint, "demo_shapes", "pgd", 8, torch.device("cpu"), progress=False)
    assert (res[False]["pred"] == res[True]["pred"]).mean() >= 0.95
    np.testing.assert_allclose(res[False]["confidence"], res[True]["confidence"], atol=1e-3)


@pytest.mark.slow
def test_compiled_fine_tuning_writes_a_loadable_checkpoint(tmp_params, tiny_checkpoint, tmp_path):
    from ucat import models, train

    data.prepare("demo_train", tmp_params)
    p = copy.deepcopy(tmp_params)
    p["run"]["compile"] = True
    out = tmp_path / "ft"
    train.finetune(p, "ucat", tiny_checkpoint, out / "model.pt", out / "ck", out / "live", torch.device("cpu"),
                   progress=False)
    model, _, meta = models.load_checkpoint(out / "model.pt")  # strict load: no _orig_mod. keys
    assert meta["steps"] == 3
