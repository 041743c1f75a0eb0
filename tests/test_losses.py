import math

import pytest
import torch
from torch.distributions import Dirichlet, kl_divergence

from ucat import losses


def test_dirichlet_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(16, 7, generator=g, dtype=torch.float64) * 5 + 0.1
    b = torch.rand(16, 7, generator=g, dtype=torch.float64) * 5 + 0.1
    ours = losses.dirichlet_kl(a, b)
    ref = kl_divergence(Dirichlet(a), Dirichlet(b))
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-10)
    assert torch.all(losses.dirichlet_kl(a, a).abs() < 1e-10)


def test_dirichlet_kl_monte_carlo():
    a = torch.tensor([2.0, 3.0, 0.7], dtype=torch.float64)
    b = torch.tensor([1.0, 1.5, 2.5], dtype=torch.float64)
    torch.manual_seed(0)
    x = Dirichlet(a).sample((400_000,))
    mc = (Dirichlet(a).log_prob(x) - Dirichlet(b).log_prob(x)).mean()
    assert abs(losses.dirichlet_kl(a[None], b[None]).item() - mc.item()) < 0.01


def test_dirichlet_kl_stable_for_huge_concentrations():
    # tau' = 0.07 gives alpha ~ exp(28) ~ 1e12: float32 would return noise, float64 stays exact
    logits = torch.tensor([[30.0, 10.0, -5.0]])
    a = losses.dirichlet_concentration(logits, 100.0, 0.07)
    assert torch.isfinite(losses.dirichlet_kl(a, a)).all()
    assert losses.dirichlet_kl(a, a).abs().item() < 1e-3
    b = losses.dirichlet_concentration(logits + torch.tensor([[0.0, 1.0, 0.0]]), 100.0, 0.07)
    assert losses.dirichlet_kl(a, b).item() > 0


def test_concentration_preserves_argmax_and_matches_softmax_at_clip_temperature():
    g = torch.Generator().manual_seed(0)
    scale = 14.0
    logits = (torch.rand(32, 10, generator=g) * 2 - 1) * scale
    for tau_prime in (0.07, 0.5, 1 / scale, 3.0):
        alpha = losses.dirichlet_concentration(logits, scale, tau_prime)
        assert torch.equal(alpha.argmax(-1), logits.argmax(-1))
        assert torch.all(alpha >= 1.0)  # cos in [-1, 1] => exp(...) >= 1
    alpha = losses.dirichlet_concentration(logits, scale, 1 / scale)
    mean = alpha / alpha.sum(-1, keepdim=True)
    torch.testing.assert_close(mean.float(), torch.softmax(logits, -1), rtol=1e-5, atol=1e-6)


def test_ucat_lambda_is_official_value():
    lam = losses.ucat_lambda(1e5, 0.07)
    assert lam == pytest.approx(1e5 / math.exp(math.log1p(math.exp(2 / 0.07))), rel=1e-12)


def test_ucat_loss_is_ce_plus_weighted_reverse_kl():
    g = torch.Generator().manual_seed(1)
    adv = torch.randn(8, 5, generator=g) * 3
    ref = torch.randn(8, 5, generator=g) * 3
    y = torch.randint(5, (8,), generator=g)
    out = losses.ucat_loss(adv, ref, y, 10.0, 0.5, 2.0)
    a_adv = torch.exp((adv.double() / 10 + 1) / 0.5) + 1e-6
    a_ref = torch.exp((ref.double() / 10 + 1) / 0.5) + 1e-6
    kl = kl_divergence(Dirichlet(a_adv), Dirichlet(a_ref)).mean()
    expect = torch.nn.functional.cross_entropy(adv, y) + losses.ucat_lambda(2.0, 0.5) * kl
    assert out["loss"].item() == pytest.approx(expect.item(), rel=1e-5)
    fwd = losses.ucat_loss(adv, ref, y, 10.0, 0.5, 2.0, forward=True)
    kl_f = kl_divergence(Dirichlet(a_ref), Dirichlet(a_adv)).mean()
    assert fwd["align"].item() == pytest.approx(kl_f.item(), rel=1e-5)


def test_prob_kl_matches_kldivloss():
    g = torch.Generator().manual_seed(2)
    p_logits, q_logits = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g)
    ref = torch.nn.KLDivLoss(reduction="batchmean")(torch.log_softmax(q_logits, -1), torch.softmax(p_logits, -1))
    assert losses.prob_kl(p_logits, q_logits).item() == pytest.approx(ref.item(), rel=1e-5)


@pytest.mark.parametrize("tau_prime", [0.015, 0.01, 0.005])
def test_ucat_loss_finite_at_small_tau_prime(tau_prime):
    # alpha ~ exp(2/tau') > float32 max and lambda < float32 tiny: formed in float64 first
    g = torch.Generator().manual_seed(3)
    adv = (torch.rand(4, 5, generator=g) * 2 - 1) * 30
    ref = (torch.rand(4, 5, generator=g) * 2 - 1) * 30
    y = torch.randint(5, (4,), generator=g)
    adv.requires_grad_()
    out = losses.ucat_loss(adv, ref, y, 30.0, tau_prime, 1e5)
    assert torch.isfinite(out["loss"]) and out["loss"].dtype == torch.float32
    a_adv = torch.exp((adv.detach().double() / 30 + 1) / tau_prime) + 1e-6
    a_ref = torch.exp((ref.double() / 30 + 1) / tau_prime) + 1e-6
    kl = kl_divergence(Dirichlet(a_adv), Dirichlet(a_ref)).mean()
    assert not torch.isfinite(kl.float())  # the float32 KL overflows: the old path gave nan
    log_lam = math.log(1e5) - (2 / tau_prime + math.log1p(math.exp(-2 / tau_prime)))
    expect = torch.nn.functional.cross_entropy(adv.detach(), y).double() + math.exp(log_lam + math.log(kl.item()))
    assert out["loss"].item() == pytest.approx(expect.item(), rel=1e-4)
    out["loss"].backward()
    assert torch.isfinite(adv.grad).all()


def test_ucat_lambda_unrepresentable_is_config_error():
    from ucat.errors import ConfigError

    with pytest.raises(ConfigError, match="ucat.tau_prime"):
        losses.ucat_lambda(1e5, 0.002)
    with pytest.raises(ConfigError, match="ucat.tau_prime"):
        losses.ucat_lambda(1e5, 0.0005)
    assert losses.ucat_lambda(0.0, 0.002) == 0.0
    assert losses.ucat_lambda(1e5, 0.003) > 0
