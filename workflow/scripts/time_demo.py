#!/usr/bin/env python
"""Per-stage job time of the last Snakemake run, read from its ``benchmarks/`` folder (reruns nothing).

    python workflow/scripts/time_demo.py                 # this checkout's benchmarks/
    python workflow/scripts/time_demo.py --dir PATH      # another checkout's
    python workflow/scripts/time_demo.py --run [--cores 2] [--keep]
                                                         # time the demo from scratch in a temporary copy

Every rule writes one benchmark file per job (``benchmark:`` in workflow/rules/*.smk) with the
job's wall seconds (``s``) and CPU seconds (``cpu_time``); a job that reruns overwrites its own
file, so the figures are each job's last run.  "span" is the time from the first recorded job's
start to the last one's end: the run's wall time when every job ran in one invocation.

``--run`` copies the workflow files into a fresh temporary folder (own cache: every cell is
computed), runs ``snakemake --cores N`` there and prints the same table; Ctrl-C (or SIGTERM)
stops Snakemake and its jobs and removes the folder (unless ``--keep``).
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ORDER = ("data", "backbone", "finetune", "evaluate", "calibrate", "report")   # the stages, in pipeline order


def read_benchmarks(bench_dir: Path) -> dict[str, list[tuple[float, float, float]]]:
    """{rule: [(wall s, cpu s, end time), ...]}; the rule is the first folder under benchmarks/
    (or the file's stem for a rule with one job)."""
    per_rule: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
    for tsv in sorted(bench_dir.rglob("*.tsv")):
        rel = tsv.relative_to(bench_dir)
        rule = rel.parts[0] if len(rel.parts) > 1 else tsv.stem
        with open(tsv, newline="") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
        if not rows:
            continue
        row = rows[-1]
        try:
            cpu = float(row.get("cpu_time") or "nan")
        except ValueError:
            cpu = float("nan")
        per_rule[rule].append((float(row["s"]), cpu, tsv.stat().st_mtime))
    return per_rule


def table(per_rule: dict[str, list[tuple[float, float, float]]]) -> str:
    rules = [r for r in ORDER if r in per_rule] + sorted(set(per_rule) - set(ORDER))
    lines = [f"{'stage':<10} {'jobs':>5} {'job-s':>9} {'median':>8} {'max':>8} {'CPU-s':>9}"]
    for rule in rules:
        wall = [w for w, _, _ in per_rule[rule]]
        cpu = sum(c for _, c, _ in per_rule[rule])
        lines.append(f"{rule:<10} {len(wall):>5} {sum(wall):>9.1f} {statistics.median(wall):>8.1f} "
                     f"{max(wall):>8.1f} {cpu:>9.1f}")
    jobs = [j for js in per_rule.values() for j in js]
    total = sum(w for w, _, _ in jobs)
    span = max(end for _, _, end in jobs) - min(end - w for w, _, end in jobs)
    lines.append(f"{'total':<10} {len(jobs):>5} {total:>9.1f}")
    lines.append(f"span: {span:.0f} s ({span / 60:.1f} min) from the first job's start to the last job's end")
    return "\n".join(lines)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def copy_workflow(work: Path) -> None:
    """The files a run needs: the Snakefile, params.yaml, workflow/ and the package sources (every
    rule lists the modules it runs as inputs)."""
    for name in ("Snakefile", "params.yaml", "workflow"):
        src = ROOT / name
        (shutil.copytree(src, work / name, symlinks=True) if src.is_dir() else shutil.copy(src, work / name))
    shutil.copytree(ROOT / "src" / "ucat", work / "src" / "ucat", ignore=shutil.ignore_patterns("__pycache__"))


def run_snakemake(work: Path, cores: str) -> int:
    """``snakemake --cores N`` in ``work`` with its own cache (every cell computed); on Ctrl-C or
    SIGTERM it and every job it started are stopped before this returns 130."""
    env = {**os.environ, "UCAT_CACHE": str(work / ".ucat" / "cache")}
    # its own process group, so that stopping it reaches every job it started
    proc = subprocess.Popen(["snakemake", "--cores", str(cores), "--quiet", "rules"], cwd=work, env=env,
                            start_new_session=True)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):   # a second one must not orphan the jobs
            signal.signal(sig, signal.SIG_IGN)
        print("\ninterrupted: stopping snakemake and its jobs", file=sys.stderr)
        try:
            os.killpg(proc.pid, signal.SIGINT)          # Snakemake ends its jobs on SIGINT
            proc.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)         # whatever is left of the group (a job ignoring SIGINT)
        except ProcessLookupError:
            pass
        proc.wait()
        return 130


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", type=Path, default=ROOT, help="checkout whose benchmarks/ to read (default: this one)")
    ap.add_argument("--run", action="store_true", help="run the demo from scratch in a temporary copy first")
    ap.add_argument("--cores", default="all", help="with --run: snakemake --cores (default: %(default)s)")
    ap.add_argument("--keep", action="store_true", help="with --run: keep the temporary folder")
    args = ap.parse_args(argv)
    if not args.run:
        bench = args.dir / "benchmarks"
        per_rule = read_benchmarks(bench) if bench.is_dir() else {}
        if not per_rule:
            print(f"error: no benchmark files under {bench}: run the workflow first (snakemake --cores all), "
                  f"or time it from scratch with --run", file=sys.stderr)
            return 2
        print(table(per_rule))
        return 0
    # stop and clean up on Ctrl-C, SIGTERM or SIGHUP, even where SIGINT came in ignored (a background
    # shell job): a handler, unlike an ignored signal, is reset to the default in snakemake
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_interrupt)
    work = Path(tempfile.mkdtemp(prefix="ucat-demo-"))
    try:
        copy_workflow(work)
        start = time.time()
        code = run_snakemake(work, args.cores)
        wall = time.time() - start
        per_rule = read_benchmarks(work / "benchmarks") if (work / "benchmarks").is_dir() else {}
        if per_rule:
            print(table(per_rule))
        print(f"wall time: {wall:.0f} s ({wall / 60:.1f} min) on --cores {args.cores}; exit {code}")
        if args.keep:
            print(f"run directory: {work}")
        return code
    except KeyboardInterrupt:
        return 130
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
