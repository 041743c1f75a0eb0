"""Snakemake's report gives every figure and table its own caption: workflow/report/report.rst is a
Jinja template over the pattern wildcards, rendered here as Snakemake renders it (Jinja with its
settings, then docutils), for every figure and table name the report can write."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from docutils.core import publish_parts
from jinja2 import Environment
from snakemake.iocontainers import Wildcards

from ucat.report.build import FIGURE_CAPTIONS, TABLE_TITLES

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = (ROOT / "workflow" / "report" / "report.rst").read_text()
FALLBACKS = ("A figure of the report;", "A table of the report")
# a name per figure family, as the report writes them (per-ε figures end in _eps<e>)
FIGURES = [k if k in ("uncertainty_vs_eps", "accuracy_vs_ece", "training_curves", "multilabel_f1_vs_eps") else f"{k}_eps8"
           for k in FIGURE_CAPTIONS]
TABLES = [*TABLE_TITLES, "differences", "multilabel_calibration"]


def caption(**wildcards) -> str:
    """The caption's HTML, as snakemake.report renders a FileRecord's caption."""
    snakemake = SimpleNamespace(wildcards=Wildcards(fromdict={"backbone": "demo", **wildcards}))
    rst = Environment(trim_blocks=True, lstrip_blocks=True).from_string(TEMPLATE).render(snakemake=snakemake)
    return publish_parts(rst, writer="html", settings_overrides={"report_level": 2, "halt_level": 2})["body"]


def test_every_figure_and_table_has_its_own_caption():
    texts = {f"figure {n}": caption(name=n) for n in FIGURES} | {f"table {t}": caption(table=t) for t in TABLES}
    texts["report.md"] = caption()
    for what, text in texts.items():
        assert len(text) > 80 and not any(f in text for f in FALLBACKS), what
    assert len(set(texts.values())) == len(texts)          # no two share a caption


def test_caption_names_the_figures_eps_and_falls_back_for_a_new_figure():
    assert "ε = 4/255" in caption(name="reliability_eps4") and "ε = 4/255" in caption(name="risk_coverage_eps4")
    assert "temperature scaling" in caption(name="reliability_temperature_scaled_eps8")
    assert "/255" not in caption(name="uncertainty_vs_eps")
    assert FALLBACKS[0] in caption(name="some_new_figure")


@pytest.mark.parametrize("family", sorted(FIGURE_CAPTIONS))
def test_the_template_has_a_branch_per_figure_family(family):
    assert f'name.startswith("{family}")' in TEMPLATE
