"""ucat: calibrated zero-shot adversarial robustness of CLIP (UCAT, Lu et al. 2025).

Modules, one concern each (see docs/api.md for the public API and its invariants):

- :mod:`ucat.config`   params.yaml loading and schema validation (a bad key is a one-line error)
- :mod:`ucat.models`   open_clip backbones, checkpoints, the pixel-space :class:`~ucat.models.ZeroShotClassifier`
- :mod:`ucat.losses`   TeCoA, UCAT (Dirichlet reverse KL), PMG-AFT, FARE and the ablations
- :mod:`ucat.attacks`  ℓ∞ PGD (CE / CW margin), AutoAttack (APGD-CE + APGD-DLR), FARE's attack;
  the registry of evaluation attacks (CAA and A³ in :mod:`ucat.attacks_extra`)
- :mod:`ucat.metrics`  accuracy, ECE, NLL, Brier, entropy, aleatoric / epistemic uncertainty
- :mod:`ucat.data`     the demo world and the 16 real zero-shot data sets
- :mod:`ucat.backbone`, :mod:`ucat.train`, :mod:`ucat.evaluate`, :mod:`ucat.report`  the pipeline stages
- :mod:`ucat.workflow`, :mod:`ucat.paths`  the stage definitions shared by Snakemake and DVC
- :mod:`ucat.cli`      the ``ucat`` command
"""

__version__ = "0.1.0"
