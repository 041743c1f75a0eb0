"""Where every stage writes: the one layout shared by the CLI, Snakemake and DVC.

Outputs are namespaced by the backbone id (the ``name`` of its ``backbone.models`` entry:
``demo`` for the embedded demo), the setting (``run.setting``: ``main``, or ``fare`` for the
paper's FARE setting) and the training seed (each of ``run.seeds``), so backbones, settings and
seeds live side by side and never overwrite each other:
``models/<bb>/<setting>/seed<N>/<method>/…``, ``metrics/<setting>/cells/<bb>/seed<N>/{train,eval}/…``,
``results/<setting>/samples/<bb>/seed<N>/…``, ``results/<setting>/report/<bb>/…`` (one report over
all seeds) and ``metrics/<setting>/summary.json``.  Per-cell metrics, per-sample arrays and the
report each sit under one folder per setting so that DVC's templated ``dvc.yaml`` can name them
without knowing the lists in params.yaml.  The backbone and the data do not depend on the
training seed (``backbone.seed``, ``data.seed``).

Every method, ``clip`` included, is evaluated from ``models/<bb>/<setting>/seed<N>/<method>/model.pt``
(for ``clip`` a copy of the backbone), so one path pattern serves every cell.
"""

from __future__ import annotations

from . import methods

BACKBONE = "models/{backbone}/backbone.pt"
RUN = "{backbone}/{setting}/seed{seed}"     # one training seed of one setting on one backbone
FINETUNED = f"models/{RUN}/{{method}}/model.pt"
CHECKPOINTS = f"models/{RUN}/{{method}}/checkpoints"
CELLS = "metrics/{setting}/cells"           # every per-cell metric of a setting (git-tracked, not a headline)
METRICS = f"{CELLS}/{{backbone}}/seed{{seed}}"
# the parts below METRICS / SAMPLES / TRAIN_LIVE, which the report reads from any root
EVAL_CELL = "eval/{method}/{dataset}/{attack}_eps{eps}.json"
SAMPLE_CELL = "{method}/{dataset}/{attack}_eps{eps}.npz"
TRAIN_RUN = "train/{method}"
TRAIN_CURVE = "plots/metrics/train/{name}.tsv"     # dvclive's per-step log of one metric
TRAIN_LIVE = f"{METRICS}/{TRAIN_RUN}"
EVAL_JSON = f"{METRICS}/{EVAL_CELL}"
CALIBRATION = f"{METRICS}/calibration/{{method}}.json"   # fitted temperature (ucat calibrate)
SAMPLES_ROOT = "results/{setting}/samples"
SAMPLES = f"{SAMPLES_ROOT}/{{backbone}}/seed{{seed}}"
EVAL_NPZ = f"{SAMPLES}/{SAMPLE_CELL}"
REPORTS = "results/{setting}/report"
RESULTS = f"{REPORTS}/{{backbone}}"
BACKBONE_SUMMARY = f"{RESULTS}/summary.json"
TABLES = f"{RESULTS}/tables"
FIGURES_ROOT = "results/{setting}/figures"   # PNGs only: DVC renders the folder as plots (a PDF would fail it)
FIGURES = f"{FIGURES_ROOT}/{{backbone}}"        # the PDFs stay in the report folder ({RESULTS}/figures)
REPORT = f"{RESULTS}/report.md"
SUMMARY = "metrics/{setting}/summary.json"   # the headline over all backbones: what `dvc metrics diff` compares
RUN_INFO = "logs/run/{setting}/{stage}.json"  # seconds, images/s, batch size, versions: never a metric, never an output


def setting(params: dict) -> str:
    return params["run"]["setting"]


def seeds(params: dict) -> list[int]:
    return list(params["run"]["seeds"])


def backbones(params: dict) -> list[str]:
    """The backbone ids of a run: the names of ``backbone.models`` (``demo`` for the demo)."""
    return [m["name"] for m in params["backbone"]["models"]]


def data_dir(params: dict, dataset: str) -> str:
    return f"{params['data']['root'].rstrip('/')}/{dataset}"


def at(params: dict, backbone: str, **wildcards) -> dict:
    """The placeholders of one job's paths: the backbone, the setting, this process's seed, and more."""
    return {"backbone": backbone, "setting": setting(params), "seed": params["run"]["seed"], **wildcards}


def model_for(params: dict, backbone: str, method: str) -> str:
    """The checkpoint a method is evaluated with (for ``clip``, the backbone's copy)."""
    methods.get(method)
    return FINETUNED.format(**at(params, backbone, method=method))


# the multi-label sets and the attacks defined for them (the paper: MS-COCO under PGD-100 and CW-100);
# torch-free copies of the data registry's ``multilabel`` flags and ``attacks_multilabel.ATTACKS``
# (tests/test_registries.py checks they agree), so the workflow can plan jobs without importing torch
MULTILABEL_SETS = ("coco2017",)
MULTILABEL_ATTACKS = ("pgd", "cw")


def conditions(params: dict, dataset: str | None = None) -> list[tuple[str, int]]:
    """The (attack, eps) conditions of one (method, data set): clean (eps 0, always: the reference
    of every attack), then every attack of ``evaluate.attacks`` at every ``evaluate.eps`` (for a
    multi-label set, only those defined for it)."""
    ev = params["evaluate"]
    allowed = MULTILABEL_ATTACKS if dataset in MULTILABEL_SETS else ev["attacks"]
    return [("clean", 0)] + [(attack, eps) for attack in ev["attacks"] if attack in allowed for eps in ev["eps"]]


def eval_cells(params: dict) -> list[tuple[str, int, str, str, str, int]]:
    """Every (backbone, seed, method, dataset, attack, eps) the configuration asks for."""
    return [(backbone, seed, method, dataset, attack, eps)
            for backbone in backbones(params) for seed in seeds(params) for method in params["methods"]
            for dataset in params["data"]["datasets"] for attack, eps in conditions(params, dataset)]


def data_sets(params: dict) -> list[str]:
    """Every data set a run needs: the fine-tuning set (if anything is fine-tuned) and the evaluation sets."""
    needed = list(params["data"]["datasets"])
    if any(methods.get(m).finetuned for m in params["methods"]) and params["data"]["finetune"] not in needed:
        needed.insert(0, params["data"]["finetune"])
    return needed
