"""The one key rule for every cache and resume state: a key covers everything that decides the bytes.

A result may be reused (a cached evaluation cell, cached class text features, a fine-tuning
resume state) only when every input that decides its bytes is the same.  :func:`key` builds that
identity from five parts, and every cache and resume state of the package goes through it:

- ``code``: the bytes of every package file the computation runs or reads, Python modules and
  data files alike (``codedeps.code_deps``: the modules found from the imports, and the class-name
  lists, schema and tables those modules read);
- ``params``: the values of every parameter key the stage reads (``ucat.keys``), ``run.compile``
  and ``run.precision`` included;
- ``inputs``: content digests of the files it reads (checkpoint bytes, the data set's verified
  manifest);
- ``libraries``: the versions of every library that decides numbers or decodes data;
- ``device``: the device type, and what changes float results on it (the GPU model; the CPU's
  thread count and vector-kernel set).

The record is kept beside what it keys (a resume state, a cache entry), so a mismatch can say
which part differs (:func:`differences`).  Torch is imported only to describe a device.
"""

from __future__ import annotations

import functools
import hashlib
import json
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping

from .codedeps import PACKAGE_DIR, SRC, code_deps

FORMAT = "ucat-key-v2"
# distributions whose version can change a stored number: kernels, weights' loaders, tokenizer,
# attacks, data decoding (JPEG, HDF5, class lemmas), resampling
NUMERIC_LIBRARIES = ("torch", "torchvision", "open_clip_torch", "pyautoattack", "numpy", "scipy", "pillow",
                     "timm", "h5py")


@functools.cache
def library_versions() -> dict[str, str]:
    """``{distribution: version}`` of :data:`NUMERIC_LIBRARIES` ("absent" for one not installed)."""
    out = {}
    for dist in NUMERIC_LIBRARIES:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "absent"
    return out


@functools.cache
def code_record(*entries: str) -> dict[str, str]:
    """``{repository-relative file: sha256}`` of every package file the entries run or read."""
    return {rel: hashlib.sha256((PACKAGE_DIR / Path(rel).relative_to(SRC)).read_bytes()).hexdigest()
            for rel in code_deps(*entries)}


def device_record(device) -> dict[str, Any]:
    """What of the device decides float results: its type, the GPU model, or the CPU's thread count."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return {"type": "cuda", "name": torch.cuda.get_device_name(device)}
    # the vector kernels torch picked for this CPU (AVX2, AVX512, ...) change float results too
    return {"type": device.type, "threads": torch.get_num_threads(), "kernels": torch.backends.cpu.get_cpu_capability()}


def record(kind: str, *, code: tuple[str, ...], params: Mapping[str, Any], inputs: Mapping[str, str], device,
           extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Everything that decides the bytes of one ``kind`` of result (see the module docstring).

    ``params``: the values of the keys the computation reads (``config.select(params, keys.…)``)."""
    return {"format": FORMAT, "kind": kind, "code": code_record(*code), "params": dict(params),
            "inputs": dict(inputs), "libraries": library_versions(), "device": device_record(device),
            **({"extra": dict(extra)} if extra else {})}


def digest(rec: Mapping[str, Any]) -> str:
    """The key: sha256 of the record's canonical JSON."""
    return hashlib.sha256(json.dumps(rec, sort_keys=True, default=str).encode()).hexdigest()


def key(kind: str, **parts) -> str:
    """``digest(record(kind, ...))``: the one function every cache and resume state keys with."""
    return digest(record(kind, **parts))


def differences(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> str:
    """A short human description of what differs between two records (for one-line notices)."""
    if not isinstance(old, Mapping):
        return "no record of what it was made from"
    found = []
    for part in ("format", "kind", "code", "params", "inputs", "libraries", "device", "extra"):
        a, b = old.get(part), new.get(part)
        if a == b:
            continue
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            names = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
            shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
            found.append(f"{part} ({shown})")
        else:
            found.append(part)
    return "; ".join(found) or "nothing"
