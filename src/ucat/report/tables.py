"""The report's tables, computed from the loaded cells with the published numbers beside them.

Each builder returns ``(tables, long_rows)``: formatted grids for Markdown/LaTeX and the
long-format rows for the CSV.  Averages are over the configured data sets and are "n/a"
if any of them is missing; a paper value appears only where ``reference.Pairing`` finds
one, so nothing is written for a published cell that does not exist.
"""

from __future__ import annotations

from ..methods import METHODS
from .intervals import LABELS, LOWER_IS_BETTER
from .load import Results
from .reference import ABLATIONS, AVERAGE, HARMONIC, Pairing, paper_dataset, paper_method, table_methods
from .render import NA, NONE, Table, difference, fmt, long_row, paired, spread, with_interval

METHOD_NAMES = {key: m.label for key, m in METHODS.items()}   # display names, from the method registry
ABLATION_ORDER = ("clip", "tecoa", *ABLATIONS, "ucat")   # the paper's ablation row order
CONVENTIONS = {"paper": "paper convention, entropy and AU in nats, EU = C/(α₀ + C) in (0, 1]",
               "code": "official-code convention, each divided by log C",
               None: "convention not recorded or mixed"}
UNCERTAINTY = (("confidence", "Conf (%)", 100.0), ("confidence_wrong", "Conf | wrong (%)", 100.0),
               ("entropy", "Entropy", 1.0), ("entropy_wrong", "Entropy | wrong", 1.0),
               ("aleatoric", "AU", 1.0), ("epistemic", "EU", 1.0))


def method_name(key: str) -> str:
    return METHOD_NAMES.get(key, key)


def dataset_name(key: str) -> str:
    return paper_dataset(key) or key


def main_source(method: str) -> str:
    """The published table that holds a method's per-dataset accuracies."""
    return "table13_ablation" if method in ABLATIONS else "table16_main"


def interval(iv, metric: str, method: str, dataset: str, attack: str, eps: int):
    """The interval of a reproduced value (``intervals.Intervals``), None without intervals."""
    return None if iv is None else iv.value(metric, method, dataset, attack, eps)


def accuracy_grid(res: Results, pairing: Pairing, eps: int, methods, source=main_source,
                  title: str = "", iv=None) -> Table:
    """Paper Table 16 shape at one ε: a block per attack, rows = methods,
    columns = data sets, average and H(clean avg, robust avg); cells "reproduced [interval] (paper)"."""
    s = res.setting
    t = Table(title, ["Attack", "Method", *map(dataset_name, s.datasets), "Avg", "H"], label_cols=2)
    for attack, e in s.conditions(eps):
        block = []
        for m in methods:
            src = source(m)
            row = [s.label(attack), method_name(m)]
            row += [paired(res.pct(m, d, attack, e), pairing.value(src, m, d, attack, e),
                           interval(iv, "accuracy", m, d, attack, e)) for d in s.datasets]
            row.append(paired(res.mean(m, attack, e), pairing.value(src, m, AVERAGE, attack, e),
                              interval(iv, "accuracy", m, AVERAGE, attack, e)))
            row.append(NONE if attack == "clean" else
                       paired(res.harmonic(m, attack, e), pairing.value(src, m, HARMONIC, attack, e, "H"),
                              interval(iv, "H", m, AVERAGE, attack, e)))
            block.append(row)
        t.add_group(block)
    return t


def accuracy_long(res: Results, pairing: Pairing, name: str, methods, source=main_source, iv=None) -> list[dict]:
    """Long rows of an accuracy grid over every configured condition (clean once)."""
    s, rows = res.setting, []
    for m in methods:
        src = source(m)
        for attack, e in s.conditions():
            for d in s.datasets:
                rows.append(long_row(name, m, d, attack, e, "top1_acc", res.pct(m, d, attack, e),
                                     pairing.value(src, m, d, attack, e), interval(iv, "accuracy", m, d, attack, e)))
            rows.append(long_row(name, m, AVERAGE, attack, e, "top1_acc", res.mean(m, attack, e),
                                 pairing.value(src, m, AVERAGE, attack, e),
                                 interval(iv, "accuracy", m, AVERAGE, attack, e)))
            if attack != "clean" and s.has_clean:
                rows.append(long_row(name, m, HARMONIC, attack, e, "H", res.harmonic(m, attack, e),
                                     pairing.value(src, m, HARMONIC, attack, e, "H"),
                                     interval(iv, "H", m, AVERAGE, attack, e)))
    return rows


ATTACK_ONLY = {"atk_auroc", "H"}          # metrics with no clean value


def difference_tables(iv, metrics, methods) -> list[Table]:
    """Per metric, reference − method averaged over the data sets, one column per condition, with
    its paired interval (starred when it excludes 0); with several seeds also the spread over seeds."""
    if iv is None or iv.boot is None:
        return []
    s, ref = iv.setting, iv.reference
    others = [m for m in methods if m != ref]
    if not others or ref not in s.methods:
        return []
    level = f"{100 * iv.settings.confidence:g} %"
    tables = []
    for metric in metrics:
        conds = [(a, e) for a, e in s.conditions() if not (a == "clean" and metric in ATTACK_ONLY)]
        better = "lower" if metric in LOWER_IS_BETTER else "higher"
        note = (f"Δ = {method_name(ref)} − method in points (%), mean over the data sets; {better} is better, so a "
                f"{'negative' if better == 'lower' else 'positive'} Δ favours {method_name(ref)}. Paired {level} "
                f"bootstrap interval; * = the interval excludes 0.")
        t = Table(f"{LABELS[metric]}: {method_name(ref)} − method, paired {level} interval",
                  ["Method", *(s.label(a, e) for a, e in conds)], note=note)
        t.rows = [[method_name(m), *(difference(iv.diff(metric, m, AVERAGE, a, e)) for a, e in conds)]
                  for m in others]
        tables.append(t)
        if iv.seeds > 1:
            t = Table(f"{LABELS[metric]}: {method_name(ref)} − method over {iv.seeds} seeds (mean ± std, "
                      f"Student-t {level} interval)", ["Method", *(s.label(a, e) for a, e in conds)],
                      note="Each seed's own Δ (mean over the data sets, no resampling); * = the t-interval excludes 0.")
            t.rows = [[method_name(m), *(spread(iv.across_seeds(metric, m, AVERAGE, a, e, diff=True))
                                         for a, e in conds)] for m in others]
            tables.append(t)
    return tables


def main_tables(res: Results, pairing: Pairing, iv=None) -> tuple[list[Table], list[dict]]:
    s = res.setting
    what = "reproduced [interval] (paper)" if iv is not None else "reproduced (paper)"
    tables = [accuracy_grid(res, pairing, e, s.methods, title=f"Top-1 accuracy (%), ε = {e}/255: {what}", iv=iv)
              for e in s.eps]
    tables += difference_tables(iv, ("accuracy", "H"), s.methods)
    return tables, accuracy_long(res, pairing, "main", s.methods, iv=iv)


def calibration_tables(res: Results, iv=None) -> tuple[list[Table], list[dict]]:
    """ECE (%) per method and data set, clean and under each attack.  No published values exist."""
    s = res.setting
    conds = s.conditions()
    t = Table("Expected calibration error (%, 15 equal-width bins, lower is better)"
              + (": value [interval]" if iv is not None else ""),
              ["Method", "Dataset", *(s.label(a, e) for a, e in conds)], label_cols=2,
              note="The paper publishes no ECE numbers, so there is no paper column.")
    rows = []
    for m in s.methods:
        block = [[method_name(m), dataset_name(d), *(with_interval(res.pct(m, d, a, e, "ece"),
                                                                   interval(iv, "ece", m, d, a, e))
                                                     for a, e in conds)]
                 for d in s.datasets]
        block.append([method_name(m), "Average", *(with_interval(res.mean(m, a, e, "ece"),
                                                                 interval(iv, "ece", m, AVERAGE, a, e))
                                                   for a, e in conds)])
        t.add_group(block)
        for a, e in conds:
            rows += [long_row("calibration", m, d, a, e, "ece", res.pct(m, d, a, e, "ece"),
                              interval=interval(iv, "ece", m, d, a, e)) for d in s.datasets]
            rows.append(long_row("calibration", m, AVERAGE, a, e, "ece", res.mean(m, a, e, "ece"),
                                 interval=interval(iv, "ece", m, AVERAGE, a, e)))
    return [t, *difference_tables(iv, ("ece",), s.methods)], rows


def uncertainty_tables(res: Results) -> tuple[list[Table], list[dict]]:
    """Mean confidence, entropy, AU and EU per method, clean vs attacked (averaged over data sets)."""
    s = res.setting
    t = Table("Mean accuracy, confidence and uncertainty, averaged over data sets",
              ["Method", "Condition", "Acc (%)", *(label for _, label, _ in UNCERTAINTY)], label_cols=2,
              note=f"Entropy, AU and EU as logged by the evaluation stage: {CONVENTIONS.get(res.convention(), CONVENTIONS[None])}. "
                   "Per-dataset values are in uncertainty.csv.")
    rows = []
    for m in s.methods:
        block = []
        for a, e in s.conditions():
            block.append([method_name(m), s.label(a, e), fmt(res.mean(m, a, e)),
                          *(fmt(res.mean(m, a, e, key, scale), 2 if scale == 100 else None if key == "epistemic" else 3)
                            for key, _, scale in UNCERTAINTY)])
            for key, _, scale in UNCERTAINTY:
                rows += [long_row("uncertainty", m, d, a, e, key,
                                  None if (v := res.get(m, d, a, e, key)) is None else scale * v)
                         for d in s.datasets]
                rows.append(long_row("uncertainty", m, AVERAGE, a, e, key, res.mean(m, a, e, key, scale)))
        t.add_group(block)
    return [t], rows


def comparison_long(res: Results, pairing: Pairing, iv=None) -> list[dict]:
    """Every published cell that has a counterpart among the configured cells, per source table."""
    s, rows = res.setting, []
    for table in ("table16_main", "table13_ablation", "table12_ablation_avg", "backbones_avg"):
        known = set(table_methods(table))
        methods = [m for m in s.methods if paper_method(m) in known]
        cand = accuracy_long(res, pairing, table, methods, source=lambda m, t=table: t, iv=iv)
        rows += [r for r in cand if r["paper"] != ""]
    return rows


def comparison_tables(res: Results, pairing: Pairing, iv=None) -> tuple[list[Table], list[dict]]:
    """The long list of paired cells, the ablation tables (13 and 12 shape) and the backbone table."""
    s = res.setting
    long = comparison_long(res, pairing, iv)
    head = ["Table", "Method", "Dataset", "Attack", "ε", "Metric", "Reproduced", "Paper", "Diff"]
    note = "" if long else "No reproduced cell was run in a setting the paper reports."
    if iv is not None and long:
        head += ["Interval", "Paper inside"]
        note = (f"Interval: the reproduced value's {100 * iv.settings.confidence:g} % interval; \"Paper inside\": "
                "whether the published number lies in it. " + ("With one seed it covers the test-image sampling only: "
                "a published value outside it may still be within the seed-to-seed spread." if iv.seeds == 1 else ""))
    cells = Table("Published cells with a reproduced counterpart", head,
                  [[r["table"], method_name(r["method"]), dataset_name(r["dataset"]), s.label(r["attack"]), str(r["eps"]),
                    r["metric"], _num(r["reproduced"]), _num(r["paper"]), _num(r["diff"], signed=True)]
                   + ([_span(r), r["paper_inside"] or NA] if iv is not None else [])
                   for r in long], label_cols=6, note=note)
    tables = [cells]
    ablation = [m for m in ABLATION_ORDER if m in s.methods]
    if any(m in ABLATIONS for m in ablation):
        src = lambda m: "table13_ablation"  # noqa: E731
        tables += [accuracy_grid(res, pairing, e, ablation, source=src, iv=iv,
                                 title=f"Ablation of the alignment term (paper Table 13 shape), ε = {e}/255")
                   for e in s.eps]
        tables += [ablation_avg_table(res, pairing, e, ablation, iv) for e in s.eps]
        tables += difference_tables(iv, ("accuracy",), [m for m in ablation if m in ABLATIONS or m == "ucat"])
    if (bt := backbone_table(res, pairing, iv)) is not None:
        tables.append(bt)
    return tables, long


def ablation_avg_table(res: Results, pairing: Pairing, eps: int, methods, iv=None) -> Table:
    """Paper Table 12 shape: averages only, one column per condition."""
    s = res.setting
    conds = s.conditions(eps)
    t = Table(f"Ablation averages (paper Table 12 shape), ε = {eps}/255: reproduced (paper)",
              ["Method", *(s.label(a) for a, _ in conds)])
    t.rows = [[method_name(m), *(paired(res.mean(m, a, e), pairing.value("table12_ablation_avg", m, AVERAGE, a, e),
                                        interval(iv, "accuracy", m, AVERAGE, a, e))
                                 for a, e in conds)] for m in methods]
    return t


def backbone_table(res: Results, pairing: Pairing, iv=None) -> Table | None:
    """Backbone study row (clean avg / AA avg / H) for the backbone and methods that were run."""
    s = res.setting
    methods = [m for m in ("clip", "ucat") if m in s.methods]
    if pairing.backbone is None or not methods or "autoattack" not in s.attacks or not s.has_clean:
        return None
    e = 1 if 1 in s.eps else s.eps[0]
    t = Table(f"Backbone study (paper backbones table), averages over the configured data sets, AA ε = {e}/255",
              ["Backbone", "Method", "Clean", "AA", "H"], label_cols=2,
              note="Paper values appear only when the configured data sets are the paper's 16.")
    val = lambda m, d, a, ee, metric="top1_acc": pairing.value("backbones_avg", m, d, a, ee, metric)  # noqa: E731
    t.rows = [[pairing.backbone, method_name(m),
               paired(res.mean(m, "clean", 0), val(m, AVERAGE, "clean", 0), interval(iv, "accuracy", m, AVERAGE, "clean", 0)),
               paired(res.mean(m, "autoattack", e), val(m, AVERAGE, "autoattack", e),
                      interval(iv, "accuracy", m, AVERAGE, "autoattack", e)),
               paired(res.harmonic(m, "autoattack", e), val(m, HARMONIC, "autoattack", e, "H"),
                      interval(iv, "H", m, AVERAGE, "autoattack", e))] for m in methods]
    return t


def missing_table(res: Results) -> Table:
    t = Table("Missing cells (shown as n/a; nothing was filled in)", ["Method", "Dataset", "Attack", "ε", "Reason"],
              label_cols=5)
    t.rows = [[m, d, a, str(e), reason] for m, d, a, e, reason in res.missing]
    return t


def _span(row: dict) -> str:
    return NA if row["lo"] == "" else f"[{float(row['lo']):.2f}, {float(row['hi']):.2f}]"


def _num(v, signed: bool = False) -> str:
    if v in ("", None):
        return NONE
    if v == NA:
        return NA
    return f"{float(v):+.2f}" if signed else f"{float(v):.2f}"

