"""The install paths: pyproject.toml and the conda env of `snakemake --use-conda` agree and install.

No conda exists on the machines these tests run on (none is on PyPI or Debian), so a stand-in
``conda`` on PATH answers Snakemake's installation checks and, for ``conda env create``, does what
conda's pip installer does with the env's ``pip:`` section: join the lines into
``condaenv.*.requirements.txt`` beside the env file and run pip there.  Pip's own requirements
parser then reads that file.  With a real conda on PATH the last test runs the dry run for real.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
ENV_FILE = ROOT / "workflow" / "envs" / "ucat.yaml"
ENV = {**os.environ, "DVC_NO_ANALYTICS": "1", "PYTHONWARNINGS": "ignore"}

# Pip's own parser, run in the directory conda runs pip in; prints what each line became.
PIP_PARSE = """
import json, sys
from pip._internal.network.session import PipSession
from pip._internal.req.constructors import install_req_from_parsed_requirement
from pip._internal.req.req_file import parse_requirements
out = []
for parsed in parse_requirements(sys.argv[1], session=PipSession()):
    r = install_req_from_parsed_requirement(parsed)
    out.append({"editable": r.editable, "req": str(r.req) if r.req else None,
                "path": r.link.file_path if r.link is not None and r.link.is_file else None})
print(json.dumps(out))
"""

STUB_CONDA = """#!{python}
import json, os, subprocess, sys, tempfile
import yaml
args = sys.argv[1:]
if args == ["--version"]:
    print("conda 24.7.1")
elif args[:2] == ["info", "--json"]:
    print(json.dumps({{"conda_prefix": os.environ["STUB_CONDA_BASE"], "platform": "linux-64"}}))
elif args[:2] == ["config", "--get"]:
    print(json.dumps({{"get": {{"channel_priority": "strict"}}}}))
elif args[:2] == ["env", "create"]:
    file, prefix = args[args.index("--file") + 1], args[args.index("--prefix") + 1]
    spec = yaml.safe_load(open(file))
    pip = next(d["pip"] for d in spec["dependencies"] if isinstance(d, dict))
    workdir = os.path.dirname(os.path.abspath(file))          # conda: pip_workdir
    with tempfile.NamedTemporaryFile("w", prefix="condaenv.", suffix=".requirements.txt", dir=workdir,
                                     delete=False) as fh:
        fh.write("\\n".join(pip))                               # conda: "\\n".join(specs)
    res = subprocess.run([sys.executable, "-c", {parse!r}, fh.name], cwd=workdir, capture_output=True, text=True)
    with open(os.environ["STUB_CONDA_LOG"], "a") as log:
        log.write(json.dumps({{"file": os.path.abspath(file), "requirements": fh.name, "rc": res.returncode,
                              "parsed": res.stdout, "stderr": res.stderr[-2000:]}}) + "\\n")
    if res.returncode:
        sys.exit(res.returncode)
    os.makedirs(prefix)
elif args[:1] == ["clean"]:
    pass
else:
    sys.exit(f"stub conda: unsupported {{args}}")
"""


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def env_pip_lines(path: Path = ENV_FILE) -> list[str]:
    spec = yaml.safe_load(path.read_text())
    return next(d["pip"] for d in spec["dependencies"] if isinstance(d, dict))


def expected_pip_lines() -> list[str]:
    """pyproject's runtime dependencies, the `download` extra (PCAM), then this checkout."""
    project = pyproject()["project"]
    return [*project["dependencies"], *project["optional-dependencies"]["download"], "-e ../.."]


def test_conda_env_pip_section_is_pyprojects_dependency_list():
    assert env_pip_lines() == expected_pip_lines(), (
        "workflow/envs/ucat.yaml's pip section must repeat pyproject.toml; expected:\n"
        + "\n".join(f'      - "{line}"' for line in expected_pip_lines()))


def test_no_install_path_needs_no_deps():
    texts = [ENV_FILE.read_text(), (ROOT / "Makefile").read_text(), (ROOT / ".ci" / "run").read_text(),
             (ROOT / "pyproject.toml").read_text()]
    assert not any("--no-deps" in t for t in texts)


def _stub_workflow(tmp_path: Path) -> tuple[Path, dict]:
    """A copy of the workflow (not of data or outputs) and a PATH whose `conda` is the stand-in."""
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in ("Snakefile", "workflow", "params.yaml", "pyproject.toml"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, repo / name)
    # the rules list the package modules they run as inputs (code is a dependency)
    shutil.copytree(ROOT / "src" / "ucat", repo / "src" / "ucat", ignore=shutil.ignore_patterns("__pycache__"))
    bindir = tmp_path / "bin"
    bindir.mkdir()
    stub = bindir / "conda"
    stub.write_text(STUB_CONDA.format(python=sys.executable, parse=PIP_PARSE))
    stub.chmod(0o755)
    env = {**ENV, "PATH": f"{bindir}{os.pathsep}{ENV['PATH']}", "STUB_CONDA_LOG": str(tmp_path / "conda.log"),
           "STUB_CONDA_BASE": str(tmp_path / "base")}
    return repo, env


def test_snakemake_use_conda_dry_run_accepts_the_env(tmp_path):
    repo, env = _stub_workflow(tmp_path)
    res = subprocess.run(["snakemake", "--use-conda", "-n", "--cores", "1"], cwd=repo, env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert "Conda environment workflow/envs/ucat.yaml will be created." in res.stdout + res.stderr
    assert not (tmp_path / "conda.log").exists()  # a dry run creates nothing


def test_env_materialised_by_snakemake_installs_this_checkout(tmp_path):
    """`--conda-create-envs-only`: Snakemake copies the env file under .snakemake/conda/ and calls
    `conda env create`; there the pip section must parse and `-e ../..` must be the checkout."""
    repo, env = _stub_workflow(tmp_path)
    res = subprocess.run(["snakemake", "--use-conda", "--conda-create-envs-only", "--cores", "1"], cwd=repo,
                         env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    calls = [json.loads(line) for line in (tmp_path / "conda.log").read_text().splitlines()]
    assert len(calls) == 1 and calls[0]["rc"] == 0, calls
    call = calls[0]
    assert Path(call["file"]).parent == repo / ".snakemake" / "conda"
    assert Path(call["requirements"]).parent == repo / ".snakemake" / "conda"
    parsed = json.loads(call["parsed"])
    editable = [r for r in parsed if r["editable"]]
    assert len(editable) == 1 and Path(editable[0]["path"]).resolve() == repo.resolve()
    named = [Requirement(r["req"]) for r in parsed if not r["editable"]]
    assert [str(r) for r in named] == [str(Requirement(line)) for line in expected_pip_lines()[:-1]]
    # the runtime lines are consistent: the environment these tests run in (installed by pip's
    # resolver from pyproject.toml) satisfies every one of them
    for req in named[:len(pyproject()["project"]["dependencies"])]:
        assert req.specifier.contains(metadata.version(req.name), prereleases=True), (req, metadata.version(req.name))


def test_requirements_with_no_deps_line_is_refused_by_pip(tmp_path):
    """The check above has teeth: the old env file's `--no-deps` line fails pip's parser."""
    req = tmp_path / "condaenv.x.requirements.txt"
    req.write_text("\n".join(["numpy>=1.24", "--no-deps", "torchattacks==3.5.1"]))
    res = subprocess.run([sys.executable, "-c", PIP_PARSE, str(req)], cwd=tmp_path, capture_output=True, text=True)
    assert res.returncode != 0 and "no-deps" in res.stderr


@pytest.mark.skipif(shutil.which("conda") is None, reason="no conda on PATH: the stand-in tests above cover the dry run")
def test_snakemake_use_conda_dry_run_with_real_conda():
    res = subprocess.run(["snakemake", "--use-conda", "-n", "--cores", "1", "--quiet", "rules"], cwd=ROOT, env=ENV,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
