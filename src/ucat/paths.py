"""Where every stage writes: the one layout shared by the CLI, Snakemake and DVC.

Every run is namespaced by its backbone id (``demo`` for the embedded demo, the open_clip
name otherwise), so several backbones live side by side:
``models/<bb>/…``, ``metrics/<bb>/{train,eval}/…``, ``results/<bb>/{samples,tables,figures}/…``.
"""

from __future__ import annotations

from . import methods

BACKBONE = "models/{backbone}/backbone.pt"
FINETUNED = "models/{backbone}/{method}/model.pt"
CHECKPOINTS = "models/{backbone}/{method}/checkpoints"
METRICS = "metrics/{backbone}"
TRAIN_LIVE = "metrics/{backbone}/train/{method}"
EVAL_JSON = "metrics/{backbone}/eval/{method}/{dataset}/{attack}_eps{eps}.json"
RESULTS = "results/{backbone}"
SAMPLES = "results/{backbone}/samples"
EVAL_NPZ = "results/{backbone}/samples/{method}/{dataset}/{attack}_eps{eps}.npz"
BACKBONE_SUMMARY = "metrics/{backbone}/summary.json"
TABLES = "results/{backbone}/tables"
FIGURES = "results/{backbone}/figures"
REPORT = "results/{backbone}/report.md"
SUMMARY = "metrics/summary.json"    # all backbones: what `dvc metrics diff` compares first


def backbones(params: dict) -> list[str]:
    """The backbone ids of a run: ``demo``, or the open_clip names of ``backbone.models``."""
    if params["backbone"]["source"] == "demo":
        return ["demo"]
    return [m["name"] for m in params["backbone"]["models"]]


def data_dir(params: dict, dataset: str) -> str:
    return f"{params['data']['root'].rstrip('/')}/{dataset}"


def model_for(backbone: str, method: str) -> str:
    """The checkpoint a method is evaluated with: the backbone itself for ``clip``."""
    if methods.get(method).finetuned:
        return FINETUNED.format(backbone=backbone, method=method)
    return BACKBONE.format(backbone=backbone)


def eval_cells(params: dict) -> list[tuple[str, str, str, str, int]]:
    """Every (backbone, method, dataset, attack, eps) the configuration asks for; clean is eps 0 once."""
    ev = params["evaluate"]
    cells = []
    for backbone in backbones(params):
        for method in params["methods"]:
            for dataset in params["data"]["datasets"]:
                for attack in ev["attacks"]:
                    for eps in ([0] if attack == "clean" else ev["eps"]):
                        cells.append((backbone, method, dataset, attack, eps))
    return cells


def data_sets(params: dict) -> list[str]:
    """Every data set a run needs: the fine-tuning set (if anything is fine-tuned) and the evaluation sets."""
    needed = list(params["data"]["datasets"])
    if any(methods.get(m).finetuned for m in params["methods"]) and params["data"]["finetune"] not in needed:
        needed.insert(0, params["data"]["finetune"])
    return needed
