"""Riemannian SGD for convolution kernels constrained to a manifold.

M. Ozay, T. Okatani, "Optimization on Submanifolds of Convolution Kernels in CNNs",
arXiv:1610.07008, 2016 (and "Training CNNs with Normalized Kernels", AAAI 2018).

A kernel W of shape (cout, cin, k, k) is read as a matrix and kept on one of three manifolds:

* ``sphere``  — every output filter W[o] (flattened, n = cin·k·k values) has unit norm: a product
  of spheres S^{n-1}.
* ``oblique`` — every 2-D kernel W[o, i] (k·k values) has unit norm: the oblique manifold
  OB(k², cout·cin) of matrices with unit-norm columns.
* ``stiefel`` — the (cout, n) matrix has orthonormal rows, W Wᵀ = I, when cout ≤ n; when a layer
  has more filters than inputs (cout > n, e.g. a first layer 3→64) the columns are orthonormal
  instead, Wᵀ W = I.

One step at a point W with Euclidean gradient G (Absil, Mahony & Sepulchre 2008, ch. 3–4):

1. Riemannian gradient: ξ = P_W(G), the orthogonal projection onto the tangent space at W;
   sphere/oblique: g − ⟨w, g⟩ w per unit vector; Stiefel (tall X, XᵀX = I): G − X sym(XᵀG).
2. Momentum: m ← μ · P_W(m) + ξ — the old momentum lives in the previous tangent space; projecting
   it onto the current one is vector transport by projection.
3. Retraction: W ← R_W(−lr · m); renormalisation for sphere/oblique, the Q factor of a QR
   decomposition (signs fixed so that diag R > 0) for Stiefel, computed in float64 so that
   W Wᵀ = I holds to ~1e-7 in float32 however many steps are taken.

:class:`RiemannianSGD` treats a parameter as constrained when it is tagged ``p._manifold`` (what
:class:`cnnlab.models.layers.ManifoldConv2d` does) or listed in ``manifolds=``; every other
parameter gets exactly ``torch.optim.SGD``'s update, so one optimizer trains a whole network.
Weight decay is not applied to constrained kernels (their norm is fixed by the manifold).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import nn

from .eager import EagerOptimizer

MANIFOLDS = ("sphere", "oblique", "stiefel")


def check_manifold(manifold: str) -> str:
    if manifold not in MANIFOLDS:
        raise ValueError(f"unknown manifold '{manifold}'; choose from {', '.join(MANIFOLDS)}")
    return manifold


def _unit_rows(manifold: str, w: torch.Tensor) -> torch.Tensor:
    """The matrix whose rows must have unit norm (sphere: one row per filter; oblique: per 2-D
    kernel)."""
    if manifold == "sphere":
        return w.reshape(w.shape[0], -1)
    return w.reshape(w.shape[0] * w.shape[1], -1) if w.ndim > 2 else w.reshape(w.shape[0], -1)


def _tall(w: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """Stiefel view: a tall matrix X with orthonormal columns, and whether it is Wᵀ."""
    m = w.reshape(w.shape[0], -1)
    return (m.t(), True) if m.shape[0] <= m.shape[1] else (m, False)


def _from_tall(x: torch.Tensor, transposed: bool, like: torch.Tensor) -> torch.Tensor:
    return (x.t() if transposed else x).reshape(like.shape)


def project(manifold: str, w: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Orthogonal projection of ``g`` onto the tangent space of the manifold at ``w``."""
    if manifold in ("sphere", "oblique"):
        wr, gr = _unit_rows(manifold, w), _unit_rows(manifold, g)
        return (gr - (wr * gr).sum(1, keepdim=True) * wr).reshape(g.shape)
    check_manifold(manifold)
    x, t = _tall(w)
    gx, _ = _tall(g)
    xtg = x.t() @ gx
    return _from_tall(gx - x @ (0.5 * (xtg + xtg.t())), t, g)


def retract(manifold: str, w: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """R_w(v): the point reached from ``w`` along tangent vector ``v``, back on the manifold."""
    return to_manifold(manifold, w + v)


def to_manifold(manifold: str, w: torch.Tensor) -> torch.Tensor:
    """A point on the manifold near ``w`` (normalisation, or QR's Q factor for Stiefel)."""
    if manifold in ("sphere", "oblique"):
        rows = _unit_rows(manifold, w)
        return (rows / rows.norm(dim=1, keepdim=True).clamp_min(1e-12)).reshape(w.shape)
    check_manifold(manifold)
    x, t = _tall(w.double())
    q, r = torch.linalg.qr(x)
    sign = torch.sign(torch.diagonal(r))
    q = q * torch.where(sign == 0, torch.ones_like(sign), sign)  # unique Q: diag(R) > 0
    return _from_tall(q, t, w).to(w.dtype)


def constraint_error(manifold: str, w: torch.Tensor) -> float:
    """Largest deviation from the constraint (0 on the manifold): |‖row‖ − 1| or |XᵀX − I|."""
    w = w.detach().double()
    if manifold in ("sphere", "oblique"):
        return float((_unit_rows(manifold, w).norm(dim=1) - 1).abs().max())
    x, _ = _tall(w)
    eye = torch.eye(x.shape[1], dtype=x.dtype)
    return float((x.t() @ x - eye).abs().max())


def manifold_map(model: nn.Module) -> dict[int, str]:
    """``{id(param): manifold}`` for every module that declares ``manifold`` on its ``weight``.

    Use it when tags may have been lost (``copy.deepcopy`` does not copy tensor attributes)."""
    found = {}
    for module in model.modules():
        kind = getattr(module, "manifold", None)
        if kind in MANIFOLDS and isinstance(getattr(module, "weight", None), torch.Tensor):
            found[id(module.weight)] = kind
    return found


class RiemannianSGD(EagerOptimizer):
    """SGD with momentum on a product of manifolds and Euclidean space.

    ``params`` are parameters or param groups, as for ``torch.optim.SGD``. A parameter is
    constrained when ``manifolds`` (``{param: name}`` or the result of :func:`manifold_map`)
    names it, else when it carries the tag ``param._manifold``.
    """

    def __init__(self, params: Iterable, lr: float = 0.01, momentum: float = 0.0,
                 weight_decay: float = 0.0,
                 manifolds: Mapping[torch.Tensor, str] | Mapping[int, str] | None = None) -> None:
        self.check_lr_momentum(lr, momentum)
        super().__init__(params, {"lr": lr, "momentum": momentum, "weight_decay": weight_decay})
        self._manifolds = {(k if isinstance(k, int) else id(k)): check_manifold(v)
                           for k, v in (manifolds or {}).items()}

    def manifold_of(self, p: torch.Tensor) -> str | None:
        kind = self._manifolds.get(id(p), getattr(p, "_manifold", None))
        return check_manifold(kind) if kind is not None else None

    def update(self) -> None:
        for group in self.param_groups:
            lr, mu, wd = group["lr"], group["momentum"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                kind = self.manifold_of(p)
                state = self.state[p]
                if kind is None:  # torch.optim.SGD's update (dampening 0, no Nesterov)
                    d = p.grad.add(p, alpha=wd) if wd else p.grad
                    if mu:
                        buf = state.get("momentum_buffer")
                        d = d.clone() if buf is None else buf.mul_(mu).add_(d)
                        state["momentum_buffer"] = d
                    p.add_(d, alpha=-lr)
                    continue
                d = project(kind, p, p.grad)
                if mu:
                    buf = state.get("momentum_buffer")
                    d = d.clone() if buf is None else project(kind, p, buf).mul_(mu).add_(d)
                    state["momentum_buffer"] = d
                p.copy_(retract(kind, p, -lr * d))
