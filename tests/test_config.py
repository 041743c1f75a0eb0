import copy
import json
from pathlib import Path

import pytest
import yaml

from ucat import config
from ucat.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_params_yaml_is_valid():
    p = config.load(ROOT / "params.yaml")
    assert p["backbone"]["source"] == "demo"


@pytest.mark.parametrize("override, key", [
    ("ucat.tau_prim=0.1", "ucat.tau_prim: unknown key"),
    ("ucat.tau_prime=-1", "ucat.tau_prime"),
    ("methods=[clip, tecao]", "methods.1: unknown value 'tecao'"),
    ("evaluate.attacks=[pgd, fgsm]", "evaluate.attacks.1"),
    ("evaluate.attacks=[clean, pgd]", "evaluate.attacks: clean is always evaluated"),
    ("evaluate.eps=[-2]", "evaluate.eps.0"),
    ("data.datasets=[demo_shapes, cifar11]", "data.datasets.1"),
    ("finetune.optimizer=adam", "finetune.optimizer: unknown value 'adam'; allowed: sgd, adamw"),
    ("run.device=gpu", "run.device"),
])
def test_bad_values_name_the_key(override, key):
    with pytest.raises(ConfigError) as err:
        config.load(ROOT / "params.yaml", [override])
    assert key in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_key_and_cross_checks():
    p = yaml.safe_load((ROOT / "params.yaml").read_text())
    q = copy.deepcopy(p)
    del q["ucat"]["tau"]
    with pytest.raises(ConfigError, match="'tau' is a required property"):
        config.validate(q)
    q = copy.deepcopy(p)
    q["data"]["datasets"] = ["cifar10"]
    with pytest.raises(ConfigError, match="demo backbone"):
        config.validate(q)


def test_bad_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        config.load(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("run: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        config.load(tmp_path / "bad.yaml")


def test_report_formats_must_include_png():
    with pytest.raises(ConfigError, match="report.formats"):
        config.load(ROOT / "params.yaml", ["report.formats=[pdf]"])
    assert config.load(ROOT / "params.yaml", ["report.formats=[png]"])["report"]["formats"] == ["png"]


def test_backbone_models_are_unique_and_the_demo_has_one():
    with pytest.raises(ConfigError, match="unique"):
        config.load(ROOT / "params.yaml", ["backbone.models=[{name: a, pretrained: null}, {name: a, pretrained: null}]"])
    with pytest.raises(ConfigError, match="exactly one"):
        config.load(ROOT / "params.yaml", ["backbone.models=[{name: a, pretrained: null}, {name: b, pretrained: null}]"])
    p = config.load(ROOT / "config" / "paper.yaml",
                    ["backbone.models=[{name: ViT-B-32-quickgelu, pretrained: openai}, {name: ViT-B-16-quickgelu, pretrained: openai}]"])
    from ucat import paths

    assert paths.backbones(p) == ["ViT-B-32-quickgelu", "ViT-B-16-quickgelu"]
    assert len(paths.eval_cells(p)) == 2 * len(p["methods"]) * 16 * 4


def _numeric_keys(node: dict, path: tuple = ()):
    """Every key path of the schema whose value (or list item, as index 0) may be a number."""
    defs = config.schema()["$defs"]
    if "$ref" in node:
        node = defs[node["$ref"].rsplit("/", 1)[1]]
    types = node.get("type", [])
    types = [types] if isinstance(types, str) else types
    alternatives = node.get("oneOf", []) + node.get("anyOf", [])
    if {"number", "integer"} & set(types) or any(_numeric_keys(a) for a in alternatives if not a.get("properties")):
        yield path
    for key, sub in node.get("properties", {}).items():
        yield from _numeric_keys(sub, path + (key,))
    if "items" in node:
        yield from _numeric_keys(node["items"], path + (0,))


NUMERIC_KEYS = sorted(set(_numeric_keys(config.schema())), key=str)


def test_the_walk_finds_the_numeric_keys():
    dotted = {".".join(map(str, k)) for k in NUMERIC_KEYS}
    assert {"ucat.tau_prime", "evaluate.eps.0", "evaluate.tau_prime", "evaluate.batch_size", "run.seeds.0",
            "finetune.attack.eps", "data.subsample"} <= dotted
    assert len(dotted) > 40


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_every_numeric_key_refuses_nan_and_infinity(value):
    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    for key in NUMERIC_KEYS:
        p = copy.deepcopy(base)
        node = p
        for k in key[:-1]:
            node = node[k]
        if isinstance(node, list) and not node:
            node.append(value)
        else:
            node[key[-1]] = value
        dotted = ".".join(map(str, key))
        with pytest.raises(ConfigError) as err:
            config.validate(p)
        msg = str(err.value)
        assert msg.startswith(f"params: {dotted}: must be a finite number") and "\n" not in msg, (dotted, msg)


def test_nan_from_the_command_line_is_one_line(tmp_path, capsys):
    from ucat import cli

    rc = cli.main(["check", "--params", str(ROOT / "params.yaml"), "--set", "ucat.tau_prime=.nan"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "ucat.tau_prime: must be a finite number, got nan" in err


def _format_reads_exactly_one_bare_field(template: str) -> bool:
    """The reference: what str.format itself parses out of the template."""
    import string

    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError:
        return False
    fields = [(name, spec, conv) for _, name, spec, conv in parsed if name is not None]
    # written as a bare "{}" (not "{:}"): re-escaping the literal text gives the template back
    rebuilt = "".join(lit.replace("{", "{{").replace("}", "}}") + ("{}" if name is not None else "")
                      for lit, name, _, _ in parsed)
    return fields == [("", "", None)] and rebuilt == template


def test_prompt_template_rule_agrees_with_str_format():
    """Every string of up to 5 characters over a brace-heavy alphabet: the schema accepts exactly
    the templates in which str.format reads one bare {} and nothing else."""
    import itertools
    import re

    pattern = config.schema()["properties"]["prompt"]["properties"]["templates"]["items"]["pattern"]
    accepted = 0
    for n in range(6):
        for chars in itertools.product("{}a0:!", repeat=n):
            t = "".join(chars)
            ok = re.search(pattern, t) is not None
            assert ok == _format_reads_exactly_one_bare_field(t), t
            if ok:
                accepted += 1
                assert t.format("CLASS").count("CLASS") == 1
    assert accepted > 100


@pytest.mark.parametrize("template", ["{} {}", "{0}", "a {name}", "{:>5}", "{!r}", "photo", "a {", "a }{}"])
def test_bad_prompt_templates_are_one_line(template):
    with pytest.raises(ConfigError) as err:
        config.load(ROOT / "params.yaml", [f"prompt.templates=[{json.dumps(template)}]"])
    msg = str(err.value)
    assert "prompt.templates.0" in msg and "exactly one {}" in msg and "\n" not in msg


def test_good_prompt_templates_pass():
    p = config.load(ROOT / "params.yaml", ['prompt.templates=["a photo of a {}.", "a {{braced}} {}"]'])
    assert [t.format("cat") for t in p["prompt"]["templates"]] == ["a photo of a cat.", "a {braced} cat"]


@pytest.mark.parametrize("content, what", [
    (b"run: [unclosed\n", "not valid YAML at line 2, column 1"),
    (b"run:\n  seed: 0\n bad: 1\n", "not valid YAML at line 3"),
    (b"run: {seed: 0}\nx: \"caf\xe9\"\n", "not UTF-8 text (byte 22"),
    (b"a: \x07\n", "not valid YAML"),
])
def test_broken_params_file_is_one_line(tmp_path, content, what):
    path = tmp_path / "p.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as err:
        config.load(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: ") and what in msg and "\n" not in msg, msg


def test_broken_override_is_one_line():
    with pytest.raises(ConfigError) as err:
        config.load(ROOT / "params.yaml", ["ucat.tau=[1"])
    assert str(err.value).startswith("--set ucat.tau: not valid YAML") and "\n" not in str(err.value)


@pytest.mark.parametrize("name", ["params.yaml", "config/paper.yaml", "config/paper-smoke.yaml",
                                  "config/paper-fare.yaml", "config/paper-fare-smoke.yaml"])
def test_dvc_exp_run_set_changes_one_line_of_the_shipped_files(name, tmp_path):
    """`dvc exp run -S key=value` rewrites the file through DVC's YAML round trip: the shipped files are
    in the form it writes, so one value changed is one line changed (not a reformatted file)."""
    import difflib
    import shutil

    from dvc.utils.serialize import modify_yaml

    path = tmp_path / "params.yaml"
    shutil.copy(ROOT / name, path)
    with modify_yaml(path) as doc:
        doc["ucat"]["tau_prime"] = 0.123
    diff = [line for line in difflib.unified_diff((ROOT / name).read_text().splitlines(), path.read_text().splitlines(),
                                                  lineterm="", n=0) if line[:1] in "+-" and line[:3] not in ("+++", "---")]
    assert len(diff) == 2 and "0.123" in diff[1], diff
