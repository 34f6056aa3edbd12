"""``cnnlab transfer``: a trained backbone on new data — linear probes, fine-tuning, scratch."""

from __future__ import annotations

import argparse
import sys

EPILOG = """\
examples:
  cnnlab transfer --from runs/<run> --data digits --layer all
  cnnlab transfer --from runs/<run> --data digits --classes 5,6,7,8,9 --mode finetune
  cnnlab transfer --from runs/<run> --data ../shared/data/cifar10-jpeg --classes 5,6,7,8,9 \\
      --mode compare --per-class 5,10,50,all --seeds 3 --json
  cnnlab transfer --from tv:resnet18 --data cifar10 --layer all        # needs cnnlab[hub]
  cnnlab transfer --from timm:resnet18@resnet18.safetensors --data ./my_photos   # offline

modes: features (frozen backbone, GAP + L2-normalized layer features → logistic regression or
linear SVM, C by cross-validation on the training split), finetune (new head, --freeze-epochs
warm-up, then all layers with the backbone at lr × --backbone-lr-scale), scratch (same
architecture, random init, same epochs), compare (all three on the same samples).
--bn auto keeps batch-norm statistics frozen below 1000 training images.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("transfer", help="transfer a trained backbone to new data",
                       description="Transfer learning from a cnnlab run directory or a "
                       "torchvision/timm ImageNet backbone: frozen "
                       "features + linear classifier, fine-tuning, or the same net from scratch.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--from", dest="source", required=True, metavar="RUN_OR_BACKBONE",
                   help="a run directory made by `cnnlab train`, or a hub backbone (extra "
                   "'hub'): tv:NAME or timm:NAME, optionally @WEIGHTS — a local .safetensors/"
                   ".pth file (offline), a weights tag, or 'none'; without @ the library's "
                   "default ImageNet weights are downloaded once. The hub model's mean/std, "
                   "input size and interpolation come along")
    p.add_argument("--data", required=True, help="target data: a name (digits, cifar10, ...), "
                   "a folder or .zip of class folders")
    p.add_argument("--data-dir", help="where named data sets live")
    p.add_argument("--classes", help="only these target classes (indices or names, "
                   "comma-separated), relabelled in that order")
    p.add_argument("--mode", default="features", help="features | finetune | scratch | compare "
                   "(default features)")
    p.add_argument("--layer", help="feature layer (see the backbone's feature_layers()), "
                   "'head-input' (default) or 'all'")
    p.add_argument("--classifier", default="logreg", help="logreg | svm (features mode)")
    p.add_argument("--per-class", default="all", help="training images per class, e.g. "
                   "5,10,50,all (default all)")
    p.add_argument("--seeds", type=int, default=1, help="repeat each setting with K samplings")
    p.add_argument("--epochs", type=int, default=10, help="fine-tune epochs after the warm-up")
    p.add_argument("--freeze-epochs", type=int, default=2, help="warm-up epochs training only "
                   "the new head")
    p.add_argument("--lr", type=float, default=3e-3, help="head learning rate (and scratch's)")
    p.add_argument("--backbone-lr-scale", type=float, default=0.1)
    p.add_argument("--bn", default="auto", help="auto | frozen | train (batch-norm statistics "
                   "while fine-tuning)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--min-steps", type=int, default=100, help="optimizer steps per phase at "
                   "least, however few the images (default 100)")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..transfer import transfer
    from . import emit_json, print_table

    classes = [c.strip() for c in args.classes.split(",")] if args.classes else None
    result = transfer(args.source, args.data, mode=args.mode, layer=args.layer,
                      per_class=args.per_class, seeds=args.seeds, classes=classes,
                      data_dir=args.data_dir, classifier=args.classifier, epochs=args.epochs,
                      freeze_epochs=args.freeze_epochs, lr=args.lr,
                      backbone_lr_scale=args.backbone_lr_scale, bn=args.bn,
                      batch_size=args.batch_size, min_steps=args.min_steps,
                      log=lambda msg: print(msg, file=sys.stderr))
    if args.json:
        emit_json(result)
        return 0
    print(f"{result['model']} → {result['target']} ({len(result['classes'])} classes, "
          f"{result['test_images']} test images, {result['seeds']} seed(s))")
    rows = [[r["mode"], r["layer"], r["per_class"], r["train_images"], r["mean"], r["std"]]
            for r in result["rows"]]
    print_table(rows, ["mode", "layer", "per class", "train images", "accuracy", "± std"])
    return 0
