"""ucat.stats: resampled statistics against independent recomputation, interval coverage by
simulation, pairing, and the spread over seeds."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.stats
import torch
from torchmetrics.functional.classification import binary_auroc

from ucat import stats


def _cell_data(n, rng, ties=False):
    """float32 confidences (as the evaluation stores them), some saturated at 1.0 and tied."""
    conf = rng.beta(5, 1.5, n).astype(np.float32)
    if ties:
        conf[: n // 5] = 1.0
        conf = (np.round(conf * 40) / 40).astype(np.float32)
    correct = rng.random(n) < conf
    attacked = np.clip(conf - rng.random(n).astype(np.float32) * 0.4, 0.05, 1.0).astype(np.float32)
    if ties:
        attacked = (np.round(attacked * 30) / 30).astype(np.float32)
    return conf, correct, attacked


def _ece(conf, correct, n_bins=15):
    """ECE written out bin by bin, (lo, hi] bins with 0 in the first: Σ_b |B_b|/N |acc_b − conf_b|."""
    conf = conf.astype(np.float64)
    total = 0.0
    for b in range(n_bins):
        lo, hi = b / n_bins, (b + 1) / n_bins
        inside = (conf > lo) & (conf <= hi) if b else (conf <= hi)
        if inside.any():
            total += inside.sum() / len(conf) * abs(correct[inside].mean() - conf[inside].mean())
    return total


def _aurc_by_tie_orders(uncertainty, correct):
    """Expected AURC over every order of the tied samples (ties "in expectation"), enumerated."""
    groups = [np.flatnonzero(uncertainty == v) for v in np.unique(uncertainty)]
    values = []
    for perms in itertools.product(*(itertools.permutations(g) for g in groups)):
        order = np.concatenate(perms)
        wrong = ~correct[order]
        values.append(np.mean(np.cumsum(wrong) / np.arange(1, len(order) + 1)))
    return float(np.mean(values))


def _auroc(pos, neg):
    scores = torch.tensor(np.r_[pos, neg], dtype=torch.float64)
    return float(binary_auroc(scores, torch.tensor(np.r_[np.ones(len(pos)), np.zeros(len(neg))]).int()))


@pytest.mark.parametrize("ties", [False, True])
def test_each_resample_recomputes_the_statistic_on_the_resampled_images(ties):
    """A resample is a data set of drawn images (a drawn-twice image is two tied samples): every
    statistic equals the one recomputed from the explicitly resampled arrays, not a mean."""
    rng = np.random.default_rng(1)
    n = 400
    conf, correct, attacked = _cell_data(n, rng, ties)
    clean = stats.MspCell(conf, correct)
    detection = stats.AttackDetection(clean, attacked)
    idx = rng.integers(0, n, (5, n))
    idx[4] = np.r_[np.arange(n - 40), np.zeros(40, int)]        # one image drawn 41 times, 39 never
    draws = stats.Draws.from_indices(idx, n)
    running = clean.sorted_counts(draws)
    got = clean.statistics(draws, running)
    got_atk = detection.auroc(draws, running[1])
    for j, rows in enumerate(idx):
        c, k, a = conf[rows], correct[rows], attacked[rows]
        u, ua = 1.0 - c.astype(np.float64), 1.0 - a.astype(np.float64)
        assert got["accuracy"][j] == pytest.approx(k.mean(), abs=1e-12)
        assert got["ece"][j] == pytest.approx(_ece(c, k), abs=1e-6)
        risk = np.cumsum(~k[np.argsort(u, kind="stable")]) / np.arange(1, n + 1)
        if not ties:      # no two images share a score: the plain definition
            assert got["aurc"][j] == pytest.approx(risk.mean(), abs=1e-9)
        assert got["err_auroc"][j] == pytest.approx(_auroc(u[~k], u[k]), abs=1e-6)
        assert got_atk[j] == pytest.approx(_auroc(ua, u), abs=1e-6)
    if ties:
        from ucat import selective

        for j, rows in enumerate(idx):
            u = 1.0 - conf[rows].astype(np.float64)
            assert got["aurc"][j] == pytest.approx(selective.aurc(u, correct[rows]), abs=1e-9)


def test_aurc_with_ties_is_the_expectation_over_tie_orders():
    rng = np.random.default_rng(3)
    conf = np.array([0.9, 0.9, 0.9, 0.9, 0.7, 0.7, 0.7, 0.5, 0.5, 0.95], dtype=np.float32)
    correct = np.array([1, 0, 1, 1, 0, 1, 0, 1, 1, 1], dtype=bool)
    cell = stats.MspCell(conf, correct)
    idx = np.r_[np.arange(10), [0, 4]][None]                      # two extra copies join two tie groups
    idx = np.stack([idx[0, :10], rng.integers(0, 10, 10)])
    got = cell.statistics(stats.Draws.from_indices(idx, 10))["aurc"]
    for j, rows in enumerate(idx):
        u = 1.0 - conf[rows].astype(np.float64)
        assert got[j] == pytest.approx(_aurc_by_tie_orders(u, correct[rows]), abs=1e-12)


def test_bootstrap_distribution_is_the_statistic_of_scipys_resamples():
    """End to end through scipy.stats.bootstrap: each replicate is recomputed from its drawn images."""
    rng = np.random.default_rng(2)
    conf, correct, _ = _cell_data(150, rng)
    cell = stats.MspCell(conf, correct)
    seen = []

    def statistic(draws):
        seen.append(draws[0].counts.copy())
        out = cell.statistics(draws[0])
        return np.stack([out["ece"], out["aurc"]])

    boot = stats.bootstrap([150], statistic, resamples=40, seed=5)
    counts = np.concatenate(seen[1:])                             # seen[0]: the data as they are
    assert counts.shape == (40, 150) and np.all(counts.sum(1) == 150)
    from ucat import selective

    for j, row in enumerate(counts.astype(int)):
        rows = np.repeat(np.arange(150), row)
        assert boot.distribution[0, j] == pytest.approx(_ece(conf[rows], correct[rows]), abs=1e-6)
        assert boot.distribution[1, j] == pytest.approx(selective.aurc(1 - conf[rows].astype(float), correct[rows]),
                                                        abs=1e-9)
    assert boot.value[0] == pytest.approx(_ece(conf, correct), abs=1e-6)
    # the mean of per-image |correct − confidence| is not ECE: a bootstrap of that would be another quantity
    assert abs(np.abs(correct - conf).mean() - boot.value[0]) > 0.05


def test_percentile_interval_covers_a_known_paired_difference():
    """1000 simulated test sets of 150 images, two methods right on overlapping images (60 % and 65 %
    accuracy, true difference 5 points); the 95 % interval of the paired difference must cover 5 points
    in 93–97 % of them (simulated: 94.0–95.2 % over eight seeds)."""
    rng = np.random.default_rng(0)
    sets, n = 1000, 150
    u = rng.random((sets, n))
    a = u < 0.60
    b = (u < 0.40) | ((u >= 0.60) & (u < 0.85))                   # 20 % only A right, 25 % only B right
    diff = (b.astype(np.float32) - a.astype(np.float32))

    def statistic(draws):                                         # one stratum per simulated test set
        return np.stack([np.einsum("ij,j->i", x.counts, d, dtype=np.float64) / x.total for x, d in zip(draws, diff)])

    boot = stats.bootstrap([n] * sets, statistic, resamples=500, seed=0)
    assert np.allclose(boot.value, diff.mean(1))
    covered = np.mean((boot.lo <= 0.05) & (0.05 <= boot.hi))
    assert 0.93 <= covered <= 0.97, covered


def test_pairing_excludes_zero_where_unpaired_intervals_overlap():
    """B is right wherever A is, and on 2 % more images: each accuracy's interval is ±2 points and
    the two overlap, but on the same resampled images the difference is never below 0."""
    rng = np.random.default_rng(4)
    n = 2000
    conf = rng.uniform(0.3, 1.0, n).astype(np.float32)
    a = rng.random(n) < 0.7
    b = a.copy()
    b[np.flatnonzero(~a)[:40]] = True
    cells = [stats.MspCell(conf, a), stats.MspCell(conf, b)]

    def paired(draws):
        acc = [c.statistics(draws[0])["accuracy"] for c in cells]
        return np.stack([acc[0], acc[1], acc[1] - acc[0]])

    def unpaired(draws):                                          # each method on its own resample
        acc = [c.statistics(x)["accuracy"] for c, x in zip(cells, draws)]
        return np.stack([acc[1] - acc[0]])

    p = stats.bootstrap([n], paired, resamples=1000, seed=1)
    assert p.lo[1] < p.hi[0]                                      # the two accuracies' intervals overlap
    assert p.interval(2).excludes_zero and p.lo[2] > 0 and p.value[2] == pytest.approx(0.02)
    u = stats.bootstrap([n, n], unpaired, resamples=1000, seed=1)
    assert not u.interval(0).excludes_zero                        # resampled apart, the gap drowns


@pytest.mark.parametrize("method", ["basic", "bca"])
def test_other_interval_methods_are_scipys(method):
    rng = np.random.default_rng(6)
    x = rng.random(80).astype(np.float32)

    def statistic(draws):
        return np.stack([np.einsum("ij,j->i", draws[0].counts, x, dtype=np.float64) / draws[0].total])

    ours = stats.bootstrap([80], statistic, resamples=999, method=method, seed=3)
    ref = scipy.stats.bootstrap((x.astype(np.float64),), np.mean, n_resamples=999, method=method,
                                rng=np.random.default_rng(3))
    assert ours.lo[0] == pytest.approx(ref.confidence_interval.low, abs=2e-3)
    assert ours.hi[0] == pytest.approx(ref.confidence_interval.high, abs=2e-3)


def test_undefined_resamples_give_no_interval():
    conf = np.linspace(0.5, 0.99, 60).astype(np.float32)
    correct = np.ones(60, bool)
    correct[7] = False                                            # one error: most resamples still have it
    cell = stats.MspCell(conf, correct)
    boot = stats.bootstrap([60], lambda d: np.stack([cell.statistics(d[0])["err_auroc"]]), resamples=200, seed=0)
    assert boot.value[0] is not None and np.isfinite(boot.value[0])
    assert boot.interval(0).lo is None and boot.interval(0).excludes_zero is None


def test_across_seeds_is_the_student_t_interval():
    values = [1.2, 0.4, 1.9, 0.8]
    s = stats.across_seeds(values, 0.95)
    m, sd = np.mean(values), np.std(values, ddof=1)
    half = scipy.stats.t.ppf(0.975, 3) * sd / 2
    assert (s.mean, s.std) == pytest.approx((m, sd))
    assert (s.lo, s.hi) == pytest.approx((m - half, m + half))
    assert s.excludes_zero
    assert stats.across_seeds([0.3]).lo is None and stats.across_seeds([0.3, None]).mean is None
