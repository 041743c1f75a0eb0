"""The registry of methods: which are fine-tuned, which parameter sections they read.

One source of truth for the training loop, the workflow definitions (a stage reruns
only when a section it reads changes) and the report (paper names).
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import unknown_choice


@dataclass(frozen=True)
class Method:
    name: str
    paper_name: str          # method column of the paper's CSVs
    finetuned: bool          # False: evaluate the backbone as is
    sections: tuple[str, ...] = ()   # method-specific params sections read by its fine-tuning
    needs_reference: bool = False    # a frozen copy of the original model is used
    description: str = ""


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("clip", "clip", False, description="zero-shot CLIP, no fine-tuning"),
    Method("tecoa", "tecoa", True, description="CE on adversarial logits (Mao et al. 2023)"),
    Method("ucat", "ucat", True, ("ucat",), True,
           "CE + lambda KL(Dir(alpha_adv) || Dir(alpha_ref)) (Lu et al. 2025)"),
    Method("pmg_aft", "pmg_aft", True, ("pmg_aft",), True,
           "CE + KL(p_orig(x_adv)||p(x_adv)) + KL(p(x)||p(x_adv)) (Wang et al. 2024)"),
    Method("fare", "fare", True, ("fare",), True,
           "unsupervised ||phi(x_adv) - phi_orig(x)||^2 (Schlarmann et al. 2024)"),
    Method("kl_prob_forward", "ce+kl_prob_forward", True, ("ablation",), True, "ablation: CE + KL(p(x) || p(x_adv))"),
    Method("kl_prob_reverse", "ce+kl_prob_reverse", True, ("ablation",), True, "ablation: CE + KL(p(x_adv) || p(x))"),
    Method("kl_dir_forward", "ce+kl_dir_forward", True, ("ucat",), True,
           "ablation: CE + lambda KL(Dir(alpha) || Dir(alpha_adv))"),
)}


def get(name: str) -> Method:
    if name not in METHODS:
        raise unknown_choice("methods", name, METHODS)
    return METHODS[name]
