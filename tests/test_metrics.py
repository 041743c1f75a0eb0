import math

import numpy as np
import pytest
import torch
from torch.distributions import Categorical, Dirichlet
from torchmetrics.functional.classification import multiclass_calibration_error

from ucat import metrics


def test_ece_equals_torchmetrics():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2000, 10, generator=g) * 3
    labels = torch.randint(10, (2000,), generator=g)
    probs = torch.softmax(logits, -1)
    conf, pred = probs.max(-1)
    ours = metrics.expected_calibration_error(conf.numpy(), (pred == labels).numpy(), 15)
    ref = multiclass_calibration_error(probs, labels, num_classes=10, n_bins=15, norm="l1").item()
    assert ours == pytest.approx(ref, abs=1e-6)


def test_perfectly_calibrated_predictor_scores_near_zero():
    rng = np.random.default_rng(0)
    conf = rng.uniform(0.2, 1.0, 200_000)
    correct = rng.uniform(size=conf.shape) < conf
    assert metrics.expected_calibration_error(conf, correct, 15) < 0.005
    assert metrics.expected_calibration_error(conf, np.zeros_like(correct), 15) > 0.5  # can fail


def test_aleatoric_is_expected_entropy_monte_carlo():
    alpha = torch.tensor([[2.0, 0.5, 4.0, 1.0], [20.0, 20.0, 1.0, 3.0]], dtype=torch.float64)
    torch.manual_seed(0)
    p = Dirichlet(alpha).sample((200_000,))
    mc = Categorical(probs=p.clamp_min(1e-300)).entropy().mean(0)
    torch.testing.assert_close(metrics.aleatoric_uncertainty(alpha), mc, atol=3e-3, rtol=0)


def test_epistemic_closed_form_and_conventions():
    alpha = torch.tensor([[1.0, 1.0, 1.0], [100.0, 1.0, 1.0]], dtype=torch.float64)
    eu = metrics.epistemic_uncertainty(alpha)
    torch.testing.assert_close(eu, torch.tensor([3 / 6, 3 / 105], dtype=torch.float64))
    logits = torch.tensor([[5.0, 1.0, 0.0]])
    y = torch.tensor([0])
    paper = metrics.per_sample(logits, y, 10.0, "paper", "clip")
    code = metrics.per_sample(logits, y, 10.0, "code")
    p = torch.softmax(logits, -1)
    ent = -(p * p.log()).sum().item()
    assert paper["entropy"][0] == pytest.approx(ent, rel=1e-5)
    assert code["entropy"][0] == pytest.approx(ent / math.log(3), rel=1e-5)
    alpha_code = torch.exp(torch.nn.functional.softplus(logits.double())) + 1e-6
    assert code["epistemic"][0] == pytest.approx(3 / torch.logsumexp(alpha_code + 1, -1).item() / math.log(3), rel=1e-6)


def test_per_sample_nll_brier_confidence():
    logits = torch.tensor([[2.0, 0.0], [0.0, 3.0]])
    y = torch.tensor([0, 0])
    s = metrics.per_sample(logits, y, 10.0)
    p = torch.softmax(logits, -1)
    np.testing.assert_allclose(s["nll"], -torch.log(p[[0, 1], [0, 0]]).numpy(), rtol=1e-6)
    np.testing.assert_allclose(s["brier"], ((p - torch.eye(2)[[0, 0]]) ** 2).sum(-1).numpy(), rtol=1e-6)
    np.testing.assert_array_equal(s["pred"], [0, 1])
    summary = metrics.summarize(s, 15)
    assert summary["accuracy"] == 0.5 and summary["n"] == 2
    assert sum(summary["reliability"]["bin_count"]) == 2


def test_harmonic_mean():
    assert metrics.harmonic_mean(54.17, 30.58) == pytest.approx(39.09, abs=0.01)  # the paper's UCAT H
    assert metrics.harmonic_mean(0, 0) == 0


def test_ece_bins_are_right_closed_and_differ_from_torchmetrics_only_on_edges():
    # two bins (0, .5] and (.5, 1]: confidence exactly .5 belongs to the first bin here,
    # to the second in torchmetrics ([lo, hi) bins)
    probs = torch.tensor([[0.5, 0.3, 0.2], [0.5, 0.3, 0.2], [0.9, 0.05, 0.05], [0.9, 0.05, 0.05]])
    labels = torch.tensor([0, 0, 1, 1])  # the two .5 rows right, the two .9 rows wrong
    conf, pred = probs.max(-1)
    correct = (pred == labels).numpy()
    ours = metrics.expected_calibration_error(conf.numpy(), correct, 2)
    # by hand: bin 1 = {.5, .5}: |1 - .5| = .5; bin 2 = {.9, .9}: |0 - .9| = .9 -> (.5 + .9) / 2
    assert ours == pytest.approx(0.7, abs=1e-7)
    ref = multiclass_calibration_error(probs, labels, num_classes=3, n_bins=2, norm="l1").item()
    # torchmetrics: all four in [.5, 1): |.5 - .7| = .2
    assert ref == pytest.approx(0.2, abs=1e-6)
    # off the edges the two agree
    shifted = probs.clone()
    shifted[:2, 0] = 0.49
    ours_off = metrics.expected_calibration_error(shifted.max(-1).values.numpy(), correct, 2)
    ref_off = multiclass_calibration_error(shifted, labels, num_classes=3, n_bins=2, norm="l1").item()
    assert ours_off == pytest.approx(ref_off, abs=1e-6)
