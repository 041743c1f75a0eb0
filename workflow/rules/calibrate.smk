rule calibrate:
    """Temperature-scaling baseline: fit T for one model on held-out clean images of the fine-tuning set."""
    input:
        inputs(wf.CALIBRATE),
    output:
        pattern(wf.CALIBRATE.tracked[0]),
    params:
        cmd=command(wf.CALIBRATE),
        values=param_values(wf.CALIBRATE_PARAMS),
    log:
        f"logs/{SETTING}/calibrate/{{backbone}}/seed{{seed}}/{{method}}.log",
    benchmark:
        f"benchmarks/{SETTING}/calibrate/{{backbone}}/seed{{seed}}/{{method}}.tsv"
    threads: wf.CALIBRATE.threads
    resources:
        params_file=PARAMS_FILE,  # not a param: the exact keys above are the rerun trigger
        gpu=GPU,
        mem_mb=8000,
        runtime=60,
    conda:
        "../envs/ucat.yaml"
    shell:
        "{params.cmd} --params {resources.params_file} > {log} 2>&1"
