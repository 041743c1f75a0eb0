"""``metrics/summary.json``: the compact, stable numbers ``dvc metrics diff`` compares.

Shape: ``{method: {dataset: {"<attack>_eps<ε>": {"acc": %, "ece": %}}, "average": {...},
"H": {"<attack>_eps<ε>": %}}}``.  Every configured key is present (null where the cell is
missing) so that two runs of the same configuration always have the same keys.
"""

from __future__ import annotations

from .load import Results, cell_name


def _r(v: float | None) -> float | None:
    return None if v is None else round(v, 4)


def build_summary(res: Results) -> dict:
    s = res.setting
    out = {}
    for m in s.methods:
        entry = {d: {cell_name(a, e): {"acc": _r(res.pct(m, d, a, e)), "ece": _r(res.pct(m, d, a, e, "ece"))}
                     for a, e in s.conditions()} for d in s.datasets}
        entry["average"] = {cell_name(a, e): {"acc": _r(res.mean(m, a, e)), "ece": _r(res.mean(m, a, e, "ece"))}
                            for a, e in s.conditions()}
        if s.has_clean:
            entry["H"] = {cell_name(a, e): _r(res.harmonic(m, a, e)) for a, e in s.conditions() if a != "clean"}
        out[m] = entry
    return out
