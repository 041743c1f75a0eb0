"""workflow/scripts/time_demo.py: reads the last run's benchmarks without running anything; with
--run, an interrupt stops Snakemake and every job it started and leaves no temporary folder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "workflow" / "scripts" / "time_demo.py"
HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def _bench(path: Path, seconds: float, cpu: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + f"{seconds}\t0:00:00\t1\t1\t1\t1\t0\t0\t50\t{cpu}\n")


def test_reads_the_last_runs_benchmarks_per_stage(tmp_path):
    b = tmp_path / "benchmarks"
    _bench(b / "report.tsv", 14.0, 12.0)                                  # a rule with one job
    _bench(b / "backbone" / "demo.tsv", 60.5, 110.0)
    for i, s in enumerate((10.0, 20.0, 33.0)):                             # nested folders, any depth
        _bench(b / "evaluate" / "demo" / "ucat" / f"set{i}.tsv", s, s / 2)
    res = subprocess.run([sys.executable, str(SCRIPT), "--dir", str(tmp_path)], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stderr
    rows = {line.split()[0]: line.split()[1:] for line in res.stdout.splitlines()}
    assert list(rows)[:4] == ["stage", "backbone", "evaluate", "report"]   # pipeline order
    assert rows["evaluate"] == ["3", "63.0", "20.0", "33.0", "31.5"]       # jobs, job-s, median, max, CPU-s
    assert rows["backbone"][:2] == ["1", "60.5"] and rows["total"] == ["5", "137.5"]
    assert not (tmp_path / ".snakemake").exists()                          # nothing ran


def test_no_benchmarks_is_a_one_line_error(tmp_path):
    res = subprocess.run([sys.executable, str(SCRIPT), "--dir", str(tmp_path)], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and res.stderr.startswith("error: no benchmark files")


def _alive(pid: int) -> bool:
    """Running (a zombie left for a container's init to reap has ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def test_interrupted_run_stops_its_jobs_and_removes_its_folder(tmp_path):
    """A stand-in `snakemake` that starts a long job: Ctrl-C on the script ends both, and the copy goes."""
    bin_dir, tmp, pids = tmp_path / "bin", tmp_path / "tmp", tmp_path / "pids"
    bin_dir.mkdir()
    tmp.mkdir()
    fake = bin_dir / "snakemake"
    fake.write_text(f"#!/bin/sh\nsleep 300 &\necho $$ $! > {pids}\nwait\n")
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "TMPDIR": str(tmp)}
    proc = subprocess.Popen([sys.executable, str(SCRIPT), "--run", "--cores", "1"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not (pids.is_file() and pids.read_text().strip().count(" ") == 1) and time.time() < deadline:
        time.sleep(0.1)
    started = [int(p) for p in pids.read_text().split()]
    assert list(tmp.iterdir())                                             # the copy exists while it runs
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    time.sleep(0.2)
    assert not any(_alive(p) for p in started)                             # snakemake and its job are gone
    assert list(tmp.iterdir()) == []                                       # no temporary folder left
