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
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from . import attacks, attacks_multilabel, data, metrics, models, patch_embed, prompts, textcache
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
        patch_embed.apply(model.visual, params["run"]["patch_embed"])   # class swap: state_dict keys unchanged
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
        infos = None if run_info is None else {(attack, eps): run_info}
        return self.score_all([(attack, eps)], infos)[attack, eps]

    def score_all(self, conditions: list[tuple[str, int]], run_info: dict | None = None) -> dict:
        """Attack and score every ``(attack, eps)`` cell in one pass over the data: each batch is read
        and decoded once and every cell runs on it.  Returns ``{(attack, eps): (summary, samples)}``.

        Each cell draws its random starts from a generator of its own, seeded and advanced as if
        the cell were scored alone, so a cell's bytes never depend on which cells run beside it.
        ``run_info``, if given, maps a cell to a dict filled as :meth:`score`'s; its seconds are the
        cell's own attacking and scoring (the shared data loading is in no cell's).
        """
        conditions = list(dict.fromkeys(conditions))
        for attack, eps in conditions:
            check_cell(attack, eps, self.dataset)
        if data.is_multilabel(self.dataset):   # multi-hot targets: attacks and metrics of their own
            from . import evaluate_multilabel as ml

            prepare, chunk = partial(ml.prepare, self), partial(ml.chunk, self)
        else:
            prepare, chunk = self._prepare, self._chunk
        seed = self.params["run"]["seed"]
        gens = {c: torch.Generator(device=self.device).manual_seed(seed + 2) for c in conditions}
        chunks: dict = {c: [] for c in conditions}
        seconds = dict.fromkeys(conditions, 0.0)
        names = ",".join(a if a == "clean" else f"{a}{e}" for a, e in conditions)
        desc = f"{self.method or 'model'}/{self.dataset}/{names}"
        for x, y, ids in progress(self.loader, desc=desc, disable=not self.progress, unit="batch"):
            x, y = prepare(x, y)
            for c in conditions:
                start = time.perf_counter()
                chunks[c].append(chunk(c[0], c[1], gens[c], x, y, ids))
                seconds[c] += time.perf_counter() - start
        out = {}
        for c in conditions:
            batches = chunks.pop(c)
            samples = {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}
            out[c] = cell_summary(samples, self.cell(*c), self.model.num_classes, self.params["evaluate"]), samples
            if run_info is not None and c in run_info:
                n = len(samples["sample_id"])
                run_info[c].update(batch_size=self.batch_size, seconds=round(seconds[c], 2),
                                   images_per_second=round(n / max(seconds[c], 1e-9), 1), device=str(self.device),
                                   threads=torch.get_num_threads(), torch=torch.__version__)
        return out

    def _prepare(self, x, y):
        """One batch on the device, its labels checked against the class names."""
        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        if int(y.max()) >= self.model.num_classes:
            raise ConfigError(f"{self.dataset}: label {int(y.max())} but only {self.model.num_classes} class names")
        return x, y

    def _chunk(self, attack: str, eps: int, gen: torch.Generator, x, y, ids) -> dict:
        """One batch of one cell: attack, then the per-sample arrays of the attacked images."""
        ev, model, device = self.params["evaluate"], self.model, self.device
        with models.autocast(self.amp, device):
            adv = attacks.run_attack(attack, model, x, y, eps, ev, model.num_classes, gen, self.params["run"]["seed"])
            with torch.no_grad():
                logits = model(adv)
        chunk = metrics.per_sample(logits, y, model.logit_scale, ev["uncertainty"], ev["tau_prime"])
        return {"sample_id": ids.numpy().astype(np.int64), **chunk, "logits": logits.detach().float().cpu().numpy()}


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
    each cell; cells whose inputs were seen before are restored from :mod:`ucat.cellcache` (verified)
    and the model is loaded only if some cell must be computed.  The cells left to compute run in
    one pass over the data (:meth:`Evaluator.score_all`): each image is decoded once per job.
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
    missing: dict = {}                           # cell -> (its cache key and record), in condition order
    for attack, eps in conditions:
        json_path, npz_path = out_paths(attack, eps)
        cell = cells[attack, eps]
        cell_key, record = cellcache.key(params=config.select(params, keys.evaluate_params(attack)), inputs=inputs,
                                         device=device, extra=cell)
        consistent = consistent_with_samples(cell, params["evaluate"])
        if use_cache and cellcache.restore(cell_key, json_path, npz_path, consistent):
            info[f"{attack}_eps{eps}"] = {"restored": True}
        else:
            missing[attack, eps] = cell_key, record
    if missing:
        evaluator = Evaluator(params, checkpoint, dataset, device, method, progress, use_cache)
        run_info: dict = {c: {} for c in missing}
        scored = evaluator.score_all(list(missing), run_info)
        for (attack, eps), (cell_key, record) in missing.items():
            summary, samples = scored.pop((attack, eps))
            json_path, npz_path = out_paths(attack, eps)
            write_outputs(summary, samples, json_path, npz_path)
            cellcache.store(cell_key, record, json_path, npz_path)
            headline = {k: summary[k] for k in ("accuracy", "mAP", "F1@3") if k in summary}   # multi-label: no accuracy
            info[f"{attack}_eps{eps}"] = {"restored": False, **headline, **run_info[attack, eps]}
    return {f"{a}_eps{e}": info[f"{a}_eps{e}"] for a, e in conditions}


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
