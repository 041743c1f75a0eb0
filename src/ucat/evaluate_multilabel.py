"""One (checkpoint, multi-label data set, attack, ε) cell: attack, then the multi-label metrics.

The counterpart of :meth:`ucat.evaluate.Evaluator.score` for a set whose labels are multi-hot
vectors (``ucat.data.is_multilabel``, MS-COCO 2017): the evaluator has loaded the model, the
class text features and the data loader; :func:`score` attacks every batch with
:mod:`ucat.attacks_multilabel` and scores the logits with :mod:`ucat.metrics_multilabel`.
It returns the same pair as ``Evaluator.score`` so the same cell files are written:

- the summary (metrics only): the paper's cells ``mAP``, ``P@3``, ``R@3``, ``F1@3`` (fractions, per
  batch as the official code), the ``per_batch`` and ``whole_set`` metrics (top-3 and top-5, micro
  and macro), the classwise calibration of the softmax probabilities, counts;
- the per-sample arrays: ``sample_id`` (index in the full split), ``target`` (multi-hot, uint8,
  N x C) and ``logits`` (float32, N x C), from which every metric can be recomputed.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from . import attacks_multilabel, metrics_multilabel, models
from .errors import ConfigError
from .progress import progress


def cell_summary(samples: dict, cell: dict, num_classes: int, ev: dict) -> dict:
    """A multi-label cell's metrics JSON: a function of its arrays (``ucat.evaluate.cell_summary``)."""
    return {**cell, "num_classes": int(num_classes), "multilabel": True,
            **metrics_multilabel.summarize(samples["logits"], samples["target"], ev["ece_bins"])}


def score(evaluator, attack: str, eps: int, run_info: dict | None = None) -> tuple[dict, dict]:
    """Attack and score one cell of ``evaluator`` (a :class:`ucat.evaluate.Evaluator` on a multi-label set)."""
    attacks_multilabel.check_attack(attack, evaluator.dataset)
    ev, model, device = evaluator.params["evaluate"], evaluator.model, evaluator.device
    seed = evaluator.params["run"]["seed"]
    gen = torch.Generator(device=device).manual_seed(seed + 2)   # per cell, as the single-label cells
    chunks: list[dict] = []
    start = time.time()
    desc = f"{evaluator.method or 'model'}/{evaluator.dataset}/{attack}"
    for x, y, ids in progress(evaluator.loader, desc=desc, disable=not evaluator.progress, unit="batch"):
        if y.ndim != 2 or y.shape[1] != model.num_classes:
            raise ConfigError(f"{evaluator.dataset}: targets of shape {tuple(y.shape)}, expected multi-hot "
                              f"(batch, {model.num_classes})")
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with models.autocast(evaluator.amp, device):
            adv = attacks_multilabel.run_attack(attack, model, x, y, eps, ev, gen)
            with torch.no_grad():
                logits = model(adv)
        chunks.append({"sample_id": ids.numpy().astype(np.int64), "target": y.cpu().numpy().astype(np.uint8),
                       "logits": logits.detach().float().cpu().numpy()})
    samples = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
    summary = cell_summary(samples, evaluator.cell(attack, eps), model.num_classes, ev)
    if run_info is not None:
        seconds = time.time() - start
        run_info.update(batch_size=evaluator.batch_size, seconds=round(seconds, 2),
                        images_per_second=round(len(samples["target"]) / max(seconds, 1e-9), 1),
                        device=str(device), threads=torch.get_num_threads(), torch=torch.__version__)
    return summary, samples
