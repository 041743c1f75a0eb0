import pytest
import torch
import torchattacks

from ucat import attacks
from ucat.errors import ConfigError


def accuracy(model, x, y):
    with torch.no_grad():
        return (model(x).argmax(-1) == y).float().mean().item()


def test_pgd_stays_in_ball_and_box(trained_classifier):
    model, x, y = trained_classifier
    for loss in ("ce", "cw"):
        adv = attacks.pgd(model, x[:32], y[:32], 8, 2, 5, loss=loss, generator=torch.Generator().manual_seed(0))
        assert (adv - x[:32]).abs().max() <= 8 / 255 + 1e-6
        assert adv.min() >= 0 and adv.max() <= 1


def test_pgd_matches_torchattacks_step_for_step(trained_classifier):
    model, x, y = trained_classifier
    x, y = x[:24], y[:24]
    for steps in (1, 2, 5):
        ours = attacks.pgd(model, x, y, 4, 1, steps, random_start=False)
        ref = torchattacks.PGD(model, eps=4 / 255, alpha=1 / 255, steps=steps, random_start=False)(x, y)
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
    # per-sample worst case: never better than APGD-CE alone
    ce_only = torchattacks.APGD(model, norm="Linf", eps=8 / 255, steps=10, seed=0, loss="ce")(x, y)
    assert accuracy(model, adv, y) <= accuracy(model, ce_only, y) + 1e-9


def test_autoattack_two_classes_uses_ce_only(trained_classifier):
    model, x, y = trained_classifier
    two = torch.nn.Sequential()
    two.forward = lambda z: model(z)[:, :2]
    mask = y < 2
    adv = attacks.autoattack(two, x[mask], y[mask], 8, 5, num_classes=2)  # DLR would raise on 2 classes
    assert adv.shape == x[mask].shape


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
