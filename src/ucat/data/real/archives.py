"""Fetching, checking and unpacking the official files (the only network access of ucat.data).

Downloads go through ``torchvision.datasets.utils`` (redirects, user agent, Google Drive via
gdown) into a ``*.part`` file; ucat checks size, md5 and sha256 on top.  Zip files are
unpacked by torchvision after ucat has checked every member name.  Tar files are unpacked here,
because torchvision passes no extraction filter to ``tarfile`` (links and ``..`` members would
escape the target on Python < 3.14): the ``data`` filter refuses them in the same single pass.
Gzip files are streamed (torchvision's ``_decompress`` reads the whole 800 MB PCAM file into
memory).
"""

from __future__ import annotations

import gzip
import shutil
import socket
import tarfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import Iterable

from ucat.errors import DataError

from .. import integrity
from .spec import DatasetSpec, Resource


#: seconds a stalled connection may stay silent (torchvision's urlopen calls set no timeout)
TIMEOUT_S = 120


def fetch(url: str, dest: Path) -> None:
    """Download ``url`` to the new file ``dest``; ``gdrive:<id>`` fetches a Google Drive file."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(TIMEOUT_S)
    try:
        _fetch(url, dest)
    finally:
        socket.setdefaulttimeout(previous)


def _fetch(url: str, dest: Path) -> None:
    from torchvision.datasets import utils

    if url.startswith("gdrive:"):
        try:
            import gdown  # noqa: F401  (torchvision's Drive download needs it)
        except ImportError as e:
            raise DataError(f"{url}: downloading from Google Drive needs the optional package gdown "
                            f"(pip install gdown, or the `download` extra of ucat)") from e
        try:
            utils.download_file_from_google_drive(url[len("gdrive:"):], str(dest.parent), dest.name)
        except RuntimeError as e:  # gdown saved nothing: a quota or permission page
            raise DataError(f"{url}: Google Drive refused the download (quota or permission page)") from e
    else:
        utils.download_url(url, str(dest.parent), dest.name)
    if not dest.is_file():
        raise DataError(f"{url}: nothing was downloaded")


def check_file(path: Path, res: Resource) -> tuple[dict, str | None]:
    """Digests of ``path`` and the reason it does not match ``res`` (None if it matches)."""
    size = path.stat().st_size
    if res.size is not None and size != res.size:
        return {"bytes": size}, f"{size} bytes, expected {res.size} (truncated or a different file)"
    info = integrity.digests(path)
    if res.md5 is not None and info["md5"] != res.md5:
        return info, f"md5 {info['md5']}, expected {res.md5}"
    if res.sha256 is not None and info["sha256"] != res.sha256:
        return info, f"sha256 {info['sha256']}, expected {res.sha256}"
    return info, None


def _unsafe(name: str) -> bool:
    p = PurePosixPath(name.replace("\\", "/"))
    return p.is_absolute() or ".." in p.parts or (len(name) > 1 and name[1] == ":")


def _refuse(spec: DatasetSpec, archive: Path, member: str, why: str) -> DataError:
    return DataError(f"{spec.name}: {archive} contains the unsafe member {member!r} ({why}: it would be written "
                     f"outside the target folder); refusing to extract it. The archive is not the official one")


def _zip_names(spec: DatasetSpec, archive: Path, names: Iterable[str]) -> None:
    for n in names:
        if _unsafe(n):
            raise _refuse(spec, archive, n, "path traversal")


def extract(spec: DatasetSpec, archive: Path, dest: Path) -> None:
    """Unpack ``archive`` into ``dest``; a traversal member or a corrupt archive is a DataError."""
    from torchvision.datasets.utils import extract_archive

    dest.mkdir(parents=True, exist_ok=True)
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as z:
                _zip_names(spec, archive, z.namelist())
            extract_archive(str(archive), str(dest))
        else:
            def safe(member: tarfile.TarInfo, path: str) -> tarfile.TarInfo:
                if _unsafe(member.name):  # the data filter would only strip a leading "/"
                    raise _refuse(spec, archive, member.name, "path traversal")
                return tarfile.data_filter(member, path)

            with tarfile.open(archive) as t:
                t.extractall(dest, filter=safe)
    except DataError:
        raise
    except tarfile.FilterError as e:
        member = getattr(e, "tarinfo", None)
        raise _refuse(spec, archive, member.name if member is not None else "?",
                      f"path traversal: {type(e).__name__}") from e
    except Exception as e:
        raise DataError(f"{spec.name}: cannot extract {archive} ({type(e).__name__}: {e}); the archive is "
                        f"corrupt or truncated and was not accepted") from e


def gunzip(spec: DatasetSpec, archive: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        with gzip.open(archive, "rb") as src, open(dest, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
    except Exception as e:
        raise DataError(f"{spec.name}: cannot decompress {archive} ({type(e).__name__}: {e}); the file is "
                        f"corrupt or truncated and was not accepted") from e


# ------------------------------------------------------------------ post-processing steps

def post_caltech101(spec: DatasetSpec, stage: Path, files: dict[str, Path]) -> None:
    """caltech-101.zip holds 101_ObjectCategories.tar.gz (+ Annotations.tar): unpack those."""
    inner = stage / "caltech101" / ".zip"
    found = list(inner.rglob("101_ObjectCategories.tar.gz"))
    if not found:
        raise DataError(f"caltech101: {files['caltech-101.zip']} has no 101_ObjectCategories.tar.gz; not accepted")
    extract(spec, found[0], stage / "caltech101")
    for extra in inner.rglob("Annotations.tar"):
        extract(spec, extra, stage / "caltech101")
    shutil.rmtree(inner)


def post_imagenet(spec: DatasetSpec, stage: Path, files: dict[str, Path]) -> None:
    """torchvision's own parsers build meta.bin and sort val/ into <wnid>/ folders."""
    from torchvision.datasets import imagenet as tvi

    from .messages import Reading

    links = []
    try:
        for key in ("devkit", "val"):
            fname = tvi.ARCHIVE_META[key][0]
            link = stage / fname
            link.symlink_to(files[fname].resolve())
            links.append(link)
        with Reading(spec, stage.parent, files[tvi.ARCHIVE_META["devkit"][0]]):
            tvi.parse_devkit_archive(str(stage))
        with Reading(spec, stage.parent, files[tvi.ARCHIVE_META["val"][0]]):
            tvi.parse_val_archive(str(stage))
    finally:
        for link in links:
            link.unlink(missing_ok=True)
