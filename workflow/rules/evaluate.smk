rule evaluate:
    """Clean and every attack x eps of one (method, data set): a metrics JSON + per-sample npz per cell."""
    input:
        inputs(wf.EVALUATE),
    output:
        # one file per cell of paths.conditions (clean first); the job writes each as soon as it is done
        json=[wf.fill(paths.EVAL_JSON, PARAMS, attack=a, eps=e) for a, e in paths.conditions(PARAMS)],
        npz=[wf.fill(paths.EVAL_NPZ, PARAMS, attack=a, eps=e) for a, e in paths.conditions(PARAMS)],
    params:
        cmd=command(wf.EVALUATE),
        values=param_values(wf.evaluate_job_params(PARAMS)),
    log:
        "logs/evaluate/{backbone}/{method}/{dataset}.log",
    benchmark:
        "benchmarks/evaluate/{backbone}/{method}/{dataset}.tsv"
    threads: wf.EVALUATE.threads
    resources:
        params_file=PARAMS_FILE,  # not a param: the exact keys above are the rerun trigger
        gpu=GPU,
        mem_mb=8000,
        runtime=1440,
    conda:
        "../envs/ucat.yaml"
    shell:
        "{params.cmd} --params {resources.params_file} --quiet > {log} 2>&1"
