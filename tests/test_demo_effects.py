"""The full embedded demo shows the paper's effects for real (slow: ~9 min on 2 cores).

Run with `python -m pytest -m slow`.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from test_workflow import ROOT, copy_repo, run
from ucat import config, paths
from ucat.data import demo

# the module fixture runs the whole demo DAG (~7 min alone on 2 cores): more than the default 600 s per test
pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    params = config.load(ROOT / "params.yaml")
    repo = copy_repo(tmp_path_factory.mktemp("demo") / "repo", params)
    run(["snakemake", "--cores", "all"], repo, timeout=1800)
    return repo, params


def cell(repo, method, dataset, attack, eps):
    return json.loads((repo / paths.EVAL_JSON.format(backbone="demo", setting="main", seed=0, method=method, dataset=dataset, attack=attack, eps=eps)).read_text())


def test_pretrained_demo_clip_is_a_zero_shot_classifier(demo_run):
    repo, params = demo_run
    for d in params["data"]["datasets"]:
        chance = 1 / len(demo.DEMO_SETS[d].classnames)
        assert cell(repo, "clip", d, "clean", 0)["accuracy"] >= 3 * chance, d


def test_attacks_lower_accuracy_and_suppress_uncertainty_of_errors(demo_run):
    repo, params = demo_run
    eps = params["evaluate"]["eps"][0]
    for d in params["data"]["datasets"]:
        clean, adv = cell(repo, "clip", d, "clean", 0), cell(repo, "clip", d, "pgd", eps)
        assert adv["accuracy"] < clean["accuracy"] - 0.1, d
        # adversarial errors are confident errors: lower entropy than the model's clean mistakes
        assert adv["entropy_wrong"] < clean["entropy_wrong"], d
        samples = np.load(repo / paths.EVAL_NPZ.format(backbone="demo", setting="main", seed=0, method="clip", dataset=d, attack="pgd", eps=eps))
        assert len(samples["label"]) == adv["n"]


def test_adversarial_fine_tuning_restores_robustness(demo_run):
    repo, params = demo_run
    eps = params["evaluate"]["eps"][0]

    def robust(m):
        return np.mean([cell(repo, m, d, "pgd", eps)["accuracy"] for d in params["data"]["datasets"]])

    assert robust("tecoa") > robust("clip") + 0.05
    assert robust("ucat") > robust("clip") + 0.05
    summary = json.loads((repo / "metrics/main/summary.json").read_text())
    assert {"clip", "tecoa", "ucat", "pmg_aft", "fare"} <= set(summary["demo"])
