"""data.preprocess: the official UCAT code's transforms, compared with torchvision transforms
built the way utils.py:139-147 builds them, on images in the formats the real sets come in."""

import copy
import io

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from ucat import data
from ucat.data import real, transforms
from ucat.errors import ConfigError

# utils.py:139-147, verbatim in behaviour: default interpolation (bilinear), no normalisation
OFFICIAL_SQUARE = T.Compose([T.Resize((224, 224)), T.ToTensor()])
OFFICIAL_CROP = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor()])


def _noise(w, h, mode="RGB", seed=0):
    rng = np.random.default_rng(seed)
    shape = (h, w, 3) if mode == "RGB" else (h, w)
    return Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode=mode)


def _jpeg(img):
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    buf.seek(0)
    return Image.open(buf)


IMAGES = {
    "cifar 32x32": _noise(32, 32),
    "stl 96x96": _noise(96, 96, seed=1),
    "tinyimagenet 64x64 jpeg": _jpeg(_noise(64, 64, seed=2)),
    "landscape 500x375 jpeg": _jpeg(_noise(500, 375, seed=3)),
    "portrait 375x500 jpeg": _jpeg(_noise(375, 500, seed=4)),
}


@pytest.mark.parametrize("image", IMAGES, ids=list(IMAGES))
@pytest.mark.parametrize("name, reference", [("cifar10", OFFICIAL_SQUARE), ("cifar100", OFFICIAL_SQUARE),
                                             ("stl10", OFFICIAL_SQUARE), ("tinyimagenet", OFFICIAL_CROP),
                                             ("food101", OFFICIAL_CROP), ("imagenet", OFFICIAL_CROP)])
def test_official_transform_equals_the_official_torchvision_pipeline(image, name, reference):
    img = IMAGES[image]
    ours = transforms.transform_for(name, "official", 224)(img)
    assert ours.shape == (3, 224, 224)
    torch.testing.assert_close(ours, reference(img.convert("RGB")), rtol=0, atol=0)


def test_official_differs_from_open_clip_where_it_should():
    img = IMAGES["landscape 500x375 jpeg"]
    official = transforms.transform_for("dtd", "official", 224)(img)
    open_clip = transforms.transform_for("dtd", "open_clip", 224)(img)
    # open_clip crops 224 of a 299x224 bicubic resize; official 224 of a 341x256 bilinear one
    assert (official - open_clip).abs().mean() > 0.01
    # a square set is squashed, not cropped: the whole 500 px width survives
    squashed = transforms.transform_for("cifar10", "official", 224)(img)
    torch.testing.assert_close(squashed, OFFICIAL_SQUARE(img), rtol=0, atol=0)
    assert not torch.equal(squashed, official)


def test_grayscale_becomes_rgb_and_bad_choice_is_named():
    x = transforms.transform_for("caltech101", "official", 224)(_noise(300, 200, mode="L"))
    assert x.shape == (3, 224, 224) and torch.equal(x[0], x[2])
    with pytest.raises(ConfigError, match="data.preprocess"):
        transforms.transform_for("dtd", "bicubic", 224)


def test_open_eval_uses_the_configured_preprocessing(params, monkeypatch):
    seen = {}

    def fake_open_real(name, root, split=None, transform=None):
        seen[name] = transform
        return [(transform(IMAGES["landscape 500x375 jpeg"]), 0)]

    monkeypatch.setattr(real, "open_real", fake_open_real)
    for choice, reference in (("official", OFFICIAL_CROP), ("open_clip", transforms.eval_transform(224))):
        p = copy.deepcopy(params)
        p["data"]["preprocess"] = choice
        ds, names = data.open_eval("dtd", p, 224)
        assert len(names) == 47
        torch.testing.assert_close(ds[0][0], reference(IMAGES["landscape 500x375 jpeg"].convert("RGB")), rtol=0, atol=0)
