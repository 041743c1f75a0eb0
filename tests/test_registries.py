"""One list per kind: methods (ucat.methods), attacks (ucat.attacks), data sets (ucat.data).

Every other place that names them (the params schema's enums, the report's name tables,
the Snakemake wildcard constraints, the fine-tuning fingerprint) either derives from those
lists or is checked against them here.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import torch

from ucat import attacks, config, data, fingerprint, methods, paths, train, workflow
from ucat.report import load, reference
from ucat.report.tables import METHOD_NAMES

ROOT = Path(__file__).resolve().parents[1]


def test_schema_enums_are_the_registries():
    defs = config.schema()["$defs"]
    assert defs["method"]["enum"] == list(methods.METHODS)
    assert defs["attack"]["enum"] == list(attacks.ATTACKS)
    assert sorted(defs["dataset"]["enum"]) == sorted(data.dataset_names())
    # Snakemake validates against the same file
    assert (ROOT / "workflow/schemas/config.schema.yaml").read_text() == \
        (ROOT / "src/ucat/resources/params.schema.yaml").read_text()


def test_report_name_tables_cover_exactly_the_registries():
    from ucat.report.figures import COND_STYLE, METHOD_COLOURS

    assert set(METHOD_NAMES) == set(METHOD_COLOURS) == set(methods.METHODS)
    assert len(set(METHOD_NAMES.values())) == len(METHOD_NAMES)   # display names tell methods apart
    assert set(COND_STYLE) == set(reference.ATTACKS) == set(attacks.ATTACKS)
    assert ("clean", *load.ATTACK_ORDER) == attacks.ATTACKS
    setting = load.Setting(tuple(methods.METHODS), ("demo_shapes",), load.ATTACK_ORDER, (1,), True)
    assert len({setting.label(a) for a in attacks.ATTACKS}) == len(attacks.ATTACKS)
    assert set(reference.ABLATIONS) <= set(methods.METHODS)


def test_every_published_method_name_maps_to_a_pipeline_method():
    published = set()
    for table in reference.TABLES:
        published |= set(reference.table_methods(table))
    ours = {reference.paper_method(m) for m in methods.METHODS}
    assert published == ours   # every row of the paper's tables is a method the pipeline trains


def test_paper_data_sets_derive_from_the_data_registry():
    columns = {c.dataset for c in reference.load_table("table16_main")} - {reference.AVERAGE, reference.HARMONIC}
    assert set(reference.paper_datasets().values()) == columns
    assert set(reference.paper_datasets()) < set(data.dataset_names())
    assert all(not data.is_demo(d) for d in reference.paper_datasets())


def _constraints() -> dict[str, str]:
    """The wildcard_constraints of common.smk, evaluated with the names it imports."""
    text = (ROOT / "workflow/rules/common.smk").read_text()
    block = text.split("wildcard_constraints:", 1)[1]
    params = config.load(ROOT / "params.yaml")
    ns = {"re": re, "methods": methods, "attacks": attacks, "data": data, "paths": paths, "PARAMS": params,
          "BACKBONES": ["ViT-B-32"]}
    out = {}
    for line in block.splitlines()[1:]:
        if not line.startswith((" ", "\t")) or not line.strip():
            break
        name, _, expr = line.split("  #")[0].strip().rstrip(",").partition("=")
        out[name] = eval(expr, ns)  # noqa: S307 - our own Snakefile
    return out


def test_snakemake_wildcard_constraints_accept_exactly_the_registries():
    c = _constraints()
    for key, names in (("method", methods.METHODS), ("dataset", data.dataset_names())):
        for n in names:
            assert re.fullmatch(c[key], n), (key, n)
        assert not re.fullmatch(c[key], "nonexistent"), key
    assert "attack" not in c and "eps" not in c   # one evaluation job runs every attack x eps of the params
    assert re.fullmatch(c["seed"], "0") and not re.fullmatch(c["seed"], "7")   # the seeds of run.seeds


def test_the_workflows_multilabel_lists_are_the_registries():
    from ucat import attacks_multilabel

    assert set(paths.MULTILABEL_SETS) == {d for d in data.dataset_names() if data.is_multilabel(d)}
    assert set(paths.MULTILABEL_ATTACKS) == set(attacks_multilabel.ATTACKS) - {"clean"}


def _leaves(tree: dict, prefix: str = ""):
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            yield from _leaves(v, f"{key}.")
        else:
            yield key


def _changed(params: dict, dotted: str) -> dict:
    p = copy.deepcopy(params)
    *parents, leaf = dotted.split(".")
    node = p
    for k in parents:
        node = node[k]
    node[leaf] = ["changed", node[leaf]]
    return p


# where the inputs lie, not what they are (their content is in the key through the manifest's digest)
LOCATES_INPUTS = ("data.root", "data.finetune")


@pytest.mark.parametrize("method", ["ucat", "fare", "kl_prob_forward", "comp_tga"])
def test_fingerprint_reads_exactly_the_stage_parameters(method, tmp_params, tmp_path):
    """A value the fine-tuning stage depends on changes the fingerprint; nothing else does."""
    data.prepare(tmp_params["data"]["finetune"], tmp_params)
    backbone = tmp_path / "b.pt"
    backbone.write_bytes(b"weights")

    def fp(p, m=method):
        return fingerprint.digest(train.fingerprint_record(p, m, backbone, torch.device("cpu")))

    base = fp(tmp_params)
    stage = workflow.finetune_params(method)
    for key in _leaves(tmp_params):
        if key in LOCATES_INPUTS:
            continue
        read = any(key == s or key.startswith(f"{s}.") for s in stage) and key not in train.NOT_IN_FINGERPRINT
        changed = fp(_changed(tmp_params, key)) != base
        assert changed == read, key
    assert fp(tmp_params, "tecoa") != base
    backbone.write_bytes(b"other weights")
    assert fp(tmp_params) != base
