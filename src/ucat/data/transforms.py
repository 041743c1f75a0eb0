"""Preprocessing of the real data sets (``data.preprocess``), without normalisation.

Pixel values stay in [0, 1] because the classifier normalises inside the model, which is
what the attacks need (their epsilon ball and clamping live in pixel space).

- ``open_clip``: CLIP's own preprocessing (bicubic resize of the short side, centre crop).
- ``official``: the official UCAT code (``utils.py:139-147``): CIFAR-10/100 and STL-10 are
  resized to a square ``Resize((s, s))`` with no crop (``utils.py:151-153, 168-172, 180-181``);
  every other set, the TinyImageNet training split included (``utils.py:159``),
  ``Resize(256)`` + ``CenterCrop(224)``; torchvision's default (bilinear) interpolation.
  For a model resolution ``s`` other than 224 the short side goes to ``round(s * 256 / 224)``.
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


PREPROCESS = ("official", "open_clip")
#: Sets the official code resizes to a square without cropping (utils.py:140, 151-153, 168-172, 180-181).
SQUARE_RESIZE = frozenset({"cifar10", "cifar100", "stl10"})


def official_transform(name: str, image_size: int) -> T.Compose:
    """The official code's transform for data set ``name`` at resolution ``image_size`` (224 there)."""
    if name in SQUARE_RESIZE:
        resize = [T.Resize((image_size, image_size))]
    else:
        resize = [T.Resize(round(image_size * 256 / 224)), T.CenterCrop(image_size)]
    return T.Compose([T.Lambda(to_rgb), *resize, T.ToTensor()])


def transform_for(name: str, preprocess: str, image_size: int) -> T.Compose:
    """``data.preprocess`` -> the transform of data set ``name``."""
    if preprocess == "official":
        return official_transform(name, image_size)
    if preprocess == "open_clip":
        return eval_transform(image_size)
    from ..errors import unknown_choice

    raise unknown_choice("data.preprocess", preprocess, PREPROCESS)
