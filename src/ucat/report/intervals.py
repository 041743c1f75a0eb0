"""Is a difference real?  The report's confidence intervals and paired differences.

``analyse`` reads the per-sample arrays of every cell, for every seed's results root, and runs
one bootstrap (``ucat.stats``) whose resamples are shared by every method and condition of a
data set: each method's value and each difference *reference − method* come with an interval
over the test images (and over seeds when there are several), paired because both terms of a
difference are computed on the same resampled images, checked by stored ``sample_id``.

Metrics (1 − MSP is the score, as in the headline numbers): top-1 accuracy, ECE, AURC, the
misclassification- and attack-detection AUROCs, and H (harmonic mean of the clean and robust
averages; averages only).  All in %.  An average over data sets needs every data set, a value
over seeds every seed, as everywhere in the report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from .. import paths
from .. import selective as S
from .. import stats
from ..errors import ConfigError
from .load import Setting, cell_name
from .reference import AVERAGE
from .validate import check_samples

METRICS = ("accuracy", "ece", "aurc", "err_auroc", "atk_auroc", "H")
LABELS = {"accuracy": "Top-1 accuracy", "ece": "ECE", "aurc": "AURC (1 − MSP)",
          "err_auroc": "Error-detection AUROC (1 − MSP)", "atk_auroc": "Attack-detection AUROC (1 − MSP)",
          "H": "H(clean, robust)"}
LOWER_IS_BETTER = {"ece", "aurc"}
KEYS = ("sample_id", "label", "pred", "confidence")
DEFAULTS = {"confidence": 0.95, "resamples": 2000, "method": "percentile", "reference": "ucat", "seed": 0}


@dataclass(frozen=True)
class Settings:
    """``report.intervals``: interval level, resamples (0: no intervals), interval method
    (``percentile``, ``basic``, ``bca``), the reference method of the differences, RNG seed."""
    confidence: float = 0.95
    resamples: int = 2000
    method: str = "percentile"
    reference: str = "ucat"
    seed: int = 0

    @classmethod
    def from_config(cls, cfg: dict) -> "Settings | None":
        """None when the configuration asks for no intervals (no ``report.intervals``, or 0 resamples)."""
        raw = cfg.get("report", {}).get("intervals")
        if not raw or not raw.get("resamples"):
            return None
        s = cls(**{k: raw.get(k, v) for k, v in DEFAULTS.items()})
        if s.method not in stats.METHODS:
            raise ConfigError(f"report.intervals.method: unknown value {s.method!r}; allowed: {', '.join(stats.METHODS)}")
        return s

    def describe(self, seeds: int, methods=()) -> str:
        """What an interval means, for the report's Markdown."""
        kind = {"percentile": "percentile", "basic": "basic (reverse percentile)", "bca": "BCa"}[self.method]
        over = ("the test images" if seeds == 1 else
                f"the {seeds} seeds and the test images (two-stage: the seeds resampled with replacement, "
                f"then the images of each data set; conservative)")
        return (f"Intervals: {100 * self.confidence:g} % {kind} bootstrap intervals over {over}, {self.resamples} "
                f"resamples (`scipy.stats.bootstrap`, seed {self.seed}). Every statistic is recomputed on each "
                f"resample of the images (ECE, AURC and AUROC are not means of per-image values); the data sets are "
                f"resampled independently, and every method and condition of a data set shares the same resampled "
                f"images (paired by stored `sample_id`), so a difference Δ = {self.reference} − method is "
                f"compared on the same images. **\\*** marks a Δ whose interval excludes 0. "
                + ("With one seed the intervals cover the test-image sampling only, not the training noise "
                   "(a rerun with another seed can move a value by more). " if seeds == 1 else
                   f"Across seeds: mean ± standard deviation and a Student-t {100 * self.confidence:g} % interval over "
                   f"the {seeds} per-seed values. ")
                + "Intervals are per comparison, not corrected for the many comparisons shown (at 95 %, about one "
                  "in twenty differences of zero would still be starred). ECE is biased upwards on small sets and its "
                  "bootstrap more so: an ECE interval can lie above its own value; the paired Δ of two ECEs is much "
                  "less affected (docs/statistics.md)."
                + (f" The reference method {self.reference} was not run: no differences." if methods and
                   self.reference not in methods else ""))


@dataclass
class Intervals:
    """Lookup of the bootstrap results: ``value``/``diff`` -> ``stats.Interval`` in %, or None."""
    settings: Settings
    setting: Setting
    seeds: int
    boot: stats.Bootstrap | None = None
    per_seed: np.ndarray | None = None       # (2, metrics, methods, conditions, datasets + 1, seeds)
    problems: list = field(default_factory=list)

    @property
    def reference(self) -> str:
        return self.settings.reference

    def _index(self, kind: int, metric: str, method: str, dataset: str, attack: str, eps: int):
        s = self.setting
        if metric not in METRICS or method not in s.methods or (attack, eps) not in s.conditions():
            return None
        datasets = (*s.datasets, AVERAGE)
        if dataset not in datasets:
            return None
        shape = (2, len(METRICS), len(s.methods), len(s.conditions()), len(datasets))
        return np.ravel_multi_index((kind, METRICS.index(metric), s.methods.index(method),
                                     s.conditions().index((attack, eps)), datasets.index(dataset)), shape)

    def value(self, metric, method, dataset, attack, eps) -> stats.Interval | None:
        """``metric`` of ``method`` on ``dataset`` (or ``AVERAGE``) with its interval, %."""
        i = self._index(0, metric, method, dataset, attack, eps)
        return None if i is None or self.boot is None else self.boot.interval(int(i)).scaled(100.0)

    def diff(self, metric, method, dataset, attack, eps) -> stats.Interval | None:
        """reference − ``method`` with its paired interval, % points; None for the reference itself."""
        if method == self.reference or self.reference not in self.setting.methods:
            return None
        i = self._index(1, metric, method, dataset, attack, eps)
        return None if i is None or self.boot is None else self.boot.interval(int(i)).scaled(100.0)

    def across_seeds(self, metric, method, dataset, attack, eps, diff: bool = False) -> stats.SeedSummary | None:
        """Mean ± std and t-interval over the seeds' own values (%); None with one seed."""
        i = self._index(int(diff), metric, method, dataset, attack, eps)
        if i is None or self.per_seed is None or self.seeds < 2 or (diff and (
                method == self.reference or self.reference not in self.setting.methods)):
            return None
        values = self.per_seed.reshape(-1, self.seeds)[int(i)]
        return stats.across_seeds([None if not np.isfinite(v) else 100.0 * v for v in values],
                                  self.settings.confidence)


# --- metrics/summary.json and the CSV ------------------------------------------------------

HEADLINE_METRICS = {"acc": "accuracy", "ece": "ece"}


def headline_extractors(iv: Intervals) -> list:
    """``summary.HEADLINE``-style entries: per method other than the reference and condition, the
    paired difference reference − method in accuracy and ECE (mean over data sets, %) and its
    interval, as ``<reference>_minus_<field>`` with ``_lo`` and ``_hi``; left out for the reference."""
    from .summary import SKIP

    if iv.reference not in iv.setting.methods:
        return []

    def field(metric, part):
        def get(res, m, a, e):
            if m == iv.reference:
                return SKIP
            d = iv.diff(metric, m, AVERAGE, a, e)
            return None if d is None else getattr(d, part)
        return get

    return [(f"{iv.reference}_minus_{name}{suffix}", field(metric, part))
            for name, metric in HEADLINE_METRICS.items()
            for suffix, part in (("", "value"), ("_lo", "lo"), ("_hi", "hi"))]


DIFFERENCE_COLUMNS = ("metric", "reference", "method", "dataset", "attack", "eps", "value", "lo", "hi",
                      "reference_value", "diff", "diff_lo", "diff_hi", "excludes_zero",
                      "seeds", "diff_seed_mean", "diff_seed_std", "diff_seed_lo", "diff_seed_hi")


def long_rows(iv: Intervals) -> list[dict]:
    """Every value and paired difference, per data set and average (``differences.csv``), in %."""
    s, rows = iv.setting, []
    r4 = (lambda v: "" if v is None else round(v, 4))
    for metric in METRICS:
        for m in s.methods:
            for a, e in s.conditions():
                for d in (*s.datasets, AVERAGE):
                    v = iv.value(metric, m, d, a, e)
                    if v is None or v.value is None:
                        continue
                    ref = iv.value(metric, iv.reference, d, a, e)
                    diff = iv.diff(metric, m, d, a, e) or stats.Interval(None)
                    spread = iv.across_seeds(metric, m, d, a, e, diff=True) or stats.SeedSummary(iv.seeds, *[None] * 4)
                    rows.append({"metric": metric, "reference": iv.reference, "method": m, "dataset": d,
                                 "attack": a, "eps": e, "value": r4(v.value), "lo": r4(v.lo), "hi": r4(v.hi),
                                 "reference_value": r4(ref.value if ref else None), "diff": r4(diff.value),
                                 "diff_lo": r4(diff.lo), "diff_hi": r4(diff.hi),
                                 "excludes_zero": {True: "yes", False: "no", None: ""}[diff.excludes_zero],
                                 "seeds": iv.seeds, "diff_seed_mean": r4(spread.mean), "diff_seed_std": r4(spread.std),
                                 "diff_seed_lo": r4(spread.lo), "diff_seed_hi": r4(spread.hi)})
    return rows


@dataclass
class _Cell:
    method: int
    condition: int
    dataset: int
    seed: int
    msp: stats.MspCell
    attack: stats.AttackDetection | None = None


def load_cell(samples_dir, method: str, dataset: str, attack: str, eps: int) -> tuple[dict | None, str]:
    """The arrays of one cell the intervals need, or None and why."""
    path = Path(samples_dir) / paths.SAMPLE_CELL.format(method=method, dataset=dataset, attack=attack, eps=eps)
    if not path.is_file():
        return None, f"absent: {path}"
    try:
        with np.load(path) as z:
            lacking = [k for k in KEYS if k not in z.files]
            if lacking:
                return None, f"no {', '.join(lacking)} in {path} (written by an older ucat; rerun its evaluation)"
            arrays = {k: np.asarray(z[k]) for k in KEYS}
    except (OSError, ValueError) as exc:
        return None, f"unreadable: {path} ({exc.__class__.__name__})"
    check_samples({k: arrays[k] for k in ("label", "pred", "confidence")}, path, None)
    return arrays, ""


def analyse(setting: Setting, samples_dirs: Sequence, settings: Settings, ece_bins: int = 15) -> Intervals:
    """Bootstrap every cell of ``setting`` over the results roots ``samples_dirs`` (one per seed)."""
    seeds = len(samples_dirs)
    iv = Intervals(settings, setting, seeds)
    conds = setting.conditions()
    cells, strata = [], []            # strata: (dataset index, seeds, size)
    for d_i, d in enumerate(setting.datasets):
        ids = {}
        for s_i, root in enumerate(samples_dirs):
            found = _dataset_cells(root, setting, d, d_i, s_i, conds, ece_bins, iv.problems)
            if found:
                cells += found[0]
                ids[s_i] = found[1]
        if not ids:
            continue
        first = next(iter(ids.values()))
        if all(np.array_equal(first, v) for v in ids.values()):
            strata.append((d_i, tuple(ids), len(first)))       # the same images in every seed: one draw
        else:
            strata += [(d_i, (s_i,), len(v)) for s_i, v in ids.items()]
    if not cells:
        iv.problems.append("no per-sample arrays: no intervals")
        return iv
    ref = setting.methods.index(settings.reference) if settings.reference in setting.methods else 0
    shape = (len(METRICS), len(setting.methods), len(conds), len(setting.datasets))
    # clean first in every stratum: attack detection reads the clean cell's running sum
    by_stratum = [sorted((c for c in cells if c.dataset == d_i and c.seed in ss), key=lambda c: c.condition)
                  for d_i, ss, _ in strata]

    def per_seed_values(draws: list[stats.Draws]) -> np.ndarray:
        """(metrics, methods, conditions, datasets, seeds, b) on one batch of resamples."""
        b = max(len(x.total) for x in draws)
        v = np.full((*shape, seeds, b), np.nan)
        for stratum, x in zip(by_stratum, draws):
            clean_sum = {}
            for c in stratum:
                sc = c.msp.sorted_counts(x)
                if c.condition == 0:
                    clean_sum[(c.method, c.seed)] = sc[1]
                for name, val in c.msp.statistics(x, sc).items():
                    v[METRICS.index(name), c.method, c.condition, c.dataset, c.seed] = val
                if c.attack is not None and (c.method, c.seed) in clean_sum:
                    v[METRICS.index("atk_auroc"), c.method, c.condition, c.dataset, c.seed] = \
                        c.attack.auroc(x, clean_sum[(c.method, c.seed)])
        return v

    def combine(v: np.ndarray, seed_weights: np.ndarray) -> np.ndarray:
        """(2, metrics, methods, conditions, datasets + 1, b): values and reference − method."""
        w = seed_weights.T[None, None, None, None]                  # (1, 1, 1, 1, seeds, b)
        with np.errstate(invalid="ignore"):
            mean = (v * w).sum(4) / w.sum(4) if seeds > 1 else v[:, :, :, :, 0]
        avg = mean.mean(3, keepdims=True)                          # NaN unless every data set is there
        vals = np.concatenate([mean, avg], axis=3)
        acc = vals[METRICS.index("accuracy"), :, :, -1]
        clean, robust = acc[:, :1], acc
        with np.errstate(invalid="ignore", divide="ignore"):       # H = 0 when both are 0; NaN stays NaN
            h = np.where(clean + robust == 0, 0.0, 2 * clean * robust / (clean + robust))
        vals[METRICS.index("H"), :, :, -1] = np.where(np.arange(len(conds))[None, :, None] > 0, h, np.nan)
        return np.stack([vals, vals[:, ref:ref + 1] - vals])

    def statistic(draws: list[stats.Draws]) -> np.ndarray:
        image_draws, seed_draw = (draws[:-1], draws[-1]) if seeds > 1 else (draws, None)
        v = per_seed_values(image_draws)
        b = v.shape[-1]
        w = np.broadcast_to(seed_draw.counts, (b, seeds)).astype(np.float64) if seed_draw else np.ones((b, 1))
        return combine(v, w).reshape(-1, b)

    sizes = [n for _, _, n in strata] + ([seeds] if seeds > 1 else [])
    iv.boot = stats.bootstrap(sizes, statistic, resamples=settings.resamples, confidence=settings.confidence,
                              method=settings.method, seed=settings.seed)
    # each seed's own values (no resampling), for the spread over seeds
    whole = per_seed_values([stats.Draws.whole(n) for _, _, n in strata])
    iv.per_seed = np.stack([combine(whole[:, :, :, :, [s]], np.ones((1, 1))) for s in range(seeds)], axis=-1)[..., 0, :]
    return iv


def _dataset_cells(root, setting: Setting, d: str, d_i: int, s_i: int, conds, ece_bins: int, problems: list):
    """The scored cells of one data set in one seed's root, and the sample ids they share."""
    out, ids, where_ids = [], None, ""
    for m_i, m in enumerate(setting.methods):
        clean = None
        for c_i, (a, e) in enumerate(conds):
            z, why = load_cell(root, m, d, a, e)
            where = f"{root}: {m}/{d}/{cell_name(a, e)}"
            if z is None:
                problems.append(f"{why}: no interval")
                continue
            try:
                if ids is None:
                    ids, where_ids = z, where
                else:                 # every method and condition on the same images, in the same order
                    S.aligned(ids, z, f"{where} vs {where_ids}")
                msp = stats.MspCell(z["confidence"], z["pred"] == z["label"], ece_bins)
            except (S.AlignmentError, ValueError) as exc:
                problems.append(f"{exc}: no interval")
                continue
            cell = _Cell(m_i, c_i, d_i, s_i, msp)
            if (a, e) == ("clean", 0):
                clean = msp
            elif clean is not None:
                cell.attack = stats.AttackDetection(clean, z["confidence"])
            out.append(cell)
    return (out, ids["sample_id"]) if out else None
