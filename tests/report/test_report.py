"""ucat.report on synthetic metrics: files, averages, H, paper pairing, missing cells."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import numpy as np
import pytest

from ucat.errors import MetricsError
from ucat.report import build_report
from ucat.report import reference as ref

SHIPPED = Path(__file__).resolve().parents[2] / "src" / "ucat" / "report" / "reference"
PAPER_16 = ["tinyimagenet", "cifar10", "cifar100", "stl10", "sun397", "food101", "oxford_pets", "flowers102",
            "dtd", "eurosat", "fgvc_aircraft", "imagenet", "caltech101", "caltech256", "stanford_cars", "pcam"]
MISSING = ("ucat", "demo_colours", "cw", 2)


BACKBONE = "ViT-B-32-quickgelu"


def make_cfg(methods, datasets, eps=(1, 2), attacks=("clean", "pgd", "cw", "autoattack")):
    return {"methods": list(methods), "data": {"datasets": list(datasets)},
            "evaluate": {"attacks": list(attacks), "eps": list(eps), "pgd": {"steps": 100}, "cw": {"steps": 10}}}


def _cell(method, dataset, attack, eps, rng, n=200, classes=10):
    """Per-sample arrays and the JSON a real evaluation would write for them."""
    strength = 0 if attack == "clean" else min(1.0, eps * {"pgd": 0.45, "cw": 0.4, "autoattack": 0.5}[attack])
    skill = {"clip": 0.1, "tecoa": 0.55, "ucat": 0.65}.get(method, 0.45)
    label = np.random.default_rng(sum(map(ord, dataset))).integers(0, classes, n)   # one test split per data set
    conf = np.clip(rng.beta(5 + 3 * strength * (1 - skill), 1.5 + skill, n), 1 / classes, 1.0)
    p_correct = np.clip(conf * (1 - strength * (1 - 0.6 * skill)) - 0.05 * (1 - skill), 0, 1)
    correct = rng.random(n) < p_correct
    pred = np.where(correct, label, (label + 1 + rng.integers(0, classes - 1, n)) % classes)
    ent = np.clip((1 - conf) * np.log(classes) + rng.normal(0, 0.05, n), 0, None)
    eu = np.clip((0.25 + 0.2 * skill) * (1 - conf) * (1 - 0.5 * strength * (1 - skill)) + rng.normal(0, 0.01, n), 0, 1)
    probs = np.tile(((1 - conf) / (classes - 1))[:, None], (1, classes))
    probs[np.arange(n), pred] = conf
    arrays = dict(sample_id=np.arange(n), label=label, pred=pred, confidence=conf, entropy=ent, aleatoric=0.9 * ent,
                  epistemic=eu, logits=np.log(probs).astype(np.float32))
    edges = np.linspace(0, 1, 16)
    idx = np.clip(np.digitize(conf, edges[1:-1]), 0, 14)
    count = np.bincount(idx, minlength=15)
    acc_b = [float(correct[idx == b].mean()) if count[b] else None for b in range(15)]
    conf_b = [float(conf[idx == b].mean()) if count[b] else None for b in range(15)]
    ece = sum(count[b] * abs(acc_b[b] - conf_b[b]) for b in range(15) if count[b]) / n
    cell = {"method": method, "dataset": dataset, "attack": attack, "eps": eps, "n": n, "num_classes": classes,
            "accuracy": float(correct.mean()), "ece": float(ece), "nll": 1.0, "brier": 0.5,
            "confidence": float(conf.mean()), "entropy": float(ent.mean()), "aleatoric": float(0.9 * ent.mean()),
            "epistemic": float(eu.mean()), "uncertainty_convention": "paper",
            "reliability": {"bin_edges": edges.tolist(), "bin_accuracy": acc_b, "bin_confidence": conf_b,
                            "bin_count": count.tolist()}}
    return cell, arrays


def write_metrics(root: Path, cfg, skip=(), samples=True, logs=True):
    """Synthetic pipeline outputs for ``cfg``; returns {(m, d, a, e): json} of what was written."""
    rng = np.random.default_rng(0)
    written = {}
    ev = cfg["evaluate"]
    conds = [("clean", 0)] + [(a, e) for e in ev["eps"] for a in ev["attacks"] if a != "clean"]
    for m in cfg["methods"]:
        for d in cfg["data"]["datasets"]:
            for a, e in conds:
                if (m, d, a, e) in skip:
                    continue
                cell, arrays = _cell(m, d, a, e, rng)
                p = root / "metrics" / "eval" / m / d / f"{a}_eps{e}.json"
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_text(json.dumps(cell))
                if samples:
                    s = root / "samples" / m / d / f"{a}_eps{e}.npz"
                    s.parent.mkdir(parents=True, exist_ok=True)
                    np.savez(s, **arrays)
                written[(m, d, a, e)] = cell
        if logs and m != "clip":
            tdir = root / "metrics" / "train" / m / "plots" / "metrics" / "train"
            tdir.mkdir(parents=True, exist_ok=True)
            steps = np.arange(300)
            series = {"loss": 2.5 * np.exp(-steps / 120) + 0.6 + rng.normal(0, 0.08, 300),
                      "adv_acc": 0.2 + 0.4 * (1 - np.exp(-steps / 80)) + rng.normal(0, 0.03, 300),
                      "lr": 1e-4 * np.minimum(1, steps / 30) * 0.5 * (1 + np.cos(np.pi * steps / 300))}
            if m == "ucat":
                series["ce"], series["align"] = 0.8 * series["loss"], 0.2 * series["loss"]
            for name, vals in series.items():
                (tdir / f"{name}.tsv").write_text(
                    f"step\t{name}\n" + "".join(f"{s}\t{v:.6g}\n" for s, v in zip(steps, vals)))
    return written


def read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def shipped_value(table, method, dataset, attack, eps, metric="top1_acc", backbone="ViT-B-32"):
    """The published value, read straight from the shipped CSV (independent of the loader)."""
    for r in read_csv(SHIPPED / f"{table}.csv"):
        if (r["backbone"], r["method"], r["dataset"], r["attack"], r["eps"], r["metric"]) == \
                (backbone, method, dataset, attack, str(eps), metric):
            return float(r["value"])
    raise KeyError((table, method, dataset, attack, eps, metric))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    cfg = make_cfg(["clip", "tecoa", "ucat", "kl_prob_forward"], ["cifar10", "demo_shapes", "demo_colours"])
    written = write_metrics(root, cfg, skip={MISSING})
    out = build_report(cfg, metrics_dir=root / "metrics", samples_dir=root / "samples",
                       out_dir=root / "results", summary_path=root / "metrics" / "summary.json", backbone=BACKBONE)
    return root, cfg, written, out


def rows_by_key(path):
    return {(r["method"], r["dataset"], r["attack"], int(r["eps"]), r["metric"]): r for r in read_csv(path)}


def test_all_outputs_exist(built):
    root, cfg, _, out = built
    res = root / "results"
    for name in ("main", "calibration", "uncertainty", "paper_comparison"):
        for ext in ("md", "tex", "csv"):
            assert (res / "tables" / f"{name}.{ext}").stat().st_size > 0
    stems = ["reliability_eps1", "reliability_eps2", "uncertainty_vs_eps", "accuracy_vs_ece",
             "accuracy_bars_eps1", "accuracy_bars_eps2", "training_curves",
             "uncertainty_distribution_eps1", "uncertainty_distribution_eps2"]
    stems += [f"{k}_eps{e}" for e in (1, 2) for k in ("risk_coverage", "error_detection_auroc",
                                                       "attack_detection_auroc", "reliability_temperature_scaled")]
    for stem in stems:
        for ext in ("png", "pdf"):
            p = res / "figures" / f"{stem}.{ext}"
            assert p.stat().st_size > 1000, p
    assert {p.name for p in out["figures"]} == {f"{s}.{e}" for s in stems for e in ("png", "pdf")}
    assert (res / "report.md").stat().st_size > 0 and (root / "metrics" / "summary.json").stat().st_size > 0
    assert (res / "figures" / "reliability_eps1.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(res.rglob("*.tmp")), "temporary files left behind"
    report = (res / "report.md").read_text()
    assert "figures/accuracy_vs_ece.png" in report and "Top-1 accuracy (%)" in report


def test_main_averages_and_h(built):
    root, cfg, written, _ = built
    rows = rows_by_key(root / "results" / "tables" / "main.csv")
    datasets = cfg["data"]["datasets"]
    checked = 0
    for m in cfg["methods"]:
        clean = np.mean([written[(m, d, "clean", 0)]["accuracy"] for d in datasets]) * 100
        assert float(rows[(m, "average", "clean", 0, "top1_acc")]["reproduced"]) == pytest.approx(clean, abs=1e-4)
        for e in (1, 2):
            for a in ("pgd", "cw", "autoattack"):
                if m == MISSING[0] and (a, e) == MISSING[2:]:
                    continue
                robust = np.mean([written[(m, d, a, e)]["accuracy"] for d in datasets]) * 100
                h = 2 * clean * robust / (clean + robust)
                assert float(rows[(m, "average", a, e, "top1_acc")]["reproduced"]) == pytest.approx(robust, abs=1e-4)
                assert float(rows[(m, "harmonic_mean_clean_robust", a, e, "H")]["reproduced"]) == \
                    pytest.approx(h, abs=1e-4)
                checked += 1
    assert checked == 4 * 6 - 1
    cell = written[("tecoa", "demo_shapes", "cw", 2)]
    assert float(rows[("tecoa", "demo_shapes", "cw", 2, "top1_acc")]["reproduced"]) == \
        pytest.approx(100 * cell["accuracy"], abs=1e-4)
    summary = json.loads((root / "metrics" / "summary.json").read_text())
    # the headline: per method x condition, means over the data sets and H (per-cell numbers stay in the cells)
    assert summary["tecoa"]["cw_eps2"]["acc"] == pytest.approx(
        np.mean([written[("tecoa", d, "cw", 2)]["accuracy"] for d in datasets]) * 100, abs=1e-4)
    assert summary["tecoa"]["cw_eps2"]["ece"] == pytest.approx(
        np.mean([written[("tecoa", d, "cw", 2)]["ece"] for d in datasets]) * 100, abs=1e-4)
    assert summary["ucat"]["clean_eps0"]["acc"] == pytest.approx(
        np.mean([written[("ucat", d, "clean", 0)]["accuracy"] for d in datasets]) * 100, abs=1e-4)
    assert "H" not in summary["ucat"]["clean_eps0"]
    clean = 100 * np.mean([written[("ucat", d, "clean", 0)]["accuracy"] for d in datasets])
    robust = 100 * np.mean([written[("ucat", d, "pgd", 1)]["accuracy"] for d in datasets])
    assert summary["ucat"]["pgd_eps1"]["H"] == pytest.approx(2 * clean * robust / (clean + robust), abs=1e-4)


def test_paper_column_matches_shipped_csv(built):
    root, cfg, written, _ = built
    rows = rows_by_key(root / "results" / "tables" / "main.csv")
    pairs = [("ucat", "clean", 0, "table16_main", "clean"), ("ucat", "pgd", 1, "table16_main", "pgd100"),
             ("tecoa", "autoattack", 1, "table16_main", "autoattack"), ("clip", "pgd", 1, "table16_main", "pgd100"),
             ("kl_prob_forward", "clean", 0, "table13_ablation", "clean"),
             ("kl_prob_forward", "pgd", 1, "table13_ablation", "pgd100")]
    for m, a, e, table, paper_attack in pairs:
        r = rows[(m, "cifar10", a, e, "top1_acc")]
        paper = shipped_value(table, ref.paper_method(m), "CIFAR10", paper_attack, e)
        ours = 100 * written[(m, "cifar10", a, e)]["accuracy"]
        assert float(r["paper"]) == paper
        assert float(r["reproduced"]) == pytest.approx(ours, abs=1e-4)
        assert float(r["diff"]) == pytest.approx(ours - paper, abs=2e-4)
    md = (root / "results" / "tables" / "main.md").read_text()
    ours = 100 * written[("ucat", "cifar10", "pgd", 1)]["accuracy"]
    assert f"{ours:.2f} ({shipped_value('table16_main', 'ucat', 'CIFAR10', 'pgd100', 1):.2f})" in md
    comp = rows_by_key(root / "results" / "tables" / "paper_comparison.csv")
    assert float(comp[("ucat", "cifar10", "pgd", 1, "top1_acc")]["paper"]) == \
        shipped_value("table16_main", "ucat", "CIFAR10", "pgd100", 1)


def test_nothing_written_for_unknown_paper_cells(built):
    root, cfg, _, _ = built
    rows = read_csv(root / "results" / "tables" / "main.csv")
    paired = {(r["method"], r["dataset"], r["attack"], r["eps"]) for r in rows if r["paper"] != ""}
    # only CIFAR-10 at the paper's setting: clean, PGD-100 and AA at ε=1 (CW ran 10 steps, ε=2 is not the paper's)
    expected = {(m, "cifar10", a, e) for m in cfg["methods"] for a, e in (("clean", "0"), ("pgd", "1"),
                                                                          ("autoattack", "1"))}
    assert paired == expected
    for r in rows:
        if r["paper"] == "":
            assert r["diff"] == ""
    for name in ("calibration", "uncertainty"):
        assert all(r["paper"] == "" and r["diff"] == "" for r in read_csv(root / "results" / "tables" / f"{name}.csv"))
    comp = read_csv(root / "results" / "tables" / "paper_comparison.csv")
    assert comp and all(r["paper"] != "" and r["dataset"] == "cifar10" for r in comp)
    assert {r["table"] for r in comp} == {"table16_main", "table13_ablation"}
    md = (root / "results" / "tables" / "main.md").read_text()
    assert "PGD-100" in md and "CW-10" in md and "(—)" in md
    assert "(—)" in (root / "results" / "tables" / "paper_comparison.md").read_text()  # ablation table shape


def test_missing_cell_is_na(built, caplog):
    root, cfg, _, out = built
    m, d, a, e = MISSING
    rows = rows_by_key(root / "results" / "tables" / "main.csv")
    assert rows[(m, d, a, e, "top1_acc")]["reproduced"] == "n/a"
    assert rows[(m, "average", a, e, "top1_acc")]["reproduced"] == "n/a"
    assert rows[(m, "harmonic_mean_clean_robust", a, e, "H")]["reproduced"] == "n/a"
    assert rows[(m, "average", a, 1, "top1_acc")]["reproduced"] != "n/a"
    assert [x[:4] for x in out["missing"]] == [MISSING]
    summary = json.loads((root / "metrics" / "summary.json").read_text())
    row = summary[m][f"{a}_eps{e}"]
    assert {"acc", "ece", "H", "aurc", "ece_ts"} <= set(row) and set(row.values()) == {None}  # a missing cell
    assert "n/a" in (root / "results" / "tables" / "main.md").read_text()
    assert "demo_colours" in (root / "results" / "tables" / "missing.md").read_text()
    assert "1 cell(s) missing" in (root / "results" / "report.md").read_text()
    # the warning is logged on every build
    with caplog.at_level(logging.WARNING, logger="ucat.report"):
        build_report(cfg, metrics_dir=root / "metrics", samples_dir=root / "samples", out_dir=root / "again",
                     summary_path=root / "again" / "summary.json", backbone=BACKBONE, figures=False)
    assert any("demo_colours" in rec.getMessage() and "n/a" in rec.getMessage() for rec in caplog.records)


@pytest.mark.parametrize("damage, what", [
    (lambda p: p.write_text(p.read_text().replace('"eps": 1', '"eps": 4')), "labelled"),
    (lambda p: p.write_text("{not json"), "unreadable"),
    (lambda p: p.write_text("{}"), "not an evaluation cell"),
    (lambda p: p.write_text(json.dumps({**json.loads(p.read_text()), "accuracy": 0.999})), "disagrees with its per-sample"),
], ids=["mislabelled", "corrupt", "empty", "accuracy-tampered"])
def test_a_present_but_bad_cell_is_refused_naming_the_file(tmp_path, damage, what):
    """Only an absent cell is n/a; one that is there but is not what the evaluation wrote stops the report."""
    cfg = make_cfg(["ucat"], ["cifar10"], eps=[1], attacks=["clean", "pgd"])
    write_metrics(tmp_path, cfg, logs=False)
    bad = tmp_path / "metrics" / "eval" / "ucat" / "cifar10" / "pgd_eps1.json"
    damage(bad)
    with pytest.raises(MetricsError, match=f"{bad}.*{what}"):
        build_report(cfg, metrics_dir=tmp_path / "metrics", samples_dir=tmp_path / "samples",
                     out_dir=tmp_path / "results", summary_path=tmp_path / "summary.json", backbone=BACKBONE)
    assert not (tmp_path / "results").exists()


def test_full_paper_setting_pairs_averages_and_backbone(tmp_path):
    cfg = make_cfg(["clip", "ucat"], PAPER_16, eps=[1], attacks=["clean", "autoattack"])
    written = write_metrics(tmp_path, cfg, samples=False, logs=False)
    build_report(cfg, metrics_dir=tmp_path / "metrics", samples_dir=tmp_path / "none",
                 out_dir=tmp_path / "results", summary_path=tmp_path / "summary.json", backbone=BACKBONE,
                 figures=False)
    rows = rows_by_key(tmp_path / "results" / "tables" / "main.csv")
    for m in ("clip", "ucat"):
        r = rows[(m, "average", "autoattack", 1, "top1_acc")]
        assert float(r["paper"]) == shipped_value("table16_main", m, "average", "autoattack", 1)
        h = rows[(m, "harmonic_mean_clean_robust", "autoattack", 1, "H")]
        assert float(h["paper"]) == shipped_value("table16_main", m, "harmonic_mean_clean_robust", "autoattack", 1, "H")
        clean = 100 * np.mean([written[(m, d, "clean", 0)]["accuracy"] for d in PAPER_16])
        assert float(rows[(m, "average", "clean", 0, "top1_acc")]["reproduced"]) == pytest.approx(clean, abs=1e-4)
    comp = rows_by_key(tmp_path / "results" / "tables" / "paper_comparison.csv")
    assert {r["table"] for r in read_csv(tmp_path / "results" / "tables" / "paper_comparison.csv")} >= \
        {"table16_main", "table13_ablation", "table12_ablation_avg", "backbones_avg"}
    # the backbone study keeps H on its "average" row
    bb = [r for r in read_csv(tmp_path / "results" / "tables" / "paper_comparison.csv")
          if r["table"] == "backbones_avg" and r["metric"] == "H" and r["method"] == "ucat"]
    assert len(bb) == 1 and float(bb[0]["paper"]) == shipped_value("backbones_avg", "ucat", "average", "autoattack", 1, "H")
    assert comp[("ucat", "pcam", "autoattack", 1, "top1_acc")]["paper"] != ""
    assert "Backbone study" in (tmp_path / "results" / "tables" / "paper_comparison.md").read_text()


def test_tga_methods_are_paired_with_their_table16_rows(tmp_path):
    """TGA-ZSR and Comp-TGA are pipeline methods: every Table 16 cell of theirs gets its published value."""
    cfg = make_cfg(["tecoa", "tga_zsr", "comp_tga"], PAPER_16, eps=[1])
    cfg["evaluate"]["cw"]["steps"] = 100
    write_metrics(tmp_path, cfg, samples=False, logs=False)
    build_report(cfg, metrics_dir=tmp_path / "metrics", samples_dir=tmp_path / "none",
                 out_dir=tmp_path / "results", summary_path=tmp_path / "summary.json", backbone=BACKBONE,
                 figures=False)
    rows = rows_by_key(tmp_path / "results" / "tables" / "main.csv")
    for m in ("tga_zsr", "comp_tga"):
        for attack, paper_attack in (("clean", "clean"), ("pgd", "pgd100"), ("cw", "cw100"), ("autoattack", "autoattack")):
            e = 0 if attack == "clean" else 1
            for d, name in (("cifar10", "CIFAR10"), ("pcam", "PCAM"), ("average", "average")):
                assert float(rows[(m, d, attack, e, "top1_acc")]["paper"]) == \
                    shipped_value("table16_main", m, name, paper_attack, e), (m, d, attack)
        assert float(rows[(m, "harmonic_mean_clean_robust", "autoattack", 1, "H")]["paper"]) == \
            shipped_value("table16_main", m, "harmonic_mean_clean_robust", "autoattack", 1, "H")
    comparison = read_csv(tmp_path / "results" / "tables" / "paper_comparison.csv")
    tga_rows = [r for r in comparison if r["method"] in ("tga_zsr", "comp_tga")]
    assert {r["table"] for r in tga_rows} == {"table16_main"}      # no ablation or backbone rows exist for them
    assert len(tga_rows) == 2 * (4 * 17 + 3)                        # 16 sets + average per condition, 3 H
    main_md = (tmp_path / "results" / "tables" / "main.md").read_text()
    assert "TGA-ZSR" in main_md and "Comp-TGA" in main_md
    assert f"({shipped_value('table16_main', 'tga_zsr', 'average', 'autoattack', 1):.2f})" in main_md


def test_other_backbone_or_steps_have_no_paper_values():
    p = ref.Pairing("demo", ["cifar10"], {"pgd": 100, "cw": 100})
    assert p.value("table16_main", "ucat", "cifar10", "clean", 0) is None
    p = ref.Pairing("ViT-B-32-quickgelu", ["cifar10"], {"pgd": 10, "cw": 100})
    assert p.value("table16_main", "ucat", "cifar10", "pgd", 1) is None
    assert p.value("table16_main", "ucat", "cifar10", "cw", 1) == shipped_value("table16_main", "ucat", "CIFAR10", "cw100", 1)
    assert p.value("table16_main", "ucat", "cifar10", "cw", 2) is None
    assert p.value("table16_main", "ucat", "demo_shapes", "clean", 0) is None
    assert p.value("table16_main", "ucat", "average", "clean", 0) is None   # one data set is not the paper's 16
    assert p.value("table16_main", "kl_prob_forward", "cifar10", "clean", 0) is None  # not in table 16


def test_smoke_run_pairs_reduced_steps_but_nothing_else():
    """A smoke run pairs its 2-step PGD/CW with PGD-100/CW-100; backbone, ε and data set still have to match."""
    p = ref.Pairing("ViT-B-32-quickgelu", ["cifar10"], {"pgd": 2, "cw": 2}, smoke=True)
    assert p.value("table16_main", "ucat", "cifar10", "pgd", 1) == shipped_value("table16_main", "ucat", "CIFAR10", "pgd100", 1)
    assert p.value("table16_main", "tecoa", "cifar10", "cw", 1) == shipped_value("table16_main", "tecoa", "CIFAR10", "cw100", 1)
    assert p.value("table16_main", "ucat", "cifar10", "pgd", 4) is None
    assert p.value("table16_main", "ucat", "demo_shapes", "pgd", 1) is None
    assert ref.Pairing("demo", ["cifar10"], {"pgd": 2}, smoke=True).value("table16_main", "ucat", "cifar10", "clean", 0) is None
    assert ref.Pairing("ViT-B-32-quickgelu", ["cifar10"], {"pgd": 2, "cw": 2}).value(
        "table16_main", "ucat", "cifar10", "pgd", 1) is None


def test_reference_averages_recompute_from_16_cells():
    averages = ref.recompute_averages("table16_main")
    assert len(averages) == 7 * 4
    for (method, attack, eps), (mean16, published) in averages.items():
        assert mean16 == pytest.approx(published, abs=0.01), (method, attack, eps)
    # and the loader agrees with the CSV read directly
    direct = np.mean([shipped_value("table16_main", "ucat", ref.paper_dataset(d), "clean", 0) for d in PAPER_16])
    assert averages[("ucat", "clean", 0)][0] == pytest.approx(direct, abs=1e-9)
    assert averages[("ucat", "clean", 0)][1] == 54.17


def test_markdown_header_has_one_cell_per_column():
    """'Conf | wrong (%)' once split the uncertainty table's header into 11 cells over 9 columns."""
    import re

    from ucat.report.render import Table, to_markdown
    from ucat.report.tables import UNCERTAINTY

    t = Table("t", ["Method", "Condition", "Acc (%)", *(label for _, label, _ in UNCERTAINTY)], label_cols=2)
    t.add_group([["UCAT", "Clean", *["1"] * (1 + len(UNCERTAINTY))]])
    header, align, row = [ln for ln in to_markdown(t).splitlines() if ln.startswith("|")]
    cells = lambda ln: re.split(r"(?<!\\)\|", ln.strip())[1:-1]  # noqa: E731  (GFM: an escaped pipe is not a separator)
    assert len(cells(header)) == len(cells(align)) == len(cells(row)) == 3 + len(UNCERTAINTY)


def _corrupt_json(key, value):
    def apply(root):
        p = root / "metrics" / "eval" / "ucat" / "cifar10" / "pgd_eps1.json"
        cell = json.loads(p.read_text())
        node = cell
        *parents, leaf = key.split(".")
        for k in parents:
            node = node[k]
        node[leaf] = value
        p.write_text(json.dumps(cell))
        return p
    return apply


def _corrupt_npz(root):
    p = root / "samples" / "ucat" / "cifar10" / "clean_eps0.npz"
    z = dict(np.load(p))
    z["confidence"] = z["confidence"] + 1.0
    np.savez(p, **z)
    return p


def _corrupt_log(root):
    p = root / "metrics" / "train" / "ucat" / "plots" / "metrics" / "train" / "adv_acc.tsv"
    lines = p.read_text().splitlines()
    lines[3] = "3\t1.7"
    p.write_text("\n".join(lines) + "\n")
    return p


@pytest.mark.parametrize("corrupt, what", [
    (_corrupt_json("accuracy", 1.5), "accuracy = 1.5 is outside [0, 1]"),
    (_corrupt_json("ece", -3), "ece = -3 is outside [0, 1]"),
    (_corrupt_json("accuracy", "0.5"), "accuracy = '0.5' is not a finite number"),
    (_corrupt_json("confidence", float("nan")), "confidence = nan is not a finite number"),
    (_corrupt_json("entropy", 50.0), "entropy = 50.0 is outside [0, 2.30259]"),   # > log 10 classes
    (_corrupt_json("reliability.bin_count", [-1] * 15), "bin_count[0] = -1"),
    (_corrupt_json("accuracy", True), "accuracy = True"),
    (_corrupt_npz, "confidence holds"),
    (_corrupt_log, "adv_acc holds 1.7, outside [0, 1]"),
])
def test_report_refuses_bad_metrics_naming_the_file_and_writes_nothing(tmp_path, corrupt, what):
    cfg = make_cfg(["clip", "ucat"], ["cifar10"], eps=[1], attacks=["clean", "pgd"])
    write_metrics(tmp_path, cfg)
    bad = corrupt(tmp_path)
    with pytest.raises(MetricsError) as err:
        build_report(cfg, metrics_dir=tmp_path / "metrics", samples_dir=tmp_path / "samples",
                     out_dir=tmp_path / "results", summary_path=tmp_path / "summary.json", backbone=BACKBONE)
    msg = str(err.value)
    assert str(bad) in msg and what in msg and "\n" not in msg
    assert not (tmp_path / "results").exists() and not (tmp_path / "summary.json").exists()


def test_build_reports_checks_every_backbone_before_writing(tmp_path, monkeypatch):
    """Two backbones, the second one's cell is bad: neither report nor any summary is written."""
    from ucat import config, paths
    from ucat.report import build_reports

    root = Path(__file__).resolve().parents[2]
    params = config.load(root / "config" / "paper.yaml", [
        "methods=[clip]", "data.datasets=[cifar10]", "evaluate.attacks=[pgd]", "evaluate.eps=[1]",
        "backbone.models=[{name: ViT-B-32-quickgelu, pretrained: openai}, {name: ViT-B-16, pretrained: openai}]"])
    monkeypatch.chdir(tmp_path)
    for b in paths.backbones(params):
        cfg = make_cfg(["clip"], ["cifar10"], eps=[1], attacks=["pgd"])
        write_metrics(tmp_path / "w" / b, cfg, samples=False, logs=False)
        for a, e in (("clean", 0), ("pgd", 1)):
            src = tmp_path / "w" / b / "metrics" / "eval" / "clip" / "cifar10" / f"{a}_eps{e}.json"
            dst = Path(paths.EVAL_JSON.format(**paths.at(params, b, method="clip", dataset="cifar10", attack=a, eps=e)))
            dst.parent.mkdir(parents=True, exist_ok=True)
            bad = b == "ViT-B-16" and a == "clean"
            dst.write_text(src.read_text().replace('"accuracy": ', '"accuracy": 7', 1) if bad else src.read_text())
    with pytest.raises(MetricsError, match="ViT-B-16/seed0/eval/clip/cifar10/clean_eps0.json: accuracy = 7"):
        build_reports(params)
    assert not Path("results").exists() and not Path(paths.SUMMARY.format(setting="main")).exists()
    assert not Path(paths.BACKBONE_SUMMARY.format(backbone="ViT-B-32-quickgelu", setting="main")).exists()
