"""The report's "uncertainty in use" part: selective prediction, error and attack detection,
and the temperature-scaling baseline, from the stored per-sample arrays and fitted temperatures.

``analyse`` reads every cell's ``.npz`` (sample ids, predictions, scores, logits) and each
method's ``calibration/<method>.json``; ``build`` writes the tables (Markdown/LaTeX, per
data set in CSV) and figures, and returns the Markdown section and the headline extractors
``summary.build_summary`` adds to ``metrics/summary.json``.  Averages are over the
configured data sets and None ("n/a") if any is missing, as everywhere in the report.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import selective as S
from ..calibration import scores as ts_scores
from ..errors import UcatError
from ..io import write_text
from .load import Results, cell_name, mean_cells
from .reference import AVERAGE
from .render import Table, fmt, long_row, to_csv, to_latex, to_markdown, with_interval
from .tables import difference_tables, method_name

log = logging.getLogger(__name__)

REQUIRED = ("sample_id", "label", "pred", "confidence", "logits")
HEADLINE_SCORE = "msp"
TS_METRICS = (("ece", "ECE"), ("ece_adaptive", "adaptive ECE"), ("nll", "NLL"), ("brier", "Brier"))


@dataclass
class Analysis:
    res: Results
    cells: dict = field(default_factory=dict)        # (m, d, a, e) -> {"scores", "ts_before", "ts_after", "curve"}
    pooled: dict = field(default_factory=dict)       # (m, a, e) -> {"conf_before", "conf_after", "correct"}
    temperature: dict = field(default_factory=dict)  # m -> T (None if not fitted)
    calibration: dict = field(default_factory=dict)  # m -> the calibrate record
    problems: list = field(default_factory=list)     # why a cell, or its attack detection, is n/a

    @classmethod
    def mean_over(cls, per_seed: list["Analysis"], res: Results) -> "Analysis":
        """The mean over training seeds of every score (on ``res``, the seeds' mean results); the
        pooled arrays and calibration records, which figures draw, are the first seed's."""
        if len(per_seed) == 1:
            return per_seed[0]
        first = per_seed[0]
        cells, _ = mean_cells([an.cells for an in per_seed], [[] for _ in per_seed])
        temps = [an.temperature for an in per_seed]
        temperature = {m: (None if any(t.get(m) is None for t in temps) else float(np.mean([t[m] for t in temps])))
                       for m in first.temperature}
        problems = [f"seed {i}: {p}" for i, an in enumerate(per_seed) for p in an.problems]
        return cls(res, cells, first.pooled, temperature, first.calibration, problems)

    def value(self, m, d, a, e, *keys):
        node = self.cells.get((m, d, a, e))
        for k in keys:
            node = None if node is None else node.get(k)
        return node

    def mean(self, m, a, e, *keys):
        vals = [self.value(m, d, a, e, *keys) for d in self.res.setting.datasets]
        return None if not vals or any(v is None for v in vals) else float(np.mean(vals))


def load_arrays(samples_dir, m, d, a, e) -> tuple[dict | None, str]:
    """All arrays of one cell and ``""``, or None and why (absent, or written without ids/logits)."""
    path = Path(samples_dir) / m / d / f"{cell_name(a, e)}.npz"
    if not path.is_file():
        return None, f"absent: {path}"
    try:
        with np.load(path) as z:
            arrays = {k: np.asarray(z[k]) for k in z.files}
    except (OSError, ValueError) as exc:
        return None, f"unreadable: {path} ({exc.__class__.__name__})"
    lacking = [k for k in REQUIRED if k not in arrays]
    if lacking:
        return None, f"no {', '.join(lacking)} in {path} (written by an older ucat; rerun its evaluation)"
    return arrays, ""


def load_calibration(metrics_dir, method: str) -> dict | None:
    path = Path(metrics_dir) / "calibration" / f"{method}.json"
    if not path.is_file():
        return None
    rec = json.loads(path.read_text())
    if rec.get("method") != method or not isinstance(rec.get("temperature"), (int, float)):
        raise UcatError(f"{path}: not the calibration record of {method}")
    return rec


def analyse(res: Results, metrics_dir, samples_dir, ece_bins: int = 15) -> Analysis:
    s = res.setting
    an = Analysis(res)
    for m in s.methods:
        rec = load_calibration(metrics_dir, m)
        an.calibration[m] = rec
        an.temperature[m] = None if rec is None else float(rec["temperature"])
        for d in s.datasets:
            clean = None
            if s.has_clean:
                clean, why = load_arrays(samples_dir, m, d, "clean", 0)
                if clean is None:
                    an.problems.append(why)
            for a, e in s.conditions():
                if (a, e) == ("clean", 0):
                    z = clean
                else:
                    z, why = load_arrays(samples_dir, m, d, a, e)
                    if z is None:
                        an.problems.append(why)
                        continue
                if z is None:
                    continue
                where = f"{m}/{d}/{cell_name(a, e)}"
                pair = clean if a != "clean" else None
                try:
                    cell = {"scores": S.analyse_cell(z, pair, where)}
                except S.AlignmentError as exc:   # scored alone; attack detection n/a, and said so
                    an.problems.append(f"attack detection n/a: {exc}")
                    cell = {"scores": S.analyse_cell(z, None, where)}
                correct = z["pred"] == z["label"]
                cov, risk = S.risk_coverage(S.score(z, HEADLINE_SCORE), correct)
                cell["curve"] = np.interp(S.COVERAGE_GRID, cov, risk)
                cell["ts_before"] = ts_scores(z["logits"], z["label"], 1.0, ece_bins)
                t = an.temperature[m]
                if t is not None:
                    cell["ts_after"] = ts_scores(z["logits"], z["label"], t, ece_bins)
                an.cells[(m, d, a, e)] = cell
                _pool(an.pooled.setdefault((m, a, e), {}), z, t)
    return an


def _pool(acc: dict, z: dict, t: float | None) -> None:
    """Pooled confidences before/after temperature scaling, for the reliability figure."""
    logits = z["logits"].astype(np.float64)
    for key, temp in (("conf_before", 1.0), ("conf_after", t)):
        if temp is None:
            continue
        x = logits / temp
        p = np.exp(x - x.max(-1, keepdims=True))
        acc.setdefault(key, []).append(p.max(-1) / p.sum(-1))
    acc.setdefault("correct", []).append(z["pred"] == z["label"])


# --- tables -------------------------------------------------------------------------------

def _pct(v):
    return None if v is None else 100 * v


def _rows(an: Analysis, conditions, cols) -> list[list[str]]:
    """Rows method × condition; ``cols`` = [(fn(m, a, e) -> str)]."""
    s = an.res.setting
    rows = []
    for m in s.methods:
        for a, e in conditions:
            rows.append([method_name(m), s.label(a, e)] + [f(m, a, e) for f in cols])
    return rows


INTERVAL_METRICS = ("aurc", "err_auroc", "atk_auroc")   # of 1 − MSP, with intervals (ucat.report.intervals)


def tables(an: Analysis, iv=None) -> tuple[list[Table], list[dict]]:
    """The tables; ``iv`` (``intervals.Intervals``) adds the 1 − MSP values' intervals and the
    paired differences to the reference method."""
    s = an.res.setting
    conds = s.conditions()
    attacked = [(a, e) for a, e in conds if a != "clean"]
    scores = S.SCORES
    out = []

    def cell(m, a, e, k, metric):
        value = _pct(an.mean(m, a, e, "scores", k, metric))
        if iv is None or k != HEADLINE_SCORE or metric not in INTERVAL_METRICS:
            return fmt(value)
        return with_interval(value, iv.value(metric, m, AVERAGE, a, e))

    def by_score(metric, title, conditions, note=""):
        t = Table(title, ["Method", "Condition", *[S.SCORE_NAMES[k] for k in scores]], label_cols=2, note=note)
        t.rows = _rows(an, conditions, [lambda m, a, e, k=k: cell(m, a, e, k, metric) for k in scores])
        return t

    sel = Table("Selective prediction with 1 − MSP (%, mean over data sets)",
                ["Method", "Condition", "AURC ↓", "E-AURC ↓", *[f"Acc@{int(c * 100)}% cov ↑" for c in S.COVERAGES]],
                label_cols=2, note="AURC: mean selective risk over all coverages; E-AURC: its excess over the "
                                   "oracle ordering; Acc@c: accuracy on the c most certain samples."
                                   + (" [interval]: see the intervals note." if iv is not None else ""))
    sel.rows = _rows(an, conds, [lambda m, a, e, k=k: cell(m, a, e, HEADLINE_SCORE, k)
                                 for k in ("aurc", "eaurc", *[f"sel_acc@{int(c * 100)}" for c in S.COVERAGES])])
    out.append(sel)
    eu_note = ("EU is n/a where it is constant or saturated in some data set (see `ucat.selective.usable`).")
    out.append(by_score("aurc", "AURC by uncertainty score (%, lower is better)", conds, eu_note))
    out.append(by_score("err_auroc", "Misclassification detection: AUROC (%, higher is better)", conds))
    out.append(by_score("err_aupr", "Misclassification detection: AUPR, errors positive (%)", conds))
    out.append(by_score("err_fpr95", "Misclassification detection: FPR at 95% TPR (%, lower is better)", conds))
    if attacked:
        out.append(by_score("atk_auroc", "Attack detection: AUROC of attacked vs the same clean images (%)", attacked,
                            "0.5 = the score cannot tell an attacked image from its clean version; below 50 the "
                            "attack makes the model *more* certain."))
    ts = Table("Temperature scaling (T fitted on the held-out clean split; %, NLL in nats): before → after",
               ["Method", "Condition", "T", *[n for _, n in TS_METRICS]], label_cols=2)

    def arrow(m, a, e, k):
        b, f = an.mean(m, a, e, "ts_before", k), an.mean(m, a, e, "ts_after", k)
        scale = 1.0 if k == "nll" else 100.0
        return f"{fmt(None if b is None else scale * b)} → {fmt(None if f is None else scale * f)}"

    ts.rows = _rows(an, conds, [lambda m, a, e: fmt(an.temperature.get(m), None)]
                    + [lambda m, a, e, k=k: arrow(m, a, e, k) for k, _ in TS_METRICS])
    out.append(ts)
    out += difference_tables(iv, INTERVAL_METRICS, s.methods)
    return out, _long_rows(an)


def _long_rows(an: Analysis) -> list[dict]:
    """Per data set and mean, every metric of every score (the CSV)."""
    s = an.res.setting
    rows = []
    for m in s.methods:
        for a, e in s.conditions():
            for d in (*s.datasets, "average"):
                get = (lambda *k: an.value(m, d, a, e, *k)) if d != "average" else (lambda *k: an.mean(m, a, e, *k))
                for k in S.SCORES:
                    for metric in ("aurc", "eaurc", *[f"sel_acc@{int(c * 100)}" for c in S.COVERAGES],
                                   "err_auroc", "err_aupr", "err_fpr95", "atk_auroc", "atk_paired_rise"):
                        if a == "clean" and metric.startswith("atk_"):
                            continue
                        rows.append(long_row("uncertainty_use", m, d, a, e, f"{k}:{metric}", get("scores", k, metric)))
                for k, _ in TS_METRICS:
                    rows.append(long_row("uncertainty_use", m, d, a, e, f"{k}:before", get("ts_before", k)))
                    rows.append(long_row("uncertainty_use", m, d, a, e, f"{k}:after_ts", get("ts_after", k)))
            rows.append(long_row("uncertainty_use", m, "", a, e, "temperature", an.temperature.get(m)))
    return rows


# --- headlines for metrics/summary.json ---------------------------------------------------

def headline_extractors(an: Analysis) -> list:
    """``summary.HEADLINE``-style ``(name, fn(res, method, attack, eps))`` entries, in %, mean over
    data sets, 1 − MSP as the score: AURC, error-detection AUROC, attack-detection AUROC (attacked
    conditions only; None on clean) and ECE after temperature scaling."""
    def score_mean(metric):
        return lambda res, m, a, e: _pct(an.mean(m, a, e, "scores", HEADLINE_SCORE, metric))

    return [("aurc", score_mean("aurc")), ("error_auroc", score_mean("err_auroc")),
            ("attack_auroc", lambda res, m, a, e: None if a == "clean" else score_mean("atk_auroc")(res, m, a, e)),
            ("ece_ts", lambda res, m, a, e: _pct(an.mean(m, a, e, "ts_after", "ece")))]


# --- figures ------------------------------------------------------------------------------

def _figures(an: Analysis, fig_dir: Path, formats) -> list[Path]:
    from . import figures as F
    from . import uncertainty_use_figures as UF

    s = an.res.setting
    jobs = []
    for e in s.eps:
        jobs += [(f"risk_coverage_eps{e}", lambda e=e: UF.risk_coverage_figure(an, e)),
                 (f"error_detection_auroc_eps{e}", lambda e=e: UF.auroc_bars_figure(an, e, "err_auroc")),
                 (f"attack_detection_auroc_eps{e}", lambda e=e: UF.auroc_bars_figure(an, e, "atk_auroc")),
                 (f"reliability_temperature_scaled_eps{e}", lambda e=e: UF.reliability_ts_figure(an, e))]
    return F.render(jobs, fig_dir, formats)


FIGURE_CAPTIONS = {
    "risk_coverage": "Risk–coverage curves (1 − MSP, mean over data sets) per method, clean vs each attack; "
                     "lower is better, the dotted line is the oracle on clean data.",
    "error_detection_auroc": "Misclassification-detection AUROC per method and uncertainty score, per condition.",
    "attack_detection_auroc": "Attack-detection AUROC (attacked vs the same clean images) per method and score.",
    "reliability_temperature_scaled": "Reliability before (hollow) and after (filled) temperature scaling, "
                                      "pooled over data sets; ECE before → after in the corner.",
}


def build(an: "Analysis", res: Results, cfg: dict, out: Path, formats=("png", "pdf"),
          figures: bool = True, iv=None, fig_dir=None) -> dict:
    """Write the tables and figures of ``an`` (``analyse``, read before anything is written);
    return ``{"tables", "figures", "markdown", "headlines"}``.  ``iv``: the report's intervals;
    ``fig_dir``: where figures go (default ``out/figures``; see ``figures.folder_for``)."""
    tabs, rows = tables(an, iv)
    md = "".join(to_markdown(t) + "\n" for t in tabs)
    for why in an.problems:
        log.warning("report: uncertainty in use: %s", why)
    missing_t = [m for m in res.setting.methods if an.temperature.get(m) is None]
    notes = []
    if missing_t:
        notes.append(f"No fitted temperature for {', '.join(missing_t)} (run `ucat calibrate`): after-TS cells n/a.")
    from ..data.heldout import overlaps_evaluation

    try:
        overlap = overlaps_evaluation(cfg)
    except KeyError:
        overlap = False
    if overlap:
        notes.append(f"The held-out split of {cfg['data']['finetune']} is also one of the evaluation sets: its "
                     f"after-TS numbers are fitted partly on the images they score (optimistic).")
    fitted = [f"{method_name(m)} {an.temperature[m]:.3g}" for m in res.setting.methods if an.temperature.get(m)]
    head = ["Scores are uncertainties (higher = less sure): 1 − max softmax probability, predictive entropy, "
            "AU and EU. Attack detection pairs every attacked image with its own clean version, checked by "
            "stored sample id. Temperatures (fitted per model on "
            f"{cfg.get('data', {}).get('heldout', '?')} held-out clean images of {cfg.get('data', {}).get('finetune', '?')}): "
            + (", ".join(fitted) or "none") + ".", *notes, ""]
    if an.problems:
        head += [f"**{len(an.problems)} cell(s) not analysed (n/a):**", "", *[f"- {w}" for w in an.problems], ""]
    paths = []
    for ext, text in (("md", "# Uncertainty in use\n\n" + "\n".join(head) + "\n" + md),
                      ("tex", "\n".join(map(to_latex, tabs))), ("csv", to_csv(rows))):
        p = out / "tables" / f"uncertainty_use.{ext}"
        write_text(p, text)
        paths.append(p)
    figs = _figures(an, out / "figures" if fig_dir is None else fig_dir, formats) if figures else []
    return {"tables": paths, "figures": figs, "markdown": "\n".join(head) + "\n" + md,
            "headlines": headline_extractors(an), "analysis": an}
