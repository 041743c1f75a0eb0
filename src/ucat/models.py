"""open_clip backbones and the zero-shot classifier in pixel space.

Invariants
- ``ZeroShotClassifier`` takes images in [0, 1] at the model's resolution and normalises
  them inside, so attacks and their ε-balls live in pixel space, as in the paper.
- Class text features are computed once (the text tower is frozen) and stored as a
  buffer; the text tower is not even kept on the classifier.  Pipeline stages share them
  across jobs through a content-addressed cache (:mod:`ucat.textcache`, which builds on this
  module, never the other way round).
- Checkpoints written by :func:`save_checkpoint` record the architecture next to the
  weights and reload bit-exactly with :func:`load_checkpoint` (``weights_only=True``).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .errors import CheckpointError, ConfigError
from .io import atomic_path

CHECKPOINT_FORMAT = "ucat-clip-v1"


def demo_arch(demo: dict) -> dict:
    """The architecture record of the tiny demo CLIP (open_clip's ViT-B-32 config, shrunk)."""
    return {
        "name": "ViT-B-32",
        "overrides": {
            "embed_dim": demo["embed_dim"],
            "vision_cfg": {
                "image_size": demo["image_size"],
                "patch_size": demo["patch_size"],
                "width": demo["vision_width"],
                "layers": demo["vision_layers"],
                "head_width": 32,
            },
            "text_cfg": {
                "context_length": demo["context_length"],
                "vocab_size": 49408,  # keeps open_clip's bundled tokenizer usable offline
                "width": demo["text_width"],
                "heads": 4,
                "layers": demo["text_layers"],
            },
        },
    }


def create_clip(arch: dict, pretrained: str | None = None, cache_dir: str | None = None) -> nn.Module:
    """Build an open_clip CLIP from an architecture record ``{"name", "overrides"}``.

    ``pretrained`` is an open_clip tag (downloads through huggingface_hub) or a file.  Two optional
    keys serve backbones converted from other code bases (:mod:`ucat.slip`): ``preprocess`` (the
    image ``mean``/``std`` the model was trained with, read by ``ZeroShotClassifier``) and ``frozen``
    (names of parameters that never train: built with ``requires_grad`` off).
    """
    import open_clip

    name = arch["name"]
    if name not in open_clip.list_models():
        raise ConfigError(f"backbone.name: unknown open_clip architecture {name!r}")
    if pretrained == "openai" and "quickgelu" not in name.lower():
        # OpenAI weights were trained with QuickGELU; open_clip builds nn.GELU and only warns.
        raise ConfigError(f"backbone.name: OpenAI weights need the QuickGELU variant, use {name}-quickgelu")
    model = open_clip.create_model(
        name, pretrained=pretrained, cache_dir=cache_dir, force_preprocess_cfg=copy.deepcopy(arch.get("preprocess")),
        **copy.deepcopy(arch.get("overrides", {}))
    )
    for param in arch.get("frozen", []):
        model.get_parameter(param).requires_grad_(False)
    return model.eval()


def save_checkpoint(path: str | os.PathLike, model: nn.Module, arch: dict, meta: dict | None = None) -> None:
    """Write a CLIP and its architecture record atomically; the same model gives the same bytes."""
    payload = {
        "format": CHECKPOINT_FORMAT,
        "arch": arch,
        "meta": meta or {},
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        torch.save(payload, fh)  # a file object: torch names the archive "archive", not after the temp file


def read_checkpoint(path: str | os.PathLike) -> dict:
    """Load a checkpoint payload safely; a missing, truncated or foreign file is a CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        # mmap: the tensors are read on first use, not copied up front (private mapping: edits stay in memory)
        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # torch raises RuntimeError/EOFError/UnpicklingError on damage
        raise CheckpointError(f"{path}: unreadable or truncated checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a ucat checkpoint (expected format {CHECKPOINT_FORMAT!r})")
    return payload


class _RandomInitFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "No pretrained weights loaded" not in record.getMessage()


@contextlib.contextmanager
def quiet_random_init():
    """Hide open_clip's "No pretrained weights loaded … initialized randomly" (root logger) warning."""
    root, flt = logging.getLogger(), _RandomInitFilter()
    root.addFilter(flt)
    try:
        yield
    finally:
        root.removeFilter(flt)


def load_checkpoint(path: str | os.PathLike) -> tuple[nn.Module, dict, dict]:
    """Rebuild the CLIP stored by :func:`save_checkpoint`: returns ``(model, arch, meta)``."""
    payload = read_checkpoint(path)
    with quiet_random_init():  # the checkpoint's weights are loaded right below
        model = create_clip(payload["arch"], pretrained=None)
    try:
        model.load_state_dict(payload["state_dict"], strict=True, assign=True)  # no second copy of the weights
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not match architecture {payload['arch']['name']}: {exc}") from None
    return model.eval(), payload["arch"], payload["meta"]


def tokenize(model: nn.Module, arch: dict, texts: Sequence[str]) -> torch.Tensor:
    import open_clip

    tokenizer = open_clip.get_tokenizer(arch["name"], context_length=model.context_length)
    return tokenizer(list(texts))


@torch.no_grad()
def text_features(model: nn.Module, arch: dict, classnames: Sequence[str], templates: Sequence[str],
                  device: torch.device | str = "cpu", batch_size: int = 256) -> torch.Tensor:
    """Unit-norm class embeddings (C, D); with several templates, the normalised mean (CLIP's ensemble)."""
    return prompt_features(model, arch, [[t.format(c) for t in templates] for c in classnames], device, batch_size)


@torch.no_grad()
def prompt_features(model: nn.Module, arch: dict, prompts: Sequence[Sequence[str]],
                    device: torch.device | str = "cpu", batch_size: int = 256) -> torch.Tensor:
    """Unit-norm class embeddings (C, D) from ready prompts, one list per class (the normalised
    mean of its normalised prompt embeddings); see ``ucat.prompts.class_prompts``."""
    if not prompts or any(len(p) != len(prompts[0]) or not p for p in prompts):
        raise ConfigError("prompts: every class needs the same, positive number of prompts")
    model = model.to(device)
    flat = [p for per_class in prompts for p in per_class]
    tokens = tokenize(model, arch, flat)
    feats = torch.cat([model.encode_text(tokens[i:i + batch_size].to(device)).float()
                       for i in range(0, len(tokens), batch_size)])
    feats = F.normalize(feats, dim=-1).view(len(prompts), len(prompts[0]), -1).mean(1)
    return F.normalize(feats, dim=-1)


class ZeroShotClassifier(nn.Module):
    """Image tower + frozen class text features: pixels in [0, 1] -> logits.

    ``logits = logit_scale * cos(image, text_k)``; the logit scale is CLIP's learned one
    (exp of the stored log value, clamped to 100 as CLIP does) and is fixed, like the text tower.
    """

    def __init__(self, visual: nn.Module, class_features: torch.Tensor, logit_scale: float,
                 mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.visual = visual
        self.register_buffer("class_features", class_features.float().clone())
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))
        self.logit_scale = float(logit_scale)

    @classmethod
    def from_clip(cls, model: nn.Module, arch: dict, classnames: Sequence[str], templates: Sequence[str],
                  device: torch.device | str = "cpu") -> "ZeroShotClassifier":
        return cls.from_prompts(model, arch, [[t.format(c) for t in templates] for c in classnames], device)

    @classmethod
    def from_prompts(cls, model: nn.Module, arch: dict, prompts: Sequence[Sequence[str]],
                     device: torch.device | str = "cpu") -> "ZeroShotClassifier":
        """From ready prompts, one list per class (``ucat.prompts.class_prompts``); the pipeline's
        stages take the features from the shared cache instead (``ucat.textcache.classifier``)."""
        return cls.from_features(model, prompt_features(model, arch, prompts, device), device)

    @classmethod
    def from_features(cls, model: nn.Module, class_features: torch.Tensor,
                      device: torch.device | str = "cpu") -> "ZeroShotClassifier":
        """On a copy of ``model``'s image tower, with the given class features."""
        return cls.on_visual(model, copy.deepcopy(model.visual), class_features, device)

    @classmethod
    def on_visual(cls, model: nn.Module, visual: nn.Module, class_features: torch.Tensor,
                  device: torch.device | str = "cpu") -> "ZeroShotClassifier":
        """A classifier on ``visual`` as given (not copied: model selection scores the live weights),
        with ``model``'s normalisation and logit scale (CLIP's, clamped to 100)."""
        cfg = model.visual.preprocess_cfg
        scale = min(float(model.logit_scale.detach().exp()), 100.0)
        return cls(visual, class_features, scale, cfg["mean"], cfg["std"]).to(device)

    @property
    def num_classes(self) -> int:
        return self.class_features.shape[0]

    @property
    def image_size(self) -> int:
        size = self.visual.image_size
        return size[0] if isinstance(size, (tuple, list)) else int(size)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """Pixel-space images in [0, 1] -> the image tower's input (the model's mean/std)."""
        return (images - self.mean) / self.std

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Un-normalised image embeddings of pixel-space images (FARE's feature space)."""
        out = self.visual(self.normalize(images))
        return out[0] if isinstance(out, tuple) else out   # a tower that returns its tokens too (ucat.tga)

    def logits_from_embedding(self, emb: torch.Tensor) -> torch.Tensor:
        emb = emb if emb.dtype == torch.float64 else emb.float()   # float64 stays float64 (exactness tests)
        return self.logit_scale * F.normalize(emb, dim=-1) @ self.class_features.t()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.logits_from_embedding(self.embed(images))

    def frozen_copy(self) -> "ZeroShotClassifier":
        """A deep copy with no trainable parameters: the reference model of UCAT/PMG-AFT/FARE."""
        ref = copy.deepcopy(self).eval()
        ref.requires_grad_(False)
        return ref


def resolve_device(spec: str) -> torch.device:
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(spec)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"run.device: {spec} requested but no CUDA device is available")
    return device


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """bf16 autocast on CUDA by default; fp32 (no autocast) on CPU."""
    if precision == "fp32" or (precision == "auto" and device.type != "cuda"):
        return None
    return torch.bfloat16


def compile_wanted(setting: bool | str, device: torch.device) -> bool:
    """``run.compile``: true, false, or auto = on CUDA only (1.55x fine-tuning and 1.64x PGD measured on
    an H200, docs/performance.md; on a CPU compilation costs minutes and gains a few per cent)."""
    return setting is True or (setting == "auto" and device.type == "cuda")


def autocast(dtype: torch.dtype | None, device: torch.device):
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)
