"""Vendors' dense bf16 tensor peaks, so ``ucat bench`` can state utilisation as readers compare it.

The bench's own matmul rate (:func:`ucat.bench.matmul_rate`) is what a GPU reaches on one large
GEMM; a datasheet peak is what everyone else divides by.  Both are printed.  Figures are the
**dense** bf16 tensor-core rate with FP32 accumulation (what a PyTorch bf16 matmul uses), never
the "with sparsity" figure the datasheets print first: where a datasheet prints only the sparse
figure, ``printed`` holds it and ``sparse`` is true, and the dense rate is half of it.  Rows
whose architecture numbers are public also carry SMs x boost clock x dense FLOP per SM per
clock, which reproduces the figure (tests).  Torch-free.

Sources (vendor datasheets and architecture whitepapers):
- H100 SXM5 / PCIe: "NVIDIA H100 Tensor Core GPU Architecture" whitepaper, table "H100 vs A100":
  peak BF16 tensor TFLOPS with FP32 accumulate 989.4 / 1978.9 (SXM5), 756.5 / 1513 (PCIe);
  H100 NVL: H100 datasheet, BF16 1,671 TFLOPS with sparsity.
- H200 SXM and GH200: their datasheets print BF16 1,979 TFLOPS with sparsity, the H100 SXM5's
  compute (same SMs and clock), whose whitepaper gives the unrounded 989.4 dense; H200 NVL: H200
  datasheet, 1,671 TFLOPS with sparsity.
- A100 (40 and 80 GB, SXM4 and PCIe): A100 datasheet, BF16 312 / 624 TFLOPS.
- L40S: L40S datasheet, BF16 362.05 / 733 TFLOPS;  L40: L40 datasheet, 181.05 / 362.1.
- L4: L4 datasheet, BF16 121 / 242;  A10: A10 datasheet, BF16 125 / 250;  A40: A40 datasheet, 149.7 / 299.4.
- RTX 4090: "NVIDIA Ada GPU Architecture" whitepaper, peak BF16 tensor TFLOPS with FP32
  accumulate 165.2 / 330.4 (GeForce runs FP32 accumulation at half the FP16-accumulate rate).
- V100: V100 datasheet: FP16 tensor cores only (125 TFLOPS SXM2, 112 PCIe), no bf16.
"""

from __future__ import annotations

import re
from typing import NamedTuple


class Entry(NamedTuple):
    model: str                     # the product, as the datasheet names it
    printed: float | None          # bf16 TFLOP/s as the datasheet prints it (None: no bf16)
    sparse: bool                   # the printed figure is the "with sparsity" one (dense = half)
    source: str
    derivation: tuple[int, int, int] | None = None   # SMs, boost MHz, dense bf16 FLOP per SM per clock
    note: str = ""

    @property
    def bf16_dense_tflops(self) -> float | None:
        if self.printed is None:
            return None
        return self.printed / 2 if self.sparse else self.printed


# ordered: the first pattern that matches the normalised device name wins (H200 NVL before H200)
TABLE: tuple[tuple[str, Entry], ...] = (
    (r"\bGH200\b", Entry("GH200 (H100)", 989.4, False, "GH200 datasheet; H100 architecture whitepaper", (132, 1830, 4096))),
    (r"\bH200\b.*\bNVL\b", Entry("H200 NVL", 1671.0, True, "H200 datasheet")),
    (r"\bH200\b", Entry("H200 SXM", 989.4, False, "H200 datasheet; H100 architecture whitepaper", (132, 1830, 4096))),
    (r"\bH100\b.*\bNVL\b", Entry("H100 NVL", 1671.0, True, "H100 datasheet")),
    (r"\bH100\b.*\bPCIE\b", Entry("H100 PCIe", 756.5, False, "H100 architecture whitepaper", (114, 1620, 4096))),
    (r"\bH100\b", Entry("H100 SXM5", 989.4, False, "H100 architecture whitepaper", (132, 1830, 4096))),
    (r"\bA100\b", Entry("A100", 312.0, False, "A100 datasheet", (108, 1410, 2048))),
    (r"\bL40S\b", Entry("L40S", 362.05, False, "L40S datasheet")),
    (r"\bL40\b", Entry("L40", 181.05, False, "L40 datasheet")),
    (r"\bL4\b", Entry("L4", 121.0, False, "L4 datasheet", (58, 2040, 1024))),
    (r"\bA40\b", Entry("A40", 149.7, False, "A40 datasheet", (84, 1740, 1024))),
    (r"\bA10\b", Entry("A10", 125.0, False, "A10 datasheet", (72, 1695, 1024))),
    (r"\bRTX 4090\b", Entry("GeForce RTX 4090", 165.2, False, "Ada architecture whitepaper", (128, 2520, 512))),
    (r"\bV100\b", Entry("V100", None, False, "V100 datasheet", note="no bf16: FP16 tensor cores only")),
)


def normalise(name: str) -> str:
    """``torch.cuda.get_device_name`` spelling -> upper case words ("NVIDIA A100-SXM4-80GB" -> "NVIDIA A100 SXM4 80GB")."""
    return " ".join(re.sub(r"[-_]", " ", name).upper().split())


def lookup(device_name: str) -> Entry | None:
    """The datasheet row of a device name, or None for an unknown device (CPUs included)."""
    text = normalise(device_name)
    for pattern, entry in TABLE:
        if re.search(pattern, text):
            return entry
    return None


def describe(device_name: str) -> dict:
    """JSON-able: the matched row and its dense bf16 peak, or why there is none."""
    entry = lookup(device_name)
    if entry is None:
        return {"device_name": device_name, "model": None, "bf16_dense_tflops": None, "why": "no datasheet entry"}
    out = {"device_name": device_name, "model": entry.model, "bf16_dense_tflops": entry.bf16_dense_tflops,
           "printed_tflops": entry.printed, "printed_with_sparsity": entry.sparse, "source": entry.source}
    if entry.bf16_dense_tflops is None:
        out["why"] = entry.note
    return out
