rule finetune:
    """Adversarial fine-tuning of the image tower with one method (resumes from its checkpoint)."""
    input:
        backbone=paths.BACKBONE,
        data=f"{ROOT}/{FINETUNE_SET}",
    output:
        model=paths.FINETUNED,
        metrics=f"{paths.TRAIN_LIVE}/metrics.json",
        plots=directory(f"{paths.TRAIN_LIVE}/plots"),
    params:
        file=PARAMS_FILE,
        cmd=lambda wc: wf.finetune_cmd(wc.backbone, wc.method),
        values=lambda wc: param_values(wf.finetune_params(wc.method)),
    log:
        "logs/finetune/{backbone}/{method}.log",
    benchmark:
        "benchmarks/finetune/{backbone}/{method}.tsv"
    threads: 2
    resources:
        gpu=GPU,
        mem_mb=16000,
        runtime=1440,
    conda:
        "../envs/ucat.yaml"
    shell:
        "{params.cmd} --params {params.file} --threads {threads} --quiet > {log} 2>&1"
