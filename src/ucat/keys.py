"""The parameter keys each stage reads: a change reruns exactly the stages that read it.

Both engines take them from here through :mod:`ucat.workflow` (Snakemake's params, DVC's
``params:``), and every cache key (:mod:`ucat.fingerprint`) holds the values of the keys its
computation reads.  ``run.seed`` is the training seed of one job (a runtime value set by
``--seed`` from the list ``run.seeds``): for the engines it is part of the job's identity (a
wildcard), not a parameter (:func:`for_engines`).  Torch-free: the Snakefile imports it at every parse.
"""

from __future__ import annotations

from . import methods

RUNTIME = ("run.seed",)   # set per job (--seed), never in a parameters file
BACKBONE_PARAMS = ["backbone"]  # the whole section (backbone.seed too): DVC params cannot name a list entry
FINETUNE_COMMON = ["run.seed", "run.precision", "run.compile", "run.patch_embed", "finetune", "prompt", "data.seed",
                   "data.finetune", "data.demo_train_per_class", "data.preprocess"]
# DVC applies one params list to every matrix instance, so each fine-tuning instance lists
# every method section; a change to another method's section reruns it as a no-op (the
# checkpoint's fingerprint covers only its own sections: it restores the final weights,
# byte-identical, in seconds, and nothing downstream reruns).  Snakemake is exact.
METHOD_SECTIONS = sorted({s for m in methods.METHODS.values() for s in m.sections})
EVALUATE_COMMON = ["run.seed", "run.precision", "run.compile", "run.patch_embed", "prompt", "data.seed", "data.subsample", "data.preprocess",
                   "evaluate.batch_size", "evaluate.ece_bins", "evaluate.uncertainty", "evaluate.tau_prime"]
REPORT_PARAMS = ["run.seeds", "methods", "data.datasets", "data.source", "evaluate.attacks", "evaluate.eps",
                 "evaluate.pgd", "evaluate.cw", "evaluate.caa", "evaluate.a3", "backbone.models", "report",
                 "evaluate.ece_bins", "data.finetune", "data.heldout"]   # uncertainty-in-use part
# temperature scaling on the held-out split (ucat.calibration, ucat.data.heldout)
CALIBRATE_PARAMS = ["run.precision", "prompt", "data.seed", "data.finetune", "data.source", "data.preprocess", "data.heldout",
                    "backbone.demo.image_size", "evaluate.batch_size", "evaluate.ece_bins"]


def data_params(dataset: str) -> list[str]:
    """Keys one data set's preparation reads (Snakemake; DVC's single data stage reads their union)."""
    if dataset.startswith("demo_"):  # the demo sets (ucat.data.demo); by name: importing ucat.data needs torch
        per_class = "data.demo_train_per_class" if dataset == "demo_train" else "data.demo_eval_per_class"
        return ["data.seed", per_class, "backbone.demo.image_size", "data.root"]
    return ["data.root", "data.source"]


def finetune_params(method: str) -> list[str]:
    """The exact keys one method's fine-tuning reads."""
    return FINETUNE_COMMON + list(methods.get(method).sections)


EVALUATE_LISTS = ["evaluate.attacks", "evaluate.eps"]


def evaluate_params(attack: str) -> list[str]:
    """The keys one cell reads (the cell cache's key)."""
    return EVALUATE_COMMON + ([f"evaluate.{attack}"] if attack != "clean" else [])


def evaluate_job_params(params: dict) -> list[str]:
    """The keys one evaluation job reads (Snakemake; DVC names the whole ``evaluate`` section)."""
    return EVALUATE_COMMON + EVALUATE_LISTS + [f"evaluate.{a}" for a in params["evaluate"]["attacks"]]


def for_engines(keys: list[str]) -> list[str]:
    """The keys as the engines see them: without the runtime seed (a wildcard of the job)."""
    return [k for k in keys if k not in RUNTIME]
