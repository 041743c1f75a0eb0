"""The cost plan (``ucat check --cost``): FLOPs of every job a parameters file asks for, and GPU-hours.

Why: a run's cost should be known before it starts (which component dominates, what a change of
ε or of the data sets adds), and the workflow starts the largest evaluation jobs first
(:func:`evaluate_priority`), which shortens a run on several GPUs.

Per-image FLOPs come from :mod:`ucat.flops` (counted from the tower's configuration, equal to
:func:`ucat.bench.count_flops`); the data set sizes from the data registry (or a prepared set's manifest).

- fine-tuning: each method's own step (``flops.method_step_flops``, following ``train.method_step``)
  times the images it sees (epochs × the fine-tuning set, or ``max_steps_per_epoch`` batches);
  model selection (``finetune.select``) adds its PGD per epoch;
- evaluation: per (method, data set, attack, ε) cell, images × the attack's cost.  AutoAttack
  (``attacks.autoattack``) runs APGD-CE only on the points still correct and APGD-DLR only on those
  APGD-CE did not fool, as the official code does, so its cost depends on the accuracies: measured
  ones where a previous run's metrics cells exist (clean cell; the PGD cell at that ε stands for
  APGD-CE's survivors), else the assumed ones (:func:`default_accuracies`);
- calibration: one clean forward of each model over the held-out images;
- backbone pretraining: the demo's contrastive pretraining only (open_clip weights are downloaded).

GPU-hours divide FLOPs by an achieved rate: fine-tuning (and pretraining) at the fine-tuning rate,
every attack and forward at the PGD-evaluation rate; from a ``ucat bench --out`` JSON
(:func:`rates_from_bench`) or the recorded H200 measurement (:data:`DEFAULT_MEASUREMENT`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from . import paths
from .errors import ConfigError
from .flops import (Accuracy, Tower, attack_flops, attack_step, forward, method_step_flops, open_clip_tower,
                    pretrain_step_flops, tower)

# ----------------------------------------------------------------------------- sizes and accuracies


def _manifest_count(params: dict, name: str, split: str) -> int | None:
    """The count a prepared set's manifest records (a smoke replica's own size), if it is prepared."""
    path = Path(paths.data_dir(params, name)) / "MANIFEST.json"
    try:
        return int(json.loads(path.read_text())["num_samples"][split])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def eval_images(params: dict, name: str) -> int:
    """Images of a data set's evaluation split that each cell attacks (``data.subsample`` applied)."""
    from . import data

    if data.is_demo(name):
        n = len(data.classnames(name)) * params["data"]["demo_eval_per_class"]
    else:
        from .data.real import REGISTRY

        spec = REGISTRY[name].spec
        n = _manifest_count(params, name, spec.eval_split) or spec.num_eval_samples
    sub = params["data"]["subsample"]
    return min(n, sub) if sub else n


def finetune_images(params: dict) -> int:
    """Images of the fine-tuning set (its train split)."""
    from . import data

    name = params["data"]["finetune"]
    if data.is_demo(name):
        return len(data.classnames(name)) * params["data"]["demo_train_per_class"]
    from .data.real import REGISTRY

    counts = REGISTRY[name].extra_counts
    if "train" not in counts:
        raise ConfigError(f"data.finetune: no published train size for {name!r}")
    return _manifest_count(params, name, "train") or counts["train"]


def num_classes(name: str) -> int:
    from . import data

    return len(data.classnames(name))


def default_accuracies() -> Accuracy:
    """The mean over the paper's Table 16 methods of their published 16-set averages: clean, and
    PGD-100 at ε 1/255 (read from the shipped reference table, ``ucat.report.reference``)."""
    from .report import reference

    rows = [c for c in reference.load_table("table16_main") if c.dataset == reference.AVERAGE
            and c.metric == "top1_acc"]
    clean = [c.value for c in rows if c.attack == "clean"]
    pgd = [c.value for c in rows if c.attack == "pgd100" and c.eps == 1]
    return Accuracy(sum(clean) / len(clean) / 100, sum(pgd) / len(pgd) / 100,
                    f"assumed: the mean of Table 16's {len(clean)} methods' published averages")


def measured_accuracy(params: dict, backbone: str, seed: int, method: str, dataset: str, eps: int,
                      assumed: Accuracy) -> Accuracy:
    """A previous run's accuracies of this (method, data set) where its metrics cells exist."""
    def read(attack, e):
        path = paths.EVAL_JSON.format(backbone=backbone, setting=paths.setting(params), seed=seed, method=method,
                                      dataset=dataset, attack=attack, eps=e)
        try:
            value = json.loads(Path(path).read_text()).get("accuracy")
        except (OSError, ValueError):
            return None
        return float(value) if isinstance(value, (int, float)) and 0 <= value <= 1 else None

    clean, robust = read("clean", 0), read("pgd", eps)
    if clean is None and robust is None:
        return assumed
    return Accuracy(assumed.clean if clean is None else clean,
                    assumed.robust if robust is None else min(robust, assumed.clean if clean is None else clean),
                    "measured")


# ----------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class Item:
    """One component of the plan: FLOPs in total, at a rate kind (``finetune`` or ``eval``)."""

    stage: str            # pretraining, fine-tuning, selection, evaluation, calibration
    name: str             # the method, or the attack and ε
    images: int
    flops: float
    rate: str
    backbone: str = ""
    seed: int = 0
    method: str = ""
    dataset: str = ""
    accuracy: str = ""


@dataclass
class Plan:
    items: list[Item] = field(default_factory=list)

    @property
    def total(self) -> float:
        return sum(i.flops for i in self.items)

    def job_flops(self) -> dict[tuple, float]:
        """FLOPs per evaluation job ``(backbone, seed, method, dataset)``: its cells together."""
        jobs: dict[tuple, float] = {}
        for i in self.items:
            if i.stage == "evaluation":
                key = (i.backbone, i.seed, i.method, i.dataset)
                jobs[key] = jobs.get(key, 0.0) + i.flops
        return jobs


def plan(params: dict, assumed: Accuracy | None = None, measured: bool = True) -> Plan:
    """Every component of the run ``params`` describes (each backbone, seed, method, data set, cell)."""
    from . import methods

    assumed = assumed or default_accuracies()
    ev, ft = params["evaluate"], params["finetune"]
    out = Plan()
    train_n = None
    for backbone in paths.backbones(params):
        t = tower(params, backbone)
        if params["backbone"]["source"] == "demo":
            d = params["backbone"]["demo"]
            n = d["steps"] * d["batch_size"]
            out.items.append(Item("pretraining", "demo CLIP", n, n * pretrain_step_flops(params), "finetune", backbone))
        for seed in paths.seeds(params):
            for method in params["methods"]:
                if methods.get(method).finetuned:
                    train_n = finetune_images(params) if train_n is None else train_n
                    per_epoch = train_n if not ft["max_steps_per_epoch"] else \
                        min(train_n, ft["max_steps_per_epoch"] * ft["batch_size"])
                    n = per_epoch * ft["epochs"]
                    classes = num_classes(params["data"]["finetune"])
                    out.items.append(Item("fine-tuning", method, n, n * method_step_flops(method, params, t, classes),
                                          "finetune", backbone, seed, method))
                    out.items += _selection(params, t, backbone, seed, method)
                heldout = params["data"]["heldout"]
                out.items.append(Item("calibration", method, heldout,
                                      heldout * forward(t, num_classes(params["data"]["finetune"])),
                                      "eval", backbone, seed, method))
                for dataset in params["data"]["datasets"]:
                    n, classes = eval_images(params, dataset), num_classes(dataset)
                    multilabel = dataset in paths.MULTILABEL_SETS
                    for attack, eps in paths.conditions(params, dataset):
                        acc = assumed
                        if attack in ("autoattack", "caa", "a3") and measured:
                            acc = measured_accuracy(params, backbone, seed, method, dataset, eps, assumed)
                        per = attack_flops(attack, ev, t, classes, acc, multilabel)
                        out.items.append(Item("evaluation", attack if attack == "clean" else f"{attack} eps {eps}",
                                              n, n * per, "eval", backbone, seed, method, dataset,
                                              acc.source if attack in ("autoattack", "caa", "a3") else ""))
    return out


def _selection(params: dict, t: Tower, backbone: str, seed: int, method: str) -> list[Item]:
    """``finetune.select``: a PGD (``select_attack``) after every epoch on the held-out split or the test sets."""
    ft = params["finetune"]
    if ft.get("select", "final") == "final":
        return []
    atk, cap = ft["select_attack"], ft["select_subsample"]
    if ft["select"] == "best":
        sets = [(params["data"]["heldout"] if cap is None else min(cap, params["data"]["heldout"]),
                 num_classes(params["data"]["finetune"]))]
    else:
        sets = [(eval_images(params, d) if cap is None else min(cap, eval_images(params, d)), num_classes(d))
                for d in params["data"]["datasets"]]
    n = sum(k for k, _ in sets) * ft["epochs"]
    flops = ft["epochs"] * sum(k * (atk["steps"] * attack_step(t, c) + forward(t, c)) for k, c in sets)
    return [Item("selection", method, n, flops, "eval", backbone, seed, method)]


# ----------------------------------------------------------------------------- rates


@dataclass(frozen=True)
class Rates:
    """Achieved TFLOP/s for fine-tuning and for evaluation attacks, and where they come from."""

    finetune: float
    eval: float
    source: str


# The rates measured on one NVIDIA H200 (tools/gpu_variants.py; docs/performance.md, "Which change lifts
# utilisation"): torch.compile'd image tower, bf16 autocast, batch 256, random-weight ViT-B-32-quickgelu with
# TinyImageNet's 200 classes: the UCAT fine-tuning step at 3,378.8 images/s, PGD-20 evaluation at 659.9 images/s.
# Converted to TFLOP/s with this module's count of those workloads.
DEFAULT_MEASUREMENT = {"device": "NVIDIA H200", "model": "ViT-B-32-quickgelu", "classes": 200, "batch": 256,
                       "finetune_images_per_s": 3378.8, "pgd_steps": 20, "pgd_images_per_s": 659.9,
                       "where": "tools/gpu_variants.py; docs/performance.md, 'Which change lifts utilisation'"}


def default_rates() -> Rates:
    m = DEFAULT_MEASUREMENT
    t = open_clip_tower(m["model"])
    params = {"finetune": {"attack": {"eps": 1, "steps": 2, "step_size": 1}}}   # the paper's training attack
    ft = m["finetune_images_per_s"] * method_step_flops("ucat", params, t, m["classes"]) / 1e12
    pgd = m["pgd_images_per_s"] * (m["pgd_steps"] * attack_step(t, m["classes"]) + forward(t, m["classes"])) / 1e12
    return Rates(ft, pgd, f"default: measured on one {m['device']}, compiled, bf16, batch {m['batch']}, {m['model']}: "
                          f"UCAT fine-tuning {m['finetune_images_per_s']:,} images/s, PGD-{m['pgd_steps']} "
                          f"{m['pgd_images_per_s']:,} images/s ({m['where']})")


def rates_from_bench(result: dict, params: dict, source: str = "") -> Rates:
    """The fine-tuning and PGD rows of a ``ucat bench --out`` JSON: compiled rows when the run compiles
    (``run.compile`` true, or auto on the bench's CUDA device) and the bench has them; the fine-tuning
    row of UCAT (else the first method) at ``finetune.batch_size`` when measured there."""
    runs = result.get("runs") if isinstance(result, dict) else None
    if not isinstance(runs, list) or not runs:
        raise ConfigError(f"--rates {source}: not a `ucat bench --out` result (no 'runs')")
    meta = result.get("meta", {})
    compile_ = params["run"]["compile"]
    want = compile_ is True or (compile_ == "auto" and meta.get("device") == "cuda")

    def pick(rows, batch=None):
        rows = [r for r in rows if isinstance(r.get("achieved_tflops"), (int, float)) and r["achieved_tflops"] > 0]
        same = [r for r in rows if bool(r.get("compiled")) == want] or rows
        exact = [r for r in same if r.get("batch") == batch]
        return (exact or same or [None])[0]

    ft_rows = [r for r in runs if r.get("workload") == "finetune"]
    ft = pick([r for r in ft_rows if r.get("method") == "ucat"] or ft_rows, params["finetune"]["batch_size"])
    pgd = pick([r for r in runs if r.get("workload") == "pgd_eval"])
    if ft is None or pgd is None:
        raise ConfigError(f"--rates {source}: needs a fine-tuning and a PGD row with achieved TFLOP/s "
                          f"(a `ucat bench` result, not `--baseline official`)")
    where = f"{meta.get('device_name', meta.get('device', '?'))}, {meta.get('arch', meta.get('model', '?'))}"
    return Rates(ft["achieved_tflops"], pgd["achieved_tflops"],
                 f"{source}: measured on {where}; fine-tuning {'compiled' if ft.get('compiled') else 'eager'} "
                 f"b{ft.get('batch')} {ft['images_per_s']:.4g} images/s, PGD-{meta.get('pgd_eval', {}).get('steps', '?')} "
                 f"{'compiled' if pgd.get('compiled') else 'eager'} b{pgd.get('batch')} {pgd['images_per_s']:.4g} images/s")


def load_rates(path: str | None, params: dict) -> Rates:
    if path is None:
        return default_rates()
    try:
        result = json.loads(Path(path).read_text())
    except OSError as exc:
        raise ConfigError(f"--rates {path}: cannot read ({exc.strerror or exc})") from None
    except ValueError:
        raise ConfigError(f"--rates {path}: not JSON (expected a `ucat bench --out` result)") from None
    return rates_from_bench(result, params, str(path))


def hours(item_or_flops, rate_kind: str, rates: Rates) -> float:
    flops = item_or_flops.flops if isinstance(item_or_flops, Item) else item_or_flops
    return flops / (getattr(rates, rate_kind) * 1e12) / 3600


# ----------------------------------------------------------------------------- scheduling


_PRIORITIES: dict[str, tuple[dict, dict]] = {}


def _job_costs(params: dict) -> tuple[dict, dict]:
    """FLOPs per evaluation job, and per fine-tuning job with everything downstream of it (its
    evaluation jobs and calibration): one plan per parameter set and process."""
    key = json.dumps(params, sort_keys=True, default=str)
    if key not in _PRIORITIES:
        try:
            p = plan(params)
        except ConfigError:     # no FLOP formula for this tower (e.g. a ResNet): no priorities, the run goes on
            p = Plan()
        evaluation = p.job_flops()
        finetune: dict[tuple, float] = {}
        for i in p.items:
            if i.stage in ("fine-tuning", "selection", "calibration", "evaluation"):
                k = (i.backbone, i.seed, i.method)
                finetune[k] = finetune.get(k, 0.0) + i.flops
        _PRIORITIES.clear()
        _PRIORITIES[key] = (evaluation, finetune)
    return _PRIORITIES[key]


def priority(flops: float) -> int:
    """A Snakemake priority from a job's FLOPs: 100·log10, so a larger job starts first."""
    return int(round(100 * math.log10(flops))) if flops >= 1 else 0


def evaluate_priority(params: dict, backbone: str, seed, method: str, dataset: str) -> int:
    """Priority of an evaluation job (Snakemake ``priority:``): the largest start first, which keeps
    several GPUs busy to the end instead of leaving one big job last."""
    return priority(_job_costs(params)[0].get((backbone, int(seed), method, dataset), 0.0))


def finetune_priority(params: dict, backbone: str, seed, method: str) -> int:
    """Priority of a fine-tuning job: its own cost and all that waits on it, so it outranks each of its
    evaluation jobs and starts as soon as it can."""
    return priority(_job_costs(params)[1].get((backbone, int(seed), method), 0.0))


def speedup(durations: list[float], gpus: int, largest_first: bool = True) -> float:
    """Total work over the makespan when each job, in the given order (or largest first), goes to
    the first free GPU: how much the priorities gain on several GPUs."""
    import heapq

    free = [0.0] * gpus
    for d in (sorted(durations, reverse=True) if largest_first else durations):
        heapq.heappush(free, heapq.heappop(free) + d)
    return sum(durations) / max(free) if durations else 1.0


# ----------------------------------------------------------------------------- printing


def _group_key(i: Item) -> tuple[str, str]:
    """Fine-tuning and selection per method, evaluation per attack and ε; calibration in one row."""
    return (i.stage, "" if i.stage == "calibration" else i.name)


def _hours(h: float) -> str:
    return f"{h:,.2f}" if h >= 0.01 else f"{h:.2g}"


def _pflop(flops: float) -> str:
    x = flops / 1e15
    return f"{x:,.1f}" if x >= 10 else f"{x:.3g}"


def summary_rows(p: Plan, rates: Rates) -> list[tuple[str, int, float, float, float]]:
    """(component, images, FLOPs, share, GPU-hours) per stage and method or attack × ε, in plan order."""
    groups: dict[tuple[str, str], list[Item]] = {}
    for i in p.items:
        groups.setdefault(_group_key(i), []).append(i)
    total = p.total or 1.0
    order = ("pretraining", "fine-tuning", "selection", "calibration", "evaluation")
    rows = []
    for stage in order:
        for (s, name), items in groups.items():
            if s != stage:
                continue
            flops = sum(i.flops for i in items)
            rows.append((f"{stage} {name}".strip(), sum(i.images for i in items), flops, flops / total,
                         sum(hours(i, i.rate, rates) for i in items)))
    return rows


def format_plan(p: Plan, rates: Rates, params_file: str, assumed: Accuracy, per_cell: bool = False) -> str:
    rows = summary_rows(p, rates)
    width = max([len(r[0]) for r in rows] + [len("total"), 28])
    head = f"{'component':<{width}}  {'images':>13}  {'PFLOP':>12}  {'share':>6}  {'GPU-h':>8}"
    lines = [f"cost plan for {params_file}", head, "-" * len(head)]
    for name, n, flops, share, h in rows:
        lines.append(f"{name:<{width}}  {n:>13,}  {_pflop(flops):>12}  {100 * share:>5.1f}%  {_hours(h):>8}")
    lines.append("-" * len(head))
    total_h = sum(r[4] for r in rows)
    lines.append(f"{'total':<{width}}  {'':>13}  {_pflop(p.total):>12}  {100.0:>5.1f}%  {_hours(total_h):>8}")
    by_stage: dict[str, float] = {}
    for i in p.items:
        stage = i.name.split(" eps ")[0] if i.stage == "evaluation" else i.stage
        by_stage[stage] = by_stage.get(stage, 0.0) + i.flops
    lines.append("shares: " + ", ".join(f"{k} {100 * v / (p.total or 1):.1f} %"
                                        for k, v in sorted(by_stage.items(), key=lambda kv: -kv[1])))
    lines.append(f"rates: fine-tuning {rates.finetune:.4g} TFLOP/s, evaluation {rates.eval:.4g} TFLOP/s ({rates.source})")
    aa = [i for i in p.items if i.accuracy]
    if aa:
        measured = sum(1 for i in aa if i.accuracy == "measured")
        lines.append(f"AutoAttack/CAA/A³ accuracies: {measured} of {len(aa)} cells measured (previous run's metrics); "
                     f"else clean {assumed.clean:.3f}, PGD {assumed.robust:.3f} ({assumed.source})")
    lines.append("counted: matmuls, convolutions and attention (2 FLOPs per multiply-add); not counted: elementwise "
                 "work, the text tower's class features, data loading")
    if per_cell:
        lines += ["", f"{'backbone/seed/method/data set':<48}  {'cell':<18}  {'images':>9}  {'PFLOP':>10}  {'GPU-h':>7}"]
        for i in p.items:
            if i.stage == "evaluation":
                lines.append(f"{f'{i.backbone}/seed{i.seed}/{i.method}/{i.dataset}':<48}  {i.name:<18}  {i.images:>9,}  "
                             f"{_pflop(i.flops):>10}  {_hours(hours(i, i.rate, rates)):>7}")
    return "\n".join(lines)
