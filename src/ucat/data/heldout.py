"""The held-out clean split of the fine-tuning data: for fitting, never for evaluating.

Post-hoc calibration (temperature scaling, ``ucat calibrate``) and checkpoint selection need
clean images of the fine-tuning distribution that the model was not trained on and that no
evaluation cell scores.  ``heldout_dataset`` returns ``data.heldout`` of them, a fixed
subset drawn with ``data.seed``:

- ``demo_train``: a fresh set rendered exactly like the training set (same classes and
  pairs, ``data.demo_train_per_class`` irrelevant) from its own random stream, so it is
  disjoint from the training images and every demo evaluation set;
- ``tinyimagenet``: its official ``val`` split (the model trains on ``train``).  The paper
  also evaluates TinyImageNet on that split, so there the TinyImageNet cells share images
  with the fit; the report says so (``overlaps_evaluation``).
"""

from __future__ import annotations

import math

from torch.utils.data import Dataset

from ..errors import ConfigError
from . import UInt8Images, classnames, demo, is_demo, subsample

#: The split a real fine-tuning set is held out from (the model fine-tunes on ``train``).
HELDOUT_SPLITS = {"tinyimagenet": "val"}
DEMO_STREAM = 500   # demo.make_set stream of the held-out demo_train images


def heldout_split(params: dict) -> str:
    """Which split of ``data.finetune`` is held out (``generated`` for the demo)."""
    name = params["data"]["finetune"]
    if is_demo(name):
        return "generated"
    if name not in HELDOUT_SPLITS:
        raise ConfigError(f"data.finetune: no held-out split is defined for {name!r}; "
                          f"known: {', '.join(sorted(HELDOUT_SPLITS))} (ucat.data.heldout.HELDOUT_SPLITS)")
    return HELDOUT_SPLITS[name]


def overlaps_evaluation(params: dict) -> bool:
    """True when the held-out split is also a zero-shot evaluation split of this run."""
    return params["data"]["finetune"] in params["data"]["datasets"]


def heldout_dataset(params: dict, image_size: int, n: int | None = None) -> tuple[Dataset, list[str]]:
    """``n`` (default ``data.heldout``) clean held-out images of ``data.finetune`` and its class names."""
    name = params["data"]["finetune"]
    n = params["data"]["heldout"] if n is None else n
    split = heldout_split(params)
    names = classnames(name)
    if is_demo(name):
        per_class = math.ceil(n / len(names))
        images, labels, _ = demo.make_set(name, per_class, params["data"]["seed"],
                                          params["backbone"]["demo"]["image_size"], stream=DEMO_STREAM)
        dataset: Dataset = UInt8Images(images, labels, image_size)
    else:
        from . import _open, verified_digest

        verified_digest(name, params)                                # read from disk: checked like every read
        dataset, _ = _open(name, params, image_size, split=split)   # data.preprocess, label checks
    return subsample(dataset, n, params["data"]["seed"]), names
