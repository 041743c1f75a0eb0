# ucat: calibrated zero-shot adversarial robustness of CLIP (UCAT), as a Snakemake workflow.
#
#   snakemake --cores all                                   # the embedded offline demo
#   snakemake --cores all --configfile config/paper.yaml    # the paper (GPU + network)
#
# Stages: data -> backbone -> finetune (per method) -> evaluate (per method x data set: clean and
# every attack x eps in one job), calibrate (per method) -> report.  Commands, inputs, outputs, parameter keys and thread
# counts come from src/ucat/workflow.py, which also renders dvc.yaml: the two engines run
# the same stages.  `snakemake --report report.html` after a run: figures and tables, captioned.

import sys

from snakemake.utils import min_version, validate

from ucat import config as ucat_config
from ucat.errors import UcatError

min_version("9.0")


configfile: "params.yaml"


# The project's check first: a bad key or value is one line naming it (and where the values came
# from), as from the ucat command.
_sources = [*map(str, workflow.configfiles)] + (["--config"] if workflow.config_settings.config else [])
try:
    ucat_config.validate(config, source=" + ".join(_sources) or "config")
except UcatError as exc:
    sys.exit(f"error: {exc}")
validate(config, "workflow/schemas/config.schema.yaml")  # Snakemake's own check, the second line of defence


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/backbone.smk"
include: "workflow/rules/finetune.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/calibrate.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        pattern(paths.SUMMARY),
    default_target: True
