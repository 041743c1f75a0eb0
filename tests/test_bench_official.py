"""`ucat bench --baseline official` on CPU with tiny sizes: it runs, and the baseline has the
official loop's structure (weight gradients in the attack, prompts re-encoded every forward)."""

from __future__ import annotations

import json

import pytest
import torch

from ucat import bench_official, cli, config


def _params(params):
    p = config.validate(dict(params))
    p["run"]["device"] = "cpu"
    return p


def test_official_pgd_computes_weight_gradients_and_reencodes_prompts(params):
    clip, arch = bench_official.build_clip("demo", params, torch.device("cpu"))
    loop = bench_official.OfficialLoop(clip, arch, [f"c{i}" for i in range(5)], params, torch.device("cpu"))
    calls, frozen_calls = [], []
    loop.model.encode_text = (lambda f: lambda t: calls.append(1) or f(t))(loop.model.encode_text)
    loop.frozen.encode_text = (lambda f: lambda t: frozen_calls.append(1) or f(t))(loop.frozen.encode_text)
    x, y = torch.rand(4, 3, 32, 32), torch.randint(5, (4,))
    delta = loop.pgd(loop.model, x, y, 8 / 255, 2 / 255, 3)
    assert delta.abs().max() <= 8 / 255 + 1e-6 and delta.abs().max() > 0
    assert len(calls) == 3                                   # text tower once per attack step
    text_grads = [p.grad for p in loop.model.transformer.parameters()]
    assert all(g is not None and g.abs().sum() > 0 for g in text_grads[:2])   # full-model backward
    before = [p.detach().clone() for p in loop.model.visual.parameters()]
    loss = loop.train_step(x, y, 8 / 255, 2 / 255, 2)
    assert torch.isfinite(loss)
    assert len(calls) == 3 + 2 + 2 and len(frozen_calls) == 1   # 2 attack steps + adv, clean; frozen clean
    assert any(not torch.equal(a, b) for a, b in zip(before, loop.model.visual.parameters()))


@pytest.mark.parametrize("method,prompt_sets", [("tga_zsr", 1), ("comp_tga", 2)])
def test_official_tga_step_runs_four_image_passes_with_graphs(params, method, prompt_sets):
    """TGA-ZSR.py:334-342: adversarial forward for the logits, a second one for its map, the frozen and the
    trained model on the clean images, all with autograd graphs (the frozen weights get gradients)."""
    clip, arch = bench_official.build_clip("demo", params, torch.device("cpu"))
    loop = bench_official.OfficialTGALoop(clip, arch, [f"c{i}" for i in range(5)], params, torch.device("cpu"), method)
    image_calls, frozen_calls, text_calls = [], [], []
    loop.model.visual.register_forward_hook(lambda *a: image_calls.append(1))
    loop.frozen.visual.register_forward_hook(lambda *a: frozen_calls.append(1))
    loop.model.encode_text = (lambda f: lambda t: text_calls.append(1) or f(t))(loop.model.encode_text)
    x, y = torch.rand(4, 3, 32, 32), torch.randint(5, (4,))
    before = [p.detach().clone() for p in loop.model.visual.parameters()]
    loss = loop.train_step(x, y, 8 / 255, 2 / 255, 2)
    assert torch.isfinite(loss)
    assert len(image_calls) == 2 + 3 and len(frozen_calls) == 1      # 2 attack steps + adv, adv map, clean map
    assert len(text_calls) == prompt_sets + 2                         # prompts once per step, + each attack step
    assert all(p.grad is not None for p in loop.frozen.visual.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, loop.model.visual.parameters()))


def test_bench_baseline_cli_prints_both_loops_and_the_ratio(params, tmp_path, capsys):
    path = tmp_path / "params.yaml"
    p = _params(params)
    path.write_text(json.dumps(config.file_form(p)))
    out = tmp_path / "bench.json"
    args = cli.build_parser().parse_args(["bench", "--baseline", "official", "--params", str(path), "--repeats", "1",
                                          "--out", str(out), "--quiet"])
    args.batch, args.pgd_steps = 8, 2
    assert args.func(args) == 0
    text = capsys.readouterr().out
    res = json.loads(out.read_text())
    assert res["meta"]["classes"] == round(8 * 200 / 256)      # the paper's class-to-batch proportion
    assert res["meta"]["methods"] == ["ucat", "tga_zsr", "comp_tga"]
    for w in ("finetune", "finetune_tga_zsr", "finetune_comp_tga", "pgd_eval"):
        proj, off = res["phases"][f"{w}_project"], res["phases"][f"{w}_official"]
        assert proj["images_per_s"] > 0 and off["images_per_s"] > 0
        assert abs(res["speedup"][w] - proj["images_per_s"] / off["images_per_s"]) < 1e-9
    assert "speed-up project/official" in text and "GPU figures: unmeasured" in text
    assert "fine-tuning step TGA-ZSR official b8" in text and "fine-tuning step Comp-TGA speed-up project/official" in text
    assert "informative only" in text


def test_bench_help_documents_the_baseline(capsys):
    try:
        cli.build_parser().parse_args(["bench", "--help"])
    except SystemExit:
        pass
    assert "--baseline" in capsys.readouterr().out


def test_compiled_project_side_gets_its_own_rows_and_ratio():
    phases = {f"{w}_{side}": {"batch": 256, "images_per_s": v, "peak_memory_bytes": 2 ** 30}
              for w, vals in (("finetune", (100.0, 250.0, 400.0)), ("pgd_eval", (10.0, 20.0, 35.0)))
              for side, v in zip(("official", "project", "project_compiled"), vals)}
    speedup = {"finetune": 2.5, "finetune_compiled": 4.0, "pgd_eval": 2.0, "pgd_eval_compiled": 3.5}
    rows = {r["name"]: r["value"] for r in bench_official.baseline_rows(
        {"meta": {"pgd_eval_steps": 100}, "phases": phases, "speedup": speedup})}
    assert rows["fine-tuning step project compiled b256"] == 400.0
    assert rows["fine-tuning step speed-up project compiled/official"] == 4.0
    assert rows["PGD-100 eval speed-up project/official"] == 2.0
    assert rows["PGD-100 eval project compiled peak memory"] == 1.0


def test_baseline_refuses_methods_without_an_official_structure(params):
    from ucat.errors import ConfigError

    with pytest.raises(ConfigError, match="--methods: pmg_aft"):
        bench_official.run_baseline(params, torch.device("cpu"), methods=("pmg_aft",))
