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
    cached = textcache.classifier(clip, arch, [[t.format(c) for t in templates] for c in names])
    assert torch.equal(cached.class_features, first) and len(calls) == 1
    # use_cache=False (--no-cache) computes afresh
    textcache.text_features(clip, arch, names, templates, use_cache=False)
    assert len(calls) == 2


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


def test_damaged_or_tampered_cache_file_is_recomputed(tiny_clip, tmp_path, monkeypatch):
    clip, arch = tiny_clip
    monkeypatch.setenv("UCAT_CACHE", str(tmp_path))
    good = textcache.text_features(clip, arch, ["a", "b"], ["{}"])
    path, = (tmp_path / "text").glob("*.pt")
    path.write_bytes(b"garbage")
    assert torch.equal(textcache.text_features(clip, arch, ["a", "b"], ["{}"]), good)
    assert torch.equal(torch.load(path, weights_only=True)["features"], good)
    entry = torch.load(path, weights_only=True)
    entry["features"] = entry["features"].flip(0)               # classes swapped, digest left as it was
    torch.save(entry, path)
    assert torch.equal(textcache.text_features(clip, arch, ["a", "b"], ["{}"]), good)


def test_edited_text_code_misses_the_cache(tiny_clip, tmp_path, monkeypatch, edit_package):
    """Reversing the class order inside models.prompt_features must not return the old features."""
    clip, arch = tiny_clip
    monkeypatch.setenv("UCAT_CACHE", str(tmp_path))
    good = textcache.text_features(clip, arch, ["a", "b", "c"], ["{}"])
    edit_package("models.py", "def prompt_features(", "def prompt_features(  ")
    real = models.prompt_features
    monkeypatch.setattr(models, "prompt_features", lambda *a, **k: real(*a, **k).flip(0))
    assert torch.equal(textcache.text_features(clip, arch, ["a", "b", "c"], ["{}"]), good.flip(0))


def test_key_follows_the_device_threads_and_libraries(tiny_clip, monkeypatch):
    from ucat import fingerprint

    clip, arch = tiny_clip
    base = textcache.key(clip, arch, [["a"], ["b"]])
    installed = fingerprint.library_versions()
    monkeypatch.setattr(fingerprint, "library_versions", lambda: {**installed, "open_clip_torch": "0"})
    assert textcache.key(clip, arch, [["a"], ["b"]]) != base
    monkeypatch.undo()
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(3 if threads != 3 else 2)
        assert textcache.key(clip, arch, [["a"], ["b"]]) != base
    finally:
        torch.set_num_threads(threads)
