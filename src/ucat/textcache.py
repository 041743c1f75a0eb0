"""Class text features computed once per (text tower, prompts), shared by every job.

The text tower is frozen: every method's checkpoint of a backbone carries the same text
weights, so the class features of a data set are the same for all methods and attacks.
Encoding ImageNet's 1000 prompts through ViT-B/32's text tower costs about a minute of CPU,
and the evaluation grid would pay it in every (method, data set) job.  Here they are stored
under a content address: the sha256 of the text tower's tensors, the architecture record
and the prompts, so a hit can only return features of exactly these weights and prompts.

The cache lives in ``$UCAT_CACHE/text`` (default ``.ucat/cache/text``); deleting it only
costs time.  Files are written atomically; a damaged one is recomputed.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from .io import atomic_path

FORMAT = "ucat-text-features-v1"


def cache_dir() -> Path:
    return Path(os.environ.get("UCAT_CACHE", ".ucat/cache")) / "text"


def text_tower_items(model: nn.Module):
    """(name, tensor) of everything but the image tower and the logit scale/bias, in state-dict order."""
    for k, v in model.state_dict(keep_vars=False).items():
        if not k.startswith("visual.") and k not in ("logit_scale", "logit_bias"):
            yield k, v


def key(model: nn.Module, arch: dict, prompts: Sequence[Sequence[str]]) -> str:
    h = hashlib.sha256()
    h.update(json.dumps({"format": FORMAT, "arch": arch, "context_length": int(model.context_length),
                         "prompts": [list(p) for p in prompts]}, sort_keys=True).encode())
    for k, v in text_tower_items(model):
        t = v.detach().cpu().contiguous()
        h.update(f"{k}:{t.dtype}:{tuple(t.shape)}\n".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def prompt_features(model: nn.Module, arch: dict, prompts: Sequence[Sequence[str]],
                    device: torch.device | str = "cpu") -> torch.Tensor:
    """``models.prompt_features``, read from the content-addressed cache when these exact inputs were seen."""
    from . import models

    path = cache_dir() / f"{key(model, arch, prompts)}.pt"
    if path.is_file():
        try:
            feats = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(feats, torch.Tensor) and feats.shape[0] == len(prompts):
                return feats.to(device)
        except Exception:  # damaged or foreign file: recompute and replace it
            pass
    feats = models.prompt_features(model, arch, prompts, device)
    with atomic_path(path) as tmp:
        torch.save(feats.detach().cpu(), tmp)
    return feats


def text_features(model: nn.Module, arch: dict, classnames: Sequence[str], templates: Sequence[str],
                  device: torch.device | str = "cpu") -> torch.Tensor:
    """``models.text_features`` through the cache: every template over every class name."""
    return prompt_features(model, arch, [[t.format(c) for t in templates] for c in classnames], device)
