"""Read what the evaluation and fine-tuning stages wrote, and nothing else.

Every cell the configuration asks for is looked up.  One that is absent is recorded as
missing (the report shows "n/a"), never filled in from elsewhere.  One that is present but
unreadable, empty, labelled as a different cell, or at odds with its own per-sample arrays
(accuracy and count recomputed from the stored predictions) was not written by the evaluation
stage as it stands: the report refuses it, naming the file.
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
from .validate import CELL_METRICS, check_cell, check_curve, check_samples, refuse

CLEAN = ("clean", 0)
ATTACK_ORDER = tuple(a for a in ATTACKS if a != "clean")   # the attacked conditions, in the registry's order
STEPPED = ("pgd", "cw", "caa", "a3")   # attacks whose label carries their step count
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
                   steps={a: int(ev[a]["steps"]) for a in STEPPED if a in ev and "steps" in ev[a]},
                   backbone=backbone)

    def conditions(self, eps: int | None = None) -> list[tuple[str, int]]:
        """(attack, ε) pairs asked for: clean first, then each attack at each ε (or one ε)."""
        out = [CLEAN] if self.has_clean else []
        for e in (self.eps if eps is None else (eps,)):
            out += [(a, e) for a in self.attacks]
        return out

    def label(self, attack: str, eps: int | None = None) -> str:
        """Column label with the steps actually run, e.g. "PGD-10"; "ε=2" appended if given."""
        names = {"clean": "Clean", "pgd": "PGD", "cw": "CW", "autoattack": "AA", "caa": "CAA", "a3": "A³"}
        base = f"{names[attack]}-{self.steps.get(attack, '?')}" if attack in STEPPED else names[attack]
        return base if eps is None or attack == "clean" else f"{base} ε={eps}/255"


def cell_name(attack: str, eps: int) -> str:
    return f"{attack}_eps{eps}"


def _finite_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def mean_tree(trees: list):
    """The mean over seeds of same-shaped JSON-like trees: numbers are averaged (None if any seed has
    none), mappings recurse; anything else (labels, per-bin lists) is the first seed's."""
    first = trees[0]
    if len(trees) == 1:
        return first
    if isinstance(first, dict):
        return {k: mean_tree([t.get(k) if isinstance(t, dict) else None for t in trees]) for k in first}
    if _finite_number(first) and not isinstance(first, bool):
        return float(np.mean(trees)) if all(_finite_number(t) for t in trees) else None
    return first


def mean_cells(per_seed: list[dict], missing: list[list]) -> tuple[dict, list]:
    """Cells present in every seed, averaged (``mean_tree``); a cell missing in any seed is missing."""
    seeds_missing = [(*m[:4], f"seed {i}: {m[4]}") for i, ms in enumerate(missing) for m in ms]
    keys = [k for k in per_seed[0] if all(k in cells for cells in per_seed)]
    return {k: mean_tree([cells[k] for cells in per_seed]) for k in keys}, seeds_missing


@dataclass
class Results:
    """Loaded evaluation cells keyed by (method, dataset, attack, ε), plus what is missing."""
    setting: Setting
    cells: dict = field(default_factory=dict)
    missing: list = field(default_factory=list)   # [(method, dataset, attack, eps, reason)]

    @classmethod
    def mean_over(cls, per_seed: list["Results"]) -> "Results":
        """The mean over training seeds of each cell (one seed: that seed's results)."""
        if len(per_seed) == 1:
            return per_seed[0]
        cells, missing = mean_cells([r.cells for r in per_seed], [r.missing for r in per_seed])
        return cls(per_seed[0].setting, cells, missing)

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


def load_results(setting: Setting, metrics_dir: str | Path, samples_dir: str | Path | None = None) -> Results:
    """Read every ``eval/{method}/{dataset}/{attack}_eps{eps}.json`` the setting asks for, each
    checked against its per-sample arrays under ``samples_dir`` where those exist."""
    res = Results(setting)
    for m in setting.methods:
        for d in setting.datasets:
            for a, e in setting.conditions():
                path = Path(metrics_dir) / paths.EVAL_CELL.format(method=m, dataset=d, attack=a, eps=e)
                if not path.is_file():
                    res.missing.append((m, d, a, e, f"absent: {path}"))
                    continue
                cell = read_cell(path, (m, d, a, e))
                if samples_dir is not None:
                    npz = Path(samples_dir) / paths.SAMPLE_CELL.format(method=m, dataset=d, attack=a, eps=e)
                    _check_against_samples(cell, path, npz)
                res.cells[(m, d, a, e)] = cell
    return res


def read_cell(path: Path, key: tuple, check=check_cell) -> dict:
    """A present cell file, refused (naming it) if unreadable, empty, mislabelled or failing ``check``."""
    try:
        cell = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise refuse(path, f"unreadable ({exc.__class__.__name__})") from None
    if not isinstance(cell, dict) or not cell:
        raise refuse(path, "not an evaluation cell (empty or not a JSON object)")
    found = (cell.get("method"), cell.get("dataset"), cell.get("attack"), cell.get("eps"))
    if found != key:
        raise refuse(path, f"labelled {found} instead of {key}")
    check(cell, path)
    return cell


def _check_against_samples(cell: dict, path: Path, npz: Path) -> None:
    """The cell's count and accuracy are what its stored predictions give."""
    if not npz.is_file():
        return
    try:
        with np.load(npz) as z:
            if "target" in z.files:                   # a multi-label cell: its count (its metrics: report.multilabel)
                n = len(z["target"])
                if cell.get("n", n) != n:
                    raise refuse(path, f"n = {cell['n']!r} disagrees with its per-sample arrays {npz} ({n})")
                return
            label, pred = np.asarray(z["label"]), np.asarray(z["pred"])
    except (OSError, ValueError, KeyError) as exc:
        raise refuse(npz, f"unreadable per-sample arrays ({exc.__class__.__name__})") from None
    n, acc = len(label), float((pred == label).mean()) if len(label) else math.nan
    if ("n" in cell and cell["n"] != n) or not math.isclose(cell["accuracy"], acc, rel_tol=0, abs_tol=1e-12):
        raise refuse(path, f"accuracy {cell['accuracy']!r} over n = {cell.get('n')!r} disagrees with its "
                            f"per-sample arrays {npz} ({acc!r} over {n})")


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
