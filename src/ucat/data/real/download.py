"""``download_real``: obtain the official files, unpack them into a staging folder, verify the
staged copy, then install it and write ``MANIFEST.json`` last.

Files go to ``<root>/.ucat-downloads/<name>/`` (``*.part`` until complete and checked); a file
the user placed in ``<root>/<name>/`` is used instead.  A failure at any step leaves no manifest
and no half-installed set, and a rerun starts cleanly.  When a copy already present fails
verification and no fresh copy can be installed, the verification failure is reported first.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Iterable

from ucat.errors import DataError
from ucat.io import write_json

from . import archives, layout
from .adapters import Ctx
from .messages import how_to_get, instructions
from .spec import Record, Resource
from .verify import MANIFEST, context, read_manifest, record, verify_dir

CACHE_DIR = ".ucat-downloads"


def _record(res: Resource, info: dict, url: str | None) -> dict:
    official = [k for k in ("md5", "sha256") if getattr(res, k) is not None]
    return {**info, "url": url, "checked_against": official or "none published: digests recorded here"}


def _download(ctx: Ctx, res: Resource, cache: Path) -> tuple[Path, dict]:
    cache.mkdir(parents=True, exist_ok=True)
    part = cache / (res.filename + ".part")
    errors = []
    for url in res.urls:
        part.unlink(missing_ok=True)
        try:
            archives.fetch(url, part)
        except DataError as e:
            errors.append(str(e))
            continue
        except Exception as e:  # network errors of any kind
            errors.append(f"{url}: {type(e).__name__}: {e}")
            continue
        info, bad = archives.check_file(part, res)
        if bad is not None:
            errors.append(f"{url}: downloaded {res.filename} is corrupt or incomplete ({bad}); rejected")
            part.unlink()
            continue
        os.replace(part, cache / res.filename)
        return cache / res.filename, _record(res, info, url)
    part.unlink(missing_ok=True)
    raise DataError(f"{ctx.spec.name}: could not download {res.filename}: " + "; ".join(errors)
                    + f". Nothing was installed; rerun to retry, or place it by hand: "
                      f"{instructions(ctx.spec, ctx.root)}")


def _obtain(ctx: Ctx, res: Resource, cache: Path) -> tuple[Path, dict, bool]:
    """A checked local copy of ``res``: (path, manifest record, downloaded by us)."""
    spec, d = ctx.spec, ctx.d
    cached, placed = cache / res.filename, d / res.filename
    if cached.is_file():
        info, bad = archives.check_file(cached, res)
        if bad is None:
            return cached, _record(res, info, None), True
        cached.unlink()  # a corrupt earlier download: fetch again
    if placed.is_file():
        info, bad = archives.check_file(placed, res)
        if bad is not None:
            raise DataError(f"{spec.name}: {placed} does not match the official {res.filename} ({bad}). "
                            f"Replace it. {how_to_get(spec, ctx.root)}")
        return placed, _record(res, info, None), False
    if not res.urls or not spec.auto_download:
        raise DataError(f"{spec.name}: {res.filename} not found in {d} (automatic download is not possible). "
                        f"{instructions(spec, ctx.root)}")
    path, rec = _download(ctx, res, cache)
    return path, rec, True


def _stage(ctx: Ctx, rec: Record, stage: Path, cache: Path, ours: list[Path]) -> dict:
    """Obtain, check and unpack every resource into ``stage``; verify it; return its manifest."""
    obtained, records = {}, {}
    for res in rec.resources:
        path, info, downloaded = _obtain(ctx, res, cache)
        obtained[res.filename], records[res.filename] = path, info
        if downloaded:
            ours.append(path)
        target = stage / res.dest
        if res.action == "extract":
            archives.extract(ctx.spec, path, target)
        elif res.action == "gunzip":
            archives.gunzip(ctx.spec, path, target / res.filename.removesuffix(".gz"))
        elif res.action == "file":
            target.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target / res.filename)
    stage.mkdir(parents=True, exist_ok=True)
    if rec.post is not None:
        rec.post(ctx.spec, stage, obtained)
    return verify_dir(ctx._replace(d=stage), None, records)


def _install(stage: Path, d: Path) -> None:
    for entry in sorted(stage.iterdir()):
        dst = d / entry.name
        if dst.is_dir() and not dst.is_symlink():
            shutil.rmtree(dst)
        elif dst.exists() or dst.is_symlink():
            dst.unlink()
        os.replace(entry, dst)


def download_real(name: str, root: str | Path) -> dict:
    """Download (or adopt already present / hand-placed files), verify, write ``MANIFEST.json``.

    Returns the manifest.  Data already present that verify are not downloaded again; a copy
    unpacked in the wrong folder is reported with the move that fixes it (nothing is downloaded).
    """
    ctx = context(name, root)
    rec = record(name)
    d, manifest_path = ctx.d, ctx.d / MANIFEST
    layout.check(ctx, rec.adapter.anchor)
    previous_error = None
    if d.is_dir() and any((d / t).exists() for t in rec.adapter.top):
        try:
            manifest = verify_dir(ctx, read_manifest(d))
        except DataError as e:
            previous_error = e
        else:
            if read_manifest(d) != manifest:
                write_json(manifest_path, manifest)
            return manifest
    if manifest_path.exists():  # stale: what it describes did not verify
        manifest_path.unlink()

    cache = ctx.root / CACHE_DIR / name
    stage = ctx.root / f".{name}.staging"
    shutil.rmtree(stage, ignore_errors=True)  # leftovers of an interrupted run
    d.mkdir(parents=True, exist_ok=True)
    ours: list[Path] = []
    try:
        try:
            manifest = _stage(ctx, rec, stage, cache, ours)
        except DataError as e:
            # archives without a published checksum cannot be trusted after a failure: fetch them again
            for res in rec.resources:
                if res.md5 is None and res.sha256 is None:
                    (cache / res.filename).unlink(missing_ok=True)
            _remove_empty_dirs([cache, cache.parent, d])
            if previous_error is not None:  # the cause first: the copy that is there does not verify
                raise DataError(f"{previous_error} (a fresh copy could not be installed either: {e})") from e
            raise
        _install(stage, d)
        write_json(manifest_path, manifest)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    for p in ours:
        p.unlink(missing_ok=True)
    _remove_empty_dirs([cache, cache.parent])
    return manifest


def _remove_empty_dirs(dirs: Iterable[Path]) -> None:
    for folder in dirs:
        try:
            folder.rmdir()  # only succeeds when empty
        except OSError:
            pass
