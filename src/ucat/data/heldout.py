"""The held-out split of the fine-tuning data: model selection (``finetune.select: best``) and
temperature scaling read it, never the zero-shot test sets.

- ``demo_train``: drawn exactly like the demo's training set (same classes, same renderer) from
  a generator stream of its own (seed offset ``HELDOUT_SEED_OFFSET``; the demo sets use 101..404),
  so its images are other draws than the training images.
- ``tinyimagenet``: its official ``val`` split (the split the official code validates on,
  ``utils.py:222``).  It is also the TinyImageNet zero-shot evaluation set: a selection on it
  reads that one test set (docs/api.md).

A fixed, seeded subset of ``n`` images (``finetune.select_subsample``) keeps it cheap.
"""

from __future__ import annotations

import copy

from torch.utils.data import Dataset

from ..errors import ConfigError
from . import demo

HELDOUT_SEED_OFFSET = 505
HELDOUT_SETS = ("demo_train", "tinyimagenet")


def heldout_dataset(params: dict, image_size: int, n: int | None = None) -> tuple[Dataset, list[str]]:
    """(dataset of (image in [0, 1], label), class names) held out from ``data.finetune``.

    ``n``: a fixed subset of that many images (seeded by ``run.seed``); None = all of it.
    """
    from . import UInt8Images, classnames, open_eval, subsample

    name = params["data"]["finetune"]
    seed = params["run"]["seed"]
    if name == "demo_train":
        images, labels, names = demo.make_set(name, params["data"]["demo_train_per_class"], seed,
                                              params["backbone"]["demo"]["image_size"], HELDOUT_SEED_OFFSET)
        dataset = UInt8Images(images, labels, image_size)
    elif name == "tinyimagenet":
        p = copy.deepcopy(params)
        p["data"]["subsample"] = None
        dataset, names = open_eval(name, p, image_size)
    else:
        raise ConfigError(f"data.finetune: no held-out split defined for {name!r} (have: {', '.join(HELDOUT_SETS)}); "
                          "use finetune.select: final or best_on_test")
    if list(names) != classnames(name):
        raise ConfigError(f"{name}: held-out class names differ from the fine-tuning set's")
    return subsample(dataset, n, seed + 7), list(names)
