"""Class text features: computed once per (text weights, prompts), shared across jobs."""

from __future__ import annotations

import copy

import torch

from ucat import models, textcache


def test_cache_hit_returns_the_computed_features_and_skips_the_text_tower(tiny_clip, tmp_path, monkeypatch):
    clip, arch = tiny_clip
    monkeypatch.setenv("UCAT_CACHE", str(tmp_path))
    calls = []
    real_encode = models.prompt_features

    def counting(*a, **k):
        calls.append(1)
        return real_encode(*a, **k)

    monkeypatch.setattr(models, "prompt_features", counting)
    names, templates = ["circle", "square", "star"], ["a photo of a {}", "a {}"]
    first = textcache.text_features(clip, arch, names, templates)
    second = textcache.text_features(clip, arch, names, templates)
    assert len(calls) == 1 and len(list((tmp_path / "text").glob("*.pt"))) == 1
    direct = real_encode(clip, arch, [[t.format(c) for t in templates] for c in names])
    assert torch.allclose(first, direct) and torch.equal(first, second)
    # the classifier built through the cache is the one built without it
    cached = models.ZeroShotClassifier.from_clip(clip, arch, names, templates, cache=True)
    assert torch.equal(cached.class_features, first) and len(calls) == 1


def test_key_follows_text_weights_and_prompts_not_the_image_tower(tiny_clip):
    clip, arch = tiny_clip
    base = textcache.key(clip, arch, [["a"], ["b"]])
    other = copy.deepcopy(clip)
    with torch.no_grad():
        next(p for n, p in other.named_parameters() if n.startswith("visual.")).add_(1.0)
    assert textcache.key(other, arch, [["a"], ["b"]]) == base   # fine-tuning touches only `visual`
    with torch.no_grad():
        other.text_projection.mul_(1.01)
    assert textcache.key(other, arch, [["a"], ["b"]]) != base
    assert textcache.key(clip, arch, [["b"], ["a"]]) != base
    assert textcache.key(clip, arch, [["x a"], ["x b"]]) != base


def test_damaged_cache_file_is_recomputed(tiny_clip, tmp_path, monkeypatch):
    clip, arch = tiny_clip
    monkeypatch.setenv("UCAT_CACHE", str(tmp_path))
    good = textcache.text_features(clip, arch, ["a", "b"], ["{}"])
    path, = (tmp_path / "text").glob("*.pt")
    path.write_bytes(b"garbage")
    assert torch.allclose(textcache.text_features(clip, arch, ["a", "b"], ["{}"]), good)
    assert torch.equal(torch.load(path, weights_only=True), good)
