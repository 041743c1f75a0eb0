rule report:
    """The paper's tables and figures, reproduced beside published; metrics/summary.json, the headline."""
    input:
        wf.report_inputs(PARAMS),
        CODE["report"],
    output:
        summary=report(pattern(wf.REPORT.metrics[0]), caption="../report/summary.rst", category="Headline"),
        reports=report(
            directory(pattern(wf.REPORT.outs[0])),
            patterns=["{backbone}/tables/{table}.csv", "{backbone}/report.md"],
            caption="../report/report.rst",
            category="Report",
            subcategory="{backbone}",
        ),
        figures=report(
            directory(pattern(wf.REPORT.images[0])),
            patterns=["{backbone}/{name}.png"],
            caption="../report/report.rst",
            category="Figures",
            subcategory="{backbone}",
        ),
    params:
        cmd=command(wf.REPORT),
        values=param_values(wf.REPORT_PARAMS),
    log:
        f"logs/{SETTING}/report.log",
    benchmark:
        f"benchmarks/{SETTING}/report.tsv"
    threads: wf.REPORT.threads
    resources:
        params_file=PARAMS_FILE,  # not a param: the exact keys above are the rerun trigger
        mem_mb=4000,
        runtime=30,
    conda:
        "../envs/ucat.yaml"
    shell:
        "{params.cmd} --params {resources.params_file} > {log} 2>&1"
