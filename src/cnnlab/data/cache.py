"""Decode-once cache: a source's decoded uint8 splits, saved as safetensors + JSON.

Decoding 60,000 JPEGs takes seconds to minutes; reading the same pixels back from one
safetensors file takes well under a second. So every source (except the embedded digits) goes
through :func:`cached`.

Where: ``<data_dir>/.cache/`` when that can be written, else ``$CNNLAB_DATA/cache`` (or
``~/.cache/cnnlab/cache``) — so a read-only shared data folder still gets a cache.

Key (two hashes in the file name ``<slug>-<identity>-<content>``):

* *identity* — what was asked for: the source kind, its resolved path, and the options that change
  the decoded pixels (for folders ``image_size`` and ``channels``, since Pillow resizes each file
  as it is decoded), plus :data:`CACHE_VERSION`. Named sets (MNIST, CIFAR) cache their native
  pixels and resize/convert after loading with tensor ops (well under a second for 60,000 small
  images, and no multi-GB entry for CIFAR at 224×224);
* *content* — what was read: for each input file its path, size and mtime (nanoseconds). That is
  fast (no file is hashed) and catches every ordinary edit, copy or re-download; a tool that
  rewrites a file keeping its size *and* mtime would defeat it (``cache=False`` bypasses).

Options that only *select* from the decoded pixels are not in the key, so changing them reuses the
entry: ``seed`` and ``val_fraction`` (random splits are made after loading), and ``skip_corrupt``
(an entry records how many files it skipped; one that skipped files is not used unless
``skip_corrupt`` is asked for again).

A folder loaded with ``image_size``/``channels`` that its native entry already satisfies (same
size; same channels, or grey repeated to RGB) reuses that entry instead of decoding again — so
``cnnlab evaluate``, which asks for the model's input size, does not re-decode what training cached.

Writes are atomic (temp file + ``os.replace``; the JSON, written last, is the commit mark), and a
new entry removes the stale entries of the same identity.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch

from .dataset import Split

CACHE_VERSION = 1

Splits = dict[str, Split]


def writable(path: Path) -> bool:
    """Whether we may write in folder ``path`` (or create it in its nearest existing parent).

    Permission *bits* count, not only ``os.access``: as root ``os.access`` says yes to a folder
    marked read-only (``r-x``), and a shared data folder marked so must stay untouched.
    """
    path = Path(path)
    while not path.exists():
        if path.parent == path:
            return False
        path = path.parent
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return path.is_dir() and os.access(path, os.W_OK) and bool(mode & 0o222)


def cache_root(data_dir: str | Path | None) -> Path | None:
    """The first writable cache folder among ``data_dir/.cache`` and the default one."""
    candidates = []
    if data_dir is not None:
        candidates.append(Path(data_dir).expanduser() / ".cache")
    env = os.environ.get("CNNLAB_DATA")
    base = Path(env).expanduser() if env else Path.home() / ".cache" / "cnnlab"
    candidates.append(base / "cache")
    for path in candidates:
        if not writable(path):
            continue
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        return path
    return None


def fingerprint(paths: Iterable[str | Path]) -> list[list]:
    """[path, size, mtime_ns] for each file: the cheap content key (see the module docstring)."""
    out = []
    for p in paths:
        st = os.stat(p)
        out.append([str(p), st.st_size, st.st_mtime_ns])
    return out


def _digest(obj: Any) -> str:
    text = json.dumps(obj, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)[-40:].strip("_.") or "data"


class CacheEntry:
    """One cache entry: ``<root>/<slug>-<identity>-<content>.{safetensors,json}``."""

    def __init__(self, root: Path, slug: str, identity: dict, content: Any) -> None:
        self.root = root
        self.prefix = f"{_slug(slug)}-{_digest({'v': CACHE_VERSION, **identity})}"
        self.stem = f"{self.prefix}-{_digest(content)}"
        self.tensors = root / f"{self.stem}.safetensors"
        self.meta = root / f"{self.stem}.json"

    def load(self) -> tuple[Splits, dict] | None:
        """The cached splits and metadata, or None (absent, partial or unreadable: a miss)."""
        from safetensors.torch import load_file

        try:
            meta = json.loads(self.meta.read_text())
            if meta.get("version") != CACHE_VERSION:
                return None
            if self.tensors.stat().st_size != meta["tensors_bytes"]:
                return None
            flat = load_file(str(self.tensors))
            splits = {name: Split(flat[f"{name}.images"], flat[f"{name}.labels"])
                      for name in meta["splits"]}
        except (OSError, ValueError, KeyError, RuntimeError):
            return None
        return splits, meta

    def save(self, splits: Splits, meta: dict) -> None:
        """Write atomically, then drop older entries of the same identity."""
        from safetensors.torch import save_file

        flat: dict[str, torch.Tensor] = {}
        for name, split in splits.items():
            flat[f"{name}.images"] = split.images.contiguous()
            flat[f"{name}.labels"] = split.labels.contiguous()
        tmp = _temp_path(self.root, self.stem, ".safetensors")
        try:
            save_file(flat, str(tmp))
            size = tmp.stat().st_size
            os.replace(tmp, self.tensors)
            meta = {**meta, "version": CACHE_VERSION, "splits": list(splits),
                    "tensors_bytes": size}
            tmp = _temp_path(self.root, self.stem, ".json")
            tmp.write_text(json.dumps(meta, indent=1, default=str))
            os.replace(tmp, self.meta)
        finally:
            if tmp.exists():
                tmp.unlink()
        for old in self.root.glob(f"{self.prefix}-*"):
            if old.name not in (self.tensors.name, self.meta.name) and ".tmp" not in old.name:
                with contextlib.suppress(OSError):
                    old.unlink()


def _public(meta: dict) -> dict:
    return {k: v for k, v in meta.items() if k not in ("version", "splits", "tensors_bytes")}


def _temp_path(root: Path, stem: str, suffix: str) -> Path:
    fd, name = tempfile.mkstemp(prefix=f".{stem}.", suffix=f"{suffix}.tmp", dir=root)
    os.close(fd)
    return Path(name)


def cached(
    build: Callable[[], tuple[Splits, dict]],
    *,
    slug: str,
    identity: dict,
    content: Callable[[], Any] | Any,
    data_dir: str | Path | None,
    enabled: bool = True,
    accept: Callable[[dict], bool] | None = None,
    reuse: tuple[dict, Callable[[Splits, dict], Splits | None]] | None = None,
) -> tuple[Splits, dict]:
    """``build()``'s result, from the cache when an entry for (identity, content) exists.

    ``meta`` must be JSON-serializable; ``meta["cache"]`` is set to ``"hit <path>"``,
    ``"written <path>"`` or ``"off"``. ``accept(meta)`` may refuse a found entry (then it is
    rebuilt). ``content`` may be a callable, evaluated only when the cache is on.
    ``reuse=(other_identity, derive)``: on a miss, an entry of ``other_identity`` (same content)
    from which ``derive(splits, meta)`` makes exactly this result (or returns None: not usable).
    """
    root = cache_root(data_dir) if enabled else None
    if root is None:
        splits, meta = build()
        return splits, {**meta, "cache": "off" if not enabled else "unavailable (no writable "
                        "cache folder)"}
    content = content() if callable(content) else content
    entry = CacheEntry(root, slug, identity, content)
    hit = entry.load()
    if hit is not None and (accept is None or accept(hit[1])):
        return hit[0], {**_public(hit[1]), "cache": f"hit {entry.tensors}"}
    if reuse is not None and reuse[0] != identity:
        other = CacheEntry(root, slug, reuse[0], content)
        hit = other.load()
        if hit is not None and (accept is None or accept(hit[1])):
            derived = reuse[1](*hit)
            if derived is not None:
                return derived, {**_public(hit[1]), "cache": f"hit {other.tensors} (reused)"}
    splits, meta = build()
    try:
        entry.save(splits, meta)
        state = f"written {entry.tensors}"
    except OSError as exc:  # a full disk must not stop training: say so and go on
        print(f"warning: could not write the data cache in {root} ({exc})", file=sys.stderr)
        state = f"not written ({exc})"
    return splits, {**meta, "cache": state}
