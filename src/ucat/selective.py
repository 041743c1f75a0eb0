"""Uncertainty in use: selective prediction, misclassification detection, attack detection.

Everything is computed from the per-sample arrays an evaluation cell stores, never by
re-attacking.  A *score* is an uncertainty: higher means "less sure" (``msp`` is
``1 - max softmax probability``).  Conventions:

- Ties are resolved in expectation over a random order, never by array position: the
  risk–coverage curve interpolates linearly inside a group of tied scores, and AUROC counts
  a tied (positive, negative) pair as 1/2.  A fully tied (constant) score therefore gets
  AUROC 0.5 and the AURC of random abstention.
- AURC = (1/N) Σ_k risk(k), ``risk(k)`` the error rate among the k most certain samples
  (Geifman et al. 2019); E-AURC = AURC − AURC of the oracle ordering (all errors last).
- Misclassification detection: wrong predictions are the positives.  AUPR is average
  precision (sklearn/torchmetrics' step rule); FPR@95TPR is the lowest FPR of any
  threshold whose TPR reaches 0.95.
- Attack detection: an attacked image is a positive, its own clean version a negative;
  :func:`aligned` checks by stored ``sample_id`` that both cells hold the same images in
  the same order, and refuses otherwise.

EU "where it has a usable range": the paper's ``EU = C/(α₀ + C)`` is ~1e-9 at CLIP's
temperature, but it is stored in float64 and every metric here depends only on the order
of the scores, so its size does not matter; what matters is whether it still orders the
samples.  :func:`usable` calls a score usable in a cell when it is finite everywhere and
no single value is shared by more than half of the samples (EU saturating at 0 or at
``C/(α₀+C)`` underflow gives a constant); otherwise the cell's EU metrics are None ("n/a").
"""

from __future__ import annotations

import numpy as np

COVERAGE_GRID = np.linspace(0.01, 1.0, 100)   # coverages a risk curve is sampled at (averaged over data sets)

from .errors import UcatError

SCORES = ("msp", "entropy", "aleatoric", "epistemic")
SCORE_NAMES = {"msp": "1 − MSP", "entropy": "Entropy", "aleatoric": "AU", "epistemic": "EU"}
COVERAGES = (0.5, 0.8, 0.9)
MAX_TIE_SHARE = 0.5


class AlignmentError(UcatError):
    """Clean and attacked per-sample arrays do not hold the same images in the same order."""


def score(samples: dict, name: str) -> np.ndarray:
    """The uncertainty ``name`` of every sample (higher = less certain), float64."""
    if name == "msp":
        return 1.0 - np.asarray(samples["confidence"], dtype=np.float64)
    if name in ("entropy", "aleatoric", "epistemic"):
        return np.asarray(samples[name], dtype=np.float64)
    raise ValueError(f"unknown score {name!r}; allowed: {', '.join(SCORES)}")


def usable(values) -> bool:
    """Finite, and no value shared by more than half of the samples (see the module note)."""
    v = np.asarray(values, dtype=np.float64)
    if len(v) == 0 or not np.isfinite(v).all():
        return False
    _, counts = np.unique(v, return_counts=True)
    return counts.max() <= MAX_TIE_SHARE * len(v)


# --- selective prediction --------------------------------------------------------------

def risk_coverage(uncertainty, correct) -> tuple[np.ndarray, np.ndarray]:
    """``(coverage, risk)`` at k = 1..N accepted samples, most certain first, ties in expectation."""
    u = np.asarray(uncertainty, dtype=np.float64)
    err = 1.0 - np.asarray(correct, dtype=np.float64)
    n = len(u)
    if n == 0:
        return np.zeros(0), np.zeros(0)
    values, inverse = np.unique(u, return_inverse=True)
    group_n = np.bincount(inverse, minlength=len(values)).astype(np.float64)
    group_err = np.bincount(inverse, weights=err, minlength=len(values))
    ends = np.cumsum(group_n)
    starts = ends - group_n
    errs_before = np.cumsum(group_err) - group_err
    k = np.arange(1, n + 1, dtype=np.float64)
    g = np.searchsorted(ends, k, side="left")          # the tie group position k falls in
    expected_errors = errs_before[g] + (k - starts[g]) * group_err[g] / group_n[g]
    return k / n, expected_errors / k


def aurc(uncertainty, correct) -> float:
    _, risk = risk_coverage(uncertainty, correct)
    return float(risk.mean()) if len(risk) else float("nan")


def oracle_aurc(correct) -> float:
    """AURC of the ideal ordering: every correct prediction before every error."""
    correct = np.asarray(correct, dtype=bool)
    n = len(correct)
    k = np.arange(1, n + 1, dtype=np.float64)
    return float((np.maximum(0.0, k - correct.sum()) / k).mean()) if n else float("nan")


def selective_accuracy(uncertainty, correct, coverage: float) -> float:
    """Accuracy on the ``ceil(coverage·N)`` most certain samples (ties in expectation)."""
    _, risk = risk_coverage(uncertainty, correct)
    k = max(1, int(np.ceil(coverage * len(risk) - 1e-9)))
    return float(1.0 - risk[k - 1])


# --- detection ------------------------------------------------------------------------

def auroc(scores_pos, scores_neg) -> float:
    """P(score of a positive > score of a negative) + ½ P(tie): the Mann–Whitney AUROC."""
    pos = np.asarray(scores_pos, dtype=np.float64)
    neg = np.asarray(scores_neg, dtype=np.float64)
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    allv = np.concatenate([pos, neg])
    values, inverse = np.unique(allv, return_inverse=True)
    counts = np.bincount(inverse)
    ranks = (np.cumsum(counts) - (counts - 1) / 2.0)[inverse]   # mid-ranks, 1-based
    u = ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2.0
    return float(u / (len(pos) * len(neg)))


def _curve(scores, labels):
    """Cumulative true/false positives at every distinct threshold, highest score first."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]       # end of each tie group
    tp = np.cumsum(y)[last].astype(np.float64)
    fp = np.cumsum(~y)[last].astype(np.float64)
    return tp, fp


def average_precision(scores, labels) -> float:
    """AUPR as average precision: Σ_thresholds (R_i − R_{i−1}) P_i, positives = ``labels``."""
    tp, fp = _curve(scores, labels)
    npos = tp[-1] if len(tp) else 0
    if npos == 0:
        return float("nan")
    recall = tp / npos
    precision = tp / (tp + fp)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def fpr_at_tpr(scores, labels, tpr: float = 0.95) -> float:
    """Lowest false-positive rate of any threshold whose true-positive rate is at least ``tpr``."""
    tp, fp = _curve(scores, labels)
    npos, nneg = (tp[-1], fp[-1]) if len(tp) else (0, 0)
    if npos == 0 or nneg == 0:
        return float("nan")
    ok = tp / npos >= tpr - 1e-12
    return float((fp[ok] / nneg).min())


def misclassification_detection(uncertainty, correct) -> dict:
    """AUROC, AUPR (errors positive) and FPR@95TPR of flagging wrong predictions."""
    u = np.asarray(uncertainty, dtype=np.float64)
    wrong = ~np.asarray(correct, dtype=bool)
    return {"auroc": auroc(u[wrong], u[~wrong]), "aupr": average_precision(u, wrong),
            "fpr95": fpr_at_tpr(u, wrong, 0.95)}


def aligned(clean: dict, attacked: dict, where: str = "") -> None:
    """Raise AlignmentError unless both cells store the same ``sample_id`` sequence (and labels)."""
    for name, z in (("clean", clean), ("attacked", attacked)):
        if "sample_id" not in z:
            raise AlignmentError(f"{where}: {name} per-sample arrays have no sample_id (written before ids "
                                 f"were stored); rerun its evaluation")
    a, b = np.asarray(clean["sample_id"]), np.asarray(attacked["sample_id"])
    if a.shape != b.shape:
        raise AlignmentError(f"{where}: clean has {len(a)} samples, attacked {len(b)}")
    if not np.array_equal(a, b):
        bad = int(np.argmax(a != b))
        same_set = np.array_equal(np.sort(a), np.sort(b))
        raise AlignmentError(f"{where}: sample ids differ at position {bad} ({a[bad]} vs {b[bad]}); "
                             + ("same images in another order" if same_set else "different images"))
    if "label" in clean and "label" in attacked and not np.array_equal(clean["label"], attacked["label"]):
        raise AlignmentError(f"{where}: same sample ids but different labels")


def attack_detection(clean_uncertainty, attacked_uncertainty) -> dict:
    """AUROC of telling each attacked image (positive) from the clean images (negatives), and the
    paired rate: the share of images whose uncertainty rises under attack (ties ½)."""
    c = np.asarray(clean_uncertainty, dtype=np.float64)
    a = np.asarray(attacked_uncertainty, dtype=np.float64)
    return {"auroc": auroc(a, c), "paired_rise": float(np.mean((a > c) + 0.5 * (a == c))) if len(a) else float("nan")}


# --- one cell -------------------------------------------------------------------------

def _finite(x: float) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


def analyse_cell(samples: dict, clean: dict | None = None, where: str = "") -> dict:
    """Every selective/detection metric of one cell, per score: ``{score: {metric: value|None}}``.

    ``clean`` (the same model and data set, clean) adds attack detection; it must be aligned.
    """
    correct = np.asarray(samples["pred"]) == np.asarray(samples["label"])
    if clean is not None:
        aligned(clean, samples, where)
    out = {}
    for name in SCORES:
        if name not in samples and name != "msp":
            continue
        u = score(samples, name)
        ok = usable(u)
        r: dict = {"usable": ok}
        if ok:
            r["aurc"] = aurc(u, correct)
            r["eaurc"] = r["aurc"] - oracle_aurc(correct)
            for c in COVERAGES:
                r[f"sel_acc@{int(c * 100)}"] = selective_accuracy(u, correct, c)
            r.update({f"err_{k}": v for k, v in misclassification_detection(u, correct).items()})
        if clean is not None:
            uc = score(clean, name)
            if ok and usable(uc):
                r.update({f"atk_{k}": v for k, v in attack_detection(uc, u).items()})
        out[name] = {k: (v if isinstance(v, bool) else _finite(v)) for k, v in r.items()}
    return out
