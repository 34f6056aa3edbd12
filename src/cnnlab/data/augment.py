"""Batched data augmentation: every op takes a float batch (B, C, H, W) in [0, 1] and a
``torch.Generator`` and works on the whole batch with tensor ops (no per-image Python).

A pipeline is written as a list of specs, e.g. ``["crop:4", "flip"]``; :func:`build_augment`
turns it into one callable. Ops, with their arguments:

=====================  ===========================================================================
``crop:P``             pad P px (reflect), crop back at a random offset (Krizhevsky 2012 style)
``flip``               mirror a random half of the batch left-right
``altflip``            alternating flip (Jordan 2024): a fixed pseudo-random half of the images is
                       mirrored in even epochs, the other half in odd epochs, so every two epochs
                       each image is seen both ways (random flips repeat a view ~half the time)
``translate:N[,fill]`` shift by a random integer -N..N px in x and y; ``fill`` zero (default) or
                       reflect
``affine:D[,S[,H]]``   rotate ±D degrees, scale by 1±S, shear ±H degrees (x-shear); bilinear,
                       zero fill (F.affine_grid / F.grid_sample)
``color:S``            add a per-image, per-channel offset in ±S (RGB shift; on grey images a
                       brightness jitter), clamped to [0, 1]
``jitter:B[,C]``       brightness and contrast: add a per-image offset in ±B (the same for every
                       channel) and scale the image about its own mean by 1±C (default C = B),
                       clamped to [0, 1]; the CIFAR-10 speed-run record after airbench94_muon
                       (hiverge 2025) gained accuracy per step from it
``cutout:N``           zero an N×N square centred at a random pixel of each image (DeVries &
                       Taylor 2017: the square may hang over the border)
=====================  ===========================================================================

Randomness comes only from the generator, drawn on the CPU, so the same seed gives the same
batch on every device.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from ..errors import ConfigError, unknown

Op = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def _uniform(n: int, low: float, high: float, gen: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=gen, dtype=torch.float64).mul_(high - low).add_(low)


def _shift_crop(x: torch.Tensor, pad: int, mode: str, gen: torch.Generator) -> torch.Tensor:
    """Pad by ``pad`` and crop back to (H, W) at a random offset in 0..2·pad per image."""
    if pad == 0:
        return x
    b, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad), mode=mode)
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=gen)
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=gen)
    # one flat index per output pixel into the padded image, shared by the channels: a single
    # gather is ~3× faster than advanced indexing over (batch, row, column)
    wp = w + 2 * pad
    idx = ((dy[:, None, None] + torch.arange(h)[None, :, None]) * wp
           + dx[:, None, None] + torch.arange(w)[None, None, :]).to(x.device)  # (B, H, W)
    out = padded.flatten(2).gather(2, idx.flatten(1)[:, None, :].expand(-1, c, -1))
    return out.view(b, c, h, w)


def random_crop(pad: int) -> Op:
    """Pad by ``pad`` (reflect) and crop back at a random offset per image."""
    if pad < 0:
        raise ConfigError(f"crop padding must be ≥ 0, got {pad}")

    def op(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return _shift_crop(x, pad, "reflect", gen)

    return op


def hflip(p: float = 0.5) -> Op:
    """Mirror a random half of the batch left-right."""

    def op(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        mask = (torch.rand(x.shape[0], generator=gen) < p).to(x.device)
        return torch.where(mask[:, None, None, None], x.flip(3), x)

    return op


def alternating_flip() -> Op:
    """Mirror image i in epoch e iff hash(i) XOR (e mod 2): needs the loader's indices/epoch.

    Without them (a caller outside :class:`~cnnlab.data.Loader`) it is a random flip.
    """

    def op(x: torch.Tensor, gen: torch.Generator, idx: torch.Tensor | None = None,
           epoch: int = 0) -> torch.Tensor:
        if idx is None:
            mask = torch.rand(x.shape[0], generator=gen) < 0.5
        else:  # Knuth's multiplicative hash: a fixed, well-mixed bit per image index
            mask = (((idx.long() * 2654435761) >> 16) & 1).bool() ^ bool(epoch % 2)
        return torch.where(mask.to(x.device)[:, None, None, None], x.flip(3), x)

    op.wants_index = True  # type: ignore[attr-defined]
    return op


def translate(shift: int, fill: str = "zero") -> Op:
    """Shift each image by a random integer offset in -shift..shift px (x and y independently).

    ``fill``: ``zero`` (the uncovered border is black) or ``reflect`` (mirrored border).
    """
    modes = {"zero": "constant", "zeros": "constant", "constant": "constant",
             "reflect": "reflect"}
    if shift < 0:
        raise ConfigError(f"translate shift must be ≥ 0, got {shift}")
    if fill not in modes:
        raise ConfigError(f"translate fill must be zero or reflect, got '{fill}'")
    mode = modes[fill]

    def op(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return _shift_crop(x, int(shift), mode, gen)

    return op


def affine(degrees: float, scale: float = 0.0, shear: float = 0.0) -> Op:
    """Random rotation ±``degrees``, scaling 1±``scale``, x-shear ±``shear`` degrees per image.

    The forward map is A = R(θ)·Sh(φ)·S(s) about the image centre, in pixel units (so a rotation
    of a non-square image stays a rotation); grid_sample needs the inverse, output → input.
    """
    if degrees < 0 or shear < 0 or not 0 <= scale < 1:
        raise ConfigError(f"affine needs DEG ≥ 0, 0 ≤ SCALE < 1, SHEAR ≥ 0; got {degrees}, "
                          f"{scale}, {shear}")

    def op(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        b, _, h, w = x.shape
        theta = _uniform(b, -degrees, degrees, gen) * (math.pi / 180)
        s = _uniform(b, 1 - scale, 1 + scale, gen)
        phi = _uniform(b, -shear, shear, gen) * (math.pi / 180)
        cos, sin, tan = theta.cos(), theta.sin(), phi.tan()
        # A = R @ Sh @ S with R = [[c, -s], [s, c]], Sh = [[1, tan], [0, 1]], S = s·I
        a = torch.stack([torch.stack([cos, cos * tan - sin], -1),
                         torch.stack([sin, sin * tan + cos], -1)], -2) * s[:, None, None]
        inv = torch.linalg.inv(a)  # (B, 2, 2), float64
        # pixel → normalized coordinates: x_norm = x_pix / (W/2); conjugate the inverse map
        t = torch.tensor([w / 2, h / 2], dtype=torch.float64)
        inv = inv * t[None, None, :] / t[None, :, None]
        mat = torch.cat([inv, torch.zeros(b, 2, 1, dtype=torch.float64)], 2)
        grid = F.affine_grid(mat.to(x.dtype).to(x.device), list(x.shape), align_corners=False)
        out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        return out.clamp_(0.0, 1.0)

    return op


def color(strength: float) -> Op:
    """Add a random offset in ±``strength`` to each channel of each image, then clamp to [0, 1]."""
    if strength < 0:
        raise ConfigError(f"color strength must be ≥ 0, got {strength}")

    def op(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        b, c = x.shape[:2]
        shift = _uniform(b * c, -strength, strength, gen).view(b, c, 1, 1)
        return (x + shift.to(x.dtype).to(x.device)).clamp_(0.0, 1.0)

    return op


def jitter(brightness: float, contrast: float | None = None) -> Op:
    """Shift each image's brightness by ±``brightness`` and scale its contrast by
    1±``contrast`` about its mean, all channels alike (so colours keep their hue)."""
    contrast = brightness if contrast is None else contrast
    if brightness < 0 or not 0 <= contrast < 1:
        raise ConfigError(f"jitter needs brightness ≥ 0 and contrast in [0, 1), got "
                          f"{brightness}, {contrast}")

    def op(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        b = x.shape[0]
        shift = _uniform(b, -brightness, brightness, gen).view(b, 1, 1, 1)
        scale = _uniform(b, 1.0 - contrast, 1.0 + contrast, gen).view(b, 1, 1, 1)
        shift, scale = shift.to(x.dtype).to(x.device), scale.to(x.dtype).to(x.device)
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        # (x - mean) * scale + mean + shift, as one multiply-add per pixel
        return torch.addcmul(mean * (1.0 - scale) + shift, x, scale).clamp_(0.0, 1.0)

    return op


def cutout(size: int) -> Op:
    """Zero a ``size``×``size`` square centred at a uniformly random pixel of each image."""
    if size < 0:
        raise ConfigError(f"cutout size must be ≥ 0, got {size}")

    def op(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        if size == 0:
            return x
        b, _, h, w = x.shape
        cy = torch.randint(0, h, (b,), generator=gen)
        cx = torch.randint(0, w, (b,), generator=gen)
        y0, x0 = cy - size // 2, cx - size // 2
        ys, xs = torch.arange(h), torch.arange(w)
        in_y = (ys[None] >= y0[:, None]) & (ys[None] < (y0 + size)[:, None])  # (B, H)
        in_x = (xs[None] >= x0[:, None]) & (xs[None] < (x0 + size)[:, None])  # (B, W)
        hole = (in_y[:, :, None] & in_x[:, None, :]).to(x.device)
        return x.masked_fill(hole[:, None], 0.0)

    return op


OPS: dict[str, Callable[..., Op]] = {"crop": random_crop, "flip": hflip,
                                     "altflip": alternating_flip, "translate": translate,
                                     "affine": affine, "color": color, "jitter": jitter,
                                     "cutout": cutout}


def parse_spec(spec: str) -> tuple[str, list[float | str]]:
    """``"affine:10,0.1,5"`` → ``("affine", [10.0, 0.1, 5.0])``; non-numbers stay strings."""
    name, _, args = spec.partition(":")
    values: list[float | str] = []
    for a in (args.split(",") if args else []):
        a = a.strip()
        try:
            values.append(float(a))
        except ValueError:
            values.append(a.lower())
    return name.strip().lower(), values


def build_augment(specs: Sequence[str] | str | None) -> Op | None:
    """Turn ``["crop:4", "flip"]`` (or ``"crop:4+flip"``) into one batched op."""
    if not specs:
        return None
    if isinstance(specs, str):
        specs = [s for s in specs.split("+") if s]
    ops: list[Op] = []
    for spec in specs:
        name, args = parse_spec(spec)
        if name not in OPS:
            raise ConfigError(unknown("augmentation", name, OPS))
        values = [int(a) if isinstance(a, float) and a.is_integer() else a for a in args]
        try:
            ops.append(OPS[name](*values))
        except TypeError as exc:  # too many arguments, or a word where a number goes
            import inspect

            params = ", ".join(inspect.signature(OPS[name]).parameters)
            raise ConfigError(f"bad arguments for augmentation '{spec}': {name} takes "
                              f"({params}); {exc}") from exc

    def pipeline(x: torch.Tensor, gen: torch.Generator, idx: torch.Tensor | None = None,
                 epoch: int = 0) -> torch.Tensor:
        """``idx``/``epoch``: which images of the split these are, for ops that need it."""
        for op in ops:
            x = op(x, gen, idx, epoch) if getattr(op, "wants_index", False) else op(x, gen)
        return x

    return pipeline
