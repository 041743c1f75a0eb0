"""Where every stage writes: the one layout shared by the CLI, Snakemake and DVC.

Every run is namespaced by its backbone id (the ``name`` of its ``backbone.models`` entry:
``demo`` for the embedded demo), so several backbones live side by side:
``models/<bb>/…``, ``metrics/cells/<bb>/{train,eval}/…``, ``results/samples/<bb>/…``,
``results/report/<bb>/…``.  Per-cell metrics, per-sample arrays and the report each sit
under one folder (``metrics/cells``, ``results/samples``, ``results/report``) so that DVC's
templated ``dvc.yaml`` can name them without knowing the lists in params.yaml.

Every method, ``clip`` included, is evaluated from ``models/<bb>/<method>/model.pt`` (for
``clip`` a copy of the backbone), so one path pattern serves every cell.
"""

from __future__ import annotations

from . import methods

BACKBONE = "models/{backbone}/backbone.pt"
FINETUNED = "models/{backbone}/{method}/model.pt"
CHECKPOINTS = "models/{backbone}/{method}/checkpoints"
CELLS = "metrics/cells"             # every per-cell metric (git-tracked, not a headline)
METRICS = "metrics/cells/{backbone}"
# the parts below METRICS / SAMPLES / TRAIN_LIVE, which the report reads from any root
EVAL_CELL = "eval/{method}/{dataset}/{attack}_eps{eps}.json"
SAMPLE_CELL = "{method}/{dataset}/{attack}_eps{eps}.npz"
TRAIN_RUN = "train/{method}"
TRAIN_CURVE = "plots/metrics/train/{name}.tsv"     # dvclive's per-step log of one metric
TRAIN_LIVE = f"{METRICS}/{TRAIN_RUN}"
EVAL_JSON = f"{METRICS}/{EVAL_CELL}"
CALIBRATION = f"{METRICS}/calibration/{{method}}.json"   # fitted temperature (ucat calibrate)
SAMPLES_ROOT = "results/samples"
SAMPLES = "results/samples/{backbone}"
EVAL_NPZ = f"{SAMPLES}/{SAMPLE_CELL}"
REPORTS = "results/report"
RESULTS = "results/report/{backbone}"
BACKBONE_SUMMARY = "results/report/{backbone}/summary.json"
TABLES = "results/report/{backbone}/tables"
FIGURES = "results/report/{backbone}/figures"
REPORT = "results/report/{backbone}/report.md"
SUMMARY = "metrics/summary.json"    # the headline over all backbones: what `dvc metrics diff` compares
RUN_INFO = "logs/run/{stage}.json"  # seconds, images/s, batch size, versions: never a metric, never an output


def backbones(params: dict) -> list[str]:
    """The backbone ids of a run: the names of ``backbone.models`` (``demo`` for the demo)."""
    return [m["name"] for m in params["backbone"]["models"]]


def data_dir(params: dict, dataset: str) -> str:
    return f"{params['data']['root'].rstrip('/')}/{dataset}"


def model_for(backbone: str, method: str) -> str:
    """The checkpoint a method is evaluated with (for ``clip``, the backbone's copy)."""
    methods.get(method)
    return FINETUNED.format(backbone=backbone, method=method)


def conditions(params: dict) -> list[tuple[str, int]]:
    """The (attack, eps) conditions of one (method, data set): clean (eps 0, always: the reference
    of every attack), then every attack of ``evaluate.attacks`` at every ``evaluate.eps``."""
    ev = params["evaluate"]
    return [("clean", 0)] + [(attack, eps) for attack in ev["attacks"] for eps in ev["eps"]]


def eval_cells(params: dict) -> list[tuple[str, str, str, str, int]]:
    """Every (backbone, method, dataset, attack, eps) the configuration asks for."""
    return [(backbone, method, dataset, attack, eps)
            for backbone in backbones(params) for method in params["methods"]
            for dataset in params["data"]["datasets"] for attack, eps in conditions(params)]


def data_sets(params: dict) -> list[str]:
    """Every data set a run needs: the fine-tuning set (if anything is fine-tuned) and the evaluation sets."""
    needed = list(params["data"]["datasets"])
    if any(methods.get(m).finetuned for m in params["methods"]) and params["data"]["finetune"] not in needed:
        needed.insert(0, params["data"]["finetune"])
    return needed
