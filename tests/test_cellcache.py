"""One evaluation job per (model, data set): every condition written, unchanged cells restored byte for byte."""

import copy
import json

import numpy as np
import pytest
import torch

from ucat import cache, cellcache, cli, config, data, evaluate, fingerprint, keys, paths
from ucat.data.integrity import sha256
from ucat.errors import ConfigError, DataError

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


def _entries():
    return sorted(p for p in cache.cache_dir("cells").iterdir() if not p.name.startswith("."))


def _entry_of(cell_name, out):
    """The cache entry holding the cell written to ``out/<cell_name>.json``."""
    want = (out / f"{cell_name}.json").read_bytes()
    found = [e for e in _entries() if (e / "cell.json").read_bytes() == want]
    assert len(found) == 1
    return found[0]


def _tamper_accuracy(entry):
    cell = json.loads((entry / "cell.json").read_text())
    cell["accuracy"] = 0.999
    (entry / "cell.json").write_text(json.dumps(cell, indent=2) + "\n")


def _empty_json(entry):
    (entry / "cell.json").write_text("{}")


def _zero_arrays(entry):
    with np.load(entry / "samples.npz") as z:
        arrays = {k: np.zeros_like(z[k]) for k in z.files}
    evaluate.write_npz(entry / "samples.npz", arrays)


def _flip_one_bit(entry):
    raw = bytearray((entry / "samples.npz").read_bytes())
    raw[len(raw) // 2] ^= 1
    (entry / "samples.npz").write_bytes(bytes(raw))


def _truncate(entry):
    (entry / "samples.npz").write_bytes((entry / "samples.npz").read_bytes()[:50])


def _consistent_forgery(entry):
    """Both files changed together and the digests recomputed: only the JSON/arrays check can see it."""
    _tamper_accuracy(entry)
    meta = json.loads((entry / "entry.json").read_text())
    meta["json_sha256"] = sha256(entry / "cell.json")
    (entry / "entry.json").write_text(json.dumps(meta))


@pytest.mark.parametrize("damage", [_tamper_accuracy, _empty_json, _zero_arrays, _flip_one_bit, _truncate,
                                    _consistent_forgery], ids=lambda f: f.__name__.strip("_"))
def test_a_tampered_or_damaged_entry_is_recomputed_never_restored(job, damage):
    params, run, out, ckpt = job
    run()
    first = _bytes(out)
    assert len(_entries()) == 5
    damage(_entry_of("pgd_eps8", out))
    info = run()
    assert {n for n, c in info.items() if not c["restored"]} == {"pgd_eps8"}
    assert _bytes(out) == first                              # recomputed: the same bytes again
    assert all(c["restored"] for c in run().values())        # and the entry repaired


def test_two_writers_of_one_key_never_leave_a_mixed_entry(job, tmp_path):
    """The second writer's entry is discarded whole: a restore gives one writer's JSON with its own arrays."""
    params, run, out, ckpt = job
    run(conditions=[("clean", 0)])
    entry, = _entries()
    key = entry.name
    other = tmp_path / "other"
    other.mkdir()
    z = dict(np.load(out / "clean_eps0.npz"))
    z["pred"] = (z["pred"] + 1) % 6                          # another writer's (different) result
    evaluate.write_npz(other / "c.npz", z)
    (other / "c.json").write_text((out / "clean_eps0.json").read_text())
    cellcache.store(key, {}, other / "c.json", other / "c.npz")
    assert (entry / "samples.npz").read_bytes() == (out / "clean_eps0.npz").read_bytes()
    assert [p.name for p in cache.cache_dir("cells").iterdir()] == [key]   # no temporary folder left

    import threading

    def writer(i):
        cellcache.store(key, {"writer": i}, out / "clean_eps0.json", out / "clean_eps0.npz")

    cache.remove(entry)
    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [p.name for p in cache.cache_dir("cells").iterdir()] == [key]
    assert all(c["restored"] for c in run(conditions=[("clean", 0)]).values())


def test_changed_data_under_a_warm_cache_stops_the_job(job, tmp_path):
    params, run, out, ckpt = job
    run()
    npz = tmp_path / "data" / "demo_shapes" / "images.npz"
    original = npz.read_bytes()
    raw = bytearray(original)
    raw[-100] ^= 1
    npz.write_bytes(bytes(raw))                              # one byte of the images
    with pytest.raises(DataError, match="changed since .*MANIFEST.json"):
        run()
    npz.write_bytes(original)
    assert all(c["restored"] for c in run().values())        # the same bytes again: verified, restored
    (tmp_path / "data" / "demo_shapes" / "notes.txt").write_text("stray")
    with pytest.raises(DataError, match="notes.txt added"):
        run()


def test_edited_evaluation_code_or_class_names_miss_the_cache(job, edit_package):
    params, run, out, ckpt = job
    run()
    edit_package("metrics.py", "def summarize(", "def summarize(  ")
    assert not any(c["restored"] for c in run().values())
    assert all(c["restored"] for c in run().values())
    edit_package("data/classnames/cifar10.json", '"airplane"', '"aeroplane"')   # a data file the code reads
    assert not any(c["restored"] for c in run().values())


@pytest.mark.parametrize("key, value", [("run.compile", True), ("run.precision", "bf16"),
                                        ("evaluate.batch_size", 7), ("evaluate.tau_prime", 1.0)])
def test_every_setting_the_cell_reads_is_in_its_key(job, key, value):
    params, run, out, ckpt = job
    run(conditions=[("clean", 0)])
    changed = copy.deepcopy(params)
    section, leaf = key.split(".")
    changed[section][leaf] = value
    assert cellcache.key(params=config.select(changed, keys.evaluate_params("clean")), inputs={}, device=CPU,
                         extra={}) != cellcache.key(params=config.select(params, keys.evaluate_params("clean")),
                                                    inputs={}, device=CPU, extra={})


def test_library_versions_and_threads_are_in_the_key(monkeypatch):
    base = cellcache.key(params={}, inputs={}, device=CPU, extra={})
    installed = fingerprint.library_versions()
    monkeypatch.setattr(fingerprint, "library_versions", lambda: {**installed, "numpy": "0"})
    assert cellcache.key(params={}, inputs={}, device=CPU, extra={}) != base
    monkeypatch.undo()
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(3 if threads != 3 else 2)
        assert cellcache.key(params={}, inputs={}, device=CPU, extra={}) != base
    finally:
        torch.set_num_threads(threads)


def test_cli_out_paths_need_one_cell(job, capsys):
    code = cli.main(["evaluate", "--method", "clip", "--dataset", "demo_shapes", "--out-json", "x.json"])
    assert code != 0 and "--attack" in capsys.readouterr().err


def test_bad_condition_is_refused_before_anything_is_written(job):
    params, run, out, ckpt = job
    with pytest.raises(ConfigError, match="eps"):
        run(conditions=[("clean", 0), ("pgd", 0)])
    assert not out.exists()


def test_a_multilabel_cell_is_restored_verified(params, tiny_checkpoint, tmp_path, monkeypatch):
    """MS-COCO cells go through the same cache: restored byte for byte, a tampered mAP recomputed."""
    monkeypatch.setenv("UCAT_CACHE", str(tmp_path / "cache"))
    p = copy.deepcopy(params)
    p["data"].update(root=str(tmp_path / "smoke"), source="smoke")
    data.prepare("coco2017", p)
    out = tmp_path / "out"

    def run():
        return evaluate.evaluate_dataset(p, tiny_checkpoint, "coco2017", CPU, method="clip", progress=False,
                                         conditions=[("clean", 0)],
                                         out_paths=lambda a, e: (out / f"{a}{e}.json", out / f"{a}{e}.npz"))

    assert not run()["clean_eps0"]["restored"]
    first = _bytes(out)
    assert run()["clean_eps0"]["restored"] and _bytes(out) == first
    entry, = _entries()
    cell = json.loads((entry / "cell.json").read_text())
    cell["mAP"] = 0.999
    (entry / "cell.json").write_text(json.dumps(cell, indent=2) + "\n")
    assert not run()["clean_eps0"]["restored"] and _bytes(out) == first
