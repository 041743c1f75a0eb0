import subprocess
import sys

import pytest

from ucat import cli

COMMANDS = ["check", "data", "backbone", "finetune", "evaluate", "calibrate", "report", "dvc-yaml", "bench", "prompts"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_subcommand_explains_itself(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main([command, "--help"])
    assert exit_.value.code == 0
    assert "--params" in capsys.readouterr().out


def test_module_entry_point():
    res = subprocess.run([sys.executable, "-m", "ucat", "--help"], capture_output=True, text=True)
    assert res.returncode == 0 and "finetune" in res.stdout


@pytest.mark.parametrize("argv, needle", [
    (["check", "--set", "ucat.tau_prime=-1"], "ucat.tau_prime"),
    (["check", "--set", "evaluate.eps=[-4]"], "evaluate.eps.0"),
    (["check", "--set", "methods=[ucta]"], "allowed: clip"),
    (["finetune", "ucta"], "methods: unknown value 'ucta'"),
    (["evaluate", "--method", "tecoa", "--dataset", "demo_shapes", "--attack", "pgd", "--eps", "8", "--checkpoint", "nope.pt"], "nope.pt"),
    (["check", "--params", "missing.yaml"], "missing.yaml"),
    (["calibrate", "ucta"], "methods: unknown value 'ucta'"),
    (["calibrate", "tecoa", "--checkpoint", "nope.pt"], "nope.pt"),
])
def test_bad_input_is_one_line_naming_the_key(argv, needle, capsys, tmp_path, monkeypatch):
    import shutil
    from pathlib import Path

    shutil.copy(Path(__file__).resolve().parents[1] / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and needle in err and "\n" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]  # nothing written
