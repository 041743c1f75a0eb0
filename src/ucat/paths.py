"""Where every stage writes: the one layout shared by the CLI, Snakemake and DVC."""

from __future__ import annotations

from . import methods

BACKBONE = "models/backbone.pt"
FINETUNED = "models/{method}/model.pt"
CHECKPOINTS = "models/{method}/checkpoints"
TRAIN_LIVE = "metrics/train/{method}"
EVAL_JSON = "metrics/eval/{method}/{dataset}/{attack}_eps{eps}.json"
EVAL_NPZ = "results/samples/{method}/{dataset}/{attack}_eps{eps}.npz"
SUMMARY = "metrics/summary.json"
TABLES = "results/tables"
FIGURES = "results/figures"
REPORT = "results/report.md"


def data_dir(params: dict, dataset: str) -> str:
    return f"{params['data']['root'].rstrip('/')}/{dataset}"


def model_for(method: str) -> str:
    """The checkpoint a method is evaluated with: the backbone itself for ``clip``."""
    return FINETUNED.format(method=method) if methods.get(method).finetuned else BACKBONE


def eval_cells(params: dict) -> list[tuple[str, str, str, int]]:
    """Every (method, dataset, attack, eps) the configuration asks for; clean is eps 0 once."""
    ev = params["evaluate"]
    cells = []
    for method in params["methods"]:
        for dataset in params["data"]["datasets"]:
            for attack in ev["attacks"]:
                for eps in ([0] if attack == "clean" else ev["eps"]):
                    cells.append((method, dataset, attack, eps))
    return cells


def data_sets(params: dict) -> list[str]:
    """Every data set a run needs: the fine-tuning set (if anything is fine-tuned) and the evaluation sets."""
    needed = list(params["data"]["datasets"])
    if any(methods.get(m).finetuned for m in params["methods"]) and params["data"]["finetune"] not in needed:
        needed.insert(0, params["data"]["finetune"])
    return needed
