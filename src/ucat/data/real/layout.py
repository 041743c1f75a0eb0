"""Recognise a hand-unpacked copy that sits a folder (or two) too shallow or too deep.

Each adapter names an ``anchor``: the folder (relative to ``<root>/<name>/``) that must hold a
marker entry only that set has.  When the marker is not where it belongs, the same marker is
looked for under the anchor's tail moved up (unpacked into ``<root>/<name>/`` or into
``data.root`` itself) and one folder down (unpacked into an extra folder).
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from ucat.errors import DataError

from .adapters import Ctx, visible


def _candidates(ctx: Ctx, parts: tuple[str, ...]) -> list[Path]:
    out = []
    for i in range(len(parts) + 1):  # shallower: leading parts dropped, under the set's folder or data.root
        tail = parts[i:]
        out.append(ctx.d.joinpath(*tail))
        if tail:
            out.append(ctx.root.joinpath(*tail))
    if ctx.d.is_dir():  # deeper: one extra folder (e.g. named after the archive) above the expected layout
        for extra in sorted(visible(p.name for p in ctx.d.iterdir() if p.is_dir())):
            for i in range(len(parts) + 1):
                out.append(ctx.d.joinpath(extra, *parts[i:]))
    return out


def check(ctx: Ctx, anchor: tuple[str, str]) -> None:
    """Raise the move instruction if the set is unpacked in the wrong folder; else do nothing."""
    container, marker = anchor
    parts = PurePosixPath(container).parts if container else ()
    expected = ctx.d.joinpath(*parts)
    if (expected / marker).exists():
        return
    depth = len(expected.parts)
    for found in _candidates(ctx, parts):
        if found == expected or found == ctx.root or not (found / marker).exists():
            continue
        shift = len(found.parts) - depth
        how = (f"{-shift} folder{'s' if shift < -1 else ''} too shallow" if shift < 0 else
               f"{shift} folder{'s' if shift > 1 else ''} too deep" if shift > 0 else "in the wrong folder")
        raise DataError(f"{ctx.spec.name}: the data set is unpacked {how}: {found / marker} exists but "
                        f"{expected / marker} does not. Move the folder {found} (the one that holds {marker}) "
                        f"so that it becomes {expected}, then rerun `ucat data {ctx.spec.name}`.")
