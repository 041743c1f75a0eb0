"""Per-job GPU assignment (ucat.gpus) without a GPU: processes compete for N fake devices."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from ucat import gpus

# A job: claim one of N devices, record when it held which, hold it a while, exit (or crash).
JOB = """
import json, os, sys, time
from ucat import gpus
n, directory, hold, out, how = int(sys.argv[1]), sys.argv[2], float(sys.argv[3]), sys.argv[4], sys.argv[5]
i, fh = gpus.claim(n, directory, poll=0.02)
start = time.time()
time.sleep(hold)
with open(out, "a") as log:
    log.write(json.dumps({"gpu": i, "start": start, "end": time.time(), "pid": os.getpid()}) + "\\n")
if how == "crash":
    os._exit(3)   # no cleanup at all: the kernel must drop the lock
if how == "hang":
    time.sleep(600)
"""


def _spawn(n, directory, hold, out, how="exit"):
    return subprocess.Popen([sys.executable, "-c", JOB, str(n), str(directory), str(hold), str(out), how],
                            env={**os.environ, "PYTHONWARNINGS": "ignore"})


def _records(out):
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_jobs_never_share_a_device_and_all_devices_are_used(tmp_path):
    n, jobs, out = 3, 7, tmp_path / "held.jsonl"
    procs = [_spawn(n, tmp_path / "locks", 0.6, out) for _ in range(jobs)]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    rec = _records(out)
    assert len(rec) == jobs
    assert {r["gpu"] for r in rec} == set(range(n))       # N at a time: every device got work
    for a in rec:                                         # no two jobs on one device at once
        for b in rec:
            if a is not b and a["gpu"] == b["gpu"]:
                assert a["end"] <= b["start"] or b["end"] <= a["start"], (a, b)
    # more jobs than devices waited rather than doubling up: the run took at least ceil(7/3) holds
    assert max(r["end"] for r in rec) - min(r["start"] for r in rec) >= 2 * 0.6


def test_a_crashed_or_killed_job_releases_its_device(tmp_path):
    out, locks = tmp_path / "held.jsonl", tmp_path / "locks"
    assert _spawn(1, locks, 0.0, out, "crash").wait(timeout=60) == 3
    hung = _spawn(1, locks, 0.0, out, "hang")
    deadline = time.time() + 60
    while len(_records(out)) < 2 and time.time() < deadline:
        time.sleep(0.05)
    assert len(_records(out)) == 2                      # the device came back after the crash
    with pytest.raises(TimeoutError):                   # now held by the hanging job
        gpus.claim(1, str(locks), poll=0.02, timeout=0.3)
    os.kill(hung.pid, signal.SIGKILL)
    hung.wait(timeout=30)
    i, fh = gpus.claim(1, str(locks), poll=0.02, timeout=10)   # and back again after SIGKILL
    assert i == 0
    fh.close()


def test_cpu_one_gpu_and_explicit_index_are_left_alone(monkeypatch, tmp_path):
    monkeypatch.setenv("UCAT_GPU_LOCK_DIR", str(tmp_path / "locks"))
    assert gpus.assign(torch.device("cpu")) == torch.device("cpu")
    assert gpus.assign(torch.device("cuda", 1)) == torch.device("cuda", 1)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert gpus.assign(torch.device("cuda")) == torch.device("cuda")
    assert not (tmp_path / "locks").exists()              # nothing claimed


def test_multi_gpu_assign_takes_a_free_device(monkeypatch, tmp_path):
    monkeypatch.setenv("UCAT_GPU_LOCK_DIR", str(tmp_path / "locks"))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    chosen = []
    monkeypatch.setattr(torch.cuda, "set_device", lambda i: chosen.append(i))
    monkeypatch.setattr(gpus, "_held", None)
    held_by_other = gpus.claim(2, str(tmp_path / "locks"))   # another job holds device 0
    assert held_by_other[0] == 0
    dev = gpus.assign(torch.device("cuda"))
    assert dev == torch.device("cuda", 1) and chosen == [1]
    assert gpus.assign(torch.device("cuda")) == torch.device("cuda", 1)   # the process keeps its device
    held_by_other[1].close()
    gpus._held[1].close()
    monkeypatch.setattr(gpus, "_held", None)


def test_visible_count_reads_the_override_and_the_device_setting(monkeypatch):
    from ucat.errors import ConfigError

    monkeypatch.setenv("UCAT_GPUS", "4")
    assert gpus.visible_count("auto") == gpus.visible_count("cpu") == 4    # the override decides
    monkeypatch.setenv("UCAT_GPUS", "two")
    with pytest.raises(ConfigError, match="UCAT_GPUS"):
        gpus.visible_count()
    monkeypatch.delenv("UCAT_GPUS")
    assert gpus.visible_count("cpu") == 0
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    assert gpus.visible_count("auto") == n and gpus.visible_count("cuda:0") == min(n, 1)
