import argparse
import subprocess
import sys

import pytest

from ucat import cli


def _subparsers(parser):
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices


COMMANDS = list(_subparsers(cli.build_parser()))


def test_the_command_list_is_complete():
    assert {"check", "data", "backbone", "finetune", "evaluate", "calibrate", "report", "dvc-yaml", "bench",
            "prompts", "cache", "experiments"} <= set(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_subcommand_explains_itself(command, capsys):
    sub = _subparsers(cli.build_parser())[command]
    assert len(sub.description or "") > 60            # what it does, not only its one-line summary in `ucat --help`
    with pytest.raises(SystemExit) as exit_:
        cli.main([command, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert sub.description.split()[0] in out
    assert "--params" in out or command in ("cache", "experiments")   # they read the cache folder, DVC's experiments


def test_help_imports_no_torch():
    """`ucat --help` and every `ucat SUB --help` answer without importing torch (which takes seconds)."""
    code = ("import contextlib, io, sys\n"
            "from ucat import cli\n"
            "for argv in [['--help']] + [[c, '--help'] for c in sys.argv[1:]]:\n"
            "    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
            "        cli.main(argv)\n"
            "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'torchvision', 'open_clip', 'numpy'})\n"
            "print(' '.join(heavy) or 'none')\n")
    res = subprocess.run([sys.executable, "-c", code, *COMMANDS], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "none"


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


def test_parameters_edited_while_a_command_runs_fail_it(tmp_path, monkeypatch, capsys):
    """What DVC needs: a stage whose params.yaml changed under it exits non-zero, so dvc.lock never
    pairs its outputs with values they were not made with (set back before the end: no error)."""
    import shutil
    from pathlib import Path

    from ucat import config

    shutil.copy(Path(__file__).resolve().parents[1] / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    original = (tmp_path / "params.yaml").read_text()

    def stage_that_sees_an_edit(new_text):
        def cmd(args):
            config.load(args.params, args.overrides)
            (tmp_path / "params.yaml").write_text(new_text)
            return 0
        return cmd

    monkeypatch.setattr(config, "_LOADED", {})
    monkeypatch.setattr(cli, "cmd_check", stage_that_sees_an_edit(original.replace("tau: 100.0", "tau: 200.0")))
    assert cli.main(["check"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "ucat.tau was 100.0, now 200.0" in err
    (tmp_path / "params.yaml").write_text(original)
    monkeypatch.setattr(config, "_LOADED", {})
    monkeypatch.setattr(cli, "cmd_check", stage_that_sees_an_edit(original + "\n# a comment\n"))
    assert cli.main(["check"]) == 0                      # formatting only: the values are the same


def test_cache_info_and_prune(tmp_path, monkeypatch, capsys):
    import os
    import time

    monkeypatch.setenv("UCAT_CACHE", str(tmp_path))
    for i, kind in enumerate(["cells", "cells", "text"]):
        entry = tmp_path / kind / f"entry{i}"
        entry.mkdir(parents=True)
        (entry / "x").write_bytes(b"\0" * 1000)
        os.utime(entry, (time.time() - 86400 * (10 - i), time.time() - 86400 * (10 - i)))
    assert cli.main(["cache", "info"]) == 0
    out = capsys.readouterr().out
    assert "cells" in out and "2 entries" in out and "total" in out
    assert cli.main(["cache", "prune", "--max-size", "1500"]) == 0     # LRU first: the oldest two go
    assert sorted(p.name for p in tmp_path.rglob("entry*")) == ["entry2"]
    assert cli.main(["cache", "prune", "--older-than", "1"]) == 0
    assert list(tmp_path.rglob("entry*")) == []
    assert cli.main(["cache", "prune"]) == 2 and "--max-size" in capsys.readouterr().err
    assert cli.main(["cache", "prune", "--max-size", "lots"]) == 2
