"""config/paper.yaml: valid under the schema, and its key values agree with the paper's record."""

import csv
from importlib import resources
from pathlib import Path

from ucat import config, data, losses, paths

ROOT = Path(__file__).resolve().parents[1]


def test_paper_config_matches_the_protocol():
    p = config.load(ROOT / "config" / "paper.yaml")
    assert p["backbone"]["source"] == "open_clip"
    assert p["backbone"]["models"][0] == {"name": "ViT-B-32-quickgelu", "pretrained": "openai"}
    assert p["finetune"]["attack"] == {"eps": 1, "steps": 2, "step_size": 1}
    assert (p["finetune"]["optimizer"], p["finetune"]["lr"], p["finetune"]["momentum"]) == ("sgd", 1e-4, 0.9)
    assert (p["finetune"]["epochs"], p["finetune"]["batch_size"], p["finetune"]["warmup_steps"]) == (10, 256, 1000)
    assert p["evaluate"]["eps"] == [1] and p["evaluate"]["pgd"]["steps"] == 100 and p["evaluate"]["cw"]["kappa"] == 50
    # main.py's CAA/a3 branches: test steps, CompositeAttack's default l-inf range behind the step; 1 restart,
    # test step size, OSD 0 + 0.1, early stop, random start, ADI
    assert p["evaluate"]["caa"] == {"steps": 100, "step_rule_eps": 4}
    assert p["evaluate"]["a3"] == {"steps": 100, "step_size": 1, "restarts": 1, "osd_start": 0.0, "osd_increment": 0.1,
                                   "early_stop": True, "random_start": True, "adi": True}
    assert p["prompt"]["templates"] == ["This is a photo of a {}"]
    assert losses.ucat_lambda(p["ucat"]["tau"], p["ucat"]["tau_prime"]) == losses.ucat_lambda(1e5, 0.07)
    assert p["data"]["finetune"] == "tinyimagenet"


def test_paper_config_covers_every_published_data_set_and_method():
    p = config.load(ROOT / "config" / "paper.yaml")
    table = resources.files("ucat").joinpath("report/reference/table16_main.csv").read_text().splitlines()
    rows = list(csv.DictReader(table))
    published = {r["dataset"] for r in rows} - {"average", "harmonic_mean_clean_robust"}
    assert {data.paper_name(d) for d in p["data"]["datasets"]} == published
    ours = {"clip", "tecoa", "fare", "pmg_aft", "ucat"}
    assert ours <= set(p["methods"]) and ours <= {r["method"] for r in rows}
    assert len(paths.eval_cells(p)) == len(p["methods"]) * 16 * 4


def test_paper_smoke_config_has_the_paper_dag_shape():
    """config/paper-smoke.yaml differs from config/paper.yaml only in what makes it small and offline."""
    paper = config.load(ROOT / "config" / "paper.yaml")
    smoke = config.load(ROOT / "config" / "paper-smoke.yaml")
    assert paths.eval_cells(smoke) == paths.eval_cells(paper) and paths.data_sets(smoke) == paths.data_sets(paper)
    assert smoke["backbone"]["models"] == [{"name": "ViT-B-32-quickgelu", "pretrained": None}]
    assert smoke["data"]["source"] == "smoke" and paper["data"]["source"] == "real"
    assert smoke["data"]["root"] != paper["data"]["root"]
    allowed = {("backbone", "models"), ("data", "root"), ("data", "source"), ("data", "subsample"),
               ("data", "num_workers"), ("data", "heldout"), ("finetune", "epochs"), ("finetune", "select_subsample"), ("finetune", "batch_size"),
               ("finetune", "max_steps_per_epoch"), ("finetune", "warmup_steps"), ("evaluate", "pgd"),
               ("evaluate", "cw"), ("evaluate", "autoattack"),
               ("evaluate", "caa"), ("evaluate", "a3")}
    changed = {(section, key) for section, values in paper.items() if isinstance(values, dict)
               for key in values if smoke[section][key] != values[key]}
    assert changed <= allowed, changed - allowed
    assert {k: v for k, v in paper.items() if not isinstance(v, dict)} == \
           {k: v for k, v in smoke.items() if not isinstance(v, dict)}   # methods
    assert smoke["evaluate"]["pgd"]["step_size"] == paper["evaluate"]["pgd"]["step_size"]
    for attack in ("caa", "a3"):   # only the steps are reduced
        assert {**smoke["evaluate"][attack], "steps": 100} == paper["evaluate"][attack]
