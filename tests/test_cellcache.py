"""One evaluation job per (model, data set): every condition written, unchanged cells restored byte for byte."""

import copy
import json

import numpy as np
import pytest
import torch

from ucat import cellcache, cli, data, evaluate, paths
from ucat.errors import ConfigError

CPU = torch.device("cpu")


@pytest.fixture()
def job(tmp_params, tiny_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("UCAT_CACHE", str(tmp_path / "cache"))
    params = copy.deepcopy(tmp_params)
    params["evaluate"].update(attacks=["pgd", "cw"], eps=[4, 8])
    data.prepare("demo_shapes", params)
    out = tmp_path / "out"

    def out_paths(attack, eps):
        return out / f"{attack}_eps{eps}.json", out / f"{attack}_eps{eps}.npz"

    def run(p=params, checkpoint=tiny_checkpoint, **kw):
        return evaluate.evaluate_dataset(p, checkpoint, "demo_shapes", CPU, method="clip", out_paths=out_paths,
                                         progress=False, **kw)

    return params, run, out, tiny_checkpoint


def _bytes(out):
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


def test_every_condition_is_written_and_equals_the_single_cell_evaluation(job):
    params, run, out, ckpt = job
    info = run(use_cache=False)
    assert list(info) == ["clean_eps0", "pgd_eps4", "pgd_eps8", "cw_eps4", "cw_eps8"] == \
        [f"{a}_eps{e}" for a, e in paths.conditions(params)]
    assert not any(c["restored"] for c in info.values())
    saved = json.loads((out / "pgd_eps8.json").read_text())
    summary, samples = evaluate.evaluate(params, ckpt, "demo_shapes", "pgd", 8, CPU, method="clip",
                                         progress=False)
    assert summary == saved                                   # one model load for all cells changes nothing
    z = np.load(out / "pgd_eps8.npz")
    assert all(np.array_equal(z[k], samples[k]) for k in z.files)


def test_a_rerun_restores_every_cell_byte_for_byte_without_loading_the_model(job, monkeypatch):
    params, run, out, ckpt = job
    run()
    first = _bytes(out)
    for p in out.iterdir():
        p.unlink()                                           # the engines delete a job's outputs before rerunning it

    def no_model(*a, **k):
        raise AssertionError("the model was loaded although every cell was cached")

    monkeypatch.setattr(evaluate, "Evaluator", no_model)
    info = run()
    assert all(c["restored"] for c in info.values())
    assert _bytes(out) == first


def test_only_cells_whose_inputs_changed_are_computed(job, tmp_path):
    params, run, out, ckpt = job
    run()
    first = _bytes(out)
    changed = copy.deepcopy(params)
    changed["evaluate"]["cw"]["kappa"] = 0                   # one attack's settings
    changed["evaluate"]["eps"] = [2, 4, 8]                   # and a new eps
    info = run(changed)
    assert {n for n, c in info.items() if not c["restored"]} == {"pgd_eps2", "cw_eps2", "cw_eps4", "cw_eps8"}
    after = _bytes(out)
    assert all(after[n] == first[n] for n in ("clean_eps0.json", "pgd_eps4.npz", "pgd_eps8.json"))
    assert after["cw_eps8.npz"] != first["cw_eps8.npz"]

    from ucat import models

    other = tmp_path / "other.pt"                            # another checkpoint: nothing can be reused
    clip, arch, _ = models.load_checkpoint(ckpt)
    with torch.no_grad():
        clip.visual.proj.mul_(1.5)                           # another model
    models.save_checkpoint(other, clip, arch)
    info = run(checkpoint=other)
    assert not any(c["restored"] for c in info.values())


def test_a_damaged_cache_entry_is_recomputed(job):
    params, run, out, ckpt = job
    run()
    first = _bytes(out)
    entries = sorted(cellcache.cache_dir().iterdir())
    assert len(entries) == 5
    for entry in entries:                                    # truncated npz, unreadable JSON
        (entry / "samples.npz").write_bytes((entry / "samples.npz").read_bytes()[:50])
    (entries[0] / "cell.json").write_text("{")
    info = run()
    assert not any(c["restored"] for c in info.values())
    assert _bytes(out) == first                              # recomputed: the same bytes again
    assert all(c["restored"] for c in run().values())        # and the entries repaired


def test_edited_evaluation_code_misses_the_cache(job, monkeypatch):
    params, run, out, ckpt = job
    run()
    monkeypatch.setattr(cellcache, "code_digest", lambda: "edited")
    assert not any(c["restored"] for c in run().values())


def test_cli_out_paths_need_one_cell(job, capsys):
    code = cli.main(["evaluate", "--method", "clip", "--dataset", "demo_shapes", "--out-json", "x.json"])
    assert code != 0 and "--attack" in capsys.readouterr().err


def test_bad_condition_is_refused_before_anything_is_written(job):
    params, run, out, ckpt = job
    with pytest.raises(ConfigError, match="eps"):
        run(conditions=[("clean", 0), ("pgd", 0)])
    assert not out.exists()
