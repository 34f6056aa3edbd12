"""Do the classes separate as you go up the layers? (Donahue et al., DeCAF, ICML 2014, Fig. 1.)

For the input pixels (stage 0, "input") and each ``feature_layers()`` stage, on the same images:

* **features** — the stage's activations, global-average-pooled to one value per channel (a
  stage without spatial axes is used as it is); the pixels are flattened, average-pooled first
  when they exceed ``max_input_dims`` values;
* **linear-probe accuracy** — a logistic regression (scikit-learn) trained on one half of the
  images and scored on the other half (stratified, seeded): how linearly decodable the class is;
* **Fisher ratio** — trace(S_B) / trace(S_W), between-class over within-class scatter, of the
  z-scored features (each dimension to unit variance, so one loud channel cannot dominate and
  the ratio is comparable across stages of different width);
* **2-D embedding** — PCA (default) or t-SNE of the z-scored features, to plot coloured by class.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .common import as_batch, evaluating, feature_layers

EMBEDDINGS = ("pca", "tsne")


@torch.no_grad()
def stage_features(model: nn.Module, images: torch.Tensor, *, batch_size: int = 256,
                   max_input_dims: int = 3072) -> dict[str, torch.Tensor]:
    """``{"input": (N, D0), stage name: (N, channels), …}`` in depth order (see module doc)."""
    layers = feature_layers(model)
    store: dict[str, torch.Tensor] = {}

    def make_hook(name: str):
        def hook(_m, _inputs, output):
            out = output.float()
            store[name] = out.mean(dim=(2, 3)) if out.dim() == 4 else out.flatten(1)
        return hook

    handles = [model.get_submodule(info.module).register_forward_hook(make_hook(info.name))
               for info in layers]
    feats: dict[str, list[torch.Tensor]] = {"input": [], **{info.name: [] for info in layers}}
    try:
        with evaluating(model):
            for i in range(0, len(images), batch_size):
                x = as_batch(images[i:i + batch_size])
                model(x)
                c, h, w = x.shape[1:]
                if c * h * w > max_input_dims:
                    side = max(1, int((max_input_dims / c) ** 0.5))
                    x = F.adaptive_avg_pool2d(x, (min(side, h), min(side, w)))
                feats["input"].append(x.flatten(1).cpu())
                for info in layers:
                    feats[info.name].append(store.pop(info.name).cpu())
    finally:
        for h in handles:
            h.remove()
    return {k: torch.cat(v) for k, v in feats.items()}


def _zscore(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    std = x.std(0)
    keep = std > 1e-8 * max(1.0, float(np.abs(x).max()))
    return (x[:, keep] - x[:, keep].mean(0)) / std[keep] if keep.any() else x[:, :1] * 0


def fisher_ratio(feats: np.ndarray, labels: np.ndarray) -> float:
    """trace(S_B) / trace(S_W) of the z-scored features (0 when the classes coincide)."""
    z = _zscore(np.asarray(feats))
    labels = np.asarray(labels)
    mu = z.mean(0)
    between = within = 0.0
    for c in np.unique(labels):
        zc = z[labels == c]
        mc = zc.mean(0)
        between += len(zc) * float(((mc - mu) ** 2).sum())
        within += float(((zc - mc) ** 2).sum())
    return between / within if within > 0 else float("inf") if between > 0 else 0.0


def linear_probe(feats: np.ndarray, labels: np.ndarray, *, seed: int = 0,
                 test_fraction: float = 0.5) -> float:
    """Accuracy of a logistic regression trained on one part and tested on the other."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    labels = np.asarray(labels)
    counts = np.bincount(labels)
    stratify = labels if counts[counts > 0].min() >= 2 else None
    xtr, xte, ytr, yte = train_test_split(np.asarray(feats, dtype=np.float64), labels,
                                          test_size=test_fraction, random_state=seed,
                                          stratify=stratify)
    if len(np.unique(ytr)) < 2:
        return float((yte == ytr[0]).mean())
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300, C=1.0))
    with warnings.catch_warnings():
        # A probe stopped at max_iter is still a fair probe; the warning would only alarm.
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(xtr, ytr)
    return float(clf.score(xte, yte))


def embed_2d(feats: np.ndarray, method: str = "pca", seed: int = 0) -> np.ndarray:
    """(N, 2) PCA or t-SNE coordinates of the z-scored features."""
    z = _zscore(np.asarray(feats))
    if method == "pca":
        from sklearn.decomposition import PCA

        if z.shape[1] < 2:
            return np.pad(z, ((0, 0), (0, 2 - z.shape[1])))
        return PCA(n_components=2, random_state=seed).fit_transform(z)
    if method == "tsne":
        from sklearn.manifold import TSNE

        perplexity = float(min(30.0, max(2.0, (len(z) - 1) / 4)))
        return TSNE(n_components=2, init="pca", perplexity=perplexity,
                    random_state=seed).fit_transform(z)
    raise ConfigError(f"unknown embedding '{method}'; choose from {', '.join(EMBEDDINGS)}")


def separability(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *,
                 embed: str = "pca", seed: int = 0, batch_size: int = 256) -> dict:
    """Per stage (input first): ``name``, ``depth`` (0 = input), ``dims``, ``probe_accuracy``,
    ``fisher_ratio`` and ``embedding`` (N, 2); plus ``chance`` (the majority-class share) and
    ``n`` (images used)."""
    if embed not in EMBEDDINGS:
        raise ConfigError(f"unknown embedding '{embed}'; choose from {', '.join(EMBEDDINGS)}")
    y = labels.cpu().numpy().astype(np.int64)
    feats = stage_features(model, images, batch_size=batch_size)
    stages = []
    for depth, (name, f) in enumerate(feats.items()):
        arr = f.numpy()
        stages.append({"name": name, "depth": depth, "dims": int(arr.shape[1]),
                       "probe_accuracy": linear_probe(arr, y, seed=seed),
                       "fisher_ratio": fisher_ratio(arr, y),
                       "embedding": embed_2d(arr, embed, seed)})
    chance = float(np.bincount(y).max() / len(y)) if len(y) else 0.0
    return {"stages": stages, "chance": chance, "n": int(len(y)), "embed": embed}
