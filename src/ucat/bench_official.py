"""``ucat bench --baseline official``: the official UCAT (and TGA-ZSR / Comp-TGA) loops' structure beside the project's.

Written from a reading of the official ``main.py``/``attacks.py`` (no code taken from it), to time
what its structure costs on the same random-weight CLIP in the same run:

- fp16 autocast with ``GradScaler`` (on CPU: fp32 and a disabled scaler, since fp16 autocast is not
  a CPU path; the CPU ratio is informative only);
- every forward runs the text tower on all class prompts (``clip(images, text_tokens)``);
- the 2-step training PGD calls ``loss.backward()`` on the full model, so every parameter, text tower
  included, gets a weight gradient (in the official loop they even accumulate into ``.grad`` before
  the training backward: ``optimizer.zero_grad()`` runs before the attack);
- after the attack three forwards: adversarial on the trained model, clean on the trained model
  with gradients (its output is not used by the loss), clean on the frozen model without;
- loss = CE + λ·KL(Dir(α_adv) ‖ Dir(α_ori)) through ``torch.distributions`` (cast to fp32 here:
  fp16 lgamma/digamma would only add overflow), ``scaler.scale(loss).backward()``, SGD step;
- evaluation: PGD-100 with the same full-model backward and per-step text encoding, then a no-grad
  forward on the adversarial images.

TGA-ZSR and Comp-TGA (github.com/zhyblue424/TGA-ZSR, ``TGA-ZSR.py``/``Comp-TGA.py`` ``train()``, read the
same way) share that step's frame (fp16 + GradScaler, the same attack with its full-model backward) and
differ after the attack: the class (and, Comp-TGA, non-class) prompts encoded once per step without
gradient; an adversarial forward of the trained model for the logits, a second one on the same images
for its attention map, a clean forward of the frozen model and one of the trained model for theirs,
all four with autograd graphs (the frozen model's weights get gradients too: its map is not built
under ``no_grad``); CE + Alpha·‖A_adv − A_orig‖ + Beta·‖A_clean − A_orig‖ (batch-mean ℓ2).

The project's side is :func:`ucat.bench.finetune_workload` / :func:`ucat.bench.pgd_workload`, the
pipeline's own fast path, on a classifier built from the same CLIP (text features encoded once).
"""

from __future__ import annotations

import copy
import math
import statistics
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch.distributions import Dirichlet, kl_divergence

from . import bench, losses, models, tga
from .errors import ConfigError
from .methods import METHODS as REGISTRY

GPU_BATCH, GPU_CLASSES = 256, 200        # the paper: TinyImageNet, batch 256
CPU_BATCH = 32
CPU_CLASSES = round(CPU_BATCH * GPU_CLASSES / GPU_BATCH)   # same class-to-batch proportion (25)
MODELS = {"ViT-B-32": {"name": "ViT-B-32-quickgelu", "overrides": {}}}
METHODS = ("ucat", "tga_zsr", "comp_tga")   # the loops with an official structure here


def build_clip(kind: str, params: dict, device: torch.device, seed: int = 0) -> tuple[torch.nn.Module, dict]:
    """The full random-weight CLIP (both towers): ViT-B-32-quickgelu or the demo architecture."""
    torch.manual_seed(seed)
    arch = models.demo_arch(params["backbone"]["demo"]) if kind == "demo" else MODELS[kind]
    return models.create_clip(arch).to(device), arch


class OfficialLoop:
    """The official training step and PGD evaluation, structure for structure."""

    def __init__(self, clip, arch, classnames, params, device):
        self.device = device
        self.cuda = device.type == "cuda"
        self.amp = torch.float16 if self.cuda else None
        self.model = copy.deepcopy(clip).train()
        self.model.requires_grad_(True)                  # the whole CLIP, text tower included
        self.frozen = copy.deepcopy(clip).eval()
        self.tokens = models.tokenize(clip, arch, [f"This is a photo of a {c}" for c in classnames]).to(device)
        cfg = clip.visual.preprocess_cfg
        self.mean = torch.tensor(cfg["mean"], device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(cfg["std"], device=device).view(1, 3, 1, 1)
        ft = params["finetune"]
        self.opt = torch.optim.SGD(self.model.visual.parameters(), lr=ft["lr"], momentum=ft["momentum"],
                                   weight_decay=ft["weight_decay"])
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.cuda)
        self.tc = float(params["ucat"]["tau_prime"])
        # the official lambda: tau / exp(softplus(2 / target_concentration))
        self.lam = float(params["ucat"]["tau"]) / math.exp(F.softplus(torch.tensor(2 / self.tc)).item())

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp or torch.float32, enabled=self.amp is not None)

    def logits(self, clip, x01):
        """``clip(images, text_tokens)``: both towers every call, logit_scale · cosine."""
        img = F.normalize(clip.encode_image((x01 - self.mean) / self.std), dim=-1)
        txt = F.normalize(clip.encode_text(self.tokens), dim=-1)
        return clip.logit_scale.exp() * img @ txt.t()

    def pgd(self, clip, x, y, eps, alpha, steps):
        """The official ``attack_pgd``: random start, ``loss.backward()`` through every weight."""
        delta = torch.empty_like(x).uniform_(-eps, eps)
        delta = torch.clamp(delta, -x, 1 - x).requires_grad_(True)
        for _ in range(steps):
            loss = F.cross_entropy(self.logits(clip, x + delta), y)
            loss.backward()
            d = torch.clamp(delta + alpha * delta.grad.detach().sign(), -eps, eps)
            delta.data = torch.clamp(d, -x, 1 - x)
            delta.grad.zero_()
        return delta.detach()

    def train_step(self, x, y, eps, alpha, steps):
        self.opt.zero_grad()
        with self._autocast():
            delta = self.pgd(self.model, x, y, eps, alpha, steps)
            out = self.logits(self.model, x + delta)
            self.logits(self.model, x)                    # clean forward with gradients, unused by the loss
            with torch.no_grad():
                out_ori = self.logits(self.frozen, x)
            scale = self.model.logit_scale.exp().detach()
            a_adv = 1e-6 + torch.exp((out.float() / scale + 1) / self.tc)
            a_ori = 1e-6 + torch.exp((out_ori.float() / scale + 1) / self.tc)
            kl = kl_divergence(Dirichlet(a_adv), Dirichlet(a_ori)).mean()
            loss = F.cross_entropy(out, y) + self.lam * kl
        self.scaler.scale(loss).backward()
        self.scaler.step(self.opt)
        self.scaler.update()
        self.model.logit_scale.data.clamp_(0, 4.6052)
        return loss

    def pgd_eval(self, x, y, eps, alpha, steps):
        with self._autocast():
            delta = self.pgd(self.model, x, y, eps, alpha, steps)
            with torch.no_grad():
                return self.logits(self.model, x + delta)


class OfficialTGALoop(OfficialLoop):
    """TGA-ZSR.py:305-350 / Comp-TGA.py:317-368: the training step after the shared attack."""

    def __init__(self, clip, arch, classnames, params, device, method: str):
        super().__init__(clip, arch, classnames, params, device)
        cfg = params[method]
        self.alpha, self.beta, self.distance = cfg["alpha"], cfg["beta"], cfg["distance"]
        self.complementary = tga.METHODS[method]
        if self.complementary:   # Comp-TGA.py:235, 322
            self.no_tokens = models.tokenize(clip, arch, [cfg["negative_template"].format(c) for c in classnames]).to(device)
        for net in (self.model, self.frozen):
            net.visual.output_tokens = True            # replace/model.py:226-250 returns every token
        self.frozen.requires_grad_(True)               # deepcopy of the model: its weights require gradients

    def encode(self, clip, x01):
        """``encode_image``: the projected class token and patch tokens."""
        pooled, patches = clip.visual((x01 - self.mean) / self.std)
        return pooled, torch.cat([pooled.unsqueeze(1), patches @ clip.visual.proj], dim=1)

    def logits(self, clip, x01):
        img = F.normalize(self.encode(clip, x01)[0], dim=-1)
        txt = F.normalize(clip.encode_text(self.tokens), dim=-1)
        return clip.logit_scale.exp() * img @ txt.t()

    def attention(self, clip, x01, text, no_text):
        """``attention_map`` / ``attention_map_comp``: a forward of its own."""
        tokens = self.encode(clip, x01)[1]
        grid, size = clip.visual.grid_size, clip.visual.image_size
        maps = tga.text_attention(tokens, text, grid, size)
        if no_text is not None:
            maps = maps * (1 - tga.text_attention(tokens, no_text, grid, size))
        return maps

    def train_step(self, x, y, eps, alpha, steps):
        self.opt.zero_grad()
        with self._autocast():
            with torch.no_grad():
                text = F.normalize(self.model.encode_text(self.tokens), dim=-1)
                no_text = F.normalize(self.model.encode_text(self.no_tokens), dim=-1) if self.complementary else None
            delta = self.pgd(self.model, x, y, eps, alpha, steps)
            adv = x + delta
            img = F.normalize(self.encode(self.model, adv)[0], dim=-1)
            output = self.model.logit_scale.exp() * img @ text.t()
            t, nt = text[y], (no_text[y] if no_text is not None else None)
            attack_tar = self.attention(self.model, adv, t, nt)
            clean_ori = self.attention(self.frozen, x, t, nt)
            clean_tar = self.attention(self.model, x, t, nt)
            loss = (F.cross_entropy(output, y) + self.alpha * losses.attention_distance(attack_tar, clean_ori, self.distance)
                    + self.beta * losses.attention_distance(clean_tar, clean_ori, self.distance))
        self.scaler.scale(loss).backward()
        self.scaler.step(self.opt)
        self.scaler.update()
        self.model.logit_scale.data.clamp_(0, 4.6052)
        return loss


def _phase(fn: Callable[[], Any], batch: int, repeats: int, device: torch.device) -> dict:
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    times = bench.timed(fn, repeats, device, warmup=2 if cuda else 1)
    sec = statistics.median(times)
    row = {"batch": batch, "seconds_median": sec, "seconds": times, "images_per_s": batch / sec}
    if cuda:
        row["peak_memory_bytes"] = int(torch.cuda.max_memory_allocated(device))
    return row


def run_baseline(params: dict, device: torch.device, model: str = "auto", repeats: int = 3,
                 batch: int | None = None, classes: int | None = None, pgd_steps: int | None = None,
                 compile: bool = False, methods: tuple[str, ...] = METHODS,
                 log: Callable[[str], None] = print) -> dict:
    """Time both loops on one CLIP; returns the JSON-able result (``rows`` is the printed table).

    ``methods``: the fine-tuning steps to time (of :data:`METHODS`); ``compile``: also the project's
    side with ``torch.compile(model.visual)`` (``run.compile``), in the same run."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ConfigError(f"--methods: {', '.join(unknown) or 'none given'}: --baseline official times "
                          f"{', '.join(METHODS)}")
    device = torch.device(device)
    cuda = device.type == "cuda"
    kind = model if model != "auto" else ("ViT-B-32" if cuda else "demo")
    batch = batch or (GPU_BATCH if cuda else CPU_BATCH)
    classes = classes or (GPU_CLASSES if cuda else round(batch * GPU_CLASSES / GPU_BATCH))
    steps = pgd_steps or (bench.GPU_PGD_STEPS if cuda else bench.CPU_PGD_STEPS)
    attack = dict(bench.PAPER_ATTACK) if cuda else dict(params["finetune"]["attack"])
    eps, alpha = attack["eps"] / 255, attack["step_size"] / 255
    amp = models.autocast_dtype(params["run"]["precision"], device)

    clip, arch = build_clip(kind, params, device, params["run"]["seed"])
    names = [f"class {i}" for i in range(classes)]
    log(f"bench --baseline official: {kind} on {bench._device_name(device)}, batch {batch}, {classes} classes, "
        f"train PGD-{attack['steps']}, eval PGD-{steps}")
    net = models.ZeroShotClassifier.from_clip(clip, arch, names, ["This is a photo of a {}"]).to(device)
    net.logit_scale = float(clip.logit_scale.exp().detach())
    no_flops = {"finetune_step": 0.0, "pgd_eval": 0.0}
    x, y = bench.random_batch(batch, net.image_size, classes, device, seed=batch)

    def project(workload: str, compiled: bool, method: str = "ucat") -> dict:
        """The pipeline's own step (eager or compiled image tower), timed like the official one."""
        wl = (bench.finetune_workload(net, params, attack, device, amp, no_flops, compiled, method)
              if workload.startswith("finetune") else bench.pgd_workload(net, device, amp, steps, no_flops, compiled))
        log(f"  {workload_label(workload, steps)}: project{', compiled' if compiled else ''} ...")
        row = _phase(wl.make(batch), batch, repeats, device)
        wl.release()
        return row

    phases: dict[str, dict] = {}
    finetunes = [(finetune_workload(m), m) for m in methods]
    for w, method in finetunes:
        phases[f"{w}_project"] = project(w, False, method)
        official = (OfficialLoop(clip, arch, names, params, device) if method == "ucat"
                    else OfficialTGALoop(clip, arch, names, params, device, method))
        log(f"  {workload_label(w, steps)}: official structure ...")
        phases[f"{w}_official"] = _phase(lambda: official.train_step(x, y, eps, alpha, attack["steps"]),
                                         batch, repeats, device)
        del official
        if cuda:
            torch.cuda.empty_cache()
    official = OfficialLoop(clip, arch, names, params, device)
    phases["pgd_eval_project"] = project("pgd_eval", False)
    log(f"  PGD-{steps} eval: official structure ...")
    phases["pgd_eval_official"] = _phase(lambda: official.pgd_eval(x, y, 1 / 255, 1 / 255, steps), batch, repeats, device)
    del official
    if compile:
        for w, method in finetunes:
            phases[f"{w}_project_compiled"] = project(w, True, method)
        phases["pgd_eval_project_compiled"] = project("pgd_eval", True)

    workloads = [w for w, _ in finetunes] + ["pgd_eval"]
    ratio = {f"{w}{tag}": phases[f"{w}_project{tag}"]["images_per_s"] / phases[f"{w}_official"]["images_per_s"]
             for w in workloads for tag in ("", "_compiled") if f"{w}_project{tag}" in phases}
    result = {"meta": {"device": device.type, "device_name": bench._device_name(device), "torch": torch.__version__,
                       "model": kind, "arch": arch["name"], "batch": batch, "classes": classes,
                       "train_attack": attack, "pgd_eval_steps": steps, "repeats": repeats,
                       "methods": list(methods), "workloads": workloads,
                       "project_autocast": bench._dtype_name(amp),
                       "official_autocast": "float16 + GradScaler" if cuda else "float32 (CPU: no fp16 autocast)",
                       "weights": "random"},
              "phases": phases, "speedup": ratio,
              "gpu": "measured" if cuda else bench.UNMEASURED_GPU}
    if not cuda:
        result["meta"]["note"] = "CPU run: small sizes, the ratio is informative only; GPU figures unmeasured"
    result["rows"] = baseline_rows(result)
    return result


def finetune_workload(method: str) -> str:
    """Phase-key stem of a method's fine-tuning step (UCAT's keeps the plain ``finetune``)."""
    return "finetune" if method == "ucat" else f"finetune_{method}"


def workload_label(workload: str, steps: int) -> str:
    if workload == "pgd_eval":
        return f"PGD-{steps} eval"
    method = workload.partition("_")[2] or "ucat"
    return "fine-tuning step" + ("" if method == "ucat" else f" {REGISTRY[method].label}")


def baseline_rows(result: dict) -> list[dict]:
    steps = result["meta"]["pgd_eval_steps"]
    rows = []
    for w in result["meta"].get("workloads", ("finetune", "pgd_eval")):
        label = workload_label(w, steps)
        for side in ("official", "project", "project_compiled"):
            ph = result["phases"].get(f"{w}_{side}")
            if ph is None:
                continue
            name = side.replace("_", " ")
            rows.append({"name": f"{label} {name} b{ph['batch']}", "value": ph["images_per_s"], "unit": "images/s"})
            if "peak_memory_bytes" in ph:
                rows.append({"name": f"{label} {name} peak memory", "value": ph["peak_memory_bytes"] / 2 ** 30,
                             "unit": "GiB"})
        for tag in ("", "_compiled"):
            if f"{w}{tag}" in result["speedup"]:
                rows.append({"name": f"{label} speed-up project{tag.replace('_', ' ')}/official",
                             "value": result["speedup"][f"{w}{tag}"], "unit": "x"})
    return rows


def main(args) -> int:
    """``ucat bench --baseline official``: the official loops' structure beside the project's step;
    prints the table and writes ``args.out`` (JSON, atomically)."""
    from .io import write_json

    params, device, log = bench.setup(args)
    result = run_baseline(params, device, model=args.model, repeats=args.repeats, batch=getattr(args, "batch", None),
                          classes=getattr(args, "classes", None), pgd_steps=getattr(args, "pgd_steps", None),
                          compile=args.compile, methods=bench.parse_methods(getattr(args, "methods", None)), log=log)
    print(bench.format_rows(result))
    write_json(args.out, result)
    print(f"wrote {args.out}")
    return 0
