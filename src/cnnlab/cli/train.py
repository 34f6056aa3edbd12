"""``cnnlab train``, ``cnnlab evaluate`` and ``cnnlab predict``."""

from __future__ import annotations

import argparse
import sys

import yaml

from ..errors import ConfigError
from ..train.presets import describe_presets

TRAIN_EPILOG = """\
examples:
  cnnlab train                                   simple-cnn on digits (embedded), ~10 s
  cnnlab train dlfs-deepconvnet --data mnist --data-dir ../shared/data --epochs 15 \\
      --optimizer adam --lr 1e-3
  cnnlab train vgg-small --data ../shared/data/cifar10-jpeg --augment crop:4 flip
  cnnlab train --config exp.yaml --lr 0.05       flags override the config file
  cnnlab train --resume runs/<run>               continue an interrupted run
  torchrun --nproc_per_node=2 -m cnnlab train    the same run on 2 processes (DDP)

Config precedence: defaults < --preset NAME < --config FILE.yaml < flags. --print-config shows
the result; --preset list describes every preset and why it makes each choice.
"""


def _image_size(text: str) -> int | list[int]:
    """``N`` or ``H,W`` → N or [H, W]; argparse turns the ValueError into a usage line."""
    parts = [int(v) for v in text.replace("x", ",").split(",")]
    if len(parts) == 1:
        return parts[0]
    if len(parts) == 2:
        return parts
    raise ValueError(text)


def _sizes(text: str) -> list[int]:
    """``24,24,28`` → [24, 24, 28] (an empty string: no progressive resizing)."""
    return [int(v) for v in text.split(",") if v.strip()]


def _model_arg(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got '{text}'")
    return key.replace("-", "_"), yaml.safe_load(value)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model and save a run directory",
                       description="Train a CNN end to end: data → model → run directory "
                       "(weights, metrics, config, report).",
                       epilog=TRAIN_EPILOG + "\npresets (--preset NAME):\n" + describe_presets(),
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       argument_default=argparse.SUPPRESS)
    p.add_argument("model", nargs="?", help="model name (see `cnnlab zoo`); default simple-cnn")
    g = p.add_argument_group("data")
    g.add_argument("--data", help="digits | mnist | fashion-mnist | cifar10 | cifar100 | a folder "
                   "or .zip of images (default digits)")
    g.add_argument("--data-dir", help="where named data sets live (default $CNNLAB_DATA or "
                   "~/.cache/cnnlab)")
    g.add_argument("--val-fraction", type=float, help="held-out share per class: the test split "
                   "where the data has none, else a validation split from train")
    g.add_argument("--image-size", type=_image_size, metavar="N|H,W",
                   help="resize every image to N×N or H×W")
    g.add_argument("--channels", type=int, choices=(1, 3),
                   help="convert images to grey (1) or RGB (3), e.g. MNIST for an RGB model")
    g.add_argument("--subset", type=int, metavar="N", help="train on N training images, the same "
                   "share of every class (seeded): quick experiments on a big data set")
    g.add_argument("--skip-corrupt", action="store_true", help="skip unreadable images (counted)")
    g.add_argument("--augment", nargs="+", metavar="OP", help="batched augmentation ops, e.g. "
                   "crop:4 flip translate:2 affine:10,0.1,5 color:0.1 jitter:0.04,0.13 "
                   "cutout:8")
    g.add_argument("--progressive", type=_sizes, metavar="N[,N…]", help="progressive resizing: "
                   "the first epochs train at these image sides (e.g. 24,24,28), then full size")
    g.add_argument("--tta", help="test-time augmentation of evaluations: none | flip | "
                   "flip-translate (6 views: mirror × shift by 0/±1 px) | translate (5 views: "
                   "shift by ±1 px, no mirror: digits)")
    g.add_argument("--tta-fraction", type=float, metavar="SHARE", help="give the TTA views only "
                   "to this share of the images, the least confident after one view (e.g. 0.25: "
                   "2.25 views' cost instead of 6; default 1, every image)")
    g.add_argument("--norm", help="input normalization fitted on train: none | meansub | "
                   "standardize | zca (default standardize)")
    o = p.add_argument_group("optimization")
    o.add_argument("--epochs", type=int)
    o.add_argument("--batch-size", type=int, help="global batch size (split across processes)")
    o.add_argument("--eval-batch-size", type=int)
    o.add_argument("--eval-every", type=int, metavar="N", help="evaluate every N epochs "
                   "(0: after the last only; saves time in speed-runs)")
    o.add_argument("--optimizer", help="sgd | adam | adamw | riemannian-sgd | muon (conv filters "
                   "orthogonalized, Jordan 2024; SGD for the rest)")
    o.add_argument("--lr", type=float, help="peak learning rate")
    o.add_argument("--momentum", type=float)
    o.add_argument("--nesterov", action=argparse.BooleanOptionalAction)
    o.add_argument("--weight-decay", type=float)
    o.add_argument("--schedule", help="constant | step | cosine | onecycle")
    o.add_argument("--warmup-epochs", type=float, help="epochs to the peak lr (onecycle: "
                   "where the triangle peaks)")
    o.add_argument("--lr-start", type=float, help="onecycle: the first step's lr as a fraction "
                   "of the peak (default 0)")
    o.add_argument("--lr-end", type=float, help="onecycle: the last step's lr as a fraction of "
                   "the peak (default 0)")
    o.add_argument("--bias-lr-scale", type=float, help="lr multiplier for BatchNorm shifts, "
                   "which then get weight decay / this (airbench: 64)")
    o.add_argument("--whiten-bias-epochs", type=float, metavar="E", help="cifar-speednet: train "
                   "the patch-whitening bias at the BN-shift lr, falling to 0 over E epochs, then "
                   "freeze it, which spares the first conv's input gradient (airbench94_muon: 3)")
    o.add_argument("--freeze-whiten-bias", type=float, metavar="E", help="cifar-speednet: "
                   "train the patch-whitening bias like the other biases, but freeze it after "
                   "E epochs (late, when the lr is small): the rest of the steps skip the first "
                   "layer's backward, ~8 %% of a step")
    o.add_argument("--muon-lr", type=float, help="--optimizer muon: the conv filters' lr, an "
                   "angle per step since their norm is held fixed (default 0.24)")
    o.add_argument("--muon-momentum", type=float, help="--optimizer muon: the filters' "
                   "Nesterov momentum (default 0.6); --momentum is the other parameters'")
    o.add_argument("--lookahead", action=argparse.BooleanOptionalAction, help="look-ahead "
                   "EMA: every 5 steps the weights are pulled to their running average "
                   "(airbench); --no-lookahead turns a preset's off")
    o.add_argument("--lookahead-start", type=float, help="fraction of the steps before the "
                   "look-ahead starts (default 0.3)")
    o.add_argument("--step-size", type=int, help="epochs between decays (schedule step)")
    o.add_argument("--gamma", type=float, help="decay factor (schedule step)")
    o.add_argument("--label-smoothing", type=float)
    o.add_argument("--model-arg", dest="model_kwargs", action="append", type=_model_arg,
                   metavar="KEY=VALUE", help="builder option, e.g. --model-arg width=64")
    o.add_argument("--adv", help="adversarial training: fgsm (with random start) | pgd")
    o.add_argument("--adv-eps", type=float, help="its L∞ budget in pixels (default 0.3)")
    o.add_argument("--adv-steps", type=int, help="PGD steps (default 7)")
    o.add_argument("--adv-eps-warmup", type=float, metavar="EPOCHS", help="ramp ε linearly "
                   "from 0 over these epochs (then the full --adv-eps); default 0")
    o.add_argument("--adv-step-size", type=float, help="default 2.5·eps/steps (pgd), "
                   "1.25·eps (fgsm)")
    s = p.add_argument_group("speed")
    s.add_argument("--precision", help="auto | fp32 | bf16 (auto: bf16 only where native and "
                   "faster on this machine)")
    s.add_argument("--channels-last", dest="channels_last", action="store_true")
    s.add_argument("--no-channels-last", dest="channels_last", action="store_false")
    s.add_argument("--compile", action="store_true", help="torch.compile the model")
    s.add_argument("--threads", type=int)
    r = p.add_argument_group("run")
    r.add_argument("--seed", type=int)
    r.add_argument("--deterministic", action="store_true")
    r.add_argument("--out", help="run directory (default runs/<model>-<data>-<time>)")
    r.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run")
    r.add_argument("--init-from", metavar="RUN_DIR", help="start from these weights (new run)")
    r.add_argument("--config", metavar="FILE.yaml", help="config file; flags override it")
    r.add_argument("--preset", metavar="NAME", help="a named recipe under the config file and "
                   "flags (below); `--preset list` describes them")
    r.add_argument("--no-report", dest="report", action="store_false",
                   help="do not write report.html after training (`cnnlab report RUN` later)")
    r.add_argument("--keep-snapshots", action="store_true", help="also keep each epoch's "
                   "weights in RUN/snapshots/ (score them later: cnnlab evaluate RUN --snapshot "
                   "N), for an accuracy-per-epoch curve that costs the run no evaluation time")
    r.add_argument("--print-config", action="store_true", help="print the resolved config, exit")
    r.add_argument("--json", action="store_true", help="print one JSON result on stdout")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run_train)

    e = sub.add_parser("evaluate", help="accuracy, top-5, per-class scores, confusion matrix",
                       description="Evaluate a trained run on a split of its data (or other data "
                       "with the same classes).")
    e.add_argument("run", help="run directory")
    e.add_argument("--data", help="data set or folder (default: the run's own)")
    e.add_argument("--data-dir")
    e.add_argument("--split", default="test", help="train | val | test (default test)")
    e.add_argument("--batch-size", type=int, default=500)
    e.add_argument("--tta", default="none", help="test-time augmentation: none | flip | "
                   "flip-translate (6 views: mirror x shift 0/±1 px, airbench's) | translate "
                   "(5 views: shift by ±1 px, no mirror: digits)")
    e.add_argument("--tta-fraction", type=float, default=1.0, metavar="SHARE",
                   help="TTA only for this share of the images, the least confident after one "
                   "view (default 1: all)")
    e.add_argument("--snapshot", type=int, metavar="EPOCH", help="score the weights kept after "
                   "this epoch (runs trained with --keep-snapshots)")
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=run_evaluate)

    pr = sub.add_parser("predict", help="class probabilities for image files or folders")
    pr.add_argument("run", help="run directory")
    pr.add_argument("images", nargs="+", help="image files or folders")
    pr.add_argument("--top-k", type=int, default=3)
    pr.add_argument("--json", action="store_true")
    pr.set_defaults(func=run_predict)


def train_overrides(args: argparse.Namespace) -> dict:
    """The flags the user actually gave (argparse.SUPPRESS leaves the rest out)."""
    skip = {"command", "func", "debug", "resume", "config", "print_config", "json", "no_progress"}
    out = {k: v for k, v in vars(args).items() if k not in skip}
    if out.get("model") is None:
        out.pop("model", None)
    if "model_kwargs" in out:
        out["model_kwargs"] = dict(out["model_kwargs"])
    return out


def run_train(args: argparse.Namespace) -> int:
    from ..train import make_config, read_config_file, train
    from . import emit_json, print_table

    if getattr(args, "preset", None) == "list":
        from ..train.presets import describe_presets

        print(describe_presets(long=True))
        return 0
    overrides = train_overrides(args)
    resume = getattr(args, "resume", None)
    file_cfg = read_config_file(args.config) if getattr(args, "config", None) else {}
    if resume and file_cfg:
        raise ConfigError("--resume takes the run's own config; drop --config")
    if getattr(args, "print_config", False):
        if resume:
            from ..train.loop import resume_config

            cfg, _ = resume_config(resume, overrides)
        else:
            cfg = make_config(file_cfg, overrides)
        sys.stdout.write(cfg.to_yaml())
        return 0
    want_json = getattr(args, "json", False)
    result = train({**file_cfg} if not resume else None, resume=resume,
                   progress=not getattr(args, "no_progress", False) and not want_json,
                   **overrides)
    if result.rank != 0:
        return 0
    if want_json:
        emit_json(result.to_dict())
    else:
        print_table([[result.test_accuracy, result.test_top5, result.epochs, result.train_seconds,
                      result.precision]],
                    ["test_accuracy", "test_top5", "epochs", "train_seconds", "precision"])
        print(f"run saved in {result.run_dir}")
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from ..api import evaluate
    from . import emit_json, print_table

    out = evaluate(args.run, data=args.data, data_dir=args.data_dir, split=args.split,
                   batch_size=args.batch_size, tta=args.tta, tta_fraction=args.tta_fraction,
                   snapshot=args.snapshot)
    if args.json:
        emit_json(out)
        return 0
    views = "" if out["tta"] == "none" else f", TTA {out['tta']}"
    if out["tta"] != "none" and out["tta_fraction"] < 1:
        views += f" on the {out['tta_fraction']:.0%} least confident"
    if out["snapshot"] is not None:
        views += f", weights after epoch {out['snapshot']}"
    print(f"{out['model']} on {out['data']} ({out['split']}, {out['n']} images{views}): "
          f"top-1 {out['accuracy']:.4f}   top-5 {out['top5']:.4f}   macro-F1 "
          f"{out['macro_f1']:.4f}\n")
    print_table([[r["class"], r["precision"], r["recall"], r["f1"], r["support"]]
                 for r in out["per_class"]], ["class", "precision", "recall", "f1", "support"])
    print("\nconfusion matrix (rows: true, columns: predicted)")
    classes = out["classes"]
    short = [c[:6] for c in classes]
    print_table([[short[i], *row] for i, row in enumerate(out["confusion_matrix"])],
                ["", *short])
    return 0


def run_predict(args: argparse.Namespace) -> int:
    from ..api import predict
    from . import emit_json, print_table

    if args.top_k < 1:
        raise ConfigError("--top-k must be at least 1")
    results = predict(args.run, args.images, top_k=args.top_k)
    if args.json:
        emit_json({"predictions": results})
        return 0
    rows = [[r["file"], *[f"{t['class']} {t['probability']:.3f}" for t in r["top"]]]
            for r in results]
    k = len(results[0]["top"]) if results else 0
    print_table(rows, ["file", *[f"top{i + 1}" for i in range(k)]])
    return 0
