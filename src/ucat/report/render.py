"""Plain table text: Markdown, LaTeX (booktabs) and the long CSV, from one in-memory table.

Tables are computed once (``tables.py``) and only formatted here, so the three formats
cannot disagree.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field

NA = "n/a"      # a cell the configuration asked for whose metrics are missing
NONE = "—"      # no published counterpart
LONG_COLUMNS = ("table", "method", "dataset", "attack", "eps", "metric", "reproduced", "paper", "diff",
                "lo", "hi", "paper_inside")   # lo/hi: the reproduced value's interval (ucat.report.intervals)


@dataclass
class Table:
    """A titled grid of strings; ``breaks`` are row indices before which a rule is drawn."""
    title: str
    header: list[str]
    rows: list[list[str]] = field(default_factory=list)
    breaks: set[int] = field(default_factory=set)
    note: str = ""
    label_cols: int = 1   # leading text columns (left-aligned); the rest are numbers

    def add_group(self, rows: list[list[str]]) -> None:
        if self.rows:
            self.breaks.add(len(self.rows))
        self.rows.extend(rows)


def fmt(value: float | None, digits: int | None = 2) -> str:
    """Fixed decimals; ``digits=None`` gives 3 significant digits (EU can be ~1e-9)."""
    if value is None:
        return NA
    return f"{value:.3g}" if digits is None else f"{value:.{digits}f}"


def bracket(interval) -> str:
    """" [lo, hi]" of a ``stats.Interval`` (one decimal), "" when there is none."""
    if interval is None or interval.lo is None:
        return ""
    return f" [{interval.lo:.1f}, {interval.hi:.1f}]"


def with_interval(value: float | None, interval=None, digits: int | None = 2) -> str:
    """"value [lo, hi]", or the value alone where no interval was computed."""
    return fmt(value, digits) + (bracket(interval) if value is not None else "")


def difference(interval) -> str:
    """A paired difference "Δ [lo, hi]", starred when the interval excludes 0; n/a if undefined."""
    if interval is None or interval.value is None:
        return NA
    return f"{interval.value:+.2f}{bracket(interval)}{'*' if interval.excludes_zero else ''}"


def spread(summary) -> str:
    """Over seeds: "mean ± std [t-interval]", starred when it excludes 0 (for differences)."""
    if summary is None or summary.mean is None or summary.std is None:
        return NA
    star = "*" if summary.excludes_zero else ""
    return f"{summary.mean:+.2f} ± {summary.std:.2f} [{summary.lo:.1f}, {summary.hi:.1f}]{star}"


def paired(repro: float | None, paper: float | None, interval=None) -> str:
    """"reproduced [lo, hi] (paper)"; "—" where the paper has no counterpart."""
    return f"{with_interval(repro, interval)} ({NONE if paper is None else f'{paper:.2f}'})"


def _md_row(cells) -> str:
    """One Markdown table row; a literal ``|`` inside a cell (e.g. "Conf | wrong") is escaped."""
    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"


def to_markdown(t: Table, level: int = 3) -> str:
    align = ["---"] * t.label_cols + ["--:"] * (len(t.header) - t.label_cols)
    lines = [f"{'#' * level} {t.title}", ""]
    if t.note:
        lines += [t.note, ""]
    lines += [_md_row(t.header), "|" + "|".join(align) + "|"]
    lines += [_md_row(r) for r in t.rows]
    return "\n".join(lines) + "\n"


_LATEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                  "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\^{}",
                  "—": "---", "ε": r"$\epsilon$", "‖": r"$\|$", "·": r"$\cdot$", "±": r"$\pm$"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in text)


def to_latex(t: Table) -> str:
    spec = "l" * t.label_cols + "r" * (len(t.header) - t.label_cols)
    out = [f"% {latex_escape(t.title)}", r"\begin{table}[t]", r"\centering", r"\scriptsize",
           f"\\caption{{{latex_escape(t.title)}}}", f"\\begin{{tabular}}{{{spec}}}", r"\toprule",
           " & ".join(latex_escape(h) for h in t.header) + r" \\", r"\midrule"]
    for i, r in enumerate(t.rows):
        if i in t.breaks:
            out.append(r"\midrule")
        out.append(" & ".join(latex_escape(c) for c in r) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(out) + "\n"


def long_row(table: str, method: str, dataset: str, attack: str, eps: int, metric: str,
             reproduced: float | None, paper: float | None = None, interval=None) -> dict:
    """One CSV row; values rounded to 4 decimals, diff = reproduced − paper, blanks where unknown;
    ``interval`` (a ``stats.Interval`` of the reproduced value) fills lo/hi and, with a paper
    value, whether the paper's number lies inside."""
    r = None if reproduced is None else round(reproduced, 4)
    p = None if paper is None else round(paper, 4)
    diff = None if r is None or p is None else round(r - p, 4)
    has = interval is not None and interval.lo is not None and r is not None
    inside = interval.contains(paper) if has and p is not None else None
    return {"table": table, "method": method, "dataset": dataset, "attack": attack, "eps": eps,
            "metric": metric, "reproduced": NA if r is None else r,
            "paper": "" if p is None else p, "diff": "" if diff is None else diff,
            "lo": round(interval.lo, 4) if has else "", "hi": round(interval.hi, 4) if has else "",
            "paper_inside": "" if inside is None else ("yes" if inside else "no")}


def to_csv(rows: list[dict], columns=LONG_COLUMNS) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()
