"""The datasheet table: device names as torch reports them, dense (not sparse) bf16 figures."""

import pytest

from ucat import datasheet


@pytest.mark.parametrize("name, model, tflops", [
    ("NVIDIA H200", "H200 SXM", 989.4),
    ("NVIDIA H100 80GB HBM3", "H100 SXM5", 989.4),
    ("NVIDIA H100 PCIe", "H100 PCIe", 756.5),
    ("NVIDIA H100 NVL", "H100 NVL", 835.5),
    ("NVIDIA GH200 480GB", "GH200 (H100)", 989.4),
    ("NVIDIA A100-SXM4-80GB", "A100", 312.0),
    ("NVIDIA A100-PCIE-40GB", "A100", 312.0),
    ("NVIDIA A100 80GB PCIe", "A100", 312.0),
    ("NVIDIA L40S", "L40S", 362.05),
    ("NVIDIA L40", "L40", 181.05),
    ("NVIDIA L4", "L4", 121.0),
    ("NVIDIA A10", "A10", 125.0),
    ("NVIDIA GeForce RTX 4090", "GeForce RTX 4090", 165.2),
])
def test_lookup_by_torch_device_names(name, model, tflops):
    entry = datasheet.lookup(name)
    assert entry is not None and entry.model == model
    assert entry.bf16_dense_tflops == pytest.approx(tflops)


@pytest.mark.parametrize("name", ["NVIDIA A10G", "NVIDIA A100X", "cpu (AMD EPYC 7763; 2 cores, 2 torch threads)",
                                  "NVIDIA B200", "", "Radeon RX 7900"])
def test_unknown_devices_have_no_entry(name):
    assert datasheet.lookup(name) is None
    assert datasheet.describe(name) == {"device_name": name, "model": None, "bf16_dense_tflops": None,
                                        "why": "no datasheet entry"}


def test_v100_is_known_but_has_no_bf16():
    entry = datasheet.lookup("Tesla V100-SXM2-16GB")
    assert entry.model == "V100" and entry.bf16_dense_tflops is None
    assert "FP16" in datasheet.describe("Tesla V100-PCIE-32GB")["why"]


DERIVABLE = [(p, e) for p, e in datasheet.TABLE if e.derivation is not None]   # rows with a public SM count / clock


def test_most_rows_can_be_checked_by_arithmetic():
    assert len(DERIVABLE) >= len(datasheet.TABLE) // 2


@pytest.mark.parametrize("pattern, entry", DERIVABLE, ids=[e.model for _, e in DERIVABLE])
def test_each_row_is_reproduced_by_the_chip_arithmetic(pattern, entry):
    """SMs x boost clock x dense FLOP/SM/clock gives the dense figure (datasheets round to 3-4 digits),
    so a sparse figure taken for a dense one, or a typo, fails here."""
    sms, mhz, flop_per_clock = entry.derivation
    assert sms * mhz * 1e6 * flop_per_clock / 1e12 == pytest.approx(entry.bf16_dense_tflops, rel=2e-3)
