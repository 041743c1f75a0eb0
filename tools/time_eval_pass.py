"""Wall time of one evaluation job (every condition of one model on one data set) on this machine.

Measures what the single pass over the data changes: the job of ``ucat evaluate --method clip
--dataset D`` with the cell cache off, on the demo CLIP's architecture (randomly initialised: the
cost of a forward does not depend on the weights) and params.yaml's evaluation settings.  Prints
the seconds of each repeat and how many images the data set decoded (``__getitem__`` calls).

    PYTHONPATH=src python3 tools/time_eval_pass.py [--dataset demo_shapes] [--source smoke] [--repeats 3]
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
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["UCAT_CACHE"] = str(Path(tmp) / "cache")
        from ucat import config, data, evaluate, models

        overrides = [f"data.root={tmp}/data", "run.device=cpu"] + ([f"data.source={args.source}"] if args.source else [])
        params = config.load("params.yaml", overrides)
        data.prepare(args.dataset, params)
        arch = models.demo_arch(params["backbone"]["demo"])
        torch.manual_seed(0)
        ckpt = Path(tmp) / "m.pt"
        models.save_checkpoint(ckpt, models.create_clip(arch), arch)
        calls = {"n": 0}
        getitem = evaluate.WithSampleIds.__getitem__

        def counted(self, i):
            calls["n"] += 1
            return getitem(self, i)

        evaluate.WithSampleIds.__getitem__ = counted
        for r in range(args.repeats):
            calls["n"] = 0
            start = time.perf_counter()
            info = evaluate.evaluate_dataset(params, ckpt, args.dataset, torch.device("cpu"), method="clip",
                                             out_paths=lambda a, e: (Path(tmp) / f"{a}{e}.json",
                                                                     Path(tmp) / f"{a}{e}.npz"),
                                             progress=False, use_cache=False)
            seconds = time.perf_counter() - start
            print(f"repeat {r}: {args.dataset}: {len(info)} cells ({', '.join(info)}) in {seconds:.2f} s; "
                  f"{calls['n']} images decoded", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
