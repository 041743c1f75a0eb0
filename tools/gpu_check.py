"""GPU checks that ``ucat bench`` does not print: ``evaluate.batch_size: auto`` and a kernel profile.

Run by ``tools/gpu_session.sh`` on a CUDA machine (by hand, never in CI); on CPU it runs with tiny
sizes so the script itself stays tested. Prints, for the random-weight ViT-B-32-quickgelu:

- ``auto``: the batch :func:`ucat.evaluate.choose_batch_size` picks for a 200-class and a
  1000-class head (TinyImageNet, ImageNet), the peak memory of one PGD-10 attack at that batch
  and its images/s: the figure behind ``evaluate.batch_size: auto``;
- ``profile``: the top CUDA kernels of the project's UCAT fine-tuning step and PGD step at batch 256
  (torch.profiler, self CUDA time), to name the cause when a utilisation target is missed.
"""

from __future__ import annotations

import argparse
import copy

import torch

from ucat import attacks, bench, config, evaluate, models


def check_auto(net, device, amp, classes: int, steps: int, log) -> dict:
    head = copy.deepcopy(net)
    g = torch.Generator().manual_seed(classes)
    head.class_features = torch.nn.functional.normalize(torch.randn(classes, head.class_features.shape[1], generator=g),
                                                        dim=-1).to(device)
    head.eval().requires_grad_(False)
    batch = evaluate.choose_batch_size(head, "auto", device, amp, num_items=1 << 20)
    x, y = bench.random_batch(batch, head.image_size, classes, device, seed=3)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)

    def pgd_then_forward():
        with models.autocast(amp, device):
            adv = attacks.pgd(head, x, y, 1, 1, steps, "ce")
            with torch.no_grad():
                head(adv)

    seconds = bench.timed(pgd_then_forward, repeats=1, device=device, warmup=1)[0]
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    row = {"classes": classes, "auto_batch": batch, "pgd_steps": steps, "images_per_s": batch / seconds,
           "peak_gib": peak}
    log(f"auto: {classes} classes -> batch {batch}; PGD-{steps} at that batch: {row['images_per_s']:.0f} img/s, "
        f"peak {peak:.1f} GiB")
    return row


def profile(step, device, label: str, log, rows: int = 15) -> None:
    from torch.profiler import ProfilerActivity, profile as torch_profile

    step()
    bench._sync(device)
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with torch_profile(activities=acts) as prof:
        step()
        bench._sync(device)
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    log(f"profile: {label}")
    log(prof.key_averages().table(sort_by=key, row_limit=rows, max_name_column_width=70))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="ViT-B-32", choices=["ViT-B-32", "demo"])
    ap.add_argument("--batch", type=int, default=256, help="batch of the profiled steps")
    ap.add_argument("--pgd-steps", type=int, default=10)
    args = ap.parse_args()
    params = config.load("params.yaml", [])
    device = models.resolve_device("auto")
    amp = models.autocast_dtype(params["run"]["precision"], device)
    net, _ = bench.build_classifier(args.model, params, device)
    for classes in (200, 1000):
        check_auto(net, device, amp, classes, args.pgd_steps, print)
    flops = {"finetune_step": 0.0, "pgd_eval": 0.0}
    ft = bench.finetune_workload(net, params, dict(bench.PAPER_ATTACK), device, amp, flops)
    profile(ft.make(args.batch), device, f"UCAT fine-tuning step, batch {args.batch}", print)
    ft.release()
    pg = bench.pgd_workload(net, device, amp, args.pgd_steps, flops)
    profile(pg.make(args.batch), device, f"PGD-{args.pgd_steps} + forward, batch {args.batch}", print)


if __name__ == "__main__":
    main()
