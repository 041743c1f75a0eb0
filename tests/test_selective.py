"""Selective prediction and detection metrics against independent references
(torchmetrics, brute force over orderings) and the clean/attacked alignment check."""

import itertools

import numpy as np
import pytest
import torch
from torchmetrics.functional.classification import binary_auroc, binary_average_precision, binary_roc

from ucat import selective as S


def _data(seed, n=300, levels=None):
    rng = np.random.default_rng(seed)
    u = rng.random(n)
    if levels:  # force ties
        u = np.round(u * levels) / levels
    correct = rng.random(n) > u * 0.8   # more certain -> more often right
    return u, correct


@pytest.mark.parametrize("levels", [None, 7])
def test_detection_metrics_match_torchmetrics(levels):
    u, correct = _data(1, levels=levels)
    wrong = ~correct
    got = S.misclassification_detection(u, correct)
    s, t = torch.tensor(u), torch.tensor(wrong.astype(int))
    assert got["auroc"] == pytest.approx(float(binary_auroc(s, t)), abs=1e-6)
    assert got["aupr"] == pytest.approx(float(binary_average_precision(s, t)), abs=1e-6)
    fpr, tpr, _ = binary_roc(s, t)
    assert got["fpr95"] == pytest.approx(float(fpr[tpr >= 0.95].min()), abs=1e-6)


def _naive_aurc(order_u, correct):
    """Risk at each k by explicit counting over one fixed order (the definition)."""
    n = len(correct)
    return np.mean([np.sum(~correct[order_u[:k]]) / k for k in range(1, n + 1)])


def test_aurc_without_ties_is_the_brute_force_definition():
    u, correct = _data(2, n=60)
    order = np.argsort(u)
    assert S.aurc(u, correct) == pytest.approx(_naive_aurc(order, correct), abs=1e-12)
    for c in S.COVERAGES:
        k = int(np.ceil(c * len(u)))
        assert S.selective_accuracy(u, correct, c) == pytest.approx(correct[order[:k]].mean(), abs=1e-12)


def test_aurc_with_ties_is_the_mean_over_every_tie_order():
    u = np.array([0.1, 0.2, 0.2, 0.2, 0.5, 0.5, 0.9])
    correct = np.array([True, False, True, True, False, True, False])
    orders = [np.array(p) for p in itertools.permutations(range(len(u))) if np.all(np.diff(u[list(p)]) >= 0)]
    assert len(orders) == 12   # 3! * 2!
    expected = np.mean([_naive_aurc(o, correct) for o in orders])
    assert S.aurc(u, correct) == pytest.approx(expected, abs=1e-12)


def test_oracle_and_excess_aurc():
    u, correct = _data(3, n=100)
    perfect = (~correct).astype(float)                  # errors strictly last
    assert S.aurc(perfect, correct) == pytest.approx(S.oracle_aurc(correct), abs=1e-12)
    assert S.aurc(u, correct) > S.oracle_aurc(correct)
    const = np.zeros_like(u)                            # random abstention: risk = error rate everywhere
    assert S.aurc(const, correct) == pytest.approx(1 - correct.mean(), abs=1e-12)
    assert S.auroc(const[~correct], const[correct]) == 0.5


def test_usable_range():
    rng = np.random.default_rng(0)
    assert S.usable(1e-9 * (1 + rng.random(50)))        # tiny but ordered: usable
    assert not S.usable(np.full(50, 1e-9))              # collapsed to one value
    assert not S.usable(np.r_[np.zeros(30), rng.random(20)])
    assert not S.usable(np.r_[np.inf, rng.random(20)])


def _cell(ids, seed):
    rng = np.random.default_rng(seed)
    n = len(ids)
    conf = rng.random(n)
    return {"sample_id": np.asarray(ids), "label": np.asarray(ids) % 3, "pred": rng.integers(0, 3, n),
            "confidence": conf, "entropy": 1 - conf, "aleatoric": rng.random(n), "epistemic": np.full(n, 1e-9)}


def test_alignment_is_checked_by_sample_id():
    ids = np.arange(0, 80, 2)
    clean, attacked = _cell(ids, 0), _cell(ids, 1)
    out = S.analyse_cell(attacked, clean, "x")
    assert out["msp"]["atk_auroc"] is not None
    assert out["epistemic"] == {"usable": False}        # constant EU: n/a, not a number
    perm = np.random.default_rng(5).permutation(len(ids))
    shuffled = {k: v[perm] for k, v in attacked.items()}
    with pytest.raises(S.AlignmentError, match="another order"):
        S.analyse_cell(shuffled, clean, "x")
    with pytest.raises(S.AlignmentError, match="different images"):
        S.analyse_cell(_cell(ids + 1, 1), clean, "x")
    with pytest.raises(S.AlignmentError, match="no sample_id"):
        S.analyse_cell({k: v for k, v in attacked.items() if k != "sample_id"}, clean, "x")
    # why it matters: the paired statistic is meaningless after a silent shuffle
    paired = S.attack_detection(S.score(clean, "msp"), S.score(attacked, "msp"))["paired_rise"]
    wrongly = S.attack_detection(S.score(clean, "msp"), S.score(shuffled, "msp"))["paired_rise"]
    assert paired != wrongly
