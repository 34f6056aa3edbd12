"""The training loop: one explicit function, top to bottom.

config → data → model (+ input statistics) → optimizer/schedule → [resume] → epochs of
(steps → validation → metrics row → checkpoint) → test → run directory.

Reproducibility: every epoch re-seeds the global RNG (dropout) and the loader (order,
augmentation) from (seed, epoch, rank), so resuming from the checkpoint at the end of epoch k
replays epochs k+1… exactly as the uninterrupted run would have.
"""

from __future__ import annotations

import csv
import io
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import __version__
from ..data import Loader, build_augment, fit_normalization, load_data
from ..data.dataset import Dataset, Split, train_subset
from ..errors import ConfigError, TrainingError
from ..evaluate.metrics import autocast, classification_metrics, predict_logits, topk_accuracy
from ..models import create_model, resolve_name
from ..models.binary import enforce_binary_constraints
from ..perf.hardware import choose_precision, last_auto_choice, machine_info
from . import checkpoint as ckpt
from . import distributed as dist_
from .config import TrainConfig, make_config
from .lookahead import Lookahead
from .optim import build_optimizer, build_scheduler, whiten_bias, whiten_bias_freeze_step
from .progress import Progress, log

# Flags that define the experiment: a resume must not change them.
FROZEN_ON_RESUME = ("model", "data", "epochs", "batch_size", "optimizer", "lr", "momentum",
                    "nesterov", "weight_decay", "schedule", "warmup_epochs", "step_size", "gamma",
                    "label_smoothing", "augment", "norm", "model_kwargs", "seed", "val_fraction",
                    "subset", "image_size", "channels", "adv", "adv_eps", "adv_steps",
                    "adv_step_size", "adv_eps_warmup", "preset", "lr_start", "lr_end",
                    "bias_lr_scale", "lookahead", "lookahead_start", "progressive",
                    "whiten_bias_epochs", "freeze_whiten_bias")
METRIC_FIELDS = ["epoch", "lr", "train_loss", "train_acc", "eval_split", "eval_loss", "eval_acc",
                 "epoch_seconds", "images_per_s", "robust_acc"]


@dataclass
class TrainResult:
    run_dir: str
    test_accuracy: float
    test_top5: float
    train_seconds: float
    epochs: int
    precision: str
    history: list[dict] = field(default_factory=list)
    rank: int = 0  # under torchrun only rank 0 reports

    def to_dict(self) -> dict:
        return {"test_accuracy": self.test_accuracy, "test_top5": self.test_top5,
                "train_seconds": self.train_seconds, "epochs": self.epochs,
                "run_dir": self.run_dir, "precision": self.precision, "history": self.history}


def build_model_for(cfg: TrainConfig, data: Dataset) -> nn.Module:
    """The configured model sized for ``data`` (channels, image size, classes). A
    ``--model-arg`` value the builder refuses (act=swish) is a ConfigError naming it."""
    c, h, w = data.image_shape
    try:
        return create_model(cfg.model, num_classes=data.num_classes, in_chans=c,
                            input_size=(h, w), norm=cfg.norm, **cfg.model_kwargs)
    except ValueError as exc:
        raise ConfigError(f"model '{resolve_name(cfg.model)}' with options "
                          f"{cfg.model_kwargs}: {exc}") from exc


def model_meta(cfg: TrainConfig, data: Dataset, extra: dict | None = None) -> dict[str, Any]:
    c, h, w = data.image_shape
    return {"model": resolve_name(cfg.model), "num_classes": data.num_classes, "in_chans": c,
            "input_size": [h, w], "norm": cfg.norm, "model_kwargs": cfg.model_kwargs,
            "classes": data.classes, "data": cfg.data, **(extra or {})}


def resume_config(run_dir: str | Path, overrides: dict[str, Any]) -> tuple[TrainConfig, dict]:
    """The saved config of ``run_dir``; overrides that would change the experiment are refused."""
    state = ckpt.load_state(run_dir)
    saved = make_config(state["config"])
    conflicts = [k for k, v in overrides.items()
                 if k in FROZEN_ON_RESUME and v is not None and v != getattr(saved, k)]
    if conflicts:
        raise ConfigError(f"--resume {run_dir}: cannot change {', '.join(conflicts)} of a run "
                          "(they define the experiment); use --init-from to start a new run "
                          "from its weights")
    allowed = {k: v for k, v in overrides.items() if k not in FROZEN_ON_RESUME and v is not None}
    allowed["out"] = str(run_dir)
    return make_config(saved.to_dict(), allowed), state


def _size(size: int | list[int] | None) -> int | tuple[int, int] | None:
    return tuple(size) if isinstance(size, (list, tuple)) else size  # type: ignore[return-value]


def _seed_epoch(cfg: TrainConfig, epoch: int, rank: int) -> None:
    torch.manual_seed(cfg.seed * 1_000_003 + epoch * 1009 + rank)


def _why(evidence: dict[str, float]) -> str:
    """For the log line: " (auto: this net's step 2.65x as fast in bf16)" where 'auto' timed the
    net (below 1: fp32 won), else ''."""
    ratio = evidence.get("net_step_bf16_speedup")
    return "" if ratio is None else f" (auto: this net's step {ratio:.2f}x as fast in bf16)"


def _write_metrics(run_dir: Path, history: list[dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=METRIC_FIELDS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(history)
    ckpt.write_text(run_dir / "metrics.csv", buf.getvalue())


def train(config: TrainConfig | dict | None = None, *, resume: str | Path | None = None,
          progress: bool = True, **overrides: Any) -> TrainResult:
    """Train a model end to end and save a run directory. Keyword names equal CLI flags.

    >>> result = train(model="simple-cnn", data="digits", epochs=5)   # doctest: +SKIP
    """
    if resume is not None:
        cfg, state = resume_config(resume, overrides)
    else:
        base = config.to_dict() if isinstance(config, TrainConfig) else (config or {})
        cfg, state = make_config(base, overrides), None

    info = dist_.setup()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    torch.manual_seed(cfg.seed)

    data = load_data(cfg.data, data_dir=cfg.data_dir, val_fraction=cfg.val_fraction,
                     seed=cfg.seed, image_size=_size(cfg.image_size), channels=cfg.channels,
                     skip_corrupt=cfg.skip_corrupt)
    if cfg.subset:
        data.train = train_subset(data.train, cfg.subset, data.num_classes, cfg.seed)
    eval_name = "val" if data.val is not None else "test"
    eval_split = data.val if data.val is not None else data.test
    if len(data.train) < 1:
        raise ConfigError(f"data set '{cfg.data}' has an empty training split")

    model = build_model_for(cfg, data)
    if state is None:
        model.norm.set_stats(**fit_normalization(data.train, cfg.norm))
        _init_from_data(model, data.train, cfg.seed)
    if cfg.init_from and state is None:
        _init_from(model, cfg.init_from, info)
    if state is not None:
        ckpt.load_weights_into(model, state["model"], f"{resume}/{ckpt.STATE}")
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    # 'auto' may time this net both ways; not under torchrun, where the ranks share the cores
    precision = choose_precision(
        cfg.precision, model=None if info.enabled else model,
        input_shape=(cfg.batch_size, *data.image_shape), channels_last=cfg.channels_last)

    per_rank = cfg.batch_size // info.world_size
    if info.enabled and (per_rank < 1 or cfg.batch_size % info.world_size):
        raise ConfigError(f"--batch-size {cfg.batch_size} must be a multiple of the "
                          f"{info.world_size} processes")
    loader = Loader(data.train, cfg.batch_size, shuffle=True, augment=build_augment(cfg.augment),
                    drop_last=len(data.train) >= 2 * cfg.batch_size, seed=cfg.seed,
                    rank=info.rank, world_size=info.world_size, channels_last=cfg.channels_last)
    optimizer = build_optimizer(model, cfg, precision)
    scheduler = build_scheduler(optimizer, cfg, len(loader))
    # the whitening bias stops at this step; frozen, it spares the first conv's input gradient
    # (under torchrun DDP fixes the set of trained parameters up front, so there its gradient
    # is dropped before every optimizer step instead: the same weights, no time saved)
    freeze_at = whiten_bias_freeze_step(cfg, len(loader))
    held = None  # under torchrun: the frozen bias whose gradient is dropped
    if cfg.freeze_whiten_bias > 0:  # a model without one: the ConfigError now, not mid-run
        whiten_bias(model, "--freeze-whiten-bias")
    # airbench updates every 5 steps of 1024 images: every ~5120 images at any batch size
    lookahead = (Lookahead(model, cfg.epochs * len(loader), start=cfg.lookahead_start,
                           every=max(1, round(5 * 1024 / cfg.batch_size)))
                 if cfg.lookahead else None)
    history: list[dict] = []
    start_epoch, train_seconds = 0, 0.0
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch, history = int(state["epoch"]), list(state["history"])
        train_seconds = float(state.get("train_seconds", 0.0))

    run_dir = Path(resume) if resume else None
    if info.is_main and run_dir is None:
        run_dir = ckpt.new_run_dir(cfg.out, resolve_name(cfg.model), cfg.data)
        ckpt.write_text(run_dir / "config.yaml", cfg.to_yaml())
        ckpt.write_json(run_dir / "env.json", {**machine_info(), "precision": precision,
                                               "precision_requested": cfg.precision,
                                               "precision_evidence": (
                                                   dict(last_auto_choice)
                                                   if cfg.precision == "auto" else {}),
                                               "world_size": info.world_size,
                                               "cnnlab": __version__, "argv": sys.argv})
    compiled = torch.compile(model) if cfg.compile else model
    net = dist_.wrap(compiled, info)
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    if cfg.adv:  # imported only when asked for: plain training does not load the attack code
        from ..attack.training import adversarial_batch, eps_schedule, robust_accuracy
    binary = bool(getattr(model, "binary", None))
    if info.is_main:
        log(f"training {resolve_name(cfg.model)} on {data.name}: {len(data.train)} train / "
            f"{len(eval_split)} {eval_name} images {list(data.image_shape)}, "
            f"{data.num_classes} classes, {precision}{_why(last_auto_choice)}, "
            f"{cfg.epochs} epochs"
            + (f", resuming after epoch {start_epoch}" if start_epoch else ""))

    last_logits = None  # the latest epoch's eval logits: the final test reuses them if it can
    for epoch in range(start_epoch, cfg.epochs):
        _seed_epoch(cfg, epoch, info.rank)
        loader.set_epoch(epoch)
        net.train()
        t0 = time.perf_counter()
        loss_sum = correct = seen = 0.0
        bar = Progress(len(loader), f"epoch {epoch + 1}/{cfg.epochs}",
                       enabled=progress and info.is_main)
        size = cfg.progressive[epoch] if epoch < len(cfg.progressive) else None
        for step, (x, y) in enumerate(loader):
            if freeze_at and epoch * len(loader) + step >= freeze_at:
                if info.enabled:
                    held = whiten_bias(model)
                else:
                    whiten_bias(model).requires_grad_(False)
                freeze_at = 0
            if size is not None and tuple(x.shape[2:]) != (size, size):
                x = _resize(x, size, cfg.channels_last)
            if cfg.adv:  # train on adversarial examples of this batch (train_acc is on them)
                eps = eps_schedule(cfg, epoch + step / len(loader))
                x = adversarial_batch(model, x, y, cfg, precision, eps=eps)
            with autocast(precision):
                logits = net(x)
                inner = ckpt.unwrap(model)
                loss = criterion(logits.float(), y)
                for aux in getattr(inner, "aux_outputs", []) if net.training else []:
                    loss = loss + inner.aux_weight * criterion(aux.float(), y)
            if not dist_.all_ok(bool(torch.isfinite(loss)), info):
                lr = optimizer.param_groups[0]["lr"]
                raise TrainingError(
                    f"loss became {loss.item()} at epoch {epoch + 1}, step {step + 1} "
                    f"(lr {lr:.4g}); lower --lr, add warm-up, or check the data for bad values")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if held is not None:
                held.grad = None  # the optimizer skips a parameter without a gradient
            optimizer.step()
            if binary:  # BNN: latent weights stay in [-1, 1], where the STE passes gradient
                enforce_binary_constraints(model)
            scheduler.step()
            if lookahead is not None:
                lookahead.update(epoch * len(loader) + step + 1)
            n = y.shape[0]
            loss_sum += loss.item() * n
            correct += (logits.argmax(1) == y).sum().item()
            seen += n
            bar.update(loss=loss_sum / seen, acc=correct / seen,
                       img_s=seen * info.world_size / (time.perf_counter() - t0))
        if lookahead is not None:
            lookahead.sync()  # evaluate and save the averaged weights
        bar.close()
        epoch_s = time.perf_counter() - t0
        train_seconds += epoch_s
        row = {"epoch": epoch + 1, "lr": round(optimizer.param_groups[0]["lr"], 8),
               "train_loss": round(loss_sum / max(seen, 1), 5),
               "train_acc": round(correct / max(seen, 1), 5), "eval_split": eval_name,
               "eval_loss": None, "eval_acc": None, "epoch_seconds": round(epoch_s, 3),
               "images_per_s": round(seen * info.world_size / max(epoch_s, 1e-9), 1)}
        last_logits = None
        if _evaluate_now(cfg, epoch):
            logits = _predict(model, eval_split, cfg, precision, info)
            last_logits = logits
            row["eval_loss"] = round(
                nn.functional.cross_entropy(logits, eval_split.labels).item(), 5)
            row["eval_acc"] = round(topk_accuracy(logits, eval_split.labels), 5)
        if cfg.adv:  # PGD accuracy at the training ε on a fixed subset (clean is eval_acc)
            row["robust_acc"] = round(robust_accuracy(model, eval_split.images, eval_split.labels,
                                                      cfg, precision), 5)
        history.append(row)
        if info.is_main:
            evaluated = ("" if row["eval_acc"] is None
                         else f"  {eval_name} acc {row['eval_acc']:.4f}")
            log(f"epoch {epoch + 1}/{cfg.epochs}  loss {row['train_loss']:.4f}  "
                f"train acc {row['train_acc']:.4f}{evaluated}  "
                f"{row['images_per_s']:.0f} img/s  {epoch_s:.1f}s"
                + (f"  robust acc {row['robust_acc']:.4f}" if cfg.adv else ""))
            _write_metrics(run_dir, history)
            meta = model_meta(cfg, data, {"epoch": epoch + 1, "precision": precision})
            ckpt.save_model(run_dir, model, meta)
            if cfg.keep_snapshots:
                ckpt.save_snapshot(run_dir, model, epoch + 1)
            ckpt.save_state(run_dir, {
                "model": ckpt.plain_state_dict(model), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "epoch": epoch + 1, "history": history,
                "train_seconds": train_seconds, "config": cfg.to_dict()})
        dist_.barrier(info)

    if last_logits is not None and eval_split is data.test:
        test_logits = last_logits  # the last epoch already ran these weights on the test split
    else:
        test_logits = _predict(model, data.test, cfg, precision, info)
    test = classification_metrics(test_logits, data.test.labels, data.classes)
    if info.is_main:
        meta = model_meta(cfg, data, {"epoch": cfg.epochs, "precision": precision,
                                      "metrics": {"test_accuracy": test["accuracy"],
                                                  "test_top5": test["top5"],
                                                  "train_seconds": round(train_seconds, 3)}})
        ckpt.save_model(run_dir, model, meta)
        if cfg.report:
            _after_training(run_dir)
    dist_.cleanup(info)
    if not math.isfinite(test["loss"]):
        raise TrainingError("the trained model's test loss is not finite")
    return TrainResult(str(run_dir), test["accuracy"], test["top5"], round(train_seconds, 3),
                       cfg.epochs, precision, history, info.rank)


def _predict(model: nn.Module, split: Split, cfg: TrainConfig, precision: str,
             info: dist_.DistInfo) -> torch.Tensor:
    """Logits of every image of ``split``; under torchrun each rank scores its share."""
    kw = dict(batch_size=cfg.eval_batch_size, precision=precision,
              channels_last=cfg.channels_last, tta=cfg.tta, tta_fraction=cfg.tta_fraction)
    if not info.enabled:
        return predict_logits(model, split, **kw)
    lo, hi = dist_.shard_bounds(len(split), info)
    rows = slice(lo, hi) if hi > lo else slice(0, 1)  # an empty share still needs the width
    logits = predict_logits(model, Split(split.images[rows], split.labels[rows]), **kw)
    return dist_.gather_rows(logits[:hi - lo], len(split), info)


def _evaluate_now(cfg: TrainConfig, epoch: int) -> bool:
    """Evaluate after this epoch? Always after the last; else every ``eval_every`` epochs."""
    last = epoch + 1 == cfg.epochs
    return last or (cfg.eval_every > 0 and (epoch + 1) % cfg.eval_every == 0)


def _resize(x: torch.Tensor, size: int, channels_last: bool) -> torch.Tensor:
    """Progressive resizing: the batch at ``size``×``size`` (bilinear with antialiasing, so a
    smaller image is a blurred one, not an aliased one)."""
    x = nn.functional.interpolate(x, size=(size, size), mode="bilinear", antialias=True,
                                  align_corners=False)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def _init_from_data(model: nn.Module, train_split: Split, seed: int, n: int = 5000) -> None:
    """Models with a data-dependent first layer (cifar-speednet's patch whitening) fit it on
    up to ``n`` training images (a seeded sample), before the first step."""
    init = getattr(model, "init_from_data", None)
    if init is None:
        return
    images = train_split.images
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(images), generator=gen)[:n]
    init(images[idx].float().div_(255.0))


def _init_from(model: nn.Module, source: str, info: dist_.DistInfo) -> None:
    """Start from another run's weights; a head of another size stays freshly initialised."""
    weights = ckpt.read_weights(source) if Path(source).is_dir() else None
    if weights is None:
        raise ConfigError(f"--init-from {source}: not a run directory with model.safetensors")
    ckpt.read_meta(source)
    skipped = ckpt.load_weights_into(model, weights, source, strict=False)
    if info.is_main:
        log(f"initialised from {source}" +
            (f"; kept fresh: {', '.join(skipped)}" if skipped else ""))


def _after_training(run_dir: Path) -> None:
    """Hook for what follows a finished run (the HTML report, when installed)."""
    try:
        from ..evaluate.report import write_report
    except ImportError:
        return
    write_report(run_dir)
