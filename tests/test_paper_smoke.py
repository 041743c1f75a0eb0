"""The paper path end to end on CPU: config/paper-smoke.yaml through Snakemake.

Default suite: a reduced version (two methods, three sets of different on-disk formats,
clean + PGD).  Slow suite (``make paper-smoke`` does the same by hand): the whole
paper-shaped DAG, 10 methods x 16 sets x 4 attacks.  Random weights: only the path is
checked (files, shapes, pairing with the published numbers), never the values.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from test_workflow import ROOT, copy_repo, run
from ucat import config, methods, paths
from ucat.report import reference

BB = "ViT-B-32-quickgelu"


def smoke_params(**changes) -> dict:
    p = config.load(ROOT / "config" / "paper-smoke.yaml")
    for key, value in changes.items():
        section, _, leaf = key.partition("__")
        if leaf:
            p[section][leaf] = value
        else:
            p[section] = value
    return config.validate(p)


def check_run(repo: Path, params: dict) -> None:
    """Every cell written, replicas declared, and every published counterpart paired in the report."""
    for name in paths.data_sets(params):
        manifest = json.loads((repo / paths.data_dir(params, name) / "MANIFEST.json").read_text())
        assert manifest["smoke"] is True and manifest["name"] == name
    n = params["data"]["subsample"]
    reproduced = {}
    for _, seed, m, d, a, e in paths.eval_cells(params):
        cell = json.loads((repo / paths.EVAL_JSON.format(backbone=BB, setting="main", seed=seed, method=m, dataset=d,
                                                         attack=a, eps=e)).read_text())
        assert cell["n"] == n and cell["num_classes"] == reference_classes(d)
        reproduced[(m, d, a, e)] = 100 * cell["accuracy"]
    report = (repo / paths.REPORT.format(backbone=BB, setting="main")).read_text()
    assert "SMOKE RUN" in report
    with open(repo / paths.TABLES.format(backbone=BB, setting="main") / "paper_comparison.csv", newline="") as fh:
        rows = {(r["table"], r["method"], r["dataset"], r["attack"], int(r["eps"]), r["metric"]): r
                for r in csv.DictReader(fh)}
    expected = 0
    for (m, d, a, e), acc in reproduced.items():
        table = "table13_ablation" if m in reference.ABLATIONS else "table16_main"
        paper = reference.lookup(table, reference.paper_method(m), reference.paper_dataset(d),
                                 reference.ATTACKS[a], e)
        if paper is None:
            continue
        expected += 1
        row = rows[(table, m, d, a, e, "top1_acc")]
        assert float(row["reproduced"]) == pytest.approx(acc, abs=1e-3)
        assert float(row["paper"]) == pytest.approx(paper) and float(row["diff"]) == pytest.approx(acc - paper, abs=2e-3)
    assert expected == len(reproduced)  # every method and attack of the run has a published counterpart


def reference_classes(dataset: str) -> int:
    from ucat.data import real

    return real.REAL_DATASETS[dataset].num_classes


def test_reduced_paper_smoke_through_snakemake(tmp_path):
    """ViT-B/32 at 224 px, random weights: CIFAR pickles, PCAM HDF5, the DTD tree; clean + PGD; CLIP and UCAT."""
    params = smoke_params(methods=["clip", "ucat"], data__datasets=["cifar10", "pcam", "dtd"],
                          evaluate__attacks=["pgd"])
    repo = copy_repo(tmp_path / "repo", params)
    run(["snakemake", "--cores", "2"], repo, timeout=1800)
    check_run(repo, params)
    again = run(["snakemake", "--cores", "2"], repo)
    assert "Nothing to be done" in again.stdout + again.stderr


@pytest.mark.slow
@pytest.mark.timeout(3 * 3600)   # the run itself: ~15 min on two idle cores
def test_full_paper_smoke_through_snakemake(tmp_path):
    """`make paper-smoke`: the paper's DAG shape, every method, every set, every attack."""
    params = smoke_params()
    assert len(params["methods"]) == 10 and len(params["data"]["datasets"]) == 16
    repo = copy_repo(tmp_path / "repo", params)
    run(["snakemake", "--cores", "2"], repo, timeout=3 * 3600)
    check_run(repo, params)
    finetuned = [m for m in params["methods"] if methods.get(m).finetuned]
    assert all((repo / paths.FINETUNED.format(backbone=BB, setting="main", seed=0, method=m)).is_file() for m in finetuned)
    again = run(["snakemake", "--cores", "2"], repo)
    assert "Nothing to be done" in again.stdout + again.stderr
