rule evaluate_clean:
    """Clean accuracy and calibration of one (method, data set): the reference of every attack."""
    input:
        inputs(wf.EVALUATE_CLEAN),
    output:
        json=wf.EVALUATE_CLEAN.metrics[0],
        npz=wf.EVALUATE_CLEAN.outs[0],
    params:
        cmd=command(wf.EVALUATE_CLEAN),
        values=param_values(wf.evaluate_params("clean")),
    log:
        "logs/evaluate/{backbone}/{method}/{dataset}/clean_eps0.log",
    benchmark:
        "benchmarks/evaluate/{backbone}/{method}/{dataset}/clean_eps0.tsv"
    threads: wf.EVALUATE_CLEAN.threads
    resources:
        params_file=PARAMS_FILE,  # not a param: the exact keys above are the rerun trigger
        gpu=GPU,
        mem_mb=8000,
        runtime=720,
    conda:
        "../envs/ucat.yaml"
    shell:
        "{params.cmd} --params {resources.params_file} --quiet > {log} 2>&1"


rule evaluate:
    """One robustness/calibration cell: (method, data set, attack, eps) -> metrics JSON + per-sample npz."""
    input:
        inputs(wf.EVALUATE),
    output:
        json=wf.EVALUATE.metrics[0],
        npz=wf.EVALUATE.outs[0],
    params:
        cmd=command(wf.EVALUATE),
        values=lambda wc: param_values(wf.evaluate_params(wc.attack)),
    log:
        "logs/evaluate/{backbone}/{method}/{dataset}/{attack}_eps{eps}.log",
    benchmark:
        "benchmarks/evaluate/{backbone}/{method}/{dataset}/{attack}_eps{eps}.tsv"
    threads: wf.EVALUATE.threads
    resources:
        params_file=PARAMS_FILE,  # not a param: the exact keys above are the rerun trigger
        gpu=GPU,
        mem_mb=8000,
        runtime=720,
    conda:
        "../envs/ucat.yaml"
    shell:
        "{params.cmd} --params {resources.params_file} --quiet > {log} 2>&1"
