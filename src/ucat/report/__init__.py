"""The paper's tables and figures from the pipeline's metrics, published numbers beside them.

``build_report(cfg, ...)`` is the entry point; ``reference`` holds the published numbers.
``build_report`` is imported lazily so that ``ucat.report.reference`` loads without matplotlib.
"""

__all__ = ["build_report", "build_reports"]


def __getattr__(name):
    if name in __all__:
        from . import build
        return getattr(build, name)
    raise AttributeError(name)
