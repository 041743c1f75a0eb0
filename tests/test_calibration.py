"""Temperature scaling against a closed form and a grid, adaptive ECE against a loop, the
held-out split, and the evaluation's stored sample ids and logits."""

import math

import numpy as np
import pytest
import torch
from torchmetrics.functional.classification import multiclass_calibration_error

from ucat import calibration as C
from ucat import data, evaluate, models
from ucat.data.heldout import heldout_dataset
from ucat.errors import ConfigError


def test_temperature_matches_the_closed_form():
    # every sample: logit c on the predicted class, 0 elsewhere; a fraction q is right.
    # NLL is minimised where the predicted class gets probability q: beta = ln(q (C-1)/(1-q)) / c
    n_cls, c, n, q = 5, 4.0, 200, 0.7
    z = np.zeros((n, n_cls))
    z[:, 0] = c
    labels = np.where(np.arange(n) < q * n, 0, 1 + np.arange(n) % (n_cls - 1))
    expected = c / math.log(q * (n_cls - 1) / (1 - q))
    assert C.fit_temperature(z, labels) == pytest.approx(expected, rel=1e-6)


def test_temperature_is_the_grid_minimum_of_the_nll():
    g = torch.Generator().manual_seed(0)
    z = 8 * torch.randn(400, 10, generator=g)
    y = torch.where(torch.rand(400, generator=g) < 0.6, z.argmax(-1), torch.randint(0, 10, (400,), generator=g))
    t = C.fit_temperature(z.numpy(), y.numpy())
    grid = np.exp(np.linspace(np.log(0.05), np.log(50), 4001))
    losses = [C.nll(z.numpy(), y.numpy(), s) for s in grid]
    best = grid[int(np.argmin(losses))]
    assert t == pytest.approx(best, rel=2e-3)
    assert C.nll(z.numpy(), y.numpy(), t) <= min(losses) + 1e-12
    after, before = C.scores(z.numpy(), y.numpy(), t), C.scores(z.numpy(), y.numpy(), 1.0)
    assert after["nll"] < before["nll"]


def test_scores_agree_with_torchmetrics_and_a_loop():
    g = torch.Generator().manual_seed(1)
    z = 3 * torch.randn(300, 6, generator=g)
    y = torch.randint(0, 6, (300,), generator=g)
    got = C.scores(z.numpy(), y.numpy(), 2.0, n_bins=15)
    p = torch.softmax(z.double() / 2.0, -1)
    ref = multiclass_calibration_error(p, y, num_classes=6, n_bins=15, norm="l1")
    assert got["ece"] == pytest.approx(float(ref), abs=1e-6)
    assert got["brier"] == pytest.approx(float(((p - torch.nn.functional.one_hot(y, 6)) ** 2).sum(-1).mean()))
    # adaptive ECE: 300 samples, 15 bins of exactly 20 consecutive sorted confidences
    conf, pred = p.max(-1)
    order = torch.argsort(conf)
    total = 0.0
    for b in range(15):
        idx = order[20 * b: 20 * (b + 1)]
        total += 20 * abs((pred[idx] == y[idx]).double().mean() - conf[idx].mean())
    assert got["ece_adaptive"] == pytest.approx(float(total / 300), abs=1e-12)


def test_heldout_split_is_seeded_sized_and_disjoint_from_training(tmp_params):
    p = tmp_params
    a, names = heldout_dataset(p, 32, n=50)
    b, _ = heldout_dataset(p, 32, n=50)
    assert len(a) == 50 and names == data.classnames("demo_train")
    assert torch.equal(torch.stack([a[i][0] for i in range(50)]), torch.stack([b[i][0] for i in range(50)]))
    data.prepare("demo_train", p)
    train, _ = data.open_finetune(p, 32)
    train_imgs = {train[i][0].numpy().tobytes() for i in range(len(train))}
    assert not any(a[i][0].numpy().tobytes() in train_imgs for i in range(50))
    p["data"]["finetune"] = "cifar10"
    with pytest.raises(ConfigError, match="no held-out split"):
        heldout_dataset(p, 32)


def test_stored_sample_ids_index_the_evaluation_split(tmp_params, tiny_checkpoint):
    p = tmp_params
    p["data"]["subsample"] = 9
    data.prepare("demo_shapes", p)
    _, z = evaluate.evaluate(p, tiny_checkpoint, "demo_shapes", "clean", 0, torch.device("cpu"), progress=False)
    full, names = data.open_eval("demo_shapes", {**p, "data": {**p["data"], "subsample": None}}, 32)
    ids = z["sample_id"]
    assert len(ids) == 9 and len(set(ids.tolist())) == 9 and ids.max() < len(full)
    clip, arch, _ = models.load_checkpoint(tiny_checkpoint)
    model = models.ZeroShotClassifier.from_clip(clip, arch, names, p["prompt"]["templates"])
    with torch.no_grad():
        logits = model(torch.stack([full[i][0] for i in ids]))
    assert np.allclose(z["logits"], logits.numpy(), atol=1e-4)
    assert np.array_equal(z["label"], [full[i][1] for i in ids])
