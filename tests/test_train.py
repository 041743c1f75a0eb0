import copy
import json
import shutil

import pytest
import torch

from ucat import config, data, fingerprint, losses, methods, models, tga, train
from ucat import cli
from ucat.errors import ConfigError, TrainingError

TRAINED = [m for m, s in methods.METHODS.items() if s.finetuned]


@pytest.fixture()
def setup(tmp_params, tiny_checkpoint):
    data.prepare("demo_train", tmp_params)
    return tmp_params, tiny_checkpoint


def _classifier(tiny_clip, names):
    clip, arch = tiny_clip
    return models.ZeroShotClassifier.from_clip(clip, arch, names, ["This is a photo of a {}"])


@pytest.mark.parametrize("method", TRAINED)
def test_loss_finite_and_gradients_only_in_image_tower(method, tiny_clip, params):
    from ucat.data import demo

    images, labels, names = demo.make_set("demo_train", 1, 0)
    model = _classifier(tiny_clip, names).train()
    if method in tga.METHODS:
        clip, arch = tiny_clip
        tga.prepare(model, tga.negative_text_features(clip, arch, params, names, "cpu") if tga.METHODS[method] else None)
    ref = model.frozen_copy()
    before = model.class_features.clone()
    out = train.method_step(method, model, ref, images[:8].float() / 255, labels[:8], params,
                            torch.Generator().manual_seed(0))
    assert torch.isfinite(out["loss"])
    out["loss"].backward()
    grads = [p.grad for p in model.visual.parameters()]
    assert all(g is not None for g in grads) and sum(g.abs().sum() for g in grads) > 0
    assert all(p.grad is None for p in ref.parameters())
    assert torch.equal(model.class_features, before)  # text side untouched


@pytest.mark.numerics
@pytest.mark.parametrize("method", ["tecoa", "ucat"])
def test_one_step_lowers_the_loss(method, tiny_clip, params):
    from ucat.data import demo

    images, labels, names = demo.make_set("demo_train", 1, 0)
    x, y = images[:16].float() / 255, labels[:16]
    model = _classifier(tiny_clip, names).train()
    ref = model.frozen_copy()
    opt = torch.optim.SGD(model.visual.parameters(), lr=0.05)
    loss0 = train.method_step(method, model, ref, x, y, params, torch.Generator().manual_seed(0))["loss"]
    opt.zero_grad()
    loss0.backward()
    opt.step()
    loss1 = train.method_step(method, model, ref, x, y, params, torch.Generator().manual_seed(0))["loss"]
    assert loss1.item() < loss0.item()


def _weights(path):
    model, _, meta = models.load_checkpoint(path)
    return model.visual.state_dict(), meta


@pytest.mark.parametrize("kill_at", [3, 2])  # end of epoch 1, and mid-epoch
def test_killed_run_resumes_to_identical_weights(setup, tmp_path, kill_at):
    params, backbone = setup
    params = copy.deepcopy(params)
    params["finetune"].update(epochs=2, max_steps_per_epoch=3, checkpoint_every=1)
    cpu = torch.device("cpu")
    full = tmp_path / "full"
    train.finetune(params, "ucat", backbone, full / "model.pt", full / "ck", full / "live", cpu, progress=False)
    part = tmp_path / "part"
    stopped = train.finetune(params, "ucat", backbone, part / "model.pt", part / "ck", part / "live", cpu,
                             progress=False, stop_after_steps=kill_at)
    assert stopped == {"stopped_at": kill_at} and not (part / "model.pt").exists()
    shutil.rmtree(part / "live", ignore_errors=True)  # Snakemake deletes a failed job's outputs
    meta = train.finetune(params, "ucat", backbone, part / "model.pt", part / "ck", part / "live", cpu, progress=False)
    assert meta["steps"] == 6
    a, _ = _weights(full / "model.pt")
    b, _ = _weights(part / "model.pt")
    for k in a:
        assert torch.equal(a[k], b[k]), k
    steps = [int(line.split("\t")[0]) for line in (part / "live/plots/metrics/train/loss.tsv").read_text().split("\n")[1:] if line]
    assert steps == list(range(1, 7))  # the whole curve: no duplicated or missing rows after resume


def _state_for(params, backbone, path, method="ucat"):
    record = train.fingerprint_record(params, method, backbone, torch.device("cpu"))
    return train._load_state(path, fingerprint.digest(record), record)


def test_checkpoint_from_other_parameters_is_not_resumed(setup, tmp_path, capsys):
    params, backbone = setup
    cpu = torch.device("cpu")
    out = tmp_path / "r"
    train.finetune(params, "ucat", backbone, out / "model.pt", out / "ck", out / "live", cpu, progress=False,
                   stop_after_steps=1)
    changed = copy.deepcopy(params)
    changed["ucat"]["tau_prime"] = 0.5
    assert _state_for(changed, backbone, out / "ck" / "last.pt") is None
    assert "not resumed" in capsys.readouterr().err
    assert _state_for(params, backbone, out / "ck" / "last.pt") is not None


def test_a_finished_run_is_retrained_after_its_loss_is_edited(setup, tmp_path, edit_package, monkeypatch, capsys):
    """Editing losses.py must give the new code's model, not the final resume state's old weights."""
    params, backbone = setup
    cpu, out = torch.device("cpu"), tmp_path / "r"
    train.finetune(params, "ucat", backbone, out / "model.pt", out / "ck", out / "live", cpu, progress=False)
    old = (out / "model.pt").read_bytes()
    edit_package("losses.py", "def ucat_loss(", "def ucat_loss(  ")       # the edit as the key sees it ...
    real = losses.ucat_loss

    def doubled(*a, **k):                                                # ... and as the code runs it
        out_ = real(*a, **k)
        return {**out_, "loss": 2 * out_["loss"] - out_["ce"]}          # the KL term doubled

    monkeypatch.setattr(losses, "ucat_loss", doubled)
    train.finetune(params, "ucat", backbone, out / "model.pt", out / "ck", out / "live", cpu, progress=False)
    err = capsys.readouterr().err
    assert "not resumed" in err and "src/ucat/losses.py" in err
    assert (out / "model.pt").read_bytes() != old
    a, _ = _weights(out / "model.pt")
    monkeypatch.setattr(losses, "ucat_loss", real)
    fresh = tmp_path / "fresh"
    train.finetune(params, "ucat", backbone, fresh / "model.pt", fresh / "ck", fresh / "live", cpu, progress=False)
    b, _ = _weights(fresh / "model.pt")
    assert any(not torch.equal(a[k], b[k]) for k in a)                  # the edited loss really trained


def test_resumed_curves_keep_lf_line_endings(setup, tmp_path):
    params, backbone = setup
    cpu, out = torch.device("cpu"), tmp_path / "r"
    train.finetune(params, "ucat", backbone, out / "model.pt", out / "ck", out / "live", cpu, progress=False,
                   stop_after_steps=2)
    train.finetune(params, "ucat", backbone, out / "model.pt", out / "ck", out / "live", cpu, progress=False)
    for tsv in (out / "live" / "plots").rglob("*.tsv"):
        raw = tsv.read_bytes()
        assert b"\r" not in raw and raw.count(b"\n") == 4, tsv          # header + 3 steps


def test_bad_method_writes_nothing(setup, tmp_path):
    params, backbone = setup
    for bad in ("ucta",):
        with pytest.raises(ConfigError, match="methods"):
            train.finetune(params, bad, backbone, tmp_path / "o" / "m.pt", tmp_path / "o" / "ck", tmp_path / "o" / "l",
                           torch.device("cpu"), progress=False)
    assert not (tmp_path / "o").exists()


def _tree_bytes(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_finished_checkpoint_rewrites_every_output_byte_identical(setup, tmp_path):
    """A rerun whose checkpoint is at the final step gives every declared output, unchanged
    (Snakemake: no MissingOutputException; DVC: no {"step": 0} summary, nothing downstream reruns)."""
    params, backbone = setup
    cpu, out = torch.device("cpu"), tmp_path / "r"
    train.finetune(params, "tecoa", backbone, out / "model.pt", out / "ck", out / "live", cpu, progress=False)
    model, live = (out / "model.pt").read_bytes(), _tree_bytes(out / "live")
    assert json.loads(live["metrics.json"])["step"] == 3 and "plots/metrics/train/loss.tsv" in live
    (out / "model.pt").unlink()
    shutil.rmtree(out / "live")          # what Snakemake deletes before a rerun (DVC: model.pt and plots)
    meta = train.finetune(params, "tecoa", backbone, out / "model.pt", out / "ck", out / "live", cpu, progress=False)
    assert meta["steps"] == 3 and "seconds" not in meta
    assert (out / "model.pt").read_bytes() == model
    assert _tree_bytes(out / "live") == live


def test_second_finetune_on_same_outputs_refuses_with_one_line(setup, tmp_path, capsys):
    params, backbone = setup
    ck = tmp_path / "r" / "ck"
    with train.training_lock(ck):   # a first process holds the lock
        with pytest.raises(train.LockedError, match="another `ucat finetune` is running"):
            train.finetune(params, "tecoa", backbone, tmp_path / "r" / "model.pt", ck, tmp_path / "r" / "live",
                           torch.device("cpu"), progress=False)
        pfile = tmp_path / "p.yaml"
        import yaml

        pfile.write_text(yaml.safe_dump(config.file_form(params)))
        rc = cli.main(["finetune", "tecoa", "--params", str(pfile), "--backbone", str(backbone), "--out",
                       str(tmp_path / "r" / "model.pt"), "--checkpoint-dir", str(ck), "--live-dir",
                       str(tmp_path / "r" / "live"), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("error: ") and str(ck) in err[0]
    assert not (tmp_path / "r" / "model.pt").exists()
    # released with the first process: now it runs
    train.finetune(params, "tecoa", backbone, tmp_path / "r" / "model.pt", ck, tmp_path / "r" / "live",
                   torch.device("cpu"), progress=False)
    assert (tmp_path / "r" / "model.pt").is_file()


def test_clip_is_evaluated_from_a_copy_of_the_backbone(setup, tmp_path):
    params, backbone = setup
    out = tmp_path / "c"
    train.finetune(params, "clip", backbone, out / "model.pt", out / "ck", out / "live", torch.device("cpu"),
                   progress=False)
    assert (out / "model.pt").read_bytes() == backbone.read_bytes()
    assert json.loads((out / "live" / "metrics.json").read_text()) == {"step": 0}
    # a header, no rows: git keeps the file (an empty folder it would not), the report draws no curve
    assert (out / "live" / "plots/metrics/train/loss.tsv").read_text() == "step\tloss\n"


def test_non_finite_loss_stops_with_the_step_and_keeps_the_last_checkpoint(setup, tmp_path):
    """A learning rate that blows the weights up: the run stops at the first non-finite loss."""
    params, backbone = setup
    params = copy.deepcopy(params)
    params["finetune"].update(optimizer="sgd", lr=1e30, momentum=0.0, warmup_steps=0, checkpoint_every=1)
    out = tmp_path / "r"
    with pytest.raises(TrainingError) as err:
        train.finetune(params, "tecoa", backbone, out / "model.pt", out / "ck", out / "live", torch.device("cpu"),
                       progress=False)
    msg = str(err.value)
    assert "\n" not in msg and "step 2 of 3" in msg and "finetune tecoa" in msg
    assert not (out / "model.pt").exists()
    state = torch.load(out / "ck" / "last.pt", weights_only=True)
    assert state["step"] == 1   # the update of step 1 blew the weights up; step 2's loss was refused
    # step 1's weights, huge but finite, are what the checkpoint kept: the NaN step never updated them
    assert all(torch.isfinite(v).all() for v in state["visual"].values() if v.is_floating_point())
