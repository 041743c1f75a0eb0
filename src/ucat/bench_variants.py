"""``ucat bench --variants``: the fast path's candidate changes side by side, in one run.

Each variant is one combination of
- the compile mode: eager, ``torch.compile`` default, ``max-autotune``, ``reduce-overhead``
  (CUDA graphs); the last two only on CUDA (on a CPU they are listed as skipped, with why);
- the patch embedding (``run.patch_embed``): open_clip's convolution or the exact matmul;
- the weights: the pipeline's (fp32, under bf16 autocast on GPU) or the image tower cast to bf16
  (:func:`ucat.bench.cast_weights`), timed only when the bf16-weights numerics check holds.

For each it times UCAT's fine-tuning step and PGD evaluation with :mod:`ucat.bench`'s own
workloads and :func:`ucat.bench.measure`, and reports images/s, the fraction of the datasheet's
dense bf16 peak and of the matmul rate measured in the same run (in the variant's compute dtype),
and the speed-up over the eager, convolution, pipeline-weights baseline.  The numerics checks
(bf16 autocast, bf16 weights, matmul patch embedding vs convolution) are printed beside the
table, as is the patch embedding alone (forward + input gradient), convolution vs matmul.
"""

from __future__ import annotations

import argparse
import copy
from typing import Callable

import torch
from torch import nn

from . import bench, models, patch_embed
from .errors import ConfigError

WEIGHTS = ("pipeline", "bf16")
PATCH_TOL = 1e-5          # matmul vs convolution patch embedding, relative, fp32
VIT_B32_PATCH = (768, 32, 224)   # ViT-B-32's conv1: width, patch, image size


def parse_modes(text: str) -> tuple[str, ...]:
    """``--variants eager,default``: compile modes of :data:`ucat.bench.COMPILE_MODES`."""
    modes = tuple(dict.fromkeys(m.strip() for m in text.split(",") if m.strip()))
    bad = [m for m in modes if m not in bench.COMPILE_MODES]
    if not modes or bad:
        raise ConfigError(f"--variants: unknown compile mode {(bad or [text])[0]!r}; "
                          f"allowed: {', '.join(bench.COMPILE_MODES)}")
    return modes


def variant_net(net: models.ZeroShotClassifier, patch: str, weights: str) -> models.ZeroShotClassifier:
    net = copy.deepcopy(net)
    patch_embed.apply(net.visual, patch)
    return bench.cast_weights(net, torch.bfloat16) if weights == "bf16" else net


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().float(), b.detach().float()
    return float((a - b).abs().max() / b.abs().max())


def patch_numerics(params: dict, device: torch.device, n: int = 64, seed: int = 0) -> dict:
    """Demo model, fp32: logits and input gradient with the matmul patch embedding vs the convolution."""
    net, _ = bench.build_classifier("demo", params, device, seed)
    net.eval().requires_grad_(False)
    x, y = bench.random_batch(n, net.image_size, net.num_classes, device, seed=seed + 7)
    out = {}
    for setting in patch_embed.SETTINGS:
        patch_embed.apply(net.visual, setting)
        xi = x.clone().requires_grad_(True)
        logits = net(xi)
        out[setting] = (logits, torch.autograd.grad(nn.functional.cross_entropy(logits, y), xi)[0])
    (lc, gc), (lm, gm) = out["conv"], out["matmul"]
    res = {"rel_delta_logits": _rel(lm, lc), "rel_delta_input_grad": _rel(gm, gc), "tolerance": PATCH_TOL}
    res["within_tolerance"] = max(res["rel_delta_logits"], res["rel_delta_input_grad"]) <= PATCH_TOL
    return res


def patch_embed_alone(conv: nn.Conv2d, image_size: int, batch: int, device: torch.device,
                      amp: torch.dtype | None, repeats: int) -> dict:
    """One patch-embedding layer, forward + input gradient (an attack step's share): conv vs matmul."""
    g = torch.Generator(device=device).manual_seed(5)
    x = torch.rand(batch, 3, image_size, image_size, generator=g, device=device)
    k = conv.kernel_size[0]
    out = {"layer": f"{conv.in_channels}->{conv.out_channels}, {k}x{k} stride {k}, {image_size} px", "batch": batch}
    for setting in patch_embed.SETTINGS:
        holder = nn.Module()
        holder.conv1 = copy.deepcopy(conv).to(device)
        patch_embed.apply(holder, setting)

        def step():
            xi = x.clone().requires_grad_(True)
            with models.autocast(amp, device):
                torch.autograd.grad(holder.conv1(xi).float().sum(), xi)

        out[f"{setting}_s"] = bench.median_time(step, repeats, device, warmup=1)
    out["speedup"] = out["conv_s"] / out["matmul_s"]
    return out


def run_variants(params: dict, device: torch.device, model: str = "auto", repeats: int = 5,
                 batch: int | None = None, pgd_steps: int | None = None,
                 modes: tuple[str, ...] = bench.COMPILE_MODES, numerics_batch: int = 64,
                 log: Callable[[str], None] = print) -> dict:
    """Measure every variant; returns the JSON-able result (``variants``: one entry each)."""
    device = torch.device(device)
    cuda = device.type == "cuda"
    kind, amp, attack, steps, base_batch = bench.plan(params, device, model, batch, pgd_steps)
    net, arch = bench.build_classifier(kind, params, device, params["run"]["seed"])
    sheet = bench.device_datasheet(device)
    pipeline_dtype = torch.bfloat16 if cuda else (amp or torch.float32)   # as run_benchmark's matmul rate
    rates = {bench._dtype_name(d): bench.matmul_rate(device, d) for d in dict.fromkeys((pipeline_dtype, torch.bfloat16))}
    log(f"bench --variants: {kind} on {bench._device_name(device)}, autocast {bench._dtype_name(amp)}, "
        f"batch {base_batch}, PGD-{steps}, repeats {repeats}")
    log("  matmul: " + ", ".join(f"{r['n']}^3 {name} {r['tflops']:.4g} TFLOP/s" for name, r in rates.items())
        + f"; datasheet dense bf16 peak: {bench._sheet_text(sheet)}")
    flops = bench.model_flops(net, params, attack, steps, device, methods=("ucat",))
    log("  numerics: bf16 autocast, bf16 weights, matmul patch embedding ...")
    num = {mode: bench.numerics(params, device, n=numerics_batch, mode=mode) for mode in bench.NUMERICS_MODES}
    num["patch_embed"] = patch_numerics(params, device, n=numerics_batch)

    alone = []
    conv = net.visual.conv1
    vit_width, vit_patch, vit_size = VIT_B32_PATCH
    layers = [(conv, net.image_size)]
    if (conv.out_channels, conv.kernel_size[0], net.image_size) != VIT_B32_PATCH:
        layers.append((nn.Conv2d(3, vit_width, vit_patch, vit_patch, bias=False), vit_size))
    for layer, size in layers:
        alone.append(patch_embed_alone(layer, size, base_batch, device, amp, repeats))
        log(f"  patch embedding alone ({alone[-1]['layer']}, b{base_batch}): {alone[-1]['speedup']:.3g}x matmul/conv")

    variants = []
    for mode in modes:
        for patch in patch_embed.SETTINGS:
            for weights in WEIGHTS:
                row = {"mode": mode, "patch_embed": patch, "weights": weights, "name": variant_name(mode, patch, weights, amp)}
                variants.append(row)
                reason = skip_reason(mode, patch, weights, cuda, num)
                if reason:
                    row["skipped"] = reason
                    log(f"  {row['name']}: skipped ({row['skipped']})")
                    continue
                compiled = False if mode == "eager" else mode
                dtype = bench._dtype_name(torch.bfloat16 if weights == "bf16" else pipeline_dtype)
                row["matmul_dtype"] = dtype
                if compiled:
                    torch._dynamo.reset()   # each compiled variant compiles afresh (no cache-limit recompiles)
                vnet = variant_net(net, patch, weights)
                try:
                    for name, make in (("finetune", lambda: bench.finetune_workload(vnet, params, attack, device, amp,
                                                                                     flops, compiled)),
                                       ("pgd_eval", lambda: bench.pgd_workload(vnet, device, amp, steps, flops, compiled))):
                        log(f"  {row['name']}: {name} b{base_batch} ...")
                        row[name] = bench.measure(make(), base_batch, repeats, device, rates[dtype]["tflops"], compiled,
                                                  sheet["bf16_dense_tflops"])
                        log(f"    {row[name]['images_per_s']:.4g} images/s")
                except Exception as exc:   # one failing variant (a compile mode, memory) must not hide the others
                    row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                    log(f"  {row['name']}: failed: {row['error']}")
                del vnet
                if cuda:
                    torch.cuda.empty_cache()
    add_speedups(variants)
    return {
        "meta": {"device": device.type, "device_name": bench._device_name(device), "torch": torch.__version__,
                 "threads": torch.get_num_threads(), "model": kind, "arch": arch["name"], "image_size": net.image_size,
                 "num_classes": net.num_classes, "weights": "random", "precision": params["run"]["precision"],
                 "autocast_dtype": bench._dtype_name(amp), "repeats": repeats, "batch": base_batch,
                 "method": "ucat", "train_attack": attack, "pgd_eval": {"eps255": bench.EVAL_EPS, "step255": 1,
                                                                        "steps": steps},
                 "modes": list(modes)},
        "datasheet": sheet,
        "matmul_rates": rates,
        "flops_per_image": flops,
        "numerics": num,
        "patch_embed_alone": alone,
        "variants": variants,
        "gpu": "measured" if cuda else bench.UNMEASURED_GPU,
    }


def skip_reason(mode: str, patch: str, weights: str, cuda: bool, num: dict) -> str | None:
    """Why a variant is not timed: a CUDA-only compile mode on a CPU, or a failed numerics check."""
    if mode in bench.CUDA_ONLY_MODES and not cuda:
        return bench.CUDA_ONLY_MODES[mode]
    if weights == "bf16" and not num["weights"]["within_tolerance"]:
        return "bf16 weights fail the numerics check"
    if patch == "matmul" and not num["patch_embed"]["within_tolerance"]:
        return "the matmul patch embedding fails its numerics check"
    return None


def variant_name(mode: str, patch: str, weights: str, amp: torch.dtype | None) -> str:
    w = "bf16 weights" if weights == "bf16" else ("fp32 weights" + (" + bf16 autocast" if amp else ""))
    return f"{mode}, {patch}, {w}"


def add_speedups(variants: list[dict]) -> None:
    """``speedup_finetune`` / ``speedup_pgd_eval``: images/s over the eager, conv, pipeline-weights row."""
    base = next((v for v in variants if (v["mode"], v["patch_embed"], v["weights"]) == ("eager", "conv", "pipeline")
                 and "finetune" in v and "pgd_eval" in v), None)
    for v in variants:
        for w in ("finetune", "pgd_eval"):
            if w in v:
                v[f"speedup_{w}"] = v[w]["images_per_s"] / base[w]["images_per_s"] if base else None


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.3g}"


def format_variants(result: dict) -> str:
    """The side-by-side table, then the numerics checks and the patch embedding alone."""
    meta, num = result["meta"], result["numerics"]
    head = ["variant", "ft img/s", "PGD img/s", "ft DS%", "PGD DS%", "ft MM%", "PGD MM%", "ft x", "PGD x"]
    table = []
    for v in result["variants"]:
        if "finetune" in v and "pgd_eval" in v:
            ft, pg = v["finetune"], v["pgd_eval"]
            sp = [f"{v[k]:.3g}" if v.get(k) is not None else "-" for k in ("speedup_finetune", "speedup_pgd_eval")]
            table.append([v["name"], f"{ft['images_per_s']:.4g}", f"{pg['images_per_s']:.4g}",
                          _pct(ft["fraction_of_datasheet_peak"]), _pct(pg["fraction_of_datasheet_peak"]),
                          _pct(ft["fraction_of_matmul_peak"]), _pct(pg["fraction_of_matmul_peak"]), *sp])
        else:
            table.append([v["name"], "skipped: " + v["skipped"] if "skipped" in v else "failed: " + v["error"]])
    widths = [max(len(r[i]) for r in [head] + [t for t in table if len(t) == len(head)]) for i in range(len(head))]
    lines = ["  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(head, widths)))]
    lines.append("-" * len(lines[0]))
    for r in table:
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
                     if len(r) == len(head) else f"{r[0].ljust(widths[0])}  {r[1]}")
    lines.append("-" * len(lines[0]))
    rates = ", ".join(f"{name} {r['tflops']:.4g} TFLOP/s" for name, r in result["matmul_rates"].items())
    lines.append(f"DS%: of the datasheet dense bf16 peak ({bench._sheet_text(result['datasheet'])}); "
                 f"MM%: of the matmul rate measured in this run in the variant's compute dtype ({rates}); "
                 f"x: images/s over the eager, conv, pipeline-weights row")
    for mode, label in bench.NUMERICS_MODES.items():
        n = num[mode]
        lines.append(f"numerics {label} vs fp32 (demo, {n['batch']} images): argmax agreement {n['argmax_agreement']:.3g} "
                     f"(tol >= {n['tolerance']['argmax_agreement_min']}), |dacc| after PGD-{n['pgd']['steps']} "
                     f"{n['abs_delta_pgd_accuracy']:.3g} (tol <= {n['tolerance']['abs_delta_accuracy_max']}), "
                     f"max|dlogits| {n['max_abs_delta_logits']:.3g}: within tolerance {n['within_tolerance']}")
    p = num["patch_embed"]
    lines.append(f"numerics matmul vs conv patch embedding (demo, fp32): relative max |dlogits| {p['rel_delta_logits']:.2g}, "
                 f"|d input grad| {p['rel_delta_input_grad']:.2g} (tol {p['tolerance']:g}): within tolerance {p['within_tolerance']}")
    for a in result["patch_embed_alone"]:
        lines.append(f"patch embedding alone ({a['layer']}, b{a['batch']}, forward + input grad): conv {1e3 * a['conv_s']:.3g} ms, "
                     f"matmul {1e3 * a['matmul_s']:.3g} ms, {a['speedup']:.3g}x")
    lines.append(f"device: {meta['device_name']}; torch {meta['torch']}; model {meta['model']} ({meta['arch']}, {meta['image_size']} px, "
                 f"random weights); UCAT fine-tuning step and PGD-{meta['pgd_eval']['steps']} eval at batch {meta['batch']}; "
                 f"repeats {meta['repeats']} (median)")
    if result["gpu"] != "measured":
        lines.append(f"GPU figures: {result['gpu']}")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    """``ucat bench --variants [MODES]``: measure, print the table, write ``args.out`` (JSON)."""
    from .io import write_json

    modes = parse_modes(args.variants)
    params, device, log = bench.setup(args)
    result = run_variants(params, device, model=args.model, repeats=args.repeats, batch=getattr(args, "batch", None),
                          pgd_steps=getattr(args, "pgd_steps", None), modes=modes,
                          numerics_batch=getattr(args, "numerics_batch", None) or 64, log=log)
    print(format_variants(result))
    write_json(args.out, result)
    print(f"wrote {args.out}")
    return 0
