"""The workflow as its users use it: Snakemake and DVC agree, parameters cannot leak between
Snakemake invocations, both engines write the same bytes, DVC compares real numbers and follows
list changes and code edits by itself.

The end-to-end tests run a reduced demo in a temporary copy of the repository made of the
project's files exactly as shipped (Snakefile, workflow/, dvc.yaml, .gitignore, src/ucat);
only params.yaml is the reduced one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ucat import config, paths, workflow

SUMMARY = paths.SUMMARY.format(setting="main")
DEMO = {"backbone": "demo", "setting": "main", "seed": 0}   # the demo's first seed

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "DVC_NO_ANALYTICS": "1", "PYTHONWARNINGS": "ignore"}


def run(cmd, cwd, check=True, timeout=600, env=None):
    """Run in ``cwd``; a project copy (``copy_repo``) imports its own ``src/ucat``, as a fresh clone would."""
    own = Path(cwd) / "src"
    path = {"PYTHONPATH": os.pathsep.join([str(own), os.environ.get("PYTHONPATH", "")])} if (own / "ucat").is_dir() else {}
    res = subprocess.run(cmd, cwd=cwd, env={**ENV, **path, **(env or {})}, capture_output=True, text=True,
                         timeout=timeout, shell=isinstance(cmd, str))
    if check and res.returncode != 0:
        raise AssertionError(f"{cmd} failed ({res.returncode}):\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
    return res


def reduced_params(methods=("clip", "tecoa", "ucat"), datasets=("demo_shapes", "demo_pairs"),
                   attacks=("pgd", "cw", "autoattack")) -> dict:
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
    """The project's workflow files as shipped, with ``params`` as params.yaml."""
    dst.mkdir(parents=True)
    for name in ("Snakefile", "workflow", "dvc.yaml", ".gitignore", ".dvcignore"):
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dst / name, symlinks=True)
        else:
            shutil.copy(src, dst / name)
    shutil.copytree(ROOT / "src" / "ucat", dst / "src" / "ucat", ignore=shutil.ignore_patterns("__pycache__"))
    (dst / "params.yaml").write_text(yaml.safe_dump(config.file_form(params), sort_keys=False))
    return dst


def git_dvc_init(repo: Path) -> None:
    run("git init -q && git config user.email t@t && git config user.name t && dvc init -q && "
        "dvc config core.analytics false && git add -A && git commit -qm init", repo)


# --- definitions ---

def test_dvc_yaml_is_generated_from_workflow():
    assert (ROOT / "dvc.yaml").read_text() == workflow.render_dvc_yaml(), "run `ucat dvc-yaml`"


def test_workflow_imports_without_torch():
    code = "import sys, ucat.workflow as w; w.render_dvc_yaml(); print('torch' in sys.modules)"
    res = run([sys.executable, "-c", code], ROOT)
    assert res.stdout.strip() == "False"


def test_code_dependencies_are_the_modules_a_stage_runs():
    stage = {s.name: set(s.code_files) for s in workflow.stages()}
    losses, render = "src/ucat/losses.py", "src/ucat/report/render.py"
    # the report recomputes ECE after temperature scaling with ucat.metrics, which imports ucat.losses
    assert {n for n, files in stage.items() if losses in files} == {"finetune", "evaluate", "calibrate", "report"}
    assert {n for n, files in stage.items() if render in files} == {"report"}
    assert "src/ucat/train.py" in stage["finetune"] and "src/ucat/train.py" not in stage["evaluate"]
    assert all(Path(ROOT, f).is_file() for files in stage.values() for f in files)


def test_snakemake_lint_is_clean():
    res = run(["snakemake", "--lint"], ROOT, check=False)
    assert res.returncode == 0, res.stdout + res.stderr


def _snakemake_jobs(cwd: Path, extra=()) -> dict[str, dict]:
    """{command without the Snakemake-only arguments: {rule, input, output, raw}} of a forced dry run."""
    out = run(["snakemake", "-n", "-F", "-p", "--cores", "1", *extra], cwd).stdout
    jobs, current = {}, None
    for line in out.splitlines():
        if line.startswith("rule "):
            current = {"rule": line[5:].rstrip(":"), "input": [], "output": []}
        elif current is not None and line.strip().startswith(("input:", "output:")):
            key, _, vals = line.strip().partition(": ")
            current[key] = [v.strip() for v in vals.split(",") if v.strip()]
        elif current is not None and line.startswith("Shell command: "):
            raw = line[len("Shell command: "):]
            cmd = re.sub(r" --params \S+| --quiet| > \S+ 2>&1", "", raw)
            jobs[cmd] = dict(current, raw=raw)
            current = None
    jobs.pop("None", None)  # the `all` target rule runs nothing
    return jobs


def _dvc_stages(repo: Path) -> dict[str, dict]:
    """DVC's own resolution of the shipped dvc.yaml against the repository's params.yaml."""
    code = ("import json; from dvc.repo import Repo; r = Repo('.'); print(json.dumps({s.addressing: {"
            "'cmd': s.cmd, 'deps': [d.def_path for d in s.deps if type(d).__name__ != 'ParamsDependency'], 'outs': [o.def_path for o in s.outs], "
            "'persist': [o.def_path for o in s.outs if o.persist]} for s in r.index.stages}))")
    return json.loads(run([sys.executable, "-c", code], repo).stdout)


def test_snakemake_and_dvc_run_the_same_stages(tmp_path):
    """Same commands, inputs and outputs: the default, three seeds, three backbones, and both paper smoke settings."""
    two_backbones = config.load(ROOT / "config" / "paper.yaml", [
        "backbone.models=[{name: ViT-B-32-quickgelu, pretrained: openai}, {name: ViT-B-16-quickgelu, pretrained: openai}, "
        "{name: SLIP-ViT-B-16, pretrained: pretrained/slip_base_25ep.pt}]",
        "methods=[clip, ucat]", "data.datasets=[cifar10, pcam]", "evaluate.eps=[1, 4]"])
    three_seeds = reduced_params(methods=("clip", "fare", "kl_dir_forward"))
    three_seeds["run"]["seeds"] = [0, 1, 5]          # the shipped dvc.yaml, unchanged, resolves one stage per seed
    for i, params in enumerate((config.load(ROOT / "params.yaml"), three_seeds, two_backbones,
                                config.load(ROOT / "config" / "paper-smoke.yaml"),
                                config.load(ROOT / "config" / "paper-fare-smoke.yaml"))):
        repo = copy_repo(tmp_path / str(i), params)
        run("dvc init -q --no-scm", repo)
        jobs, stages = _snakemake_jobs(repo), _dvc_stages(repo)
        data_jobs = {c: j for c, j in jobs.items() if j["rule"] == "data"}
        root = params["data"]["root"].rstrip("/")
        assert sorted(o for j in data_jobs.values() for o in j["output"]) == \
            sorted(f"{root}/{d}" for d in paths.data_sets(params))
        assert stages.pop("data")["outs"] == [root]        # DVC prepares them all in one stage
        per_model = len(paths.backbones(params)) * len(paths.seeds(params)) * len(params["methods"])
        assert len(stages) == len(jobs) - len(data_jobs) == per_model * len(params["data"]["datasets"]) + \
            len(paths.backbones(params)) + 2 * per_model + 1   # evaluate per data set, backbone, finetune+calibrate, report
        assert len(paths.eval_cells(params)) == sum(len(j["output"]) for j in jobs.values()
                                                    if j["rule"].startswith("evaluate")) // 2
        for name, st in stages.items():
            assert st["cmd"] in jobs, f"no Snakemake job runs {name}: {st['cmd']!r}"
            job = jobs[st["cmd"]]
            if name.startswith("evaluate@"):   # DVC: the job's two folders; Snakemake: the cell files in them
                assert len(st["outs"]) == 2 and all(any(o.startswith(d + "/") for d in st["outs"]) for o in job["output"])
                assert {o.rpartition("/")[0] for o in job["output"]} == set(st["outs"]), name
            else:
                assert sorted(job["output"]) == sorted(o for o in st["outs"] if o not in st["persist"]), name
            if name == "report":   # DVC: the two folders every cell lands in; Snakemake: the cells
                assert all(any(i.startswith(d + "/") for d in st["deps"]) or i in st["deps"]
                           or i == workflow.REPORT.code_stamp for i in job["input"])
                assert {workflow.fill(paths.CELLS, params), workflow.fill(paths.SAMPLES_ROOT, params)} <= set(st["deps"])
            else:   # Snakemake: the stage's code stamp stands for the package files DVC lists
                stage = workflow.__dict__[name.partition("@")[0].upper()]
                code = set(stage.code_files)
                assert code <= set(st["deps"]), name
                assert sorted(job["input"]) == sorted([d for d in st["deps"] if d not in code] + [stage.code_stamp]), name


def test_second_snakemake_invocation_cannot_change_a_running_jobs_parameters(tmp_path):
    """The race of issue 10: a dry run with another --configfile used to rewrite the one parameters
    file every running job reads.  Now each job's file is named by its content and never rewritten."""
    params = reduced_params(methods=("clip", "ucat"), datasets=("demo_shapes",), attacks=("pgd",))
    repo = copy_repo(tmp_path / "repo", params)
    first = _snakemake_jobs(repo)                        # the planned (running) jobs
    job = next(j for j in first.values() if j["rule"] == "finetune" and "ucat" in j["raw"])
    pfile = repo / re.search(r"--params (\S+)", job["raw"]).group(1)
    before = pfile.read_bytes()
    assert yaml.safe_load(before)["ucat"]["tau_prime"] == 0.07

    other = json.loads(json.dumps(params))
    other["ucat"]["tau_prime"] = 0.2
    (repo / "other.yaml").write_text(yaml.safe_dump(config.file_form(other)))
    second = _snakemake_jobs(repo, ["--configfile", "other.yaml"])   # while the first one runs
    assert pfile.read_bytes() == before                  # the running job still reads its own parameters
    job2 = next(j for j in second.values() if j["rule"] == "finetune" and "ucat" in j["raw"])
    pfile2 = repo / re.search(r"--params (\S+)", job2["raw"]).group(1)
    assert pfile2 != pfile and yaml.safe_load(pfile2.read_text())["ucat"]["tau_prime"] == 0.2
    assert config.validate(yaml.safe_load(before)) == params   # the CLI reads exactly what Snakemake resolved


def test_misspelled_key_stops_before_any_work(tmp_path):
    params = reduced_params()
    repo = copy_repo(tmp_path / "repo", params)
    text = (repo / "params.yaml").read_text().replace("tau_prime:", "tau_prim:", 1)
    (repo / "params.yaml").write_text(text)
    res = run(["snakemake", "--cores", "1"], repo, check=False)
    said = (res.stdout + res.stderr).strip()
    # the project's one-line error comes first and alone (not Snakemake's multi-line jsonschema dump)
    assert res.returncode != 0 and said.splitlines()[0].startswith("error: params.yaml: ucat.tau_prim: unknown key;")
    assert len(said.splitlines()) == 1 and len(said) < 200, said
    assert not (repo / "data").exists() and not (repo / "models").exists()


# --- end to end ---

def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_reduced_demo_through_snakemake_then_dvc_gives_the_same_bytes(tmp_path):
    """Snakemake end to end (report included), its HTML report, then the same cells through DVC: same bytes."""
    params = reduced_params(methods=("clip", "ucat"), datasets=("demo_shapes",), attacks=("pgd",))
    repo = copy_repo(tmp_path / "repo", params)
    cache = {"UCAT_CACHE": str(tmp_path / "cache")}          # this test's own cell cache: every cell computed
    run(["snakemake", "--cores", "2"], repo, timeout=900, env=cache)
    summary = json.loads((repo / SUMMARY).read_text())
    assert set(summary) == {"demo"} and set(summary["demo"]) == {"clip", "ucat"}
    assert set(summary["demo"]["ucat"]) == {"clean_eps0", "pgd_eps8"}
    # what dvc metrics diff shows: accuracy, calibration and H, and UCAT's paired accuracy difference under attack
    assert set(summary["demo"]["ucat"]["pgd_eps8"]) == {"acc", "ece", "H"}
    assert set(summary["demo"]["clip"]["pgd_eps8"]) == {"acc", "ece", "H", "ucat_minus_acc", "ucat_minus_acc_lo",
                                                        "ucat_minus_acc_hi"}
    assert all(v is not None for v in summary["demo"]["clip"]["pgd_eps8"].values())
    # the report's own summary has everything, uncertainty in use too; attack AUROC only under attack
    full = json.loads((repo / paths.BACKBONE_SUMMARY.format(**DEMO)).read_text())
    assert {"acc", "ece", "H", "aurc", "error_auroc", "attack_auroc", "ece_ts"} <= set(full["ucat"]["pgd_eps8"])
    assert "attack_auroc" not in full["ucat"]["clean_eps0"]
    cell = json.loads((repo / paths.EVAL_JSON.format(**DEMO, method="ucat", dataset="demo_shapes", attack="pgd", eps=8)).read_text())
    assert 0 <= cell["accuracy"] <= 1 and cell["n"] == 24
    assert not {"seconds", "images_per_second", "batch_size"} & set(cell)          # metrics only
    info = json.loads((repo / "logs/run/main/evaluate/demo/seed0/ucat/demo_shapes.json").read_text())["cells"]["pgd_eps8"]
    assert info["batch_size"] == 64 and info["images_per_second"] > 0 and info["threads"] == 1 and not info["restored"]
    for figure in workflow.report_figures(params):
        assert (repo / figure).is_file(), figure
    assert (repo / paths.REPORT.format(**DEMO)).is_file()
    again = run(["snakemake", "--cores", "2"], repo)
    assert "Nothing to be done" in again.stdout + again.stderr

    html = run(["snakemake", "--report", "report.html"], repo, timeout=300)
    text = (repo / "report.html").read_text(errors="replace")
    assert "training_curves.png" in text and "accuracy_vs_ece.png" in text, html.stderr[-2000:]
    assert "harmonic mean of the clean and robust" in text        # a caption from workflow/report/*.rst

    # editing report code reruns only the report; editing the losses reruns what runs them
    with open(repo / "src/ucat/report/render.py", "a") as fh:
        fh.write("\n# edited\n")
    rules = set(re.findall(r"^rule (\w+):", run(["snakemake", "-n", "--cores", "1"], repo).stdout, flags=re.M))
    assert rules == {"report", "all"}
    with open(repo / "src/ucat/losses.py", "a") as fh:
        fh.write("\n# edited\n")
    rules = set(re.findall(r"^rule (\w+):", run(["snakemake", "-n", "--cores", "1"], repo).stdout, flags=re.M))
    assert rules == {"finetune", "evaluate", "calibrate", "report", "all"}
    run(["snakemake", "--cores", "1", "--touch"], repo)       # accept an edit that changes no result
    assert "Nothing to be done" in run(["snakemake", "-n", "--cores", "1"], repo).stdout

    # DVC after Snakemake: `dvc commit -f` adopts Snakemake's outputs (README), then it has nothing to do
    run("git init -q && git config user.email t@t && git config user.name t && dvc init -q && "
        "dvc config core.analytics false", repo)
    run(["dvc", "commit", "-f", "-q"], repo, timeout=300)
    assert _ran_stages(run(["dvc", "repro"], repo, timeout=300).stdout) == set()

    # the same cells through DVC (one thread count for both): identical bytes
    outputs = {p: (repo / p).read_bytes() for c in ("clean_eps0", "pgd_eps8") for p in (
        f"metrics/main/cells/demo/seed0/eval/ucat/demo_shapes/{c}.json",
        f"results/main/samples/demo/seed0/ucat/demo_shapes/{c}.npz")}
    run(["dvc", "repro", "-s", "-f", "evaluate@backbone0-0-ucat-demo_shapes"], repo, timeout=300,
        env={"UCAT_CACHE": str(tmp_path / "empty-cache")})   # computed again, not restored
    info = json.loads((repo / "logs/run/main/evaluate/demo/seed0/ucat/demo_shapes.json").read_text())["cells"]
    assert not any(c["restored"] for c in info.values())
    assert {p: (repo / p).read_bytes() for p in outputs} == outputs


def _ran_stages(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


def test_dvc_compares_experiments_and_follows_list_changes(tmp_path):
    """dvc repro -> commit -> the same again changes nothing; a lost checkpoint is rebuilt byte-identical;
    `dvc exp run -S` of a scalar and of a list, `dvc exp show` and `dvc metrics diff` with real numbers;
    a code edit reruns exactly the stages that run the code."""
    params = reduced_params(methods=("clip", "ucat"), datasets=("demo_shapes",), attacks=("pgd",))
    repo = copy_repo(tmp_path / "repo", params)
    git_dvc_init(repo)
    first = _ran_stages(run(["dvc", "repro"], repo, timeout=900).stdout)
    assert {"data", "backbone@backbone0", "finetune@backbone0-0-ucat", "report"} <= first
    # the report's figures are DVC plots beside the training curves, and every plot loads
    shown = run(["dvc", "plots", "show", "--json"], repo)
    assert "failed to load" not in shown.stdout + shown.stderr
    assert "results/main/figures/demo/accuracy_vs_ece.png" in shown.stdout
    assert "train/ucat/plots/metrics/train/loss.tsv" in shown.stdout
    run("git add -A && git commit -qm 'first run'", repo)
    assert SUMMARY in run("git ls-files metrics", repo).stdout     # metrics are in git
    assert _ran_stages(run(["dvc", "repro"], repo).stdout) == set()
    # Snakemake after DVC: nothing to do either
    assert "Nothing to be done" in run(["snakemake", "-n", "--cores", "1"], repo).stdout

    # a checkpoint lost: rebuilt from the finished resume state, byte-identical, nothing downstream reruns
    (repo / "models/demo/main/seed0/ucat/model.pt").unlink()
    assert _ran_stages(run(["dvc", "repro"], repo).stdout) == {"finetune@backbone0-0-ucat"}
    assert run("git status --porcelain", repo).stdout.strip() == ""
    assert json.loads(run(["dvc", "metrics", "diff", "--json"], repo).stdout) == {}   # same params: no diff

    # a scalar experiment: UCAT's fine-tuning (other fine-tunings are no-op reruns), its cells and the report
    ran = _ran_stages(run(["dvc", "exp", "run", "-S", "ucat.tau_prime=0.2"], repo, timeout=900).stdout)
    assert {"finetune@backbone0-0-ucat", "evaluate@backbone0-0-ucat-demo_shapes", "calibrate@backbone0-0-ucat", "report"} <= ran
    assert not {s for s in ran if s.startswith("evaluate") and "-clip-" in s}
    diff = json.loads(run(["dvc", "metrics", "diff", "--json"], repo).stdout)
    changed = diff[SUMMARY]
    assert any(k.startswith("demo.ucat.") and v["old"] is not None and v["new"] is not None for k, v in changed.items())
    assert not any(k.startswith("demo.clip.") for k in changed)
    shown = run(["dvc", "exp", "show", "--json"], repo).stdout
    assert "!" not in run(["dvc", "exp", "show", "--no-pager", "--md"], repo).stdout.replace("!=", "")
    exps = json.loads(shown)
    exp_metrics = [e for x in exps for e in ([x] + [r for exp in (x.get("experiments") or []) for r in exp.get("revs", [])])]
    values = [((e.get("data") or {}).get("metrics") or {}).get(SUMMARY, {}).get("data")
              for e in exp_metrics]
    assert sum(v is not None for v in values) >= 3, shown[:3000]     # workspace, HEAD and the experiment
    # the one-screen view: the experiment's changed parameter and UCAT's accuracy under PGD, no wider than a screen
    screen = run(["ucat", "experiments", "--versus", "clip"], repo).stdout.splitlines()
    assert "ucat pgd ε8" in screen[0] and max(map(len, screen)) < 160
    assert any("ucat.tau_prime=0.2" in line and "n/a" not in line for line in screen[2:]), screen

    # a list experiment (on top of the applied one): no regeneration step; the evaluation jobs rerun,
    # but only the new eps cells are computed: clean and eps 8 come back from the cell cache, same bytes
    before = {p.name: p.read_bytes() for p in (repo / "metrics/main/cells/demo/seed0/eval/ucat/demo_shapes").iterdir()}
    ran = _ran_stages(run(["dvc", "exp", "run", "-S", "evaluate.eps=[4,8]"], repo, timeout=900).stdout)
    assert {"evaluate@backbone0-0-clip-demo_shapes", "evaluate@backbone0-0-ucat-demo_shapes", "report"} <= ran
    assert not any(s.startswith(("finetune", "calibrate")) for s in ran), ran
    cells = json.loads((repo / "logs/run/main/evaluate/demo/seed0/ucat/demo_shapes.json").read_text())["cells"]
    assert {n: c["restored"] for n, c in cells.items()} == {"clean_eps0": True, "pgd_eps4": False, "pgd_eps8": True}
    after = {p.name: p.read_bytes() for p in (repo / "metrics/main/cells/demo/seed0/eval/ucat/demo_shapes").iterdir()}
    assert {n: after[n] for n in before} == before and set(after) - set(before) == {"pgd_eps4.json"}
    summary = json.loads((repo / SUMMARY).read_text())
    assert summary["demo"]["ucat"]["pgd_eps4"]["acc"] is not None

    # code is a dependency, precisely
    with open(repo / "src/ucat/report/render.py", "a") as fh:
        fh.write("\n# edited\n")
    status = json.loads(run(["dvc", "status", "--json"], repo).stdout)
    assert set(status) == {"report"}
    run(["dvc", "commit", "-f", "report"], repo)             # accept an edit that changes no result
    assert json.loads(run(["dvc", "status", "--json"], repo).stdout) == {}
    with open(repo / "src/ucat/losses.py", "a") as fh:
        fh.write("\n# edited\n")
    status = set(json.loads(run(["dvc", "status", "--json"], repo).stdout))
    assert {s.split("@")[0] for s in status} == {"finetune", "evaluate", "calibrate", "report"}


def test_best_on_test_selection_makes_the_test_sets_fine_tuning_inputs(tmp_path):
    """Snakemake: fine-tuning that selects on the test sets waits for them, and reruns when they change."""
    for select in ("final", "best_on_test"):
        params = reduced_params(methods=("ucat",), datasets=("demo_shapes", "demo_pairs"), attacks=("pgd",))
        params["finetune"]["select"] = select
        repo = copy_repo(tmp_path / select, params)
        job = next(j for j in _snakemake_jobs(repo).values() if j["rule"] == "finetune")
        root = params["data"]["root"].rstrip("/")
        tests = {f"{root}/demo_shapes", f"{root}/demo_pairs"}
        assert (tests <= set(job["input"])) == (select == "best_on_test"), job["input"]
        assert f"{root}/demo_train" in job["input"]


def test_paper_configuration_dry_run_lists_the_full_matrix():
    """No network needed: the dry run plans every (method, data set, attack, eps) cell."""
    res = run(["snakemake", "-n", "-F", "--cores", "1", "--configfile", "config/paper.yaml", "--quiet", "rules"], ROOT)
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", res.stdout, flags=re.M))
    params = config.load(ROOT / "config" / "paper.yaml")
    assert int(counts["evaluate"]) == len(params["methods"]) * 16 == 160   # each: clean + 3 attacks
    assert "evaluate_clean" not in counts
    assert int(counts["finetune"]) == 10 and int(counts["data"]) == 16


def test_slurm_profile_plans_gpu_jobs_per_data_set():
    """The SLURM executor profile: lint-clean, and a dry run with the plugin gives GPU jobs."""
    profile = ["--workflow-profile", "workflow/profiles/slurm", "--configfile", "config/paper.yaml"]
    assert run(["snakemake", "--lint", *profile], ROOT, check=False).returncode == 0
    out = run(["snakemake", "-n", *profile], ROOT).stdout
    blocks = out.split("\nrule ")
    finetune = [b for b in blocks if b.startswith("finetune:")]
    evaluate = [b for b in blocks if b.startswith("evaluate:")]
    calibrate = [b for b in blocks if b.startswith("calibrate:")]
    assert len(finetune) == 10 and len(evaluate) == 160 and len(calibrate) == 10
    assert all("gpu=1" in b and "slurm_partition=gpu" in b for b in finetune + evaluate + calibrate)
    # the largest jobs first: each evaluation job's priority follows the cost plan's FLOPs, and a
    # fine-tuning job outranks every evaluation waiting on it
    from ucat import cost

    flops = cost.plan(config.load(ROOT / "config" / "paper.yaml"), measured=False).job_flops()

    def job(block):
        w = dict(kv.split("=", 1) for kv in re.search(r"wildcards: (.*)", block).group(1).split(", "))
        return (w["backbone"], int(w["seed"]), w["method"], w.get("dataset")), int(re.search(r"priority: (\d+)", block).group(1))

    ranked = sorted((job(b) for b in evaluate), key=lambda kp: flops[kp[0]])
    assert [p for _, p in ranked] == sorted(p for _, p in ranked) and ranked[0][1] < ranked[-1][1]
    assert ranked[-1][0][3] == "sun397" and ranked[0][0][3] == "dtd"     # the largest and the smallest test set
    for key, prio in map(job, finetune):
        assert prio > max(p for k, p in ranked if k[2] == key[2])


def _executed_jobs(out: str) -> list[dict]:
    """Job blocks of a (touch) run, in execution order: rule, wildcards, priority, resources."""
    jobs, current = [], None
    for line in out.splitlines():
        m = re.match(r"^(?:local)?rule (\w+):$", line)
        if m:
            current = {"rule": m.group(1), "priority": 0, "wildcards": {}, "resources": ""}
            jobs.append(current)
        elif current is not None and line.strip().startswith("wildcards: "):
            current["wildcards"] = dict(kv.split("=", 1) for kv in line.strip()[len("wildcards: "):].split(", "))
        elif current is not None and line.strip().startswith("priority: "):
            current["priority"] = int(line.strip()[len("priority: "):])
        elif current is not None and line.strip().startswith("resources: "):
            current["resources"] = line.strip()
    return jobs


def test_gpu_jobs_at_once_follow_the_visible_devices(tmp_path):
    """On a (stand-in, UCAT_GPUS) 3-GPU node, without any flag, Snakemake may run 3 GPU jobs at once and
    each GPU job asks for one.  `--touch` computes nothing."""
    params = reduced_params(methods=("clip",), datasets=("demo_shapes",), attacks=("pgd",))
    repo = copy_repo(tmp_path / "repo", params)
    res = run(["snakemake", "--cores", "1", "--touch", "-F", paths.BACKBONE.format(backbone="demo")], repo,
              env={"UCAT_GPUS": "3"})
    out = res.stdout + res.stderr
    assert re.search(r"Provided resources: .*gpu=(Resource\(\"gpu\", )?3\b", out), out[-2000:]
    backbone = [j for j in _executed_jobs(out) if j["rule"] == "backbone"]
    assert len(backbone) == 1 and ", gpu=1," in backbone[0]["resources"]


@pytest.mark.slow
def test_the_largest_evaluations_run_first(tmp_path):
    """The runner takes the highest-priority job it can: with every fine-tuning done, a method's
    evaluations start largest first (priorities from the cost plan)."""
    params = config.load(ROOT / "config" / "paper.yaml", ["methods=[clip, ucat]", "data.datasets=[dtd, cifar10, sun397]"])
    repo = copy_repo(tmp_path / "repo", params)
    res = run(["snakemake", "--cores", "1", "--touch", "-F"], repo, env={"UCAT_GPUS": "3"})
    out = res.stdout + res.stderr
    evaluations = [j for j in _executed_jobs(out) if j["rule"] == "evaluate"]
    order = [j["wildcards"]["dataset"] for j in evaluations if j["wildcards"]["method"] == "ucat"]
    assert order == ["sun397", "cifar10", "dtd"], order


@pytest.mark.slow
def test_a_users_gpu_limit_wins(tmp_path):
    params = reduced_params(methods=("clip",), datasets=("demo_shapes",), attacks=("pgd",))
    repo = copy_repo(tmp_path / "repo", params)
    res = run(["snakemake", "--cores", "1", "--touch", "-F", "--resources", "gpu=1"], repo, env={"UCAT_GPUS": "3"})
    assert re.search(r"Provided resources: .*gpu=(Resource\(\"gpu\", )?1\b", res.stdout + res.stderr)
