"""The registry of methods: which are fine-tuned, which parameter sections they read.

The one list of methods: the training loop, the workflow definitions (a stage reruns
only when a section it reads changes), the fine-tuning fingerprint and the report (display
names) read it; ``tests/test_registries.py`` checks the params schema's enum against it.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import unknown_choice


@dataclass(frozen=True)
class Method:
    name: str
    label: str               # display name in the report's tables and figures
    finetuned: bool          # False: evaluate the backbone as is
    sections: tuple[str, ...] = ()   # method-specific params sections read by its fine-tuning
    needs_reference: bool = False    # a frozen copy of the original model is used
    description: str = ""


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("clip", "CLIP", False, description="zero-shot CLIP, no fine-tuning"),
    Method("tecoa", "TeCoA", True, description="CE on adversarial logits (Mao et al. 2023)"),
    Method("ucat", "UCAT", True, ("ucat",), True,
           "CE + lambda KL(Dir(alpha_adv) || Dir(alpha_ref)) (Lu et al. 2025)"),
    Method("pmg_aft", "PMG-AFT", True, ("pmg_aft",), True,
           "CE + KL(p_orig(x_adv)||p(x_adv)) + KL(p(x)||p(x_adv)) (Wang et al. 2024)"),
    Method("fare", "FARE", True, ("fare",), True,
           "unsupervised ||phi(x_adv) - phi_orig(x)||^2 (Schlarmann et al. 2024)"),
    Method("tga_zsr", "TGA-ZSR", True, ("tga_zsr",), True,
           "CE + a d(A(x_adv), A_orig(x)) + b d(A(x), A_orig(x)), text-guided attention maps (Yu et al. 2024)"),
    Method("comp_tga", "Comp-TGA", True, ("comp_tga",), True,
           "TGA-ZSR with the complementary map A_class (1 - A_not-class) (Yu et al. 2026)"),
    Method("kl_prob_forward", "CE+KL(p‖p_adv)", True, ("ablation",), True, "ablation: CE + KL(p(x) || p(x_adv))"),
    Method("kl_prob_reverse", "CE+KL(p_adv‖p)", True, ("ablation",), True, "ablation: CE + KL(p(x_adv) || p(x))"),
    Method("kl_dir_forward", "CE+KL(Dir‖Dir_adv)", True, ("ucat",), True,
           "ablation: CE + lambda KL(Dir(alpha) || Dir(alpha_adv))"),
)}


def get(name: str) -> Method:
    if name not in METHODS:
        raise unknown_choice("methods", name, METHODS)
    return METHODS[name]
