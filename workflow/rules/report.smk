rule report:
    """The paper's tables and figures, reproduced beside published; metrics/summary.json for DVC."""
    input:
        wf.report_inputs(PARAMS),
    output:
        summary=paths.SUMMARY,
        summaries=[paths.BACKBONE_SUMMARY.format(backbone=b) for b in BACKBONES],
        tables=[directory(paths.TABLES.format(backbone=b)) for b in BACKBONES],
        figures=[directory(paths.FIGURES.format(backbone=b)) for b in BACKBONES],
        reports=[paths.REPORT.format(backbone=b) for b in BACKBONES],
    params:
        file=PARAMS_FILE,
        cmd=wf.report_cmd(),
        values=param_values(wf.REPORT_PARAMS),
    log:
        "logs/report.log",
    benchmark:
        "benchmarks/report.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../envs/ucat.yaml"
    shell:
        "{params.cmd} --params {params.file} > {log} 2>&1"
