"""``cnnlab attack``: adversarial examples against a trained run."""

from __future__ import annotations

import argparse

ATTACK_EPILOG = """\
examples:
  cnnlab attack runs/<run> --method pgd                      PGD-40, L∞ ε=0.3 (grey) or 8/255
  cnnlab attack runs/<run> --method fgsm --eps 0,0.05,0.1,0.2,0.3   robustness curve (JSON+PNG)
  cnnlab attack runs/<run> --method pgd --norm l2 --eps 2 --steps 100
  cnnlab attack runs/<run> --method pgd --targeted cat       a class name or index
  cnnlab attack runs/<run> --method universal --eps 8/255    one perturbation for all images
  cnnlab attack runs/<run> --method patch --patch-size 0.1,0.2,0.3 --targeted 0
  cnnlab attack runs/<run> --method eot --eps 8/255          robust to rotation/scale/noise

Success rate: among images the model gets right, the share whose label changes (untargeted) or
becomes the target (targeted). Outputs: RUN/attack-<method>/ (result.json, gallery.png, and
curve.json + curve.png for several --eps or --patch-size values).
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("attack", help="adversarial examples: fgsm, pgd, universal, patch, eot",
                       description="Attack a trained run's model in pixel space and report "
                       "clean/adversarial accuracy, success rate, perturbation norms and "
                       "confidence; write a gallery PNG.", epilog=ATTACK_EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="run directory")
    p.add_argument("--method", required=True, help="fgsm | pgd | universal | patch | eot")
    p.add_argument("--eps", help="budget(s), comma-separated; fractions like 8/255 work "
                   "(default L∞ 0.3 grey / 8/255 colour; L2 2.0 / 0.5)")
    p.add_argument("--norm", default="linf", help="linf | l2 (default linf)")
    p.add_argument("--steps", type=int, help="PGD/EOT iterations (default 40/50); patch: "
                   "optimizer steps (300); universal: passes over the training images (5)")
    p.add_argument("--step-size", type=float, help="PGD/EOT step (default 2.5·eps/steps)")
    p.add_argument("--targeted", metavar="CLASS", help="target class name or index "
                   "(patch default: class 0)")
    p.add_argument("--patch-size", help="patch side(s) as fractions of the image side "
                   "(default 0.1,0.2,0.3,0.4)")
    p.add_argument("--algorithm", default="sgd", help="universal: sgd (projected stochastic "
                   "gradient, default) | deepfool (the paper's)")
    p.add_argument("--restarts", type=int, default=1, help="PGD: random starts per image; an "
                   "image counts as broken if any start breaks it (use ≥ 5 to trust a defence)")
    p.add_argument("--samples", type=int, default=10, help="EOT: transforms averaged per step")
    p.add_argument("--draws", type=int, default=20, help="EOT: fresh transforms per image "
                   "when measuring success")
    p.add_argument("--data", help="data set or folder (default: the run's own)")
    p.add_argument("--data-dir")
    p.add_argument("--n", type=int, default=1000, help="test images attacked (default 1000, "
                   "drawn with --seed)")
    p.add_argument("--n-train", type=int, default=1000, help="training images for universal "
                   "and patch (default 1000)")
    p.add_argument("--batch-size", type=int, default=250)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="output folder (default RUN/attack-<method>/)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(func=run_attack_cmd)


def run_attack_cmd(args: argparse.Namespace) -> int:
    from ..attack import run_attack
    from . import emit_json, print_table

    result = run_attack(args.run, method=args.method, eps=args.eps, norm=args.norm,
                        steps=args.steps, step_size=args.step_size, targeted=args.targeted,
                        data=args.data, data_dir=args.data_dir, n=args.n, n_train=args.n_train,
                        patch_size=args.patch_size, samples=args.samples, draws=args.draws,
                        restarts=args.restarts,
                        algorithm=args.algorithm, batch_size=args.batch_size, seed=args.seed,
                        out=args.out)
    if args.json:
        emit_json(result)
        return 0
    points = result.get("curve") or [result]
    cols = {
        "patch": ["patch_size", "patch_pixels", "clean_accuracy", "adversarial_accuracy",
                  "success_rate", "random_patch_success_rate"],
        "universal": ["eps", "clean_accuracy", "adversarial_accuracy", "fooling_rate",
                      "random_noise_fooling_rate", "train_fooling_rate", "max_linf", "max_l2"],
        "eot": ["eps", "clean_accuracy", "adversarial_accuracy", "success_rate",
                "eot_success_under_transforms", "pgd_success_under_transforms",
                "clean_error_under_transforms", "max_linf", "max_l2"],
    }.get(result["method"], ["eps", "clean_accuracy", "adversarial_accuracy", "success_rate",
                             "mean_linf", "max_linf", "mean_l2", "max_l2",
                             "mean_confidence_new_label"])
    short = {"clean_accuracy": "clean_acc", "adversarial_accuracy": "adv_acc",
             "mean_confidence_new_label": "conf_new", "random_patch_success_rate": "random_patch",
             "random_noise_fooling_rate": "noise_fooling", "train_fooling_rate": "train_fooling",
             "eot_success_under_transforms": "eot_under_T",
             "pgd_success_under_transforms": "pgd_under_T",
             "clean_error_under_transforms": "clean_err_under_T"}
    print_table([["-" if p.get(c) is None else p[c] for c in cols] for p in points],
                [short.get(c, c) for c in cols])
    target = f", target {result['target_class']}" if result["target_class"] else ""
    print(f"\n{result['method']} on {result['data']} ({result['n']} images{target}); "
          f"outputs in {result['out']}")
    return 0
