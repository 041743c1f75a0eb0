"""finetune.select: the held-out split, per-epoch scoring, best-epoch weights, early stopping."""

import copy

import pytest
import torch

from ucat import data, models, selection, train
from ucat.data import demo, real
from ucat.data.heldout import heldout_dataset
from ucat.errors import ConfigError


def test_demo_heldout_is_drawn_like_the_training_set_but_disjoint(params):
    p = copy.deepcopy(params)
    train_images, train_labels, train_names = demo.make_set("demo_train", p["data"]["demo_train_per_class"],
                                                            p["data"]["seed"], 32)
    ds, names = heldout_dataset(p, 32, n=len(train_labels))   # as many as the training set: every class alike
    assert names == train_names and len(ds) == len(train_labels)
    held = torch.stack([ds[i][0] for i in range(len(ds))])
    assert torch.equal(torch.tensor([ds[i][1] for i in range(len(ds))]).bincount(), train_labels.bincount())
    flat_train = (train_images.float() / 255).flatten(1)
    # no held-out image equals any training image
    assert torch.cdist(held.flatten(1), flat_train).min() > 1.0
    sub, _ = heldout_dataset(p, 32, n=20)
    again, _ = heldout_dataset(p, 32, n=20)
    assert len(sub) == 20 and sub.indices == again.indices  # fixed seed


def test_tinyimagenet_heldout_is_its_val_split(params, monkeypatch):
    seen = {}

    def fake_open_real(name, root, split=None, transform=None):
        seen.update(name=name, split=split)
        return [(torch.zeros(3, 8, 8), k % 200) for k in range(500)]

    monkeypatch.setattr(real, "open_real", fake_open_real)
    verified = []
    monkeypatch.setattr(data, "verified_digest", lambda name, params: verified.append(name) or "digest")
    p = copy.deepcopy(params)
    p["data"]["finetune"] = "tinyimagenet"
    ds, names = heldout_dataset(p, 224, n=100)
    assert seen == {"name": "tinyimagenet", "split": "val"} and len(ds) == 100 and len(names) == 200
    assert verified == ["tinyimagenet"]                 # read from disk: verified first, like every read
    p["data"]["finetune"] = "cifar10"
    with pytest.raises(ConfigError, match="no held-out split"):
        heldout_dataset(p, 224)


def test_selector_keeps_the_best_epoch_and_stops_on_patience(params, tiny_clip, monkeypatch):
    clip, arch = tiny_clip
    p = copy.deepcopy(params)
    p["finetune"].update(select="best", select_patience=2, select_subsample=8)
    visual = copy.deepcopy(clip.visual)
    sel = selection.Selector(p, clip, arch, visual, torch.device("cpu"))
    scores = iter([0.5, 0.7, 0.7, 0.6])  # a tie is no improvement (official: acc > best)
    monkeypatch.setattr(sel, "score", lambda epoch: {"demo_train": (s := next(scores)), "mean": s})
    stops = []
    for epoch in range(1, 5):
        with torch.no_grad():
            next(visual.parameters()).fill_(float(epoch))
        stops.append(sel.after_epoch(epoch, visual))
    assert stops == [False, False, False, True] and sel.best_epoch == 2 and sel.best == 0.7
    first = next(iter(sel.final_weights(visual.state_dict()).values()))
    assert torch.all(first == 2.0)  # epoch 2's weights, not the last ones


def test_selector_scores_the_live_tower_with_the_eval_classifier(params, tiny_clip):
    clip, arch = tiny_clip
    p = copy.deepcopy(params)
    p["finetune"].update(select="best", select_subsample=64, select_attack={"eps": 1e-6, "steps": 0, "step_size": 1})
    visual = copy.deepcopy(clip.visual)
    sel = selection.Selector(p, clip, arch, visual, torch.device("cpu"))
    got = sel.score(1)["demo_train"]
    # independent: the classifier ucat evaluates with, on the same held-out images, clean
    ds, names = heldout_dataset(p, 32, n=64)
    clf = models.ZeroShotClassifier.from_clip(clip, arch, names, p["prompt"]["templates"])
    x = torch.stack([ds[i][0] for i in range(len(ds))])
    y = torch.tensor([ds[i][1] for i in range(len(ds))])
    with torch.no_grad():
        expect = (clf(x).argmax(-1) == y).float().mean().item()
    assert got == pytest.approx(expect, abs=1 / 64 + 1e-9)
    with torch.no_grad():  # it reads the live weights: a zeroed tower gives equal logits -> argmax 0
        for w in visual.parameters():
            w.mul_(0)
    assert sel.score(2)["demo_train"] == pytest.approx((y == 0).float().mean().item())


def test_best_selection_saves_the_best_epoch_and_stops_early(tmp_params, tiny_checkpoint, tmp_path, monkeypatch):
    data.prepare("demo_train", tmp_params)
    cpu = torch.device("cpu")
    p = copy.deepcopy(tmp_params)
    p["finetune"].update(epochs=3, max_steps_per_epoch=2, checkpoint_every=1)
    # reference: the epoch-1 weights of the same run (kill after epoch 1 and read its checkpoint)
    ref = tmp_path / "ref"
    train.finetune(p, "tecoa", tiny_checkpoint, ref / "m.pt", ref / "ck", ref / "live", cpu, progress=False,
                   stop_after_steps=2)
    epoch1 = torch.load(ref / "ck" / "last.pt", weights_only=True)["visual"]

    sel_p = copy.deepcopy(p)
    sel_p["finetune"].update(select="best", select_patience=1, select_subsample=16)
    scores = iter([0.9, 0.1, 0.1])
    monkeypatch.setattr(selection.Selector, "score",
                        lambda self, epoch: {"demo_train": (s := next(scores)), "mean": s})
    run = tmp_path / "sel"
    meta = train.finetune(sel_p, "tecoa", tiny_checkpoint, run / "m.pt", run / "ck", run / "live", cpu, progress=False)
    assert meta["steps"] == 4 and meta["selection"]["selected_epoch"] == 1 and meta["selection"]["epochs_run"] == 2
    saved, _, _ = models.load_checkpoint(run / "m.pt")
    for k, v in saved.visual.state_dict().items():
        assert torch.equal(v, epoch1[k]), k


def test_killed_run_with_selection_resumes_to_the_same_choice(tmp_params, tiny_checkpoint, tmp_path):
    data.prepare("demo_train", tmp_params)
    cpu = torch.device("cpu")
    p = copy.deepcopy(tmp_params)
    p["finetune"].update(epochs=2, max_steps_per_epoch=2, checkpoint_every=1, select="best", select_subsample=8,
                         select_attack={"eps": 8, "steps": 1, "step_size": 8})
    full = tmp_path / "full"
    a = train.finetune(p, "tecoa", tiny_checkpoint, full / "m.pt", full / "ck", full / "live", cpu, progress=False)
    part = tmp_path / "part"
    train.finetune(p, "tecoa", tiny_checkpoint, part / "m.pt", part / "ck", part / "live", cpu, progress=False,
                   stop_after_steps=3)  # killed in epoch 2, after epoch 1 was scored
    b = train.finetune(p, "tecoa", tiny_checkpoint, part / "m.pt", part / "ck", part / "live", cpu, progress=False)
    assert a["selection"]["history"] == b["selection"]["history"] and len(b["selection"]["history"]) == 2
    wa, _, _ = models.load_checkpoint(full / "m.pt")
    wb, _, _ = models.load_checkpoint(part / "m.pt")
    for k, v in wa.visual.state_dict().items():
        assert torch.equal(v, wb.visual.state_dict()[k]), k
