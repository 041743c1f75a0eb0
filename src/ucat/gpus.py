"""One GPU per job on a multi-GPU node, whatever engine started the job.

Snakemake 9's local executor counts a ``gpu`` resource (``--resources gpu=N`` caps how many GPU
jobs run at once) but never tells a job *which* device to use (its source sets no
``CUDA_VISIBLE_DEVICES``), and DVC has no notion of devices at all.  So the ``ucat`` process
claims a device itself: an exclusive ``fcntl.flock`` on ``<lock dir>/gpu<i>.lock`` for the first
free index, held by an open file for the life of the process.  The kernel drops the lock when the
process exits or crashes, so a dead job never keeps its GPU.  More jobs than GPUs wait for one to
free.  One visible GPU, an explicit ``cuda:<i>`` or a CPU device: nothing changes.

How many GPU jobs Snakemake runs at once is :func:`visible_count` (the workflow sets its ``gpu``
resource to it unless ``--resources gpu=N`` says otherwise).

The lock directory is run-local (``.ucat/gpu-locks`` under the working directory, where both
engines run); ``UCAT_GPU_LOCK_DIR`` moves it (use one directory per node, not a shared file system).
"""

from __future__ import annotations

import fcntl
import os
import time
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    import torch

LOCK_DIR = os.path.join(".ucat", "gpu-locks")
_held: tuple[int, IO] | None = None


def lock_dir() -> str:
    return os.environ.get("UCAT_GPU_LOCK_DIR") or LOCK_DIR


def visible_count(device: str = "auto") -> int:
    """CUDA devices the jobs of a run can use: ``UCAT_GPUS`` when set (a count: an override, and how the
    tests stand in for a multi-GPU node), none for ``run.device: cpu``, one for a fixed ``cuda:<i>``,
    else torch's count, which honours ``CUDA_VISIBLE_DEVICES``."""
    from .errors import ConfigError

    env = os.environ.get("UCAT_GPUS", "").strip()
    if env:
        if not env.isdigit():
            raise ConfigError(f"UCAT_GPUS: a number of GPUs (0 or more), got {env!r}")
        return int(env)
    if device == "cpu":
        return 0
    import torch

    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return min(n, 1) if device.startswith("cuda:") else n


def claim(n_devices: int, directory: str, poll: float = 0.5, timeout: float | None = None,
          log=lambda msg: None) -> tuple[int, IO]:
    """Lock the first free device index in ``range(n_devices)``; block until one frees.

    Returns the index and the open lock file (keep it open: closing it releases the device).
    """
    os.makedirs(directory, exist_ok=True)
    start, told = time.monotonic(), False
    while True:
        for i in range(n_devices):
            fh = open(os.path.join(directory, f"gpu{i}.lock"), "a+")
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.close()
                continue
            fh.seek(0)
            fh.truncate()
            fh.write(f"{os.getpid()}\n")  # for people looking; the lock, not the text, decides
            fh.flush()
            return i, fh
        if timeout is not None and time.monotonic() - start > timeout:
            raise TimeoutError(f"no free GPU among {n_devices} after {timeout:.0f} s (locks in {directory})")
        if not told:
            log(f"all {n_devices} GPUs are taken by other ucat jobs; waiting (locks in {directory})")
            told = True
        time.sleep(poll)


def assign(device: torch.device, log=print) -> torch.device:
    """``cuda`` on a node with several visible GPUs -> ``cuda:<i>`` of a device this process holds."""
    import torch  # here, not at import: lock-only users (tests, tools) stay light

    global _held
    if device.type != "cuda" or device.index is not None:
        return device
    n = torch.cuda.device_count()
    if n <= 1:
        return device
    if _held is None:
        _held = claim(n, lock_dir(), log=log)
    torch.cuda.set_device(_held[0])
    return torch.device("cuda", _held[0])
