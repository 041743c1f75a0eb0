"""Which change lifts PGD evaluation's FLOP utilisation: one run, same model, variants side by side.

By hand on a GPU (``tools/gpu_session.sh`` measured 17 % of the bf16 matmul rate for PGD-100 with
18 % of CUDA time in ``aten::copy_``: autocast re-casting fp32 weights every forward). Variants of the
frozen ViT-B-32 evaluation model, PGD-``--steps`` at batch 256, images/s and % of matmul peak:
eager autocast (the pipeline today), bf16 weights under autocast, pure bf16 (no autocast),
and each with ``torch.compile(model.visual)``; then the UCAT fine-tuning step compiled vs eager.
"""

import argparse
import copy
import statistics
import sys

import torch

from ucat import attacks, bench, config, models


class Bf16Input(torch.nn.Module):
    def __init__(self, visual):
        super().__init__()
        self.inner = visual

    def forward(self, x):
        return self.inner(x.to(torch.bfloat16))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--model", default="ViT-B-32")
    args = ap.parse_args()
    params = config.load("params.yaml", [])
    device = models.resolve_device("auto")
    net, _ = bench.build_classifier(args.model, params, device)
    flops = {"finetune_step": bench.model_flops(net, params, dict(bench.PAPER_ATTACK), 1, device)["finetune_step"],
             "pgd_eval": 0.0}
    net.eval().requires_grad_(False)
    peak = bench.matmul_rate(device, torch.bfloat16)["tflops"]
    fwd = bench.count_flops(lambda: net(torch.rand(1, 3, net.image_size, net.image_size, device=device)))
    per_img = (args.steps * 2 + 1) * fwd
    x, y = bench.random_batch(args.batch, net.image_size, net.num_classes, device)
    print(f"peak {peak:.0f} TFLOP/s; forward {fwd / 1e9:.2f} GFLOP; PGD-{args.steps} batch {args.batch}", flush=True)

    def variant(name, model, amp):
        def step():
            with models.autocast(amp, device):
                adv = attacks.pgd(model, x, y, 1, 1, args.steps, "ce")
                with torch.no_grad():
                    model(adv)
        try:
            t = statistics.median(bench.timed(step, 3, device, warmup=2))
        except Exception as exc:  # one failing variant must not hide the others
            print(f"{name:38s} failed: {type(exc).__name__}: {str(exc)[:200]}", flush=True)
            return
        ips = args.batch / t
        print(f"{name:38s} {ips:8.1f} img/s  {100 * per_img * ips / 1e12 / peak:5.1f} % of peak", flush=True)

    bf = torch.bfloat16
    variant("eager, autocast (pipeline)", net, bf)
    w16 = copy.deepcopy(net)
    w16.visual.to(bf)
    variant("eager, bf16 weights + autocast", w16, bf)
    pure = copy.deepcopy(net)
    pure.visual = Bf16Input(pure.visual.to(bf))
    variant("eager, pure bf16", pure, None)
    c = copy.deepcopy(net)
    c.visual = torch.compile(c.visual)
    variant("compiled, autocast", c, bf)
    cp = copy.deepcopy(pure)
    cp.visual = torch.compile(cp.visual)
    variant("compiled, pure bf16", cp, None)
    sys.stdout.flush()
    for compiled in (False, True):
        ft = bench.finetune_workload(net, params, dict(bench.PAPER_ATTACK), device, bf, flops, compiled)
        t = statistics.median(bench.timed(ft.make(args.batch), 3, device, warmup=2))
        ips = args.batch / t
        print(f"finetune {'compiled' if compiled else 'eager':28s} {ips:8.1f} img/s  "
              f"{100 * flops['finetune_step'] * ips / 1e12 / peak:5.1f} % of peak", flush=True)
        ft.release()


if __name__ == "__main__":
    main()
