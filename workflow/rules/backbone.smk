rule backbone:
    """Pretrain the tiny demo CLIP, or download the open_clip weights, to one local file."""
    input:
        inputs(wf.BACKBONE),
    output:
        wf.BACKBONE.outs[0],
    params:
        cmd=command(wf.BACKBONE),
        values=param_values(wf.BACKBONE_PARAMS),
    log:
        "logs/backbone/{backbone}.log",
    benchmark:
        "benchmarks/backbone/{backbone}.tsv"
    threads: wf.BACKBONE.threads
    resources:
        params_file=PARAMS_FILE,  # not a param: the exact keys above are the rerun trigger
        gpu=GPU,
        mem_mb=8000,
        runtime=60,
    conda:
        "../envs/ucat.yaml"
    shell:
        "{params.cmd} --params {resources.params_file} > {log} 2>&1"
