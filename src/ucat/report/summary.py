"""The headline numbers: ``results/<setting>/report/<bb>/summary.json`` (all of them) and
``metrics/<setting>/summary.json``, what ``dvc metrics diff`` / ``dvc exp show`` compare.

Shape: ``{backbone: {method: {"<attack>_eps<ε>": {field: value}}}}``.  The DVC metric keeps only
:func:`dvc_headline`'s fields (accuracy, ECE, H, the multi-label cells, and the reference's paired
accuracy difference to each method under attack with its interval), so a diff fits a screen.  Each field comes from one *headline extractor* ``(name, function(res, method,
attack, eps) -> value or None)`` in :data:`HEADLINE`; adding a headline number (e.g. an
uncertainty stage's AURC) is one more entry there, nothing else.  Every configured key is
present (null where a cell is missing), so two runs of one configuration have the same keys.
Per data set numbers stay in the per-cell files under ``metrics/cells``.
"""

from __future__ import annotations

from typing import Callable

from .load import Results, cell_name

Extractor = Callable[[Results, str, str, int], "float | None"]
SKIP = object()   # an extractor's answer for a field that does not apply (left out, unlike None: missing)


def _r(v: float | None) -> float | None:
    return None if v is None else round(v, 4)


def _harmonic(res: Results, m: str, a: str, e: int) -> float | None:
    return None if a == "clean" else res.harmonic(m, a, e)


HEADLINE: list[tuple[str, Extractor]] = [
    ("acc", lambda res, m, a, e: res.mean(m, a, e)),            # mean top-1 accuracy over data sets, %
    ("ece", lambda res, m, a, e: res.mean(m, a, e, "ece")),     # mean ECE over data sets, %
    ("H", _harmonic),                                           # harmonic mean of clean and robust acc, %
]


ON_ATTACK_ONLY = {"H", "attack_auroc"}   # fields with no clean value


def build_summary(res: Results, headline: list[tuple[str, Extractor]] = HEADLINE) -> dict:
    """``{method: {condition: {field: value}}}`` for one backbone (fields that do not apply are left out)."""
    out = {}
    for m in res.setting.methods:
        out[m] = {}
        for a, e in res.setting.conditions():
            values = {name: fn(res, m, a, e) for name, fn in headline if not (name in ON_ATTACK_ONLY and a == "clean")}
            out[m][cell_name(a, e)] = {name: _r(v) for name, v in values.items() if v is not SKIP}
    return out


DVC_FIELDS = ("acc", "ece", "H")


def _in_dvc_headline(name: str, attacked: bool) -> bool:
    if name in DVC_FIELDS or name.endswith(("_map", "_f1_at_3")):     # multi-label sets: mAP, F1@3
        return True
    return attacked and "_minus_acc" in name                             # reference − method, accuracy, with lo/hi


def dvc_headline(summary: dict) -> dict:
    """The part of one backbone's summary that ``metrics/<setting>/summary.json`` carries."""
    return {m: {cond: {k: v for k, v in fields.items() if _in_dvc_headline(k, not cond.startswith("clean_"))}
                for cond, fields in conditions.items()}
            for m, conditions in summary.items()}
