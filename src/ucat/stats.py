"""Is a difference real?  Confidence intervals over test images (bootstrap) and over seeds (t).

Two sources of variation, reported separately:

- **Test images.**  Every statistic is recomputed on resampled images, never averaged from
  per-image values: ECE, AURC and the AUROCs are not means.  A resample is represented by its
  per-image *counts* (how often each image was drawn), and each statistic is written for
  weighted images, so one sort per evaluation cell serves every resample and the work per
  resample is a few passes over the counts.  The same counts serve every method and every
  condition of a data set: a difference between two methods is the difference of their
  statistics on the *same* resampled images (paired), which is what makes a one-point gap on
  10,000 shared images measurable.  Several data sets are resampled independently (each a
  stratum), and so are several seeds' test sets unless they hold the same images.
- **Seeds.**  With several seeds each statistic is also averaged over a resample of the seeds
  (with replacement: the two-stage bootstrap, which counts the image noise in every seed's
  value and so errs on the wide side), and reported as mean ± standard deviation over seeds
  with a Student-t interval (:func:`across_seeds`).

``scipy.stats.bootstrap`` draws the resamples and turns them into percentile, basic or BCa
intervals: it is the well-kept implementation of all three, it resamples several samples
independently (the strata), and its vectorised mode hands a statistic a whole batch of
resamples.  We pass it the image *indices* of each stratum and compute the statistics from
them (:func:`bootstrap`).  rliable's stratified bootstrap resamples runs and tasks of
aggregate scores; it cannot reach inside a run to resample its test images, so it does not fit.

The weighted statistics follow ``ucat.selective`` and ``ucat.metrics`` exactly on the
resampled data set (ties in expectation, ``(lo, hi]`` confidence bins): a drawn image that
appears k times is k tied samples.  BCa needs a jackknife, one statistic evaluation per
image of every stratum: quadratic in the set size, so only for small test sets.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import scipy.stats

from .selective import usable

METHODS = {"percentile": "percentile", "basic": "basic", "bca": "BCa"}   # config name -> scipy's
MAX_BATCH_ELEMENTS = 20_000_000    # images × resamples held at once (bounds memory, not the result)


@dataclass(frozen=True)
class Interval:
    """A point estimate and its interval; None where undefined (too few errors, missing cell)."""
    value: float | None
    lo: float | None = None
    hi: float | None = None

    @property
    def excludes_zero(self) -> bool | None:
        if self.lo is None or self.hi is None:
            return None
        return self.lo > 0 or self.hi < 0

    def contains(self, x: float) -> bool | None:
        if self.lo is None or self.hi is None:
            return None
        return self.lo <= x <= self.hi

    def scaled(self, k: float) -> "Interval":
        """The same interval in other units (k > 0, e.g. 100 for %)."""
        f = (lambda v: None if v is None else k * v)
        return Interval(f(self.value), f(self.lo), f(self.hi))


def finite(x) -> float | None:
    x = float(x)
    return x if np.isfinite(x) else None


# --- resample counts --------------------------------------------------------------------

class Draws:
    """One batch of resamples of one stratum, as per-image counts ``(b, n)`` float32 (rows:
    resamples; small integers, exact), and each resample's size."""

    def __init__(self, counts: np.ndarray):
        self.counts = np.ascontiguousarray(counts, dtype=np.float32)
        self.total = self.counts.sum(1, dtype=np.float64)

    @classmethod
    def from_indices(cls, indices: np.ndarray, n: int) -> "Draws":
        """``(b, m)`` drawn image indices (scipy's resamples) -> counts of each of the n images."""
        indices = np.atleast_2d(indices)
        b = indices.shape[0]
        flat = (indices + n * np.arange(b)[:, None]).ravel()
        return cls(np.bincount(flat, minlength=b * n).reshape(b, n))

    @classmethod
    def whole(cls, n: int) -> "Draws":
        """The data as they are: every image once."""
        return cls(np.ones((1, n), dtype=np.float32))


# --- weighted statistics: one sort per cell, a few passes per batch of resamples ----------
#
# In the cell's order (most certain first) C[k] is the number of drawn samples among the first
# k + 1 images: ``cumsum`` of the counts (float32 holds these integers exactly up to 2^24).
# Every statistic of the ranking needs C only at the ends of the tie groups that hold errors.
# With s drawn samples before a group, n_g in it, e_g of them errors and r = e_g / n_g, it adds
#   to N · AURC:  r · (n_g H(N) − (K(s + n_g) − K(s))),  K(m) = Σ_{q<m} H(q) = m (H(m) − 1)
#                 (the risk rises linearly inside a tie group: ucat.selective.risk_coverage)
#   to the AUROC numerator (errors positive, ties ½):  e_g s + ½ e_g n_g, minus E² / 2 once
# and over a run of groups holding only errors (r = 1) both telescope: only the run's ends matter.
# The confidence bins are runs of the same order, so ECE is one dot product per bin.

def _segments(err_sorted: np.ndarray, starts: np.ndarray, n: int):
    """Runs of all-error tie groups ``(first, last)`` and mixed groups ``(first, last_error, last)``,
    as positions in the sorted order (errors placed first inside each tie group)."""
    ends = np.r_[starts[1:], n] - 1
    errors = np.add.reduceat(err_sorted, starts)
    all_err = errors == ends - starts + 1
    mixed = (errors > 0) & ~all_err
    edge = np.diff(np.r_[0, all_err.astype(np.int8), 0])            # maximal runs of all-error groups
    runs = starts[np.flatnonzero(edge == 1)], ends[np.flatnonzero(edge == -1) - 1]
    return runs, (starts[mixed], starts[mixed] + errors[mixed] - 1, ends[mixed])


def _at(c: np.ndarray, positions: np.ndarray, dtype=np.float64) -> np.ndarray:
    """C at ``positions``; position −1 reads 0 (nothing drawn before the first image)."""
    out = np.take(c, np.maximum(positions, 0), axis=1).astype(dtype, copy=False)
    if len(positions) and positions.min() < 0:
        out[:, positions < 0] = 0
    return out


@functools.lru_cache(maxsize=8)
def _harmonic(n: int) -> tuple[np.ndarray, np.ndarray]:
    """H(m) and K(m) = Σ_{q<m} H(q) = m (H(m) − 1) for m = 0..n (shared by every cell of a size)."""
    h = np.r_[0.0, np.cumsum(1.0 / np.arange(1, n + 1))]
    return h, np.arange(n + 1) * (h - 1.0)


class MspCell:
    """One evaluation cell scored by 1 − max softmax probability: accuracy, ECE, AURC and the
    misclassification-detection AUROC of any resample, from its image counts."""

    def __init__(self, confidence, correct, n_bins: int = 15):
        conf = np.asarray(confidence, dtype=np.float64)
        correct = np.asarray(correct, dtype=bool)
        if conf.shape != correct.shape or conf.ndim != 1 or len(conf) == 0:
            raise ValueError("confidence and correct must be equal-length non-empty vectors")
        u = 1.0 - conf                                   # ucat.selective.score(..., "msp")
        self.n = n = len(u)
        self.ranked = usable(u)                          # AURC and AUROC need a score that orders
        order = np.lexsort((correct, u))                 # most certain first; errors first inside a tie
        self.order = order.astype(np.int32)
        self.u_sorted = u[order]
        starts = np.flatnonzero(np.r_[True, self.u_sorted[1:] != self.u_sorted[:-1]])
        self.runs, self.mixed = _segments((~correct[order]).astype(np.int64), starts, n)
        edges = np.linspace(0.0, 1.0, n_bins + 1)        # ucat.metrics.reliability_bins: (lo, hi]
        bins = np.clip(np.searchsorted(edges, conf[order], side="left") - 1, 0, n_bins - 1)
        if (np.diff(bins) > 0).any():
            raise ValueError("confidences that differ but give the same 1 − confidence: not float32 scores")
        cut = np.flatnonzero(np.r_[True, bins[1:] != bins[:-1]])
        self.bins = list(zip(cut, np.r_[cut[1:], n]))   # [start, end) of every non-empty bin
        self.gap = (correct[order] - conf[order]).astype(np.float32)   # correct − confidence

    def sorted_counts(self, draws: Draws) -> tuple[np.ndarray, np.ndarray]:
        """The counts in this cell's order and their running sum C, both ``(b, n)`` float32."""
        w = np.take(draws.counts, self.order, axis=1)
        return w, np.cumsum(w, axis=1)

    def statistics(self, draws: Draws, sorted_counts=None) -> dict[str, np.ndarray]:
        """``{statistic: (b,)}`` for a batch of resamples; ``sorted_counts``: this cell's
        :meth:`sorted_counts` of ``draws`` when already at hand."""
        w, c = self.sorted_counts(draws) if sorted_counts is None else sorted_counts
        total = draws.total
        # ECE = Σ_bins |Σ_i w_i (correct_i − conf_i)| / N
        ece = sum(np.abs(np.einsum("ij,j->i", w[:, a:b], self.gap[a:b], dtype=np.float64)) for a, b in self.bins) / total
        harmonic, k = _harmonic(self.n)
        (first, last), (m_first, m_err, m_last) = self.runs, self.mixed
        s, end = _at(c, first - 1), _at(c, last)         # all-error runs: r = 1
        errors = (end - s).sum(1)
        risk = k[end.astype(np.int64)].sum(1) - k[s.astype(np.int64)].sum(1)
        hit = ((end * end - s * s) / 2).sum(1)           # Σ e_g s + ½ Σ e_g n_g over the runs
        if len(m_first):
            s, e_end, end = _at(c, m_first - 1), _at(c, m_err), _at(c, m_last)
            e_g, n_g = e_end - s, end - s
            errors += e_g.sum(1)
            risk += (e_g / np.maximum(n_g, 1.0) * (k[end.astype(np.int64)] - k[s.astype(np.int64)])).sum(1)
            hit += (e_g * (s + n_g / 2)).sum(1)
        out = {"accuracy": 1.0 - errors / total, "ece": ece}
        if not self.ranked:
            nan = np.full(len(total), np.nan)
            return {**out, "aurc": nan, "err_auroc": nan}
        out["aurc"] = (errors * harmonic[total.astype(np.int64)] - risk) / total
        neg = total - errors
        with np.errstate(invalid="ignore", divide="ignore"):
            out["err_auroc"] = np.where(errors * neg > 0, (hit - errors ** 2 / 2) / (errors * neg), np.nan)
        return out


class AttackDetection:
    """AUROC of telling each attacked image (positive) from the clean images (negatives) by
    1 − MSP, for any resample: an image drawn k times brings both its versions k times.

    Reads the clean cell's running sum C (:meth:`MspCell.sorted_counts`): the clean samples
    below an attacked image's score (ties ½) are C at two positions found once."""

    def __init__(self, clean: MspCell, attacked_confidence):
        a = 1.0 - np.asarray(attacked_confidence, dtype=np.float64)
        if a.shape != (clean.n,):
            raise ValueError("clean and attacked cells must hold the same images")
        self.ranked = clean.ranked and usable(a)         # as ucat.selective.analyse_cell
        self.below = np.searchsorted(clean.u_sorted, a, side="left") - 1
        self.below_or_tied = np.searchsorted(clean.u_sorted, a, side="right") - 1
        self.ties = not np.array_equal(self.below, self.below_or_tied)

    def auroc(self, draws: Draws, clean_running_sum: np.ndarray) -> np.ndarray:
        if not self.ranked:
            return np.full(len(draws.total), np.nan)
        # one dot product per resample: Σ_i w_i · (clean samples below image i)
        hits = np.einsum("ij,ij->i", draws.counts, _at(clean_running_sum, self.below, np.float32), dtype=np.float64)
        if self.ties:
            hits = (hits + np.einsum("ij,ij->i", draws.counts, _at(clean_running_sum, self.below_or_tied, np.float32),
                                     dtype=np.float64)) / 2
        return hits / (draws.total * draws.total)


# --- the driver -------------------------------------------------------------------------

@dataclass
class Bootstrap:
    """Point estimates and intervals of ``k`` statistics; ``distribution`` is (k, resamples)."""
    value: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    distribution: np.ndarray

    def interval(self, i: int) -> Interval:
        return Interval(finite(self.value[i]), finite(self.lo[i]), finite(self.hi[i]))


def bootstrap(sizes: Sequence[int], statistic: Callable[[list[Draws]], np.ndarray], *, resamples: int,
              confidence: float = 0.95, method: str = "percentile", seed: int = 0) -> Bootstrap:
    """Intervals of the ``k`` statistics ``statistic(draws) -> (k, b)``, where ``draws`` holds
    one :class:`Draws` (a batch of b resamples) per stratum; strata are resampled independently.

    The point estimate is the statistic of the data as they are (every count 1).  NaN in any
    resample (e.g. an AUROC of a resample without errors) makes that statistic's interval NaN.
    ``method``: ``percentile``, ``basic`` or ``bca`` (scipy's ``BCa``).
    """
    if method not in METHODS:
        raise ValueError(f"unknown interval method {method!r}; allowed: {', '.join(METHODS)}")
    sizes = [int(n) for n in sizes]

    def stat(*indices, axis=-1):
        single = indices[0].ndim == 1
        out = statistic([Draws.from_indices(i, n) for i, n in zip(indices, sizes)])
        b = max(np.atleast_2d(i).shape[0] for i in indices)
        out = np.broadcast_to(out, (out.shape[0], b))
        return out[:, 0] if single else out

    value = np.asarray(statistic([Draws.whole(n) for n in sizes]))[:, 0]
    batch = max(1, min(resamples, MAX_BATCH_ELEMENTS // max(1, sum(sizes))))
    with warnings.catch_warnings():
        # NaN distributions (undefined statistics) and constant ones are expected, and reported as n/a
        warnings.simplefilter("ignore", scipy.stats.DegenerateDataWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        res = scipy.stats.bootstrap(tuple(np.arange(n) for n in sizes), stat, n_resamples=resamples, batch=batch,
                                    vectorized=True, paired=False, confidence_level=confidence,
                                    method=METHODS[method], rng=np.random.default_rng(seed))
    return Bootstrap(value, np.asarray(res.confidence_interval.low), np.asarray(res.confidence_interval.high),
                     np.asarray(res.bootstrap_distribution))


# --- over seeds -----------------------------------------------------------------------------

@dataclass(frozen=True)
class SeedSummary:
    """Mean, standard deviation (ddof 1) and Student-t interval of the mean over ``n`` seeds."""
    n: int
    mean: float | None
    std: float | None
    lo: float | None
    hi: float | None

    @property
    def excludes_zero(self) -> bool | None:
        return None if self.lo is None or self.hi is None else (self.lo > 0 or self.hi < 0)


def across_seeds(values: Sequence[float | None], confidence: float = 0.95) -> SeedSummary:
    """t-interval over seeds (``scipy.stats.ttest_1samp``); None parts where a value is missing
    or there is one seed."""
    if any(v is None for v in values) or not len(values):
        return SeedSummary(len(values), None, None, None, None)
    v = np.asarray(values, dtype=np.float64)
    if len(v) < 2:
        return SeedSummary(1, float(v[0]), None, None, None)
    mean, std = float(v.mean()), float(v.std(ddof=1))
    if std == 0:
        return SeedSummary(len(v), mean, 0.0, mean, mean)
    ci = scipy.stats.ttest_1samp(v, 0.0).confidence_interval(confidence_level=confidence)
    return SeedSummary(len(v), mean, std, float(ci.low), float(ci.high))
