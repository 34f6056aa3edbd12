"""Download the canonical files of a named data set, with mirrors, resume and MD5 checks.

``download("mnist", data_dir)`` fetches every file of the set into the folder its source reads
(``data_dir/mnist/``, ``data_dir/fashion-mnist/``, or ``data_dir`` for the CIFAR archives, which
the source extracts on first use). For each file:

1. already there with the right MD5 → nothing to do (a re-compressed MNIST ``.gz`` whose
   uncompressed bytes have the published MD5 also counts);
2. else download to ``<file>.part`` — resuming with an HTTP ``Range`` request when a ``.part``
   exists — trying the mirrors in order;
3. verify the MD5; a mismatch deletes the ``.part`` and tries the next mirror;
4. rename into place (atomic ``os.replace``).

When no mirror works, one :class:`DataError` lists each URL tried and why, and says which files
to copy into which folder by hand. ``REMOTES`` is a plain table so tests (and users behind a
proxy mirror) can point it elsewhere, or pass ``mirrors=``.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError, unknown


@dataclass(frozen=True)
class RemoteFile:
    name: str
    md5: str
    raw_md5: str | None = None  # MD5 of the gunzipped bytes, where published


@dataclass(frozen=True)
class Remote:
    """One data set's files: ``mirror + file.name`` is a URL; files land in ``data_dir/subdir``."""

    name: str
    subdir: str
    mirrors: tuple[str, ...]
    files: tuple[RemoteFile, ...]
    note: str = ""


# MD5s as published by the data sets' authors (and used by torchvision).
REMOTES: dict[str, Remote] = {
    "mnist": Remote("mnist", "mnist", (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ), (
        RemoteFile("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                   "6bbc9ace898e44ae57da46a324031adb"),
        RemoteFile("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432",
                   "a25bea736e30d166cdddb491f175f624"),
        RemoteFile("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3",
                   "2646ac647ad5339dbf082846283269ea"),
        RemoteFile("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c",
                   "27ae3e4e09519cfbb04c329615203637"),
    )),
    "fashion-mnist": Remote("fashion-mnist", "fashion-mnist", (
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    ), (
        RemoteFile("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
        RemoteFile("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe"),
        RemoteFile("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"),
        RemoteFile("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310"),
    )),
    "cifar10": Remote("cifar10", "", (
        "https://www.cs.toronto.edu/~kriz/",
    ), (
        RemoteFile("cifar-10-binary.tar.gz", "c32a1d4ab5d03f1284b67883e8d87530"),
    ), note="162 MB"),
    "cifar100": Remote("cifar100", "", (
        "https://www.cs.toronto.edu/~kriz/",
    ), (
        RemoteFile("cifar-100-binary.tar.gz", "03b5dce01913d631647c71ecec9e9cb8"),
    ), note="161 MB"),
}

CHUNK = 1 << 20


def file_md5(path: Path, gunzip: bool = False) -> str:
    """MD5 of a file's bytes (of its decompressed bytes with ``gunzip``)."""
    digest = hashlib.md5(usedforsecurity=False)
    opener = gzip.open if gunzip else open
    with opener(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def verified(path: Path, remote: RemoteFile) -> bool:
    """Whether ``path`` holds the published bytes (or, for .gz, the published contents)."""
    if not path.is_file():
        return False
    if file_md5(path) == remote.md5:
        return True
    if remote.raw_md5:
        try:
            return file_md5(path, gunzip=True) == remote.raw_md5
        except (OSError, EOFError):
            return False
    return False


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _fetch_once(url: str, part: Path, timeout: float, progress: bool | None) -> None:
    """Download ``url`` into ``part``, continuing from its current size when the server agrees."""
    start = part.stat().st_size if part.exists() else 0
    from .. import __version__

    headers = {"User-Agent": f"cnnlab/{__version__} (python-urllib)"}
    if start:
        headers["Range"] = f"bytes={start}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 (http/https)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and start:  # range past the end: the .part is complete already
            return
        raise
    with response:
        status = getattr(response, "status", None) or 200
        if start and status == 206:
            mode, done = "ab", start
        else:  # the server ignored the range (200): start over
            mode, done = "wb", 0
        length = response.headers.get("Content-Length")
        total = done + int(length) if length and length.isdigit() else None
        from tqdm import tqdm

        with open(part, mode) as out, tqdm(
                total=total, initial=done, unit="B", unit_scale=True, unit_divisor=1024,
                desc=part.name.removesuffix(".part"), file=sys.stderr, leave=False, delay=0.5,
                disable=None if progress is None else not progress) as bar:
            for block in iter(lambda: response.read(CHUNK), b""):
                out.write(block)
                bar.update(len(block))
        if total is not None and part.stat().st_size < total:
            raise ConnectionError(f"connection closed after {part.stat().st_size:,} of "
                                  f"{total:,} bytes")


def fetch(urls: Sequence[str], dest: Path, md5: str, *, timeout: float = 30.0,
          progress: bool | None = None) -> Path:
    """Download ``dest`` from the first of ``urls`` that yields bytes with MD5 ``md5``.

    A ``dest.part`` left by an interrupted download is resumed (HTTP Range). Raises
    :class:`DataError` listing every URL tried and why it failed.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    tried: list[str] = []
    for url in urls:
        try:
            _fetch_once(url, part, timeout, progress)
        except urllib.error.HTTPError as exc:
            tried.append(f"{url} (HTTP {exc.code} {exc.reason})")
            continue
        except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError,
                OSError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or exc
            tried.append(f"{url} ({reason})")  # keep the .part: the next mirror may resume it
            continue
        got = file_md5(part) if part.exists() else "nothing"
        if got != md5:
            part.unlink(missing_ok=True)
            tried.append(f"{url} (checksum mismatch: MD5 {got}, expected {md5})")
            continue
        os.replace(part, dest)
        return dest
    raise DataError(f"could not download {dest.name}: tried " + "; ".join(tried))


def download(name: str, data_dir: str | Path | None = None, *,
             mirrors: Sequence[str] | None = None, timeout: float = 30.0,
             progress: bool | None = None, extract: bool = True) -> list[Path]:
    """Fetch the files of named data set ``name`` into ``data_dir``; returns their paths.

    ``mirrors`` replaces the table's base URLs (each must end with ``/``). With ``extract``,
    CIFAR archives are unpacked right away (as their source would on first use).
    """
    from . import default_data_dir

    key = name.strip().lower()
    if key not in REMOTES:
        raise DataError(unknown("downloadable data set", name, REMOTES))
    remote = REMOTES[key]
    data_dir = Path(data_dir).expanduser() if data_dir else default_data_dir()
    folder = data_dir / remote.subdir if remote.subdir else data_dir
    bases = list(mirrors) if mirrors else list(remote.mirrors)
    paths, failures = [], []
    for f in remote.files:
        dest = folder / f.name
        if verified(dest, f):
            _log(f"{dest} is already there (MD5 verified)")
            paths.append(dest)
            continue
        if dest.exists():
            _log(f"{dest} has the wrong checksum; downloading it again")
            dest.unlink()
        urls = [base if base.endswith(f.name) else base.rstrip("/") + "/" + f.name
                for base in bases]
        _log(f"downloading {f.name} → {folder}")
        try:
            paths.append(fetch(urls, dest, f.md5, timeout=timeout, progress=progress))
        except DataError as exc:
            failures.append(str(exc).removeprefix("could not download "))
    if failures:
        names = ", ".join(f.name for f in remote.files)
        raise DataError(
            f"could not download {key}: " + " | ".join(failures) + f" — on a machine with "
            f"internet, get {names} and copy them into {folder} by hand (then pass "
            f"--data-dir {data_dir})")
    if extract and key in ("cifar10", "cifar100"):
        from .sources import locate_cifar

        locate_cifar(key, data_dir)
    return paths
