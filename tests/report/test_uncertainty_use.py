"""The report's uncertainty-in-use part on synthetic cells: headline numbers in summary.json
against independent references, the fitted temperature applied, misalignment reported as n/a."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torchmetrics.functional.classification import binary_auroc, multiclass_calibration_error

from ucat.report import build_report

from .test_report import make_cfg, read_csv, write_metrics

TEMPS = {"clip": 0.5, "ucat": 2.0}     # tecoa left unfitted on purpose


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("use")
    cfg = make_cfg(["clip", "tecoa", "ucat"], ["demo_shapes", "demo_colours"], eps=(2,), attacks=("clean", "pgd", "cw"))
    write_metrics(root, cfg, logs=False)
    for m, t in TEMPS.items():
        p = root / "metrics" / "calibration" / f"{m}.json"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps({"method": m, "temperature": t}))
    # a silently shuffled attacked cell: same images, another order
    bad = root / "samples" / "tecoa" / "demo_colours" / "cw_eps2.npz"
    z = dict(np.load(bad))
    perm = np.random.default_rng(0).permutation(len(z["sample_id"]))
    np.savez(bad, **{k: v[perm] for k, v in z.items()})
    build_report(cfg, metrics_dir=root / "metrics", samples_dir=root / "samples", out_dir=root / "results",
                 summary_path=root / "summary.json", figures=False)
    return root, json.loads((root / "summary.json").read_text())


def _npz(root, m, d, a, e):
    return dict(np.load(root / "samples" / m / d / f"{a}_eps{e}.npz"))


def test_headlines_match_independent_references(built):
    root, summary = built
    for m in ("clip", "ucat"):
        aurc, err, atk, ece = [], [], [], []
        for d in ("demo_shapes", "demo_colours"):
            z, c = _npz(root, m, d, "pgd", 2), _npz(root, m, d, "clean", 0)
            wrong = z["pred"] != z["label"]
            u = 1 - z["confidence"].astype(float)
            order = np.argsort(u, kind="stable")          # synthetic confidences have no ties
            aurc.append(np.mean([wrong[order[:k]].mean() for k in range(1, len(u) + 1)]))
            err.append(float(binary_auroc(torch.tensor(u), torch.tensor(wrong.astype(int)))))
            uc = 1 - c["confidence"].astype(float)
            atk.append(float(binary_auroc(torch.tensor(np.r_[u, uc]), torch.tensor(np.r_[np.ones(len(u)), np.zeros(len(uc))]).int())))
            p = torch.softmax(torch.tensor(z["logits"], dtype=torch.float64) / TEMPS[m], -1)
            ece.append(float(multiclass_calibration_error(p, torch.tensor(z["label"]), num_classes=p.shape[1], n_bins=15)))
        got = summary[m]["pgd_eps2"]
        assert got["aurc"] == pytest.approx(100 * np.mean(aurc), abs=1e-3)
        assert got["error_auroc"] == pytest.approx(100 * np.mean(err), abs=1e-3)
        assert got["attack_auroc"] == pytest.approx(100 * np.mean(atk), abs=1e-3)
        assert got["ece_ts"] == pytest.approx(100 * np.mean(ece), abs=1e-3)
        assert "attack_auroc" not in summary[m]["clean_eps0"] and summary[m]["clean_eps0"]["aurc"] is not None


def test_unfitted_temperature_and_misalignment_are_na_and_said(built):
    root, summary = built
    use = summary["tecoa"]
    assert use["pgd_eps2"]["ece_ts"] is None
    assert use["pgd_eps2"]["attack_auroc"] is not None
    assert use["cw_eps2"]["attack_auroc"] is None          # the shuffled data set poisons the average
    assert use["cw_eps2"]["aurc"] is not None              # the cell itself is still scored
    md = (root / "results" / "tables" / "uncertainty_use.md").read_text()
    assert "tecoa/demo_colours/cw_eps2: sample ids differ" in md and "another order" in md
    assert "No fitted temperature for tecoa" in md
    rows = read_csv(root / "results" / "tables" / "uncertainty_use.csv")
    per_set = [r for r in rows if r["method"] == "ucat" and r["dataset"] == "demo_shapes" and r["attack"] == "pgd"
               and r["metric"] == "msp:err_auroc"]
    assert len(per_set) == 1 and per_set[0]["reproduced"] != "n/a"
