"""Images/s of the fine-tuning data loader (decode + resize + to tensor), to set beside the step's.

A faster fine-tuning step only helps while the loader keeps up with it.  This measures the
loader the fine-tuning stage builds (``torch.utils.data.DataLoader`` over the set's transform,
``data.preprocess`` at the model's resolution, ``finetune.batch_size``, ``data.num_workers``
workers) on JPEGs of TinyImageNet's size (64 x 64, quality 95, random content, held in memory:
file reads are left out, so the figure is the CPU cost alone).  The images are synthetic so that
the figure needs no download and no prepared data; random pixels are the costliest content for the
JPEG decoder (an upper bound there), and the resize costs the same whatever the content.  A
worker's capacity is the inverse of the CPU time per image, measured in this process so that it
holds on a busy machine; ``workers_to_feed`` says how many keep up with a given step rate.
"""

from __future__ import annotations

import io
import math
import time

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from .data.transforms import transform_for
from .errors import ConfigError


class SyntheticJpegs(Dataset):
    """``n`` distinct JPEGs (``side`` x ``side`` RGB, random pixels), decoded and transformed on access."""

    def __init__(self, n: int, side: int, transform, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.files, self.transform = [], transform
        for _ in range(n):
            buf = io.BytesIO()
            Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(buf, "JPEG", quality=95)
            self.files.append(buf.getvalue())

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i):
        return self.transform(Image.open(io.BytesIO(self.files[i]))), 0


def _pass(loader) -> tuple[int, float, float]:
    """(images, wall seconds, this process's CPU seconds) of one pass after the first batch."""
    it = iter(loader)
    next(it)                                     # worker start-up is paid once per epoch, not per image
    wall, cpu = time.perf_counter(), time.process_time()
    n = sum(len(x) for x, _ in it)
    return n, time.perf_counter() - wall, time.process_time() - cpu


def loader_rate(params: dict, image_size: int, batches: int = 8, workers: int | None = None, side: int = 64) -> dict:
    """Images/s of the fine-tuning loader over ``batches`` batches (after one warm-up batch).

    The CPU time per image is measured in this process (no workers), so it holds on a busy
    machine too; a worker's capacity is its inverse.  The wall rate is with ``workers`` workers.
    """
    batch = params["finetune"]["batch_size"]
    workers = params["data"]["num_workers"] if workers is None else workers
    if batches < 1 or workers < 0:
        raise ConfigError(f"loader bench: need batches >= 1 and workers >= 0 (got {batches}, {workers})")
    preprocess = params["data"].get("preprocess", "open_clip")
    dataset = SyntheticJpegs(batch * (batches + 1), side, transform_for(params["data"]["finetune"], preprocess,
                                                                        image_size))
    n, _, cpu = _pass(DataLoader(dataset, batch_size=batch, num_workers=0))
    n_wall, wall, _ = _pass(DataLoader(dataset, batch_size=batch, num_workers=workers)) if workers else (n, None, 0)
    cpu_ms = 1000 * cpu / n
    return {"images_per_second": round(n_wall / wall, 1) if wall else round(1000 / cpu_ms, 1), "workers": workers,
            "cpu_ms_per_image": round(cpu_ms, 3), "per_worker_images_per_second": round(1000 / cpu_ms, 1),
            "batch": batch, "image_size": image_size, "source_side": side, "preprocess": preprocess}


def workers_to_feed(loader: dict, step_images_per_second: float) -> int:
    """Loader workers (at the measured per-worker rate) needed to keep up with a step rate."""
    return math.ceil(step_images_per_second / loader["per_worker_images_per_second"])


def format_loader(loader: dict, steps: dict[str, float]) -> str:
    """One line for the loader, one per fine-tuning step rate beside it (``{label: images/s}``)."""
    lines = [f"fine-tuning loader: {loader['images_per_second']} images/s with {loader['workers']} worker(s) "
             f"({loader['cpu_ms_per_image']} CPU ms per image: {loader['per_worker_images_per_second']} per worker; "
             f"{loader['source_side']}-px JPEG -> {loader['image_size']} px, {loader['preprocess']})"]
    for label, rate in steps.items():
        need = workers_to_feed(loader, rate)
        verdict = "the loader keeps up" if loader["images_per_second"] >= rate else "the step would WAIT on the loader"
        lines.append(f"  beside {label} at {rate} images/s: {verdict}; {need} worker(s) needed")
    return "\n".join(lines)


def step_rates(bench_result: dict) -> dict[str, float]:
    """The fine-tuning step rates of a ``ucat bench`` result: ``{label: images/s}``."""
    return {f"finetune {r['method']}{' compiled' if r['compiled'] else ''} b{r['batch']}": round(r["images_per_s"], 1)
            for r in bench_result.get("runs", []) if r["workload"] == "finetune"}
