"""The fine-tuning loader's throughput beside the step's (``ucat bench --loader``), CPU only."""

import copy

import pytest
import torch
import yaml

from ucat import cli, config, loader_bench
from ucat.data.transforms import transform_for
from ucat.errors import ConfigError


def test_synthetic_jpegs_go_through_the_fine_tuning_transform(params):
    ds = loader_bench.SyntheticJpegs(3, 64, transform_for("tinyimagenet", "official", 32))
    x, _ = ds[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and 0 <= float(x.min()) <= float(x.max()) <= 1
    assert len(set(ds.files)) == 3                      # distinct images: no decoder shortcut on repeats


def test_loader_rate_reports_the_cost_per_image_and_per_worker(params):
    p = copy.deepcopy(params)
    p["finetune"]["batch_size"] = 4
    r = loader_bench.loader_rate(p, 32, batches=2, workers=0)
    assert r["workers"] == 0 and r["batch"] == 4 and r["image_size"] == 32 and r["source_side"] == 64
    assert r["cpu_ms_per_image"] > 0
    assert r["per_worker_images_per_second"] == pytest.approx(1000 / r["cpu_ms_per_image"], rel=1e-2)
    with pytest.raises(ConfigError, match="workers >= 0"):
        loader_bench.loader_rate(p, 32, workers=-1)


def test_steps_beside_the_loader_say_whether_it_keeps_up():
    result = {"runs": [{"workload": "finetune", "method": "ucat", "compiled": True, "batch": 256, "images_per_s": 900.0},
                       {"workload": "pgd_eval", "compiled": False, "batch": 256, "images_per_s": 5.0}]}
    steps = loader_bench.step_rates(result)
    assert steps == {"finetune ucat compiled b256": 900.0}
    loader = {"images_per_second": 500.0, "workers": 2, "cpu_ms_per_image": 4.0, "per_worker_images_per_second": 250.0,
              "batch": 256, "image_size": 224, "source_side": 64, "preprocess": "official"}
    assert loader_bench.workers_to_feed(loader, 900.0) == 4          # 900 / 250 per worker, rounded up
    text = loader_bench.format_loader(loader, steps)
    assert "WAIT on the loader; 4 worker(s) needed" in text
    assert "keeps up" in loader_bench.format_loader(loader, {"slow step": 100.0})


def test_cli_rejects_negative_loader_workers_before_measuring(params, tmp_path, capsys):
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(config.file_form(params)))
    out = tmp_path / "bench.json"
    rc = cli.main(["bench", "--params", str(params_file), "--loader", "--loader-workers", "-1", "--out", str(out)])
    assert rc == 2 and "--loader-workers" in capsys.readouterr().err and not out.exists()
