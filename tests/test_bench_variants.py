"""``ucat bench --variants`` on the tiny demo model, CPU only: one run, every variant a row."""

import argparse
import json

import pytest
import yaml

from ucat import bench, bench_variants, cli, config
from ucat.errors import ConfigError


@pytest.fixture(scope="module")
def variants_run(params, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("variants")
    (tmp / "params.yaml").write_text(yaml.safe_dump(config.file_form(params)))
    args = argparse.Namespace(params=str(tmp / "params.yaml"), overrides=[], out=str(tmp / "v.json"), model="auto",
                              repeats=1, compile=False, threads=None, quiet=True, batch=4, pgd_steps=1,
                              numerics_batch=16, variants="eager,max-autotune,reduce-overhead", baseline=None)
    return args


@pytest.mark.slow   # about 25 s on an idle 2-core CPU
def test_one_run_times_every_variant_and_skips_cuda_modes_on_cpu(variants_run, capsys):
    assert cli.cmd_bench(variants_run) == 0
    printed = capsys.readouterr().out
    result = json.loads(open(variants_run.out).read())
    rows = {(v["mode"], v["patch_embed"], v["weights"]): v for v in result["variants"]}
    assert set(rows) == {(m, p, w) for m in ("eager", "max-autotune", "reduce-overhead")
                         for p in ("conv", "matmul") for w in ("pipeline", "bf16")}
    for (mode, patch, weights), v in rows.items():
        assert v["name"] in printed
        if mode != "eager":
            assert "needs CUDA" in v["skipped"] and "finetune" not in v
            continue
        assert "skipped" not in v and "error" not in v, v
        for w in ("finetune", "pgd_eval"):
            assert v[w]["batch"] == 4 and v[w]["images_per_s"] > 0 and v[w]["fraction_of_datasheet_peak"] is None
            assert v[w]["compiled"] is False
        # matmul % in the variant's compute dtype: bf16 weights against the bf16 matmul rate
        assert v["matmul_dtype"] == ("bfloat16" if weights == "bf16" else "float32")
        rate = result["matmul_rates"][v["matmul_dtype"]]["tflops"]
        assert v["finetune"]["fraction_of_matmul_peak"] == pytest.approx(v["finetune"]["achieved_tflops"] / rate)
    base = rows[("eager", "conv", "pipeline")]
    assert base["speedup_finetune"] == base["speedup_pgd_eval"] == 1.0
    other = rows[("eager", "matmul", "bf16")]
    assert other["speedup_pgd_eval"] == pytest.approx(other["pgd_eval"]["images_per_s"] / base["pgd_eval"]["images_per_s"])
    num = result["numerics"]
    assert num["weights"]["mode"] == "weights" and num["autocast"]["mode"] == "autocast"
    assert num["patch_embed"]["within_tolerance"] and num["patch_embed"]["rel_delta_logits"] < 1e-5
    alone = result["patch_embed_alone"]
    assert [a["layer"] for a in alone] == ["3->64, 8x8 stride 8, 32 px", "3->768, 32x32 stride 32, 224 px"]
    assert all(a["speedup"] == pytest.approx(a["conv_s"] / a["matmul_s"]) for a in alone)
    assert "skipped: needs CUDA (CUDA graphs)" in printed and "no datasheet entry" in printed
    assert "numerics bf16 weights vs fp32" in printed and "GPU figures: unmeasured" in printed


def test_skip_reasons():
    ok = {"weights": {"within_tolerance": True}, "patch_embed": {"within_tolerance": True}}
    assert bench_variants.skip_reason("max-autotune", "conv", "pipeline", False, ok).startswith("needs CUDA")
    assert bench_variants.skip_reason("max-autotune", "conv", "pipeline", True, ok) is None
    bad = {"weights": {"within_tolerance": False}, "patch_embed": {"within_tolerance": False}}
    assert bench_variants.skip_reason("eager", "conv", "bf16", True, bad) == "bf16 weights fail the numerics check"
    assert "patch embedding" in bench_variants.skip_reason("eager", "matmul", "pipeline", True, bad)
    assert bench_variants.skip_reason("eager", "conv", "pipeline", True, bad) is None


def test_speedups_need_the_eager_baseline():
    rows = [{"mode": "default", "patch_embed": "conv", "weights": "pipeline",
             "finetune": {"images_per_s": 3.0}, "pgd_eval": {"images_per_s": 2.0}}]
    bench_variants.add_speedups(rows)
    assert rows[0]["speedup_finetune"] is None   # no eager row in this run: no made-up ratio


def test_bad_modes_are_one_line_errors(params, tmp_path, capsys):
    with pytest.raises(ConfigError, match="--variants: unknown compile mode 'fast'"):
        bench_variants.parse_modes("eager,fast")
    assert bench_variants.parse_modes("default, eager,default") == ("default", "eager")
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(config.file_form(params)))
    assert cli.main(["bench", "--params", str(path), "--variants", "--baseline", "official", "--out",
                     str(tmp_path / "b.json")]) != 0
    assert "--variants and --baseline: choose one" in capsys.readouterr().err
    assert not (tmp_path / "b.json").exists()


def test_table_shows_both_fractions_speedups_and_why_rows_are_missing():
    def run(ips, tflops):
        return {"images_per_s": ips, "achieved_tflops": tflops, "fraction_of_matmul_peak": tflops / 700,
                "fraction_of_datasheet_peak": tflops / 989.4}
    variants = [
        {"mode": "eager", "patch_embed": "conv", "weights": "pipeline", "name": "eager, conv, fp32 weights + bf16 autocast",
         "finetune": run(1000.0, 200.0), "pgd_eval": run(300.0, 150.0)},
        {"mode": "default", "patch_embed": "matmul", "weights": "bf16", "name": "default, matmul, bf16 weights",
         "finetune": run(2500.0, 500.0), "pgd_eval": run(600.0, 300.0)},
        {"mode": "reduce-overhead", "patch_embed": "conv", "weights": "pipeline", "name": "reduce-overhead, conv, x",
         "error": "RuntimeError: overwritten by a subsequent run"},
    ]
    bench_variants.add_speedups(variants)
    num = {m: {"batch": 64, "argmax_agreement": 1.0, "abs_delta_pgd_accuracy": 0.0, "max_abs_delta_logits": 0.3,
               "pgd": {"steps": 3}, "tolerance": dict(bench.NUMERICS_TOL), "within_tolerance": True}
           for m in bench.NUMERICS_MODES}
    num["patch_embed"] = {"rel_delta_logits": 4e-7, "rel_delta_input_grad": 2e-6, "tolerance": 1e-5, "within_tolerance": True}
    result = {"meta": {"device_name": "NVIDIA H200", "torch": "x", "model": "ViT-B-32", "arch": "ViT-B-32-quickgelu",
                       "image_size": 224, "batch": 256, "repeats": 3, "pgd_eval": {"steps": 100}},
              "datasheet": bench.datasheet.describe("NVIDIA H200"),
              "matmul_rates": {"bfloat16": {"n": 8192, "tflops": 700.0}}, "numerics": num,
              "patch_embed_alone": [{"layer": "3->768, 32x32 stride 32, 224 px", "batch": 256, "conv_s": 0.004,
                                     "matmul_s": 0.001, "speedup": 4.0}],
              "variants": variants, "gpu": "measured"}
    lines = bench_variants.format_variants(result).splitlines()
    fast = next(line for line in lines if line.startswith("default, matmul, bf16 weights")).split()
    # images/s, DS% (500/989.4, 300/989.4), MM% (500/700, 300/700), speed-ups 2.5 and 2
    assert fast[-8:] == ["2500", "600", "50.5", "30.3", "71.4", "42.9", "2.5", "2"]
    assert any(line.startswith("reduce-overhead, conv, x") and "failed: RuntimeError" in line for line in lines)
    assert any("989.4 TFLOP/s (H200 SXM" in line for line in lines)
    assert any("conv 4 ms, matmul 1 ms, 4x" in line for line in lines)
