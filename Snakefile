# ucat: calibrated zero-shot adversarial robustness of CLIP (UCAT), as a Snakemake workflow.
#
#   snakemake --cores all                                   # the embedded offline demo
#   snakemake --cores all --configfile config/paper.yaml    # the paper (GPU + network)
#
# Stages: data -> backbone -> finetune (per method) -> evaluate (per method x data set x
# attack x eps) -> report.  Commands, inputs and parameter keys come from
# src/ucat/workflow.py, which also renders dvc.yaml: the two engines run the same stages.

from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "params.yaml"


validate(config, "workflow/schemas/config.schema.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/backbone.smk"
include: "workflow/rules/finetune.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        paths.SUMMARY,
        [paths.BACKBONE_SUMMARY.format(backbone=b) for b in BACKBONES],
    default_target: True
