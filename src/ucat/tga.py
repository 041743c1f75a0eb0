"""Text-guided attention maps of TGA-ZSR and Comp-TGA (Yu, Zhang, Xu; NeurIPS 2024, TPAMI 2026).

Their public code (github.com/zhyblue424/TGA-ZSR, ``attention_map.py``) forms the map of an
image under a text feature ``t`` in closed form from the image tower's output tokens, with
``--atten_methods text`` (the default of both scripts and the setting of every published row):

1. ``Z`` = all 1 + N output tokens after ``ln_post`` and the projection ``proj`` (B, 1+N, D),
   the class token first (its modified ``VisionTransformer.forward`` returns them all);
2. ``Z / ‖Z‖`` with the norm taken over the **token** axis (``norm(dim=1)`` of the (B, 1+N, D)
   tensor, attention_map.py:8): each channel is scaled to unit length across the tokens, the
   class token included; no token is normalised on its own;
3. ``s_n = <Ẑ_n, t>`` for the N patch tokens, then min-max normalised over the patches (:12-13);
4. the (gh, gw) grid upsampled bilinearly (``align_corners=False``) to the input size (:15-19).

Comp-TGA (attention_map.py:32-62) builds the same map for the class prompt and for its
reversed, non-class prompt ("This is not a photo of a {}", Comp-TGA.py:235) and fuses them as
``A(t_class) · (1 − A(t_not))``.  Its upsampling is ``transforms.Resize(antialias=True)``,
which for an enlargement equals plain bilinear interpolation (checked to 2e-16 in the tests).

These maps are a similarity closed form, not Grad-CAM, so they are written here directly;
a Grad-CAM library (``grad-cam`` on PyPI) would not fit: it returns NumPy arrays, and the loss
needs gradients through the maps.  The public code's modified ``pytorch_grad_cam`` serves only
``--atten_methods visual``, whose maps are NumPy arrays too (attention_map.py:25-30): autograd
sees constants there, so that variant's attention terms give the weights no gradient.  It is not
offered (``attention: text`` only; docs/api.md).

The tokens come from open_clip's own ``output_tokens`` switch (:func:`prepare` turns it on for
the TGA methods' classifiers only), so one forward pass gives the embedding and the tokens and a
compiled image tower stays compiled; other methods' forwards are unchanged.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from .errors import ConfigError

# method -> whether its map is Comp-TGA's complementary one
METHODS = {"tga_zsr": False, "comp_tga": True}


def prepare(model, negative_features: torch.Tensor | None = None):
    """Make a ``ZeroShotClassifier`` ready for a TGA step (before ``frozen_copy`` and compilation).

    Its image tower returns ``(embedding, tokens)`` from now on (``ZeroShotClassifier.embed``
    keeps returning the embedding); ``negative_features`` (C, D), Comp-TGA's unit-norm features
    of the non-class prompts, are kept as the buffer ``negative_features``.
    """
    visual = model.visual
    if (getattr(visual, "pool_type", None) != "tok" or getattr(visual, "attn_pool", None) is not None
            or getattr(visual, "final_ln_after_pool", True) or getattr(visual, "proj", None) is None):
        raise ConfigError("backbone: TGA-ZSR/Comp-TGA attention maps need an open_clip ViT with a class token, "
                          "ln_post on every token and a projection (pool_type 'tok', no attentional pooling)")
    visual.output_tokens = True
    if negative_features is not None:
        if negative_features.shape != model.class_features.shape:
            raise ConfigError(f"comp_tga: {tuple(negative_features.shape)} non-class text features for "
                              f"{tuple(model.class_features.shape)} class features")
        model.register_buffer("negative_features", negative_features.detach().float().to(model.class_features.device))
    return model


def negative_text_features(clip_model, arch: dict, params: dict, classnames: Sequence[str], device,
                           use_cache: bool = True) -> torch.Tensor:
    """Comp-TGA's non-class prompt features for the fine-tuning set (text cache, as the class features)."""
    from . import prompts
    from .textcache import prompt_features

    texts = prompts.template_prompts(params["data"]["finetune"], params, params["comp_tga"]["negative_template"],
                                     classnames)
    return prompt_features(clip_model, arch, texts, device, use_cache)


def embed_with_tokens(model, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One pass: the image embeddings (B, D) and all projected output tokens (B, 1+N, D), class token first."""
    out = model.visual(model.normalize(images))
    if not isinstance(out, tuple):
        raise ConfigError("tga: the classifier's image tower does not return its tokens; call ucat.tga.prepare first")
    pooled, patches = out
    return pooled, torch.cat([pooled.unsqueeze(1), patches @ model.visual.proj], dim=1)


def text_attention(tokens: torch.Tensor, text: torch.Tensor, grid: Sequence[int], size: Sequence[int]) -> torch.Tensor:
    """TGA's text-guided attention map, flattened to (B, H·W), values in [0, 1].

    ``tokens`` (B, 1+N, D) from :func:`embed_with_tokens`; ``text`` (B, D): each image's text
    feature (any positive scale: the min-max step removes it).  Computed in float32 at least,
    outside autocast (a bf16 min-max over 49 scores would be coarse).
    """
    with torch.autocast(tokens.device.type, enabled=False):
        wide = torch.float64 if tokens.dtype == torch.float64 else torch.float32
        z = tokens.to(wide)
        z = z / torch.linalg.vector_norm(z, dim=1, keepdim=True)   # per channel, across the tokens
        scores = torch.einsum("bnd,bd->bn", z[:, 1:], text.to(wide))
        if scores.shape[1] != grid[0] * grid[1]:
            raise ConfigError(f"tga: {scores.shape[1]} patch tokens for a {grid[0]}x{grid[1]} grid")
        lo = scores.amin(dim=1, keepdim=True)
        hi = scores.amax(dim=1, keepdim=True)
        scores = (scores - lo) / (hi - lo)
        maps = F.interpolate(scores.view(-1, 1, *grid), size=tuple(size), mode="bilinear", align_corners=False)
    return maps.flatten(1)


def attention_maps(model, tokens: torch.Tensor, labels: torch.Tensor, complementary: bool) -> torch.Tensor:
    """The maps of a batch under each image's class prompt; Comp-TGA's fused map when ``complementary``."""
    grid, size = model.visual.grid_size, model.visual.image_size
    maps = text_attention(tokens, model.class_features[labels], grid, size)
    if complementary:
        if not hasattr(model, "negative_features"):
            raise ConfigError("comp_tga: the classifier has no non-class text features; "
                              "call ucat.tga.prepare(model, negative_features)")
        maps = maps * (1 - text_attention(tokens, model.negative_features[labels], grid, size))
    return maps
