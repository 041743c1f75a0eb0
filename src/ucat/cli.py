"""``ucat``: one subcommand per pipeline stage (Snakemake and DVC call only these).

Every subcommand reads its settings from ``params.yaml`` (``--params`` to use another
file, ``--set key.sub=value`` to override one value) and exits with a one-line
``error: ...`` naming the bad key or file on bad input, having written nothing.

Building the parser imports no torch (``--help`` answers at once): each command imports what
it runs when it runs (tests/test_cli.py checks it).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from . import __version__, paths
from .errors import UcatError


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--params", default="params.yaml", help="parameters file (default: %(default)s)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one parameter, e.g. --set ucat.tau_prime=0.1 (repeatable)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _no_cache(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-cache", action="store_true",
                   help="read no cache (class text features, evaluated cells): compute afresh; fresh results are "
                        "still stored (`ucat cache --help`)")


def _seed(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=None,
                   help="the training seed of this job (default: the first of run.seeds); outputs go to …/seed<N>/")


def _setup(args, gpu: bool = True):
    from . import config

    params = config.load(args.params, args.overrides)
    if getattr(args, "seed", None) is not None:
        params = config.validate({**params, "run": {**params["run"], "seed": args.seed}}, source=args.params)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from .gpus import assign
    from .models import resolve_device

    device = resolve_device(params["run"]["device"])
    return params, (assign(device) if gpu else device)  # one GPU per job on multi-GPU nodes (ucat.gpus)


def cmd_check(args) -> int:
    from . import config
    from .errors import ConfigError

    params = config.load(args.params, args.overrides)
    cells, seeds = paths.eval_cells(params), paths.seeds(params)
    jobs = len(paths.backbones(params)) * len(seeds) * len(params["methods"]) * len(params["data"]["datasets"])
    print(f"{args.params}: valid. Setting {paths.setting(params)!r}: {len(paths.backbones(params))} backbone(s) x "
          f"{len(seeds)} seed(s) x {len(params['methods'])} methods x {len(params['data']['datasets'])} data sets "
          f"-> {jobs} evaluation jobs, {len(cells)} cells; backbone source: {params['backbone']['source']}")
    if not args.cost:
        if args.rates or args.per_cell or args.clean_accuracy is not None or args.robust_accuracy is not None:
            raise ConfigError("--rates, --per-cell and --*-accuracy belong to --cost")
        return 0
    from . import cost

    assumed = cost.default_accuracies()
    for flag, value in (("--clean-accuracy", args.clean_accuracy), ("--robust-accuracy", args.robust_accuracy)):
        if value is not None and not 0 <= value <= 1:
            raise ConfigError(f"{flag}: a fraction in [0, 1], got {value}")
    if args.clean_accuracy is not None or args.robust_accuracy is not None:
        clean = assumed.clean if args.clean_accuracy is None else args.clean_accuracy
        robust = assumed.robust if args.robust_accuracy is None else args.robust_accuracy
        assumed = cost.Accuracy(clean, min(robust, clean), "assumed: --clean-accuracy/--robust-accuracy")
    rates = cost.load_rates(args.rates, params)
    print(cost.format_plan(cost.plan(params, assumed), rates, args.params, assumed, per_cell=args.per_cell))
    return 0


def cmd_data(args) -> int:
    from . import data

    params, _ = _setup(args, gpu=False)
    names = args.names or paths.data_sets(params)
    for name in names:
        manifest = data.prepare(name, params)
        counts = ", ".join(f"{k}: {v}" for k, v in manifest.get("num_samples", {}).items())
        print(f"{name}: ready in {paths.data_dir(params, name)} ({counts})")
    return 0


def _backbone_id(args, params) -> str:
    ids = paths.backbones(params)
    chosen = args.backbone_id or ids[0]
    if chosen not in ids:
        from .errors import unknown_choice

        raise unknown_choice("backbone", chosen, ids)
    return chosen


def cmd_backbone(args) -> int:
    from . import backbone

    params, device = _setup(args)
    b = _backbone_id(args, params)
    out = args.out or paths.BACKBONE.format(backbone=b)
    meta = backbone.build(params, b, out, device, progress=not args.quiet)
    print(f"backbone {b} written to {out}: {json.dumps(meta)}")
    return 0


def cmd_finetune(args) -> int:
    from . import methods, train

    params, device = _setup(args)
    methods.get(args.method)
    at = paths.at(params, _backbone_id(args, params), method=args.method)
    meta = train.finetune(
        params, args.method, args.backbone or paths.BACKBONE.format(**at), args.out or paths.FINETUNED.format(**at),
        args.checkpoint_dir or paths.CHECKPOINTS.format(**at), args.live_dir or paths.TRAIN_LIVE.format(**at),
        device, progress=not args.quiet, stop_after_steps=args.stop_after_steps, use_cache=not args.no_cache)
    print(f"finetune {args.method}: {json.dumps(meta)}")
    return 0


def cmd_evaluate(args) -> int:
    from . import evaluate, methods
    from .errors import ConfigError
    from .io import write_json

    params, device = _setup(args)
    methods.get(args.method)
    b = _backbone_id(args, params)
    if args.attack is None and (args.out_json or args.out_npz):
        raise ConfigError("--out-json/--out-npz name one cell's files: give --attack (and --eps) too")
    conditions = None if args.attack is None else [(args.attack, 0 if args.attack == "clean" else args.eps)]

    def out_paths(attack, eps):
        cell = paths.at(params, b, method=args.method, dataset=args.dataset, attack=attack, eps=eps)
        return (args.out_json or paths.EVAL_JSON.format(**cell)), (args.out_npz or paths.EVAL_NPZ.format(**cell))

    checkpoint = args.checkpoint or paths.model_for(params, b, args.method)
    info = evaluate.evaluate_dataset(params, checkpoint, args.dataset, device, method=args.method,
                                     out_paths=out_paths, conditions=conditions, progress=not args.quiet,
                                     use_cache=not args.no_cache)
    if args.run_info:
        write_json(args.run_info, {"stage": "evaluate", "backbone": b, "seed": params["run"]["seed"],
                                   "method": args.method, "dataset": args.dataset, "ucat": __version__, "cells": info})
    for name, cell in info.items():
        headline = ", ".join(f"{k} {cell[k]:.4f}" for k in ("accuracy", "mAP", "F1@3") if k in cell)
        how = "restored from the cell cache" if cell["restored"] else \
            f"{headline} ({cell['images_per_second']} img/s, batch {cell['batch_size']})"
        print(f"{b}/seed{params['run']['seed']}/{args.method}/{args.dataset}/{name}: {how}")
    return 0


def cmd_calibrate(args) -> int:
    from . import calibration, methods
    from .io import write_json

    params, device = _setup(args)
    methods.get(args.method)
    b = _backbone_id(args, params)
    record = calibration.calibrate_model(params, args.checkpoint or paths.model_for(params, b, args.method), device,
                                         args.method, b, use_cache=not args.no_cache)
    out = args.out or paths.CALIBRATION.format(**paths.at(params, b, method=args.method))
    write_json(out, record)
    print(f"{b}/{args.method}: temperature {record['temperature']:.4g} on {record['fitted_on']['n']} held-out "
          f"images; NLL {record['heldout_before']['nll']:.4f} -> {record['heldout_after']['nll']:.4f} ({out})")
    return 0


def cmd_report(args) -> int:
    from . import config
    from .report import build_reports

    params = config.load(args.params, args.overrides)
    build_reports(params)
    where = {"setting": paths.setting(params)}
    print(f"report written to {', '.join(paths.RESULTS.format(backbone=b, **where) for b in paths.backbones(params))}/ "
          f"and {paths.SUMMARY.format(**where)}")
    return 0


def cmd_dvc_yaml(args) -> int:
    from . import config, workflow

    config.load(args.params, args.overrides)  # dvc.yaml does not depend on the values; still refuse bad ones
    text = workflow.render_dvc_yaml()
    target = Path(args.out)
    if args.check:
        if not target.is_file() or target.read_text() != text:
            print(f"error: {target} is out of date with {args.params}; run `ucat dvc-yaml`", file=sys.stderr)
            return 1
        print(f"{target} is up to date")
        return 0
    from .io import write_text

    write_text(target, text)
    print(f"wrote {target}")
    return 0


def cmd_prompts(args) -> int:
    from . import config, data, prompts

    params = config.load(args.params, args.overrides)
    if args.name not in data.dataset_names():
        from .errors import unknown_choice

        raise unknown_choice("NAME", args.name, data.dataset_names())
    for k, per_class in enumerate(prompts.class_prompts(args.name, params)):
        print(f"{k}\t" + " | ".join(per_class))
    return 0


def cmd_bench(args) -> int:
    if getattr(args, "baseline", None):
        from . import bench_official

        return bench_official.main(args)
    if getattr(args, "variants", None):
        from . import bench_variants

        return bench_variants.main(args)
    from . import bench
    from .errors import ConfigError

    if getattr(args, "loader_workers", None) is not None and args.loader_workers < 0:
        raise ConfigError(f"--loader-workers: must be at least 0, got {args.loader_workers}")
    return bench.main(args)


def _check_params_unchanged() -> None:
    """Stop (non-zero: DVC then records nothing) if the parameters file changed while the command ran."""
    from . import config
    from .errors import ConfigError

    changed = config.changed_since_load()
    if changed:
        raise ConfigError(f"the parameters changed while this command ran ({changed}); its outputs were made with "
                          f"the values read at its start and are not recorded as current: run it again")


def cmd_experiments(args) -> int:
    from . import experiments as X

    print(X.render(X.table(X.experiments(X.dvc_show(args.dvc_args)), args.reference, args.versus)))
    return 0


def cmd_cache(args) -> int:
    from . import cache

    if args.action == "info":
        found = cache.entries()
        print(f"cache: {cache.root()}" + ("  ($UCAT_CACHE)" if "UCAT_CACHE" in os.environ else ""))
        for kind in cache.KINDS:
            mine = [e for e in found if e.kind == kind]
            print(f"  {kind:9s} {len(mine):6d} entries  {cache.human(sum(e.size for e in mine)):>10s}")
        print(f"  {'total':9s} {len(found):6d} entries  {cache.human(sum(e.size for e in found)):>10s}")
        return 0
    from .errors import ConfigError

    if args.max_size is None and args.older_than is None:
        raise ConfigError("cache prune: give --max-size SIZE and/or --older-than DAYS")
    try:
        max_bytes = None if args.max_size is None else cache.parse_size(args.max_size)
    except ValueError as exc:
        raise ConfigError(f"--max-size: {exc}") from None
    if args.older_than is not None and not args.older_than >= 0:
        raise ConfigError(f"--older-than: must be a number of days >= 0, got {args.older_than}")
    removed = cache.prune(max_bytes, None if args.older_than is None else args.older_than * 86400)
    print(f"removed {len(removed)} entries ({cache.human(sum(e.size for e in removed))}) from {cache.root()}")
    return 0


class _DataHelp(argparse._HelpAction):
    """``ucat data --help`` lists the data set names, from the parameters schema's list (checked equal
    to the data registry by tests/test_registries.py): the registry itself imports torch."""

    def __call__(self, parser, namespace, values, option_string=None):
        from .config import schema

        names = sorted(schema()["$defs"]["dataset"]["enum"], key=lambda n: (not n.startswith("demo_"), n))
        parser.epilog = (f"Data sets: {', '.join(names)}. Sources, layouts, checksums and manual "
                         f"placement: docs/datasets.md.")
        super().__call__(parser, namespace, values, option_string)


def build_parser() -> argparse.ArgumentParser:
    from . import methods
    from .attack_names import ATTACKS

    parser = argparse.ArgumentParser(
        prog="ucat", description="Calibrated zero-shot adversarial robustness of CLIP (UCAT): pipeline stages.",
        epilog="Stages in order: data -> backbone -> finetune -> evaluate, calibrate -> report. "
               "`snakemake --cores all` or `dvc repro` runs them all.")
    parser.add_argument("--version", action="version", version=f"ucat {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("check", help="validate the parameters file and print the job matrix",
                       description="Validates the parameters file (and --set overrides) against the schema and the "
                                   "cross-key rules, and prints how many methods, data sets and evaluation jobs "
                                   "they make. Writes nothing; a bad key is a one-line error naming it. With --cost, "
                                   "the cost plan: FLOPs of every component (fine-tuning per method, evaluation per "
                                   "attack and eps, calibration, the demo's pretraining), shares and GPU-hours "
                                   "(docs/performance.md, 'Cost plan').")
    p.add_argument("--cost", action="store_true", help="print the cost plan (FLOPs, shares, GPU-hours)")
    p.add_argument("--rates", metavar="FILE",
                   help="a `ucat bench --out` JSON whose fine-tuning and PGD rates convert FLOPs to hours "
                        "(default: the recorded H200 measurement, named in the output)")
    p.add_argument("--per-cell", action="store_true", help="with --cost: also one line per evaluation cell")
    p.add_argument("--clean-accuracy", type=float, default=None, metavar="FRACTION",
                   help="clean accuracy AutoAttack may assume where no metrics cell was measured (default: the "
                        "mean of the paper's Table 16 averages)")
    p.add_argument("--robust-accuracy", type=float, default=None, metavar="FRACTION",
                   help="accuracy left after APGD-CE (APGD-DLR attacks these), likewise (default: Table 16's mean "
                        "PGD-100 accuracy)")
    _common(p)
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("data", help="generate (demo) or download and verify data sets into data.root",
                       description="Renders the demo sets, or downloads and verifies a real set (checksums, counts, "
                                   "class list) into data.root/NAME with a MANIFEST.json; with data.source: smoke, "
                                   "a tiny replica in the real on-disk format. A prepared set is verified, not "
                                   "redone. Sets that cannot be downloaded: the error says where to put the files.",
                       add_help=False)
    p.add_argument("-h", "--help", action=_DataHelp, help="show this help (with the data set names) and exit")
    p.add_argument("names", nargs="*", help="data sets (default: every set the parameters need)")
    _common(p)
    p.set_defaults(func=cmd_data)

    p = sub.add_parser("backbone", help="pretrain the demo CLIP, download open_clip weights or convert SLIP's "
                                        "checkpoint, into a local file",
                       description="backbone.source demo: pretrains the tiny demo CLIP on the demo world (seeded); "
                                   "open_clip: loads the entry's pretrained weights (or converts SLIP's own "
                                   "checkpoint file, docs/backbones.md). Every later stage starts from this file.")
    p.add_argument("backbone_id", nargs="?", metavar="BACKBONE",
                   help="a backbone.models name, or demo (default: the first)")
    p.add_argument("--out", help=f"checkpoint to write (default: {paths.BACKBONE})")
    _common(p)
    p.set_defaults(func=cmd_backbone)

    p = sub.add_parser("finetune", help="adversarially fine-tune the image tower with one method (clip: a copy)",
                       description="Fine-tunes the image tower from the backbone with one method's loss and "
                                   "attack; resumes from its last checkpoint when interrupted. Methods: " + "; ".join(f"{m.name}: {m.description}" for m in methods.METHODS.values()
                                                           if m.finetuned))
    p.add_argument("method", help=f"one of {', '.join(methods.METHODS)} (clip copies the backbone)")
    p.add_argument("--backbone-id", help="which backbone.models entry (default: the first)")
    p.add_argument("--backbone", help=f"backbone checkpoint (default: {paths.BACKBONE})")
    p.add_argument("--out", help=f"fine-tuned checkpoint (default: {paths.FINETUNED})")
    p.add_argument("--checkpoint-dir", help=f"resumable training state (default: {paths.CHECKPOINTS})")
    p.add_argument("--live-dir", help=f"dvclive metrics (default: {paths.TRAIN_LIVE})")
    p.add_argument("--stop-after-steps", type=int, help=argparse.SUPPRESS)
    _common(p)
    _seed(p)
    _no_cache(p)
    p.set_defaults(func=cmd_finetune)

    p = sub.add_parser("evaluate", help="attack and score one (method, data set): clean and every attack x eps",
                       description="Loads the model, text features and data once and writes one metrics JSON and "
                                   "one per-sample npz per cell (clean, then evaluate.attacks x evaluate.eps). Cells "
                                   "whose inputs were evaluated before are restored from .ucat/cache/cells "
                                   "(checkpoint bytes, data manifest, parameters, code: docs/api.md).")
    p.add_argument("--method", required=True, help=f"one of {', '.join(methods.METHODS)}")
    p.add_argument("--dataset", required=True, help="a data set name (see `ucat data --help`)")
    p.add_argument("--attack", choices=ATTACKS, help="only this cell (default: every condition of the params)")
    p.add_argument("--eps", type=int, default=0, help="with --attack: l-inf budget in units of 1/255 (ignored for clean)")
    p.add_argument("--backbone-id", help="which backbone.models entry (default: the first)")
    p.add_argument("--checkpoint", help="model to evaluate (default: the method's fine-tuned model, or the backbone for clip)")
    p.add_argument("--out-json", help=f"metrics (default: {paths.EVAL_JSON})")
    p.add_argument("--out-npz", help=f"per-sample arrays (default: {paths.EVAL_NPZ})")
    p.add_argument("--run-info", help="also write seconds, images/s, batch size and versions here (not a metric)")
    _common(p)
    _seed(p)
    _no_cache(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("calibrate", help="fit the temperature-scaling baseline of one model on the held-out split",
                       description="Fits T minimising the NLL of softmax(logits/T) on data.heldout clean held-out "
                                   "images of data.finetune (never an evaluation set); the report applies it.")
    p.add_argument("method", help=f"one of {', '.join(methods.METHODS)}")
    p.add_argument("--backbone-id", help="which backbone.models entry (default: the first)")
    p.add_argument("--checkpoint", help="model (default: the method's fine-tuned model, or the backbone for clip)")
    p.add_argument("--out", help=f"JSON to write (default: {paths.CALIBRATION})")
    _common(p)
    _seed(p)
    _no_cache(p)
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser("report", help="tables, figures and metrics summaries from the evaluation metrics",
                       description=f"Per backbone: {paths.TABLES}, {paths.REPORT}, PNG figures in {paths.FIGURES} "
                                   f"(`dvc plots show` renders them), PDFs in {paths.RESULTS}/figures, "
                                   f"{paths.BACKBONE_SUMMARY}; all backbones: {paths.SUMMARY}.")
    _common(p)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("dvc-yaml", help="write dvc.yaml from the parameters (the DVC twin of the Snakefile)",
                       description="Renders dvc.yaml from the stage definitions (src/ucat/workflow.py) as DVC matrix "
                                   "stages over the lists in params.yaml, so it does not change with the parameter "
                                   "values; run it after editing the stage definitions. --check only compares.")
    p.add_argument("--out", default="dvc.yaml")
    p.add_argument("--check", action="store_true", help="exit 1 if the file differs from what would be written")
    _common(p)
    p.set_defaults(func=cmd_dvc_yaml)

    p = sub.add_parser("prompts", help="print a data set's zero-shot prompts, one line per class in label order",
                       description="Each line: label, tab, the class's prompts (' | ' between templates). "
                                   "prompt.source decides: templates, or the official code's own (docs/prompts.md).")
    p.add_argument("name", metavar="NAME", help="a data set name")
    _common(p)
    p.set_defaults(func=cmd_prompts)

    p = sub.add_parser("cache", help="show the size of the text-feature and cell caches, or trim them",
                       description="The caches (class text features, evaluated cells, verified data folders) live in "
                                   "$UCAT_CACHE, else .ucat/cache in the project root. Every entry is keyed on all "
                                   "that decides its bytes and verified when read: deleting any of it only costs "
                                   "time. prune removes entries unused for --older-than days, then the least "
                                   "recently used until the total is at most --max-size.")
    p.add_argument("action", choices=["info", "prune"])
    p.add_argument("--max-size", metavar="SIZE", help="prune down to this total, e.g. 20G or 500M")
    p.add_argument("--older-than", type=float, metavar="DAYS", help="prune entries unused for this many days")
    p.set_defaults(func=cmd_cache)

    p = sub.add_parser("experiments", help="DVC experiments on one screen: changed parameters, accuracy, paired differences",
                       description="Reads `dvc exp show --json` and prints one row per experiment and backbone: the "
                                   "parameters that differ from the baseline, the reference method's accuracy per "
                                   "condition and its paired accuracy difference to --versus under each attack with "
                                   "the interval (metrics/<setting>/summary.json). Arguments after -- go to dvc exp "
                                   "show, e.g. `ucat experiments -- -A` for every commit.")
    p.add_argument("--reference", default="ucat", help="the method compared (default: %(default)s)")
    p.add_argument("--versus", default="tecoa", help="the method it is compared with (default: %(default)s)")
    p.add_argument("dvc_args", nargs="*", metavar="DVC_ARG", help="passed to dvc exp show (after --)")
    p.set_defaults(func=cmd_experiments)

    p = sub.add_parser("bench", help="measure images/s, FLOP utilisation and memory of fine-tuning and PGD evaluation",
                       description="Times fine-tuning steps and PGD evaluation batches on this machine (median of "
                                   "--repeats), counts the FLOPs per forward and prints images/s, the fraction of "
                                   "the measured matmul peak and GPU memory; writes them to --out. With --baseline "
                                   "official, the official code's loop structure beside the project's step "
                                   "(docs/performance.md).")
    p.add_argument("--out", default="results/bench.json", help="JSON with the figures (default: %(default)s)")
    p.add_argument("--model", default="auto", help="auto: ViT-B-32 on GPU and the demo model on CPU; or demo, ViT-B-32")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--compile", action="store_true", help="also measure with torch.compile (run.compile); "
                                                          "with --baseline: the project's side compiled too")
    p.add_argument("--batch", type=int, default=None,
                   help="images per step (default: 256 on GPU, 64 on CPU; --baseline official: 256 / 32)")
    p.add_argument("--pgd-steps", dest="pgd_steps", type=int, default=None,
                   help="PGD steps of the evaluation workload (default: 100 on GPU, 10 on CPU)")
    p.add_argument("--methods", default=None,
                   help="comma-separated fine-tuning methods whose step is timed (default: ucat,tga_zsr,comp_tga; "
                        "with --baseline official: those three only)")
    p.add_argument("--loader", action="store_true",
                   help="also measure the fine-tuning data loader's images/s (64-px JPEGs decoded and resized to the "
                        "model's size) and print it beside each fine-tuning step's, with the workers needed to feed it; "
                        "not with --baseline")
    p.add_argument("--loader-workers", dest="loader_workers", type=int, default=None,
                   help="loader workers for --loader (default: data.num_workers)")
    p.add_argument("--variants", nargs="?", const="eager,default,max-autotune,reduce-overhead", default=None,
                   metavar="MODES",
                   help="time the variants side by side in one run: compile modes (comma-separated, default all: "
                        "eager,default,max-autotune,reduce-overhead; the last two CUDA only) x patch embedding "
                        "conv/matmul x pipeline/bf16 weights, UCAT fine-tuning and PGD, with the numerics checks")
    p.add_argument("--baseline", choices=["official"], default=None,
                   help="official: time the official UCAT (and TGA-ZSR / Comp-TGA) loop's structure (fp16+GradScaler, prompts "
                        "re-encoded every forward, full-model backward in PGD) beside the project's step, same CLIP, same run; "
                        "prints images/s of both, the ratio and peak GPU memory per phase")
    _common(p)
    p.set_defaults(func=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code = args.func(args)
        if code == 0:
            _check_params_unchanged()
        return code
    except UcatError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; outputs written so far are complete, rerun to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
