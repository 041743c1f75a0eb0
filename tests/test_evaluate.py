import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ucat import attacks, data, evaluate
from ucat.data import demo
from ucat.errors import CheckpointError, ConfigError, DataError


@pytest.fixture()
def ready(tmp_params, tiny_checkpoint):
    data.prepare("demo_shapes", tmp_params)
    return tmp_params, tiny_checkpoint


def test_cell_writes_metrics_and_samples(ready, tmp_path):
    params, ckpt = ready
    for attack in attacks.ATTACKS:
        summary, samples = evaluate.evaluate(params, ckpt, "demo_shapes", attack, 8, torch.device("cpu"),
                                             method="clip", progress=False)
        evaluate.write_outputs(summary, samples, tmp_path / f"{attack}.json", tmp_path / f"{attack}.npz")
        saved = json.loads((tmp_path / f"{attack}.json").read_text())
        arrays = np.load(tmp_path / f"{attack}.npz")
        assert saved["n"] == 24 == len(arrays["label"])
        assert saved["accuracy"] == pytest.approx((arrays["pred"] == arrays["label"]).mean())
        assert saved["eps"] == (0 if attack == "clean" else 8)
        assert set(arrays.files) >= {"label", "pred", "confidence", "entropy", "aleatoric", "epistemic"}


def test_bad_inputs_are_clear_errors_and_write_nothing(ready, tmp_path):
    params, ckpt = ready
    cpu = torch.device("cpu")
    with pytest.raises(ConfigError, match="eps"):
        evaluate.evaluate(params, ckpt, "demo_shapes", "pgd", -1, cpu, progress=False)
    with pytest.raises(ConfigError, match="attack"):
        evaluate.evaluate(params, ckpt, "demo_shapes", "fgsm", 1, cpu, progress=False)
    with pytest.raises(ConfigError, match="cifar11"):
        evaluate.evaluate(params, ckpt, "cifar11", "clean", 0, cpu, progress=False)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(ckpt.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="cut.pt"):
        evaluate.evaluate(params, cut, "demo_shapes", "clean", 0, cpu, progress=False)
    with pytest.raises(DataError, match="demo_pairs"):
        evaluate.evaluate(params, ckpt, "demo_pairs", "clean", 0, cpu, progress=False)  # never prepared
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.pt", "data", "m.pt"]


def _rewrite_demo(params, name, **changes):
    """Replace arrays of a prepared demo set and re-record its checksum: consistent files, wrong content."""
    from ucat.data.integrity import sha256

    d = Path(params["data"]["root"]) / name
    z = dict(np.load(d / "images.npz"))
    z.update(changes)
    with open(d / "images.npz", "wb") as fh:
        np.savez(fh, **z)
    manifest = json.loads((d / "MANIFEST.json").read_text())
    manifest["files"]["images.npz"] = sha256(d / "images.npz")
    (d / "MANIFEST.json").write_text(json.dumps(manifest))
    return z


def test_tampered_file_fails_its_checksum(ready):
    params, _ = ready
    root = params["data"]["root"]
    z = dict(np.load(f"{root}/demo_shapes/images.npz"))
    z["classnames"] = z["classnames"][:4]
    with open(f"{root}/demo_shapes/images.npz", "wb") as fh:
        np.savez(fh, **z)
    with pytest.raises(DataError, match="checksum"):
        data.open_eval("demo_shapes", params, 32)


def test_class_names_on_disk_must_match_the_registry(ready):
    """Through the public path: the set opens, evaluation refuses, nothing is written."""
    params, ckpt = ready
    registry = list(demo.DEMO_SETS["demo_shapes"].classnames)
    _rewrite_demo(params, "demo_shapes", classnames=np.array(registry[:4]))
    with pytest.raises(DataError, match=r"demo_shapes: class names on disk \(4\) differ from the registry's \(6\)"):
        data.open_eval("demo_shapes", params, 32)
    swapped = [registry[1], registry[0], *registry[2:]]   # same size, other order: labels would mean other classes
    _rewrite_demo(params, "demo_shapes", classnames=np.array(swapped))
    with pytest.raises(DataError, match="class names on disk"):
        evaluate.evaluate(params, ckpt, "demo_shapes", "clean", 0, torch.device("cpu"), progress=False)


def test_labels_must_index_the_class_names(ready):
    params, ckpt = ready
    labels = np.load(f"{params['data']['root']}/demo_shapes/images.npz")["labels"].copy()
    labels[-1] = 6   # six class names: 0..5
    _rewrite_demo(params, "demo_shapes", labels=labels)
    with pytest.raises(DataError, match="demo_shapes: label 6 out of range for 6 class names"):
        evaluate.evaluate(params, ckpt, "demo_shapes", "clean", 0, torch.device("cpu"), progress=False)
