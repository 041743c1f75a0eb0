"""``ucat bench``: throughput, FLOP utilisation, memory and numerics of the fast path.

Run by hand (never in CI).  On the current device (CUDA when available, else CPU) it builds a
:class:`~ucat.models.ZeroShotClassifier` directly from an open_clip image tower with random
weights and random unit-norm class features (no text tower, no download) and measures, each
as the median of ``repeats`` timed repetitions after warm-up:

- ``finetune``: one fine-tuning step of each of ``methods`` (UCAT, TGA-ZSR and Comp-TGA by
  default) exactly as the training loop runs it (:func:`ucat.train.method_step` under the
  pipeline's autocast, backward, the optimiser of :func:`ucat.train.make_optimizer`), at the
  paper's batch 256 (UCAT also at the largest batch that fits on GPU, doubling until CUDA OOM),
  at batch 64 on CPU;
- ``pgd_eval``: PGD-100 at eps 1/255 (10 steps on CPU) then a no-grad forward, as
  :mod:`ucat.evaluate` runs a cell;
- ``caa_eval``, ``a3_eval``: the official code's CAA and A³ (:mod:`ucat.attacks_extra`) with the
  same steps and ε and the rest of their ``evaluate`` sections, then a no-grad forward.  They stop
  attacking a sample once it is fooled, so their cost depends on the model: the labels are the
  model's own clean predictions (every sample starts correct) and each row reports the images
  forwarded per input image (PGD: steps + 1), counted, with the FLOPs derived from that count;
- model FLOPs per image (``torch.utils.flop_counter``), achieved TFLOP/s and its fraction of
  the device's own matmul rate measured in the same run (bf16 on GPU, the compute dtype on CPU)
  and of the datasheet's dense bf16 peak (:mod:`ucat.datasheet`; "no datasheet entry" otherwise);
- peak GPU memory and the GPU busy fraction (profiler kernel time / wall time);
- with ``compile=True`` the same figures with ``torch.compile(model.visual)``;
- numerics on the demo model: the fast path (bf16 autocast) vs plain fp32 on one fixed batch.

``ucat bench --variants`` (:mod:`ucat.bench_variants`) reuses these workloads for its side-by-side
table.  The function-level API is :func:`run_benchmark` (returns the JSON-able result);
:func:`main` is the CLI entry point, prints the table and writes the JSON atomically.
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import platform
import statistics
import time
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

from . import attacks, datasheet, models, tga, train
from .data.demo import DEMO_SETS
from .errors import ConfigError
from .methods import METHODS as REGISTRY

PAPER_BATCH = 256                 # the paper's fine-tuning batch
EVAL_EPS = 1                      # the paper's test budget (units of 1/255); attack step 1/255
EARLY_STOP_EVALS = {"caa": "CAA", "a3": "A³"}   # early-stopped evaluation attacks: workload prefix -> label
PAPER_ATTACK = {"eps": 1, "steps": 2, "step_size": 1}   # the paper's training attack (units of 1/255)
GPU_PGD_STEPS = 100
CPU_PGD_STEPS = 10
CPU_BATCH = 64
VIT_CLASSES = 200                 # TinyImageNet's label set
DEMO_CLASSES = len(DEMO_SETS["demo_train"].classnames)   # the demo fine-tuning label set
VIT_LOGIT_SCALE = 100.0
MAX_SEARCH_BATCH = 1 << 16
NUMERICS_TOL = {"argmax_agreement_min": 0.9, "abs_delta_accuracy_max": 0.1}
METHODS = ("ucat", "tga_zsr", "comp_tga")   # fine-tuning steps timed by default (the first: largest-batch search)
UNMEASURED_GPU = "unmeasured (no CUDA device)"


# ----------------------------------------------------------------------------- models

def build_classifier(kind: str, params: dict, device: torch.device, seed: int = 0) -> tuple[models.ZeroShotClassifier, dict]:
    """A zero-shot classifier with a random image tower and random unit-norm class features."""
    torch.manual_seed(seed)
    if kind == "demo":
        arch = models.demo_arch(params["backbone"]["demo"])
        classes, scale = DEMO_CLASSES, VIT_LOGIT_SCALE
    elif kind == "ViT-B-32":
        arch = {"name": "ViT-B-32-quickgelu", "overrides": {}}
        classes, scale = VIT_CLASSES, VIT_LOGIT_SCALE
    else:
        raise ConfigError(f"--model: unknown value {kind!r}; allowed: auto, demo, ViT-B-32")
    with models.quiet_random_init():   # random weights are the point here
        clip = models.create_clip(arch)
    visual = clip.visual
    del clip  # the text tower is not needed: class features are random
    g = torch.Generator().manual_seed(seed + 1)
    feats = F.normalize(torch.randn(classes, visual.output_dim, generator=g), dim=-1)
    cfg = visual.preprocess_cfg
    net = models.ZeroShotClassifier(visual, feats, scale, cfg["mean"], cfg["std"]).to(device)
    return net, arch


def method_classifier(net: models.ZeroShotClassifier, method: str, seed: int = 0) -> models.ZeroShotClassifier:
    """A copy of ``net`` as ``method``'s fine-tuning uses it: TGA methods get the token output and
    (Comp-TGA) random unit-norm non-class prompt features, as the pipeline's ``tga.prepare``."""
    model = copy.deepcopy(net)
    if method in tga.METHODS:
        negative = None
        if tga.METHODS[method]:
            g = torch.Generator().manual_seed(seed + 2)
            negative = F.normalize(torch.randn(model.class_features.shape, generator=g), dim=-1)
        tga.prepare(model, negative)
    return model


def step_key(method: str) -> str:
    """Key of a method's fine-tuning-step FLOPs in :func:`model_flops` (``finetune_step`` is UCAT's)."""
    return "finetune_step" if method == "ucat" else f"finetune_step_{method}"


def random_batch(n: int, size: int, classes: int, device: torch.device, seed: int = 0):
    g = torch.Generator(device=device).manual_seed(seed)  # made on the device: no host copy of big batches
    x = torch.rand(n, 3, size, size, generator=g, device=device)
    y = torch.randint(classes, (n,), generator=g, device=device)
    return x, y


# ----------------------------------------------------------------------------- FLOPs

def _cpu_sdpa(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _cpu_sdpa_backward(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


def _flop_mapping() -> dict:
    """FLOP formulas torch's counter lacks: the CPU flash-attention kernels SDPA dispatches to."""
    ops = torch.ops.aten
    mapping = {}
    if hasattr(ops, "_scaled_dot_product_flash_attention_for_cpu"):
        mapping[ops._scaled_dot_product_flash_attention_for_cpu] = _cpu_sdpa
    if hasattr(ops, "_scaled_dot_product_flash_attention_for_cpu_backward"):
        mapping[ops._scaled_dot_product_flash_attention_for_cpu_backward] = _cpu_sdpa_backward
    return mapping


class _GlobalOnly:
    """Stand-in for FlopCounterMode's module tracker: every op counts towards "Global" only."""

    parents = {"Global"}

    def __enter__(self):
        return self

    def __exit__(self, *args):
        return False


def count_flops(fn: Callable[[], Any]) -> int:
    """Matmul/conv FLOPs (2 per multiply-add) of ``fn()``, attention included.

    The fused no-grad MultiheadAttention fast path has no FLOP formula, so it is switched off
    while counting (the count is of the mathematical model, not of a kernel choice).
    """
    fast = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    counter = FlopCounterMode(display=False, custom_mapping=_flop_mapping())
    # Its per-module tracker hooks autograd in a way ``torch.autograd.grad`` (the attacks) rejects
    # ("A leaf node was passed to _will_engine_execute_node"); only the global total is needed.
    counter.mod_tracker = _GlobalOnly()
    try:
        with counter:
            fn()
    finally:
        torch.backends.mha.set_fastpath_enabled(fast)
    return int(counter.get_total_flops())


def model_flops(net: models.ZeroShotClassifier, params: dict, attack: dict, pgd_steps: int,
                device: torch.device, n: int = 2, methods: tuple[str, ...] = ("ucat",)) -> dict[str, float]:
    """Per-image FLOPs: forward, attack step (forward + backward to the input), each method's
    fine-tuning step (:func:`step_key`), PGD eval."""
    net = copy.deepcopy(net)
    x, y = random_batch(n, net.image_size, net.num_classes, device, seed=11)

    def forward():
        with torch.no_grad():
            net(x)

    def attack_step():
        xi = x.clone().requires_grad_(True)
        with train.no_weight_grads(net):
            torch.autograd.grad(F.cross_entropy(net(xi).float(), y, reduction="none").sum(), xi)

    fwd = count_flops(forward) / n
    atk = count_flops(attack_step) / n
    p = _with_attack(params, attack)
    out = {"forward": fwd, "attack_step": atk, "pgd_eval": pgd_steps * atk + fwd}
    for method in methods:
        model = method_classifier(net, method).train()
        reference = model.frozen_copy()

        def finetune_step():
            loss = train.method_step(method, model, reference, x, y, p, None)["loss"]
            loss.backward()

        out[step_key(method)] = count_flops(finetune_step) / n
    return out


def matmul_rate(device: torch.device, dtype: torch.dtype, repeats: int = 3) -> dict:
    """The device's own dense matmul rate in TFLOP/s: 8192^3 on GPU, 1024^3 on CPU."""
    n = 8192 if device.type == "cuda" else 1024
    inner = 20 if device.type == "cuda" else 4
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=g).to(device=device, dtype=dtype)
    b = torch.randn(n, n, generator=g).to(device=device, dtype=dtype)

    def run():
        for _ in range(inner):
            torch.mm(a, b)

    sec = median_time(run, repeats, device, warmup=1)
    return {"n": n, "dtype": _dtype_name(dtype), "tflops": 2 * n ** 3 * inner / sec / 1e12}


# ----------------------------------------------------------------------------- timing

def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], repeats: int, device: torch.device, warmup: int = 1) -> list[float]:
    """Wall seconds of ``repeats`` calls of ``fn`` after ``warmup`` calls, synchronised on GPU."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(max(1, repeats)):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return times


def median_time(fn, repeats, device, warmup=1) -> float:
    return statistics.median(timed(fn, repeats, device, warmup))


def merged_length(intervals: list[tuple[float, float]]) -> float:
    """Total length of the union of ``(start, end)`` intervals."""
    total, cur_s, cur_e = 0.0, None, None
    for s, e in sorted(intervals):
        if cur_e is None or s > cur_e:
            if cur_e is not None:
                total += cur_e - cur_s
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    if cur_e is not None:
        total += cur_e - cur_s
    return total


def busy_fraction(fn: Callable[[], Any], steps: int, device: torch.device, on: str = "cuda") -> dict:
    """Profile ``steps`` calls of ``fn``: busy seconds per step of device ``on`` (union of its
    kernel intervals) and that busy time over the profiled wall time."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on == "cuda" else [])
    want = DeviceType.CUDA if on == "cuda" else DeviceType.CPU
    _sync(device)
    with profile(activities=activities) as prof:
        t0 = time.perf_counter()
        for _ in range(steps):
            fn()
        _sync(device)
        wall = time.perf_counter() - t0
    intervals = [(e.time_range.start, e.time_range.end) for e in prof.events() if e.device_type == want]
    if not intervals:
        return {"busy_s_per_step": None, "profiled_fraction": None, "kernels": 0}
    busy = merged_length(intervals) / 1e6  # profiler times are in microseconds
    return {"busy_s_per_step": busy / steps, "profiled_fraction": busy / wall, "kernels": len(intervals)}


# ----------------------------------------------------------------------------- workloads

def _with_attack(params: dict, attack: dict) -> dict:
    p = copy.deepcopy(params)
    p["finetune"]["attack"] = dict(attack)
    return p


def _dtype_name(dtype: torch.dtype | None) -> str:
    return "float32" if dtype is None else str(dtype).replace("torch.", "")


class RowCounter(torch.nn.Module):
    """The model, counting the images it is run on: with autograd (attack steps) and without."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model
        self.reset()

    def reset(self) -> None:
        self.grad_rows = self.plain_rows = self.calls = 0

    def forward(self, x):
        if torch.is_grad_enabled():
            self.grad_rows += len(x)
        else:
            self.plain_rows += len(x)
        return self.model(x)

    def per_image(self, batch: int) -> dict:
        """Mean per input image over the calls so far: attack steps and images forwarded in all."""
        n = max(1, self.calls) * batch
        return {"gradient_steps": self.grad_rows / n, "forwards": (self.grad_rows + self.plain_rows) / n}


class Workload:
    """One measurable thing: ``make(batch)`` returns a zero-argument step function.

    With a ``counter`` (an attack evaluation) each row also reports the forwards per image; a
    ``flops_per_image`` of None is then derived from the counts (``step_flops``: FLOPs of one attack
    step and of one forward), for attacks whose work depends on when they stop.
    """

    def __init__(self, name: str, make: Callable[[int], Callable[[], Any]], flops_per_image: float | None,
                 release: Callable[[], None] = lambda: None, profile_steps: int = 3,
                 counter: RowCounter | None = None, step_flops: tuple[float, float] | None = None,
                 method: str | None = None):
        self.name, self.make, self.flops_per_image = name, make, flops_per_image
        self.release, self.profile_steps, self.method = release, profile_steps, method
        self.counter, self.step_flops = counter, step_flops


COMPILE_MODES = ("eager", "default", "max-autotune", "reduce-overhead")   # --variants: eager and torch.compile's modes
CUDA_ONLY_MODES = {"max-autotune": "needs CUDA (tunes Triton GPU kernels; on CPU the same as default)",
                   "reduce-overhead": "needs CUDA (CUDA graphs)"}


def compile_module(module: torch.nn.Module, compiled: bool | str) -> torch.nn.Module:
    """``compiled``: False (eager), True (torch.compile's default) or one of its ``mode`` names."""
    if not compiled or compiled == "eager":
        return module
    return torch.compile(module) if compiled is True else torch.compile(module, mode=compiled)


def _mark_step(compiled: bool | str) -> None:
    """CUDA graphs (reduce-overhead) reuse their output buffers: each step starts a new generation."""
    if compiled == "reduce-overhead":
        torch.compiler.cudagraph_mark_step_begin()


def finetune_workload(net, params, attack, device, amp, flops, compiled=False, method: str = "ucat") -> Workload:
    """``method``'s fine-tuning step as the training loop runs it (default UCAT); ``compiled``: as
    :func:`compile_module`."""
    model = method_classifier(net, method).train()
    model.visual.requires_grad_(True)
    reference = model.frozen_copy()
    opt = train.make_optimizer(model.visual.parameters(), params["finetune"], device)
    model.visual = compile_module(model.visual, compiled)
    reference.visual = compile_module(reference.visual, compiled)
    p = _with_attack(params, attack)
    gen = torch.Generator(device=device).manual_seed(1)

    def make(batch):
        x, y = random_batch(batch, model.image_size, model.num_classes, device, seed=batch)

        def step():
            _mark_step(compiled)
            with models.autocast(amp, device):
                out = train.method_step(method, model, reference, x, y, p, gen)
            opt.zero_grad(set_to_none=True)
            out["loss"].backward()
            opt.step()

        return step

    def release():
        opt.zero_grad(set_to_none=True)

    return Workload("finetune", make, flops.get(step_key(method), 0.0), release, profile_steps=3, method=method)


def _eval_model(net, compiled: bool) -> RowCounter:
    model = copy.deepcopy(net).eval()
    model.requires_grad_(False)  # as ucat.evaluate: attacks need input gradients only
    model.visual = compile_module(model.visual, compiled)
    return RowCounter(model)


def pgd_workload(net, device, amp, steps, flops, compiled=False) -> Workload:
    model = _eval_model(net, compiled)
    gen = torch.Generator(device=device).manual_seed(2)

    def make(batch):
        x, y = random_batch(batch, model.model.image_size, model.model.num_classes, device, seed=batch + 1)

        def step():
            _mark_step(compiled)
            model.calls += 1
            with models.autocast(amp, device):
                adv = attacks.pgd(model, x, y, EVAL_EPS, 1, steps, "ce", generator=gen)
                with torch.no_grad():
                    model(adv)

        return step

    return Workload("pgd_eval", make, flops["pgd_eval"], profile_steps=1, counter=model)


def early_stop_settings(params: dict, steps: int) -> dict:
    """The ``evaluate`` sections of CAA and A³ with the bench's steps and A³'s step at 1/255 (as PGD's)."""
    ev = params["evaluate"]
    return {"caa": {**ev["caa"], "steps": steps}, "a3": {**ev["a3"], "steps": steps, "step_size": 1}}


def early_stop_workload(attack: str, net, device, amp, steps, params, flops, compiled=False) -> Workload:
    """CAA or A³ at ε 1/255 then a no-grad forward; labels: the model's clean predictions."""
    model = _eval_model(net, compiled)
    settings = early_stop_settings(params, steps)
    gen = torch.Generator(device=device).manual_seed(2)

    def make(batch):
        x, _ = random_batch(batch, model.model.image_size, model.model.num_classes, device, seed=batch + 1)
        with torch.no_grad(), models.autocast(amp, device):
            y = model.model(x).argmax(-1)

        def step():
            _mark_step(compiled)
            model.calls += 1
            with models.autocast(amp, device):
                adv = attacks.run_attack(attack, model, x, y, EVAL_EPS, settings, model.model.num_classes, gen)
                with torch.no_grad():
                    model(adv)

        return step

    return Workload(f"{attack}_eval", make, None, profile_steps=1, counter=model,
                    step_flops=(flops["attack_step"], flops["forward"]))


def measure(wl: Workload, batch: int, repeats: int, device: torch.device, peak_tflops: float,
            compiled: bool | str, datasheet_tflops: float | None = None) -> dict:
    """Time ``wl`` at ``batch``; images/s, achieved TFLOP/s, fraction of the measured matmul rate and
    of the datasheet's dense bf16 peak (None: no datasheet entry), memory, busy fraction."""
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    step = wl.make(batch)
    if wl.counter is not None:
        wl.counter.reset()
    times = timed(step, repeats, device, warmup=3 if compiled == "reduce-overhead" else 2 if (cuda or compiled) else 1)
    sec = statistics.median(times)
    ips = batch / sec
    flops = wl.flops_per_image
    counts = wl.counter.per_image(batch) if wl.counter is not None else None
    if flops is None:
        step_flops, forward_flops = wl.step_flops
        flops = counts["gradient_steps"] * step_flops + (counts["forwards"] - counts["gradient_steps"]) * forward_flops
    tflops = flops * ips / 1e12
    row = {"workload": wl.name, **({"method": wl.method} if wl.method else {}), "compiled": compiled, "batch": batch,
           "seconds_median": sec,
           "seconds": times, "images_per_s": ips, "achieved_tflops": tflops,
           "fraction_of_matmul_peak": tflops / peak_tflops if peak_tflops else None,
           "fraction_of_datasheet_peak": tflops / datasheet_tflops if datasheet_tflops else None}
    if counts is not None:
        row.update(flops_per_image=flops, forwards_per_image=counts["forwards"],
                   gradient_steps_per_image=counts["gradient_steps"])
    if cuda:
        row["peak_memory_bytes"] = int(torch.cuda.max_memory_allocated(device))
        try:
            busy = busy_fraction(step, wl.profile_steps, device, "cuda")
            row["gpu_busy_fraction"] = (busy["busy_s_per_step"] / sec) if busy["busy_s_per_step"] else None
            row["gpu_busy_fraction_profiled"] = busy["profiled_fraction"]
        except Exception as exc:  # the profiler is optional; the timings stand without it
            row["gpu_busy_fraction"] = None
            row["gpu_busy_error"] = f"{type(exc).__name__}: {exc}"
    del step
    wl.release()
    return row


def largest_batch(wl: Workload, start: int, device: torch.device, log: Callable[[str], None]) -> int | None:
    """Double the batch from ``start`` until CUDA runs out of memory; the last batch that ran."""
    best, batch = None, start
    while batch <= MAX_SEARCH_BATCH:
        oom = False
        try:
            step = wl.make(batch)
            step()
            _sync(device)
            del step
        except torch.cuda.OutOfMemoryError:
            oom = True
        wl.release()
        step = None
        torch.cuda.empty_cache()
        if oom:
            log(f"  batch {batch}: out of memory")
            break
        log(f"  batch {batch}: fits")
        best, batch = batch, batch * 2
    return best


# ----------------------------------------------------------------------------- numerics

def cast_weights(net: models.ZeroShotClassifier, dtype: torch.dtype) -> models.ZeroShotClassifier:
    """The image tower's weights in ``dtype`` (in place), its input cast to match: no autocast needed.
    The class features, normalisation and logits stay fp32 (``logits_from_embedding`` casts)."""
    net.visual.to(dtype)
    net.visual.register_forward_pre_hook(lambda _module, args: tuple(a.to(dtype) for a in args))
    return net


NUMERICS_MODES = {"autocast": "bf16 autocast", "weights": "bf16 weights"}


def numerics(params: dict, device: torch.device, n: int = 64, pgd_steps: int = 3, eps255: float = 1,
             step255: float = 1, seed: int = 0, mode: str = "autocast") -> dict:
    """Demo model, fixed batch: bf16 (the fast path, CPU included) vs plain fp32.

    ``mode``: ``autocast`` (fp32 weights under bf16 autocast, the pipeline's GPU path) or ``weights``
    (the image tower cast to bf16, :func:`cast_weights`).  Labels are fp32's clean predictions; the
    short PGD (eps 1/255, the evaluation budget) is run separately in each precision from the same
    random start, and the robust accuracies compared.
    """
    net, _ = build_classifier("demo", params, device, seed)
    net.eval().requires_grad_(False)
    fast = torch.bfloat16
    fast_net, fast_amp = (cast_weights(copy.deepcopy(net), fast), None) if mode == "weights" else (net, fast)
    x, _ = random_batch(n, net.image_size, net.num_classes, device, seed=seed + 7)
    with torch.no_grad():
        ref = net(x).float()
        with models.autocast(fast_amp, device):
            low = fast_net(x).float()
    labels = ref.argmax(-1)  # fp32's clean predictions: fp32 clean accuracy is 1 by construction

    def robust_acc(model, dtype):
        gen = torch.Generator(device=device).manual_seed(seed + 3)
        with models.autocast(dtype, device):
            adv = attacks.pgd(model, x, labels, eps255, step255, pgd_steps, "ce", generator=gen)
            with torch.no_grad():
                pred = model(adv).argmax(-1)
        return float((pred == labels).float().mean())

    acc32, acc16 = robust_acc(net, None), robust_acc(fast_net, fast_amp)
    top2 = ref.topk(2, -1).values
    out = {"model": "demo", "batch": n, "fast_dtype": _dtype_name(fast), "mode": mode, "device": device.type,
           "max_abs_delta_logits": float((low - ref).abs().max()),
           "logit_range_fp32": float(ref.max() - ref.min()),
           "median_top2_margin_fp32": float((top2[:, 0] - top2[:, 1]).median()),
           "argmax_agreement": float((low.argmax(-1) == labels).float().mean()),
           "distinct_fp32_predictions": int(labels.unique().numel()),
           "pgd": {"steps": pgd_steps, "eps255": eps255, "step255": step255},
           "pgd_accuracy_fp32": acc32, "pgd_accuracy_fast": acc16,
           "abs_delta_pgd_accuracy": abs(acc32 - acc16), "tolerance": dict(NUMERICS_TOL)}
    out["within_tolerance"] = (out["argmax_agreement"] >= NUMERICS_TOL["argmax_agreement_min"]
                               and out["abs_delta_pgd_accuracy"] <= NUMERICS_TOL["abs_delta_accuracy_max"])
    return out


# ----------------------------------------------------------------------------- driver

def run_benchmark(params: dict, device: torch.device, model: str = "auto", repeats: int = 5,
                  batch: int | None = None, pgd_steps: int | None = None, compile: bool = False,
                  search: bool | None = None, numerics_batch: int = 64, methods: tuple[str, ...] = METHODS,
                  log: Callable[[str], None] = print) -> dict:
    """Measure everything; returns the JSON-able result (``rows`` is the printed table).

    ``batch``/``pgd_steps`` override the defaults (256 + largest batch and PGD-100 on GPU;
    64 and PGD-10 on CPU); ``search`` forces the largest-batch search on or off (GPU only; for
    the first of ``methods``, the fine-tuning methods whose step is timed).
    """
    methods = check_methods(methods)
    device = torch.device(device)
    cuda = device.type == "cuda"
    kind, amp, attack, steps, base_batch = plan(params, device, model, batch, pgd_steps)
    search = cuda if search is None else (search and cuda)

    net, arch = build_classifier(kind, params, device, params["run"]["seed"])
    peak_dtype = torch.bfloat16 if cuda else (amp or torch.float32)
    log(f"bench: {kind} on {_device_name(device)}, autocast {_dtype_name(amp)}, repeats {repeats}")
    peak = matmul_rate(device, peak_dtype)
    log(f"  matmul {peak['n']}^3 {peak['dtype']}: {peak['tflops']:.4g} TFLOP/s")
    sheet = device_datasheet(device)
    log(f"  datasheet dense bf16 peak: {_sheet_text(sheet)}")
    flops = model_flops(net, params, attack, steps, device, methods=methods)
    log(f"  FLOPs/image: forward {flops['forward'] / 1e9:.4g} G, fine-tuning step "
        + ", ".join(f"{REGISTRY[m].label} {flops[step_key(m)] / 1e9:.4g} G" for m in methods))

    runs: list[dict] = []
    errors: list[str] = []
    variants = [False, True] if compile else [False]
    max_batch = None
    for compiled in variants:
        tag = "compiled" if compiled else "eager"
        try:
            for method in methods:
                ft = finetune_workload(net, params, attack, device, amp, flops, compiled, method)
                ft_batches = [base_batch]
                if method == methods[0]:
                    if search and not compiled:
                        log(f"  largest {method} fine-tuning batch (doubling until OOM):")
                        max_batch = largest_batch(ft, base_batch * 2, device, log) or base_batch
                    if max_batch and max_batch > base_batch:
                        ft_batches.append(max_batch)
                for b in ft_batches:
                    log(f"  finetune {method} ({tag}) batch {b} ...")
                    try:
                        runs.append(measure(ft, b, repeats, device, peak["tflops"], compiled, sheet["bf16_dense_tflops"]))
                    except torch.cuda.OutOfMemoryError:
                        errors.append(f"finetune {method} ({tag}) batch {b}: CUDA out of memory")
                    ft.release()
                    if cuda:
                        torch.cuda.empty_cache()  # outside the handler: the traceback no longer pins tensors
                del ft
            pg = pgd_workload(net, device, amp, steps, flops, compiled)
            log(f"  pgd_eval ({tag}) PGD-{steps} batch {base_batch} ...")
            runs.append(measure(pg, base_batch, repeats, device, peak["tflops"], compiled, sheet["bf16_dense_tflops"]))
            del pg
            for name, label in EARLY_STOP_EVALS.items():
                wl = early_stop_workload(name, net, device, amp, steps, params, flops, compiled)
                log(f"  {name}_eval ({tag}) {label}-{steps} batch {base_batch} ...")
                runs.append(measure(wl, base_batch, repeats, device, peak["tflops"], compiled, sheet["bf16_dense_tflops"]))
                del wl
        except Exception as exc:
            if not compiled:
                raise
            errors.append(f"torch.compile: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
            log(f"  torch.compile failed: {errors[-1]}")
        if cuda:
            torch.cuda.empty_cache()

    log("  numerics: bf16 autocast vs fp32 on the demo model ...")
    num = numerics(params, device, n=numerics_batch)

    result = {
        "meta": {
            "device": device.type, "device_name": _device_name(device), "torch": torch.__version__,
            "python": platform.python_version(), "threads": torch.get_num_threads(),
            "model": kind, "arch": arch["name"], "image_size": net.image_size, "num_classes": net.num_classes,
            "logit_scale": net.logit_scale, "weights": "random", "precision": params["run"]["precision"],
            "autocast_dtype": _dtype_name(amp), "repeats": repeats, "methods": list(methods),
            "optimizer": params["finetune"]["optimizer"], "train_attack": attack,
            "pgd_eval": {"eps255": EVAL_EPS, "step255": 1, "steps": steps},
            "early_stop_evals": {"eps255": EVAL_EPS, "labels": "the model's clean predictions",
                                 **early_stop_settings(params, steps)},
            "batch_sizes": {"finetune": sorted({r["batch"] for r in runs if r["workload"] == "finetune"}),
                            "pgd_eval": base_batch, "largest_finetune_batch": max_batch},
            "compile": compile,
        },
        "matmul_peak": peak,
        "datasheet": sheet,
        "flops_per_image": flops,
        "runs": runs,
        "numerics": num,
        "errors": errors,
        "gpu": "measured" if cuda else UNMEASURED_GPU,
    }
    if not cuda and steps != GPU_PGD_STEPS:
        result["meta"]["note"] = f"CPU run: PGD-{steps} instead of PGD-{GPU_PGD_STEPS}; batch {base_batch}"
    result["rows"] = table_rows(result)
    return result


def plan(params: dict, device: torch.device, model: str = "auto", batch: int | None = None,
         pgd_steps: int | None = None) -> tuple[str, torch.dtype | None, dict, int, int]:
    """What a bench run measures on ``device``: model kind, autocast dtype, training attack, PGD
    steps and batch (the paper's on GPU, smaller on CPU; ``batch``/``pgd_steps`` override)."""
    cuda = device.type == "cuda"
    kind = model if model != "auto" else ("ViT-B-32" if cuda else "demo")
    amp = models.autocast_dtype(params["run"]["precision"], device)
    attack = dict(PAPER_ATTACK) if cuda else dict(params["finetune"]["attack"])
    steps = pgd_steps if pgd_steps is not None else (GPU_PGD_STEPS if cuda else CPU_PGD_STEPS)
    return kind, amp, attack, steps, batch or (PAPER_BATCH if cuda else CPU_BATCH)


def check_methods(names) -> tuple[str, ...]:
    """The fine-tuning methods to time: known, fine-tuned, at least one (``--methods``)."""
    names = tuple(names)
    if not names:
        raise ConfigError("--methods: give at least one fine-tuning method")
    for name in names:
        if name not in REGISTRY or not REGISTRY[name].finetuned:
            allowed = ", ".join(m for m, spec in REGISTRY.items() if spec.finetuned)
            raise ConfigError(f"--methods: {name!r} is not a fine-tuning method; allowed: {allowed}")
    return names


def device_datasheet(device: torch.device) -> dict:
    """The device's datasheet row (:func:`ucat.datasheet.describe`); a CPU has none."""
    if device.type != "cuda":
        return {"device_name": _device_name(device), "model": None, "bf16_dense_tflops": None,
                "why": "no datasheet entry"}
    return datasheet.describe(_device_name(device))


def _sheet_text(sheet: dict) -> str:
    if sheet["bf16_dense_tflops"] is None:
        return sheet["why"] if sheet["model"] is None else f"{sheet['model']}: {sheet['why']}"
    return f"{sheet['bf16_dense_tflops']:.4g} TFLOP/s ({sheet['model']}, {sheet['source']})"


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            name = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), name)
    except OSError:
        pass
    return f"cpu ({name}; {os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"


def table_rows(result: dict) -> list[dict]:
    """One row per measurement: ``{"name", "value", "unit"}``."""
    sheet = result["datasheet"]
    rows = [{"name": f"matmul {result['matmul_peak']['n']}^3 {result['matmul_peak']['dtype']}",
             "value": result["matmul_peak"]["tflops"], "unit": "TFLOP/s"},
            {"name": "datasheet dense bf16 peak" + (f" ({sheet['model']})" if sheet["model"] else ""),
             "value": sheet["bf16_dense_tflops"] if sheet["bf16_dense_tflops"] is not None else sheet["why"],
             "unit": "TFLOP/s" if sheet["bf16_dense_tflops"] is not None else ""}]
    f = result["flops_per_image"]
    steps = [(step_key(m), f"fine-tuning step {REGISTRY[m].label}") for m in result["meta"]["methods"]]
    for key, label in (("forward", "forward"), ("attack_step", "attack step (fwd+bwd to input)"), *steps,
                       ("pgd_eval", f"PGD-{result['meta']['pgd_eval']['steps']} eval")):
        rows.append({"name": f"FLOPs/image {label}", "value": f[key] / 1e9, "unit": "GFLOP"})
    steps = result["meta"]["pgd_eval"]["steps"]
    labels = {"finetune": "finetune", "pgd_eval": f"PGD-{steps} eval",
              **{f"{a}_eval": f"{label}-{steps} eval" for a, label in EARLY_STOP_EVALS.items()}}
    for r in result["runs"]:
        what = (f"finetune {REGISTRY[r['method']].label}" if r["workload"] == "finetune" else labels[r["workload"]])
        name = f"{what}{' compiled' if r['compiled'] else ''} b{r['batch']}"
        rows.append({"name": f"{name} throughput", "value": r["images_per_s"], "unit": "images/s"})
        if "forwards_per_image" in r:
            rows.append({"name": f"{name} forwards/image", "value": r["forwards_per_image"], "unit": "forwards"})
        rows.append({"name": f"{name} achieved", "value": r["achieved_tflops"], "unit": "TFLOP/s"})
        if r["fraction_of_matmul_peak"] is not None:
            rows.append({"name": f"{name} of matmul peak", "value": 100 * r["fraction_of_matmul_peak"], "unit": "%"})
        ds = r.get("fraction_of_datasheet_peak")
        rows.append({"name": f"{name} of datasheet peak", "value": 100 * ds if ds is not None else sheet["why"],
                     "unit": "%" if ds is not None else ""})
        if "peak_memory_bytes" in r:
            rows.append({"name": f"{name} peak memory", "value": r["peak_memory_bytes"] / 2 ** 30, "unit": "GiB"})
        if r.get("gpu_busy_fraction") is not None:
            rows.append({"name": f"{name} GPU busy", "value": 100 * r["gpu_busy_fraction"], "unit": "%"})
    n = result["numerics"]
    tol = n["tolerance"]
    rows += [
        {"name": f"numerics {n['fast_dtype']} vs fp32 max|dlogits|", "value": n["max_abs_delta_logits"], "unit": "logit"},
        {"name": f"numerics argmax agreement (tol >= {tol['argmax_agreement_min']})",
         "value": n["argmax_agreement"], "unit": "fraction"},
        {"name": f"numerics |dacc| after PGD-{n['pgd']['steps']} (tol <= {tol['abs_delta_accuracy_max']})",
         "value": n["abs_delta_pgd_accuracy"], "unit": "fraction"},
    ]
    return rows


def _rows_text(rows: list[dict]) -> tuple[list[str], int]:
    width = max(len(r["name"]) for r in rows)
    lines = [f"{'measurement':<{width}}  {'value':>12}  unit", "-" * (width + 22)]
    for r in rows:
        v = r["value"]
        text = f"{v:.4g}" if isinstance(v, float) and math.isfinite(v) else str(v)
        lines.append(f"{r['name']:<{width}}  {text:>12}  {r['unit']}")
    lines.append("-" * (width + 22))
    return lines, width


def _caveats(result: dict) -> list[str]:
    """The lines every table ends with: the run's note and whether the GPU figures were measured."""
    lines = [result["meta"]["note"]] if "note" in result["meta"] else []
    if result["gpu"] != "measured":
        lines.append(f"GPU figures: {result['gpu']}")
    return lines


def format_rows(result: dict) -> str:
    """The ``--baseline official`` table: rows, then the run's description."""
    lines, _ = _rows_text(result["rows"])
    meta = result["meta"]
    lines.append(f"device: {meta['device_name']}; torch {meta['torch']}; model {meta['arch']} (random weights), "
                 f"batch {meta['batch']}, {meta['classes']} classes; project autocast {meta['project_autocast']}, "
                 f"official {meta['official_autocast']}; repeats {meta['repeats']} (median)")
    lines += _caveats(result)
    return "\n".join(lines)


def format_table(result: dict) -> str:
    lines, width = _rows_text(result["rows"])
    meta = result["meta"]
    lines.append(f"device: {meta['device_name']}; torch {meta['torch']}; model {meta['model']} "
                 f"({meta['image_size']} px, {meta['num_classes']} classes); autocast {meta['autocast_dtype']}; "
                 f"repeats {meta['repeats']} (median)")
    lines += _caveats(result)
    lines.append(f"numerics within tolerance: {result['numerics']['within_tolerance']}")
    for err in result["errors"]:
        lines.append(f"error: {err}")
    return "\n".join(lines)


def parse_methods(text: str | None) -> tuple[str, ...]:
    """``--methods ucat,tga_zsr``; None = :data:`METHODS`."""
    if text is None:
        return METHODS
    return check_methods(m.strip() for m in text.split(",") if m.strip())


def main(args: argparse.Namespace) -> int:
    """``ucat bench``: measure, print the table, write ``args.out`` (JSON, atomically).

    Hidden knobs (tests): ``args.search``, ``args.numerics_batch``.
    """
    from .io import write_json

    params, device, log = setup(args)
    result = run_benchmark(params, device, model=args.model, repeats=args.repeats,
                           batch=getattr(args, "batch", None), pgd_steps=getattr(args, "pgd_steps", None),
                           compile=args.compile, search=getattr(args, "search", None),
                           numerics_batch=getattr(args, "numerics_batch", None) or 64,
                           methods=parse_methods(getattr(args, "methods", None)), log=log)
    print(format_table(result))
    if getattr(args, "loader", False):            # the data loader beside the step (ucat.loader_bench)
        from . import loader_bench

        result["loader"] = loader_bench.loader_rate(params, result["meta"]["image_size"], workers=args.loader_workers)
        print(loader_bench.format_loader(result["loader"], loader_bench.step_rates(result)))
    write_json(args.out, result)
    print(f"wrote {args.out}")
    return 0


def setup(args: argparse.Namespace) -> tuple[dict, torch.device, Callable[[str], None]]:
    """The checks every ``ucat bench`` form shares (one-line errors before measuring anything):
    parameters, threads, sizes; returns ``(params, device, log)``."""
    from . import config

    params = config.load(args.params, args.overrides)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.model not in ("auto", "demo", "ViT-B-32"):
        raise ConfigError(f"--model: unknown value {args.model!r}; allowed: auto, demo, ViT-B-32")
    for flag, value in (("--batch", getattr(args, "batch", None)), ("--pgd-steps", getattr(args, "pgd_steps", None))):
        if value is not None and value < 1:
            raise ConfigError(f"{flag}: must be at least 1, got {value}")
    if args.repeats < 1:
        raise ConfigError(f"--repeats: must be at least 1, got {args.repeats}")
    device = models.resolve_device(params["run"]["device"])
    log = (lambda _msg: None) if args.quiet else (lambda msg: print(msg, flush=True))
    baseline = getattr(args, "baseline", None)
    if baseline not in (None, "official"):
        raise ConfigError(f"--baseline: unknown value {baseline!r}; allowed: official")
    if baseline and getattr(args, "variants", None):
        raise ConfigError("--variants and --baseline: choose one")
    return params, device, log
