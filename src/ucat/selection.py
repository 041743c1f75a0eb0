"""Model selection during fine-tuning (``finetune.select``).

- ``final``: the weights after the last step (no evaluation during training).
- ``best``: after every epoch, robust accuracy (PGD on CE, ``finetune.select_attack``) on the
  held-out split of the fine-tuning data (``ucat.data.heldout``); the best epoch's weights are
  kept; training stops after ``finetune.select_patience`` epochs without improvement.
- ``best_on_test``: the official code's rule (main.py:271-303, 444-615): the same, scored by the
  mean robust accuracy over the zero-shot *test* sets ``data.datasets`` (each a seeded subset of
  ``finetune.select_subsample`` images).  The reported numbers are then selected on the test data.

Scores use the evaluation classifier (CLIP's logit scale and mean/std, each set's prompts) on
the live image tower, in eval mode, with the weights frozen while attacking.
"""

from __future__ import annotations

import copy

import torch
from torch.utils.data import DataLoader

from . import attacks, data, models, prompts, textcache
from .data.heldout import heldout_dataset

SELECT = ("final", "best", "best_on_test")
SCORE_BATCH = 256


class Selector:
    """Scores the image tower after each epoch and keeps the best weights (state is resumable)."""

    def __init__(self, params: dict, clip_model, arch: dict, visual: torch.nn.Module, device: torch.device):
        cfg = params["finetune"]
        self.mode = cfg.get("select", "final")
        self.patience = cfg.get("select_patience")
        self.attack = cfg.get("select_attack")
        self.params, self.device = params, device
        self.best, self.best_epoch, self.since, self.history = float("-inf"), 0, 0, []
        self.best_visual: dict | None = None
        self.sets: list[tuple[str, models.ZeroShotClassifier, object]] = []
        if self.mode == "final":
            return
        size = clip_model.visual.image_size
        size = size[0] if isinstance(size, (tuple, list)) else int(size)
        n = cfg.get("select_subsample")
        if self.mode == "best":
            name = params["data"]["finetune"]
            sets = [(name, *heldout_dataset(params, size, n))]
        else:
            p = copy.deepcopy(params)
            p["data"]["subsample"] = n
            sets = [(d, *data.open_eval(d, p, size)) for d in params["data"]["datasets"]]
        for name, dataset, names in sets:
            feats = textcache.prompt_features(clip_model, arch, prompts.class_prompts(name, params, names), device)
            # ``visual`` is shared, not copied: the classifier scores the live weights
            self.sets.append((name, models.ZeroShotClassifier.on_visual(clip_model, visual, feats, device), dataset))

    @property
    def active(self) -> bool:
        return self.mode != "final"

    def score(self, epoch: int) -> dict[str, float]:
        """Robust accuracy per selection set (and their mean under ``mean``)."""
        out = {}
        gen = torch.Generator(device=self.device).manual_seed(self.params["run"]["seed"] + 3)
        amp = models.autocast_dtype(self.params["run"]["precision"], self.device)
        bs = SCORE_BATCH  # fixed: the attack's random starts then depend on no evaluate.* setting
        for name, clf, dataset in self.sets:
            was_training = clf.visual.training
            clf.visual.eval()
            correct = total = 0
            try:
                with _frozen(clf):
                    for x, y in DataLoader(dataset, batch_size=bs, shuffle=False):
                        x, y = x.to(self.device), y.to(self.device)
                        with models.autocast(amp, self.device):
                            adv = attacks.pgd(clf, x, y, self.attack["eps"], self.attack["step_size"],
                                              self.attack["steps"], "ce", generator=gen)
                            with torch.no_grad():
                                correct += int((clf(adv).argmax(-1) == y).sum())
                        total += len(y)
            finally:
                clf.visual.train(was_training)
            out[name] = correct / max(total, 1)
        out["mean"] = sum(out.values()) / len(self.sets)
        return out

    def after_epoch(self, epoch: int, visual: torch.nn.Module) -> bool:
        """Score epoch ``epoch`` (1-based); keep its weights if best (strictly, main.py:282).
        Returns True when training should stop (no improvement for ``select_patience`` epochs)."""
        scores = self.score(epoch)
        self.history.append({"epoch": epoch, **scores})
        if scores["mean"] > self.best:
            self.best, self.best_epoch, self.since = scores["mean"], epoch, 0
            self.best_visual = {k: v.detach().cpu().clone() for k, v in visual.state_dict().items()}
        else:
            self.since += 1
        return self.patience is not None and self.since >= self.patience

    def stopped(self, step: int, steps_per_epoch: int) -> bool:
        """True if a resumed run had already stopped early at its last scored epoch."""
        return (self.patience is not None and self.since >= self.patience
                and bool(self.history) and self.history[-1]["epoch"] * steps_per_epoch == step)

    def final_weights(self, current: dict) -> dict:
        return current if not self.active or self.best_visual is None else self.best_visual

    def state_dict(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch, "since": self.since, "history": self.history,
                "best_visual": self.best_visual}

    def load_state_dict(self, state: dict | None) -> None:
        if state:
            self.best, self.best_epoch, self.since = state["best"], state["best_epoch"], state["since"]
            self.history, self.best_visual = list(state["history"]), state["best_visual"]

    def summary(self) -> dict:
        if not self.active:
            return {"select": "final"}
        return {"select": self.mode, "selected_epoch": self.best_epoch, "selection_score": self.best,
                "epochs_run": len(self.history), "history": self.history}


class _frozen:
    """Weights off the autograd graph while attacking (input gradients only)."""

    def __init__(self, module):
        self.flags = [(p, p.requires_grad) for p in module.parameters()]

    def __enter__(self):
        for p, _ in self.flags:
            p.requires_grad_(False)

    def __exit__(self, *exc):
        for p, flag in self.flags:
            p.requires_grad_(flag)
