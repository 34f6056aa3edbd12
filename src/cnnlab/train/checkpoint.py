"""Run directories, checkpoints and atomic writes.

A run directory holds ``model.safetensors`` + ``model.json`` (the deliverable: weights and what is
needed to rebuild the model), ``state.pt`` (everything to resume: weights, optimizer, schedule,
epoch, history, config — plain tensors and dicts, loaded with ``weights_only=True`` so a file can
never run code), ``config.yaml``, ``metrics.csv`` and ``env.json``.

Every write goes to a temporary file in the same directory and is then renamed over the target
(``os.replace`` is atomic on POSIX), so a crash or a full disk never leaves a half-written file.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from .. import __version__
from ..errors import CheckpointError

WEIGHTS = "model.safetensors"
META = "model.json"
STATE = "state.pt"
_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write(path: str | Path, write: Callable[[Any], None], mode: str = "wb") -> None:
    """Call ``write(f)`` on a temp file beside ``path``, fsync, then rename it over ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the usual mode
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise CheckpointError(f"disk full while saving {path}; nothing was overwritten — "
                                  "free some space and resume the run") from exc
        raise CheckpointError(f"could not write {path}: {exc.strerror or exc}") from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text), mode="w")


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def plain_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The weights without DDP/compile wrappers, contiguous CPU copies (safetensors wants that)."""
    model = unwrap(model)
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The user's module under DistributedDataParallel and torch.compile wrappers."""
    while True:
        if hasattr(model, "module") and isinstance(model.module, torch.nn.Module):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def save_model(run_dir: str | Path, model: torch.nn.Module, meta: dict[str, Any]) -> None:
    """Write ``model.safetensors`` and ``model.json`` (weights first; the JSON marks completion)."""
    run_dir = Path(run_dir)
    blob = st_save(plain_state_dict(model), metadata={"format": "pt", "model": str(meta["model"])})
    atomic_write(run_dir / WEIGHTS, lambda f: f.write(blob))
    write_json(run_dir / META, {**meta, "cnnlab_version": __version__})


SNAPSHOTS = "snapshots"


def snapshot_path(run_dir: str | Path, epoch: int) -> Path:
    return Path(run_dir) / SNAPSHOTS / f"epoch-{epoch:03d}.safetensors"


def save_snapshot(run_dir: str | Path, model: torch.nn.Module, epoch: int) -> None:
    """The weights after ``epoch`` kept beside the run (``--keep-snapshots``): accuracy per epoch
    can then be measured afterwards, outside the timed run (the time-to-accuracy curve)."""
    path = snapshot_path(run_dir, epoch)
    path.parent.mkdir(exist_ok=True)
    blob = st_save(plain_state_dict(model), metadata={"format": "pt", "epoch": str(epoch)})
    atomic_write(path, lambda f: f.write(blob))


def list_snapshots(run_dir: str | Path) -> list[int]:
    """Epochs with a kept snapshot, ascending."""
    folder = Path(run_dir) / SNAPSHOTS
    return sorted(int(p.stem.split("-")[1]) for p in folder.glob("epoch-*.safetensors"))


def save_state(run_dir: str | Path, state: dict[str, Any]) -> None:
    atomic_write(Path(run_dir) / STATE, lambda f: torch.save(state, f))


def load_state(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / STATE
    if not path.is_file():
        raise CheckpointError(f"{run_dir} has no {STATE}: it is not a resumable run directory")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a bad file
        raise CheckpointError(f"cannot read {path}: {exc}") from exc


def read_meta(run_dir: str | Path) -> dict[str, Any]:
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise CheckpointError(f"run directory not found: {run_dir}")
    if not run_dir.is_dir():
        raise CheckpointError(f"{run_dir} is not a run directory")
    meta_path, weights = run_dir / META, run_dir / WEIGHTS
    if not meta_path.is_file() or not weights.is_file():
        raise CheckpointError(f"{run_dir} has no trained weights ({WEIGHTS} + {META}); "
                              "train a model there first")
    try:
        return json.loads(meta_path.read_text())
    except ValueError as exc:
        raise CheckpointError(f"{meta_path} is not valid JSON: {exc}") from exc


def read_weights(run_dir: str | Path, snapshot: int | None = None) -> dict[str, torch.Tensor]:
    """The run's final weights, or those kept after epoch ``snapshot``."""
    path = Path(run_dir) / WEIGHTS if snapshot is None else snapshot_path(run_dir, snapshot)
    if snapshot is not None and not path.is_file():
        kept = list_snapshots(run_dir)
        raise CheckpointError(f"{run_dir} has no snapshot of epoch {snapshot} ("
                              + (f"kept: {', '.join(map(str, kept))}" if kept else
                                 "train with --keep-snapshots to keep them") + ")")
    try:
        return st_load(path.read_bytes())
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read weights {path}: {exc}") from exc


def load_weights_into(model: torch.nn.Module, weights: dict[str, torch.Tensor], source: str,
                      strict: bool = True) -> list[str]:
    """Copy ``weights`` into ``model``; a shape or key mismatch names the checkpoint.

    With ``strict=False`` (fine-tuning from another head) tensors whose shape differs are
    skipped; their names are returned so the caller can say what was left at random init.
    """
    own = unwrap(model).state_dict()
    missing = sorted(set(own) - set(weights))
    unexpected = sorted(set(weights) - set(own))
    mismatched = sorted(k for k in set(own) & set(weights) if own[k].shape != weights[k].shape)
    if strict and (missing or unexpected or mismatched):
        detail = (missing or unexpected or mismatched)[:3]
        raise CheckpointError(
            f"checkpoint {source} does not fit model {type(unwrap(model)).__name__}: "
            f"{len(missing)} missing, {len(unexpected)} unexpected, {len(mismatched)} "
            f"wrong-shaped tensors (e.g. {', '.join(detail)}) — is it from another architecture?")
    usable = {k: v for k, v in weights.items() if k in own and own[k].shape == v.shape}
    if not strict and not usable:
        raise CheckpointError(f"checkpoint {source} shares no tensors with this model")
    unwrap(model).load_state_dict(usable, strict=False)
    return sorted(set(own) - set(usable))


def new_run_dir(out: str | None, model: str, data: str, root: str | Path = "runs") -> Path:
    """Create the run directory; never reuse one that holds a run (no silent overwrite)."""
    if out:
        path = Path(out)
        if (path / STATE).exists() or (path / META).exists():
            raise CheckpointError(f"{path} already holds a run; use --resume {path} to continue "
                                  "it, or choose another --out")
        if path.exists() and not path.is_dir():
            raise CheckpointError(f"--out {path} exists and is not a directory")
    else:
        import time

        stem = f"{model}-{Path(data).name or data}-{time.strftime('%Y%m%d-%H%M%S')}"
        path = Path(root) / stem
        n = 2
        while path.exists():
            path = Path(root) / f"{stem}-{n}"
            n += 1
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CheckpointError(f"cannot create run directory {path}: {exc.strerror}") from exc
    return path
