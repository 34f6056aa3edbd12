"""The Python API: the same verbs and keyword names as the CLI.

    import cnnlab
    result = cnnlab.train(model="simple-cnn", data="digits", epochs=10)
    model = cnnlab.load_model(result.run_dir)      # nn.Module, eval mode, input in [0, 1]
    report = cnnlab.evaluate(result.run_dir)        # accuracy, top5, per_class, confusion_matrix
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .data import load_data
from .data.images import IMAGE_EXTENSIONS, decode_image
from .errors import CheckpointError, ConfigError, DataError
from .train import train

__all__ = ["evaluate", "load_data", "load_model", "load_run_data", "predict", "train"]


def load_model(run_dir: str | Path, snapshot: int | None = None) -> torch.nn.Module:
    """The trained model of a run directory, in eval mode; it takes float input in [0, 1].

    ``snapshot``: the weights kept after that epoch (runs trained with ``--keep-snapshots``).
    """
    from .models import create_model
    from .train import checkpoint as ckpt

    meta = ckpt.read_meta(run_dir)
    try:
        model = create_model(meta["model"], num_classes=meta["num_classes"],
                             in_chans=meta["in_chans"], input_size=tuple(meta["input_size"]),
                             norm=meta.get("norm", "standardize"), **meta.get("model_kwargs", {}))
    except KeyError as exc:
        raise CheckpointError(f"{run_dir}/model.json lacks {exc}") from exc
    ckpt.load_weights_into(model, ckpt.read_weights(run_dir, snapshot), str(run_dir))
    model.classes = meta.get("classes")
    model.meta = meta
    return model.eval()


def load_run_data(run_dir: str | Path, meta: dict[str, Any], *, data: str | None = None,
                  data_dir: str | None = None, val_fraction: float | None = None,
                  seed: int | None = None):
    """The data a run was trained on (its config.yaml), or ``data`` with the same classes,
    with images adapted to the model's channels and input size.

    Everything that starts from a run directory (evaluate, explain, attack, report) reloads
    its data here, so the splits are the very ones training saw.
    """
    saved = _saved_config(run_dir)
    ds = load_data(data or saved.data, data_dir=data_dir or saved.data_dir,
                   val_fraction=val_fraction if val_fraction is not None else saved.val_fraction,
                   seed=saved.seed if seed is None else seed,
                   image_size=tuple(meta["input_size"]), channels=meta["in_chans"])
    if ds.image_shape != (meta["in_chans"], *meta["input_size"]):
        raise DataError(f"data '{ds.name}' has images {list(ds.image_shape)} but the model takes "
                        f"{[meta['in_chans'], *meta['input_size']]}")
    if len(ds.classes) != meta["num_classes"]:
        raise DataError(f"data '{ds.name}' has {len(ds.classes)} classes; the model predicts "
                        f"{meta['num_classes']}")
    return ds


def evaluate(run_dir: str | Path, *, data: str | None = None, data_dir: str | None = None,
             split: str = "test", batch_size: int = 500, val_fraction: float | None = None,
             seed: int | None = None, tta: str = "none", tta_fraction: float = 1.0,
             snapshot: int | None = None) -> dict[str, Any]:
    """Top-1, top-5, per-class precision/recall/F1 and the confusion matrix of a trained run.

    ``tta`` averages the logits over test-time views (none | flip | flip-translate |
    translate), so a run trained with one kind can be scored with another afterwards;
    ``tta_fraction`` < 1 gives the views only to that share of the images, the least
    confident. ``snapshot``: score the weights kept after that epoch instead of the final ones.
    """
    from .evaluate.metrics import TTA_KINDS, classification_metrics, predict_logits

    if tta not in TTA_KINDS:
        raise ConfigError(f"--tta must be one of {', '.join(TTA_KINDS)}, got '{tta}'")
    if not 0 < tta_fraction <= 1:
        raise ConfigError(f"--tta-fraction must be a share in (0, 1], got {tta_fraction}")

    model = load_model(run_dir, snapshot)
    meta = model.meta
    ds = load_run_data(run_dir, meta, data=data, data_dir=data_dir, val_fraction=val_fraction,
                       seed=seed)
    part = ds.split(split)
    logits = predict_logits(model, part, batch_size=batch_size, tta=tta,
                            tta_fraction=tta_fraction)
    out = classification_metrics(logits, part.labels, meta.get("classes") or ds.classes)
    out.update({"run_dir": str(run_dir), "data": ds.name, "split": split,
                "model": meta["model"], "tta": tta, "tta_fraction": tta_fraction,
                "snapshot": snapshot})
    return out


def _saved_config(run_dir: str | Path):
    import yaml

    from .train.config import make_config

    path = Path(run_dir) / "config.yaml"
    try:
        return make_config(yaml.safe_load(path.read_text()) or {})
    except OSError as exc:
        raise CheckpointError(f"{run_dir} has no config.yaml: cannot tell which data it "
                              "used") from exc


def _image_files(paths: list[str | Path]) -> list[Path]:
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_EXTENSIONS
                           and not any(part.startswith(".") for part in f.relative_to(p).parts))
            if not found:
                raise DataError(f"no images in folder {p}")
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            raise DataError(f"image or folder not found: {p}")
    return files


@torch.no_grad()
def predict(run_dir: str | Path, images: list[str | Path] | str | Path, *,
            top_k: int = 3, batch_size: int = 256) -> list[dict[str, Any]]:
    """Top-k class names and probabilities for each image file (folders are searched)."""
    model = load_model(run_dir)
    meta = model.meta
    if isinstance(images, (str, Path)):
        images = [images]
    files = _image_files(list(images))
    classes = meta.get("classes") or [str(i) for i in range(meta["num_classes"])]
    k = max(1, min(top_k, len(classes)))
    results = []
    for i in range(0, len(files), batch_size):
        chunk = files[i:i + batch_size]
        x = torch.stack([decode_image(f, str(f), meta["in_chans"], tuple(meta["input_size"]))
                         for f in chunk]).float().div_(255.0)
        probs = model(x).float().softmax(1)
        top = probs.topk(k, dim=1)
        for f, p, idx in zip(chunk, top.values, top.indices, strict=True):
            results.append({"file": str(f), "top": [
                {"class": classes[j], "probability": round(float(q), 5)}
                for q, j in zip(p.tolist(), idx.tolist(), strict=True)]})
    return results
