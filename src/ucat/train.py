"""Adversarial fine-tuning of CLIP's image tower (the ``finetune`` stage).

Only ``visual`` trains; class text features are a fixed buffer; the reference model is a
deep, frozen copy of the original (no shared parameters).  Adversarial examples are made
on the fly (ℓ∞ PGD on CE, or FARE's embedding attack) with the weights' ``requires_grad``
switched off, so attacking computes input gradients only.  SGD with momentum (or AdamW),
linear warm-up then cosine decay, bf16 autocast on GPU.

Resumability: ``checkpoint_dir/last.pt`` holds weights, optimiser, scheduler, attack RNG
and the step; it is written atomically every ``checkpoint_every`` steps and at the end of
every epoch.  The data order is a function of (seed, epoch), so a killed run resumed from
its checkpoint ends with exactly the weights of an uninterrupted one.  The state carries the
:mod:`ucat.fingerprint` record of everything that decides the weights (code and data files the
stage runs, parameters, backbone bytes, the fine-tuning set's manifest, libraries, device); a
state made from other inputs, an edited loss included, is not resumed: a one-line notice says
what differs and training starts again.

The loss curves (dvclive) are written into ``checkpoint_dir/live`` next to the resume state
and copied to the declared outputs (``live_dir``) at the end: Snakemake deletes a failed
job's outputs, never the checkpoint folder, so a killed run resumes with its whole curve;
a run whose checkpoint is already at the final step just rewrites every output,
byte-identical (no wall-clock value is stored anywhere).  A lock file in the checkpoint
folder makes a second process on the same outputs stop with a one-line error.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import json
import math
import os
import shutil
import sys
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from . import attacks, data, fingerprint, losses, methods, models, patch_embed, paths, prompts, selection, textcache, tga
from .backbone import warmup_cosine
from .errors import CheckpointError, ConfigError, TrainingError, UcatError
from .io import atomic_path, write_json, write_text
from .progress import progress as progress_bar

TRAIN_FORMAT = "ucat-train-v2"


@contextlib.contextmanager
def no_weight_grads(module: torch.nn.Module):
    """Temporarily freeze parameters: attacks then build graphs for the input only."""
    flags = [(p, p.requires_grad) for p in module.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def method_step(method: str, model: models.ZeroShotClassifier, reference, images, labels, params: dict,
                generator: torch.Generator | None) -> dict[str, torch.Tensor]:
    """One objective evaluation: the adversarial examples, then the method's loss.

    Each forward pass runs once and every result is used.  Returns the loss terms and
    ``logits_adv`` (for the adversarial training accuracy).
    """
    atk = method_attack(method, params)
    if method == "fare":
        fare = params["fare"]
        with torch.no_grad():
            emb_ref = reference.embed(images)
        with no_weight_grads(model):
            adv = attacks.fare_attack(model, images, emb_ref, fare["eps"], fare["step_size"], fare["steps"], generator)
        emb_adv = model.embed(adv)
        out = losses.fare_loss(emb_adv, emb_ref)
        out["logits_adv"] = model.logits_from_embedding(emb_adv)
        return out

    with no_weight_grads(model):
        adv = attacks.pgd(model, images, labels, atk["eps"], atk["step_size"], atk["steps"], "ce", generator=generator)

    if method in tga.METHODS:
        return tga_step(method, model, reference, adv, images, labels, params)
    if method == "pmg_aft":
        both = model(torch.cat([adv, images]))          # one pass for the adversarial and clean batch
        logits_adv, logits_clean = both.split(len(images))
        with torch.no_grad():
            logits_ref_adv = reference(adv)
        cfg = params["pmg_aft"]
        out = losses.pmg_aft_loss(logits_adv, logits_ref_adv, logits_clean, labels, cfg["alpha"], cfg["beta"],
                                  cfg["kl_reduction"])
    else:
        logits_adv = model(adv)
        if method == "tecoa":
            out = losses.tecoa_loss(logits_adv, labels)
        else:
            with torch.no_grad():
                logits_ref = reference(images)
            if method in ("ucat", "kl_dir_forward"):
                u = params["ucat"]
                out = losses.ucat_loss(logits_adv, logits_ref, labels, model.logit_scale, u["tau_prime"], u["tau"],
                                       forward=method == "kl_dir_forward")
            elif method in ("kl_prob_forward", "kl_prob_reverse"):
                out = losses.prob_kl_ablation_loss(logits_adv, logits_ref, labels, params["ablation"]["weight"],
                                                   reverse=method == "kl_prob_reverse")
            else:
                raise ConfigError(f"methods: {method!r} is not a fine-tuning method")
    out["logits_adv"] = logits_adv
    return out


def tga_step(method: str, model, reference, adv, images, labels, params: dict) -> dict[str, torch.Tensor]:
    """TGA-ZSR / Comp-TGA after the attack: one pass of the trained model over the adversarial and
    the clean batch (embeddings and tokens: the logits and both attention maps), one no-grad pass
    of the reference on the clean batch.  The model must be ``tga.prepare``d."""
    cfg, complementary, n = params[method], tga.METHODS[method], len(images)
    emb, tokens = tga.embed_with_tokens(model, torch.cat([adv, images]))
    logits_adv = model.logits_from_embedding(emb[:n])
    att = tga.attention_maps(model, tokens, labels.repeat(2), complementary)
    with torch.no_grad():
        _, tokens_ref = tga.embed_with_tokens(reference, images)
        att_ref = tga.attention_maps(reference, tokens_ref, labels, complementary)
    out = losses.tga_loss(logits_adv, labels, att[:n], att[n:], att_ref, cfg["alpha"], cfg["beta"], cfg["distance"])
    out["logits_adv"] = logits_adv
    return out


IMAGENET_MEAN = (0.485, 0.456, 0.406)   # PMG_AFT.py:120-121
IMAGENET_STD = (0.229, 0.224, 0.225)


def method_attack(method: str, params: dict) -> dict:
    """The training attack: ``finetune.attack``, or PMG-AFT's own (``pmg_aft.attack``) when set."""
    if method == "pmg_aft" and params["pmg_aft"].get("attack"):
        return params["pmg_aft"]["attack"]
    return params["finetune"]["attack"]


def method_optimizer(method: str, params: dict) -> dict:
    """``finetune`` with the method's optimiser override (``<method>.optimizer``) applied, if any."""
    cfg = dict(params["finetune"])
    override = params[method].get("optimizer") if method in ("pmg_aft", "fare") else None
    if override:
        cfg.update(optimizer=override["name"], lr=override["lr"], momentum=override["momentum"],
                   weight_decay=override["weight_decay"])
    return cfg


def training_view(method: str, model: models.ZeroShotClassifier, params: dict) -> models.ZeroShotClassifier:
    """The classifier as the method's own code trains it.  PMG-AFT's code classifies with plain
    cosines (temperature 1, for its loss and its attack; PMG_AFT.py:658-668) of images normalised
    with ImageNet's mean/std (PMG_AFT.py:120-136).  Only ``visual`` is saved, so evaluation is unchanged."""
    if method != "pmg_aft":
        return model
    cfg = params["pmg_aft"]
    if cfg.get("logits", "scaled") == "cosine":
        model.logit_scale = 1.0
    if cfg.get("normalize", "clip") == "imagenet":
        model.mean.copy_(torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        model.std.copy_(torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
    return model


def select_after_epoch(selector: "selection.Selector", epoch: int, model, live) -> bool:
    """Score the epoch for ``finetune.select`` and log it; True = stop early (patience)."""
    was_training = model.training
    stop = selector.after_epoch(epoch, model.visual)
    model.train(was_training)
    for key, value in selector.history[-1].items():
        if key != "epoch":
            live.log_metric(f"select/{key}", value)
    return stop


# keys of the fine-tuning stage's parameters that only change bookkeeping, not the weights
NOT_IN_FINGERPRINT = ("finetune.checkpoint_every", "finetune.log_every")


def fingerprint_record(params: dict, method: str, backbone_path: Path, device: torch.device) -> dict:
    """Everything that decides the fine-tuned weights (:mod:`ucat.fingerprint`): the code and data
    files ``ucat.train`` runs, the stage's parameter keys (``keys.finetune_params``, what reruns it)
    less the bookkeeping in ``NOT_IN_FINGERPRINT``, the backbone's bytes, the fine-tuning set's
    verified manifest, the libraries and the device."""
    from . import config, keys
    from .data.integrity import sha256

    values = config.select(params, keys.finetune_params(method))
    for dotted in NOT_IN_FINGERPRINT:
        section, _, leaf = dotted.partition(".")
        if section in values:
            values[section] = {k: v for k, v in values[section].items() if k != leaf}
    inputs = {"backbone": sha256(backbone_path), "data": data.verified_digest(params["data"]["finetune"], params)}
    if params["finetune"].get("select") == "best_on_test":      # the selected epoch depends on the test sets
        values["data.datasets"] = list(params["data"]["datasets"])
        inputs.update({f"selection:{d}": data.verified_digest(d, params) for d in params["data"]["datasets"]})
    return fingerprint.record("finetune", code=("ucat.train",), params=values, inputs=inputs,
                              device=device, extra={"method": method})


def make_optimizer(params_iter, cfg: dict, device: torch.device) -> torch.optim.Optimizer:
    fast = {"fused": True} if device.type == "cuda" else {"foreach": True}
    if cfg["optimizer"] == "sgd":
        return torch.optim.SGD(params_iter, lr=cfg["lr"], momentum=cfg["momentum"],
                               weight_decay=cfg["weight_decay"], **fast)
    return torch.optim.AdamW(params_iter, lr=cfg["lr"], weight_decay=cfg["weight_decay"], **fast)


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))


def _truncate_logs(live_dir: Path, step: int) -> None:
    """Drop dvclive rows past ``step`` (logged after the checkpoint a resumed run starts from)."""
    for tsv in live_dir.glob("plots/metrics/**/*.tsv"):
        with open(tsv, newline="") as fh:
            rows = list(csv.reader(fh, delimiter="\t"))
        kept = [rows[0]] + [r for r in rows[1:] if r and int(r[0]) <= step]
        with atomic_path(tsv) as tmp, open(tmp, "w", newline="") as fh:
            csv.writer(fh, delimiter="\t", lineterminator="\n").writerows(kept)   # dvclive's own endings


def _load_state(path: Path, fp: str, record: dict) -> dict | None:
    """The resume state if it was made from exactly these inputs; None (with a one-line notice
    saying what differs) if from others: training then starts again and overwrites it."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path}: unreadable or truncated training checkpoint ({exc}); delete it to restart") from None
    if state.get("format") != TRAIN_FORMAT or state.get("fingerprint") != fp:
        old = json.loads(state["record"]) if isinstance(state.get("record"), str) else None
        print(f"note: {path} was made from other inputs ({fingerprint.differences(old, record)}): not resumed, "
              f"training starts again", file=sys.stderr)
        return None
    return state


def finetune(params: dict, method: str, backbone_path: str | Path, out_path: str | Path,
             checkpoint_dir: str | Path, live_dir: str | Path, device: torch.device,
             progress: bool = True, stop_after_steps: int | None = None, use_cache: bool = True) -> dict:
    """Fine-tune ``method`` from ``backbone_path``; write the CLIP checkpoint ``out_path``.

    ``use_cache=False`` recomputes the class text features instead of reading them from the cache.

    ``stop_after_steps`` ends the run after that global step (checkpointed), as a kill
    would: used to test resumption.
    """
    spec = methods.get(method)
    backbone_path, checkpoint_dir, live_dir = Path(backbone_path), Path(checkpoint_dir), Path(live_dir)
    with training_lock(checkpoint_dir):
        if not spec.finetuned:
            return identity(backbone_path, out_path, live_dir)
        return _finetune(params, method, backbone_path, Path(out_path), checkpoint_dir, live_dir, device,
                         progress, stop_after_steps, use_cache)


class LockedError(UcatError):
    """Another process is fine-tuning into the same outputs."""


@contextlib.contextmanager
def training_lock(checkpoint_dir: Path):
    """An exclusive, non-blocking lock on ``checkpoint_dir/.lock`` (released when the process ends)."""
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    fh = open(checkpoint_dir / ".lock", "a")
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockedError(f"{checkpoint_dir}: another `ucat finetune` is running on these outputs; "
                              "wait for it or stop it") from None
        yield
    finally:
        fh.close()


def identity(backbone_path: Path, out_path, live_dir: Path) -> dict:
    """``clip``'s "fine-tuning": the backbone's weights, copied, and an empty curve.

    Every method is then evaluated from ``models/<bb>/…/<method>/model.pt`` (one path pattern
    for both engines' templated stages).  The curve is a header without rows, not an empty
    folder: git does not keep empty folders, and `dvc plots diff` would miss it at HEAD."""
    with atomic_path(out_path) as tmp:
        shutil.copyfile(backbone_path, tmp)
    write_text(live_dir / paths.TRAIN_CURVE.format(name="loss"), "step\tloss\n")
    meta = {"step": 0}
    write_json(live_dir / "metrics.json", meta)
    return meta


def _publish_curves(state_live: Path, live_dir: Path, step: int) -> None:
    """Copy the curves (kept beside the resume state) to the declared outputs, atomically per file."""
    live_dir.mkdir(parents=True, exist_ok=True)
    plots = live_dir / "plots"
    tmp = live_dir / ".plots.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    if (state_live / "plots").is_dir():
        shutil.copytree(state_live / "plots", tmp)
    else:
        tmp.mkdir()
    shutil.rmtree(plots, ignore_errors=True)
    os.replace(tmp, plots)
    if (state_live / "metrics.json").is_file():
        with atomic_path(live_dir / "metrics.json") as out:
            shutil.copyfile(state_live / "metrics.json", out)
    else:  # a checkpoint from before the curves moved beside it
        write_json(live_dir / "metrics.json", {"step": step})


def _finetune(params, method, backbone_path, out_path, checkpoint_dir, live_dir, device, progress, stop_after_steps,
              use_cache):
    spec = methods.get(method)
    cfg = params["finetune"]
    clip_model, arch, _ = models.load_checkpoint(backbone_path)
    image_size = clip_model.visual.image_size[0]
    dataset, names = data.open_finetune(params, image_size)
    model = textcache.classifier(clip_model, arch, prompts.class_prompts(params["data"]["finetune"], params, names),
                                 device, use_cache)
    model = training_view(method, model, params)
    if method in tga.METHODS:   # tokens from the image tower; Comp-TGA's non-class prompts
        tga.prepare(model, tga.negative_text_features(clip_model, arch, params, names, device, use_cache)
                    if tga.METHODS[method] else None)
    reference = model.frozen_copy() if spec.needs_reference else None
    selector = selection.Selector(params, clip_model, arch, model.visual, device)
    model.train()
    patch_embed.apply(model.visual, params["run"]["patch_embed"])   # class swap: state_dict keys unchanged
    if reference is not None:
        patch_embed.apply(reference.visual, params["run"]["patch_embed"])
    if models.compile_wanted(params["run"]["compile"], device):
        model.visual.compile()  # in place: state_dict keys (checkpoints) unchanged
        if reference is not None:
            reference.visual.compile()

    steps_per_epoch = math.ceil(len(dataset) / cfg["batch_size"])
    if cfg["max_steps_per_epoch"]:
        steps_per_epoch = min(steps_per_epoch, cfg["max_steps_per_epoch"])
    total = steps_per_epoch * cfg["epochs"]
    opt = make_optimizer(model.visual.parameters(), method_optimizer(method, params), device)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(cfg["warmup_steps"], total))
    gen = torch.Generator(device=device).manual_seed(params["run"]["seed"] + 1)
    amp = models.autocast_dtype(params["run"]["precision"], device)

    record = fingerprint_record(params, method, backbone_path, device)
    fp = fingerprint.digest(record)
    ckpt_path = checkpoint_dir / "last.pt"
    state = _load_state(ckpt_path, fp, record)
    step = 0
    if state is not None:
        model.visual.load_state_dict(state["visual"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        gen.set_state(state["attack_rng"])
        step = state["step"]
        selector.load_state_dict(state.get("selection"))
    state_live = checkpoint_dir / "live"      # the curves live beside the resume state
    if state is None:
        shutil.rmtree(state_live, ignore_errors=True)
    elif step >= total:
        return _finish(clip_model, model, arch, method, step, fp, out_path, state_live, live_dir, selector)
    else:
        _truncate_logs(state_live, step)

    def save_state():
        with atomic_path(ckpt_path) as tmp:
            torch.save({"format": TRAIN_FORMAT, "fingerprint": fp, "record": json.dumps(record, sort_keys=True),
                        "step": step, "method": method,
                        "visual": model.visual.state_dict(), "optimizer": opt.state_dict(),
                        "scheduler": sched.state_dict(), "attack_rng": gen.get_state(),
                        "selection": selector.state_dict()}, tmp)

    from dvclive import Live

    live = Live(str(state_live), resume=state is not None, save_dvc_exp=False, dvcyaml=None, report=None)
    bar = progress_bar(total=total, initial=step, desc=f"finetune {method}", disable=not progress, unit="step")
    stop = selector.active and selector.stopped(step, steps_per_epoch)
    while step < total and not stop:
        epoch, in_epoch = divmod(step, steps_per_epoch)
        order = epoch_order(len(dataset), params["run"]["seed"], epoch)
        batches = [order[i * cfg["batch_size"]:(i + 1) * cfg["batch_size"]].tolist()
                   for i in range(in_epoch, steps_per_epoch)]
        loader = DataLoader(dataset, batch_sampler=batches, num_workers=params["data"]["num_workers"],
                            pin_memory=device.type == "cuda")
        for images, labels in loader:
            images = images.to(device, non_blocking=True)
            labels = labels.to(device, non_blocking=True)
            with models.autocast(amp, device):
                out = method_step(method, model, reference, images, labels, params, gen)
            loss_value = float(out["loss"].detach())
            if not math.isfinite(loss_value):  # stop before the update: the last checkpoint stays good
                bar.close()
                raise TrainingError(f"finetune {method}: loss is {loss_value} at step {step + 1} of {total} "
                                    f"(epoch {epoch + 1}); stopped before updating the weights, checkpoints in "
                                    f"{checkpoint_dir} untouched (try a lower finetune.lr)")
            opt.zero_grad(set_to_none=True)
            out["loss"].backward()
            opt.step()
            sched.step()
            step += 1
            if step % cfg["log_every"] == 0 or step == total:
                live.step = step
                for key in ("loss", "ce", "align", "lar", "gac"):   # lar, gac: TGA's two attention terms
                    if key in out:
                        live.log_metric(f"train/{key}", float(out[key].detach()))
                live.log_metric("train/adv_acc", float((out["logits_adv"].argmax(-1) == labels).float().mean()))
                live.log_metric("train/lr", sched.get_last_lr()[0])
            bar.update(1)
            bar.set_postfix(loss=f"{loss_value:.3f}")
            if selector.active and step % steps_per_epoch == 0:
                live.step = step
                stop = select_after_epoch(selector, step // steps_per_epoch, model, live)
            if step % cfg["checkpoint_every"] == 0 or step % steps_per_epoch == 0:
                save_state()
            if stop:
                break
            if stop_after_steps is not None and step >= stop_after_steps:
                live.end()
                return {"stopped_at": step}
    bar.close()
    live.end()
    return _finish(clip_model, model, arch, method, step, fp, out_path, state_live, live_dir, selector)


def _finish(clip_model, model, arch, method, step, fp, out_path, state_live, live_dir, selector) -> dict:
    """Write the fine-tuned checkpoint and publish the curves: a function of the final state only
    (the best epoch's weights under ``finetune.select``)."""
    clip_model.visual.load_state_dict(selector.final_weights(model.visual.state_dict()))
    meta = {"method": method, "steps": step, "fingerprint": fp,
            **({"selection": selector.summary()} if selector.active else {})}
    models.save_checkpoint(out_path, clip_model, arch, meta)
    _publish_curves(state_live, live_dir, step)
    return meta
