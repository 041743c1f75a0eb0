"""Evaluation preprocessing for the real data sets.

CLIP's own preprocessing (bicubic resize of the short side, centre crop, normalisation)
minus the normalisation: pixel values stay in [0, 1] because the classifier normalises
inside the model, which is what the attacks need (their epsilon ball and clamping live in
pixel space).
"""

from __future__ import annotations

from PIL import Image
from torchvision import transforms as T


def to_rgb(image: Image.Image) -> Image.Image:
    """Grayscale, palette, CMYK or RGBA images -> 3-channel RGB (a no-op for RGB)."""
    return image if image.mode == "RGB" else image.convert("RGB")


def eval_transform(image_size: int) -> T.Compose:
    """PIL image -> float tensor (3, image_size, image_size) in [0, 1].

    RGB conversion, then a bicubic, antialiased resize of the shorter side to
    ``image_size`` and a centre crop to ``image_size`` x ``image_size``.
    Picklable (no lambdas), so it works with multi-process data loaders.
    """
    if not isinstance(image_size, int) or isinstance(image_size, bool) or image_size < 1:
        raise ValueError(f"image_size must be a positive int, got {image_size!r}")
    return T.Compose([
        T.Lambda(to_rgb),
        T.Resize(image_size, interpolation=T.InterpolationMode.BICUBIC, antialias=True),
        T.CenterCrop(image_size),
        T.ToTensor(),
    ])
