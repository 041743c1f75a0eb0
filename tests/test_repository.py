"""What a clone holds: generated outputs and reports are git-ignored, the metrics are not, and the
licence file matches pyproject's."""

from __future__ import annotations

import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

IGNORED = ["report.html", "report.zip", "dvc_plots/index.html", "data/raw/demo_shapes/MANIFEST.json",
           "models/demo/backbone.pt", "results/main/figures/demo/training_curves.png", "logs/report.log",
           "benchmarks/report.tsv", ".snakemake/log/x.log", ".ucat/params-0123456789abcdef.yaml",
           "pretrained/slip_base_25ep.pt"]
VERSIONED = ["metrics/summary.json", "metrics/cells/demo/eval/ucat/demo_shapes/pgd_eps8.json",
             "metrics/cells/demo/train/ucat/plots/metrics/train/loss.tsv", "metrics/cells/demo/calibration/ucat.json",
             "params.yaml", "dvc.yaml", "Snakefile", "config/paper.yaml", "workflow/report/report.rst",
             "docs/demo_accuracy_vs_ece.png", "LICENSE", "README.md"]


@pytest.mark.parametrize("path, ignored", [(p, True) for p in IGNORED] + [(p, False) for p in VERSIONED])
def test_gitignore_keeps_outputs_and_reports_out_and_metrics_in(path, ignored, tmp_path):
    """git's own matcher, on the shipped .gitignore in an empty repository (no clone needed)."""
    shutil.copy(ROOT / ".gitignore", tmp_path / ".gitignore")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    res = subprocess.run(["git", "check-ignore", "--no-index", "-q", path], cwd=tmp_path)
    assert res.returncode == (0 if ignored else 1), f"{path}: expected {'ignored' if ignored else 'versioned'}"


def test_licence_file_matches_pyproject():
    licence = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["license"]["text"]
    text = (ROOT / "LICENSE").read_text()
    assert licence == "MIT" and text.startswith("MIT License\n")
    assert "Permission is hereby granted, free of charge" in text
