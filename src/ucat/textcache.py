"""Class text features computed once per (text tower, prompts, code), shared by every job.

The text tower is frozen: every method's checkpoint of a backbone carries the same text
weights, so the class features of a data set are the same for all methods and attacks.
Encoding ImageNet's 1000 prompts through ViT-B/32's text tower costs about a minute of CPU,
and the evaluation grid would pay it in every (method, data set) job.  Here they are stored
under a :mod:`ucat.fingerprint` key: the text tower's tensors, the architecture record and
the prompts, the code that encodes them, the library versions and the device, so a hit can
only return what a fresh computation would.

Each entry is one file (written atomically) holding the features and the sha256 of their
bytes; a read checks the digest and the shape, and a damaged or foreign file is recomputed.
The cache lives in ``ucat.cache.cache_dir("text")``; deleting it only costs time.
"""

from __future__ import annotations

import hashlib
from typing import Sequence

import torch
from torch import nn

from . import cache, fingerprint, models
from .io import atomic_path

FORMAT = "ucat-text-features-v2"


def text_tower_items(model: nn.Module):
    """(name, tensor) of everything but the image tower and the logit scale/bias, in state-dict order."""
    for k, v in model.state_dict(keep_vars=False).items():
        if not k.startswith("visual.") and k not in ("logit_scale", "logit_bias"):
            yield k, v


def _text_tower_digest(model: nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in text_tower_items(model):
        t = v.detach().cpu().contiguous()
        h.update(f"{k}:{t.dtype}:{tuple(t.shape)}\n".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def key(model: nn.Module, arch: dict, prompts: Sequence[Sequence[str]], device: torch.device | str = "cpu") -> str:
    return fingerprint.key(
        "text-features", code=("ucat.textcache",), params={}, device=device,
        inputs={"text_tower": _text_tower_digest(model)},
        extra={"format": FORMAT, "arch": arch, "context_length": int(model.context_length),
               "prompts": [list(p) for p in prompts]})


def _payload_digest(feats: torch.Tensor) -> str:
    return hashlib.sha256(feats.contiguous().view(torch.uint8).numpy().tobytes()).hexdigest()


def _read(path, n_classes: int) -> torch.Tensor | None:
    """The stored features if the file is whole (digest and shape); None otherwise."""
    try:
        entry = torch.load(path, map_location="cpu", weights_only=True)
        feats = entry["features"]
        if (entry.get("format") == FORMAT and isinstance(feats, torch.Tensor) and feats.ndim == 2
                and feats.shape[0] == n_classes and entry.get("sha256") == _payload_digest(feats)):
            return feats
    except Exception:  # unreadable, truncated or foreign: recompute and replace it
        pass
    return None


def prompt_features(model: nn.Module, arch: dict, prompts: Sequence[Sequence[str]],
                    device: torch.device | str = "cpu", use_cache: bool = True) -> torch.Tensor:
    """``models.prompt_features``, read from the cache when these exact inputs were seen.

    ``use_cache=False`` computes them afresh (and stores the fresh result)."""
    path = cache.cache_dir("text") / f"{key(model, arch, prompts, device)}.pt"
    if use_cache and path.is_file():
        feats = _read(path, len(prompts))
        if feats is not None:
            cache.touch(path)
            return feats.to(device)
    feats = models.prompt_features(model, arch, prompts, device)
    stored = feats.detach().cpu().contiguous()
    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT, "features": stored, "sha256": _payload_digest(stored)}, tmp)
    return feats


def text_features(model: nn.Module, arch: dict, classnames: Sequence[str], templates: Sequence[str],
                  device: torch.device | str = "cpu", use_cache: bool = True) -> torch.Tensor:
    """``models.text_features`` through the cache: every template over every class name."""
    return prompt_features(model, arch, [[t.format(c) for t in templates] for c in classnames], device, use_cache)


def classifier(model: nn.Module, arch: dict, prompts: Sequence[Sequence[str]], device: torch.device | str = "cpu",
               use_cache: bool = True) -> models.ZeroShotClassifier:
    """``models.ZeroShotClassifier.from_prompts`` with the class features from the cache."""
    return models.ZeroShotClassifier.from_features(model, prompt_features(model, arch, prompts, device, use_cache),
                                                   device)
