"""The embedded offline demo world: coloured shapes on textured backgrounds, with captions.

Images are 32x32 RGB; each shows one of 6 shapes in one of 8 colours, at a random size
and position, on a dark random background with texture noise.  Of the 48 colour-shape
pairs, 10 never appear in pretraining; the zero-shot data sets are label sets CLIP was
never trained to classify:

- ``demo_shapes``  (6 classes, "circle", ...): shape only, colour varies — the hard set;
- ``demo_colours`` (8 classes, "red object", ...): colour only, shape varies;
- ``demo_pairs``   (10 classes, "red triangle", ...): the held-out compositions;
- ``demo_train``   (38 classes): the seen pairs, the fine-tuning set (TinyImageNet's role).

Rendering is vectorised torch code driven by an explicit ``torch.Generator``, so every set
is a deterministic function of its seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

COLOURS = {
    "red": (0.90, 0.15, 0.15),
    "green": (0.15, 0.80, 0.20),
    "blue": (0.20, 0.35, 0.95),
    "yellow": (0.95, 0.90, 0.15),
    "purple": (0.65, 0.25, 0.85),
    "orange": (1.00, 0.55, 0.10),
    "white": (0.95, 0.95, 0.95),
    "cyan": (0.15, 0.90, 0.90),
}
SHAPES = ("circle", "square", "triangle", "cross", "ring", "bar")
COLOUR_NAMES = tuple(COLOURS)
ALL_PAIRS = tuple((c, s) for c in COLOUR_NAMES for s in SHAPES)
# Ten compositions never shown in pretraining; every colour and every shape stays seen.
HELD_OUT_PAIRS = (
    ("red", "triangle"), ("green", "ring"), ("blue", "cross"), ("yellow", "circle"), ("purple", "bar"),
    ("orange", "square"), ("white", "triangle"), ("cyan", "ring"), ("red", "bar"), ("blue", "circle"),
)
SEEN_PAIRS = tuple(p for p in ALL_PAIRS if p not in HELD_OUT_PAIRS)

PAIR_TEMPLATES = ("a photo of a {} {}.", "This is a photo of a {} {}", "a {} {}", "a picture of a {} {}.")
SHAPE_TEMPLATES = ("a photo of a {}.", "This is a photo of a {}")
COLOUR_TEMPLATES = ("a photo of a {} object.", "This is a photo of a {} object")


@dataclass(frozen=True)
class DemoSet:
    name: str
    classnames: tuple[str, ...]
    pairs: tuple[tuple[tuple[str, str], ...], ...]  # for each class, the pairs it may render
    seed_offset: int


def _sets() -> dict[str, DemoSet]:
    shapes = DemoSet("demo_shapes", SHAPES,
                     tuple(tuple((c, s) for c in COLOUR_NAMES) for s in SHAPES), 101)
    colours = DemoSet("demo_colours", tuple(f"{c} object" for c in COLOUR_NAMES),
                      tuple(tuple((c, s) for s in SHAPES) for c in COLOUR_NAMES), 202)
    pairs = DemoSet("demo_pairs", tuple(f"{c} {s}" for c, s in HELD_OUT_PAIRS),
                    tuple(((c, s),) for c, s in HELD_OUT_PAIRS), 303)
    train = DemoSet("demo_train", tuple(f"{c} {s}" for c, s in SEEN_PAIRS),
                    tuple(((c, s),) for c, s in SEEN_PAIRS), 404)
    return {d.name: d for d in (shapes, colours, pairs, train)}


DEMO_SETS = _sets()


def render(colour_idx: torch.Tensor, shape_idx: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """Render one image per (colour, shape) index pair: float tensor (N, 3, size, size) in [0, 1]."""
    n = len(colour_idx)
    g = generator

    def uniform(lo, hi, *shape):
        return lo + (hi - lo) * torch.rand(*(shape or (n,)), generator=g)

    coords = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    radius = uniform(0.2, 0.34)
    cx, cy = uniform(0.3, 0.7), uniform(0.3, 0.7)
    theta = uniform(0, 2 * math.pi)
    u0 = (xx[None] - cx[:, None, None]) / radius[:, None, None]
    v0 = (yy[None] - cy[:, None, None]) / radius[:, None, None]
    # rotate squares, crosses and bars; circles/rings are invariant; triangles stay upright
    rot = torch.where(shape_idx == SHAPES.index("triangle"), torch.zeros_like(theta), theta)
    cos, sin = rot.cos()[:, None, None], rot.sin()[:, None, None]
    u, v = cos * u0 + sin * v0, -sin * u0 + cos * v0
    r = torch.sqrt(u0 ** 2 + v0 ** 2)
    masks = torch.stack([
        r <= 1.0,                                                          # circle
        torch.maximum(u.abs(), v.abs()) <= 0.8,                            # square
        (v0 <= 0.75) & (v0 >= -0.85) & (u0.abs() <= (v0 + 0.85) * 0.62),   # triangle
        ((u.abs() <= 0.3) & (v.abs() <= 1.0)) | ((v.abs() <= 0.3) & (u.abs() <= 1.0)),  # cross
        (r <= 1.0) & (r >= 0.58),                                          # ring
        (u.abs() <= 1.05) & (v.abs() <= 0.28),                             # bar
    ], dim=1)  # (N, 6, H, W)
    mask = masks[torch.arange(n), shape_idx].float()[:, None]
    palette = torch.tensor([COLOURS[c] for c in COLOUR_NAMES])
    fg = (palette[colour_idx] + uniform(-0.08, 0.08, n, 3)).clamp(0, 1)[:, :, None, None]
    bg = uniform(0.0, 0.3, n, 3)[:, :, None, None]
    freq = uniform(2, 6, n, 1, 1, 1)
    phase = uniform(0, 2 * math.pi, n, 1, 1, 1)
    texture = 0.06 * torch.sin(2 * math.pi * freq * (xx + 0.5 * yy)[None, None] + phase)
    background = (bg + texture + 0.05 * torch.randn(n, 3, size, size, generator=g)).clamp(0, 1)
    shade = 1 + 0.05 * torch.randn(n, 1, size, size, generator=g)
    return (mask * (fg * shade) + (1 - mask) * background).clamp(0, 1)


def make_set(name: str, per_class: int, seed: int, size: int = 32,
             stream: int = 0) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """A labelled demo set: (uint8 images (N, 3, size, size), int64 labels (N,), classnames).

    ``stream`` selects an independent random stream of the same distribution: the
    held-out split of ``demo_train`` (``ucat.data.heldout``) is drawn from stream 500.
    """
    spec = DEMO_SETS[name]
    g = torch.Generator().manual_seed(seed * 1000 + spec.seed_offset + stream)
    labels = torch.arange(len(spec.classnames)).repeat_interleave(per_class)
    colour_idx = torch.empty_like(labels)
    shape_idx = torch.empty_like(labels)
    for k, options in enumerate(spec.pairs):
        rows = (labels == k).nonzero().squeeze(1)
        pick = torch.randint(len(options), (len(rows),), generator=g)
        colour_idx[rows] = torch.tensor([COLOUR_NAMES.index(options[i][0]) for i in pick.tolist()])
        shape_idx[rows] = torch.tensor([SHAPES.index(options[i][1]) for i in pick.tolist()])
    images = render(colour_idx, shape_idx, size, g)
    return (images * 255).round().to(torch.uint8), labels, list(spec.classnames)


def caption_vocabulary() -> list[str]:
    """Every caption pretraining may use (seen pairs only, plus shape- and colour-only captions)."""
    caps = [t.format(c, s) for c, s in SEEN_PAIRS for t in PAIR_TEMPLATES]
    caps += [t.format(s) for s in SHAPES for t in SHAPE_TEMPLATES]
    caps += [t.format(c) for c in COLOUR_NAMES for t in COLOUR_TEMPLATES]
    return caps


def pretraining_batch(batch_size: int, size: int, generator: torch.Generator,
                      partial_caption_rate: float = 0.3) -> tuple[torch.Tensor, list[str]]:
    """Rendered images of seen pairs with captions; a fraction name only the shape or the colour."""
    g = generator
    pair = torch.randint(len(SEEN_PAIRS), (batch_size,), generator=g)
    colour_idx = torch.tensor([COLOUR_NAMES.index(SEEN_PAIRS[i][0]) for i in pair.tolist()])
    shape_idx = torch.tensor([SHAPES.index(SEEN_PAIRS[i][1]) for i in pair.tolist()])
    images = render(colour_idx, shape_idx, size, g)
    kind = torch.rand(batch_size, generator=g)
    tmpl = torch.randint(1 << 30, (batch_size,), generator=g)
    captions = []
    for i in range(batch_size):
        c, s = COLOUR_NAMES[colour_idx[i]], SHAPES[shape_idx[i]]
        if kind[i] < partial_caption_rate / 2:
            captions.append(SHAPE_TEMPLATES[tmpl[i] % len(SHAPE_TEMPLATES)].format(s))
        elif kind[i] < partial_caption_rate:
            captions.append(COLOUR_TEMPLATES[tmpl[i] % len(COLOUR_TEMPLATES)].format(c))
        else:
            captions.append(PAIR_TEMPLATES[tmpl[i] % len(PAIR_TEMPLATES)].format(c, s))
    return images, captions
