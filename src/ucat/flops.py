"""FLOPs of the image tower's passes and of each pipeline step, counted from its configuration.

Why: the cost plan (:mod:`ucat.cost`) and the workflow's job priorities need FLOPs without running
a model.  Counted as :func:`ucat.bench.count_flops` counts them (2 per multiply-add of the matmuls,
the patch convolution and attention; an attention backward 2.5 forwards, the counter's convention
with the scores recomputed; elementwise work not counted), and equal to it exactly
(``tests/test_cost.py``).  Torch-free: the architecture comes from open_clip's JSON model config.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError

# ----------------------------------------------------------------------------- architecture


@dataclass(frozen=True)
class Tower:
    """What decides an open_clip ViT image tower's FLOPs."""

    image_size: int
    patch_size: int
    width: int
    layers: int
    embed_dim: int            # output of the projection
    mlp_width: int
    proj_trainable: bool = True   # SLIP's projection stays frozen (slip.train_projection: false)

    @property
    def patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    @property
    def tokens(self) -> int:
        return self.patches + 1       # the class token


@dataclass(frozen=True)
class TextTower:
    context_length: int
    width: int
    layers: int
    embed_dim: int
    mlp_width: int


# SLIP's ViT-B/16 is timm's vit_base_patch16_224 (ucat.slip): open_clip's ViT-B-16 vision config
SLIP_TOWERS = {"SLIP-ViT-B-16": "ViT-B-16"}


def _open_clip_config(name: str) -> dict:
    """open_clip's JSON model config, read from its package folder without importing it (no torch)."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("cost plan: open_clip is not installed (its model configs give the architecture)")
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "model_configs" / f"{name}.json"
        if path.is_file():
            return json.loads(path.read_text())
    raise ConfigError(f"backbone.models: no open_clip model config {name!r} for the cost plan")


def _tower_from_config(cfg: dict, proj_trainable: bool = True) -> Tower:
    vision = cfg["vision_cfg"]
    unsupported = sorted(k for k in ("timm_model_name", "attentional_pool", "attn_pooler_queries") if vision.get(k))
    if unsupported or isinstance(vision["layers"], (list, tuple)):
        raise ConfigError(f"cost plan: no FLOP formula for this image tower ({', '.join(unsupported) or 'ResNet'})")
    width = vision["width"]
    size = vision["image_size"]
    size = size[0] if isinstance(size, (list, tuple)) else size
    return Tower(size, vision["patch_size"], width, vision["layers"], cfg["embed_dim"],
                 int(width * vision.get("mlp_ratio", 4.0)), proj_trainable)


def open_clip_tower(name: str) -> Tower:
    """The image tower of an open_clip architecture name (e.g. ``ViT-B-32-quickgelu``)."""
    return _tower_from_config(_open_clip_config(name))


def tower(params: dict, backbone: str) -> Tower:
    """The image tower of a ``backbone.models`` entry (``demo``: the ``backbone.demo`` shape)."""
    bb = params["backbone"]
    if bb["source"] == "demo":
        d = bb["demo"]
        return Tower(d["image_size"], d["patch_size"], d["vision_width"], d["vision_layers"], d["embed_dim"],
                     4 * d["vision_width"])
    if backbone in SLIP_TOWERS:
        return _tower_from_config(_open_clip_config(SLIP_TOWERS[backbone]), bb["slip"]["train_projection"])
    if backbone.startswith("SLIP-"):
        raise ConfigError(f"backbone.models: no cost formula for {backbone!r}; known SLIP towers: "
                          f"{', '.join(SLIP_TOWERS)}")
    return open_clip_tower(backbone)


def demo_text_tower(params: dict) -> TextTower:
    d = params["backbone"]["demo"]
    return TextTower(d["context_length"], d["text_width"], d["text_layers"], d["embed_dim"], 4 * d["text_width"])


# ----------------------------------------------------------------------------- FLOPs of one image


@dataclass(frozen=True)
class Parts:
    """Forward FLOPs of one image, by kind of operation (their backward costs differ)."""

    patch: int       # the patch-embedding convolution
    linear: int      # every block's QKV, output and MLP matmuls
    attention: int   # every block's QK^T and AV products
    attention_back: int   # their backward as the counter has it: scores recomputed, then 4 products (2.5x)
    proj: int        # the projection of the class token
    head: int        # cosine logits against the class text features

    @classmethod
    def of(cls, t: Tower, classes: int) -> "Parts":
        n, w = t.tokens, t.width
        return cls(patch=2 * t.patches * 3 * t.patch_size ** 2 * w,
                   linear=t.layers * 2 * n * (4 * w * w + 2 * w * t.mlp_width),
                   attention=t.layers * 4 * n * n * w,
                   attention_back=t.layers * 10 * n * n * w,
                   proj=2 * w * t.embed_dim,
                   head=2 * t.embed_dim * classes)


def forward(t: Tower, classes: int, head: bool = True) -> int:
    p = Parts.of(t, classes)
    return p.patch + p.linear + p.attention + p.proj + (p.head if head else 0)


def attack_step(t: Tower, classes: int, head: bool = True) -> int:
    """Forward + backward to the input only (weights frozen): every matmul once more, attention 2.5 times."""
    p = Parts.of(t, classes)
    return forward(t, classes, head) + p.patch + p.linear + p.attention_back + p.proj + (p.head if head else 0)


def train_pass(t: Tower, classes: int, head: bool = True) -> int:
    """Forward + backward with weight gradients, input not differentiated: the patch convolution's
    weight gradient only, the blocks' input and weight gradients, the head's input gradient only
    (the class features are a fixed buffer)."""
    p = Parts.of(t, classes)
    back = p.patch + 2 * p.linear + p.attention_back + (2 if t.proj_trainable else 1) * p.proj
    return forward(t, classes, head) + back + (p.head if head else 0)


def _tga_extra(t: Tower, maps: int, trained: bool) -> int:
    """TGA's token projection (``patches @ proj``) and ``maps`` text-attention products per image;
    with backward when ``trained`` (projection: input and weight gradients; products: the tokens' only)."""
    proj = 2 * t.patches * t.width * t.embed_dim
    dots = maps * 2 * t.patches * t.embed_dim
    if not trained:
        return proj + dots
    return proj * (3 if t.proj_trainable else 2) + 2 * dots


def method_step_flops(method: str, params: dict, t: Tower, classes: int) -> int:
    """FLOPs per image of one fine-tuning step of ``method``, pass for pass as ``train.method_step``."""
    from .methods import get

    if not get(method).finetuned:
        return 0
    if method == "fare":                        # embedding space: no head, except the logged adversarial logits
        fare = params["fare"]
        return (forward(t, classes, head=False) + fare["steps"] * attack_step(t, classes, head=False)
                + train_pass(t, classes, head=False) + Parts.of(t, classes).head)
    atk = params["pmg_aft"]["attack"] if method == "pmg_aft" and params["pmg_aft"].get("attack") \
        else params["finetune"]["attack"]
    attack = atk["steps"] * attack_step(t, classes)
    if method in ("tga_zsr", "comp_tga"):       # one trained pass over [x_adv, x], logits of x_adv; reference on x
        maps = 2 if method == "comp_tga" else 1
        head = Parts.of(t, classes).head
        trained = 2 * (train_pass(t, classes, head=False) + _tga_extra(t, maps, True)) + 2 * head
        return attack + trained + forward(t, classes, head=False) + _tga_extra(t, maps, False)
    if method == "tecoa":
        return attack + train_pass(t, classes)
    if method == "pmg_aft":                     # trained pass over [x_adv, x], reference on x_adv
        return attack + 2 * train_pass(t, classes) + forward(t, classes)
    return attack + train_pass(t, classes) + forward(t, classes)   # UCAT and the ablations: reference on x


def pretrain_step_flops(params: dict) -> int:
    """FLOPs per image of the demo CLIP's contrastive pretraining step (``backbone.pretrain_demo``):
    both towers trained, and the batch's image-text similarity matrix (forward and both gradients)."""
    t, x = tower(params, "demo"), demo_text_tower(params)
    image = train_pass(t, 0, head=False)
    n, w = x.context_length, x.width
    linear = x.layers * 2 * n * (4 * w * w + 2 * w * x.mlp_width) + 2 * w * x.embed_dim
    text = 3 * linear + x.layers * (4 + 10) * n * n * w           # attention: forward, backward 2.5x
    batch = params["backbone"]["demo"]["batch_size"]
    return image + text + 3 * 2 * batch * t.embed_dim


# ----------------------------------------------------------------------------- attacks


@dataclass(frozen=True)
class Accuracy:
    clean: float     # fraction correct on clean images: AutoAttack's APGD-CE attacks these
    robust: float    # fraction APGD-CE leaves correct (PGD's accuracy stands for it): APGD-DLR attacks these
    source: str


def attack_flops(attack: str, ev: dict, t: Tower, classes: int, acc: Accuracy, multilabel: bool = False) -> float:
    """FLOPs per image of one evaluation cell: the attack (settings from the ``evaluate`` section ``ev``;
    ε changes no count, only ``acc``), then the scoring forward."""
    fwd, step = forward(t, classes), attack_step(t, classes)
    if attack == "clean":
        return fwd
    if attack in ("pgd", "cw"):
        return ev[attack]["steps"] * step + fwd
    if multilabel:
        raise ConfigError(f"attack {attack!r} is not defined for multi-label data sets")
    if attack == "autoattack":
        # attacks.autoattack: a forward finds the correct points; per loss, APGD's own clean forward, its
        # n_iter + 1 gradient steps, and a forward to see which it fooled, on the points still correct
        apgd = 2 * fwd + (ev["autoattack"]["steps"] + 1) * step
        attacked = acc.clean + (acc.robust if classes >= 3 else 0.0)
        return fwd + attacked * apgd + fwd
    if attack in ("caa", "a3"):
        # early-stopped PGD (attacks_extra): a sample wrong from the start takes one step, one still
        # correct at the end every step, and one fooled on the way is counted at half the steps
        cfg = ev[attack]
        steps = cfg["steps"]
        per_start = (1 - acc.clean) + acc.robust * steps + max(acc.clean - acc.robust, 0) * (steps + 1) / 2
        restarts = cfg.get("restarts", 1)
        extra = (restarts + 1) * fwd if restarts > 1 else 0
        return restarts * per_start * step + extra + fwd
    raise ConfigError(f"attack: unknown value {attack!r}")
