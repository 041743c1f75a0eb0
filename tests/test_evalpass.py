"""One pass over the data per evaluation job: each image decoded once, every cell's bytes as if scored alone."""

import copy

import pytest
import torch

from ucat import data, evaluate

CPU = torch.device("cpu")
CONDITIONS = [("clean", 0), ("pgd", 4), ("pgd", 8), ("autoattack", 4)]   # PGD draws from its generator


@pytest.fixture()
def job(tmp_params, tiny_checkpoint, tmp_path, monkeypatch):
    """``run(out, conditions, **kw) -> (info, decoded images)`` for one demo_shapes job of the tiny CLIP."""
    monkeypatch.setenv("UCAT_CACHE", str(tmp_path / "cache"))
    params = copy.deepcopy(tmp_params)
    params["evaluate"].update(batch_size=16)            # 24 images: two batches, so generators carry over
    data.prepare("demo_shapes", params)
    decoded = []
    getitem = evaluate.WithSampleIds.__getitem__

    def counted(self, i):
        decoded.append(self.ids[i])
        return getitem(self, i)

    monkeypatch.setattr(evaluate.WithSampleIds, "__getitem__", counted)

    def run(out, conditions, p=params, **kw):
        decoded.clear()
        info = evaluate.evaluate_dataset(p, tiny_checkpoint, "demo_shapes", CPU, method="clip", conditions=conditions,
                                         out_paths=lambda a, e: (out / f"{a}_eps{e}.json", out / f"{a}_eps{e}.npz"),
                                         progress=False, **kw)
        return info, list(decoded)

    def alone(out, conditions, p=params):
        """Each cell scored by itself (one model load for all: ``Evaluator.score``)."""
        evaluator = evaluate.Evaluator(p, tiny_checkpoint, "demo_shapes", CPU, "clip", progress=False)
        for a, e in conditions:
            evaluate.write_outputs(*evaluator.score(a, e), out / f"{a}_eps{e}.json", out / f"{a}_eps{e}.npz")

    return params, run, alone


def _bytes(out):
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


def test_every_cell_of_one_pass_has_the_bytes_of_the_cell_scored_alone(job, tmp_path):
    params, run, alone = job
    info, decoded = run(tmp_path / "together", CONDITIONS, use_cache=False)
    assert not any(c["restored"] for c in info.values())
    assert all(c["batch_size"] == 16 and c["images_per_second"] > 0 for c in info.values())
    assert sorted(decoded) == list(range(24))                 # once per image for four cells
    alone(tmp_path / "alone", CONDITIONS)
    together = _bytes(tmp_path / "together")
    assert len(together) == 2 * len(CONDITIONS) and together == _bytes(tmp_path / "alone")
    assert together["pgd_eps4.npz"] != together["clean_eps0.npz"]     # the attacks did perturb


def test_a_partial_cache_hit_computes_only_the_missing_cells_in_one_pass(job, tmp_path):
    params, run, alone = job
    conditions = CONDITIONS[:3]
    run(tmp_path / "first", conditions)
    changed = copy.deepcopy(params)
    changed["evaluate"]["pgd"]["steps"] = 2                  # only the two PGD cells read it
    info, decoded = run(tmp_path / "second", conditions, p=changed)
    assert {n for n, c in info.items() if not c["restored"]} == {"pgd_eps4", "pgd_eps8"}
    assert list(info) == [f"{a}_eps{e}" for a, e in conditions]
    assert sorted(decoded) == list(range(24))
    alone(tmp_path / "second_alone", [("pgd", 8)], p=changed)
    assert _bytes(tmp_path / "second")["pgd_eps8.npz"] == _bytes(tmp_path / "second_alone")["pgd_eps8.npz"]
    assert _bytes(tmp_path / "second")["pgd_eps8.npz"] != _bytes(tmp_path / "first")["pgd_eps8.npz"]
