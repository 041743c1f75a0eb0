"""`ucat experiments`: DVC's experiments on one screen, read from a real `dvc exp show --json`.

A toy DVC project whose one stage writes a headline in the layout of metrics/<setting>/summary.json
(values computed from the parameter), two experiments run by DVC itself."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ucat import experiments as X
from ucat.errors import UcatError

ROOT = Path(__file__).resolve().parents[1]

GEN = textwrap.dedent("""
    import json, os, yaml
    t = yaml.safe_load(open("params.yaml"))["ucat"]["tau_prime"]
    conds = ["clean_eps0", "pgd_eps8", "cw_eps8"]
    def cell(m, i, c):
        out = {"acc": 40 + 10 * i + 100 * t, "ece": 5.0}
        if m == "tecoa" and c != "clean_eps0":
            out |= {"ucat_minus_acc": 10 * t, "ucat_minus_acc_lo": 10 * t - 1, "ucat_minus_acc_hi": 10 * t + 1}
        return out
    d = {"demo": {m: {c: cell(m, i, c) for i, c in enumerate(conds)} for m in ("tecoa", "ucat")}}
    os.makedirs("metrics/main", exist_ok=True)
    json.dump(d, open("metrics/main/summary.json", "w"))
""")


def sh(cmd, cwd):
    res = subprocess.run(cmd, cwd=cwd, shell=isinstance(cmd, str), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    return res.stdout


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    repo = tmp_path_factory.mktemp("exp")
    (repo / "gen.py").write_text(GEN)
    (repo / "params.yaml").write_text("ucat:\n  tau: 100\n  tau_prime: 0.07\nmethods: [tecoa, ucat]\n")
    (repo / "dvc.yaml").write_text("stages:\n  report:\n    cmd: python3 gen.py\n    deps: [gen.py]\n"
                                   "    params: [ucat, methods]\n    metrics:\n    - metrics/main/summary.json:\n"
                                   "        cache: false\n")
    sh("git init -q && git config user.email t@t && git config user.name t && dvc init -q && "
       "dvc config core.analytics false && dvc repro -q && git add -A && git commit -qm base", repo)
    sh(["dvc", "exp", "run", "-q", "-S", "ucat.tau_prime=0.1", "-n", "sharper"], repo)
    sh(["dvc", "exp", "run", "-q", "-S", "methods=[tecoa,ucat,fare]", "-n", "listed"], repo)
    return repo


def test_one_row_per_experiment_with_changed_parameters_accuracy_and_paired_difference(project):
    out = sh([sys.executable, "-m", "ucat", "experiments"], project)
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["experiment", "backbone", "changed"]
    assert "ucat pgd ε8" in lines[0] and "ucat−tecoa cw ε8" in lines[0] and "ucat−tecoa clean" not in lines[0]
    rows = {line.split()[0]: line for line in lines[2:]}
    assert set(rows) == {"workspace", "master", "sharper", "listed"} or set(rows) == {"workspace", "main", "sharper", "listed"}
    base = rows.get("master") or rows["main"]
    assert " — " in base and "47.0" in base and "+0.7 [-0.3, +1.7]" in base     # 40 + 100*0.07; 10*0.07 ± 1
    assert "ucat.tau_prime=0.1" in rows["sharper"] and "60.0" in rows["sharper"] and "+1.0 [+0.0, +2.0]" in rows["sharper"]
    # dvc exp run -S starts from the workspace, which the previous experiment left at tau_prime 0.1
    assert 'methods=["tecoa", "ucat", "fare"], ucat.tau_prime=0.1' in rows["listed"]
    assert max(map(len, lines)) < 160                                             # one screen


def test_a_method_no_summary_holds_is_a_one_line_error(project):
    res = subprocess.run([sys.executable, "-m", "ucat", "experiments", "--reference", "ucta"], cwd=project,
                         capture_output=True, text=True)
    assert res.returncode == 2 and res.stderr.strip().count("\n") == 0 and "'ucta'" in res.stderr


def test_outside_a_dvc_project_the_error_is_dvcs_last_line(tmp_path):
    with pytest.raises(UcatError, match="dvc exp show failed"):
        X.table(X.experiments(X.dvc_show([], cwd=tmp_path)))
