"""``ucat bench`` on the tiny demo model, CPU only: JSON output, FLOP counts, bf16 numerics."""

from __future__ import annotations

import argparse
import json

import pytest
import torch
import yaml

from ucat import bench, cli, config
from ucat.errors import ConfigError


def analytic_vit_flops(image_size: int, patch: int, width: int, layers: int, embed_dim: int, classes: int) -> int:
    """Matmul FLOPs (2 per multiply-add) of one image through open_clip's ViT + zero-shot head."""
    patches = (image_size // patch) ** 2
    tokens = patches + 1                                 # + class token
    d = width
    patch_embed = 2 * patches * (3 * patch * patch) * d  # conv = one matmul per patch
    per_layer = (2 * 4 * d * d * tokens                  # qkv (3 d^2) + output projection (d^2)
                 + 2 * 2 * tokens * tokens * d           # q k^T and attn v
                 + 2 * 2 * 4 * d * d * tokens)           # MLP d -> 4d -> d
    projection = 2 * d * embed_dim                       # class token -> embedding
    logits = 2 * embed_dim * classes                     # cosine against the class features
    return patch_embed + layers * per_layer + projection + logits


@pytest.fixture(scope="module")
def bench_run(params, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bench")
    params_file = tmp / "params.yaml"
    params_file.write_text(yaml.safe_dump(config.file_form(params)))
    out = tmp / "results" / "bench.json"
    args = argparse.Namespace(params=str(params_file), overrides=[], out=str(out), model="auto", repeats=1,
                              compile=False, threads=None, quiet=True, batch=8, pgd_steps=2, numerics_batch=64)
    return args, out


def test_main_writes_json_with_positive_figures(bench_run, params, capsys):
    args, out = bench_run
    assert bench.main(args) == 0
    printed = capsys.readouterr().out
    assert "GPU figures: unmeasured (no CUDA device)" in printed
    assert "PGD-2 eval b8 throughput" in printed
    assert out.is_file()
    result = json.loads(out.read_text())
    meta = result["meta"]
    assert meta["device"] == "cpu" and meta["model"] == "demo"  # auto on CPU = the demo model
    assert meta["repeats"] == 1 and meta["batch_sizes"]["finetune"] == [8] and meta["pgd_eval"]["steps"] == 2
    assert meta["image_size"] == params["backbone"]["demo"]["image_size"] and meta["num_classes"] == 38
    assert meta["autocast_dtype"] == "float32"  # precision auto on CPU: no autocast, as the pipeline
    assert meta["train_attack"] == params["finetune"]["attack"]
    assert result["gpu"] == bench.UNMEASURED_GPU
    assert {r["workload"] for r in result["runs"]} == {"finetune", "pgd_eval", "caa_eval", "a3_eval"}
    assert meta["early_stop_evals"]["caa"]["steps"] == meta["early_stop_evals"]["a3"]["steps"] == 2
    assert meta["methods"] == ["ucat", "tga_zsr", "comp_tga"]   # UCAT, TGA-ZSR and Comp-TGA steps side by side
    assert [r["method"] for r in result["runs"] if r["workload"] == "finetune"] == meta["methods"]
    for run in result["runs"]:
        assert run["batch"] == 8 and len(run["seconds"]) == 1
        assert run["images_per_s"] > 0 and run["achieved_tflops"] > 0
        assert 0 < run["fraction_of_matmul_peak"]
        assert run["images_per_s"] == pytest.approx(8 / run["seconds_median"])
    assert result["matmul_peak"]["tflops"] > 0
    assert all(v > 0 for v in result["flops_per_image"].values())
    names = {r["name"] for r in result["rows"]}
    assert {"finetune UCAT b8 throughput", "finetune TGA-ZSR b8 throughput", "finetune Comp-TGA b8 throughput",
            "FLOPs/image forward"} <= names
    assert result["errors"] == []
    # every printed row shows the measurement it names, in its unit (built here from the raw fields)
    f, peak, num = result["flops_per_image"], result["matmul_peak"], result["numerics"]
    expected = {
        f"matmul {peak['n']}^3 {peak['dtype']}": (peak["tflops"], "TFLOP/s"),
        "FLOPs/image forward": (f["forward"] / 1e9, "GFLOP"),
        "FLOPs/image attack step (fwd+bwd to input)": (f["attack_step"] / 1e9, "GFLOP"),
        "FLOPs/image fine-tuning step UCAT": (f["finetune_step"] / 1e9, "GFLOP"),
        "FLOPs/image fine-tuning step TGA-ZSR": (f["finetune_step_tga_zsr"] / 1e9, "GFLOP"),
        "FLOPs/image fine-tuning step Comp-TGA": (f["finetune_step_comp_tga"] / 1e9, "GFLOP"),
        "FLOPs/image PGD-2 eval": (f["pgd_eval"] / 1e9, "GFLOP"),
        f"numerics {num['fast_dtype']} vs fp32 max|dlogits|": (num["max_abs_delta_logits"], "logit"),
        f"numerics argmax agreement (tol >= {num['tolerance']['argmax_agreement_min']})":
            (num["argmax_agreement"], "fraction"),
        f"numerics |dacc| after PGD-{num['pgd']['steps']} (tol <= {num['tolerance']['abs_delta_accuracy_max']})":
            (num["abs_delta_pgd_accuracy"], "fraction"),
    }
    runs = {r["workload"]: r for r in result["runs"]}
    # forwards per image, counted: PGD-2 then a forward is 3 (2 with autograd); the early-stopped
    # attacks at most that, at least the final forward; their FLOPs follow from the counts
    assert (runs["pgd_eval"]["forwards_per_image"], runs["pgd_eval"]["gradient_steps_per_image"]) == (3, 2)
    for name in ("caa_eval", "a3_eval"):
        r = runs[name]
        assert 1 <= r["forwards_per_image"] <= 3 and 0 <= r["gradient_steps_per_image"] <= 2
        assert r["flops_per_image"] == pytest.approx(r["gradient_steps_per_image"] * f["attack_step"]
                                                     + (r["forwards_per_image"] - r["gradient_steps_per_image"]) * f["forward"])
    for run in result["runs"]:
        if run["workload"] == "finetune":
            label = {"ucat": "UCAT", "tga_zsr": "TGA-ZSR", "comp_tga": "Comp-TGA"}[run["method"]]
            what, flops = f"finetune {label} b8", f[bench.step_key(run["method"])]
        else:
            what, flops = {"pgd_eval": ("PGD-2 eval b8", f["pgd_eval"]),
                           "caa_eval": ("CAA-2 eval b8", run.get("flops_per_image")),
                           "a3_eval": ("A³-2 eval b8", run.get("flops_per_image"))}[run["workload"]]
        tflops = flops * 8 / run["seconds_median"] / 1e12
        if run["workload"] != "finetune":
            expected[f"{what} forwards/image"] = (run["forwards_per_image"], "forwards")
        expected[f"{what} throughput"] = (8 / run["seconds_median"], "images/s")
        expected[f"{what} achieved"] = (tflops, "TFLOP/s")
        expected[f"{what} of matmul peak"] = (100 * tflops / peak["tflops"], "%")
        expected[f"{what} of datasheet peak"] = ("no datasheet entry", "")   # a CPU has no datasheet peak
        assert run["fraction_of_datasheet_peak"] is None
    expected["datasheet dense bf16 peak"] = ("no datasheet entry", "")
    assert result["datasheet"]["bf16_dense_tflops"] is None
    rows = {r["name"]: (r["value"], r["unit"]) for r in result["rows"]}
    assert rows.keys() == expected.keys()   # on CPU: no memory or GPU-busy rows
    for name, (value, unit) in expected.items():
        if isinstance(value, str):
            assert rows[name] == (value, unit) and f"{name}" in printed
            continue
        assert rows[name] == (pytest.approx(value, rel=1e-9), unit), name
        assert name in printed and f"{rows[name][0]:.4g}" in printed


def test_forward_flops_match_analytic_count(params):
    demo = params["backbone"]["demo"]
    net, _ = bench.build_classifier("demo", params, torch.device("cpu"))
    expected = analytic_vit_flops(demo["image_size"], demo["patch_size"], demo["vision_width"],
                                  demo["vision_layers"], demo["embed_dim"], net.num_classes)
    x = torch.rand(3, 3, demo["image_size"], demo["image_size"])

    def forward():
        with torch.no_grad():
            net(x)

    counted = bench.count_flops(forward) / 3
    assert counted == pytest.approx(expected, rel=0.10)
    # attention included (the CPU SDPA kernel has no formula in torch): much closer than 10%
    assert counted == pytest.approx(expected, rel=0.02)
    # the no-grad MultiheadAttention fast path must not hide the attention FLOPs
    net.eval()
    assert bench.count_flops(forward) / 3 == pytest.approx(counted, rel=1e-9)


def test_step_flops_are_consistent_with_the_forward(params):
    """Attack step = forward + backward to the input (~2 F); UCAT step = steps x 2F + reference and model forwards (2F) + backward (2F)."""
    attack = params["finetune"]["attack"]
    net, _ = bench.build_classifier("demo", params, torch.device("cpu"))
    f = bench.model_flops(net, params, attack, pgd_steps=7, device=torch.device("cpu"))
    fwd = f["forward"]
    assert f["attack_step"] == pytest.approx(2 * fwd, rel=0.10)
    assert f["finetune_step"] == pytest.approx((2 * attack["steps"] + 4) * fwd, rel=0.10)
    assert f["pgd_eval"] == pytest.approx(7 * f["attack_step"] + fwd)


def test_tga_step_flops_add_the_clean_pass(params):
    """TGA step = attack (steps x 2F) + the trained pass over adversarial and clean images with backward
    (2 x 3F) + the reference's clean pass (F): two forward-equivalents more than UCAT's (the maps are no matmuls)."""
    attack = params["finetune"]["attack"]
    net, _ = bench.build_classifier("demo", params, torch.device("cpu"))
    f = bench.model_flops(net, params, attack, pgd_steps=1, device=torch.device("cpu"),
                          methods=("ucat", "tga_zsr", "comp_tga"))
    fwd = f["forward"]
    for m in ("tga_zsr", "comp_tga"):
        assert f[bench.step_key(m)] == pytest.approx((2 * attack["steps"] + 7) * fwd, rel=0.10)
    assert f["finetune_step_tga_zsr"] - f["finetune_step"] == pytest.approx(3 * fwd, rel=0.10)


def test_methods_option_is_checked(params):
    assert bench.parse_methods(None) == bench.METHODS
    assert bench.parse_methods("ucat, comp_tga") == ("ucat", "comp_tga")
    for bad in ("clip", "tga", ""):
        with pytest.raises(ConfigError, match="--methods"):
            bench.parse_methods(bad)


@pytest.mark.numerics
def test_bf16_autocast_numerics_on_cpu(params):
    num = bench.numerics(params, torch.device("cpu"), n=64)
    assert num["fast_dtype"] == "bfloat16"
    assert num["max_abs_delta_logits"] > 0  # bf16 really ran: a silent fp32 fallback would give 0
    assert num["max_abs_delta_logits"] < 2.0
    assert num["argmax_agreement"] >= 0.9
    assert num["abs_delta_pgd_accuracy"] <= 0.1
    assert 0 < num["pgd_accuracy_fp32"] < 1  # the short PGD neither fails nor wins outright
    assert num["within_tolerance"] is True


def test_merged_length_and_profiler_busy_fraction():
    assert bench.merged_length([]) == 0
    assert bench.merged_length([(0, 2), (1, 3), (5, 6), (5.5, 5.7)]) == pytest.approx(4.0)
    a = torch.randn(256, 256)
    busy = bench.busy_fraction(lambda: [a @ a for _ in range(5)], 2, torch.device("cpu"), on="cpu")
    assert busy["kernels"] > 0
    assert 0 < busy["profiled_fraction"] <= 1.05


def test_cli_rejects_unknown_model(params, tmp_path, capsys):
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(config.file_form(params)))
    out = tmp_path / "bench.json"
    rc = cli.main(["bench", "--params", str(params_file), "--model", "resnet", "--out", str(out), "--quiet"])
    assert rc == 2
    assert "--model" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("flag", [["--batch", "0"], ["--pgd-steps", "0"], ["--methods", "clip"]])
def test_cli_rejects_bad_sizes_and_methods_before_measuring(params, tmp_path, capsys, flag):
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(config.file_form(params)))
    out = tmp_path / "bench.json"
    rc = cli.main(["bench", "--params", str(params_file), *flag, "--out", str(out), "--quiet"])
    assert rc == 2
    assert flag[0] in capsys.readouterr().err
    assert not out.exists()


def test_measure_divides_by_the_datasheet_peak_beside_the_matmul_rate():
    cpu = torch.device("cpu")
    wl = bench.Workload("finetune", lambda batch: (lambda: None), flops_per_image=3e9)
    row = bench.measure(wl, 4, 1, cpu, peak_tflops=2.0, compiled=False, datasheet_tflops=8.0)
    assert row["achieved_tflops"] == pytest.approx(3e9 * row["images_per_s"] / 1e12)
    assert row["fraction_of_matmul_peak"] == pytest.approx(row["achieved_tflops"] / 2.0)
    assert row["fraction_of_datasheet_peak"] == pytest.approx(row["achieved_tflops"] / 8.0)
    assert bench.measure(wl, 4, 1, cpu, 2.0, False)["fraction_of_datasheet_peak"] is None


def test_datasheet_rows_name_the_device_or_say_why_there_is_none():
    run = {"workload": "pgd_eval", "compiled": True, "batch": 256, "images_per_s": 500.0, "achieved_tflops": 250.0,
           "fraction_of_matmul_peak": 250 / 700, "fraction_of_datasheet_peak": 250 / 989.4}
    result = {"matmul_peak": {"n": 8192, "dtype": "bfloat16", "tflops": 700.0},
              "datasheet": bench.datasheet.describe("NVIDIA H100 80GB HBM3"),
              "flops_per_image": {"forward": 1e9, "attack_step": 2e9, "finetune_step": 8e9, "pgd_eval": 2e11},
              "meta": {"methods": ["ucat"], "pgd_eval": {"steps": 100}}, "runs": [run],
              "numerics": {"fast_dtype": "bfloat16", "max_abs_delta_logits": 0.1, "argmax_agreement": 1.0,
                           "abs_delta_pgd_accuracy": 0.0, "pgd": {"steps": 3},
                           "tolerance": dict(bench.NUMERICS_TOL)}}
    rows = {r["name"]: (r["value"], r["unit"]) for r in bench.table_rows(result)}
    assert rows["datasheet dense bf16 peak (H100 SXM5)"] == (989.4, "TFLOP/s")
    assert rows["PGD-100 eval compiled b256 of datasheet peak"] == (pytest.approx(100 * 250 / 989.4), "%")
    assert rows["PGD-100 eval compiled b256 of matmul peak"] == (pytest.approx(100 * 250 / 700), "%")
    result["datasheet"] = bench.datasheet.describe("Tesla V100-SXM2-32GB")
    run["fraction_of_datasheet_peak"] = None
    rows = {r["name"]: (r["value"], r["unit"]) for r in bench.table_rows(result)}
    assert rows["PGD-100 eval compiled b256 of datasheet peak"] == ("no bf16: FP16 tensor cores only", "")
