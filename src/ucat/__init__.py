"""ucat: calibrated zero-shot adversarial robustness of CLIP."""

__version__ = "0.1.0"
