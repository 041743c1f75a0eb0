"""The report's figures, drawn from the loaded metrics (matplotlib, Agg backend).

Each ``*_figure`` function returns a matplotlib Figure, or None when there is nothing to
draw; ``save`` writes PNG and PDF atomically.  One colour per method everywhere, one
colour/marker per attack condition, so figures read together.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402
from scipy.stats import skew  # noqa: E402

from ..io import atomic_path  # noqa: E402
from .intervals import LABELS, LOWER_IS_BETTER  # noqa: E402
from .load import Results  # noqa: E402
from .reference import AVERAGE  # noqa: E402
from .tables import dataset_name, method_name  # noqa: E402

# one colour per method of ucat.methods.METHODS (tests/test_registries.py checks the keys)
METHOD_COLOURS = {"clip": "#7f7f7f", "tecoa": "#1f77b4", "fare": "#ff7f0e", "pmg_aft": "#2ca02c", "ucat": "#d62728",
                  "tga_zsr": "#9467bd", "comp_tga": "#8c564b",
                  "kl_prob_forward": "#17becf", "kl_prob_reverse": "#bcbd22", "kl_dir_forward": "#e377c2"}
_SPARE = ["#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd", "#e6550d", "#31a354"]
# colour, marker, hatch per attack of ucat.attacks.ATTACKS
COND_STYLE = {"clean": ("#222222", "o", None), "pgd": ("#d95f02", "^", "///"),
              "cw": ("#7570b3", "s", "\\\\\\"), "autoattack": ("#1b9e77", "D", "xxx"),
              "caa": ("#e7298a", "v", "..."), "a3": ("#66a61e", "P", "+++")}
UNC = (("entropy", "Predictive entropy"), ("aleatoric", "Aleatoric uncertainty (AU)"),
       ("epistemic", "Epistemic uncertainty (EU)"))
# the curves add the entropy of the wrong predictions: adversarial errors made with low entropy
# are the uncertainty suppression the paper targets, even where the mean entropy rises
UNC_CURVES = (("entropy_wrong", "Entropy of wrong predictions"), *UNC)
UNITS = {("paper", "entropy_wrong"): "nats", ("code", "entropy_wrong"): "÷ log C", ("paper", "entropy"): "nats", ("paper", "aleatoric"): "nats", ("code", "entropy"): "÷ log C",
         ("code", "aleatoric"): "÷ log C", ("code", "epistemic"): "÷ log C"}   # paper EU = C/(α₀+C): no unit
SHORT = {"confidence": "Confidence", "entropy_wrong": "Entropy | wrong", "entropy": "Entropy", "aleatoric": "AU", "epistemic": "EU"}
STYLE = {"font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 8,
         "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True,
         "grid.alpha": 0.3, "figure.dpi": 110, "savefig.dpi": 150, "hatch.linewidth": 0.6}


def style():
    """The house style as a context: every figure is made and saved inside it."""
    return plt.rc_context(STYLE)


def method_colour(method: str, methods=()) -> str:
    if method in METHOD_COLOURS:
        return METHOD_COLOURS[method]
    unknown = [m for m in methods if m not in METHOD_COLOURS]
    return _SPARE[(unknown.index(method) if method in unknown else len(unknown)) % len(_SPARE)]


def folder_for(fig_dir, ext: str) -> Path:
    """``fig_dir`` is one folder for every format, or a mapping format -> folder (the PNGs apart, for DVC)."""
    return Path(fig_dir[ext] if isinstance(fig_dir, Mapping) else fig_dir)


def save(fig, fig_dir, name: str, formats=("png", "pdf")) -> list:
    """Write ``<folder>/name.<ext>`` for each format atomically; return the paths."""
    paths = []
    for ext in formats:
        path = folder_for(fig_dir, ext) / f"{name}.{ext}"
        with atomic_path(path) as tmp:
            # no creation date / version stamps: the same figure gives the same bytes
            meta = {"CreationDate": None, "Producer": None} if ext == "pdf" else {"Software": None} if ext == "png" else {}
            fig.savefig(tmp, format=ext, bbox_inches="tight", metadata=meta)
        paths.append(path)
    plt.close(fig)
    return paths


def render(jobs, fig_dir, formats=("png", "pdf")) -> list:
    """Draw and save each ``(stem, make)`` under ``fig_dir`` (see ``folder_for``); a figure with nothing to
    draw is skipped."""
    import logging

    paths = []
    for stem, make in jobs:
        with style():
            fig = make()
            if fig is None:
                logging.getLogger(__name__).warning("report: nothing to draw for figure %s; skipped", stem)
                continue
            paths += save(fig, fig_dir, stem, formats)
    return paths


def _grid(n: int, ncols: int, w: float, h: float, share: bool = False):
    ncols = max(1, min(ncols, n))
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(w * ncols, h * nrows), squeeze=False, sharex=share, sharey=share)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, axes.flat[:n]


def _layout(fig, title: str, bottom: float = 0.0, right: float = 0.0) -> None:
    """tight_layout leaving fixed margins (inches) for the title on top and a figure legend at the
    bottom or right; the title is placed afterwards so the layout never has to guess its size."""
    w, h = fig.get_size_inches()
    top = 0.12 + 0.2 * (title.count("\n") + 1)
    fig.tight_layout(rect=(0, bottom / h, 1 - right / w, 1 - top / h))
    fig.suptitle(title, y=1 - 0.06 / h, va="top", fontsize=10)


HEAVY_DECADES = 1.5   # positive values spanning more powers of ten than this get a log axis


def spans_decades(values, decades: float = HEAVY_DECADES) -> bool:
    """Whether the finite values are all >= 0 and the positive ones span more than ``decades``
    powers of ten: on a linear axis everything but the largest would then lie flat at 0 (UCAT's
    unweighted Dirichlet KL near 1e11 beside PMG-AFT's KL near 1; an EU of 1e-9 beside one of 1e-3)."""
    v = np.concatenate([np.asarray(x, float).ravel() for x in values]) if len(values) else np.array([])
    v = v[np.isfinite(v)]
    pos = v[v > 0]
    return bool(pos.size) and not (v < 0).any() and np.log10(pos.max() / pos.min()) > decades


def right_skewed(values) -> bool:
    """Whether a sample is all positive with a long right tail that a log scale makes symmetric
    (skewness above 2, below 1 in size after the log): EU at CLIP's temperature, 1e-10 to 3e-8
    around a median of 2e-9, whose linear histogram is one bar at 0 and a flat tail."""
    v = np.concatenate([np.asarray(x, float).ravel() for x in values]) if len(values) else np.array([])
    v = v[np.isfinite(v)]
    if v.size < 3 or not (v > 0).all() or v.min() == v.max():
        return False
    return bool(skew(v) > 2 and abs(skew(np.log(v))) < 1)


def log_axis(ax, axis: str = "y") -> None:
    """Log scale, zeros left out of the line rather than drawn at -inf; says so in the label."""
    (ax.set_yscale if axis == "y" else ax.set_xscale)("log", nonpositive="mask")
    label = ax.yaxis.label if axis == "y" else ax.xaxis.label
    if label.get_text() and "log scale" not in label.get_text():
        label.set_text(f"{label.get_text()} (log scale)")


def _cond_label(res: Results, attack: str, eps: int) -> str:
    return res.setting.label(attack, None if attack == "clean" else eps)


# --- reliability ---------------------------------------------------------------------------

def pooled_bins(res: Results, method: str, attack: str, eps: int):
    """Reliability bins pooled over data sets (count-weighted), or None if no cell has bins.

    Returns (edges, conf, acc, count, index) for the non-empty bins; cells binned
    differently from the first one are left out of the pool.
    """
    edges = tot = acc = conf = None
    for d in res.setting.datasets:
        rel = (res.cells.get((method, d, attack, eps)) or {}).get("reliability")
        if not rel:
            continue
        n = np.asarray(rel["bin_count"], float)
        if tot is None:
            edges = np.asarray(rel.get("bin_edges") or np.linspace(0, 1, len(n) + 1), float)
            tot, acc, conf = np.zeros_like(n), np.zeros_like(n), np.zeros_like(n)
        if n.shape != tot.shape:
            continue
        tot += n
        acc += np.array([0.0 if v is None else v for v in rel["bin_accuracy"]], float) * n
        conf += np.array([0.0 if v is None else v for v in rel["bin_confidence"]], float) * n
    if tot is None or tot.sum() == 0:
        return None
    keep = np.flatnonzero(tot > 0)
    return edges, conf[keep] / tot[keep], acc[keep] / tot[keep], tot[keep], keep


def reliability_figure(res: Results, eps: int):
    """Rows = methods, columns = clean and each attack at ε: bars of per-bin accuracy
    against the diagonal, the gap shaded, ECE (pooled over data sets) in the corner."""
    s = res.setting
    conds = s.conditions(eps)
    fig, axes = plt.subplots(len(s.methods), len(conds), figsize=(2.5 * len(conds) + 0.4, 2.5 * len(s.methods) + 0.5),
                             squeeze=False, sharex=True, sharey=True)
    drawn = False
    for i, (row, m) in enumerate(zip(axes, s.methods)):
        colour = method_colour(m, s.methods)
        for j, (ax, (a, e)) in enumerate(zip(row, conds)):
            ax.plot([0, 1], [0, 1], ls="--", c="#555555", lw=0.9)
            b = pooled_bins(res, m, a, e)
            if b is None:
                ax.text(0.5, 0.5, "n/a", ha="center", va="center", color="#b00000", transform=ax.transAxes)
            else:
                edges, conf, acc, n, k = b
                left, width = edges[:-1][k], np.diff(edges)[k]
                ax.bar(left, acc, width, align="edge", color=colour, alpha=0.85, edgecolor="white", lw=0.5,
                       label="accuracy")
                ax.bar(left, conf - acc, width, bottom=acc, align="edge", color="none", edgecolor="#b00000",
                       hatch="////", lw=0.6, label="gap to confidence")
                ece = 100 * np.sum(n * np.abs(acc - conf)) / n.sum()
                used = sum((m, d, a, e) in res.cells for d in s.datasets)
                partial = f"\n{used}/{len(s.datasets)} data sets" if used < len(s.datasets) else ""
                ax.text(0.04, 0.95, f"ECE {ece:.1f}%\nn = {int(n.sum())}{partial}", transform=ax.transAxes, va="top",
                        fontsize=8, bbox=dict(boxstyle="round,pad=0.25", fc="white", ec="#cccccc", alpha=0.9))
                drawn = True
            ax.set(xlim=(0, 1), ylim=(0, 1))
            ax.set_aspect("equal")
            ax.grid(False)
            if i == 0:
                ax.set_title(_cond_label(res, a, e))
            if i == len(s.methods) - 1:
                ax.set_xlabel("Confidence")
            if j == 0:
                ax.set_ylabel(f"{method_name(m)}\nAccuracy", color=colour, fontweight="bold")
    handles = [Patch(facecolor="#888888", label="accuracy in bin (method colour)"),
               Patch(facecolor="none", edgecolor="#b00000", hatch="////", label="gap to mean confidence"),
               Line2D([], [], ls="--", c="#555555", label="perfect calibration")]
    _layout(fig, f"Reliability diagrams, clean vs adversarial (ε = {eps}/255); bins pooled over data sets, "
            "ECE of the pooled bins", bottom=0.35)
    fig.legend(handles=handles, loc="lower center", ncol=3, frameon=False)
    return fig if drawn else plt.close(fig)


# --- uncertainty vs ε ---------------------------------------------------------------------

def uncertainty_figure(res: Results):
    s = res.setting
    if not s.has_clean or not s.attacks:
        return None
    xs = [0, *s.eps]
    height = 2.8 * len(s.attacks) + 0.7
    fig, axes = plt.subplots(len(s.attacks), len(UNC_CURVES), figsize=(3.5 * len(UNC_CURVES), height), squeeze=False)
    drawn = False
    for row, a in zip(axes, s.attacks):
        for ax, (key, label) in zip(row, UNC_CURVES):
            for m in s.methods:
                ys = [res.mean(m, "clean", 0, key, 1.0)] + [res.mean(m, a, e, key, 1.0) for e in s.eps]
                pts = [(x, y) for x, y in zip(xs, ys) if y is not None]
                if pts:
                    ax.plot(*zip(*pts), marker="o", ms=4, lw=1.6, c=method_colour(m, s.methods),
                            label=method_name(m))
                    drawn = True
            ax.set_xticks(xs, ["0\n(clean)", *map(str, s.eps)])
            unit = UNITS.get((res.convention(), key))
            ax.set(xlabel=f"{s.label(a)} ε (×1/255)", ylabel=f"{label}, {unit}" if unit else label)
            ax.set_title(f"{SHORT[key]} under {s.label(a)}")
            if spans_decades([line.get_ydata() for line in ax.get_lines()]):   # e.g. EU: 1e-9 beside 1e-3
                log_axis(ax)
    handles, labels = axes[0][0].get_legend_handles_labels()
    _layout(fig, "Predictive uncertainty against attack strength (mean over data sets): "
            "a drop under attack means the attack suppresses uncertainty (left: on the errors alone)", bottom=0.35)
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 6) or 1, frameon=False)
    return fig if drawn else plt.close(fig)


# --- accuracy vs calibration ----------------------------------------------------------------

def accuracy_ece_figure(res: Results):
    s = res.setting
    fig, axes = _grid(len(s.eps), 3, 4.6, 4.0, share=True)   # shared axes: panels compare across ε
    legend_w = 1.7
    fig.set_figwidth(fig.get_figwidth() + legend_w)
    drawn = False
    for ax, eps in zip(axes, s.eps):
        for m in s.methods:
            colour = method_colour(m, s.methods)
            clean = (res.mean(m, "clean", 0, "ece"), res.mean(m, "clean", 0)) if s.has_clean else (None, None)
            for a, e in s.conditions(eps):
                pt = (res.mean(m, a, e, "ece"), res.mean(m, a, e))
                if None in pt:
                    continue
                if a != "clean" and None not in clean:
                    ax.plot([clean[0], pt[0]], [clean[1], pt[1]], c=colour, lw=1, alpha=0.5, zorder=1)
                ax.scatter(*pt, c=colour, marker=COND_STYLE[a][1], s=46, edgecolors="black", linewidths=0.5,
                           zorder=3)
                drawn = True
        ax.set(xlabel="ECE (%, lower is better)", ylabel="Top-1 accuracy (%)",
               title=f"ε = {eps}/255")
        ax.margins(0.12)
    method_handles = [Line2D([], [], c=method_colour(m, s.methods), lw=2, label=method_name(m)) for m in s.methods]
    cond_handles = [Line2D([], [], ls="", marker=COND_STYLE[a][1], mfc="white", mec="black", label=s.label(a))
                    for a, _ in s.conditions(s.eps[0])]
    _layout(fig, "Accuracy vs calibration error, mean over data sets (upper left is better)\n"
            "a method's clean and attacked points are joined", right=legend_w)
    fig.legend(handles=method_handles + cond_handles, loc="center right", frameon=False)
    return fig if drawn else plt.close(fig)


# --- robust vs clean bars ---------------------------------------------------------------------

def accuracy_bars_figure(res: Results, eps: int):
    s = res.setting
    conds = s.conditions(eps)
    panels = [*s.datasets, "average"]
    fig, axes = _grid(len(panels), 3, 1.0 + (0.16 * len(conds) + 0.2) * len(s.methods), 2.9)
    width = 0.8 / len(conds)
    x = np.arange(len(s.methods))
    for ax, d in zip(axes, panels):
        for j, (a, e) in enumerate(conds):
            vals = [res.mean(m, a, e) if d == "average" else res.pct(m, d, a, e) for m in s.methods]
            pos = x - 0.4 + width * (j + 0.5)
            colours = [method_colour(m, s.methods) for m in s.methods]
            hatch = COND_STYLE[a][2]
            ax.bar(pos, [0 if v is None else v for v in vals], width, color=colours,
                   alpha=1.0 if a == "clean" else 0.55, hatch=hatch, edgecolor="#333333" if hatch else "white",
                   linewidth=0.3)
            for p, v in zip(pos, vals):
                if v is None:
                    ax.text(p, 2, "n/a", rotation=90, ha="center", va="bottom", fontsize=7, color="#b00000")
        tilt = len(s.methods) > 3
        ax.set_xticks(x, [method_name(m) for m in s.methods], rotation=25 if tilt else 0,
                      ha="right" if tilt else "center", rotation_mode="anchor")
        ax.set(ylim=(0, 100), ylabel="Top-1 accuracy (%)",
               title="Average over data sets" if d == "average" else dataset_name(d))
        ax.grid(axis="x", visible=False)
    handles = [Patch(facecolor="#bbbbbb" if a != "clean" else "#666666", hatch=COND_STYLE[a][2],
                     edgecolor="#333333", linewidth=0.3, label=s.label(a)) for a, _ in conds]
    _layout(fig, f"Clean vs robust top-1 accuracy per data set (ε = {eps}/255); bar colour = method",
            bottom=0.35)
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), frameon=False)
    return fig


# --- training curves --------------------------------------------------------------------------

TRAIN_PANELS = (("loss", "Training loss", "Loss"),
                ("adv_acc", "Adversarial accuracy on training batches", "Top-1 accuracy (%)"),
                ("ce", "Cross-entropy term", "Loss"),
                ("align", "Alignment term (each method's own: UCAT's Dirichlet KL\nunweighted, PMG-AFT's KLs "
                          "weighted, FARE's ‖φ(x_adv) − φ₀(x)‖²)", "Loss"),
                ("lr", "Learning-rate schedule", "Learning rate"))


def _smooth(y: np.ndarray) -> np.ndarray:
    k = max(1, len(y) // 25)
    if k == 1:
        return y
    pad = np.pad(y, (k // 2, k - 1 - k // 2), mode="edge")
    return np.convolve(pad, np.ones(k) / k, mode="valid")


def _same_curves(curves: dict) -> list[list[str]]:
    """Methods grouped by identical (steps, values): one learning-rate line for all that share it."""
    groups: list[list[str]] = []
    for m, (steps, vals) in curves.items():
        for g in groups:
            s0, v0 = curves[g[0]]
            if np.array_equal(steps, s0) and np.array_equal(vals, v0):
                g.append(m)
                break
        else:
            groups.append([m])
    return groups


def training_figure(logs: dict, methods):
    """``logs``: {method: {name: (steps, values)}}; methods without logs are not fine-tuned.

    A loss panel whose values span decades (UCAT's unweighted KL beside the others' terms) is drawn
    on a log axis, with the moving average taken in log space there (a geometric mean: one spike does
    not lift the whole window)."""
    panels = [p for p in TRAIN_PANELS if any(p[0] in lg for lg in logs.values())]
    if not panels:
        return None
    fig, axes = _grid(len(panels), 2, 4.8, 3.2)
    for ax, (name, title, ylabel) in zip(axes, panels):
        drawn = {m: logs[m][name] for m in methods if name in logs.get(m, {})}
        log = name not in ("lr", "adv_acc") and spans_decades([v for _, v in drawn.values()])
        groups = _same_curves(drawn) if name == "lr" else [[m] for m in drawn]   # one line per distinct schedule
        for group in groups:
            m, (steps, vals) = group[0], drawn[group[0]]
            if name == "adv_acc" and np.nanmax(vals) <= 1.0:
                vals = 100 * vals
            colour = method_colour(m, methods) if len(group) == 1 else "#333333"
            if name == "lr":                                   # the schedule is exact: no smoothing
                line = vals
            elif log and (vals > 0).all():
                line = np.exp(_smooth(np.log(vals)))
            else:
                line = _smooth(vals)
            if line is not vals:
                ax.plot(steps, vals, c=colour, lw=0.8, alpha=0.25)
            ax.plot(steps, line, c=colour, lw=1.6, label=", ".join(map(method_name, group)))
        if name == "lr":
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.1e}"))
        ax.set(xlabel="Optimisation step", ylabel=ylabel)
        ax.set_title(title, **({"fontsize": 9} if "\n" in title else {}))   # the two-line title: a size smaller
        if log:
            log_axis(ax)
        ax.legend(loc="best", frameon=True, framealpha=0.85)
    _layout(fig, "Fine-tuning curves (faint: raw per step; solid: moving average)")
    return fig


# --- per-sample uncertainty distributions -----------------------------------------------------

def distribution_figure(res: Results, samples: dict, eps: int):
    """``samples``: {(method, attack, eps): {array: pooled values}}; histograms clean vs attacked.

    The y axis is the fraction of a condition's images per bin.  A right-skewed quantity
    (``right_skewed``: EU at CLIP's temperature) gets log-spaced bins on a log x axis, the same for
    every method, so its bulk is not one bar at 0."""
    s = res.setting
    keys = (("confidence", "Confidence"), *UNC)
    methods = [m for m in s.methods if any((m, a, e) in samples for a, e in s.conditions(eps))]
    if not methods:
        return None
    log_keys = {key for key, _ in keys
                if right_skewed([samples[(m, a, e)][key] for m in methods for a, e in s.conditions(eps)
                                 if key in samples.get((m, a, e), {})])}
    fig, axes = plt.subplots(len(methods), len(keys), figsize=(3.0 * len(keys), 2.3 * len(methods) + 0.5),
                             squeeze=False)
    for row, m in zip(axes, methods):
        for ax, (key, label) in zip(row, keys):
            series = [(a, e, samples[(m, a, e)][key]) for a, e in s.conditions(eps)
                      if key in samples.get((m, a, e), {})]
            log = key in log_keys
            keep = [(a, e, v[np.isfinite(v)]) for a, e, v in series]      # log: right_skewed found all > 0
            finite = np.concatenate([v for *_, v in keep]) if keep else np.array([])
            if finite.size:
                lo, hi = finite.min(), finite.max()
                bins = np.geomspace(lo, hi * (1 + 1e-9), 31) if log and hi > lo else np.linspace(lo, hi + 1e-9, 31)
                for a, e, v in keep:
                    if v.size:
                        ax.hist(v, bins=bins, weights=np.full(v.size, 1 / v.size), histtype="step", lw=1.5,
                                color=COND_STYLE[a][0], label=_cond_label(res, a, e))
            ax.set(xlabel=label, ylabel="Fraction of images")
            if log:
                log_axis(ax, "x")
            ax.set_title(f"{method_name(m)}: {SHORT[key]}", color=method_colour(m, s.methods))
    handles, labels = axes[0][0].get_legend_handles_labels()
    _layout(fig, f"Per-sample distributions, clean vs adversarial (ε = {eps}/255), pooled over data sets",
            bottom=0.35)
    fig.legend(handles, labels, loc="lower center", ncol=len(labels) or 1, frameon=False)
    return fig


# --- paired differences (forest plot) ---------------------------------------------------------

FOREST_METRICS = ("accuracy", "ece", "aurc", "err_auroc", "atk_auroc")


def paired_differences_figure(iv, eps: int):
    """Forest plot: rows = conditions at ε, columns = metrics; in each panel every method's
    difference reference − method (mean over data sets) with its paired interval.  Filled:
    the interval excludes 0; hollow: it does not."""
    if iv is None or iv.boot is None:
        return None
    s, ref = iv.setting, iv.reference
    methods = [m for m in s.methods if m != ref]
    conds = s.conditions(eps)
    if not methods:
        return None
    height = (0.32 * len(methods) + 0.9) * len(conds) + 0.6
    fig, axes = plt.subplots(len(conds), len(FOREST_METRICS), squeeze=False, sharey=True,
                             figsize=(2.6 * len(FOREST_METRICS) + 0.8, height))
    y = np.arange(len(methods))[::-1]
    drawn = False
    for i, (row, (a, e)) in enumerate(zip(axes, conds)):
        for ax, metric in zip(row, FOREST_METRICS):
            if a == "clean" and metric == "atk_auroc":        # no attack to detect on clean data
                ax.text(0.5, 0.5, "(attacks only)", ha="center", va="center", color="#777777",
                        transform=ax.transAxes, fontsize=8)
                ax.set_xticks([])
                ax.grid(visible=False)
                if i == 0:
                    ax.set_title(f"{LABELS[metric]}\n(higher is better)", fontsize=8)
                continue
            ax.axvline(0, c="#555555", lw=0.8)
            ax.grid(axis="y", visible=False)
            for yi, m in zip(y, methods):
                d = iv.diff(metric, m, AVERAGE, a, e)
                if d is None or d.value is None:
                    continue
                colour = method_colour(m, s.methods)
                if d.lo is not None:
                    ax.plot([d.lo, d.hi], [yi, yi], c=colour, lw=1.6)
                ax.plot(d.value, yi, "o", ms=5, mec=colour, mfc=colour if d.excludes_zero else "white")
                drawn = True
            if len(ax.lines) == 1:                      # only the zero line: nothing defined here
                ax.text(0.5, 0.5, "n/a", ha="center", va="center", color="#b00000", transform=ax.transAxes, fontsize=8)
            if i == 0:
                better = "lower" if metric in LOWER_IS_BETTER else "higher"
                ax.set_title(f"{LABELS[metric]}\n({better} is better)", fontsize=8)
            if i == len(conds) - 1:
                ax.set_xlabel(f"{method_name(ref)} − method (points)", fontsize=8)
        row[0].set_yticks(y, [method_name(m) for m in methods])
        row[0].set_ylabel(s.label(a, None if a == "clean" else e))
    if not drawn:
        plt.close(fig)
        return None
    level = f"{100 * iv.settings.confidence:g} %"
    _layout(fig, f"Paired differences {method_name(ref)} − method, mean over data sets, ε = {eps}/255\n"
                 f"bars: {level} bootstrap interval over the test images"
                 + ("" if iv.seeds == 1 else f" and {iv.seeds} seeds") + "; filled: excludes 0")
    return fig
