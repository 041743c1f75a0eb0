"""Figures of the "uncertainty in use" analysis (house style of ``figures.py``)."""

from __future__ import annotations

import numpy as np

from .. import selective as S
from ..metrics import expected_calibration_error, reliability_bins
from .figures import COND_STYLE, _grid, _layout, method_colour, plt
from .tables import method_name

SCORE_COLOURS = {"msp": "#4c72b0", "entropy": "#dd8452", "aleatoric": "#55a868", "epistemic": "#c44e52"}


def risk_coverage_figure(an, eps: int):
    """One panel per method: mean risk–coverage curve (1 − MSP) for clean and each attack at ε."""
    s = an.res.setting
    conds = s.conditions(eps)
    fig, axes = _grid(len(s.methods), 5, 2.8, 2.6, share=True)
    drawn = False
    for ax, m in zip(axes, s.methods):
        for a, e in conds:
            curves = [an.value(m, d, a, e, "curve") for d in s.datasets]
            if any(c is None for c in curves) or not curves:
                continue
            colour = COND_STYLE[a][0]
            aurc = an.mean(m, a, e, "scores", "msp", "aurc")
            ax.plot(100 * S.COVERAGE_GRID, 100 * np.mean(curves, axis=0), c=colour, lw=1.4,
                    label=f"{s.label(a)} (AURC {100 * aurc:.1f})" if aurc is not None else s.label(a))
            drawn = True
        accs = [an.res.get(m, d, "clean", 0, "accuracy") for d in s.datasets]
        if s.has_clean and accs and None not in accs:   # oracle: every error abstained on first
            oracle = np.mean([np.maximum(0.0, S.COVERAGE_GRID - acc) / S.COVERAGE_GRID for acc in accs], axis=0)
            ax.plot(100 * S.COVERAGE_GRID, 100 * oracle, ls=":", c=COND_STYLE["clean"][0], lw=1, label="oracle (clean)")
        ax.set_title(method_name(m))
        ax.set_xlabel("coverage (%)")
        ax.set_xlim(0, 100)
        if ax.get_legend_handles_labels()[0]:   # a method with every cell missing draws an empty panel
            ax.legend(loc="best", fontsize=6.5)
    for ax in axes[:: min(5, len(s.methods))]:
        ax.set_ylabel("selective risk (%)")
    if not drawn:
        plt.close(fig)
        return None
    _layout(fig, f"Risk–coverage, abstaining on the least confident (1 − MSP), ε = {eps}/255\n"
                 "mean over data sets; lower and flatter is better")
    return fig


def auroc_bars_figure(an, eps: int, metric: str):
    """Panels = conditions; grouped bars: methods × uncertainty scores; 50 % = chance."""
    s = an.res.setting
    conds = [c for c in s.conditions(eps) if metric != "atk_auroc" or c[0] != "clean"]
    if not conds:
        return None
    fig, axes = _grid(len(conds), 2, 0.5 * len(s.methods) + 1.2, 2.6, share=True)
    width = 0.8 / len(S.SCORES)
    drawn = False
    for ax, (a, e) in zip(axes, conds):
        x = np.arange(len(s.methods))
        for j, k in enumerate(S.SCORES):
            vals = [an.mean(m, a, e, "scores", k, metric) for m in s.methods]
            h = [np.nan if v is None else 100 * v for v in vals]
            drawn |= not all(np.isnan(h))
            ax.bar(x - 0.4 + width * (j + 0.5), h, width, color=SCORE_COLOURS[k], label=S.SCORE_NAMES[k])
        ax.axhline(50, ls="--", c="#555555", lw=0.8)
        ax.set_xticks(x, [method_name(m) for m in s.methods], rotation=30, ha="right")
        ax.set_title(s.label(a, e))
        ax.set_ylim(0, 100)
    for ax in axes[::2]:
        ax.set_ylabel("AUROC (%)")
    if not drawn:
        plt.close(fig)
        return None
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(S.SCORES), frameon=False)
    what = ("Misclassification detection: wrong vs correct predictions" if metric == "err_auroc"
            else "Attack detection: attacked vs the same clean images")
    _layout(fig, f"{what}, AUROC by uncertainty score, ε = {eps}/255\nmean over data sets; 50 % = chance "
                 "(EU missing where it is constant)", bottom=0.3)
    return fig


def reliability_ts_figure(an, eps: int, n_bins: int = 15):
    """Rows = methods, columns = conditions: per-bin accuracy before (hollow) and after (filled) TS."""
    s = an.res.setting
    conds = s.conditions(eps)
    fig, axes = plt.subplots(len(s.methods), len(conds), figsize=(2.3 * len(conds) + 0.4, 2.3 * len(s.methods) + 0.6),
                             squeeze=False, sharex=True, sharey=True)
    drawn = False
    for row, m in zip(axes, s.methods):
        colour = method_colour(m, s.methods)
        for ax, (a, e) in zip(row, conds):
            ax.plot([0, 1], [0, 1], ls="--", c="#555555", lw=0.8)
            pool = an.pooled.get((m, a, e))
            if not pool or "conf_before" not in pool:
                ax.text(0.5, 0.5, "n/a", ha="center", va="center", color="#b00000", transform=ax.transAxes)
                continue
            correct = np.concatenate(pool["correct"])
            text = []
            for key, filled in (("conf_before", False), ("conf_after", True)):
                if key not in pool:
                    continue
                conf = np.concatenate(pool[key])
                b = reliability_bins(conf, correct, n_bins)
                keep = b["bin_count"] > 0
                ax.plot(b["bin_confidence"][keep], b["bin_accuracy"][keep], marker="o", ms=3.5, lw=1,
                        c=colour, mfc=colour if filled else "white", ls="-" if filled else ":")
                text.append(f"{100 * expected_calibration_error(conf, correct, n_bins):.1f}")
            ax.text(0.04, 0.96, "ECE " + " → ".join(text), transform=ax.transAxes, va="top", fontsize=7)
            drawn = True
            if m == s.methods[0]:
                ax.set_title(s.label(a, e))
        row[0].set_ylabel(f"{method_name(m)}\naccuracy")
    for ax in axes[-1]:
        ax.set_xlabel("confidence")
    if not drawn:
        plt.close(fig)
        return None
    _layout(fig, f"Reliability before (hollow, dotted) and after (filled) temperature scaling, ε = {eps}/255\n"
                 "T fitted per model on held-out clean images; bins pooled over data sets")
    return fig
