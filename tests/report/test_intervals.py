"""The report's confidence intervals and paired differences on synthetic cells: point values
agree with the rest of the report, pairing is by sample id, seeds, tables, summary, forest plot."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import scipy.stats

from ucat import config
from ucat.errors import ConfigError
from ucat.report import build_report
from ucat.report import figures as F
from ucat.report import intervals as I
from ucat.report.load import Setting
from ucat.report.render import to_markdown
from ucat.report.tables import difference_tables

from .test_report import BACKBONE, make_cfg, read_csv, write_metrics

ROOT = Path(__file__).resolve().parents[2]
INTERVALS = {"confidence": 0.95, "resamples": 300, "method": "percentile", "reference": "ucat", "seed": 0}


def with_intervals(cfg, **kw):
    return {**cfg, "report": {"formats": ["png"], "intervals": {**INTERVALS, **kw}}}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("intervals")
    cfg = with_intervals(make_cfg(["clip", "tecoa", "ucat"], ["cifar10", "demo_shapes"], eps=(1,),
                                  attacks=("clean", "pgd", "cw")))
    written = write_metrics(root, cfg, logs=False)
    out = build_report(cfg, metrics_dir=root / "metrics", samples_dir=root / "samples", out_dir=root / "results",
                       summary_path=root / "summary.json", backbone=BACKBONE, figures=False)
    iv = I.analyse(Setting.from_config(cfg), [root / "samples"], I.Settings(**INTERVALS))
    return root, cfg, written, out, iv


def test_point_values_are_the_reports_numbers(built):
    root, cfg, written, out, iv = built
    summary = json.loads((root / "summary.json").read_text())
    for m in cfg["methods"]:
        for (a, e) in [("clean", 0), ("pgd", 1), ("cw", 1)]:
            for d in cfg["data"]["datasets"]:
                cell = written[(m, d, a, e)]
                assert iv.value("accuracy", m, d, a, e).value == pytest.approx(100 * cell["accuracy"], abs=1e-9)
                assert iv.value("ece", m, d, a, e).value == pytest.approx(100 * cell["ece"], abs=1e-4)
            row = summary[m][f"{a}_eps{e}"]
            assert iv.value("accuracy", m, "average", a, e).value == pytest.approx(row["acc"], abs=1e-3)
            assert iv.value("aurc", m, "average", a, e).value == pytest.approx(row["aurc"], abs=1e-3)
            assert iv.value("err_auroc", m, "average", a, e).value == pytest.approx(row["error_auroc"], abs=1e-3)
            if a != "clean":
                assert iv.value("atk_auroc", m, "average", a, e).value == pytest.approx(row["attack_auroc"], abs=1e-3)
                assert iv.value("H", m, "average", a, e).value == pytest.approx(row["H"], abs=1e-3)
            v = iv.value("aurc", m, "average", a, e)
            assert v.lo < v.value < v.hi


def test_summary_carries_the_headline_differences(built):
    root, cfg, *_ = built
    summary = json.loads((root / "summary.json").read_text())
    assert not any(k.startswith("ucat_minus") for k in summary["ucat"]["pgd_eps1"])
    for m in ("clip", "tecoa"):
        for cond in ("clean_eps0", "pgd_eps1", "cw_eps1"):
            row, ref = summary[m][cond], summary["ucat"][cond]
            assert row["ucat_minus_acc"] == pytest.approx(ref["acc"] - row["acc"], abs=1e-3)
            assert row["ucat_minus_ece"] == pytest.approx(ref["ece"] - row["ece"], abs=1e-3)
            assert row["ucat_minus_acc_lo"] <= row["ucat_minus_acc"] <= row["ucat_minus_acc_hi"]
            assert row["ucat_minus_ece_lo"] < row["ucat_minus_ece_hi"]
    # CLIP (skill 0.1) against UCAT (0.65) under attack: far apart, the interval excludes 0
    assert summary["clip"]["pgd_eps1"]["ucat_minus_acc_lo"] > 0


def test_tables_figure_and_report_show_the_intervals(built, tmp_path):
    root, cfg, _, out, iv = built
    tables = root / "results" / "tables"
    main = (tables / "main.md").read_text()
    assert "Top-1 accuracy: UCAT − method, paired 95 % interval" in main and "*" in main
    assert "H(clean, robust): UCAT − method" in main
    assert "ECE: UCAT − method" in (tables / "calibration.md").read_text()
    use = (tables / "uncertainty_use.md").read_text()
    for label in ("AURC (1 − MSP): UCAT", "Error-detection AUROC (1 − MSP): UCAT", "Attack-detection AUROC (1 − MSP): UCAT"):
        assert label in use
    report = (root / "results" / "report.md").read_text()
    assert "95 % percentile bootstrap intervals over the test images, 300 resamples" in report
    rows = read_csv(tables / "differences.csv")
    clip_pgd = [r for r in rows if (r["metric"], r["method"], r["dataset"], r["attack"]) == ("accuracy", "clip", "average", "pgd")]
    assert len(clip_pgd) == 1 and clip_pgd[0]["excludes_zero"] == "yes"
    assert float(clip_pgd[0]["diff"]) == pytest.approx(float(clip_pgd[0]["reference_value"]) - float(clip_pgd[0]["value"]),
                                                       abs=1e-3)
    # every published counterpart says whether the paper's number lies in the reproduced interval
    paper = read_csv(tables / "paper_comparison.csv")
    assert paper and all(r["paper_inside"] in ("yes", "no") for r in paper)
    for r in paper:
        inside = float(r["lo"]) <= float(r["paper"]) <= float(r["hi"])
        assert r["paper_inside"] == ("yes" if inside else "no")
    assert "| Interval | Paper inside |" in (tables / "paper_comparison.md").read_text()
    # the forest plot
    paths = F.render([("paired_differences_eps1", lambda: F.paired_differences_figure(iv, 1))], tmp_path, ("png",))
    assert [p.name for p in paths] == ["paired_differences_eps1.png"] and paths[0].stat().st_size > 5000


def _write(root, method, dataset, attack, eps, correct, conf, ids=None):
    n = len(correct)
    label = np.arange(n) % 5
    path = root / method / dataset / f"{attack}_eps{eps}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, sample_id=np.arange(n) if ids is None else ids, label=label,
             pred=np.where(correct, label, (label + 1) % 5), confidence=conf.astype(np.float32))


def _pair(root, n=2000, shuffle=None, seed=0, extra=40):
    """tecoa right on 70 % of the images, ucat on the same ones and ``extra`` more (2 points)."""
    rng = np.random.default_rng(seed)
    setting = Setting.from_config(make_cfg(["tecoa", "ucat"], ["demo_shapes"], eps=(1,), attacks=("clean", "pgd")))
    for a, e in setting.conditions():
        tecoa = rng.random(n) < 0.7
        ucat = tecoa.copy()
        ucat[np.flatnonzero(~tecoa)[:extra]] = True
        conf = rng.uniform(0.2, 1.0, n)
        _write(root, "tecoa", "demo_shapes", a, e, tecoa, conf)
        ids = None
        if shuffle == (a, e):
            perm = rng.permutation(n)
            ucat, conf, ids = ucat[perm], conf[perm], perm
        _write(root, "ucat", "demo_shapes", a, e, ucat, conf, ids)
    return setting


def test_differences_are_paired_by_sample_id(tmp_path):
    setting = _pair(tmp_path)
    iv = I.analyse(setting, [tmp_path], I.Settings(resamples=1000))
    for a, e in setting.conditions():
        t, u, d = (iv.value("accuracy", "tecoa", "demo_shapes", a, e), iv.value("accuracy", "ucat", "demo_shapes", a, e),
                   iv.diff("accuracy", "tecoa", "demo_shapes", a, e))
        assert u.lo < t.hi                                    # the two methods' own intervals overlap ...
        assert d.value == pytest.approx(2.0) and d.lo > 0     # ... their paired difference excludes 0
    # the same arrays, one cell stored in another order: refused (n/a, said), never paired by position
    other = tmp_path / "shuffled"
    setting = _pair(other, shuffle=("pgd", 1))
    iv = I.analyse(setting, [other], I.Settings(resamples=200))
    assert iv.diff("accuracy", "tecoa", "demo_shapes", "pgd", 1).value is None
    assert iv.diff("accuracy", "tecoa", "demo_shapes", "clean", 0).value == pytest.approx(2.0)
    assert any("sample ids differ" in p and "ucat/demo_shapes/pgd_eps1" in p for p in iv.problems)


def test_several_seeds(tmp_path):
    seeds = [tmp_path / f"seed{s}" for s in range(3)]
    for s, root in enumerate(seeds):
        setting = _pair(root, n=600, seed=s, extra=10 + 8 * s)
    iv = I.analyse(setting, seeds, I.Settings(resamples=300))
    singles = [I.analyse(setting, [root], I.Settings(resamples=50)) for root in seeds]
    for a, e in setting.conditions():
        own = [x.diff("accuracy", "tecoa", "average", a, e).value for x in singles]
        combined = iv.diff("accuracy", "tecoa", "average", a, e)
        assert combined.value == pytest.approx(np.mean(own))           # the value over seeds is their mean
        spread = iv.across_seeds("accuracy", "tecoa", "average", a, e, diff=True)
        half = scipy.stats.t.ppf(0.975, 2) * np.std(own, ddof=1) / np.sqrt(3)
        assert (spread.mean, spread.lo, spread.hi) == pytest.approx((np.mean(own), np.mean(own) - half, np.mean(own) + half))
        values = [x.value("accuracy", "ucat", "demo_shapes", a, e).value for x in singles]
        assert iv.across_seeds("accuracy", "ucat", "demo_shapes", a, e).std == pytest.approx(np.std(values, ddof=1))
    text = "".join(map(to_markdown, difference_tables(iv, ("accuracy",), setting.methods)))
    assert "UCAT − method over 3 seeds (mean ± std, Student-t 95 % interval)" in text


def test_seeds_on_the_same_images_share_the_draw(tmp_path):
    """Three seeds holding identical results on the same images: resampling the seeds changes
    nothing and the images are drawn once for all, so the interval is that of one seed (were each
    seed's images drawn apart, averaging would shrink it to √(5/9) ≈ 0.75 of that: measured 0.76)."""
    _pair(tmp_path / "one", n=600)
    setting = Setting.from_config(make_cfg(["tecoa", "ucat"], ["demo_shapes"], eps=(1,), attacks=("clean", "pgd")))
    one = I.analyse(setting, [tmp_path / "one"], I.Settings(resamples=1000)).value("accuracy", "ucat", "average", "pgd", 1)
    three = I.analyse(setting, [tmp_path / "one"] * 3, I.Settings(resamples=1000)).value("accuracy", "ucat", "average",
                                                                                        "pgd", 1)
    assert three.value == pytest.approx(one.value)
    assert (three.hi - three.lo) == pytest.approx(one.hi - one.lo, rel=0.15)


def test_configuration(tmp_path):
    p = config.load(ROOT / "params.yaml")
    assert p["report"]["intervals"] == {"confidence": 0.95, "resamples": 2000, "method": "percentile",
                                        "reference": "ucat", "seed": 0}
    with pytest.raises(ConfigError, match="report.intervals.method"):
        config.load(ROOT / "params.yaml", ["report.intervals.method=bootstrap"])
    assert I.Settings.from_config(config.load(ROOT / "params.yaml", ["report.intervals.resamples=0"])) is None
    cfg = make_cfg(["tecoa", "ucat"], ["demo_shapes"], eps=(1,), attacks=("clean", "pgd"))
    _pair(tmp_path / "samples")
    (tmp_path / "metrics").mkdir()
    out = build_report({**cfg, "report": {"formats": ["png"], "intervals": {**INTERVALS, "resamples": 0}}},
                       metrics_dir=tmp_path / "metrics", samples_dir=tmp_path / "samples", out_dir=tmp_path / "off",
                       summary_path=tmp_path / "off.json", figures=False)
    assert not (tmp_path / "off" / "tables" / "differences.csv").exists()
    assert "bootstrap" not in out["report"].read_text()
    with open(tmp_path / "off" / "tables" / "main.csv", newline="") as fh:
        assert all(r["lo"] == "" for r in csv.DictReader(fh))
