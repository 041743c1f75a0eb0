"""The package files a stage executes or reads, found statically: code is a dependency of its stage.

Both engines list them as inputs (an edit reruns exactly the stages that run the edited code),
and every cache key hashes them (:mod:`ucat.fingerprint`).  Modules are found from the imports;
the data files shipped in the package (class-name lists, the schema, the published tables) are
declared in :data:`PACKAGE_DATA` by the module that reads them, so an edited class-name list is
an edited input like an edited module.  AST only: importing this never imports torch.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
SRC = "src/ucat"          # the package as seen from the repository root (where both engines run)
# what every `ucat` command imports before the stage's own module (cli's parser, the
# parameter schema, the method registry, the output layout)
# (and, for the stages that use a device, ucat.gpus's per-job GPU assignment)
COMMON_CODE = ["ucat", "ucat.cli", "ucat.config", "ucat.paths", "ucat.methods", "ucat.attacks", "ucat.models",
               "ucat.gpus"]
# package data files (globs relative to the package) -> the module that reads them; every
# non-Python file of the package must be claimed here (tests/test_codedeps.py)
PACKAGE_DATA = {
    "ucat.config": ("resources/params.schema.yaml",),
    "ucat.data.real.classes": ("data/classnames/*.json",),
    "ucat.report.reference": ("report/reference/*.csv", "report/reference/*.md"),
}


def _module_file(module: str) -> Path | None:
    rel = Path(*module.split(".")[1:])
    for cand in (PACKAGE_DIR / rel / "__init__.py", (PACKAGE_DIR / rel).with_suffix(".py")):
        if cand.is_file():
            return cand
    return None


def _imports(module: str, path: Path, top_level_only: bool) -> set[str]:
    """Package modules ``module`` imports (lazy imports inside functions too, unless ``top_level_only``)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else ast.walk(tree)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                root = ".".join(base + ([node.module] if node.module else []))
            elif node.module and node.module.split(".")[0] == "ucat":
                root = node.module
            else:
                continue
            found.add(root)
            found.update(f"{root}.{a.name}" for a in node.names)  # `from . import x` names a module
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "ucat")
    return {m for m in found if _module_file(m) is not None}


@functools.cache
def code_deps(*entries: str) -> tuple[str, ...]:
    """Source files (repository-relative) of ``entries``, every package module they import, and the
    package data files those modules read (:data:`PACKAGE_DATA`).

    ``ucat.cli`` is read for its top-level imports only (its subcommands import their
    stage module lazily, which the entry names).  Static (AST), so torch is never imported.
    """
    seen: dict[str, Path] = {}
    todo = [(m, m == "ucat.cli") for m in (*COMMON_CODE, *entries)]
    while todo:
        module, top = todo.pop()
        if module in seen:
            continue
        path = _module_file(module)
        if path is None:
            raise ValueError(f"workflow: no module {module}")
        seen[module] = path
        todo += [(m, False) for m in _imports(module, path, top)]
    found = set(seen.values())
    for module in seen:
        for pattern in PACKAGE_DATA.get(module, ()):
            found.update(PACKAGE_DIR.glob(pattern))
    return tuple(sorted(f"{SRC}/{p.relative_to(PACKAGE_DIR).as_posix()}" for p in found))
