"""``cnnlab attack``: one function from a run directory to numbers, a gallery and a curve.

The model comes from the run (:func:`cnnlab.load_model`, eval mode), its data from the run's
``config.yaml`` (or ``data=``), and the images attacked are ``n`` test images drawn at random
with ``seed`` (a class-sorted image folder still gives every class; the draw is the same for
every method, so their figures compare). Outputs go to ``out`` (default ``RUN/attack-<method>/``,
replaced on a rerun): ``result.json``, ``gallery.png``, and with several budgets or patch sizes
``curve.json`` + ``curve.png``.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError
from .eot import TransformDist, compare_under_transforms, eot_pgd
from .gallery import gallery_indices, save_gallery
from .gradient import NORMS, check_budget, check_steps
from .metrics import attack_metrics, predict_probs
from .patch import apply_patch, check_patch_size, patch_curve, placement_theta
from .robustness import plot_curve, robustness_curve
from .universal import ALGORITHMS as UNIVERSAL_ALGORITHMS
from .universal import (
    apply_universal,
    fooling_rate,
    random_perturbation,
    universal_perturbation,
)

METHODS = ("fgsm", "pgd", "universal", "patch", "eot")
DEFAULT_STEPS = {"fgsm": 1, "pgd": 40, "universal": 5, "patch": 300, "eot": 50}
DEFAULT_PATCH_SIZES = (0.1, 0.2, 0.3, 0.4)


def default_eps(norm: str, in_chans: int) -> float:
    """The usual budgets: MNIST-like (1 channel) 0.3 L∞ / 2.0 L2; colour 8/255 L∞ / 0.5 L2."""
    if norm == "linf":
        return 0.3 if in_chans == 1 else 8 / 255
    return 2.0 if in_chans == 1 else 0.5


def parse_numbers(text: str | float | list, flag: str = "--eps") -> list[float]:
    """``"0.1,0.2"``, ``"8/255"`` or a number/list → floats; anything else is a ConfigError."""
    if isinstance(text, (int, float)):
        return [float(text)]
    if isinstance(text, (list, tuple)):
        return [v for item in text for v in parse_numbers(item, flag)]
    values = []
    for part in str(text).replace(" ", "").split(","):
        try:
            values.append(float(Fraction(part)))
        except (ValueError, ZeroDivisionError):
            raise ConfigError(f"{flag} takes numbers separated by commas (fractions like 8/255 "
                              f"are fine), got '{text}'") from None
    return values


def resolve_class(spec: str | int | None, classes: list[str]) -> int | None:
    """A class name (case-insensitive) or index → index; unknown → error listing the names."""
    if spec is None:
        return None
    text = str(spec).strip()
    for i, name in enumerate(classes):
        if text.lower() == str(name).lower():
            return i
    if text.lstrip("-").isdigit() and 0 <= int(text) < len(classes):
        return int(text)
    raise ConfigError(f"--targeted {text}: no such class; the model's {len(classes)} classes are "
                      f"{', '.join(map(str, classes))} (or an index 0–{len(classes) - 1})")


def load_run_data(run: str | Path, model: nn.Module, data: str | None = None,
                  data_dir: str | None = None):
    """The run's data set (or ``data`` with the same classes and image shape)."""
    from ..api import load_run_data as load

    return load(run, model.meta, data=data, data_dir=data_dir)


def sample(split, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` images of ``split`` drawn at random (seeded, kept in split order), in [0, 1]."""
    idx = torch.arange(len(split))
    if n < len(split):
        idx = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed))[:n]
        idx = idx.sort().values
    return split.images[idx].float().div(255.0), split.labels[idx]


def run_attack(run: str | Path, *, method: str, eps: Any = None, norm: str = "linf",
               steps: int | None = None, step_size: float | None = None,
               targeted: str | int | None = None, data: str | None = None,
               data_dir: str | None = None, n: int = 1000, n_train: int = 1000,
               patch_size: Any = None, samples: int = 10, draws: int = 20,
               algorithm: str = "sgd", restarts: int = 1,
               batch_size: int = 250, seed: int = 0, out: str | Path | None = None,
               gallery: bool = True) -> dict[str, Any]:
    """Attack the model of ``run`` with ``method`` and report (see :mod:`.metrics`).

    ``eps``: one budget or several (a curve; the headline figures are the largest ε's).
    ``steps``: PGD/EOT iterations, patch optimizer steps, universal passes over the
    ``n_train`` training images. ``targeted``: class name or index (patch: default class 0).
    ``patch_size``: patch side(s) as fractions of the image side. ``samples``: EOT transforms
    per step; ``draws``: fresh transforms per image when measuring EOT. ``algorithm``: how the
    universal perturbation is computed, ``sgd`` or the paper's ``deepfool`` (see
    :mod:`.universal`). ``restarts``: PGD from that many random starts, the worst case per
    image counted.
    """
    from ..api import load_model

    if method not in METHODS:
        raise ConfigError(f"--method must be one of {', '.join(METHODS)}, got '{method}'")
    if norm not in NORMS:
        raise ConfigError(f"--norm must be one of {', '.join(NORMS)}, got '{norm}'")
    for value, flag in ((n, "--n"), (n_train, "--n-train"), (samples, "--samples"),
                        (draws, "--draws"), (batch_size, "--batch-size"),
                        (restarts, "--restarts")):
        check_steps(value, flag)
    steps = DEFAULT_STEPS[method] if steps is None else steps
    check_steps(steps)
    if step_size is not None and not step_size > 0:
        raise ConfigError(f"--step-size must be > 0, got {step_size}")
    if algorithm not in UNIVERSAL_ALGORITHMS:
        raise ConfigError(f"--algorithm must be one of {', '.join(UNIVERSAL_ALGORITHMS)}, got "
                          f"'{algorithm}'")
    if method == "universal" and targeted is not None:
        raise ConfigError("--targeted: universal perturbations here are untargeted "
                          "(the paper's fooling rate counts any label change)")
    if restarts > 1 and method != "pgd":
        raise ConfigError("--restarts applies to --method pgd only")
    if method == "patch" and norm != "linf":
        raise ConfigError("--norm does not apply to --method patch (its budget is its size)")

    model = load_model(run)
    shape = (model.meta["in_chans"], *model.meta["input_size"])
    eps_values = sorted(parse_numbers(eps if eps is not None else default_eps(norm, shape[0])))
    for e in eps_values:
        check_budget(e, norm, shape)
    sizes = sorted(parse_numbers(patch_size if patch_size is not None else
                                 list(DEFAULT_PATCH_SIZES), "--patch-size"))
    if method == "patch":
        for s in sizes:
            check_patch_size(s, shape[1:])
    classes = list(model.classes or [str(i) for i in range(model.meta["num_classes"])])
    target = resolve_class(targeted, classes)
    if method == "patch" and target is None:
        target = 0

    ds = load_run_data(run, model, data, data_dir)
    x, y = sample(ds.test, n, seed)
    out_dir = Path(out) if out else Path(run) / f"attack-{method}"
    common = dict(method=method, norm=norm, steps=steps, target=target, seed=seed,
                  batch_size=batch_size)
    if method in ("fgsm", "pgd"):
        result, x_adv = _gradient(model, x, y, eps_values, step_size=step_size,
                                  restarts=restarts, **common)
    elif method == "universal":
        x_train, _ = sample(ds.train, n_train, seed)
        result, x_adv, extra = _universal(model, x, y, x_train, eps_values, step_size=step_size,
                                          algorithm=algorithm, **common)
        torch.save(extra, _prepared(out_dir) / "universal.pt")
    elif method == "patch":
        x_train, _ = sample(ds.train, n_train, seed)
        result, x_adv, extra = _patch(model, x, y, x_train, sizes, **common)
        torch.save(extra, _prepared(out_dir) / "patches.pt")
    else:
        result, x_adv = _eot(model, x, y, eps_values, step_size=step_size, samples=samples,
                             draws=draws, **common)
    result.update({"run": str(run), "data": ds.name, "classes": classes,
                   "target_class": None if target is None else classes[target],
                   "out": str(out_dir)})
    _write_outputs(result, out_dir, model, x, x_adv, y, classes, batch_size, gallery)
    return result


def _headline(points: list[dict], key: str = "eps") -> dict:
    """The figures of the last (largest) budget at the top level, the curve beside them."""
    top = dict(points[-1])
    if len(points) > 1:
        top["curve"] = points
    top["curve_key"] = key
    return top


def _gradient(model, x, y, eps_values, *, method, norm, steps, step_size, target, seed,
              batch_size, restarts=1):
    steps = 1 if method == "fgsm" else steps
    points, x_adv, _ = robustness_curve(model, x, y, eps_values, method=method, norm=norm,
                                        steps=steps, step_size=step_size, target=target,
                                        batch_size=batch_size, seed=seed, restarts=restarts)
    for p in points:
        p["step_size"] = (p["eps"] if method == "fgsm" else
                          step_size if step_size is not None else 2.5 * p["eps"] / steps)
    return {"method": method, "norm": norm, "steps": steps, "restarts": restarts,
            **_headline(points)}, x_adv


def _universal(model, x, y, x_train, eps_values, *, method, norm, steps, step_size, algorithm,
               target, seed, batch_size):
    clean_probs = predict_probs(model, x, batch_size)
    gen = torch.Generator().manual_seed(seed)
    points, perturbations, x_adv = [], {}, x
    for eps in eps_values:
        v, history = universal_perturbation(model, x_train, eps, norm=norm, max_passes=steps,
                                            algorithm=algorithm, step_size=step_size,
                                            generator=gen)
        x_adv = apply_universal(x, v, eps, norm)
        noise = random_perturbation(tuple(v.shape), eps, norm, gen)
        m = attack_metrics(x, x_adv, y, clean_probs, predict_probs(model, x_adv, batch_size))
        points.append({"eps": eps, "fooling_rate": fooling_rate(model, x, v, batch_size),
                       "random_noise_fooling_rate": fooling_rate(model, x, noise, batch_size),
                       "train_fooling_rate": history[-1], "passes": len(history),
                       "n_train": len(x_train), "algorithm": algorithm, **m})
        perturbations[eps] = v
    result = {"method": method, "norm": norm, "steps": steps, **_headline(points)}
    return result, x_adv, perturbations


def _patch(model, x, y, x_train, sizes, *, method, norm, steps, target, seed, batch_size):
    points, patches = patch_curve(model, x_train, x, y, target, sizes, steps=steps,
                                  placements=1, seed=seed)
    # the largest patch again at the curve's own placements (patch_success draws them from
    # seed + 1), for the gallery, the norms and the confidences: one consistent headline
    gen = torch.Generator().manual_seed(seed + 1)
    patch = patches[sizes[-1]]
    theta = placement_theta(len(x), patch.shape[-1], tuple(x.shape[-2:]), generator=gen)
    x_adv, _ = apply_patch(x, patch, theta)
    clean_probs = predict_probs(model, x, batch_size)
    m = attack_metrics(x, x_adv, y, clean_probs, predict_probs(model, x_adv, batch_size), target)
    head = {**m, **points[-1]}
    result = {"method": method, "steps": steps, **head, "curve_key": "patch_size"}
    if len(points) > 1:
        result["curve"] = points
    return result, x_adv, {"sizes": sizes, "patches": [patches[s] for s in sizes],
                           "target": target}


def _eot(model, x, y, eps_values, *, method, norm, steps, step_size, target, seed, batch_size,
         samples, draws):
    dist = TransformDist()
    clean_probs = predict_probs(model, x, batch_size)
    gen = torch.Generator().manual_seed(seed)
    chunk = max(1, batch_size // samples)  # each step forwards chunk × samples images
    points, x_adv = [], x
    for eps in eps_values:
        x_adv = torch.cat([eot_pgd(model, x[i:i + chunk], y[i:i + chunk], eps, norm=norm,
                                   steps=steps, step_size=step_size, samples=samples, dist=dist,
                                   target=target, generator=gen)
                           for i in range(0, len(x), chunk)])
        m = attack_metrics(x, x_adv, y, clean_probs, predict_probs(model, x_adv, batch_size),
                           target)
        report, x_pgd = compare_under_transforms(model, x, y, x_adv, eps, norm=norm, steps=steps,
                                                 step_size=step_size, target=target, dist=dist,
                                                 draws=draws, seed=seed + 1,
                                                 batch_size=batch_size)
        plain = attack_metrics(x, x_pgd, y, clean_probs, predict_probs(model, x_pgd, batch_size),
                               target)
        points.append({"eps": eps, **m, **report, "samples": samples,
                       "pgd_success_rate": plain["success_rate"]})
    return {"method": method, "norm": norm, "steps": steps, **_headline(points)}, x_adv


def _prepared(out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir


def _write_outputs(result: dict, out_dir: Path, model, x, x_adv, y, classes, batch_size,
                   gallery: bool) -> None:
    from ..train.checkpoint import write_json

    _prepared(out_dir)
    files = {"result": str(out_dir / "result.json")}
    if gallery and len(x):
        title = (f"{result['method']}"
                 + (f" {result['norm']} ε={result['eps']:.4g}" if "eps" in result else "")
                 + (f" side {result['patch_size']:g}" if "patch_size" in result else "")
                 + (f" → {result['target_class']}" if result["target_class"] else ""))
        clean, adv = predict_probs(model, x, batch_size), predict_probs(model, x_adv, batch_size)
        name = result["target_class"]
        pick = gallery_indices(y, clean.argmax(1), adv.argmax(1),
                               None if name is None else classes.index(name))
        files["gallery"] = str(save_gallery(
            out_dir / "gallery.png", x[pick], x_adv[pick], y[pick], clean[pick], adv[pick],
            classes, title=title))
    if "curve" in result:
        key = result["curve_key"]
        files["curve_json"] = str(out_dir / "curve.json")
        write_json(out_dir / "curve.json", {"x": key, "points": result["curve"]})
        y_keys = (("success_rate", "random_patch_success_rate", "adversarial_accuracy")
                  if key == "patch_size" else
                  ("fooling_rate", "random_noise_fooling_rate", "adversarial_accuracy")
                  if result["method"] == "universal" else
                  ("adversarial_accuracy", "success_rate", "eot_success_under_transforms",
                   "pgd_success_under_transforms"))
        files["curve_png"] = str(plot_curve(
            result["curve"], out_dir / "curve.png", x_key=key, y_keys=y_keys,
            xlabel="patch side / image side" if key == "patch_size" else f"ε ({result['norm']})",
            title=f"{result['method']} on {result['data']}"))
    result["files"] = files
    write_json(out_dir / "result.json", result)
