"""The cost plan: its analytic FLOP counts against torch's counter, AutoAttack's shrinking set,
scaling with the parameters, rates from a bench result, and one-line errors."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ucat import attacks, bench, config, cost, flops, models, paths
from ucat.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("tecoa", "ucat", "pmg_aft", "fare", "tga_zsr", "comp_tga")   # every distinct step structure


@pytest.fixture(scope="module")
def tiny(params):
    """The tests' tiny demo tower with random weights, and parameters whose methods differ in their attacks."""
    p = copy.deepcopy(params)
    p["pmg_aft"]["attack"] = {"eps": 2, "steps": 3, "step_size": 1}
    p["fare"].update(steps=4)
    net, _ = bench.build_classifier("demo", p, torch.device("cpu"))
    return p, net


def test_every_pass_equals_torchs_count(tiny):
    """Forward, attack step and each method's whole fine-tuning step, counted by torch's FLOP counter."""
    p, net = tiny
    counted = bench.model_flops(net, p, p["finetune"]["attack"], 3, torch.device("cpu"), methods=METHODS)
    t, c = flops.tower(p, "demo"), net.num_classes
    assert counted["forward"] == flops.forward(t, c)
    assert counted["attack_step"] == flops.attack_step(t, c)
    for method in METHODS:
        assert counted[bench.step_key(method)] == flops.method_step_flops(method, p, t, c), method
    # the steps differ as their structure says: PMG-AFT's own 3-step attack and double pass cost more than UCAT's
    assert flops.method_step_flops("pmg_aft", p, t, c) > flops.method_step_flops("ucat", p, t, c)


def test_pretraining_step_equals_torchs_count(tiny):
    from ucat.backbone import contrastive_loss

    p, _ = tiny
    d = p["backbone"]["demo"]
    model = models.create_clip(models.demo_arch(d)).train()
    b = d["batch_size"]
    x = torch.rand(b, 3, d["image_size"], d["image_size"])
    tokens = torch.randint(1, 100, (b, d["context_length"]))

    def step():
        loss = contrastive_loss(model.encode_image(x), model.encode_text(tokens), model.logit_scale,
                                [str(i % 5) for i in range(b)])
        loss.backward()

    assert bench.count_flops(step) == b * flops.pretrain_step_flops(p)


@pytest.mark.slow
def test_vit_b32_forward_from_open_clips_config():
    """The tower read from open_clip's JSON config: its forward as torch counts it (224 px, 200 classes)."""
    net, _ = bench.build_classifier("ViT-B-32", config.load(ROOT / "params.yaml"), torch.device("cpu"))
    x = torch.rand(1, 3, 224, 224)

    def fwd():
        with torch.no_grad():
            net(x)

    assert bench.count_flops(fwd) == flops.forward(flops.tower(config.load(ROOT / "config" / "paper.yaml"),
                                                             "ViT-B-32-quickgelu"), 200)


def test_autoattack_counts_only_the_points_still_correct(tiny):
    """attacks.autoattack under torch's counter: half the batch correct, ε 0 (nothing fooled, so APGD-DLR
    attacks the same half): the count is the plan's at clean = robust = 0.5, minus the scoring forward."""
    p, net = tiny
    net = copy.deepcopy(net).eval().requires_grad_(False)
    n, steps = 8, 2
    x = torch.rand(n, 3, net.image_size, net.image_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        pred = net(x).argmax(-1)
    y = torch.where(torch.arange(n) < n // 2, pred, (pred + 1) % net.num_classes)
    counted = bench.count_flops(lambda: attacks.autoattack(net, x, y, 0, steps, net.num_classes))
    t, c = flops.tower(p, "demo"), net.num_classes
    ev = {"autoattack": {"steps": steps}}
    half = flops.attack_flops("autoattack", ev, t, c, flops.Accuracy(0.5, 0.5, "test"))
    assert counted == n * (half - flops.forward(t, c))
    # fewer points correct: cheaper; 2 classes: no APGD-DLR, so the robust share does not count
    none_robust = flops.attack_flops("autoattack", ev, t, c, flops.Accuracy(0.5, 0.0, "test"))
    assert none_robust < half
    assert flops.attack_flops("autoattack", ev, t, 2, flops.Accuracy(0.5, 0.5, "t")) == \
        flops.attack_flops("autoattack", ev, t, 2, flops.Accuracy(0.5, 0.0, "t"))


def test_measured_cells_replace_the_assumed_accuracies(params, tmp_path, monkeypatch):
    p = copy.deepcopy(params)
    p["methods"], p["data"]["datasets"], p["evaluate"]["attacks"] = ["ucat"], ["demo_shapes"], ["pgd", "autoattack"]
    monkeypatch.chdir(tmp_path)
    assumed = flops.Accuracy(0.6, 0.3, "assumed")
    aa = [i for i in cost.plan(p, assumed).items if i.name.startswith("autoattack")]
    assert [i.accuracy for i in aa] == ["assumed"]
    eps = p["evaluate"]["eps"][0]
    for attack, e, acc in (("clean", 0, 0.25), ("pgd", eps, 0.05)):
        cell = Path(paths.EVAL_JSON.format(backbone="demo", setting="main", seed=0, method="ucat",
                                           dataset="demo_shapes", attack=attack, eps=e))
        cell.parent.mkdir(parents=True, exist_ok=True)
        cell.write_text(json.dumps({"accuracy": acc}))
    measured = [i for i in cost.plan(p, assumed).items if i.name.startswith("autoattack")]
    assert [i.accuracy for i in measured] == ["measured"]
    t, n = flops.tower(p, "demo"), cost.eval_images(p, "demo_shapes")
    classes = cost.num_classes("demo_shapes")
    expected = n * flops.attack_flops("autoattack", p["evaluate"], t, classes, flops.Accuracy(0.25, 0.05, "m"))
    assert measured[0].flops == expected < aa[0].flops


def test_more_eps_and_data_scale_the_evaluation_only(params):
    p = copy.deepcopy(params)
    p["evaluate"]["eps"] = [1]
    one = cost.plan(p, measured=False)
    p["evaluate"]["eps"] = [1, 2, 4]
    three = cost.plan(p, measured=False)

    def total(plan, stage, prefix=""):
        return sum(i.flops for i in plan.items if i.stage == stage and i.name.startswith(prefix))

    for attack in ("pgd", "cw", "autoattack"):
        assert total(three, "evaluation", attack) == pytest.approx(3 * total(one, "evaluation", attack), rel=1e-12)
    assert total(three, "evaluation", "clean") == total(one, "evaluation", "clean")
    assert total(three, "fine-tuning") == total(one, "fine-tuning")
    p["data"]["subsample"] = 10       # at most 10 images per set: evaluation shrinks with the image count
    small = cost.plan(p, measured=False)
    for a, b in zip(three.items, small.items):
        if a.stage == "evaluation":
            assert b.flops == pytest.approx(a.flops * min(10, a.images) / a.images, rel=1e-12)


def test_paper_plan_components_and_priorities():
    p = config.load(ROOT / "config" / "paper.yaml")
    plan = cost.plan(p, measured=False)
    stages = {i.stage for i in plan.items}
    assert stages == {"fine-tuning", "calibration", "evaluation"}    # no pretraining: weights are downloaded
    assert sum(1 for i in plan.items if i.stage == "evaluation") == len(paths.eval_cells(p))
    jobs = plan.job_flops()
    prio = {k: cost.evaluate_priority(p, *k) for k in jobs}
    ranked = sorted(jobs, key=jobs.get)
    assert [prio[k] for k in ranked] == sorted(prio.values())   # larger job, higher (or equal) priority
    assert prio[("ViT-B-32-quickgelu", 0, "ucat", "sun397")] > prio[("ViT-B-32-quickgelu", 0, "ucat", "dtd")]
    text = cost.format_plan(plan, cost.default_rates(), "config/paper.yaml", cost.default_accuracies(), per_cell=True)
    assert sum(1 for line in text.splitlines() if "/seed0/" in line) == len(paths.eval_cells(p))
    resnet = config.load(ROOT / "config" / "paper.yaml", ["backbone.models=[{name: RN50, pretrained: openai}]"])
    with pytest.raises(ConfigError, match="no FLOP formula"):
        cost.plan(resnet)
    assert cost.evaluate_priority(resnet, "RN50", 0, "ucat", "dtd") == 0   # the workflow still runs, unordered
    # the order matters on several GPUs: the largest job last leaves the others idle
    assert cost.speedup([1, 1, 1, 3], 2, largest_first=False) == 6 / 4
    assert cost.speedup([1, 1, 1, 3], 2) == 6 / 3
    sizes = list(jobs.values())
    assert cost.speedup(sizes, 8) > cost.speedup(sizes, 8, largest_first=False)


def test_rates_from_a_bench_result(params):
    result = {"meta": {"device": "cuda", "device_name": "GPU X", "arch": "ViT-B-32-quickgelu", "pgd_eval": {"steps": 100}},
              "runs": [{"workload": "finetune", "method": "ucat", "compiled": False, "batch": 256,
                        "images_per_s": 1.0, "achieved_tflops": 100.0},
                       {"workload": "finetune", "method": "ucat", "compiled": True, "batch": 256,
                        "images_per_s": 1.0, "achieved_tflops": 150.0},
                       {"workload": "pgd_eval", "compiled": False, "batch": 256, "images_per_s": 1.0,
                        "achieved_tflops": 50.0},
                       {"workload": "pgd_eval", "compiled": True, "batch": 256, "images_per_s": 1.0,
                        "achieved_tflops": 80.0}]}
    p = copy.deepcopy(params)
    p["run"]["compile"] = "auto"                 # compiled on the bench's CUDA device
    rates = cost.rates_from_bench(result, p, "bench.json")
    assert (rates.finetune, rates.eval) == (150.0, 80.0) and "GPU X" in rates.source
    p["run"]["compile"] = False
    assert (cost.rates_from_bench(result, p).finetune, cost.rates_from_bench(result, p).eval) == (100.0, 50.0)
    assert cost.hours(3.6e18, "eval", rates) == pytest.approx(3.6e18 / 80e12 / 3600)


def _ucat(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "ucat", *args], cwd=cwd, capture_output=True, text=True,
                          env={**__import__("os").environ, "PYTHONPATH": str(ROOT / "src")})


def test_bad_rates_file_is_one_line_error(tmp_path):
    res = _ucat("check", "--cost", "--rates", str(tmp_path / "missing.json"))
    assert res.returncode == 2 and res.stderr.strip().count("\n") == 0
    assert res.stderr.startswith("error: --rates") and "missing.json" in res.stderr
    (tmp_path / "official.json").write_text(json.dumps({"meta": {}, "rows": []}))
    res = _ucat("check", "--cost", "--rates", str(tmp_path / "official.json"))
    assert res.returncode == 2 and res.stderr.strip().count("\n") == 0 and "runs" in res.stderr
