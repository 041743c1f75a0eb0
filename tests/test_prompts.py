"""Official per-data-set prompts (issue 11): expected strings are written out from the issue's
reading of the official code, not computed by the module under test."""

import copy
from pathlib import Path

import pytest
import torch

from ucat import cli, config, data, models, prompts
from ucat.data import real
from ucat.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def paper():
    return config.load(ROOT / "config/paper.yaml")


@pytest.mark.parametrize("name, label, expected", [
    ("caltech256", 0, "A photo of a ak47."),
    ("caltech256", 1, "A photo of a american flag."),                   # 002.american-flag
    ("caltech256", 14, "A photo of a bonsai."),                         # 015.bonsai-101
    ("caltech256", 256, "A photo of a clutter."),                       # 257.clutter
    ("dtd", 0, "A surface with a banded texture."),
    ("fgvc_aircraft", 0, "A photo of a boeing 707-320, a type of aircraft."),
    ("flowers102", 1, "A photo of a hard leaved pocket orchid, a type of flower."),
    ("food101", 0, "A photo of apple pie, a type of food."),
    ("oxford_pets", 1, "A photo of a american bulldog, a type of pet."),
    ("stanford_cars", 0, "A photo of a am general hummer suv."),        # 'AM General Hummer SUV 2000'
    ("stanford_cars", 3, "A photo of a acura tl type s."),              # 'Acura TL Type-S 2008'
    ("tinyimagenet", 0, "This is a photo of a goldfish"),
    ("tinyimagenet", 107, "This is a photo of a go kart"),             # n03444034 go-kart
    ("cifar100", 1, "This is a photo of a aquarium fish"),
    ("caltech101", 1, "This is a photo of a faces easy"),              # folder Faces_easy
    ("sun397", 8, "This is a photo of a apartment building outdoor"),  # apartment_building/outdoor
    ("imagenet", 2, "This is a photo of a great white shark"),
])
def test_official_prompt_examples(name, label, expected):
    assert prompts.official_prompts(name)[label] == expected


def test_eurosat_phrases_and_pcam_verbatim():
    phrases = ["annual crop land", "a forest", "brushland or shrubland", "a highway or a road", "industrial buildings",
               "pasture land", "permanent crop land", "residential buildings", "a river", "a sea or a lake"]
    assert prompts.official_prompts("eurosat") == [f"A centered satellite photo of {p}." for p in phrases]
    assert prompts.official_prompts("pcam") == ["Tthis is a photo of healthy lymph node tissue.",
                                                "This is a photo of lymph node tumor tissue."]


def test_aircraft_boeing_prefix_only_for_sevens_and_dash_kept():
    out = prompts.official_prompts("fgvc_aircraft")
    ids = real.class_ids("fgvc_aircraft")
    for i, p in zip(ids, out):
        name = ("boeing " if i.startswith("7") else "") + i.lower()   # 'Boeing 717' is a variant of its own
        assert p == f"A photo of a {name}, a type of aircraft."
    assert out[ids.index("F/A-18")] == "A photo of a f/a-18, a type of aircraft."


@pytest.mark.parametrize("name", sorted(prompts.OFFICIAL))
def test_one_prompt_per_class_in_label_order(name, paper):
    per_class = prompts.class_prompts(name, paper)
    assert len(per_class) == len(data.classnames(name)) and all(len(p) == 1 for p in per_class)
    # identical prompts: map_clsloc repeats crane, cardigan, maillot; dropping the year merges
    # 7 pairs of Stanford Cars models (2007 vs 2012 Audi S4, ...) -- as in the official code
    dup = {"imagenet": 3, "stanford_cars": 7}.get(name, 0)
    assert len(set(p[0] for p in per_class)) == len(per_class) - dup


def test_templates_source_is_the_ensemble_over_ucat_names(params):
    p = copy.deepcopy(params)
    p["prompt"]["templates"] = ["a {}.", "the {}!"]
    out = prompts.class_prompts("cifar10", p)
    assert out[0] == ["a airplane.", "the airplane!"] and len(out) == 10
    p["prompt"]["source"] = "official"
    assert prompts.class_prompts("cifar10", p)[0] == ["This is a photo of a airplane"]
    with pytest.raises(ConfigError, match="demo_shapes"):
        prompts.class_prompts("demo_shapes", p)


def test_from_prompts_equals_template_features(tiny_clip):
    clip, arch = tiny_clip
    a = models.text_features(clip, arch, ["circle", "bar"], ["a {}.", "this {}"])
    b = models.prompt_features(clip, arch, [["a circle.", "this circle"], ["a bar.", "this bar"]])
    torch.testing.assert_close(a, b)
    with pytest.raises(ConfigError):
        models.prompt_features(clip, arch, [["a"], ["b", "c"]])


def test_cli_prints_one_line_per_class(capsys):
    assert cli.main(["prompts", "dtd", "--params", str(ROOT / "config/paper.yaml")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 47 and lines[0] == "0\tA surface with a banded texture."
    assert cli.main(["prompts", "demo_shapes", "--params", str(ROOT / "params.yaml")]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "0\tThis is a photo of a circle"
    assert cli.main(["prompts", "nope", "--params", str(ROOT / "params.yaml")]) == 2
    assert capsys.readouterr().err.startswith("error: NAME: unknown value 'nope'")


def test_docs_table_lists_every_rule():
    text = (ROOT / "docs/prompts.md").read_text()
    for name, spec in prompts.OFFICIAL.items():
        row = next(line for line in text.splitlines() if line.startswith(f"| {name} |"))
        assert spec.source in row and spec.rule in row and (spec.template is None or spec.template in row)


def test_paper_config_uses_the_official_protocol_and_the_demo_its_own(paper):
    demo_params = config.load(ROOT / "params.yaml")
    assert paper["prompt"]["source"] == "official" and paper["data"]["preprocess"] == "official"
    assert demo_params["prompt"]["source"] == "templates"
    assert paper["finetune"]["select"] == "final"  # selection is opt-in
