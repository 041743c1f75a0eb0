"""Time the report's confidence intervals (``ucat.report.intervals``) on synthetic cells.

    python tools/bench_intervals.py --shape demo  --resamples 2000
    python tools/bench_intervals.py --shape paper --resamples 20 60   # fit time = fixed + per-resample

Writes per-sample arrays shaped like the demo's (5 methods, 3 sets of 192–320 images, clean + 3
attacks) or the paper's (8 methods, the 16 sets at their published test sizes, clean + 3 attacks
at two ε: 7 conditions) into a temporary folder, then times ``intervals.analyse`` (reading,
sorting, bootstrap).  With several ``--resamples`` it prints the fixed cost and the cost per
resample (least squares), from which the time at any number of resamples follows.
With ``--report`` (demo shape) it also times the whole report with and without intervals.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import numpy as np

from ucat.report import intervals as I
from ucat.report.load import Setting

PAPER_SIZES = {"tinyimagenet": 10_000, "cifar10": 10_000, "cifar100": 10_000, "stl10": 8_000, "sun397": 108_754,
               "food101": 25_250, "oxford_pets": 3_669, "flowers102": 6_149, "dtd": 1_880, "eurosat": 27_000,
               "fgvc_aircraft": 3_333, "imagenet": 50_000, "caltech101": 8_677, "caltech256": 30_607,
               "stanford_cars": 8_041, "pcam": 32_768}
DEMO_SIZES = {"demo_shapes": 192, "demo_colours": 256, "demo_pairs": 320}
PAPER_METHODS = ["clip", "tecoa", "pmg_aft", "fare", "ucat", "kl_prob_forward", "kl_prob_reverse", "kl_dir_forward"]
DEMO_METHODS = ["clip", "tecoa", "ucat", "pmg_aft", "fare"]


def config(shape: str, resamples: int) -> dict:
    paper = shape == "paper"
    return {"methods": PAPER_METHODS if paper else DEMO_METHODS,
            "data": {"datasets": list(PAPER_SIZES if paper else DEMO_SIZES)},
            "evaluate": {"attacks": ["pgd", "cw", "autoattack"], "eps": [1, 2] if paper else [8],
                         "pgd": {"steps": 100}, "cw": {"steps": 100}},
            "report": {"formats": ["png"], "intervals": {"confidence": 0.95, "resamples": resamples,
                                                         "method": "percentile", "reference": "ucat", "seed": 0}}}


def write_cells(root: Path, cfg: dict, sizes: dict, seed: int = 0, logits: bool = False) -> None:
    """Correlated synthetic cells: every method sees the same images (shared difficulty)."""
    rng = np.random.default_rng(seed)
    setting = Setting.from_config(cfg)
    for d in setting.datasets:
        n = sizes[d]
        difficulty = rng.normal(size=n)
        label = rng.integers(0, 10, n)
        for k, m in enumerate(setting.methods):
            for a, e in setting.conditions():
                strength = 0.0 if a == "clean" else 0.6 * e ** 0.5
                logit = 1.0 + 0.1 * k - strength - difficulty + rng.normal(0, 0.7, n)
                correct = rng.random(n) < 1 / (1 + np.exp(-logit))
                conf = np.clip(1 / (1 + np.exp(-(logit + rng.normal(0, 0.5, n)))), 0.1, 1).astype(np.float32)
                pred = np.where(correct, label, (label + 1) % 10)
                path = root / m / d / f"{a}_eps{e}.npz"
                path.parent.mkdir(parents=True, exist_ok=True)
                arrays = dict(sample_id=np.arange(n), label=label, pred=pred, confidence=conf)
                if logits:   # what the report's other parts read (the intervals do not)
                    arrays["logits"] = np.log(np.where(np.arange(10) == pred[:, None], conf[:, None],
                                                       (1 - conf[:, None]) / 9)).astype(np.float32)
                np.savez(path, **arrays)


def time_analyse(root: Path, cfg: dict) -> tuple[float, float]:
    """Wall and CPU seconds (on a shared machine the CPU time is the one that transfers)."""
    settings = I.Settings.from_config(cfg)
    t, c = time.perf_counter(), time.process_time()
    iv = I.analyse(Setting.from_config(cfg), [root], settings)
    assert iv.boot is not None and not iv.problems
    return time.perf_counter() - t, time.process_time() - c


def time_report(root: Path, cfg: dict, with_intervals: bool) -> float:
    import json

    from ucat.report import build_report

    metrics = root / "metrics"
    for path in root.glob("*/*/*.npz"):           # the JSON a real evaluation writes beside its arrays
        z = np.load(path)
        m, d, (a, e) = path.parts[-3], path.parts[-2], path.stem.split("_eps")
        cell = metrics / "eval" / m / d / f"{path.stem}.json"
        cell.parent.mkdir(parents=True, exist_ok=True)
        cell.write_text(json.dumps({"method": m, "dataset": d, "attack": a, "eps": int(e),
                                    "accuracy": float((z["pred"] == z["label"]).mean()), "ece": 0.1}))
    c = dict(cfg, report={"formats": ["png"]}) if not with_intervals else cfg
    t = time.perf_counter()
    build_report(c, metrics_dir=metrics, samples_dir=root, out_dir=root / "out", summary_path=root / "summary.json")
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", choices=("demo", "paper"), default="demo")
    ap.add_argument("--resamples", type=int, nargs="+", default=[2000])
    ap.add_argument("--report", action="store_true", help="also time the whole report with and without intervals")
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    sizes = PAPER_SIZES if args.shape == "paper" else DEMO_SIZES
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cfg = config(args.shape, args.resamples[0])
        t = time.perf_counter()
        write_cells(root, cfg, sizes, logits=args.report)
        cells = len(list(root.glob("*/*/*.npz")))
        print(f"{args.shape}: {cells} cells, {sum(sizes.values())} images per method and condition "
              f"(written in {time.perf_counter() - t:.1f} s)")
        times = []
        for b in args.resamples:
            times.append(time_analyse(root, config(args.shape, b)))
            print(f"intervals.analyse, {b} resamples: {times[-1][0]:.2f} s wall, {times[-1][1]:.2f} s CPU")
        if len(times) > 1:
            for k, kind in enumerate(("wall", "CPU")):
                slope, fixed = np.polyfit(args.resamples, [t[k] for t in times], 1)
                print(f"fit ({kind}): {fixed:.2f} s fixed + {1000 * slope:.1f} ms per resample "
                      f"(1000 resamples: {fixed + 1000 * slope:.0f} s; 2000: {fixed + 2000 * slope:.0f} s)")
        if args.report:
            off, on = time_report(root, cfg, False), time_report(root, cfg, True)
            print(f"whole report: {off:.1f} s without intervals, {on:.1f} s with ({on - off:+.1f} s)")


if __name__ == "__main__":
    main()
