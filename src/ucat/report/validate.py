"""Type and range of every value the report reads, checked before anything is written.

An evaluation JSON, per-sample npz or training log holding an impossible value (an
accuracy of 1.5, a negative ECE, NaN, a string) was not written by this pipeline's
stages, or was damaged since: the report refuses it, naming the file, rather than print
a number that means nothing.  An absent cell is not an error (the report shows n/a).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..errors import MetricsError

INF = math.inf
# entropy-like values: nats under the paper's convention (<= log C), / log C under the code's (<= 1)
ENTROPY = "entropy"

# every metric of an evaluation JSON the report reads: (low, high, None allowed)
CELL_METRICS = {
    "accuracy": (0.0, 1.0, False),
    "ece": (0.0, 1.0, False),
    "confidence": (0.0, 1.0, False),
    "confidence_wrong": (0.0, 1.0, True),      # None: no wrong prediction
    "entropy": (0.0, ENTROPY, False),
    "entropy_wrong": (0.0, ENTROPY, True),
    "aleatoric": (0.0, ENTROPY, False),
    "epistemic": (0.0, INF, False),            # code convention: C / logsumexp(α+1) / log C can exceed 1
}
REQUIRED = ("accuracy",)
CONVENTIONS = (None, "paper", "code")

# per-sample arrays: (low, high, integer)
SAMPLE_RANGES = {"label": (0, INF, True), "pred": (0, INF, True), "confidence": (0.0, 1.0, False),
                 "entropy": (0.0, ENTROPY, False), "aleatoric": (0.0, ENTROPY, False),
                 "epistemic": (0.0, INF, False)}
# fine-tuning curves (dvclive TSVs): (low, high)
CURVE_RANGES = {"loss": (-INF, INF), "ce": (-INF, INF), "align": (-INF, INF), "adv_acc": (0.0, 1.0),
                "lr": (0.0, INF)}
TOLERANCE = 1e-6


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _bounds(low, high, num_classes) -> tuple[float, float]:
    if high == ENTROPY:
        high = max(1.0, math.log(num_classes)) if num_classes else INF
    return low, high


def refuse(path: Path, what: str) -> MetricsError:
    return MetricsError(f"{path}: {what}; the report refuses it (re-run the stage that wrote it)")


def _check_value(path: Path, key: str, v, low, high, optional: bool) -> None:
    if v is None and optional:
        return
    if not _is_number(v) or not math.isfinite(v):
        raise refuse(path, f"{key} = {v!r} is not a finite number")
    if not low - TOLERANCE <= v <= high + TOLERANCE:
        raise refuse(path, f"{key} = {v!r} is outside [{low:g}, {high:g}]")


def check_cell(cell: dict, path: Path) -> None:
    """An evaluation JSON: every metric the report reads has its type and range."""
    c = cell.get("num_classes")
    if c is not None and (not isinstance(c, int) or isinstance(c, bool) or c < 1):
        raise refuse(path, f"num_classes = {c!r} is not a positive integer")
    for key in REQUIRED:
        if key not in cell:
            raise refuse(path, f"no {key}")
    for key, (low, high, optional) in CELL_METRICS.items():
        if key in cell:
            _check_value(path, key, cell[key], *_bounds(low, high, c), optional)
    if cell.get("uncertainty_convention") not in CONVENTIONS:
        raise refuse(path, f"uncertainty_convention = {cell['uncertainty_convention']!r} is not one of paper, code")
    if "reliability" in cell:
        _check_reliability(cell["reliability"], path)


# a multi-label cell (ucat.evaluate_multilabel): the paper's cells and the classwise calibration, fractions
MULTILABEL_METRICS = {"mAP": True, "P@3": False, "R@3": False, "F1@3": False}   # value: None allowed


def check_multilabel_cell(cell: dict, path: Path) -> None:
    """A multi-label evaluation JSON: the paper's cells and the calibration, each a fraction."""
    if cell.get("multilabel") is not True:
        raise _refuse(path, "not a multi-label cell (no \"multilabel\": true)")
    for key, optional in MULTILABEL_METRICS.items():
        if key not in cell:
            raise _refuse(path, f"no {key}")
        _check_value(path, key, cell[key], 0.0, 1.0, optional)
    calibration = cell.get("calibration")
    if not isinstance(calibration, dict):
        raise _refuse(path, "calibration is not a mapping")
    for key in ("ece", "brier"):
        _check_value(path, f"calibration.{key}", calibration.get(key), 0.0, 1.0, optional=False)


def _check_reliability(rel, path: Path) -> None:
    if not isinstance(rel, dict) or not isinstance(rel.get("bin_count"), list):
        raise refuse(path, "reliability is not a mapping with a bin_count list")
    n = len(rel["bin_count"])
    for i, v in enumerate(rel["bin_count"]):
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise refuse(path, f"reliability.bin_count[{i}] = {v!r} is not a count")
    for key in ("bin_accuracy", "bin_confidence"):
        values = rel.get(key)
        if not isinstance(values, list) or len(values) != n:
            raise refuse(path, f"reliability.{key} is not a list of {n} values")
        for i, v in enumerate(values):
            _check_value(path, f"reliability.{key}[{i}]", v, 0.0, 1.0, optional=True)
    edges = rel.get("bin_edges")
    if edges is not None:
        if not isinstance(edges, list) or len(edges) != n + 1:
            raise refuse(path, f"reliability.bin_edges is not a list of {n + 1} values")
        for i, v in enumerate(edges):
            _check_value(path, f"reliability.bin_edges[{i}]", v, 0.0, 1.0, optional=False)
        if any(b < a for a, b in zip(edges, edges[1:])):
            raise refuse(path, "reliability.bin_edges decrease")


def check_samples(arrays: dict[str, np.ndarray], path: Path, num_classes: int | None) -> None:
    """A per-sample npz: one value per sample in every array, each of its type and range."""
    lengths = {k: a.shape for k, a in arrays.items()}
    if len({s for s in lengths.values()}) > 1 or any(len(s) != 1 for s in lengths.values()):
        raise refuse(path, f"arrays of different shapes {lengths}")
    for key, a in arrays.items():
        low, high, integer = SAMPLE_RANGES[key]
        if integer and key in ("label", "pred") and num_classes:
            high = num_classes - 1
        low, high = _bounds(low, high, num_classes)
        kind = a.dtype.kind
        if kind not in ("iu" if integer else "iuf"):
            raise refuse(path, f"{key} has dtype {a.dtype}, not {'integer' if integer else 'numeric'}")
        if a.size == 0:
            continue
        if kind == "f" and not np.isfinite(a).all():
            raise refuse(path, f"{key} holds {a[~np.isfinite(a)][0]} (not finite)")
        lo, hi = a.min(), a.max()
        if lo < low - TOLERANCE or hi > high + TOLERANCE:
            bad = lo if lo < low - TOLERANCE else hi
            raise refuse(path, f"{key} holds {bad!r}, outside [{low:g}, {high:g}]")


def check_curve(name: str, steps: np.ndarray, values: np.ndarray, path: Path) -> None:
    """One fine-tuning curve: finite values in range at positive, increasing steps."""
    low, high = CURVE_RANGES[name]
    if not np.isfinite(values).all() or not np.isfinite(steps).all():
        raise refuse(path, f"{name} holds a value that is not finite")
    if values.min() < low - TOLERANCE or values.max() > high + TOLERANCE:
        bad = values.min() if values.min() < low - TOLERANCE else values.max()
        raise refuse(path, f"{name} holds {bad:g}, outside [{low:g}, {high:g}]")
    if (steps < 0).any() or (np.diff(steps) <= 0).any():
        raise refuse(path, "steps are not increasing")
