"""ZCA whitening (Krizhevsky 2009, "Learning Multiple Layers of Features from Tiny Images", §A;
Coates & Ng 2011): decorrelate the pixels of whole images while staying close to the originals.

Fitted on the training split only, in float64, on images scaled to [0, 1] and flattened to
D = C·H·W values::

    mu  = mean(X)                         (D,)
    Cov = (X - mu)ᵀ (X - mu) / N          (D, D)
    Cov = U diag(λ) Uᵀ                    eigendecomposition (symmetric: ``eigh``)
    W   = U diag(1 / sqrt(λ + eps)) Uᵀ    (D, D), symmetric

and applied by the model's first layer, ``InputNorm(kind="zca")``: ``(x.flatten(1) - mu) @ W``.
Because W is symmetric, ``@ W`` and ``@ Wᵀ`` are the same thing.

``eps`` is in the units of the eigenvalues: variance of [0, 1] pixel values. It caps the gain of
directions with less variance than ``eps`` (fine detail and noise), so whitening does not blow
them up: with the default 1e-2 a direction is amplified at most 1/sqrt(0.01) = 10×. Smaller
``eps`` whitens more completely (covariance closer to the identity) but amplifies noise.
"""

from __future__ import annotations

import torch

from ..errors import DataError
from .dataset import Split

MAX_DIM = 8192  # D×D float64 covariance = 512 MiB at this size: beyond it use a smaller image


def fit_zca(split: Split, eps: float = 1e-2, max_images: int = 10000, seed: int = 0,
            max_dim: int = MAX_DIM, chunk: int = 2048) -> dict[str, torch.Tensor]:
    """``{"zca_mean": (D,), "zca_matrix": (D, D)}`` as float32, ready for ``InputNorm.set_stats``.

    ``max_images``: a seeded random subset of at most that many training images is used (N ≫ D
    is what matters: 10,000 CIFAR images for D = 3,072; all 50,000 cost 5× the time for a
    whitening that, at eps=1e-2, differs invisibly). The covariance is accumulated over chunks of
    ``chunk`` images, so memory stays at a few D×D float64 matrices.
    """
    n = len(split)
    if n < 2:
        raise DataError("ZCA whitening needs at least 2 training images")
    if eps <= 0:
        raise DataError(f"ZCA eps must be positive, got {eps}")
    dim = int(split.images[0].numel())
    if dim > max_dim:
        raise DataError(f"ZCA whitening of {tuple(split.images.shape[1:])} images needs a "
                        f"{dim:,}×{dim:,} matrix; use --image-size to shrink them (at most "
                        f"{max_dim:,} values per image) or --norm standardize")
    images = split.images
    if n > max_images:
        idx = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:max_images]
        images = images[idx.sort().values]
    flat = images.reshape(images.shape[0], -1)
    m = flat.shape[0]
    mean = torch.zeros(dim, dtype=torch.float64)
    for i in range(0, m, chunk):
        mean += flat[i:i + chunk].to(torch.float64).sum(0)
    mean /= m * 255.0
    cov = torch.zeros(dim, dim, dtype=torch.float64)
    for i in range(0, m, chunk):
        x = flat[i:i + chunk].to(torch.float64).div_(255.0).sub_(mean)
        cov.addmm_(x.T, x)
    cov /= m
    evals, evecs = torch.linalg.eigh(cov)
    evals = evals.clamp_min(0.0)  # round-off can leave tiny negative eigenvalues
    w = (evecs * (evals + eps).rsqrt()) @ evecs.T
    w = (w + w.T) / 2  # exactly symmetric despite round-off
    return {"zca_mean": mean.float(), "zca_matrix": w.float()}


def zca_apply(x: torch.Tensor, stats: dict[str, torch.Tensor]) -> torch.Tensor:
    """Whiten a float batch in [0, 1] like ``InputNorm(kind="zca")`` does (for analysis/tests)."""
    flat = x.flatten(1) - stats["zca_mean"].to(x.dtype)
    return (flat @ stats["zca_matrix"].to(x.dtype)).view_as(x)
