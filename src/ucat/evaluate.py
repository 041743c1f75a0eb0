"""Robust and calibration evaluation of a (checkpoint, data set): every (attack, ε) cell of it.

Writes a metrics JSON (accuracy, ECE, NLL, Brier, confidence, entropy, AU, EU, reliability
bins: metrics only, a function of the inputs) and the per-sample arrays (``.npz``: sample_id,
label, pred, confidence, nll, brier, entropy, aleatoric, epistemic, logits), both atomically,
so any figure can be redrawn, and any post-hoc analysis (selective prediction, attack
detection, temperature scaling) run, without re-attacking.  ``sample_id`` is each image's
index in the full evaluation split, carried through the data loader with the image, so clean
and attacked cells can be aligned by checking, not assuming; ``logits`` (float32, N x C) are
what temperature scaling rescales.  A multi-label set's cells (``data.is_multilabel``: MS-COCO)
are attacked and scored by :mod:`ucat.evaluate_multilabel` and written the same way.
"""

from __future__ import annotations

import json
import time
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from . import attacks, attacks_multilabel, data, metrics, models, prompts, textcache
from .errors import CheckpointError, ConfigError
from .io import atomic_path, json_text, write_json
from .progress import progress


def choose_batch_size(model, requested, device: torch.device, amp, num_items: int, cap: int = 4096) -> int:
    """``requested``, or for ``auto`` the largest power of two whose attack step fits (256 on CPU).

    The probe is one forward + input-gradient pass, what every attack step costs.
    """
    if requested != "auto":
        return int(requested)
    if device.type != "cuda":
        return min(256, max(1, num_items))
    best, batch = 16, 16
    while batch <= min(cap, max(16, num_items)):
        try:
            x = torch.rand(batch, 3, model.image_size, model.image_size, device=device, requires_grad=True)
            with models.autocast(amp, device):
                torch.autograd.grad(model(x).float().logsumexp(-1).sum(), x)
            best = batch
            batch *= 2
        except torch.cuda.OutOfMemoryError:
            break
        finally:
            x = None
            torch.cuda.empty_cache()
    return best


class WithSampleIds(Dataset):
    """``(image, label, id)``: ``id`` is the item's index in the underlying (un-subsampled) split."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset
        ids, base = list(range(len(dataset))), dataset
        while isinstance(base, Subset):  # resolve nested subsets down to the split itself
            ids = [int(base.indices[i]) for i in ids]
            base = base.dataset
        self.ids = ids

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i):
        x, y = self.dataset[i]
        return x, y, self.ids[i]


class Evaluator:
    """One checkpoint on one data set, loaded once (model, text features, data loader): scores any cell."""

    def __init__(self, params: dict, checkpoint: str | Path, dataset: str, device: torch.device,
                 method: str | None = None, progress: bool = True, use_cache: bool = True):
        self.params, self.dataset, self.device, self.method, self.progress = params, dataset, device, method, progress
        ev = params["evaluate"]
        clip_model, arch, _ = models.load_checkpoint(checkpoint)
        images, names = data.open_eval(dataset, params, clip_model.visual.image_size[0])
        model = textcache.classifier(clip_model, arch, prompts.class_prompts(dataset, params, names), device,
                                     use_cache)
        model.requires_grad_(False)  # attacks need input gradients only
        del clip_model
        if models.compile_wanted(params["run"]["compile"], device):
            model.visual.compile()  # in place: state_dict keys unchanged
        self.model = model
        self.amp = models.autocast_dtype(params["run"]["precision"], device)
        self.batch_size = choose_batch_size(model, ev["batch_size"], device, self.amp, len(images))
        self.loader = DataLoader(WithSampleIds(images), batch_size=self.batch_size, shuffle=False,
                                 num_workers=params["data"]["num_workers"], pin_memory=device.type == "cuda")

    def cell(self, attack: str, eps: int) -> dict:
        return {"method": self.method, "dataset": self.dataset, "attack": attack, "eps": 0 if attack == "clean" else eps}

    def score(self, attack: str, eps: int, run_info: dict | None = None) -> tuple[dict, dict]:
        """Attack and score one cell; returns ``(summary, per_sample_arrays)``.

        ``run_info``, if given, is filled with seconds, images/s, batch size, device and threads.
        """
        check_cell(attack, eps, self.dataset)
        if data.is_multilabel(self.dataset):   # multi-hot targets: attacks and metrics of their own
            from .evaluate_multilabel import score

            return score(self, attack, eps, run_info)
        ev, model, device = self.params["evaluate"], self.model, self.device
        seed = self.params["run"]["seed"]
        gen = torch.Generator(device=device).manual_seed(seed + 2)   # per cell: a cell's bytes never depend on the others
        chunks: list[dict] = []
        start = time.time()
        desc = f"{self.method or 'model'}/{self.dataset}/{attack}"
        for x, y, ids in progress(self.loader, desc=desc, disable=not self.progress, unit="batch"):
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            if int(y.max()) >= model.num_classes:
                raise ConfigError(f"{self.dataset}: label {int(y.max())} but only {model.num_classes} class names")
            with models.autocast(self.amp, device):
                adv = attacks.run_attack(attack, model, x, y, eps, ev, model.num_classes, gen, seed)
                with torch.no_grad():
                    logits = model(adv)
            chunk = metrics.per_sample(logits, y, model.logit_scale, ev["uncertainty"], ev["tau_prime"])
            chunks.append({"sample_id": ids.numpy().astype(np.int64), **chunk,
                           "logits": logits.detach().float().cpu().numpy()})
        samples = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
        summary = cell_summary(samples, self.cell(attack, eps), model.num_classes, ev)
        if run_info is not None:
            seconds = time.time() - start
            run_info.update(batch_size=self.batch_size, seconds=round(seconds, 2),
                            images_per_second=round(len(samples["label"]) / max(seconds, 1e-9), 1),
                            device=str(device), threads=torch.get_num_threads(), torch=torch.__version__)
        return summary, samples


def cell_summary(samples: dict, cell: dict, num_classes: int, ev: dict) -> dict:
    """A cell's metrics JSON: a function of its per-sample arrays (and of the cell and the settings)."""
    if "target" in samples:                  # a multi-label cell (multi-hot targets)
        from .evaluate_multilabel import cell_summary as multilabel_summary

        return multilabel_summary(samples, cell, num_classes, ev)
    return {**cell, "num_classes": int(num_classes), **metrics.summarize(samples, ev["ece_bins"]),
            "uncertainty_convention": ev["uncertainty"]}


def consistent_with_samples(cell: dict, ev: dict):
    """``(json_file, npz_file) -> bool``: the JSON is exactly what :func:`cell_summary` gives for the arrays."""
    def check(json_file: Path, npz_file: Path) -> bool:
        stored = json.loads(Path(json_file).read_text())
        with np.load(npz_file) as z:
            samples = {k: z[k] for k in z.files}
        expected = cell_summary(samples, cell, stored.get("num_classes", -1), ev)
        return Path(json_file).read_text() == json_text(expected)
    return check


def check_cell(attack: str, eps: int, dataset: str | None = None) -> None:
    if attack not in attacks.ATTACKS:
        raise ConfigError(f"attack: unknown value {attack!r}; allowed: {', '.join(attacks.ATTACKS)}")
    if attack != "clean" and eps <= 0:
        raise ConfigError(f"eps: must be positive for attack {attack!r}, got {eps}")
    if dataset is not None and data.is_multilabel(dataset):
        attacks_multilabel.check_attack(attack, dataset)


def evaluate(params: dict, checkpoint: str | Path, dataset: str, attack: str, eps: int,
             device: torch.device, method: str | None = None, progress: bool = True,
             run_info: dict | None = None) -> tuple[dict, dict]:
    """Attack and score one cell (loads the model for it); see :meth:`Evaluator.score`."""
    check_cell(attack, eps, dataset)
    return Evaluator(params, checkpoint, dataset, device, method, progress).score(attack, eps, run_info)


def evaluate_dataset(params: dict, checkpoint: str | Path, dataset: str, device: torch.device, *, method: str,
                     out_paths, conditions: list[tuple[str, int]] | None = None, progress: bool = True,
                     use_cache: bool = True) -> dict:
    """Score every condition (default: ``paths.conditions(params)``) of one (model, data set) and write
    each cell as soon as it is done; cells whose inputs were seen before are restored from
    :mod:`ucat.cellcache` (verified) and the model is loaded only if some cell must be computed.
    The data set is verified against its manifest first, cached or not.

    ``out_paths(attack, eps)`` gives the cell's (json, npz) paths.  ``use_cache=False`` reads no
    cache (cells, text features) and stores the fresh results.  Returns run information per cell.
    """
    from . import cellcache, config, keys, paths
    from .data.integrity import sha256

    conditions = conditions if conditions is not None else paths.conditions(params, dataset)
    for attack, eps in conditions:
        check_cell(attack, eps, dataset)
    if not Path(checkpoint).is_file():
        raise CheckpointError(f"{checkpoint}: checkpoint not found")
    inputs = {"checkpoint": sha256(checkpoint), "data": data.verified_digest(dataset, params)}
    cells = {(a, e): {"method": method, "dataset": dataset, "attack": a, "eps": 0 if a == "clean" else e}
             for a, e in conditions}
    info: dict = {}
    evaluator = None
    for attack, eps in conditions:
        name = f"{attack}_eps{eps}"
        json_path, npz_path = out_paths(attack, eps)
        cell = cells[attack, eps]
        cell_key, record = cellcache.key(params=config.select(params, keys.evaluate_params(attack)), inputs=inputs,
                                         device=device, extra=cell)
        consistent = consistent_with_samples(cell, params["evaluate"])
        if use_cache and cellcache.restore(cell_key, json_path, npz_path, consistent):
            info[name] = {"restored": True}
            continue
        if evaluator is None:
            evaluator = Evaluator(params, checkpoint, dataset, device, method, progress, use_cache)
        cell_info: dict = {}
        summary, samples = evaluator.score(attack, eps, cell_info)
        write_outputs(summary, samples, json_path, npz_path)
        cellcache.store(cell_key, record, json_path, npz_path)
        headline = {k: summary[k] for k in ("accuracy", "mAP", "F1@3") if k in summary}   # multi-label: no accuracy
        info[name] = {"restored": False, **headline, **cell_info}
    return info


def write_npz(path: str | Path, arrays: dict) -> None:
    """``np.savez_compressed``'s format (``np.load`` reads it) with a fixed entry timestamp:
    numpy stamps each entry with the current time, so equal arrays would give different bytes."""
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, arr in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            with zf.open(info, "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, np.asanyarray(arr), allow_pickle=False)


def write_outputs(summary: dict, samples: dict, json_path: str | Path, npz_path: str | Path) -> None:
    write_npz(npz_path, samples)
    write_json(json_path, summary)
