rule backbone:
    """Pretrain the tiny demo CLIP, or download the open_clip weights, to one local file."""
    output:
        paths.BACKBONE,
    params:
        file=PARAMS_FILE,
        cmd=lambda wc: wf.backbone_cmd(wc.backbone),
        values=param_values(wf.BACKBONE_PARAMS),
    log:
        "logs/backbone/{backbone}.log",
    benchmark:
        "benchmarks/backbone/{backbone}.tsv"
    threads: 2
    resources:
        gpu=GPU,
        mem_mb=8000,
        runtime=60,
    conda:
        "../envs/ucat.yaml"
    shell:
        "{params.cmd} --params {params.file} --threads {threads} --quiet > {log} 2>&1"
