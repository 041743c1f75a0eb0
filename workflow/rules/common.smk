# Shared by all rules: validated parameters, the job matrix and the CLI's parameter file.
import os
import re

import yaml

from ucat import config as ucat_config
from ucat import methods, paths
from ucat import workflow as wf

PARAMS = ucat_config.validate(config, source="config")
ROOT = PARAMS["data"]["root"].rstrip("/")
FINETUNE_SET = PARAMS["data"]["finetune"]
CELLS = paths.eval_cells(PARAMS)
BACKBONES = paths.backbones(PARAMS)

# The CLI reads one parameters file; give it exactly the configuration Snakemake resolved
# (params.yaml, any --configfile, any --config), rewritten only when it changes.
PARAMS_FILE = ".ucat/params.yaml"
_text = yaml.safe_dump(PARAMS, sort_keys=False)
if not os.path.exists(PARAMS_FILE) or open(PARAMS_FILE).read() != _text:
    os.makedirs(os.path.dirname(PARAMS_FILE), exist_ok=True)
    with open(PARAMS_FILE + ".tmp", "w") as fh:
        fh.write(_text)
    os.replace(PARAMS_FILE + ".tmp", PARAMS_FILE)


def param_values(keys):
    """The values of the parameter keys a job reads: a change reruns the job."""
    return ucat_config.select(PARAMS, keys)


def gpu_per_job():
    """1 on a CUDA machine (serialises GPU jobs via the default profile), 0 on CPU."""
    if PARAMS["run"]["device"] == "cpu":
        return 0
    import torch

    return 1 if torch.cuda.is_available() else 0


GPU = gpu_per_job()


wildcard_constraints:
    backbone="|".join(re.escape(b) for b in BACKBONES),
    method="|".join(methods.METHODS),
    dataset="[a-z0-9_]+",
    attack="clean|pgd|cw|autoattack",
    eps="[0-9]+",
