"""One entry point that turns the pipeline's metrics into tables, figures, summary and report.

Reads only what the configuration asks for; a missing cell becomes "n/a" and a logged
warning, never an exception and never a number.  All outputs are written atomically.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np

from ..io import write_json, write_text
from . import figures as F
from . import multilabel as ML
from . import intervals as I
from . import uncertainty_use as U
from .load import Results, Setting, load_results, load_samples, load_train_logs
from .reference import Pairing
from .render import to_csv, to_latex, to_markdown
from .summary import HEADLINE, build_summary, dvc_headline
from .tables import calibration_tables, comparison_tables, main_tables, missing_table, uncertainty_tables

log = logging.getLogger(__name__)

FIGURE_CAPTIONS = {
    "reliability": "Reliability diagrams per method, clean vs each attack (bins pooled over data sets).",
    "uncertainty_vs_eps": "Mean entropy of the wrong predictions, entropy, AU and EU against ε (0 = clean) per attack and method.",
    "accuracy_vs_ece": "Accuracy against ECE; each method's clean and attacked points joined.",
    "accuracy_bars": "Clean vs robust top-1 accuracy per data set and method.",
    "training_curves": "Fine-tuning loss, adversarial training accuracy and other logged terms per step.",
    "uncertainty_distribution": "Per-sample confidence, entropy, AU and EU histograms, clean vs attacked.",
    **U.FIGURE_CAPTIONS,
    "multilabel_f1_vs_eps": ML.FIGURE_CAPTION,
    "paired_differences": "Forest plot: reference − method per condition and metric (mean over data sets) with the "
                          "paired bootstrap interval; filled markers exclude 0.",
}
TABLE_TITLES = {"main": "Main table: top-1 accuracy",
                "calibration": "Calibration",
                "uncertainty": "Uncertainty, clean vs attacked",
                "paper_comparison": "Comparison with the published numbers",
                "uncertainty_use": "Uncertainty in use: abstention, error and attack detection, temperature scaling",
                "multilabel": "Multi-label robustness and calibration (the paper's Tables 14 and 15)"}


class Inputs(NamedTuple):
    """Everything one report reads, loaded and checked before anything is written."""
    setting: Setting
    res: Results
    logs: dict        # {method: {curve: (steps, values)}}
    samples: dict     # {(method, attack, eps): {array: values pooled over data sets}}
    use: "U.Analysis"  # uncertainty in use: selective prediction, detection, temperature scaling
    multilabel: "ML.MultiLabelResults | None" = None   # the multi-label sets' cells (MS-COCO)
    intervals: "I.Intervals | None" = None   # confidence intervals and paired differences (report.intervals)


def read_inputs(cfg: dict, metrics_dir="metrics", samples_dir="results/samples", *, backbone: str = "",
                figures: bool = True, seed_metrics_dirs: Sequence | None = None,
                seed_samples_dirs: Sequence | None = None) -> Inputs:
    """Load and validate what a report reads; raises MetricsError naming a bad file.

    ``seed_metrics_dirs`` / ``seed_samples_dirs``: the roots of every training seed (default:
    ``metrics_dir`` / ``samples_dir`` alone).  With several seeds every value is the mean over
    the seeds (a cell missing in one seed is missing), the intervals are over seeds and images,
    and the figures that draw single runs (curves, reliability bins, pooled samples) show the first seed."""
    setting = Setting.from_config(cfg, backbone)
    metrics_dirs = list(seed_metrics_dirs or [metrics_dir])
    samples_dirs = list(seed_samples_dirs or [samples_dir])
    if len(metrics_dirs) != len(samples_dirs):
        raise ValueError(f"{len(metrics_dirs)} metrics roots for {len(samples_dirs)} sample roots")
    per_seed = [load_results(setting, m, s) for m, s in zip(metrics_dirs, samples_dirs)]
    res = Results.mean_over(per_seed)
    logs = {m: load_train_logs(metrics_dirs[0], m) for m in setting.methods} if figures else {}
    samples = _pooled_samples(per_seed[0], samples_dirs[0]) if figures else {}
    ece_bins = int(cfg.get("evaluate", {}).get("ece_bins", 15))
    use = U.Analysis.mean_over([U.analyse(r, m, s, ece_bins) for r, m, s in zip(per_seed, metrics_dirs, samples_dirs)],
                               res)
    settings = I.Settings.from_config(cfg)
    iv = None if settings is None else I.analyse(setting, samples_dirs, settings, ece_bins)
    multilabel = ML.load(cfg, metrics_dirs[0], backbone) if len(metrics_dirs) == 1 else \
        ML.MultiLabelResults.mean_over([ML.load(cfg, m, backbone) for m in metrics_dirs])
    return Inputs(setting, res, logs, samples, use, multilabel, iv)


def build_report(cfg: dict, metrics_dir="metrics", samples_dir="results/samples", out_dir="results",
                 summary_path="metrics/summary.json", *, backbone: str = "", figures: bool = True,
                 inputs: Inputs | None = None, seed_samples_dirs: Sequence | None = None,
                 png_dir: str | Path | None = None) -> dict:
    """Write ``{out_dir}/tables``, ``{out_dir}/figures``, ``{out_dir}/report.md`` and ``summary_path``.

    ``png_dir``: the PNG figures' folder when it is not ``{out_dir}/figures`` (the pipeline keeps them in a
    folder of their own, which DVC renders as plots: a PDF or a table in it would fail ``dvc plots show``).

    ``backbone`` is the open_clip name of the model the cells were made with: the paper's
    numbers are paired only with the backbone they were published for.  Every input is
    read and checked first (``read_inputs``), so a refused file leaves nothing written.
    ``seed_samples_dirs``: one per-sample root per seed, for the intervals (see ``read_inputs``).

    Returns ``{"tables": [...], "figures": [...], "summary": path, "summary_data": dict, "report": path,
    "missing": [(method, dataset, attack, eps, reason)]}``.
    """
    if inputs is None:
        inputs = read_inputs(cfg, metrics_dir, samples_dir, backbone=backbone, figures=figures,
                             seed_samples_dirs=seed_samples_dirs)
    setting, res, iv = inputs.setting, inputs.res, inputs.intervals
    smoke = cfg.get("data", {}).get("source") == "smoke"
    pairing = Pairing(setting.backbone, setting.datasets, setting.steps, smoke=smoke)
    missing = list(res.missing) + (list(inputs.multilabel.missing) if inputs.multilabel else [])
    for m, d, a, e, reason in missing:
        log.warning("report: missing cell %s/%s/%s eps %d (%s); shown as n/a", m, d, a, e, reason)

    out = Path(out_dir)
    built = {"main": main_tables(res, pairing, iv), "calibration": calibration_tables(res, iv),
             "uncertainty": uncertainty_tables(res), "paper_comparison": comparison_tables(res, pairing, iv)}
    table_paths, sections = [], {}
    for name, (tables, rows) in built.items():
        md = "".join(to_markdown(t) + "\n" for t in tables)
        sections[name] = md
        for ext, text in (("md", f"# {TABLE_TITLES[name]}\n\n{md}"), ("tex", "\n".join(map(to_latex, tables))),
                          ("csv", to_csv(rows))):
            path = out / "tables" / f"{name}.{ext}"
            write_text(path, text)
            table_paths.append(path)
    missing_md = to_markdown(missing_table(res)) if res.missing else ""
    path = out / "tables" / "missing.md"
    write_text(path, missing_md or "No missing cells.\n")
    table_paths.append(path)
    if iv is not None:
        path = out / "tables" / "differences.csv"
        write_text(path, to_csv(I.long_rows(iv), I.DIFFERENCE_COLUMNS))
        table_paths.append(path)
        for why in iv.problems:
            log.warning("report: intervals: %s", why)

    formats = tuple(cfg.get("report", {}).get("formats", ("png", "pdf")))
    fig_dir = {ext: Path(png_dir) if ext == "png" and png_dir is not None else out / "figures" for ext in formats}
    figure_paths = _figures(inputs, fig_dir, formats) if figures else []
    use = U.build(inputs.use, res, cfg, out, formats, figures, iv, fig_dir=fig_dir)
    table_paths += use["tables"]
    figure_paths += use["figures"]
    sections["uncertainty_use"] = use["markdown"]
    if inputs.multilabel is not None and inputs.multilabel.datasets:
        ml = ML.build(inputs.multilabel, out, formats, figures, fig_dir=fig_dir)
        table_paths += ml["tables"]
        figure_paths += ml["figures"]
        sections["multilabel"] = ml["markdown"]
    summary = build_summary(res, HEADLINE + use["headlines"] + ML.headlines(inputs.multilabel)
                            + ([] if iv is None else I.headline_extractors(iv)))
    write_json(summary_path, summary)
    report = out / "report.md"
    write_text(report, _report_md(setting, sections, missing, figure_paths, out, smoke, iv))
    return {"tables": table_paths, "figures": figure_paths, "summary": Path(summary_path),
            "summary_data": summary, "report": report, "missing": missing}


def _figures(inputs: Inputs, fig_dir, formats=("png", "pdf")) -> list[Path]:
    res, s = inputs.res, inputs.setting
    jobs = [(f"reliability_eps{e}", lambda e=e: F.reliability_figure(res, e)) for e in s.eps]
    jobs += [("uncertainty_vs_eps", lambda: F.uncertainty_figure(res)),
             ("accuracy_vs_ece", lambda: F.accuracy_ece_figure(res))]
    jobs += [(f"accuracy_bars_eps{e}", lambda e=e: F.accuracy_bars_figure(res, e)) for e in s.eps]
    jobs.append(("training_curves", lambda: F.training_figure(inputs.logs, s.methods)))
    jobs += [(f"uncertainty_distribution_eps{e}", lambda e=e: F.distribution_figure(res, inputs.samples, e))
             for e in s.eps]
    if inputs.intervals is not None:
        jobs += [(f"paired_differences_eps{e}", lambda e=e: F.paired_differences_figure(inputs.intervals, e))
                 for e in s.eps]
    return F.render(jobs, fig_dir, formats)


def _pooled_samples(res, samples_dir) -> dict:
    """Per-sample arrays of every (method, attack, ε), concatenated over data sets."""
    s, out = res.setting, {}
    for m in s.methods:
        for a, e in s.conditions():
            parts = [z for d in s.datasets
                     if (z := load_samples(samples_dir, m, d, a, e, (res.cells.get((m, d, a, e)) or {}).get("num_classes")))]
            keys = set.intersection(*(set(z) for z in parts)) if parts else set()
            if keys:
                out[(m, a, e)] = {k: np.concatenate([z[k].astype(float).ravel() for z in parts]) for k in keys}
    return out


SMOKE_BANNER = ("**SMOKE RUN: every number below is meaningless.** The data are tiny replicas in the real "
                "on-disk formats (`data.source: smoke`), the backbone may have random weights and the attacks "
                "run fewer steps than the paper's; reduced-step PGD/CW cells are paired with the paper's "
                "PGD-100/CW-100 only to exercise the comparison path.")


def _report_md(setting: Setting, sections: dict, missing: list, figure_paths, out: Path, smoke: bool = False,
               iv: "I.Intervals | None" = None) -> str:
    lines = ["# UCAT reproduction report", "", *([SMOKE_BANNER, ""] if smoke else []),
             f"Backbone `{setting.backbone}`; methods {', '.join(setting.methods)}; data sets "
             f"{', '.join(setting.datasets)}; attacks {', '.join(setting.label(a) for a in setting.attacks)} "
             f"at ε ∈ {{{', '.join(map(str, setting.eps))}}}/255.", "",
             "Cells read \"reproduced (paper)\"; the paper value comes from the shipped copies of the paper's "
             "tables (`ucat/report/reference/`) and is shown only where the run used the paper's setting "
             "(ViT-B/32, a paper data set, PGD/CW with 100 steps, ε = 1/255; averages and H only over the "
             "paper's 16 data sets); otherwise it reads \"—\". \"n/a\" marks a cell the configuration asked for "
             "whose metrics are missing. ECE uses 15 equal-width bins over the max-probability confidence; "
             "the paper publishes no calibration numbers.", ""]
    if iv is not None:
        lines += [iv.settings.describe(iv.seeds, setting.methods), ""]
        if iv.problems:
            lines += [f"{len(iv.problems)} cell(s) have no interval (n/a): "
                      + "; ".join(iv.problems[:5]) + ("; …" if len(iv.problems) > 5 else ""), ""]
    if missing:
        lines += [f"**Warning: {len(missing)} cell(s) missing**, shown as n/a; listed at the end.", ""]
    for name, md in sections.items():
        lines += [f"## {TABLE_TITLES[name]}", "", md.replace("\n### ", "\n#### ").replace("### ", "#### ", 1)]
    pngs = [p for p in figure_paths if p.suffix == ".png"]
    if pngs:
        lines += ["## Figures", ""]
        for p in pngs:
            caption = next((c for k, c in sorted(FIGURE_CAPTIONS.items(), key=lambda kc: -len(kc[0]))
                            if p.stem.startswith(k)), "")
            pdf = next((q for q in figure_paths if q.suffix == ".pdf" and q.stem == p.stem), None)
            link = f" ([PDF]({_relative(pdf, out)}))" if pdf else ""
            lines += [f"![{p.stem}]({_relative(p, out)})  ", f"`{p.stem}`: {caption}{link}", ""]
    if missing:
        lines += ["## Missing cells", ""]
        lines += [f"- {m} / {d} / {a} ε={e}: {reason}" for m, d, a, e, reason in missing]
    return "\n".join(lines) + "\n"


def _relative(path: Path, out: Path) -> str:
    return Path(os.path.relpath(path, out)).as_posix()


def build_reports(params: dict) -> dict:
    """One report per backbone of the run (over all its seeds), and the setting's ``metrics/<setting>/summary.json``
    keyed by backbone (its ``summary.dvc_headline``; each report folder has the full ``summary.json``).  Each backbone's report pairs its cells with the paper's numbers for that backbone.
    """
    from .. import paths

    def roots(pattern, b):
        return [pattern.format(backbone=b, setting=paths.setting(params), seed=seed) for seed in paths.seeds(params)]

    where = {"setting": paths.setting(params)}
    # read and check every backbone's inputs before writing anything (the id is the open_clip name)
    inputs = {b: read_inputs(params, backbone=b, seed_metrics_dirs=roots(paths.METRICS, b),
                             seed_samples_dirs=roots(paths.SAMPLES, b))
              for b in paths.backbones(params)}
    combined = {}
    for b in paths.backbones(params):
        built = build_report(params, backbone=b, inputs=inputs[b], metrics_dir=roots(paths.METRICS, b)[0],
                             samples_dir=roots(paths.SAMPLES, b)[0], out_dir=paths.RESULTS.format(backbone=b, **where),
                             summary_path=paths.BACKBONE_SUMMARY.format(backbone=b, **where),
                             png_dir=paths.FIGURES.format(backbone=b, **where))
        combined[b] = dvc_headline(built["summary_data"])
    write_json(paths.SUMMARY.format(**where), combined)
    return combined
