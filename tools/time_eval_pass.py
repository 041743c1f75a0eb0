"""Wall time of one evaluation job (every condition of one model on one data set) on this machine.

Measures what the single pass over the data changes: the job of ``ucat evaluate --method clip
--dataset D`` with the cell cache off, on the demo CLIP's architecture (randomly initialised: the
cost of a forward does not depend on the weights) and params.yaml's evaluation settings.  Prints
the wall and CPU seconds of each repeat (CPU seconds are steadier on a shared machine), how many
images the data set decoded (``__getitem__`` calls) and what one pass of the loader alone costs.

    PYTHONPATH=src python3 tools/time_eval_pass.py [--dataset demo_shapes] [--source smoke] [--repeats 3] [--out DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="demo_shapes")
    ap.add_argument("--source", default=None, help="data.source (smoke: a real set's replica, decoded from files)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None, help="keep the cells written by the last repeat in this folder")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="a parameter override, e.g. evaluate.batch_size=64 (repeatable)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["UCAT_CACHE"] = str(Path(tmp) / "cache")
        from ucat import config, data, evaluate, models

        overrides = [f"data.root={tmp}/data", "run.device=cpu"] + ([f"data.source={args.source}"] if args.source else [])
        overrides += args.overrides
        params = config.load("params.yaml", overrides)
        data.prepare(args.dataset, params)
        arch = models.demo_arch(params["backbone"]["demo"])
        torch.manual_seed(0)
        ckpt, out = Path(tmp) / "m.pt", Path(args.out or Path(tmp) / "cells")
        models.save_checkpoint(ckpt, models.create_clip(arch), arch)
        calls = {"n": 0}
        getitem = evaluate.WithSampleIds.__getitem__

        def counted(self, i):
            calls["n"] += 1
            return getitem(self, i)

        evaluate.WithSampleIds.__getitem__ = counted
        for r in range(args.repeats):
            calls["n"] = 0
            start, cpu = time.perf_counter(), time.process_time()
            info = evaluate.evaluate_dataset(params, ckpt, args.dataset, torch.device("cpu"), method="clip",
                                             out_paths=lambda a, e: (out / f"{a}_eps{e}.json", out / f"{a}_eps{e}.npz"),
                                             progress=False, use_cache=False)
            seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
            print(f"repeat {r}: {args.dataset}: {len(info)} cells ({', '.join(info)}) in {seconds:.2f} s "
                  f"({cpu:.2f} CPU s); {calls['n']} images decoded", flush=True)
        loader = evaluate.Evaluator(params, ckpt, args.dataset, torch.device("cpu"), "clip", progress=False).loader
        start, cpu = time.perf_counter(), time.process_time()
        images = sum(len(batch[0]) for batch in loader)
        print(f"one pass of the loader alone: {images} images in {time.perf_counter() - start:.3f} s "
              f"({time.process_time() - cpu:.3f} CPU s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
