import pytest
import torch
import torch.nn.functional as F

from ucat import models
from ucat.errors import CheckpointError, ConfigError


def test_checkpoint_round_trip_is_exact(tiny_clip, tmp_path):
    clip, arch = tiny_clip
    path = tmp_path / "m.pt"
    models.save_checkpoint(path, clip, arch, {"note": "x"})
    again, arch2, meta = models.load_checkpoint(path)
    assert arch2 == arch and meta == {"note": "x"}
    for (k, a), (k2, b) in zip(clip.state_dict().items(), again.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(clip.encode_image(x), again.encode_image(x))


def test_truncated_or_foreign_checkpoint_is_a_clear_error(tiny_clip, tmp_path):
    clip, arch = tiny_clip
    path = tmp_path / "m.pt"
    models.save_checkpoint(path, clip, arch)
    data = path.read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cut.pt"):
        models.load_checkpoint(tmp_path / "cut.pt")
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a ucat checkpoint"):
        models.load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not found"):
        models.load_checkpoint(tmp_path / "missing.pt")


def test_classifier_normalises_inside_and_matches_clip(tiny_clip):
    clip, arch = tiny_clip
    names = ["circle", "square", "red object"]
    clf = models.ZeroShotClassifier.from_clip(clip, arch, names, ["This is a photo of a {}"])
    x = torch.rand(4, 3, 32, 32)
    cfg = clip.visual.preprocess_cfg
    mean = torch.tensor(cfg["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(cfg["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        img = F.normalize(clip.encode_image((x - mean) / std), dim=-1)
        txt = F.normalize(clip.encode_text(models.tokenize(clip, arch, [f"This is a photo of a {n}" for n in names])), dim=-1)
        expect = clip.logit_scale.exp() * img @ txt.t()
        torch.testing.assert_close(clf(x), expect, rtol=1e-5, atol=1e-5)
    # text tower is not part of the classifier: features are a buffer computed once
    assert not hasattr(clf, "transformer") and "class_features" in dict(clf.named_buffers())
    assert clf.num_classes == 3 and clf.image_size == 32


def test_template_ensemble_is_normalised_mean(tiny_clip):
    clip, arch = tiny_clip
    t = ["a photo of a {}.", "This is a photo of a {}"]
    both = models.text_features(clip, arch, ["circle"], t)
    singles = torch.cat([models.text_features(clip, arch, ["circle"], [x]) for x in t])
    torch.testing.assert_close(both[0], F.normalize(singles.mean(0), dim=-1))


def test_frozen_copy_shares_no_parameters(tiny_clip):
    clip, arch = tiny_clip
    clf = models.ZeroShotClassifier.from_clip(clip, arch, ["a", "b"], ["{}"])
    ref = clf.frozen_copy()
    ids = {id(p) for p in clf.parameters()}
    assert not ids & {id(p) for p in ref.parameters()}
    assert not any(p.requires_grad for p in ref.parameters())


def test_openai_weights_require_quickgelu():
    with pytest.raises(ConfigError, match="quickgelu"):
        models.create_clip({"name": "ViT-B-32", "overrides": {}}, pretrained="openai")
    with pytest.raises(ConfigError, match="unknown open_clip architecture"):
        models.create_clip({"name": "ViT-B-33", "overrides": {}})


def test_run_compile_auto_means_cuda_only(params):
    from ucat import config

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert models.compile_wanted("auto", cuda) and not models.compile_wanted("auto", cpu)
    assert models.compile_wanted(True, cpu) and not models.compile_wanted(False, cuda)
    p = dict(params, run=dict(params["run"], compile="auto"))
    assert config.validate(p)["run"]["compile"] == "auto"
    with pytest.raises(ConfigError, match="run.compile"):
        config.validate(dict(params, run=dict(params["run"], compile="yes")))
