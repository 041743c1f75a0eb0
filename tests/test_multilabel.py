"""Multi-label (MS-COCO) attacks, metrics and cells, checked against independent implementations
written here and against the official code's formulas on the same inputs."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import average_precision_score, brier_score_loss
from torch import nn
from torchmetrics.functional.classification import (binary_average_precision, binary_calibration_error,
                                                    multilabel_f1_score, multilabel_precision, multilabel_recall)

from ucat import attacks_multilabel as aml
from ucat import metrics_multilabel as mml
from ucat.errors import ConfigError


def _targets(n: int, c: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    y = (torch.rand(n, c, generator=g) < 0.3).double()
    y[0] = 0          # an image without labels (val2017 has 48)
    y[1, :3] = 1      # and one with several
    return y


# ----------------------------------------------------------------------------- attack objectives

def test_bce_objective_equals_a_hand_written_bce_and_the_official_loss():
    g = torch.Generator().manual_seed(1)
    logits = (torch.rand(9, 80, generator=g, dtype=torch.float64) - 0.3) * 60   # scale-100 logits
    y = _targets(9, 80)
    ours = aml.bce_objective(logits, y)
    by_hand = -(y * F.logsigmoid(logits) + (1 - y) * F.logsigmoid(-logits)).sum(-1)
    official = torch.stack([nn.BCEWithLogitsLoss(reduction="sum")(logits[i:i + 1], y[i:i + 1]) for i in range(9)])
    assert (ours - by_hand).abs().max() < 1e-10 and (ours - official).abs().max() < 1e-10


def _official_cw(output, label_mask, kappa=50):
    """attacks_multilabel.py:98-114 of the official code, per sample (its loss sums them)."""
    pos_counts = label_mask.sum(dim=1).clamp(min=1.0)
    correct_logit = (label_mask * output).sum(dim=1) / pos_counts
    neg_logits = output.clone().masked_fill(label_mask.bool(), torch.finfo(output.dtype).min)
    wrong_logit = neg_logits.max(dim=1).values
    return -F.relu(correct_logit - wrong_logit + kappa)


def test_cw_margin_equals_a_per_sample_loop_and_the_official_formula():
    g = torch.Generator().manual_seed(2)
    logits = torch.rand(12, 80, generator=g, dtype=torch.float64) * 30
    y = _targets(12, 80, seed=3)
    logits[2] += 200 * (1 - y[2])  # a negative beats the positives by more than kappa: the goal is met, 0
    ours = aml.cw_multilabel_margin(logits, y, kappa=50)
    loop = []
    for row, t in zip(logits.tolist(), y.tolist()):
        pos = [v for v, p in zip(row, t) if p]
        neg = [v for v, p in zip(row, t) if not p]
        loop.append(-max(0.0, (sum(pos) / len(pos) if pos else 0.0) - max(neg) + 50))
    assert ours[2] == 0
    assert (ours - torch.tensor(loop, dtype=torch.float64)).abs().max() < 1e-12
    assert torch.equal(ours, _official_cw(logits, y))
    every = torch.ones(1, 80, dtype=torch.float64)   # every class positive: finite, as in the official code
    assert torch.equal(aml.cw_multilabel_margin(logits[:1], every), _official_cw(logits[:1], every))


# ----------------------------------------------------------------------------- the PGD loop

class Tiny(nn.Module):
    """Image (3, 8, 8) -> 80 scale-100 cosine logits, float64."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(4)
        self.w = nn.Parameter(torch.randn(192, 16, generator=g, dtype=torch.float64) * 0.3)
        self.text = F.normalize(torch.randn(80, 16, generator=g, dtype=torch.float64), dim=-1)

    def forward(self, x):
        return 100 * F.normalize(torch.tanh(x.flatten(1) @ self.w), dim=-1) @ self.text.t()


def _official_pgd(model, X, target, delta0, alpha, eps, iters, loss):
    """The official attack_pgd / attack_CW (l_inf) loop on a given start delta."""
    delta = torch.clamp(delta0.clone(), -X, 1 - X)
    delta.requires_grad = True
    for _ in range(iters):
        out = model(X + delta)
        value = (nn.BCEWithLogitsLoss(reduction="sum")(out, target) if loss == "bce"
                 else _official_cw(out, target).sum())
        value.backward()
        grad = delta.grad.detach()
        delta.data = torch.clamp(delta + alpha * torch.sign(grad), min=-eps, max=eps)
        delta.data = torch.clamp(delta, -X, 1 - X)
        delta.grad.zero_()
    return (X + delta).detach()


@pytest.mark.parametrize("loss", ["bce", "cw"])
def test_pgd_equals_the_official_loop_from_the_same_start(loss):
    model = Tiny().requires_grad_(False)
    X = torch.rand(6, 3, 8, 8, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    y = _targets(6, 80, seed=6)
    eps255, step255, steps = 4, 1, 25
    ours = aml.pgd(model, X, y, eps255, step255, steps, loss=loss, generator=torch.Generator().manual_seed(7))
    noise = torch.rand(X.shape, generator=torch.Generator().manual_seed(7), dtype=X.dtype)  # pgd_linf's start
    official = _official_pgd(model, X, y, (noise * 2 - 1) * eps255 / 255, step255 / 255, eps255 / 255, steps, loss)
    diff = (ours - official).abs().max().item()
    assert diff < 1e-12, diff
    assert (ours - X).abs().max() <= eps255 / 255 + 1e-12 and ours.min() >= 0 and ours.max() <= 1
    objective = aml.bce_objective if loss == "bce" else aml.cw_multilabel_margin
    assert objective(model(ours), y).sum() > objective(model(X), y).sum()   # the attack did its job


def test_attack_dispatch_uses_the_evaluate_settings_and_refuses_autoattack():
    model = Tiny().requires_grad_(False)
    X = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    y = _targets(3, 80)
    ev = {"pgd": {"steps": 4, "step_size": 1}, "cw": {"steps": 4, "step_size": 1, "kappa": 50}}
    assert aml.run_attack("clean", model, X, y, 2, ev) is X
    for name, loss in (("pgd", "bce"), ("cw", "cw")):
        a = aml.run_attack(name, model, X, y, 2, ev, torch.Generator().manual_seed(0))
        b = aml.pgd(model, X, y, 2, 1, 4, loss=loss, generator=torch.Generator().manual_seed(0))
        assert torch.equal(a, b)
    with pytest.raises(ConfigError, match="'autoattack' is not defined for the multi-label data set coco2017"):
        aml.check_attack("autoattack", "coco2017")
    with pytest.raises(ConfigError, match="bce, cw"):
        aml.pgd(model, X, y, 2, 1, 1, loss="ce")


# ----------------------------------------------------------------------------- metrics

def _scores_with_ties(n=60, c=7, seed=9):
    rng = np.random.default_rng(seed)
    scores = np.round(rng.normal(25, 3, (n, c)), 1).astype(np.float32)   # rounded: ties, as float logits may
    target = (rng.random((n, c)) < 0.35).astype(np.uint8)
    target[:, 5] = 0   # a class absent from the group: NaN
    target[:, 6] = 1   # a class on every image: NaN too (the official max == min rule)
    return scores, target


def test_average_precision_matches_sklearn_torchmetrics_and_a_closed_form():
    scores, target = _scores_with_ties()
    ap = mml.average_precision(scores, target)
    assert np.isnan(ap[5]) and np.isnan(ap[6]) and not np.isnan(ap[:5]).any()
    lo, hi = scores.min(), scores.max()
    diffs = []
    for c in range(5):
        # torchmetrics applies a sigmoid to scores outside [0, 1]; an affine map into [0, 1] keeps order and ties
        tm = binary_average_precision(torch.from_numpy((scores[:, c].astype(np.float64) - lo) / (hi - lo)),
                                      torch.from_numpy(target[:, c]).long())
        diffs += [abs(ap[c] - float(tm)), abs(ap[c] - average_precision_score(target[:, c], scores[:, c]))]
    assert max(diffs) < 1e-6, max(diffs)
    # closed form: hits at ranks 1 and 3 of 4 -> AP = (1/1 + 2/3) / 2
    assert mml.average_precision(np.array([[0.9], [0.8], [0.7], [0.6]]), np.array([[1], [0], [1], [0]]))[0] \
        == pytest.approx((1 + 2 / 3) / 2)


def test_top_k_and_precision_recall_f1_match_torchmetrics():
    scores, target = _scores_with_ties()
    scores = scores + np.arange(7, dtype=np.float32) * 1e-3   # no ties inside a row: top-k is unambiguous
    for k in (3, 5):
        pred = mml.top_k_predictions(scores, k)
        by_sort = np.zeros_like(pred)
        np.put_along_axis(by_sort, np.argsort(-scores, axis=1)[:, :k], 1, axis=1)
        assert np.array_equal(pred, by_sort) and (pred.sum(1) == k).all()
        ours = mml.precision_recall_f1(pred, target)
        p, t = torch.from_numpy(pred), torch.from_numpy(target).long()
        for avg in ("micro", "macro"):
            ref = {"precision": multilabel_precision(p, t, 7, average=avg),
                   "recall": multilabel_recall(p, t, 7, average=avg),
                   "f1": multilabel_f1_score(p, t, 7, average=avg)}
            for name, value in ref.items():
                assert ours[f"{avg}_{name}"] == pytest.approx(float(value), abs=1e-6), (k, avg, name)
    assert mml.top_k_predictions(scores[:, :2], 3).sum() == 2 * len(scores)   # k > C: every class


def _official_metrics(outputs: np.ndarray, targets: np.ndarray, top_k: int) -> dict:
    """compute_multilabel_metrics of the official main-multilabel.py (top-k path), in numpy."""
    eps = 1e-12
    y_true = targets.astype(np.int32)
    y_pred = np.zeros_like(y_true)
    np.put_along_axis(y_pred, np.argsort(-outputs, axis=1, kind="stable")[:, :top_k], 1, axis=1)
    aps = [np.nan if y_true[:, c].max() == y_true[:, c].min() else average_precision_score(y_true[:, c], outputs[:, c])
           for c in range(y_true.shape[1])]
    tp, fp, fn = (y_true * y_pred).sum(), ((1 - y_true) * y_pred).sum(), (y_true * (1 - y_pred)).sum()
    mp, mr = tp / max(tp + fp, eps), tp / max(tp + fn, eps)
    ps, rs, fs = [], [], []
    for c in range(y_true.shape[1]):
        yt, yp = y_true[:, c], y_pred[:, c]
        tpc, fpc, fnc = (yt & yp).sum(), ((1 - yt) & yp).sum(), (yt & (1 - yp)).sum()
        pc, rc = tpc / max(tpc + fpc, eps), tpc / max(tpc + fnc, eps)
        ps.append(pc), rs.append(rc), fs.append(2 * pc * rc / max(pc + rc, eps))
    return {"mAP": float(np.nanmean(aps)), "micro_precision": mp, "micro_recall": mr,
            "micro_f1": 2 * mp * mr / max(mp + mr, eps), "macro_precision": np.mean(ps), "macro_recall": np.mean(rs),
            "macro_f1": np.mean(fs)}


def test_per_batch_metrics_are_the_official_batches_averaged_by_size():
    rng = np.random.default_rng(11)
    n, c, batch = 50, 12, 16     # batches of 16, 16, 16 and 2 (the last one smaller, as 5000 = 9 x 512 + 392)
    scores = (rng.normal(25, 3, (n, c)) + np.arange(c) * 1e-4).astype(np.float32)
    target = (rng.random((n, c)) < 0.3).astype(np.uint8)
    ours = mml.batched_metrics(scores, target, batch)
    diffs = []
    for k in (3, 5):
        sums, total = {}, 0   # the official AverageMeter: sum(value * n) / sum(n)
        for i in range(0, n, batch):
            m = _official_metrics(scores[i:i + batch], target[i:i + batch], k)
            for key, v in m.items():
                sums[key] = sums.get(key, 0.0) + v * len(target[i:i + batch])
            total += len(target[i:i + batch])
        ref = {key: v / total for key, v in sums.items()}
        diffs.append(abs(ours["mAP"] - ref["mAP"]))
        diffs += [abs(ours[f"top{k}"][key] - ref[key]) for key in ours[f"top{k}"]]
    assert max(diffs) < 1e-9, max(diffs)
    whole = mml.batched_metrics(scores, target, None)
    ref = _official_metrics(scores, target, 3)
    assert whole["mAP"] == pytest.approx(ref["mAP"]) and whole["top3"]["micro_f1"] == pytest.approx(ref["micro_f1"])
    assert abs(whole["top3"]["micro_f1"] - ours["top3"]["micro_f1"]) > 1e-4   # the two conventions differ


def test_classwise_calibration_matches_torchmetrics_and_sklearn():
    rng = np.random.default_rng(12)
    logits = rng.normal(25, 2, (300, 10)).astype(np.float32)
    target = (rng.random((300, 10)) < 0.2).astype(np.uint8)
    probs = mml.softmax_probabilities(logits)
    assert np.allclose(probs.sum(1), 1) and np.allclose(probs, torch.softmax(torch.from_numpy(logits).double(), -1))
    ours = mml.classwise_calibration(probs, target, 15)
    ece = [float(binary_calibration_error(torch.from_numpy(probs[:, c].copy()), torch.from_numpy(target[:, c]).long(),
                                          n_bins=15, norm="l1")) for c in range(10)]
    brier = [brier_score_loss(target[:, c], probs[:, c]) for c in range(10)]
    assert abs(ours["ece"] - np.mean(ece)) < 1e-6 and abs(ours["brier"] - np.mean(brier)) < 1e-12
    # a calibrated predictor: p_k = 0.2 for every class of a 20 % prevalence -> ECE ~ 0
    flat = np.full((4000, 5), 0.2)
    flat_target = (rng.random((4000, 5)) < 0.2).astype(np.uint8)
    assert mml.classwise_calibration(flat, flat_target)["ece"] < 0.02


def test_summary_holds_the_paper_cells_both_conventions_and_counts():
    rng = np.random.default_rng(13)
    logits = rng.normal(25, 3, (40, 80)).astype(np.float32)
    target = (rng.random((40, 80)) < 0.04).astype(np.uint8)
    target[3] = 0
    s = mml.summarize(logits, target, 15, batch_size=16)
    assert s["paper_convention"] == "per_batch" and s["per_batch"]["batch_size"] == 16
    assert (s["mAP"], s["P@3"], s["R@3"], s["F1@3"]) == (
        s["per_batch"]["mAP"], s["per_batch"]["top3"]["micro_precision"], s["per_batch"]["top3"]["micro_recall"],
        s["per_batch"]["top3"]["micro_f1"])
    assert s["positives"] == int(target.sum()) and s["images_without_labels"] == int((target.sum(1) == 0).sum())
    assert s["calibration"]["probability"] == "softmax" and 0 <= s["calibration"]["ece"] <= 1
    json.dumps(s, allow_nan=False)
    empty = mml.summarize(logits[:2], np.zeros((2, 80), np.uint8))   # no class can be ranked: mAP is null
    assert empty["mAP"] is None and empty["whole_set"]["mAP"] is None and empty["R@3"] == 0
    json.dumps(empty, allow_nan=False)


def test_published_h_is_the_harmonic_mean_of_f1_at_3():
    """The paper's H(F1@3) = 2ab/(a+b) of clean and attacked F1@3 (ucat.metrics.harmonic_mean)."""
    from ucat.metrics import harmonic_mean
    from ucat.report import reference

    worst = 0.0
    for table in ("table14_coco", "table15_coco"):
        cells = {(c.method, c.attack, c.eps, c.metric): c.value for c in reference.load_table(table)}
        for (method, attack, eps, metric), h in cells.items():
            if metric == "H(F1@3)":
                worst = max(worst, abs(harmonic_mean(cells[method, "clean", 0, "F1@3"],
                                                     cells[method, attack, eps, "F1@3"]) - h))
    assert worst < 0.006, worst   # two-decimal rounding of the published numbers
    assert not math.isnan(worst)


# ----------------------------------------------------------------------------- cells on the COCO replica

@pytest.fixture()
def coco_ready(tmp_params, tiny_checkpoint):
    from ucat import data

    p = dict(tmp_params, data=dict(tmp_params["data"], source="smoke"))
    data.prepare("coco2017", p)
    return p, tiny_checkpoint


def test_coco_cells_score_the_replica_like_the_official_code(coco_ready, tmp_path):
    from ucat import evaluate
    from ucat.data import replica

    params, ckpt = coco_ready
    evaluator = evaluate.Evaluator(params, ckpt, "coco2017", torch.device("cpu"), "clip", progress=False)
    logits = {}
    for attack in ("clean", "pgd", "cw"):
        summary, samples = evaluator.score(attack, 4)
        evaluate.write_outputs(summary, samples, tmp_path / f"{attack}.json", tmp_path / f"{attack}.npz")
        saved = json.loads((tmp_path / f"{attack}.json").read_text())
        arrays = np.load(tmp_path / f"{attack}.npz")
        assert set(arrays.files) == {"sample_id", "target", "logits"}
        assert arrays["logits"].dtype == np.float32 and arrays["logits"].shape == (41, 80)
        assert arrays["sample_id"].tolist() == list(range(41))          # the annotation file's order
        assert [tuple(np.flatnonzero(t)) for t in arrays["target"]] == replica.coco_labels()
        assert saved["eps"] == (0 if attack == "clean" else 4) and saved["multilabel"] and saved["n"] == 41
        # 41 images < one official batch of 512: the paper's cells are the official metrics of the whole set
        ref = _official_metrics(arrays["logits"].astype(np.float64), arrays["target"], 3)
        got = (saved["mAP"], saved["P@3"], saved["R@3"], saved["F1@3"])
        assert max(abs(a - b) for a, b in zip(got, (ref["mAP"], ref["micro_precision"], ref["micro_recall"],
                                                   ref["micro_f1"]))) < 1e-9
        assert saved["per_batch"]["top5"] == saved["whole_set"]["top5"]
        assert saved["images_without_labels"] == 1 and saved["positives"] == 81
        logits[attack] = arrays["logits"]
    assert not np.array_equal(logits["clean"], logits["pgd"]) and not np.array_equal(logits["clean"], logits["cw"])


def test_coco_evaluation_job_writes_restores_and_refuses_autoattack(coco_ready, tmp_path):
    from ucat import evaluate

    params, ckpt = coco_ready
    params = dict(params, data=dict(params["data"], subsample=20))

    def out_paths(attack, eps):
        return tmp_path / "cells" / f"{attack}_eps{eps}.json", tmp_path / "samples" / f"{attack}_eps{eps}.npz"

    cpu = torch.device("cpu")
    with pytest.raises(ConfigError, match="autoattack"):
        evaluate.evaluate_dataset(params, ckpt, "coco2017", cpu, method="clip", out_paths=out_paths,
                                  conditions=[("clean", 0), ("autoattack", 1)], progress=False)
    assert not (tmp_path / "cells").exists()   # refused before anything was computed
    conditions = [("clean", 0), ("pgd", 2), ("cw", 2)]
    info = evaluate.evaluate_dataset(params, ckpt, "coco2017", cpu, method="clip", out_paths=out_paths,
                                     conditions=conditions, progress=False)
    assert all(not v["restored"] and "mAP" in v and "accuracy" not in v for v in info.values())
    ids = np.load(out_paths("clean", 0)[1])["sample_id"]
    assert len(ids) == 20 and list(ids) == sorted(ids)                  # a seeded subset, in split order
    again = evaluate.evaluate_dataset(params, ckpt, "coco2017", cpu, method="clip", out_paths=out_paths,
                                      conditions=conditions, progress=False)
    assert all(v["restored"] for v in again.values())
