# One job per (backbone, seed, method, data set); a multi-label set has cells of its own (paths.conditions),
# so it has a rule of its own (a rule's outputs cannot depend on the wildcards).
SINGLE_LABEL = "|".join(re.escape(d) for d in data.dataset_names() if d not in paths.MULTILABEL_SETS)
MULTI_LABEL = "|".join(re.escape(d) for d in paths.MULTILABEL_SETS)


rule evaluate:
    """Clean and every attack x eps of one (method, data set): a metrics JSON + per-sample npz per cell."""
    wildcard_constraints:
        dataset=SINGLE_LABEL,
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
        f"logs/{SETTING}/evaluate/{{backbone}}/seed{{seed}}/{{method}}/{{dataset}}.log",
    benchmark:
        f"benchmarks/{SETTING}/evaluate/{{backbone}}/seed{{seed}}/{{method}}/{{dataset}}.tsv"
    threads: wf.EVALUATE.threads
    priority: lambda wc: cost.evaluate_priority(PARAMS, wc.backbone, wc.seed, wc.method, wc.dataset)
    resources:
        params_file=PARAMS_FILE,  # not a param: the exact keys above are the rerun trigger
        gpu=GPU,
        mem_mb=8000,
        runtime=1440,
    conda:
        "../envs/ucat.yaml"
    shell:
        "{params.cmd} --params {resources.params_file} > {log} 2>&1"


rule evaluate_multilabel:
    """The same for a multi-label set (MS-COCO): clean and PGD/CW at every eps (paths.MULTILABEL_ATTACKS)."""
    wildcard_constraints:
        dataset=MULTI_LABEL,
    input:
        inputs(wf.EVALUATE),
    output:
        # one file per cell of paths.conditions (clean first); the job writes each as soon as it is done
        json=[wf.fill(paths.EVAL_JSON, PARAMS, attack=a, eps=e) for a, e in paths.conditions(PARAMS, paths.MULTILABEL_SETS[0])],
        npz=[wf.fill(paths.EVAL_NPZ, PARAMS, attack=a, eps=e) for a, e in paths.conditions(PARAMS, paths.MULTILABEL_SETS[0])],
    params:
        cmd=command(wf.EVALUATE),
        values=param_values(wf.evaluate_job_params(PARAMS)),
    log:
        f"logs/{SETTING}/evaluate/{{backbone}}/seed{{seed}}/{{method}}/{{dataset}}.log",
    benchmark:
        f"benchmarks/{SETTING}/evaluate/{{backbone}}/seed{{seed}}/{{method}}/{{dataset}}.tsv"
    threads: wf.EVALUATE.threads
    priority: lambda wc: cost.evaluate_priority(PARAMS, wc.backbone, wc.seed, wc.method, wc.dataset)
    resources:
        params_file=PARAMS_FILE,  # not a param: the exact keys above are the rerun trigger
        gpu=GPU,
        mem_mb=8000,
        runtime=1440,
    conda:
        "../envs/ucat.yaml"
    shell:
        "{params.cmd} --params {resources.params_file} > {log} 2>&1"
