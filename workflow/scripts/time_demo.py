#!/usr/bin/env python
"""Time the whole demo DAG from scratch and print per-stage times (a benchmark, not a test).

    python workflow/scripts/time_demo.py [--cores 2] [--keep]

Runs `snakemake --cores N` in a fresh copy of the repository's workflow files, then
prints the wall time and the per-rule sums of Snakemake's benchmark files.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import subprocess
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cores", default="all")
    ap.add_argument("--keep", action="store_true", help="keep the run directory")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ucat-demo-"))
    for name in ("Snakefile", "params.yaml", "workflow"):
        src = ROOT / name
        (shutil.copytree(src, work / name, symlinks=True) if src.is_dir() else shutil.copy(src, work / name))
    # the package sources: every rule lists the modules it runs as inputs
    shutil.copytree(ROOT / "src" / "ucat", work / "src" / "ucat", ignore=shutil.ignore_patterns("__pycache__"))
    start = time.time()
    res = subprocess.run(["snakemake", "--cores", str(args.cores), "--quiet"], cwd=work)
    wall = time.time() - start
    per_rule: dict[str, list[float]] = defaultdict(list)
    for tsv in (work / "benchmarks").rglob("*.tsv"):
        rule = tsv.relative_to(work / "benchmarks").parts[0].removesuffix(".tsv")
        with open(tsv) as fh:
            per_rule[rule].append(float(list(csv.DictReader(fh, delimiter="\t"))[0]["s"]))
    print(f"\n{'stage':<10} {'jobs':>5} {'sum s':>9} {'max s':>8}")
    for rule in ("data", "backbone", "finetune", "evaluate", "report"):  # evaluate includes the clean cells
        t = per_rule.get(rule, [])
        print(f"{rule:<10} {len(t):>5} {sum(t):>9.1f} {max(t, default=0):>8.1f}")
    print(f"\nwall time: {wall:.0f} s ({wall / 60:.1f} min) on --cores {args.cores}; exit {res.returncode}")
    if args.keep:
        print(f"run directory: {work}")
    else:
        shutil.rmtree(work)
    return res.returncode


if __name__ == "__main__":
    raise SystemExit(main())
