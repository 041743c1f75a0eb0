"""The ``backbone`` stage: a local CLIP checkpoint to fine-tune and evaluate.

- ``backbone.source: open_clip`` downloads the named open_clip weights (huggingface_hub)
  and stores them, with their architecture record, as one local file.  An entry named
  ``SLIP-*`` instead reads SLIP's own checkpoint file and converts it (:mod:`ucat.slip`).
- ``backbone.source: demo`` builds a tiny CLIP from open_clip's own ViT config and
  pretrains it contrastively on the synthetic shapes world (:mod:`ucat.data.demo`).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F

from . import models, slip
from .data import demo
from .errors import unknown_choice
from .progress import progress as progress_bar


def warmup_cosine(warmup: int, total: int):
    """LR multiplier: linear warm-up over ``warmup`` steps, then cosine to 0 at ``total``
    (the official ``cosine_lr``: step s < warmup gives (s + 1) / warmup)."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        span = max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(step - warmup, span) / span))

    return factor


def contrastive_loss(img: torch.Tensor, txt: torch.Tensor, logit_scale: torch.Tensor, captions: list[str]) -> torch.Tensor:
    """Symmetric CLIP loss with soft targets: identical captions in a batch share the target mass."""
    img, txt = F.normalize(img, dim=-1), F.normalize(txt, dim=-1)
    logits = logit_scale.exp() * img @ txt.t()
    ids = {c: i for i, c in enumerate(dict.fromkeys(captions))}
    cid = torch.tensor([ids[c] for c in captions], device=img.device)
    same = (cid[:, None] == cid[None]).float()
    target = same / same.sum(1, keepdim=True)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))


def pretrain_demo(params: dict, device: torch.device, progress: bool = True):
    """Contrastive pretraining of the tiny demo CLIP; returns ``(model, arch, meta)``."""
    cfg = params["backbone"]["demo"]
    torch.manual_seed(params["backbone"]["seed"])
    arch = models.demo_arch(cfg)
    model = models.create_clip(arch).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(cfg["warmup_steps"], cfg["steps"]))
    g = torch.Generator().manual_seed(params["backbone"]["seed"] + 7)
    vocab = demo.caption_vocabulary()
    token_of = dict(zip(vocab, models.tokenize(model, arch, vocab)))
    losses = []
    bar = progress_bar(range(cfg["steps"]), desc="pretrain demo CLIP", disable=not progress, unit="step")
    for _ in bar:
        images, captions = demo.pretraining_batch(cfg["batch_size"], cfg["image_size"], g)
        tokens = torch.stack([token_of[c] for c in captions]).to(device)
        mean = torch.tensor(model.visual.preprocess_cfg["mean"], device=device).view(1, 3, 1, 1)
        std = torch.tensor(model.visual.preprocess_cfg["std"], device=device).view(1, 3, 1, 1)
        img = model.encode_image((images.to(device) - mean) / std)
        txt = model.encode_text(tokens)
        loss = contrastive_loss(img, txt, model.logit_scale, captions)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        losses.append(loss.item())
        bar.set_postfix(loss=f"{loss.item():.3f}")
    meta = {"source": "demo", "steps": cfg["steps"], "final_loss": sum(losses[-20:]) / len(losses[-20:]),
            "logit_scale": float(model.logit_scale.detach().exp())}  # no wall clock: outputs depend on inputs only
    return model.eval(), arch, meta


def entry(params: dict, backbone: str) -> dict:
    """The ``backbone.models`` entry of a backbone id (see :func:`ucat.paths.backbones`)."""
    from .paths import backbones

    ids = backbones(params)
    if backbone not in ids:
        raise unknown_choice("backbone", backbone, ids)
    return params["backbone"]["models"][ids.index(backbone)]


def download_open_clip(model_entry: dict, cache_dir: str | None = None):
    """Fetch open_clip weights by tag (or read a local file); returns ``(model, arch, meta)``."""
    arch = {"name": model_entry["name"], "overrides": {}}
    model = models.create_clip(arch, pretrained=model_entry["pretrained"], cache_dir=cache_dir)
    return model, arch, {"source": "open_clip", "pretrained": model_entry["pretrained"]}


def build(params: dict, backbone: str, out: str | Path, device: torch.device, progress: bool = True) -> dict:
    """Run the backbone stage for one backbone id and write ``out`` atomically; returns the metadata."""
    model_entry = entry(params, backbone)
    if params["backbone"]["source"] == "demo":
        model, arch, meta = pretrain_demo(params, device, progress)
    else:
        torch.manual_seed(params["backbone"]["seed"])  # pretrained: null means random weights: make them the seed's
        if slip.is_slip(model_entry["name"]):
            model, arch, meta = slip.load(model_entry, params["backbone"]["slip"])
        else:
            model, arch, meta = download_open_clip(model_entry)
    models.save_checkpoint(out, model, arch, meta)
    return meta
