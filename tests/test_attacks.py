import numpy as np
import pytest
import torch
from art.attacks.evasion import ProjectedGradientDescentPyTorch
from art.estimators.classification import PyTorchClassifier
from pyautoattack import AutoAttack
from pyautoattack.autopgd_base import APGDAttack

from ucat import attacks
from ucat.errors import ConfigError

pytestmark = pytest.mark.numerics   # outcomes of attacks on a trained model


def accuracy(model, x, y):
    with torch.no_grad():
        return (model(x).argmax(-1) == y).float().mean().item()


def test_pgd_stays_in_ball_and_box(trained_classifier):
    model, x, y = trained_classifier
    for loss in ("ce", "cw"):
        adv = attacks.pgd(model, x[:32], y[:32], 8, 2, 5, loss=loss, generator=torch.Generator().manual_seed(0))
        assert (adv - x[:32]).abs().max() <= 8 / 255 + 1e-6
        assert adv.min() >= 0 and adv.max() <= 1


class _CWMarginOneHot(torch.nn.Module):
    """The CW margin written independently for ART, which hands custom losses one-hot labels."""

    def forward(self, logits, onehot):
        onehot = onehot.float()
        correct = (logits * onehot).sum(-1)
        other = (logits - 1e9 * onehot).amax(-1)
        return -torch.relu(correct - other + 50.0).sum()


@pytest.mark.parametrize("loss", ["ce", "cw"])
def test_pgd_matches_art_step_for_step(trained_classifier, loss):
    """Independent reference: IBM ART's PGD (no random start) with CE or an independent CW margin."""
    model, x, y = trained_classifier
    x, y = x[:24], y[:24]
    ref_loss = torch.nn.CrossEntropyLoss() if loss == "ce" else _CWMarginOneHot()
    clf = PyTorchClassifier(model=model, loss=ref_loss, input_shape=tuple(x.shape[1:]), nb_classes=6,
                            clip_values=(0.0, 1.0), device_type="cpu")
    for steps in (1, 2, 5):
        ours = attacks.pgd(model, x, y, 4, 1, steps, loss=loss, random_start=False)
        art = ProjectedGradientDescentPyTorch(clf, norm=np.inf, eps=4 / 255, eps_step=1 / 255, max_iter=steps,
                                              num_random_init=0, batch_size=len(x), verbose=False)
        ref = torch.from_numpy(art.generate(x.numpy(), y.numpy()))
        assert (ours - x).abs().max() > (min(steps, 4) - 0.5) / 255  # it really moved
        torch.testing.assert_close(ours, ref, rtol=0, atol=1e-6)


def test_pgd_100_lowers_accuracy_of_trained_model(trained_classifier):
    model, x, y = trained_classifier
    clean = accuracy(model, x, y)
    assert clean > 0.5  # the fixture really learnt the task (chance is 1/6)
    adv = attacks.pgd(model, x, y, 8, 1, 100, generator=torch.Generator().manual_seed(0))
    assert accuracy(model, adv, y) < clean - 0.3


def test_cw_margin_loss():
    logits = torch.tensor([[5.0, 1.0, 3.0], [0.0, 4.0, 1.0]])
    y = torch.tensor([0, 0])
    torch.testing.assert_close(attacks.cw_margin_loss(logits, y, 0.0), torch.tensor([-2.0, 0.0]))
    torch.testing.assert_close(attacks.cw_margin_loss(logits, y, 50.0), torch.tensor([-52.0, -46.0]))


def test_autoattack_is_worst_case_and_in_ball(trained_classifier):
    model, x, y = trained_classifier
    x, y = x[:48], y[:48]
    adv = attacks.autoattack(model, x, y, 8, 10, num_classes=6)
    assert (adv - x).abs().max() <= 8 / 255 + 1e-6
    assert accuracy(model, adv, y) < accuracy(model, x, y)
    # per-sample worst case: never better than the reference APGD-CE alone
    ce_only = APGDAttack(model, n_iter=10, norm="Linf", n_restarts=1, eps=8 / 255, seed=0, loss="ce",
                         device="cpu").perturb(x, y)
    assert accuracy(model, adv, y) <= accuracy(model, ce_only, y) + 1e-9


def test_autoattack_matches_reference_autoattack(trained_classifier):
    """Reference: fra31's AutoAttack called as the official UCAT code calls it (standard version,
    attacks_to_run = APGD-CE + APGD-DLR, 100 iterations) with the same seed: identical images."""
    model, x, y = trained_classifier
    x, y = x[:16], y[:16]
    ours = attacks.autoattack(model, x, y, 8, 100, num_classes=6, seed=3)
    ref = AutoAttack(attacks._FloatLogits(model), eps=8 / 255, seed=3, version="standard", device="cpu")
    ref.attacks_to_run = ["apgd-ce", "apgd-dlr"]
    ref.verbose = False
    ref_adv, _ = ref.run_standard_evaluation(x, y, batch_size=len(x))
    assert accuracy(model, ours, y) < accuracy(model, x, y) - 0.2  # the attack did something
    torch.testing.assert_close(ours, ref_adv, rtol=0, atol=1e-6)


def test_autoattack_leaves_the_global_rng_alone(trained_classifier):
    model, x, y = trained_classifier
    torch.manual_seed(123)
    state = torch.get_rng_state()
    attacks.autoattack(model, x[:8], y[:8], 8, 3, num_classes=6, seed=0)
    assert torch.equal(torch.get_rng_state(), state)


def test_autoattack_two_classes_uses_ce_only(trained_classifier):
    """Two classes: the result is exactly APGD-CE's, kept only where it fools the model, and the
    robust samples come back unchanged: DLR (which needs three classes) never ran."""
    model, x, y = trained_classifier

    two = torch.nn.Sequential()
    two.forward = lambda z: model(z)[:, :2]
    mask = y < 2
    x2, y2 = x[mask], y[mask]
    # the reference: APGD-CE alone on the clean-correct samples, kept where it fools
    with torch.no_grad():
        idx = (two(x2).argmax(-1) == y2).nonzero().squeeze(1)
    with torch.random.fork_rng():
        x_ce = APGDAttack(two, n_iter=5, norm="Linf", n_restarts=1, eps=4 / 255, seed=0, loss="ce", rho=0.75,
                          device="cpu").perturb(x2[idx], y2[idx])
    with torch.no_grad():
        fooled = two(x_ce).argmax(-1) != y2[idx]
    expected = x2.clone()
    expected[idx[fooled]] = x_ce[fooled]
    assert 0 < int(fooled.sum()) < len(idx)   # CE fools some, not all: both branches are exercised
    adv = attacks.autoattack(two, x2, y2, 4, 5, num_classes=2)
    torch.testing.assert_close(adv, expected, rtol=0, atol=0)


def test_fare_attack_increases_embedding_distance(trained_classifier):
    model, x, _ = trained_classifier
    x = x[:16]
    with torch.no_grad():
        ref = model.embed(x)
    adv = attacks.fare_attack(model, x, ref, 4, 1, 5, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        dist = (model.embed(adv) - ref).pow(2).sum(-1).mean()
        rand = (model.embed((x + (torch.rand_like(x) * 2 - 1) * 4 / 255).clamp(0, 1)) - ref).pow(2).sum(-1).mean()
    assert dist > 2 * rand


def test_attacks_compute_no_weight_gradients(trained_classifier):
    model, x, y = trained_classifier
    model.requires_grad_(True)
    for p in model.parameters():
        p.grad = None
    try:
        attacks.pgd(model, x[:8], y[:8], 4, 1, 2)
        assert all(p.grad is None for p in model.parameters())
    finally:
        model.requires_grad_(False)


def test_negative_budget_is_rejected(trained_classifier):
    model, x, y = trained_classifier
    with pytest.raises(ConfigError, match="non-negative"):
        attacks.pgd(model, x[:2], y[:2], -1, 1, 2)
