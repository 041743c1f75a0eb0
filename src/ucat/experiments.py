"""DVC experiments on one screen (``ucat experiments``).

``dvc exp show`` prints every parameter and every headline number, well over a hundred columns
for the demo, which a terminal folds into ``…``.  This reads ``dvc exp show --json`` and prints, per
experiment and backbone, only what a comparison needs: the parameters that differ from the
baseline, the reference method's accuracy per condition, and its paired difference to one other
method under each attack with the interval (``metrics/<setting>/summary.json``'s
``<reference>_minus_acc``, ``_lo``, ``_hi``; docs/statistics.md).  Torch-free: it answers at once.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass

from .errors import UcatError


@dataclass
class Experiment:
    name: str
    params: dict    # dotted key -> value, every parameters file merged
    metrics: dict   # metrics file -> its parsed JSON


def flatten(tree, prefix: str = "") -> dict:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists stay values."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    out = {}
    for key, value in tree.items():
        out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def _experiment(entry: dict, name: str) -> Experiment:
    data = entry.get("data") or {}
    params = {}
    for f in (data.get("params") or {}).values():
        params.update(flatten((f or {}).get("data") or {}))
    metrics = {path: (f or {}).get("data") or {} for path, f in (data.get("metrics") or {}).items()}
    return Experiment(name, params, metrics)


def experiments(show: list) -> list[Experiment]:
    """The entries of ``dvc exp show --json`` in its order: workspace, each baseline, its experiments."""
    out = []
    for entry in show:
        rev = entry.get("rev", "")
        base = entry.get("name") or (rev if rev == "workspace" else rev[:7])
        out.append(_experiment(entry, base))
        for exp in entry.get("experiments") or []:
            for rev in exp.get("revs") or []:
                out.append(_experiment(rev, rev.get("name") or exp.get("name") or rev.get("rev", "")[:7]))
    return out


def _fmt(value, signed: bool = False) -> str:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return "n/a"
    return f"{value:+.1f}" if signed else f"{value:.1f}"


def _short(value) -> str:
    text = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def table(exps: list[Experiment], reference: str = "ucat", versus: str = "tecoa") -> list[list[str]]:
    """Rows (header first): experiment, backbone, changed parameters, the reference's accuracy per condition,
    and ``reference - versus`` in accuracy points with its interval under each attack."""
    if not exps:
        raise UcatError("dvc exp show returned nothing: run `dvc repro` (or `dvc exp run`) first")
    baseline = exps[1] if len(exps) > 1 else exps[0]     # the first commit row after the workspace
    summaries = [(e, path, data) for e in exps for path, data in e.metrics.items() if path.endswith("summary.json")]
    # the report writes conditions in the configured order (clean, then each attack x eps)
    conditions = list(dict.fromkeys(c for _, _, data in summaries for bb in data.values() if isinstance(bb, dict)
                                    for c in (bb.get(reference) or {})))
    if not conditions:
        raise UcatError(f"no summary.json in the experiments holds method {reference!r}: "
                        "check --reference, or run the report stage")
    attacked = [c for c in conditions if not c.startswith("clean")]
    header = ["experiment", "backbone", "changed parameters",
              *[f"{reference} {c.replace('_eps', ' ε')}" for c in conditions],
              *[f"{reference}−{versus} {c.replace('_eps', ' ε')}" for c in attacked]]
    rows = [header]
    for e, path, data in summaries:
        changed = [f"{k}={_short(v)}" for k, v in sorted(e.params.items()) if baseline.params.get(k) != v]
        for bb, methods in sorted(data.items()):
            if not isinstance(methods, dict):
                continue
            ref, other = methods.get(reference) or {}, methods.get(versus) or {}
            cells = [_fmt((ref.get(c) or {}).get("acc")) for c in conditions]
            for c in attacked:
                d = other.get(c) or {}
                key = f"{reference}_minus_acc"
                cells.append(f"{_fmt(d.get(key), True)} [{_fmt(d.get(key + '_lo'), True)}, "
                             f"{_fmt(d.get(key + '_hi'), True)}]" if key in d else "n/a")
            setting = path.split("/")[-2] if path.count("/") >= 2 else ""
            rows.append([e.name, f"{bb} ({setting})" if setting else bb, ", ".join(changed) or "—", *cells])
    return rows


def render(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def dvc_show(args: list[str] = (), cwd=None) -> list:
    try:
        res = subprocess.run(["dvc", "exp", "show", "--json", *args], capture_output=True, text=True, cwd=cwd)
    except FileNotFoundError:
        raise UcatError("dvc is not installed (pip install -e '.[workflow]')") from None
    if res.returncode:
        last = (res.stderr.strip().splitlines() or ["no output"])[-1]
        raise UcatError(f"dvc exp show failed: {last}")
    return json.loads(res.stdout or "[]")
