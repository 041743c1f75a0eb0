rule evaluate:
    """One robustness/calibration cell: (method, data set, attack, eps) -> metrics JSON + per-sample npz."""
    input:
        model=lambda wc: paths.model_for(wc.backbone, wc.method),
        data=f"{ROOT}/{{dataset}}",
    output:
        json=paths.EVAL_JSON,
        npz=paths.EVAL_NPZ,
    params:
        file=PARAMS_FILE,
        cmd=lambda wc: wf.evaluate_cmd(wc.backbone, wc.method, wc.dataset, wc.attack, int(wc.eps)),
        values=lambda wc: param_values(wf.evaluate_params(wc.attack)),
    log:
        "logs/evaluate/{backbone}/{method}/{dataset}/{attack}_eps{eps}.log",
    benchmark:
        "benchmarks/evaluate/{backbone}/{method}/{dataset}/{attack}_eps{eps}.tsv"
    threads: 1
    resources:
        gpu=GPU,
        mem_mb=8000,
        runtime=720,
    conda:
        "../envs/ucat.yaml"
    shell:
        "{params.cmd} --params {params.file} --threads {threads} --quiet > {log} 2>&1"
