import copy
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
