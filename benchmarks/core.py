"""Core-issue benchmarks: cnnlab's training against a plain-PyTorch baseline, same run.

    python benchmarks/core.py digits              # cnnlab train default (≥ 97 % in < 60 s)
    python benchmarks/core.py mnist               # DLFS ch. 8 deep CNN on MNIST (≥ 99.3 %)
    python benchmarks/core.py cifar10             # small VGG on cifar10-jpeg (≥ 85 %)
    python benchmarks/core.py cifar10-resnet20    # the zoo's CIFAR ResNet-20 (≥ 86 %)
    python benchmarks/core.py digits --smoke      # seconds-long check of the script itself

cnnlab runs as a subprocess (`cnnlab train … --json`) so its wall time includes start-up and
data loading (decode cache warm: the data is loaded once before timing). The baseline trains
the same architecture the ordinary way (DataLoader, per-sample transforms, fp32 eager) for a
couple of epochs and reports images/s and test accuracy per epoch.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cnnlab  # noqa: E402
from cnnlab.models import create_model  # noqa: E402
from common import SHARED, plain_baseline, save_result, write_results_md  # noqa: E402

TASKS = {
    "digits": {"train": [], "data": "digits", "data_dir": None, "baseline_epochs": 30,
               "baseline": dict(lr=3e-3, optimizer="adam", batch_size=64), "target": 0.97},
    "mnist": {"train": ["dlfs-deepconvnet", "--data", "mnist", "--optimizer", "adam",
                        "--lr", "2e-3", "--weight-decay", "0", "--batch-size", "100",
                        "--epochs", "14", "--schedule", "onecycle", "--warmup-epochs", "1"],
              "data": "mnist", "data_dir": str(SHARED), "baseline_epochs": 2,
              "baseline": dict(lr=1e-3, optimizer="adam", batch_size=100), "target": 0.993},
    "cifar10": {"train": ["vgg-small", "--data", str(SHARED / "cifar10-jpeg"),
                          "--optimizer", "sgd", "--nesterov", "--lr", "0.1", "--momentum", "0.9",
                          "--weight-decay", "5e-4", "--batch-size", "256", "--epochs", "18",
                          "--label-smoothing", "0.1", "--augment", "crop:4", "flip"],
                "data": str(SHARED / "cifar10-jpeg"), "data_dir": None, "baseline_epochs": 1,
                "baseline": dict(lr=0.05, optimizer="sgd", batch_size=256, augment=True),
                "target": 0.85},
    "cifar10-resnet20": {"train": ["resnet20", "--data", str(SHARED / "cifar10-jpeg"),
                                   "--optimizer", "sgd", "--nesterov", "--lr", "0.1",
                                   "--momentum", "0.9", "--weight-decay", "5e-4",
                                   "--batch-size", "128", "--epochs", "25",
                                   "--label-smoothing", "0.1", "--augment", "crop:4", "flip"],
                         "data": str(SHARED / "cifar10-jpeg"), "data_dir": None,
                         "baseline_epochs": 1,
                         "baseline": dict(lr=0.05, optimizer="sgd", batch_size=128, augment=True),
                         "target": 0.86},
}


def run_cnnlab(args: list[str], out_dir: Path) -> tuple[dict, float]:
    cmd = [sys.executable, "-m", "cnnlab", "train", *args, "--out", str(out_dir), "--json",
           "--no-progress"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    sys.stderr.write(proc.stderr[-3000:])
    if proc.returncode != 0:
        raise SystemExit(f"cnnlab failed ({proc.returncode}): {' '.join(cmd)}")
    return json.loads(proc.stdout), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("task", choices=sorted(TASKS))
    parser.add_argument("--smoke", action="store_true", help="tiny run: checks the script only")
    parser.add_argument("--out", default="runs/bench", help="where run directories go")
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[],
                        help="more `cnnlab train` flags (override the task's)")
    args = parser.parse_args()
    task = TASKS[args.task]
    train_args = list(task["train"])
    if task["data_dir"]:
        train_args += ["--data-dir", task["data_dir"]]
    if args.smoke:  # one epoch, no report.html (not what the smoke run checks)
        train_args += ["--epochs", "1", "--no-report"]
    train_args += args.extra

    data = cnnlab.load_data(task["data"], data_dir=task["data_dir"])  # warms the decode cache
    stamp = time.strftime("%Y%m%d-%H%M%S")
    result, wall = run_cnnlab(train_args, Path(args.out) / f"{args.task}-{stamp}")

    torch.manual_seed(0)
    c, h, w = data.image_shape
    model_name = train_args[0] if train_args and not train_args[0].startswith("-") else "simple-cnn"
    model = create_model(model_name, num_classes=data.num_classes, in_chans=c, input_size=(h, w))
    model.norm.set_stats(**cnnlab.data.fit_normalization(data.train, "standardize"))
    baseline = plain_baseline(model, data, epochs=1 if args.smoke else task["baseline_epochs"],
                              max_batches=5 if args.smoke else None, **task["baseline"])

    rows = result.pop("history")
    summary = [{
        "task": args.task,
        "what": f"{model_name}: test accuracy, wall s, img/s ({result['epochs']} epochs, "
                f"{result['precision']})",
        "figure": f"{result['test_accuracy']:.4f} in {wall:.0f} s, "
                  f"{max(r['images_per_s'] for r in rows):.0f} img/s",
        "baseline": f"{baseline['epochs'][-1]['test_accuracy']:.4f} after "
                    f"{len(baseline['epochs'])} epochs in "
                    f"{baseline['epochs'][-1]['wall_seconds']:.0f} s, "
                    f"{baseline['images_per_s']:.0f} img/s",
    }]
    payload = {"command": "cnnlab train " + " ".join(train_args), "wall_seconds": wall,
               "cnnlab": result, "cnnlab_epochs": rows, "baseline": baseline,
               "target_accuracy": task["target"],
               "reached": result["test_accuracy"] >= task["target"], "summary_rows": summary}
    if args.smoke:
        print(json.dumps({"smoke": True, "wall_seconds": wall, **summary[0]}))
        return
    path = save_result(f"core-{args.task}", payload)
    write_results_md()
    print(json.dumps(summary[0]))
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
