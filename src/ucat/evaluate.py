"""Robust and calibration evaluation of one (checkpoint, data set, attack, ε) cell.

Writes a metrics JSON (accuracy, ECE, NLL, Brier, confidence, entropy, AU, EU, reliability
bins: metrics only, a function of the inputs) and the per-sample arrays (``.npz``: sample_id,
label, pred, confidence, nll, brier, entropy, aleatoric, epistemic, logits), both atomically,
so any figure can be redrawn, and any post-hoc analysis (selective prediction, attack
detection, temperature scaling) run, without re-attacking.  ``sample_id`` is each image's
index in the full evaluation split, carried through the data loader with the image, so clean
and attacked cells can be aligned by checking, not assuming; ``logits`` (float32, N x C) are
what temperature scaling rescales.
"""

from __future__ import annotations

import time
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from . import attacks, data, metrics, models, prompts
from .errors import ConfigError
from .io import atomic_path, write_json


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


def evaluate(params: dict, checkpoint: str | Path, dataset: str, attack: str, eps: int,
             device: torch.device, method: str | None = None, progress: bool = True,
             run_info: dict | None = None) -> tuple[dict, dict]:
    """Attack and score one cell; returns ``(summary, per_sample_arrays)``.

    ``run_info``, if given, is filled with seconds, images/s, batch size, device and threads.
    """
    ev = params["evaluate"]
    if attack not in attacks.ATTACKS:
        raise ConfigError(f"attack: unknown value {attack!r}; allowed: {', '.join(attacks.ATTACKS)}")
    if attack != "clean" and eps <= 0:
        raise ConfigError(f"eps: must be positive for attack {attack!r}, got {eps}")
    clip_model, arch, _ = models.load_checkpoint(checkpoint)
    images, names = data.open_eval(dataset, params, clip_model.visual.image_size[0])
    model = models.ZeroShotClassifier.from_prompts(clip_model, arch, prompts.class_prompts(dataset, params, names),
                                                   device, cache=True)
    model.requires_grad_(False)  # attacks need input gradients only
    del clip_model
    if params["run"]["compile"]:
        model.visual.compile()  # in place: state_dict keys unchanged
    amp = models.autocast_dtype(params["run"]["precision"], device)
    batch_size = choose_batch_size(model, ev["batch_size"], device, amp, len(images))
    loader = DataLoader(WithSampleIds(images), batch_size=batch_size, shuffle=False,
                        num_workers=params["data"]["num_workers"], pin_memory=device.type == "cuda")
    gen = torch.Generator(device=device).manual_seed(params["run"]["seed"] + 2)
    chunks: list[dict] = []
    start = time.time()
    for x, y, ids in tqdm(loader, desc=f"{method or 'model'}/{dataset}/{attack}", disable=not progress, mininterval=2):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if int(y.max()) >= model.num_classes:
            raise ConfigError(f"{dataset}: label {int(y.max())} but only {model.num_classes} class names")
        with models.autocast(amp, device):
            adv = attacks.run_attack(attack, model, x, y, eps, ev, model.num_classes, gen, params["run"]["seed"])
            with torch.no_grad():
                logits = model(adv)
        chunk = metrics.per_sample(logits, y, model.logit_scale, ev["uncertainty"], ev["tau_prime"])
        chunks.append({"sample_id": ids.numpy().astype(np.int64), **chunk,
                       "logits": logits.detach().float().cpu().numpy()})
    samples = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
    summary = {"method": method, "dataset": dataset, "attack": attack, "eps": 0 if attack == "clean" else eps,
               "num_classes": model.num_classes, **metrics.summarize(samples, ev["ece_bins"]),
               "uncertainty_convention": ev["uncertainty"]}
    if run_info is not None:
        seconds = time.time() - start
        run_info.update(batch_size=batch_size, seconds=round(seconds, 2),
                        images_per_second=round(len(samples["label"]) / max(seconds, 1e-9), 1),
                        device=str(device), threads=torch.get_num_threads(), torch=torch.__version__)
    return summary, samples


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
