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


# what the FARE setting changes (config/paper-fare.yaml, official main.sh's "#------FARE" block and COCO loop)
FARE_SETTING = {("run", "setting"), ("data", "datasets"), ("finetune", "attack"), ("finetune", "select_attack"),
                ("pmg_aft", "attack"), ("evaluate", "attacks"), ("evaluate", "eps")}


def _changed_keys(a: dict, b: dict) -> set:
    return {(section, key) for section, values in a.items() if isinstance(values, dict)
            for key in values if b[section][key] != values[key]}


def test_fare_setting_changes_only_its_protocol_and_writes_beside_the_main_setting():
    from ucat import workflow

    paper = config.load(ROOT / "config" / "paper.yaml")
    fare = config.load(ROOT / "config" / "paper-fare.yaml")
    assert _changed_keys(paper, fare) == FARE_SETTING
    assert fare["finetune"]["attack"] == {"eps": 2, "steps": 10, "step_size": 1}
    assert fare["data"]["datasets"] == ["coco2017"] and fare["evaluate"]["eps"] == [1, 2, 4]
    assert set(fare["methods"]) == {"clip", "tecoa", "pmg_aft", "fare", "tga_zsr", "comp_tga", "ucat"}
    assert paths.conditions(fare, "coco2017") == [("clean", 0)] + [(a, e) for a in ("pgd", "cw") for e in (1, 2, 4)]

    def outputs(p):
        out = {workflow.fill(o, p, backbone=b, seed=s, method=m)
               for b in paths.backbones(p) for s in paths.seeds(p) for m in p["methods"]
               for o in (paths.FINETUNED, paths.CHECKPOINTS, paths.CALIBRATION, paths.TRAIN_LIVE)}
        return out | {workflow.fill(o, p) for o in (paths.SUMMARY, paths.REPORTS, paths.CELLS, paths.SAMPLES_ROOT)}

    assert not outputs(paper) & outputs(fare)                 # nothing of the main setting is overwritten


def test_fare_smoke_config_is_the_fare_setting_made_small():
    fare = config.load(ROOT / "config" / "paper-fare.yaml")
    smoke = config.load(ROOT / "config" / "paper-fare-smoke.yaml")
    main_smoke = config.load(ROOT / "config" / "paper-smoke.yaml")
    paper = config.load(ROOT / "config" / "paper.yaml")
    assert _changed_keys(fare, smoke) == _changed_keys(paper, main_smoke)   # the same reductions as the main smoke run
    assert smoke["finetune"]["attack"] == fare["finetune"]["attack"]        # the setting itself is not reduced
