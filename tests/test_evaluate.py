import json

import numpy as np
import pytest
import torch

from ucat import data, evaluate
from ucat.errors import CheckpointError, ConfigError, DataError


@pytest.fixture()
def ready(tmp_params, tiny_checkpoint):
    data.prepare("demo_shapes", tmp_params)
    return tmp_params, tiny_checkpoint


def test_cell_writes_metrics_and_samples(ready, tmp_path):
    params, ckpt = ready
    for attack in ("clean", "pgd", "cw", "autoattack"):
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


def test_label_set_size_mismatch(ready):
    params, _ = ready
    root = params["data"]["root"]
    z = dict(np.load(f"{root}/demo_shapes/images.npz"))
    z["classnames"] = z["classnames"][:4]  # the files on disk disagree with the registry
    with open(f"{root}/demo_shapes/images.npz", "wb") as fh:
        np.savez(fh, **z)
    with pytest.raises(DataError, match="checksum"):
        data.open_eval("demo_shapes", params, 32)
    data.prepare("demo_shapes", params)
    ds, names = data.open_eval("demo_shapes", params, 32)
    with pytest.raises(DataError, match="class names"):
        data._check_labels("demo_shapes", ds, names[:4], names)

