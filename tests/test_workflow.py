"""The workflow definitions: Snakemake and DVC agree, lint is clean, and both engines run.

The end-to-end tests run a reduced demo in a temporary copy of the repository.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import yaml

from ucat import config, workflow

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "DVC_NO_ANALYTICS": "1", "PYTHONWARNINGS": "ignore"}


def run(cmd, cwd, check=True, timeout=600):
    res = subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout, shell=isinstance(cmd, str))
    if check and res.returncode != 0:
        raise AssertionError(f"{cmd} failed ({res.returncode}):\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
    return res


def reduced_params(methods=("clip", "tecoa", "ucat"), datasets=("demo_shapes", "demo_pairs"),
                   attacks=("clean", "pgd", "cw", "autoattack")) -> dict:
    from conftest import TINY_DEMO

    p = config.load(ROOT / "params.yaml")
    p["methods"] = list(methods)
    p["backbone"]["demo"] = dict(TINY_DEMO, steps=30)
    p["data"].update(datasets=list(datasets), demo_train_per_class=4, demo_eval_per_class=4)
    p["finetune"].update(epochs=1, batch_size=16, max_steps_per_epoch=3, warmup_steps=1)
    p["evaluate"].update(attacks=list(attacks), batch_size=64, pgd={"steps": 2, "step_size": 4},
                         cw={"steps": 2, "step_size": 4, "kappa": 50}, autoattack={"steps": 2})
    p["report"]["formats"] = ["png"]
    return config.validate(p)


def copy_repo(dst: Path, params: dict) -> Path:
    dst.mkdir(parents=True)
    for name in ("Snakefile", "workflow", ".dvcignore"):
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dst / name, symlinks=True)
        elif src.exists():
            shutil.copy(src, dst / name)
    shutil.copytree(ROOT / "src" / "ucat" / "resources", dst / "src" / "ucat" / "resources")  # schema link target
    (dst / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (dst / "dvc.yaml").write_text(workflow.render_dvc_yaml(params))
    return dst


def test_dvc_yaml_is_generated_from_params():
    params = config.load(ROOT / "params.yaml")
    assert (ROOT / "dvc.yaml").read_text() == workflow.render_dvc_yaml(params), "run `ucat dvc-yaml`"


def test_snakemake_lint_is_clean():
    res = run(["snakemake", "--lint"], ROOT, check=False)
    assert res.returncode == 0, res.stdout + res.stderr


def _snakemake_jobs(cwd: Path, extra=()) -> dict[str, dict]:
    out = run(["snakemake", "-n", "-F", "-p", "--cores", "1", *extra], cwd).stdout
    jobs, current = {}, None
    for line in out.splitlines():
        if line.startswith("rule "):
            current = {"rule": line[5:].rstrip(":"), "input": [], "output": []}
        elif current is not None and line.strip().startswith(("input:", "output:")):
            key, _, vals = line.strip().partition(": ")
            current[key] = [v.strip() for v in vals.split(",") if v.strip()]
        elif current is not None and line.startswith("Shell command: "):
            cmd = line[len("Shell command: "):]
            cmd = re.sub(r" --params \S+| --threads \d+| --quiet| > \S+ 2>&1", "", cmd)
            jobs[cmd] = current
            current = None
    jobs.pop("None", None)  # the `all` target rule runs nothing
    return jobs


def test_snakemake_and_dvc_run_the_same_stages(tmp_path):
    """Same commands, same inputs, same outputs, for the default and a paper-like configuration."""
    two_backbones = config.load(ROOT / "config" / "paper.yaml", [
        "backbone.models=[{name: ViT-B-32-quickgelu, pretrained: openai}, {name: ViT-B-16-quickgelu, pretrained: openai}]",
        "methods=[clip, ucat]", "data.datasets=[cifar10, pcam]", "evaluate.eps=[1, 4]"])
    for params in (config.load(ROOT / "params.yaml"), reduced_params(methods=("clip", "fare", "kl_dir_forward")),
                   two_backbones):
        repo = copy_repo(tmp_path / f"{len(params['methods'])}-{len(params['backbone']['models'])}" / "repo", params)
        jobs = _snakemake_jobs(repo)
        stages = workflow.stages(params)
        assert len(jobs) == len(stages)
        for stage in stages:
            cmd = stage.cmd.replace("ucat dvc-yaml --check && ", "")
            assert cmd in jobs, f"no Snakemake job runs {cmd!r}"
            job = jobs[cmd]
            assert sorted(job["output"]) == sorted(workflow.outputs(stage)), stage.name
            assert sorted(job["input"]) == sorted(stage.deps), stage.name


def test_misspelled_key_stops_before_any_work(tmp_path):
    params = reduced_params()
    repo = copy_repo(tmp_path / "repo", params)
    text = (repo / "params.yaml").read_text().replace("tau_prime:", "tau_prim:", 1)
    (repo / "params.yaml").write_text(text)
    res = run(["snakemake", "--cores", "1"], repo, check=False)
    assert res.returncode != 0 and "tau_prim" in res.stdout + res.stderr
    assert not (repo / "data").exists() and not (repo / "models").exists()


def test_reduced_demo_runs_end_to_end_through_snakemake(tmp_path):
    repo = copy_repo(tmp_path / "repo", reduced_params(methods=("clip", "ucat"), datasets=("demo_shapes",)))
    run(["snakemake", "--cores", "2"], repo, timeout=900)
    summary = json.loads((repo / "metrics/summary.json").read_text())
    assert set(summary) == {"demo"} and set(summary["demo"]) >= {"clip", "ucat"}
    for m in ("clip", "ucat"):
        cell = json.loads((repo / f"metrics/demo/eval/{m}/demo_shapes/pgd_eps8.json").read_text())
        assert 0 <= cell["accuracy"] <= 1 and cell["n"] == 24
    assert (repo / "results/demo/tables/main.md").is_file()
    for figure in workflow.report_figures(reduced_params(methods=("clip", "ucat"), datasets=("demo_shapes",))):
        assert (repo / figure).is_file(), figure  # what dvc.yaml's plots name exists
    assert not list((repo / "results/demo/figures").glob("*.pdf"))  # report.formats: [png]
    again = run(["snakemake", "--cores", "2"], repo)
    assert "Nothing to be done" in again.stdout + again.stderr


def _ran_stages(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


def test_dvc_repro_reruns_only_what_a_parameter_change_touches(tmp_path):
    params = reduced_params(methods=("clip", "ucat"), datasets=("demo_shapes",), attacks=("clean", "pgd"))
    repo = copy_repo(tmp_path / "repo", params)
    (repo / ".gitignore").write_text("/data/\n/models/\n/metrics/demo/eval/\n/results/\n/logs/\n")
    run("git init -q && git config user.email t@t && git config user.name t && dvc init -q && "
        "dvc config core.analytics false && git add -A && git commit -qm init", repo)
    first = run(["dvc", "repro"], repo, timeout=900).stdout
    assert {"backbone-demo", "finetune-demo-ucat", "report"} <= _ran_stages(first)
    run("git add -A && git commit -qm 'first run'", repo)
    assert _ran_stages(run(["dvc", "repro"], repo).stdout) == set()

    text = (repo / "params.yaml").read_text()
    (repo / "params.yaml").write_text(re.sub(r"tau_prime: 0\.07", "tau_prime: 0.2", text, count=1))
    second = _ran_stages(run(["dvc", "repro"], repo, timeout=900).stdout)
    assert second == {"finetune-demo-ucat", "evaluate-demo-ucat-demo_shapes-clean-0",
                      "evaluate-demo-ucat-demo_shapes-pgd-8", "report"}
    diff = run(["dvc", "metrics", "diff", "--json"], repo).stdout
    changed = json.loads(diff)
    assert any("ucat" in f or any("ucat" in k for k in v) for f, v in changed.items()), diff


def test_paper_configuration_dry_run_lists_the_full_matrix():
    """No network needed: the dry run plans every (method, data set, attack, eps) cell."""
    res = run(["snakemake", "-n", "-F", "--cores", "1", "--configfile", "config/paper.yaml", "--quiet", "rules"], ROOT)
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", res.stdout, flags=re.M))
    params = config.load(ROOT / "config" / "paper.yaml")
    assert int(counts["evaluate"]) == len(params["methods"]) * 16 * 4 == 512
    assert int(counts["finetune"]) == 7 and int(counts["data"]) == 16


def test_slurm_profile_plans_gpu_jobs_per_cell():
    """The SLURM executor profile: lint-clean, and a dry run with the plugin gives GPU jobs."""
    profile = ["--workflow-profile", "workflow/profiles/slurm", "--configfile", "config/paper.yaml"]
    assert run(["snakemake", "--lint", *profile], ROOT, check=False).returncode == 0
    out = run(["snakemake", "-n", *profile], ROOT).stdout
    blocks = out.split("\nrule ")
    finetune = [b for b in blocks if b.startswith("finetune:")]
    evaluate = [b for b in blocks if b.startswith("evaluate:")]
    assert len(finetune) == 7 and len(evaluate) == 512
    assert all("gpu=1" in b and "slurm_partition=gpu" in b for b in finetune + evaluate)
