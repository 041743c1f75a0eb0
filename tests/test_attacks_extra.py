"""CAA and A³ (ucat.attacks_extra) against references transcribed from the official UCAT loops.

The references below follow the official ``CompositeAttack.caa_linf`` / ``attack_a3`` step by
step: the whole batch forwarded every step, the gradient of the batch-mean CE, stopped samples'
gradients or steps zeroed, every sample re-projected, CAA's per-step (not cumulative) success
check, A³'s clean-loss ranking and best-loss bookkeeping.  The code under test forwards only the
samples still moving and ranks lazily, so agreement checks that those shortcuts change nothing.
Batches of 64 keep the mean's 1/B an exact power of two.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ucat import attacks, attacks_extra
from ucat.errors import ConfigError

N = 64
STEPS = 8
pytestmark = pytest.mark.numerics   # outcomes of attacks on a trained model


class _RowCounter(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model, self.rows = model, 0

    def forward(self, x):
        self.rows += len(x)
        return self.model(x)


def _official_projection(x, x0, lo, hi):
    return torch.clamp(x0 + torch.clamp(x - x0, min=lo, max=hi), min=0.0, max=1.0)


def reference_caa(model, x0, y, eps255, steps, rule255=4.0):
    """composite_attack.py: eps_pool row 5 is (-rule, rule) when the step is set, (-eps, eps) after."""
    pool = torch.tensor([-rule255 / 255, rule255 / 255])
    step = 2.5 * ((pool[1] - pool[0]) / 2) / steps
    bounds = torch.tensor([-eps255 / 255, eps255 / 255])
    adv, frozen_at = x0.clone().requires_grad_(True), torch.full((len(y),), -1)
    for t in range(steps):
        out = model(adv).float()
        attacked = out.argmax(1) != y                       # re-checked each step from "not attacked"
        frozen_at[(frozen_at < 0) & attacked] = t
        grad = torch.autograd.grad(F.cross_entropy(out, y), adv)[0]
        grad[attacked] = 0
        adv = _official_projection(adv + step * torch.sign(grad), x0, bounds[0], bounds[1]).detach().requires_grad_()
    return adv.detach(), frozen_at


def reference_a3(model, x0, y, eps255, step255, steps, restarts, osd_start, osd_inc, early_stop, rand_init,
                 use_adi, gen):
    eps, alpha, b = eps255 / 255, step255 / 255, len(y)
    best_adv, best_loss = x0.clone(), torch.full((b,), -1e9)
    dir_sum = torch.zeros_like(x0)
    with torch.no_grad():
        base_loss = F.cross_entropy(model(x0).float(), y, reduction="none")
    for r in range(restarts):
        k_keep = max(1, min(b, int(b * (1.0 - min(1.0, osd_start + r * osd_inc)))))
        keep_idx = torch.topk(base_loss, k_keep, largest=True).indices
        alive = torch.zeros(b, dtype=torch.bool)
        alive[keep_idx] = True
        # the random start: the same draw as the code under test (the official uses the global RNG)
        delta = (torch.rand(x0.shape, generator=gen) * 2 - 1) * eps if rand_init else torch.zeros_like(x0)
        if use_adi and r > 0:
            delta = torch.clamp(delta + 0.25 * eps * torch.sign(dir_sum), min=-eps, max=eps)
        x = torch.clamp(x0 + delta, 0.0, 1.0)
        for _ in range(steps):
            x = x.detach().requires_grad_(True)
            logits = model(x).float()
            grad = torch.autograd.grad(F.cross_entropy(logits, y), x)[0]
            if early_stop:
                update = alive & (logits.argmax(1) == y)
                alive = update
            else:
                update = alive
            x = _official_projection(x + torch.where(update.view(b, 1, 1, 1), alpha * torch.sign(grad), 0.0),
                                     x0, -eps, eps)
            if early_stop and not alive.any():
                break
        with torch.no_grad():
            logits = model(x).float()
            final_loss = F.cross_entropy(logits, y, reduction="none")
            better = final_loss > best_loss
            best_loss = torch.where(better, final_loss, best_loss)
            best_adv = torch.where(better.view(b, 1, 1, 1), x.detach(), best_adv)
            base_loss[keep_idx] = best_loss[keep_idx]
            succ = logits.argmax(1) != y
            dir_sum = dir_sum + torch.where(succ.view(b, 1, 1, 1), torch.sign(x - x0), 0.0)
    return best_adv


def fooled(model, x, y):
    with torch.no_grad():
        return model(x).argmax(-1) != y


@pytest.fixture(scope="module")
def batch(trained_classifier):
    """N images; the model classifies all of them, so 6 get a wrong label: samples that count as
    fooled at the clean image (the early stop's first branch)."""
    model, x, y = trained_classifier
    y = y[:N].clone()
    y[::N // 6] = (y[::N // 6] + 1) % 6
    return model, x[:N], y


def test_caa_matches_the_official_loop(batch):
    model, x, y = batch
    counted = _RowCounter(model)
    ours = attacks_extra.caa(counted, x, y, 4, STEPS)
    ref, frozen_at = reference_caa(model, x, y, 4, STEPS)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-6)
    assert torch.equal(fooled(model, ours, y), fooled(model, ref, y))
    # every branch ran: fooled at the clean image, stopped mid-way, still moving at the end
    assert (frozen_at == 0).any() and ((frozen_at > 0) & (frozen_at < STEPS - 1)).any() and (frozen_at < 0).any()
    assert fooled(model, ours, y).sum() > fooled(model, x, y).sum() + 3
    # a stopped sample is not forwarded again: the rows forwarded are, step by step, those not yet fooled
    assert counted.rows == sum(int(((frozen_at < 0) | (frozen_at >= t)).sum()) for t in range(STEPS)) < STEPS * N


def test_caa_step_follows_the_official_rule(batch):
    """Official step 2.5 x 4/255 / steps whatever ε: with one step and ε = 8/255 a moving sample's
    pixels move by exactly 10/255 before projection, so by ε wherever the box allows."""
    model, x, y = batch
    still = ~fooled(model, x, y)
    one = attacks_extra.caa(model, x, y, 8, 1)
    moved = (one - x)[still].abs()
    interior = ((x[still] > 8 / 255) & (x[still] < 1 - 8 / 255))
    torch.testing.assert_close(moved[interior], torch.full_like(moved[interior], 8 / 255), rtol=0, atol=1e-6)
    small = attacks_extra.caa(model, x, y, 8, 1, step_rule_eps255=0.4)   # step 1/255
    torch.testing.assert_close((small - x)[still].abs()[interior], torch.full_like(moved[interior], 1 / 255),
                               rtol=0, atol=1e-6)
    assert torch.equal(one[~still], x[~still])   # fooled at the clean image: returned unchanged


@pytest.mark.parametrize("setting", [
    {"restarts": 1, "osd_start": 0.0, "osd_increment": 0.1, "adi": True},      # the official run
    {"restarts": 3, "osd_start": 0.25, "osd_increment": 0.3, "adi": True},     # OSD from the first restart, ADI
])
def test_a3_matches_the_official_loop(batch, setting):
    model, x, y = batch
    kw = dict(restarts=setting["restarts"], osd_start=setting["osd_start"], osd_increment=setting["osd_increment"],
              early_stop=True, random_start=True, adi=setting["adi"])
    ours = attacks_extra.a3(model, x, y, 4, 1, 6, generator=torch.Generator().manual_seed(5), **kw)
    ref = reference_a3(model, x, y, 4, 1, 6, setting["restarts"], setting["osd_start"], setting["osd_increment"],
                       True, True, setting["adi"], torch.Generator().manual_seed(5))
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-6)
    assert torch.equal(fooled(model, ours, y), fooled(model, ref, y))
    assert fooled(model, ours, y).sum() > fooled(model, x, y).sum() + 3


def test_a3_without_early_stop_or_random_start_matches_the_official_loop(batch):
    model, x, y = batch
    for early_stop, random_start in ((False, True), (True, False)):
        ours = attacks_extra.a3(model, x, y, 4, 1, 3, early_stop=early_stop, random_start=random_start,
                                generator=torch.Generator().manual_seed(1))
        ref = reference_a3(model, x, y, 4, 1, 3, 1, 0.0, 0.1, early_stop, random_start, True,
                           torch.Generator().manual_seed(1))
        torch.testing.assert_close(ours, ref, rtol=0, atol=1e-6)
    # without early stop and from a random start it is the project's PGD (same draw)
    pgd = attacks.pgd(model, x, y, 4, 1, 3, generator=torch.Generator().manual_seed(1))
    a3 = attacks_extra.a3(model, x, y, 4, 1, 3, early_stop=False, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(a3, pgd, rtol=0, atol=1e-6)


def test_osd_kept_counts_as_the_official_float_arithmetic():
    # int(B * (1 - drop)) with drop = min(1, start + r * inc) in doubles: 6 * 0.1 = 0.6000000000000001,
    # so restart 6 keeps int(3.9999999999999996) = 3 of 10, not 4 (and restart 8 one, not two)
    assert [attacks_extra.osd_kept(10, r, 0.0, 0.1) for r in range(10)] == [10, 9, 8, 7, 6, 5, 3, 2, 1, 1]
    assert attacks_extra.osd_kept(256, 0, 0.0, 0.1) == 256
    assert attacks_extra.osd_kept(7, 20, 0.0, 0.1) == 1      # never fewer than one sample
    assert attacks_extra.osd_kept(100, 1, 0.25, 0.3) == 44   # 1 - 0.55 = 0.44999999999999996


@pytest.mark.parametrize("name", ["caa", "a3"])
def test_stays_in_the_ball_and_the_box_and_keeps_early_fooled_samples(batch, name):
    model, x, y = batch
    eps = 6
    if name == "caa":
        adv, start = attacks_extra.caa(model, x, y, eps, 4), x
    else:
        adv = attacks_extra.a3(model, x, y, eps, 2, 4, generator=torch.Generator().manual_seed(2))
        g = torch.Generator().manual_seed(2)   # its start
        start = torch.clamp(x + (torch.rand(x.shape, generator=g) * 2 - 1) * eps / 255, 0, 1)
        # several restarts (OSD, ADI): still inside (their best-CE pick may drop an early fool: official)
        more = attacks_extra.a3(model, x, y, eps, 2, 3, restarts=3, osd_start=0.2, generator=torch.Generator().manual_seed(2))
        assert (more - x).abs().max() <= eps / 255 + 1e-6 and more.min() >= 0 and more.max() <= 1
    assert (adv - x).abs().max() <= eps / 255 + 1e-6
    assert adv.min() >= 0 and adv.max() <= 1
    at_start = fooled(model, start, y)
    assert at_start.any() and not at_start.all()
    # never weaker than its start: a sample fooled there stays fooled
    assert fooled(model, adv, y)[at_start].all()


def test_a3_is_at_least_as_strong_as_pgd_with_the_same_budget(batch):
    """Same random start and step: A³'s trajectory is PGD's until a sample is first fooled, where it
    stops, so every sample PGD fools at its last iterate A³ fools too (a statement about trajectories,
    not a threshold); and it lowers accuracy far below clean."""
    model, x, y = batch
    clean_acc = 1 - fooled(model, x, y).float().mean()
    for eps, step, steps in ((4, 1, 8), (8, 2, 6)):
        pgd = attacks.pgd(model, x, y, eps, step, steps, generator=torch.Generator().manual_seed(0))
        a3 = attacks_extra.a3(model, x, y, eps, step, steps, generator=torch.Generator().manual_seed(0))
        by_pgd, by_a3 = fooled(model, pgd, y), fooled(model, a3, y)
        assert by_a3[by_pgd].all(), (eps, step, steps)
        assert by_a3.sum() >= by_pgd.sum()
    assert 1 - by_a3.float().mean() < clean_acc - 0.2


def test_a3_draws_its_start_from_the_generator(batch):
    model, x, y = batch
    one = attacks_extra.a3(model, x[:8], y[:8], 4, 1, 2, generator=torch.Generator().manual_seed(3))
    same = attacks_extra.a3(model, x[:8], y[:8], 4, 1, 2, generator=torch.Generator().manual_seed(3))
    other = attacks_extra.a3(model, x[:8], y[:8], 4, 1, 2, generator=torch.Generator().manual_seed(4))
    assert torch.equal(one, same) and not torch.equal(one, other)


def test_registry_runs_them_with_the_evaluate_sections(batch, params):
    model, x, y = batch
    ev = params["evaluate"]
    assert {"caa", "a3"} <= set(attacks.ATTACKS)
    caa = attacks.run_attack("caa", model, x, y, 4, ev, 6)
    assert torch.equal(caa, attacks_extra.caa(model, x, y, 4, ev["caa"]["steps"], ev["caa"]["step_rule_eps"]))
    a3 = attacks.run_attack("a3", model, x, y, 4, ev, 6, torch.Generator().manual_seed(0))
    s = ev["a3"]
    direct = attacks_extra.a3(model, x, y, 4, s["step_size"], s["steps"], s["restarts"], s["osd_start"],
                              s["osd_increment"], s["early_stop"], s["random_start"], s["adi"],
                              torch.Generator().manual_seed(0))
    assert torch.equal(a3, direct)


def test_bf16_autocast_and_no_weight_gradients(trained_classifier):
    model, x, y = trained_classifier
    x, y = x[:16], y[:16]
    model.requires_grad_(True)
    for p in model.parameters():
        p.grad = None
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            caa = attacks_extra.caa(model, x, y, 4, 3)
            a3 = attacks_extra.a3(model, x, y, 4, 1, 3, restarts=2, generator=torch.Generator().manual_seed(0))
        assert all(p.grad is None for p in model.parameters())
    finally:
        model.requires_grad_(False)
    for adv in (caa, a3):
        assert adv.dtype == torch.float32 and (adv - x).abs().max() <= 4 / 255 + 1e-6
        assert not torch.equal(adv, x)


def test_bad_settings_are_rejected(batch):
    model, x, y = batch
    with pytest.raises(ConfigError, match="non-negative"):
        attacks_extra.caa(model, x[:2], y[:2], -1, 3)
    with pytest.raises(ConfigError, match="non-negative"):
        attacks_extra.a3(model, x[:2], y[:2], 4, -1, 3)
    with pytest.raises(ConfigError, match="restarts"):
        attacks_extra.a3(model, x[:2], y[:2], 4, 1, 3, restarts=0)


def test_report_names_them_with_their_steps_and_pairs_no_published_number(params):
    import copy

    from ucat.report import load, reference

    cfg = copy.deepcopy(params)
    cfg["evaluate"]["attacks"] = ["a3", "pgd", "caa"]
    setting = load.Setting.from_config(cfg)
    assert setting.attacks == ("pgd", "caa", "a3")   # the registry's order
    assert [setting.label(a) for a in setting.attacks] == ["PGD-3", "CAA-3", "A³-3"]
    assert setting.label("caa", 1) == "CAA-3 ε=1/255"
    assert not reference.comparable("caa", 1, 100) and not reference.comparable("a3", 1, 100)
    assert reference.comparable("pgd", 1, 100)
