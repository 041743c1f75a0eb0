"""The paper's published numbers, and the rule that pairs them with reproduced cells.

The CSVs in ``reference/`` are copied unchanged from the paper's tables (long format,
one number a row).  A reproduced cell gets a published value beside it only when it was
produced in the paper's setting: a backbone the table covers, a paper data set, the
paper's attack strength (PGD/CW with 100 steps, ε = 1/255).  Anything else has no
published counterpart and is left empty, never guessed.
"""

from __future__ import annotations

import csv
import functools
from pathlib import Path
from typing import Iterable, NamedTuple

REFERENCE_DIR = Path(__file__).with_name("reference")

TABLES = ("table16_main", "table13_ablation", "table12_ablation_avg", "backbones_avg", "table14_coco", "table15_coco")

AVERAGE = "average"
HARMONIC = "harmonic_mean_clean_robust"

# pipeline attack -> the CSVs' name; None: the paper publishes no number for it
ATTACKS = {"clean": "clean", "pgd": "pgd100", "cw": "cw100", "autoattack": "autoattack", "caa": None, "a3": None}
PAPER_STEPS = 100   # PGD-100 and CW-100
PAPER_EPS = 1       # test ε in units of 1/255

ABLATIONS = {"kl_prob_forward": "ce+kl_prob_forward", "kl_prob_reverse": "ce+kl_prob_reverse",
             "kl_dir_forward": "ce+kl_dir_forward"}

# tables that keep H on their "average" row instead of a separate harmonic-mean row
H_ON_AVERAGE = {"backbones_avg"}

BACKBONES = {"ViT-B-32": "ViT-B-32", "ViT-B-32-quickgelu": "ViT-B-32",
             "ViT-B-16": "ViT-B-16", "ViT-B-16-quickgelu": "ViT-B-16",
             "SLIP-ViT-B-16": "SLIP-ViT-B-16"}   # ucat.slip's registry names


class Cell(NamedTuple):
    """One published number."""
    table: str
    backbone: str
    method: str
    dataset: str
    attack: str
    eps: int
    metric: str
    value: float


@functools.cache
def paper_datasets() -> dict[str, str]:
    """Pipeline key -> the paper's column name, for every data set of the paper's main tables
    (the 16 zero-shot classification sets; the multi-label COCO has tables of its own, ``coco``).

    Derived from the data registry (``ucat.data``), the one list of data sets.
    """
    from .. import data

    return {name: paper for name in data.dataset_names()
            if (paper := data.paper_name(name)) and not data.is_multilabel(name)}


def paper_dataset(key: str) -> str | None:
    """The paper's column name of a pipeline data set, or None (demo sets, unknown)."""
    return paper_datasets().get(key)


def paper_method(key: str) -> str:
    """The CSV name of a pipeline method (ablations carry a ``ce+`` prefix)."""
    return ABLATIONS.get(key, key)


def paper_backbone(name: str) -> str | None:
    """The CSV backbone name of a backbone id (open_clip or SLIP architecture name), or None."""
    return BACKBONES.get(name)


@functools.lru_cache(maxsize=None)
def load_table(name: str) -> tuple[Cell, ...]:
    """All cells of one shipped CSV."""
    if name not in TABLES:
        raise KeyError(f"unknown reference table {name!r}; known: {', '.join(TABLES)}")
    with open(REFERENCE_DIR / f"{name}.csv", newline="") as fh:
        return tuple(Cell(r["table"], r["backbone"], r["method"], r["dataset"], r["attack"],
                          int(r["eps"]), r["metric"], float(r["value"]))
                     for r in csv.DictReader(fh))


@functools.lru_cache(maxsize=None)
def _index(name: str) -> dict[tuple, float]:
    return {c[1:7]: c.value for c in load_table(name)}


def lookup(table: str, method: str, dataset: str, attack: str, eps: int,
           metric: str = "top1_acc", backbone: str = "ViT-B-32") -> float | None:
    """A published value by its paper names, or None where the paper has none."""
    return _index(table).get((backbone, method, dataset, attack, eps, metric))


def table_methods(table: str) -> tuple[str, ...]:
    """Methods (CSV names) of a table, in the order they appear."""
    return tuple(dict.fromkeys(c.method for c in load_table(table)))


def recompute_averages(table: str = "table16_main") -> dict[tuple[str, str, int], tuple[float, float]]:
    """``{(method, attack, eps): (mean of the 16 per-dataset cells, published average)}``."""
    out = {}
    for c in load_table(table):
        if c.dataset != AVERAGE or c.metric != "top1_acc":
            continue
        cells = [lookup(table, c.method, d, c.attack, c.eps, backbone=c.backbone) for d in paper_datasets().values()]
        if None not in cells:
            out[(c.method, c.attack, c.eps)] = (sum(cells) / len(cells), c.value)
    return out


def comparable(attack: str, eps: int, steps: int | None) -> bool:
    """Whether a reproduced (attack, ε) cell was run in the paper's test setting."""
    if ATTACKS.get(attack) is None:
        return False
    if attack == "clean":
        return True
    if eps != PAPER_EPS:
        return False
    return attack == "autoattack" or steps == PAPER_STEPS


class Pairing:
    """Finds the published counterpart of a reproduced cell under one configuration.

    ``datasets`` are the configuration's data sets; averages and H are paired only when
    they are exactly the paper's 16 (an average over other sets is not the paper's).
    """

    def __init__(self, backbone_name: str, datasets: Iterable[str], steps: dict[str, int],
                 smoke: bool = False):
        """``smoke``: a smoke run (``data.source: smoke``) pairs its reduced-step PGD/CW cells with the
        paper's PGD-100/CW-100 anyway, to exercise the comparison; its report says the values mean nothing."""
        self.backbone = paper_backbone(backbone_name)
        self.steps = {a: PAPER_STEPS for a in ("pgd", "cw")} if smoke else dict(steps)
        datasets = list(datasets)
        self.full_average = sorted(map(paper_dataset, datasets), key=str) == sorted(paper_datasets().values())

    def _paper_names(self, dataset: str, attack: str, eps: int):
        if self.backbone is None or not comparable(attack, eps, self.steps.get(attack)):
            return None
        if dataset in (AVERAGE, HARMONIC):
            name = dataset if self.full_average else None
        else:
            name = paper_dataset(dataset)
        if name is None:
            return None
        return name, ATTACKS[attack], 0 if attack == "clean" else eps

    def value(self, table: str, method: str, dataset: str, attack: str, eps: int,
              metric: str = "top1_acc") -> float | None:
        """Published value for a pipeline (method, dataset|average|H, attack, ε), or None."""
        names = self._paper_names(dataset, attack, eps)
        if names is None:
            return None
        if table in H_ON_AVERAGE and names[0] == HARMONIC:
            names = (AVERAGE, *names[1:])
        return lookup(table, paper_method(method), *names, metric=metric, backbone=self.backbone)
