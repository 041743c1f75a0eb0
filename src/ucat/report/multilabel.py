"""The paper's MS-COCO tables (Table 14: CW, Table 15: PGD), their calibration, and F1@3 against ε.

Reads the multi-label cells (:mod:`ucat.evaluate_multilabel`) of every multi-label data set the
configuration lists; the main report reads the single-label ones.  Cells read "reproduced
(paper)" in %, the paper value from the shipped ``reference/table14_coco.csv`` and
``table15_coco.csv`` where the run used the paper's test setting (ViT-B/32, PGD/CW with 100
steps; the tables cover ε ∈ {1, 2, 4}/255) on ``coco2017``; otherwise "—".  The paper's models
were all fine-tuned in FARE's setting (train ε = 2/255, 10 steps): which checkpoints were
evaluated is the configuration's business, the pairing cannot see it.  H(F1@3) is the harmonic
mean of clean and attacked F1@3 (:func:`ucat.metrics.harmonic_mean`), computed here from the
reproduced cells.  A missing cell reads "n/a".
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from .. import data, paths
from ..io import write_text
from ..metrics import harmonic_mean
from ..metrics_multilabel import OFFICIAL_BATCH_SIZE
from .reference import ATTACKS as PAPER_ATTACKS
from .reference import PAPER_STEPS, lookup, paper_backbone, paper_method
from .render import NA, NONE, Table, fmt, long_row, paired, to_csv, to_latex, to_markdown
from .tables import method_name
from .load import mean_cells, read_cell
from .validate import check_multilabel_cell

TABLES = {"cw": "table14_coco", "pgd": "table15_coco"}   # the paper's table of each attack
TABLE_NUMBERS = {"cw": 14, "pgd": 15}
PAPER_DATASET = "coco2017"                                # the dataset field of those CSVs
CELLS = ("mAP", "P@3", "R@3", "F1@3")
H = "H(F1@3)"
FIGURE_CAPTION = "F1@3 against ε per method on each multi-label set (0 = clean); dashed: the paper's values."


@dataclass
class MultiLabelResults:
    """The multi-label cells a configuration asks for, keyed by (method, dataset, attack, ε)."""
    methods: tuple[str, ...]
    datasets: tuple[str, ...]
    attacks: tuple[str, ...]
    eps: tuple[int, ...]
    steps: dict
    backbone: str = ""
    smoke: bool = False
    cells: dict = field(default_factory=dict)
    missing: list = field(default_factory=list)

    def conditions(self) -> list[tuple[str, int]]:
        return [("clean", 0)] + [(a, e) for a in self.attacks for e in self.eps]

    @classmethod
    def mean_over(cls, per_seed: list["MultiLabelResults"]) -> "MultiLabelResults":
        """The mean over training seeds of each cell (``load.mean_cells``)."""
        cells, missing = mean_cells([r.cells for r in per_seed], [r.missing for r in per_seed])
        return dataclasses.replace(per_seed[0], cells=cells, missing=missing)

    def pct(self, method: str, dataset: str, attack: str, eps: int, metric: str) -> float | None:
        cell = self.cells.get((method, dataset, attack, 0 if attack == "clean" else eps))
        if cell is None:
            return None
        v = cell["calibration"][metric] if metric in ("ece", "brier") else cell.get(metric)
        return None if v is None else 100.0 * v

    def h(self, method: str, dataset: str, attack: str, eps: int) -> float | None:
        clean, attacked = self.pct(method, dataset, "clean", 0, "F1@3"), self.pct(method, dataset, attack, eps, "F1@3")
        return None if clean is None or attacked is None else harmonic_mean(clean, attacked)

    def paper(self, method: str, dataset: str, attack: str, eps: int, metric: str) -> float | None:
        """The published value of a cell, or None where the run is not in the paper's setting."""
        backbone = paper_backbone(self.backbone)
        if dataset != PAPER_DATASET or backbone is None:
            return None
        if attack != "clean" and not (self.smoke or self.steps.get(attack) == PAPER_STEPS):
            return None
        table = TABLES.get(attack, TABLES["pgd"])   # clean rows: the same in both tables
        return lookup(table, paper_method(method), PAPER_DATASET, PAPER_ATTACKS[attack],
                      0 if attack == "clean" else eps, metric, backbone)

    def attack_name(self, attack: str) -> str:
        """"PGD-100", "CW-100": the steps actually run."""
        return f"{attack.upper()}-{self.steps.get(attack, '?')}"

    def label(self, attack: str, eps: int = 0) -> str:
        return "Clean" if attack == "clean" else f"{self.attack_name(attack)} ε={eps}/255"


def multilabel_datasets(cfg: dict) -> tuple[str, ...]:
    return tuple(d for d in cfg["data"]["datasets"] if data.is_multilabel(d))


def load(cfg: dict, metrics_dir: str | Path, backbone: str = "") -> MultiLabelResults:
    """Read (and check) every multi-label cell the configuration asks for; absent ones are listed as missing,
    a present one that is not what the evaluation wrote is refused (``load.read_cell``)."""
    ev = cfg["evaluate"]
    res = MultiLabelResults(methods=tuple(cfg["methods"]), datasets=multilabel_datasets(cfg),
                            attacks=tuple(a for a in ("pgd", "cw") if a in ev["attacks"]),
                            eps=tuple(sorted(int(e) for e in ev["eps"])),
                            steps={a: int(ev[a]["steps"]) for a in ("pgd", "cw")}, backbone=backbone,
                            smoke=cfg["data"].get("source") == "smoke")
    for m in res.methods:
        for d in res.datasets:
            for a, e in res.conditions():
                path = Path(metrics_dir) / paths.EVAL_CELL.format(method=m, dataset=d, attack=a, eps=e)
                if not path.is_file():
                    res.missing.append((m, d, a, e, f"absent: {path}"))
                    continue
                res.cells[(m, d, a, e)] = read_cell(path, (m, d, a, e), check_multilabel_cell)
    return res


def paper_tables(res: MultiLabelResults) -> tuple[list[Table], list[dict]]:
    """Tables 14 (CW) and 15 (PGD) per multi-label set: a block per condition, rows = methods."""
    tables, rows = [], []
    for d in res.datasets:
        for attack in res.attacks:
            t = Table(f"{data.paper_name(d) or d}, {res.attack_name(attack)} (the paper's Table "
                      f"{TABLE_NUMBERS[attack]}): %, reproduced (paper)",
                      ["Condition", "Method", *CELLS, H], label_cols=2,
                      note=f"Top-3 micro precision, recall and F1; metrics per batch of {OFFICIAL_BATCH_SIZE} "
                           f"averaged weighted by batch size, as the official code computes them.")
            for a, e in [("clean", 0)] + [(attack, e) for e in res.eps]:
                block = []
                for m in res.methods:
                    row = [res.label(a, e), method_name(m)]
                    row += [paired(res.pct(m, d, a, e, c), res.paper(m, d, a, e, c)) for c in CELLS]
                    row.append(NONE if a == "clean" else paired(res.h(m, d, a, e), res.paper(m, d, a, e, H)))
                    block.append(row)
                    if a == "clean" and attack != res.attacks[0]:
                        continue   # the clean rows repeat in every table: their long rows once
                    metrics = CELLS if a == "clean" else (*CELLS, H)
                    rows += [long_row(TABLES[attack], m, d, a, e, c,
                                      res.h(m, d, a, e) if c == H else res.pct(m, d, a, e, c), res.paper(m, d, a, e, c))
                             for c in metrics]
                t.add_group(block)
            tables.append(t)
    return tables, rows


def calibration_table(res: MultiLabelResults) -> tuple[list[Table], list[dict]]:
    """Classwise ECE and Brier (%) of the softmax probabilities; the paper publishes none."""
    conds = res.conditions()
    tables, rows = [], []
    for d in res.datasets:
        t = Table(f"{data.paper_name(d) or d}: classwise calibration of the softmax probabilities (%, lower is better)",
                  ["Method", "Metric", *(res.label(a, e) for a, e in conds)], label_cols=2,
                  note="Mean over the classes of each class's ECE (15 equal-width bins) and Brier score, one class "
                       "against the rest. No published counterpart.")
        for m in res.methods:
            t.add_group([[method_name(m), name, *(fmt(res.pct(m, d, a, e, key)) for a, e in conds)]
                         for key, name in (("ece", "ECE"), ("brier", "Brier"))])
            rows += [long_row("multilabel_calibration", m, d, a, e, key, res.pct(m, d, a, e, key))
                     for a, e in conds for key in ("ece", "brier")]
        tables.append(t)
    return tables, rows


def f1_figure(res: MultiLabelResults):
    """F1@3 against ε, one panel per (data set, attack); reproduced solid, published dashed."""
    import matplotlib.pyplot as plt

    from .figures import _layout, method_colour

    panels = [(d, a) for d in res.datasets for a in res.attacks]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False)
    xs, drawn = [0, *res.eps], False
    for ax, (d, a) in zip(axes[0], panels):
        for m in res.methods:
            colour = method_colour(m, res.methods)
            for source, style in ((res.pct, dict(ls="-", marker="o")), (res.paper, dict(ls="--", marker="x"))):
                ys = [source(m, d, "clean", 0, "F1@3")] + [source(m, d, a, e, "F1@3") for e in res.eps]
                pts = [(x, y) for x, y in zip(xs, ys) if y is not None]
                if pts:
                    ax.plot(*zip(*pts), c=colour, lw=1.5, ms=4, label=method_name(m) if source == res.pct else None,
                            **style)
                    drawn = True
        ax.set_xticks(xs, ["0\n(clean)", *map(str, res.eps)])
        ax.set(xlabel=f"{res.attack_name(a)} ε (×1/255)", ylabel="F1@3 (%)",
               title=f"{data.paper_name(d) or d}: {res.attack_name(a)}")
    handles, labels = axes[0][0].get_legend_handles_labels()
    _layout(fig, "Top-3 F1 against attack strength (solid: reproduced; dashed: the paper)", bottom=0.35)
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 7) or 1, frameon=False)
    return fig if drawn else plt.close(fig)


def headlines(res: MultiLabelResults | None) -> list:
    """``metrics/summary.json`` fields per multi-label set: its mAP and F1@3 (%, the paper's per-batch cells)."""
    out = []
    for d in (res.datasets if res is not None else ()):
        out += [(f"{d}_map", lambda _, m, a, e, d=d: res.pct(m, d, a, e, "mAP")),
                (f"{d}_f1_at_3", lambda _, m, a, e, d=d: res.pct(m, d, a, e, "F1@3"))]
    return out


def build(res: MultiLabelResults, out_dir: str | Path, formats=("png", "pdf"), figures: bool = True,
          fig_dir=None) -> dict:
    """Write ``tables/multilabel.{md,tex,csv}``, ``tables/multilabel_calibration.*`` and the F1@3 figure."""
    if not res.datasets:
        return {"tables": [], "figures": [], "markdown": ""}
    from . import figures as F

    out, table_paths, md = Path(out_dir), [], ""
    for name, title, (tables, rows) in (
            ("multilabel", "Multi-label robustness (the paper's Tables 14 and 15)", paper_tables(res)),
            ("multilabel_calibration", "Multi-label calibration", calibration_table(res))):
        text = "".join(to_markdown(t) + "\n" for t in tables)
        md += text
        for ext, body in (("md", f"# {title}\n\n{text}"), ("tex", "\n".join(map(to_latex, tables))),
                          ("csv", to_csv(rows))):
            path = out / "tables" / f"{name}.{ext}"
            write_text(path, body)
            table_paths.append(path)
    if res.missing:
        md += f"{len(res.missing)} multi-label cell(s) missing ({NA}).\n"
    figure_paths = F.render([("multilabel_f1_vs_eps", lambda: f1_figure(res))],
                            out / "figures" if fig_dir is None else fig_dir, formats) if figures else []
    return {"tables": table_paths, "figures": figure_paths, "markdown": md}
