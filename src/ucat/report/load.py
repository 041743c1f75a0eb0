"""Read what the evaluation and fine-tuning stages wrote, and nothing else.

Every cell the configuration asks for is looked up; one that is absent, unreadable or
labelled as a different cell is recorded as missing (the report shows "n/a"), never
filled in from elsewhere.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import data, paths
from ..attacks import ATTACKS
from ..errors import MetricsError
from .validate import CELL_METRICS, check_cell, check_curve, check_samples

CLEAN = ("clean", 0)
ATTACK_ORDER = tuple(a for a in ATTACKS if a != "clean")   # the attacked conditions, in the registry's order
SAMPLE_ARRAYS = ("label", "pred", "confidence", "entropy", "aleatoric", "epistemic")
TRAIN_LOGS = ("loss", "adv_acc", "ce", "align", "lr")


@dataclass(frozen=True)
class Setting:
    """The part of the configuration the report depends on."""
    methods: tuple[str, ...]
    datasets: tuple[str, ...]
    attacks: tuple[str, ...]          # the attacked conditions, in a fixed order; no "clean"
    eps: tuple[int, ...]
    has_clean: bool
    steps: dict = field(default_factory=dict)
    backbone: str = ""

    @classmethod
    def from_config(cls, cfg: dict, backbone: str = "") -> "Setting":
        """``backbone``: the open_clip name the cells were made with (pairs them with the paper's)."""
        ev = cfg["evaluate"]
        asked = list(ev["attacks"])
        # the single-label sets; the multi-label ones (MS-COCO) have tables of their own (report.multilabel)
        datasets = tuple(d for d in cfg["data"]["datasets"] if not data.is_multilabel(d))
        return cls(methods=tuple(cfg["methods"]), datasets=datasets,
                   attacks=tuple(a for a in ATTACK_ORDER if a in asked),
                   eps=tuple(sorted(int(e) for e in ev["eps"])), has_clean=True,  # always evaluated
                   steps={a: int(ev[a]["steps"]) for a in ("pgd", "cw") if a in ev and "steps" in ev[a]},
                   backbone=backbone)

    def conditions(self, eps: int | None = None) -> list[tuple[str, int]]:
        """(attack, ε) pairs asked for: clean first, then each attack at each ε (or one ε)."""
        out = [CLEAN] if self.has_clean else []
        for e in (self.eps if eps is None else (eps,)):
            out += [(a, e) for a in self.attacks]
        return out

    def label(self, attack: str, eps: int | None = None) -> str:
        """Column label with the steps actually run, e.g. "PGD-10"; "ε=2" appended if given."""
        base = {"clean": "Clean", "pgd": f"PGD-{self.steps.get('pgd', '?')}",
                "cw": f"CW-{self.steps.get('cw', '?')}", "autoattack": "AA"}[attack]
        return base if eps is None or attack == "clean" else f"{base} ε={eps}/255"


def cell_name(attack: str, eps: int) -> str:
    return f"{attack}_eps{eps}"


def _finite_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


@dataclass
class Results:
    """Loaded evaluation cells keyed by (method, dataset, attack, ε), plus what is missing."""
    setting: Setting
    cells: dict = field(default_factory=dict)
    missing: list = field(default_factory=list)   # [(method, dataset, attack, eps, reason)]

    def get(self, method: str, dataset: str, attack: str, eps: int, metric: str) -> float | None:
        if metric not in CELL_METRICS:  # a metric the report reads must be one load_results checked
            raise KeyError(f"{metric}: give it a range in ucat.report.validate.CELL_METRICS")
        cell = self.cells.get((method, dataset, attack, eps))
        v = None if cell is None else cell.get(metric)
        return float(v) if _finite_number(v) else None

    def pct(self, method, dataset, attack, eps, metric="accuracy") -> float | None:
        v = self.get(method, dataset, attack, eps, metric)
        return None if v is None else 100.0 * v

    def mean(self, method: str, attack: str, eps: int, metric: str = "accuracy",
             scale: float = 100.0) -> float | None:
        """Mean over the configured data sets; None if any of them is missing."""
        vals = [self.get(method, d, attack, eps, metric) for d in self.setting.datasets]
        if not vals or None in vals:
            return None
        return scale * sum(vals) / len(vals)

    def convention(self) -> str | None:
        """The cells' common ``uncertainty_convention`` ("paper" or "code"); None if unknown or mixed."""
        found = {c.get("uncertainty_convention") for c in self.cells.values()}
        return found.pop() if len(found) == 1 else None

    def harmonic(self, method: str, attack: str, eps: int) -> float | None:
        """H(clean average, robust average) in %, as in the paper's main table."""
        a, b = self.mean(method, "clean", 0), self.mean(method, attack, eps)
        if a is None or b is None:
            return None
        return 0.0 if a + b == 0 else 2 * a * b / (a + b)


def load_results(setting: Setting, metrics_dir: str | Path) -> Results:
    """Read every ``eval/{method}/{dataset}/{attack}_eps{eps}.json`` the setting asks for."""
    res = Results(setting)
    for m in setting.methods:
        for d in setting.datasets:
            for a, e in setting.conditions():
                path = Path(metrics_dir) / paths.EVAL_CELL.format(method=m, dataset=d, attack=a, eps=e)
                cell, reason = _read_cell(path, (m, d, a, e))
                if cell is None:
                    res.missing.append((m, d, a, e, reason))
                else:
                    res.cells[(m, d, a, e)] = cell
    return res


def _read_cell(path: Path, key: tuple) -> tuple[dict | None, str]:
    if not path.is_file():
        return None, f"absent: {path}"
    try:
        cell = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        return None, f"unreadable: {path} ({exc.__class__.__name__})"
    if not isinstance(cell, dict):
        return None, f"not a JSON object: {path}"
    found = (cell.get("method"), cell.get("dataset"), cell.get("attack"), cell.get("eps"))
    if found != key:
        return None, f"labelled {found} instead of {key}: {path}"
    check_cell(cell, path)
    return cell, ""


def load_samples(samples_dir: str | Path, method: str, dataset: str, attack: str,
                 eps: int, num_classes: int | None = None) -> dict[str, np.ndarray] | None:
    """Per-sample arrays of one cell, or None if the file is absent or unreadable.

    Raises MetricsError for arrays of the wrong type, length or range."""
    path = Path(samples_dir) / paths.SAMPLE_CELL.format(method=method, dataset=dataset, attack=attack, eps=eps)
    if not path.is_file():
        return None
    try:
        with np.load(path) as z:
            arrays = {k: np.asarray(z[k]) for k in SAMPLE_ARRAYS if k in z.files}
    except (OSError, ValueError):
        return None
    check_samples(arrays, path, num_classes)
    return arrays


def load_train_logs(metrics_dir: str | Path, method: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{name: (steps, values)}`` from dvclive's per-step TSVs; empty for methods not fine-tuned."""
    root = Path(metrics_dir) / paths.TRAIN_RUN.format(method=method)
    out = {}
    for name in TRAIN_LOGS:
        path = root / paths.TRAIN_CURVE.format(name=name)
        if not path.is_file():
            continue
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
        if not rows:
            continue
        try:
            pts = [(float(r["step"]), float(r[name])) for r in rows]
        except (KeyError, TypeError, ValueError):
            raise MetricsError(f"{path}: not a step/{name} table of numbers; the report refuses it") from None
        steps, vals = np.array(pts).T
        check_curve(name, steps, vals, path)
        out[name] = (steps, vals)
    return out
