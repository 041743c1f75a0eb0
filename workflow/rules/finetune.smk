rule finetune:
    """Adversarial fine-tuning of the image tower with one method (clip: a copy of the backbone).

    The resume state and the curves live in the checkpoint folder, which is not an output:
    Snakemake deletes a failed job's outputs, never the state a rerun resumes from."""
    input:
        inputs(wf.FINETUNE),
        wf.selection_inputs(PARAMS),  # finetune.select: best_on_test selects on the test sets
    output:
        model=pattern(wf.FINETUNE.outs[0]),
        metrics=report(pattern(wf.FINETUNE.tracked[0]), caption="../report/train_metrics.rst", category="Fine-tuning"),
        plots=directory(pattern(wf.FINETUNE.plots[0])),
    params:
        cmd=command(wf.FINETUNE),
        values=lambda wc: param_values(wf.finetune_params(wc.method)),
    log:
        f"logs/{SETTING}/finetune/{{backbone}}/seed{{seed}}/{{method}}.log",
    benchmark:
        f"benchmarks/{SETTING}/finetune/{{backbone}}/seed{{seed}}/{{method}}.tsv"
    threads: wf.FINETUNE.threads
    priority: lambda wc: cost.finetune_priority(PARAMS, wc.backbone, wc.seed, wc.method)
    resources:
        params_file=PARAMS_FILE,  # not a param: the exact keys above are the rerun trigger
        gpu=GPU,
        mem_mb=16000,
        runtime=1440,
    conda:
        "../envs/ucat.yaml"
    shell:
        "{params.cmd} --params {resources.params_file} > {log} 2>&1"
