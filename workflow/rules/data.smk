rule data:
    """Generate a demo data set, or download and verify a real one, into data.root/<name>."""
    output:
        directory(pattern(wf.DATA.persist[0])),
    input:
        CODE["data"],
    params:
        cmd=command(wf.DATA),
        values=lambda wc: param_values(wf.data_params(wc.dataset)),
    log:
        "logs/data/{dataset}.log",
    benchmark:
        "benchmarks/data/{dataset}.tsv"
    threads: wf.DATA.threads
    resources:
        params_file=PARAMS_FILE,  # not a param: the exact keys above are the rerun trigger
        mem_mb=4000,
        runtime=240,
    conda:
        "../envs/ucat.yaml"
    shell:
        "{params.cmd} --params {resources.params_file} > {log} 2>&1"
