# Shared by all rules: validated parameters, the stage definitions and the CLI's parameter file.
import hashlib
import os
import re
import sys

import yaml

from ucat import config as ucat_config
from ucat import cost, data, gpus, methods, paths
from ucat import workflow as wf
from ucat.errors import UcatError

PARAMS = ucat_config.validate(config, source="config")
ROOT = PARAMS["data"]["root"].rstrip("/")
BACKBONES = paths.backbones(PARAMS)

# The CLI reads one parameters file.  Every invocation (dry runs included) parses this file,
# so the file a job reads is named by the hash of its content and written once, never
# rewritten: a second `snakemake --configfile other.yaml` writes another file and cannot
# change what a running job reads.  The name reaches the shell command as a (string) resource,
# not a rule param, so Snakemake's params trigger stays the exact keys each job reads.
_text = yaml.safe_dump(ucat_config.file_form(PARAMS), sort_keys=True)
PARAMS_FILE = f".ucat/params-{hashlib.sha256(_text.encode()).hexdigest()[:16]}.yaml"
if not os.path.exists(PARAMS_FILE):
    os.makedirs(os.path.dirname(PARAMS_FILE), exist_ok=True)
    _tmp = f"{PARAMS_FILE}.{os.getpid()}.tmp"
    with open(_tmp, "w") as fh:
        fh.write(_text)
    os.replace(_tmp, PARAMS_FILE)


def param_values(keys):
    """The values of the parameter keys a job reads: a change reruns the job (its seed is a wildcard)."""
    return ucat_config.select(PARAMS, wf.for_engines(keys))


def pattern(p):
    """A workflow.py path pattern with the scalars (data root, fine-tuning set, setting) filled in."""
    return wf.fill(p, PARAMS)


SETTING = PARAMS["run"]["setting"]


# code is a dependency: one stamp per stage stands for the package files it runs (workflow.write_code_stamp)
CODE = {s.name: wf.write_code_stamp(s) for s in wf.stages()}


def inputs(stage):
    """Inputs of a stage's job: its declared deps and the stamp of the package files it runs."""
    return lambda wc: [wf.fill(d, PARAMS, **wc) for d in stage.deps] + [CODE[stage.name]]


def command(stage):
    return lambda wc: wf.fill(stage.command(), PARAMS, **wc)


# GPU jobs ask for gpu=1 on a CUDA machine (0 on CPU), and a local run allows as many at once as there
# are visible devices (ucat.gpus: each job then locks its own); --resources gpu=N (or a profile's) wins.
# A cluster executor (--jobs sets nodes) gets no limit here: each job has its own allocation.
try:
    GPUS = gpus.visible_count(PARAMS["run"]["device"])
except UcatError as exc:  # a bad UCAT_GPUS: one line, as for a bad parameter
    sys.exit(f"error: {exc}")
GPU = 1 if GPUS else 0
if "gpu" not in workflow.global_resources and workflow.nodes is None:
    workflow.global_resources["gpu"] = GPUS


wildcard_constraints:
    backbone="|".join(re.escape(b) for b in BACKBONES),
    seed="|".join(str(s) for s in paths.seeds(PARAMS)),
    method="|".join(methods.METHODS),
    dataset="|".join(data.dataset_names()),
