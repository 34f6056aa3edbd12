"""``cnnlab transfer``: one entry point for the four modes, and the compare sweep.

Every mode sees the same target split: for each ``per_class`` value and seed, one seeded
per-class sample of the target's training split; accuracy is always on the full target test
split. Rows report mean ± std (population std) over seeds.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from pathlib import Path

from ..errors import CnnlabError, ConfigError
from .data import load_target, parse_per_class, per_class_subset
from .features import HEAD_INPUT, extract_features, resolve_layers
from .finetune import MIN_STEPS, finetune
from .linear import fit_linear

MODES = ("features", "finetune", "scratch", "compare")


def load_backbone(source: str | Path, weights: str | Path | None = None):
    """A cnnlab run directory's model, or a torchvision/timm backbone (``tv:NAME``,
    ``timm:NAME[@WEIGHTS]``, the optional extra 'hub'), in eval mode.

    ``weights`` (a local .safetensors/.pth file, a weights tag or 'none') is for hub backbones
    only: a run directory carries its own weights.
    """
    from ..api import load_model
    from .hub import is_hub_spec, load_hub_backbone

    path = Path(source).expanduser()
    if path.is_dir():
        if weights is not None:
            raise ConfigError(f"weights='{weights}' is for tv:/timm: backbones; the run "
                              f"directory '{source}' carries its own weights")
        return load_model(path)
    if is_hub_spec(str(source)):
        return load_hub_backbone(str(source), weights=weights)
    hint = (f" (a hub model is written tv:{source} or timm:{source})"
            if str(source).replace("_", "").replace(".", "").isalnum() else "")
    raise CnnlabError(f"--from '{source}' is not a cnnlab run directory{hint}; pass a run "
                      "directory made by `cnnlab train`, or a torchvision/timm ImageNet backbone "
                      "as tv:NAME or timm:NAME[@WEIGHTS] (needs the optional extra 'hub': "
                      "pip install 'cnnlab[hub]')")


def _stats(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values),
            "std": statistics.pstdev(values) if len(values) > 1 else 0.0,
            "accuracies": values}


def transfer(source: str | object, target: str, *, mode: str = "features",
             layer: str | None = None, per_class: str | Sequence[int | None] | None = None,
             seeds: int = 1, classes: Sequence[int | str] | None = None,
             data_dir: str | None = None, classifier: str = "logreg", epochs: int = 10,
             freeze_epochs: int = 2, lr: float = 3e-3, backbone_lr_scale: float = 0.1,
             bn: str = "auto", batch_size: int = 64, min_steps: int = MIN_STEPS,
             weights: str | Path | None = None,
             log: Callable[[str], None] | None = None) -> dict:
    """Transfer ``source`` (a run directory, ``tv:NAME``/``timm:NAME[@WEIGHTS]`` or a loaded
    model) to ``target``; ``weights`` is a hub backbone's local weights file (see
    :func:`load_backbone`).

    Returns ``{"rows": [...], "notes": [...], ...}``; each row has mode, layer, per_class
    (``"all"`` for every image), mean, std and the per-seed accuracies.
    """
    if mode not in MODES:
        raise ConfigError(f"unknown --mode '{mode}'; choose from {', '.join(MODES)}")
    if seeds < 1:
        raise ConfigError(f"--seeds must be ≥ 1, got {seeds}")
    log = log or (lambda _msg: None)
    model = load_backbone(source, weights) if isinstance(source, (str, Path)) else source
    layers = resolve_layers(model, layer) if mode in ("features", "compare") else []
    if mode == "compare" and layer == "all":
        raise ConfigError("--mode compare uses one feature layer; run --mode features "
                          "--layer all for the per-layer curve")
    shots = parse_per_class(per_class)
    ds, notes = load_target(target, model, data_dir=data_dir, classes=classes)
    for note in notes:
        log(note)
    # check every per-class request up front, before any training
    for n in shots:
        per_class_subset(ds.train, n, 0, ds.classes)
    modes = ["scratch", "features", "finetune"] if mode == "compare" else [mode]
    test_feats = extract_features(model, ds.test, layers) if layers else {}
    acc: dict[tuple, list[float]] = {}
    extra: dict[tuple, dict] = {}
    for n in shots:
        for seed in range(seeds):
            train = per_class_subset(ds.train, n, seed, ds.classes)
            tag = "all" if n is None else n
            for m in modes:
                if m == "features":
                    feats = extract_features(model, train, layers)
                    for name in layers:
                        r = fit_linear(feats[name], train.labels.numpy(), test_feats[name],
                                       ds.test.labels.numpy(), classifier=classifier, seed=seed)
                        acc.setdefault((m, name, tag), []).append(r["accuracy"])
                        extra.setdefault((m, name, tag), {}).setdefault("C", []).append(r["C"])
                        log(f"features[{name}] per-class={tag} seed={seed}: "
                            f"{r['accuracy']:.4f} (C={r['C']:g})")
                else:
                    r = finetune(model, train, ds.test, ds.num_classes, epochs=epochs,
                                 freeze_epochs=freeze_epochs, lr=lr,
                                 backbone_lr_scale=backbone_lr_scale, bn=bn,
                                 batch_size=batch_size, seed=seed, scratch=m == "scratch",
                                 min_steps=min_steps)
                    acc.setdefault((m, "all-layers", tag), []).append(r["accuracy"])
                    extra.setdefault((m, "all-layers", tag), {})["bn"] = r["bn"]
                    log(f"{m} per-class={tag} seed={seed}: {r['accuracy']:.4f}")
    rows = []
    for (m, name, tag), values in acc.items():
        row = {"mode": m, "layer": name, "per_class": tag,
               "train_images": (len(ds.train) if tag == "all" else tag * ds.num_classes),
               **_stats(values), **extra.get((m, name, tag), {})}
        rows.append(row)
    return {"source": str(source) if isinstance(source, (str, Path)) else type(source).__name__,
            "model": getattr(model, "meta", {}).get("model", type(model).__name__),
            "target": ds.name, "classes": ds.classes, "mode": mode, "seeds": seeds,
            "test_images": len(ds.test), "layers": layers or None, "notes": notes,
            "default_layer": HEAD_INPUT, "rows": rows}
