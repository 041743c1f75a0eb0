rule data:
    """Generate a demo data set, or download and verify a real one, into data.root/<name>."""
    output:
        directory(f"{ROOT}/{{dataset}}"),
    params:
        file=PARAMS_FILE,
        cmd=lambda wc: wf.data_cmd(wc.dataset),
        values=lambda wc: param_values(wf.data_params(wc.dataset) + ["data.root"]),
    log:
        "logs/data/{dataset}.log",
    benchmark:
        "benchmarks/data/{dataset}.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=240,
    conda:
        "../envs/ucat.yaml"
    shell:
        "{params.cmd} --params {params.file} --quiet > {log} 2>&1"
