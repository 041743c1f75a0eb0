"""Figures with heavy-tailed values use a log axis: training terms of different scale (UCAT's
unweighted Dirichlet KL near 1e10 beside PMG-AFT's KL near 1), EU means decades apart, and
right-skewed per-sample distributions (EU at CLIP's temperature); everything else stays linear."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ucat.report import figures as F
from ucat.report.load import Setting, load_results

from .test_report import make_cfg, write_metrics

STEPS = np.arange(1.0, 41.0)


def _curves(align_ucat=4e10):
    rng = np.random.default_rng(1)
    lr = 0.01 * np.minimum(1, STEPS / 5) * 0.5 * (1 + np.cos(np.pi * STEPS / 40))
    logs = {}
    for m, align in (("ucat", align_ucat), ("pmg_aft", 0.5), ("tecoa", None)):
        lg = {"loss": (STEPS, 2 + rng.random(40)), "ce": (STEPS, 1.5 + rng.random(40)), "lr": (STEPS, lr.copy()),
              "adv_acc": (STEPS, 0.1 + 0.4 * rng.random(40))}
        if align is not None:
            lg["align"] = (STEPS, align * np.exp(rng.normal(0, 0.1, 40)))
        logs[m] = lg
    return logs


def _axes_by_title(fig):
    return {ax.get_title().split(" (")[0]: ax for ax in fig.axes if ax.get_visible()}


def test_spans_decades_and_right_skewed():
    assert F.spans_decades([[4e10, 5e10], [0.4, 0.6]]) and not F.spans_decades([[1.0, 3.0], [2.0, 20.0]])
    assert F.spans_decades([[0.0, 1e-9], [1e-3]])                 # zeros are left out, not a reason for linear
    assert not F.spans_decades([[-1.0, 1e-9, 1e3]])               # a negative value: linear
    rng = np.random.default_rng(0)
    assert F.right_skewed([np.exp(rng.normal(-20, 1.0, 5000))])   # EU-like: log-normal around 2e-9
    assert not F.right_skewed([rng.random(5000)])                 # uniform: linear
    assert not F.right_skewed([np.r_[0.0, np.exp(rng.normal(0, 1.0, 5000))]])   # a zero cannot go on a log axis


def test_training_alignment_term_of_different_scales_gets_a_log_axis():
    with F.style():
        fig = F.training_figure(_curves(), ["clip", "tecoa", "ucat", "pmg_aft"])
    axes = _axes_by_title(fig)
    align = axes["Alignment term"]
    assert align.get_yscale() == "log" and "log scale" in align.get_ylabel()
    low, high = align.get_ylim()
    assert low < 0.4 and high > 5e10                  # PMG-AFT's term is on the axis, not flat at 0 beside UCAT's
    for title in ("Training loss", "Cross-entropy term", "Learning-rate schedule", "Adversarial accuracy on training batches"):
        assert axes[title].get_yscale() == "linear", title
    lr_lines = [ln for ln in axes["Learning-rate schedule"].get_lines()]
    assert [ln.get_label() for ln in lr_lines] == ["TeCoA, UCAT, PMG-AFT"]   # one shared schedule, one line


def test_training_terms_of_one_scale_stay_linear():
    with F.style():
        fig = F.training_figure(_curves(align_ucat=2.0), ["tecoa", "ucat", "pmg_aft"])
    assert _axes_by_title(fig)["Alignment term"].get_yscale() == "linear"


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Synthetic cells in which CLIP's mean EU is 1e-9 and UCAT's 1e-3 (decades apart)."""
    root = tmp_path_factory.mktemp("figs")
    cfg = make_cfg(["clip", "ucat"], ["demo_shapes", "demo_colours"], eps=(1, 2), attacks=("clean", "pgd"))
    write_metrics(root, cfg, logs=False, samples=False)
    for path in (root / "metrics" / "eval").rglob("*.json"):
        cell = json.loads(path.read_text())
        cell["epistemic"] = 1e-9 if cell["method"] == "clip" else 1e-3
        path.write_text(json.dumps(cell))
    return load_results(Setting.from_config(cfg), root / "metrics", root / "samples")


def test_uncertainty_panel_with_means_decades_apart_is_logarithmic(results):
    with F.style():
        fig = F.uncertainty_figure(results)
    scales = {ax.get_title().split(" under ")[0]: ax.get_yscale() for ax in fig.axes if ax.get_title()}
    assert scales == {"EU": "log", "Entropy": "linear", "AU": "linear", "Entropy | wrong": "linear"}


def test_right_skewed_eu_histograms_get_log_bins(results):
    rng = np.random.default_rng(2)
    samples = {(m, a, e): {"confidence": rng.beta(5, 2, 500), "entropy": rng.random(500) * 2, "aleatoric": rng.random(500),
                           "epistemic": np.exp(rng.normal(-20, 1.0, 500))}
               for m in ("clip", "ucat") for a, e in (("clean", 0), ("pgd", 1))}
    with F.style():
        fig = F.distribution_figure(results, samples, 1)
    for ax in fig.axes:
        if not ax.get_title():
            continue
        want = "log" if ax.get_title().endswith(": EU") else "linear"
        assert ax.get_xscale() == want, ax.get_title()
        heights = [p.get_path().vertices[:, 1].max() for p in ax.patches]
        assert heights and max(heights) <= 1.0        # fractions of the images, not densities
