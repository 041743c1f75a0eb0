"""SLIP backbones (facebookresearch/SLIP) read from SLIP's own checkpoint file, as open_clip CLIPs.

SLIP's ViT-B/16 (SLIP ``models.py``: ``SLIP_VITB16``) is a timm ``vit_base_patch16_224`` image
tower with its classifier removed (class-token pooling after the final norm), an
``image_projection`` matrix applied outside that tower, and CLIP's text transformer (QuickGELU,
causal mask, pooling at the end-of-text token, ``text_projection``) over CLIP's BPE vocabulary at
context length 77.  open_clip builds the same network from an architecture record (a timm vision
tower with a bias-free linear head, CLIP's text tower), so SLIP's weights are renamed into it once,
at the backbone stage, and every later stage (checkpoints, text cache, attacks, fine-tuning of
``visual``) runs unchanged.  SLIP's SimCLR head (``image_mlp``) plays no part in zero-shot
classification and is dropped.

How the official UCAT code (``slip-ucat.py``) uses SLIP, and where each choice lives here:

- fixed logit scale 100 (slip-ucat.py:385, 513), not the checkpoint's learned one: the converted
  model's ``logit_scale`` is ln 100, so ``ZeroShotClassifier`` uses exactly 100;
- images normalised with OpenAI CLIP's mean/std (``clip_img_preprocessing``, models/model.py:8-21),
  where SLIP's own evaluation uses ImageNet's (SLIP eval_zeroshot.py:72-77):
  ``backbone.slip.normalize`` (``clip`` | ``imagenet``);
- SGD over ``model.visual.parameters()`` (slip-ucat.py:214), which in SLIP does not hold
  ``image_projection`` (open_clip's ``visual`` does): ``backbone.slip.train_projection: false``
  keeps it frozen.
"""

from __future__ import annotations

import argparse
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from . import models
from .errors import CheckpointError, unknown_choice

PREFIX = "SLIP-"                # backbone names that mean "SLIP's own checkpoint file"
LOGIT_SCALE = 100.0             # slip-ucat.py:385, 513
DDP_PREFIX = "module."          # SLIP saves the DistributedDataParallel state dict as is (main.py:244-251)
SSL_HEAD = "image_mlp."         # SLIP's SimCLR projection head: not part of the zero-shot model
IMAGE_PROJECTION = "visual.head.proj.weight"   # open_clip's name for SLIP's (transposed) image_projection
CHECKPOINT_DOC = "docs/backbones.md"

# image normalisation (backbone.slip.normalize)
NORMALIZE = {
    "imagenet": {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)},   # SLIP eval_zeroshot.py:76-77
    "clip": {"mean": (0.48145466, 0.4578275, 0.40821073),                        # UCAT models/model.py:8-9
             "std": (0.26862954, 0.26130258, 0.27577711)},
}


@dataclass(frozen=True)
class SlipArchitecture:
    """One SLIP model as SLIP's ``models.py`` defines it."""

    slip_model: str          # its constructor's name, stored in the checkpoint's ``args.model``
    timm_model: str          # the image tower: timm.create_model(timm_model, num_classes=0)
    image_size: int
    embed_dim: int
    context_length: int = 77
    vocab_size: int = 49408
    text_width: int = 512
    text_heads: int = 8
    text_layers: int = 12


ARCHITECTURES = {
    "SLIP-ViT-B-16": SlipArchitecture("SLIP_VITB16", "vit_base_patch16_224", 224, 512),   # SLIP models.py:303-308
}


def is_slip(name: str) -> bool:
    return name.startswith(PREFIX)


def architecture(name: str) -> SlipArchitecture:
    if name not in ARCHITECTURES:
        raise unknown_choice("backbone.models: SLIP architecture", name, ARCHITECTURES)
    return ARCHITECTURES[name]


def arch_record(spec: SlipArchitecture, slip_cfg: dict) -> dict:
    """The open_clip architecture record of a SLIP model (``models.create_clip``).

    ``ViT-B-16`` only names a registered open_clip config; every field it holds is replaced here.
    """
    return {
        "name": "ViT-B-16",
        "overrides": {
            "embed_dim": spec.embed_dim,
            "quick_gelu": True,    # the text tower's activation (SLIP models.py:40); timm's tower keeps its GELU
            "vision_cfg": {
                "timm_model_name": spec.timm_model,
                "timm_model_pretrained": False,
                "timm_pool": "",        # the timm model's own pooling: the class token after the final norm
                "timm_proj": "linear",  # SLIP: x @ image_projection, no bias (models.py:132)
                "timm_proj_bias": False,
                "image_size": spec.image_size,
            },
            "text_cfg": {
                "context_length": spec.context_length,
                "vocab_size": spec.vocab_size,
                "width": spec.text_width,
                "heads": spec.text_heads,
                "layers": spec.text_layers,
            },
        },
        "preprocess": {k: list(v) for k, v in NORMALIZE[slip_cfg["normalize"]].items()},
        "frozen": [] if slip_cfg["train_projection"] else [IMAGE_PROJECTION],
    }


def _one_line(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 200 else text[:197] + "..."


def read(path: str | Path, spec: SlipArchitecture) -> tuple[dict, dict]:
    """SLIP's checkpoint (``{'state_dict': {'module.<name>': tensor}, 'args': Namespace, 'epoch': int, ...}``,
    SLIP main.py:244-251) -> ``(state dict without the DDP prefix, info)``.

    Loaded with ``weights_only`` (only ``argparse.Namespace``, SLIP's ``args``, is allowed besides
    tensors and plain containers) and memory-mapped, so the optimiser state a training checkpoint
    may also hold is never read into memory.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: SLIP checkpoint not found (how to get it: {CHECKPOINT_DOC})")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except Exception as exc:  # RuntimeError / EOFError / UnpicklingError on damage
        raise CheckpointError(f"{path}: unreadable or truncated SLIP checkpoint ({type(exc).__name__}: "
                              f"{_one_line(exc)})") from None
    state = ckpt.get("state_dict") if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: not a SLIP checkpoint (expected a dict whose 'state_dict' maps names to "
                              "tensors, as SLIP's main.py saves it)")
    stored = getattr(ckpt.get("args"), "model", None)
    if stored is not None and stored != spec.slip_model:
        raise CheckpointError(f"{path}: holds SLIP's {stored}, not {spec.slip_model}")
    info = {"slip_model": stored, "epoch": ckpt.get("epoch")}
    return {k.removeprefix(DDP_PREFIX): v for k, v in state.items()}, info


def _slip_name(key: str) -> str:
    """SLIP's name of an open_clip CLIP parameter: the timm tower sits at ``visual`` in SLIP, at
    ``visual.trunk`` in open_clip; the projection is SLIP's top-level ``image_projection``."""
    if key == IMAGE_PROJECTION:
        return "image_projection"
    if key.startswith("visual.trunk."):
        return "visual." + key.removeprefix("visual.trunk.")
    return key


def convert(state: dict, model: nn.Module, path: str | Path) -> dict:
    """SLIP's state dict -> ``model``'s (an open_clip CLIP from :func:`arch_record`).

    Every parameter must be present with SLIP's shape; a missing, misshapen or unknown key is a
    one-line CheckpointError naming the first few.  SLIP's learned logit scale is replaced by ln 100.
    """
    target = model.state_dict()
    expected = {}
    for key, value in target.items():
        shape = tuple(value.shape)
        expected[_slip_name(key)] = (key, shape[::-1] if key == IMAGE_PROJECTION else shape)
    missing = [k for k in expected if k not in state]
    misshapen = [f"{k} {tuple(state[k].shape)} (needs {shape})" for k, (_, shape) in expected.items()
                 if k in state and tuple(state[k].shape) != shape]
    unknown = [k for k in state if k not in expected and not k.startswith(SSL_HEAD)]
    problems = [f"{len(keys)} {what} key(s): {', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''}"
                for what, keys in (("missing", missing), ("misshapen", misshapen), ("unexpected", unknown)) if keys]
    if problems:
        raise CheckpointError(f"{path}: not SLIP's layout for this model: {'; '.join(problems)}")
    out = {}
    for name, (key, _) in expected.items():
        tensor = state[name].to(torch.float32)    # the official code runs SLIP in fp32 (slip-ucat.py:195)
        out[key] = tensor.t().contiguous() if key == IMAGE_PROJECTION else tensor
    out["logit_scale"] = torch.tensor(math.log(LOGIT_SCALE))
    return out


def load(model_entry: dict, slip_cfg: dict) -> tuple[nn.Module, dict, dict]:
    """The ``backbone`` stage for a SLIP entry: ``(model, arch, meta)``.

    ``pretrained`` is SLIP's checkpoint file; null gives random weights (the caller seeds them),
    as for open_clip entries.
    """
    from .data.integrity import sha256

    spec = architecture(model_entry["name"])
    arch = arch_record(spec, slip_cfg)
    path = model_entry["pretrained"]
    meta = {"source": "slip", "pretrained": path, "logit_scale": LOGIT_SCALE}
    if path is None:
        model = models.create_clip(arch)
    else:
        state, info = read(path, spec)
        with models.quiet_random_init():  # SLIP's weights replace them right below
            model = models.create_clip(arch)
        model.load_state_dict(convert(state, model, path), strict=True, assign=True)
        meta.update(info, sha256=sha256(path), checkpoint_logit_scale=float(state["logit_scale"].float().exp()))
    with torch.no_grad():
        model.logit_scale.fill_(math.log(LOGIT_SCALE))
    return model.eval(), arch, meta
