"""The multi-label part of the report (the paper's Tables 14 and 15): synthetic COCO cells in the
format ``ucat.evaluate_multilabel`` writes, beside single-label cells of a demo set."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ucat import metrics_multilabel as mml
from ucat.errors import MetricsError
from ucat.report import build_report
from ucat.report import multilabel as ML

from .test_report import make_cfg, read_csv, shipped_value, write_metrics

BACKBONE = "ViT-B-32-quickgelu"
MISSING = ("clip", "coco2017", "cw", 2)


def _coco_cell(method, attack, eps, rng):
    n, c = 120, 20
    target = (rng.random((n, c)) < 0.04).astype(np.uint8)
    strength = 0 if attack == "clean" else 0.5 * eps
    skill = 2.0 if method == "ucat" else 1.0
    logits = (25 + rng.normal(0, 1, (n, c)) + target * skill * 3 / (1 + strength)).astype(np.float32)
    return {"method": method, "dataset": "coco2017", "attack": attack, "eps": eps, "num_classes": c,
            "multilabel": True, **mml.summarize(logits, target, 15, batch_size=50)}


def _write_coco(root: Path, methods, conditions, skip=()):
    rng = np.random.default_rng(0)
    written = {}
    for m in methods:
        for a, e in conditions:
            if (m, "coco2017", a, e) in skip:
                continue
            cell = _coco_cell(m, a, e, rng)
            path = root / "metrics" / "eval" / m / "coco2017" / f"{a}_eps{e}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(cell))
            written[(m, a, e)] = cell
    return written


def _cfg(**kw):
    cfg = make_cfg(["clip", "ucat"], ["demo_shapes", "coco2017"], eps=(1, 2), attacks=("clean", "pgd", "cw"), **kw)
    return cfg   # PGD 100 steps (the paper's), CW 10 steps (not the paper's): only PGD is paired


CONDITIONS = [("clean", 0), ("pgd", 1), ("pgd", 2), ("cw", 1), ("cw", 2)]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlreport")
    cfg = _cfg()
    write_metrics(root, dict(cfg, data={"datasets": ["demo_shapes"]}))
    written = _write_coco(root, cfg["methods"], CONDITIONS, skip={MISSING})
    out = build_report(cfg, metrics_dir=root / "metrics", samples_dir=root / "samples", out_dir=root / "results",
                       summary_path=root / "metrics" / "summary.json", backbone=BACKBONE, figures=False)
    return root, written, out


def test_tables_pair_reproduced_cells_with_the_published_ones(built):
    root, written, out = built
    rows = {(r["table"], r["method"], r["attack"], r["eps"], r["metric"]): r
            for r in read_csv(root / "results" / "tables" / "multilabel.csv")}
    r = rows["table15_coco", "ucat", "pgd", "1", "F1@3"]
    assert float(r["reproduced"]) == pytest.approx(100 * written["ucat", "pgd", 1]["F1@3"], abs=1e-4)
    assert float(r["paper"]) == shipped_value("table15_coco", "ucat", "coco2017", "pgd100", 1, "F1@3") == 40.60
    clean, attacked = 100 * written["ucat", "clean", 0]["F1@3"], 100 * written["ucat", "pgd", 2]["F1@3"]
    h = rows["table15_coco", "ucat", "pgd", "2", "H(F1@3)"]
    assert float(h["reproduced"]) == pytest.approx(2 * clean * attacked / (clean + attacked), abs=1e-4)
    assert float(h["paper"]) == shipped_value("table15_coco", "ucat", "coco2017", "pgd100", 2, "H(F1@3)")
    assert float(rows["table15_coco", "clip", "clean", "0", "mAP"]["paper"]) == 51.96
    # CW ran 10 steps, not the paper's 100: no published counterpart
    assert rows["table14_coco", "ucat", "cw", "1", "F1@3"]["paper"] == ""
    assert rows["table14_coco", "clip", "cw", "2", "F1@3"]["reproduced"] == "n/a"   # the missing cell
    md = (root / "results" / "tables" / "multilabel.md").read_text()
    assert "Table 15" in md and "Table 14" in md and "(40.60)" in md


def test_calibration_figure_and_report_sections(built):
    root, written, out = built
    cal = read_csv(root / "results" / "tables" / "multilabel_calibration.csv")
    ece = next(r for r in cal if (r["method"], r["attack"], r["eps"], r["metric"]) == ("ucat", "pgd", "1", "ece"))
    assert float(ece["reproduced"]) == pytest.approx(100 * written["ucat", "pgd", 1]["calibration"]["ece"], abs=1e-4)
    assert ece["paper"] == ""
    report = (root / "results" / "report.md").read_text()
    assert "## Multi-label robustness and calibration" in report and "(40.60)" in report
    figs = ML.build(ML.load(_cfg(), root / "metrics", BACKBONE), root / "figs", ("png",))["figures"]
    assert [p.name for p in figs] == ["multilabel_f1_vs_eps.png"] and figs[0].stat().st_size > 10_000
    assert any(m[:4] == MISSING for m in out["missing"])
    pgd1 = out["summary_data"]["ucat"]["pgd_eps1"]
    assert pgd1["coco2017_f1_at_3"] == pytest.approx(100 * written["ucat", "pgd", 1]["F1@3"], abs=1e-4)
    assert pgd1["coco2017_map"] == pytest.approx(100 * written["ucat", "pgd", 1]["mAP"], abs=1e-4)
    # the single-label tables are the demo set's alone
    main = read_csv(root / "results" / "tables" / "main.csv")
    assert {r["dataset"] for r in main} <= {"demo_shapes", "average", "harmonic_mean_clean_robust"}


def test_a_damaged_multilabel_cell_is_refused_before_anything_is_written(tmp_path):
    cfg = _cfg()
    write_metrics(tmp_path, dict(cfg, data={"datasets": ["demo_shapes"]}))
    _write_coco(tmp_path, cfg["methods"], CONDITIONS)
    path = tmp_path / "metrics" / "eval" / "ucat" / "coco2017" / "pgd_eps1.json"
    cell = json.loads(path.read_text())
    path.write_text(json.dumps(dict(cell, **{"F1@3": 1.5})))
    with pytest.raises(MetricsError, match=r"pgd_eps1.json: F1@3 = 1.5 is outside \[0, 1\]"):
        build_report(cfg, metrics_dir=tmp_path / "metrics", samples_dir=tmp_path / "samples",
                     out_dir=tmp_path / "results", summary_path=tmp_path / "summary.json", backbone=BACKBONE)
    assert not (tmp_path / "results").exists()


def test_other_backbones_get_no_published_values(tmp_path):
    cfg = _cfg()
    write_metrics(tmp_path, dict(cfg, data={"datasets": ["demo_shapes"]}))
    _write_coco(tmp_path, cfg["methods"], CONDITIONS)
    build_report(cfg, metrics_dir=tmp_path / "metrics", samples_dir=tmp_path / "samples", out_dir=tmp_path / "results",
                 summary_path=tmp_path / "summary.json", backbone="ViT-L-14", figures=False)
    rows = read_csv(tmp_path / "results" / "tables" / "multilabel.csv")
    assert rows and all(r["paper"] == "" for r in rows)
