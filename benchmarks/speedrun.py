"""Speed-run benchmarks (project issue 5): wall time to a test accuracy, against the ordinary way.

    python benchmarks/speedrun.py mnist             # 5 seeds of the preset + the baseline
    python benchmarks/speedrun.py mnist --seeds 10  # more seeds
    python benchmarks/speedrun.py mnist --smoke     # seconds: checks the script only

Task ``mnist`` (target 1: ≥ 99.5 % mean test accuracy over 5 seeds, in ≤ 1/7 of the time the
baseline needs for 99.0 %):

* **the preset** — ``cnnlab train --preset mnist-speedrun --data mnist --data-dir …`` run as a
  subprocess once per seed, so its wall time holds everything: interpreter start, imports, the
  data load (decode cache warm: the data is loaded once before timing), training, evaluation
  and the files written. Reported: test accuracy and wall seconds per seed, mean ± std and min,
  and the time-to-accuracy curve: the preset evaluates only after its last epoch, so each
  epoch's weights are kept (``--keep-snapshots``) and scored afterwards, untimed and with one
  view, against the cumulative training seconds of ``metrics.csv``.
* **the baseline** — the official PyTorch MNIST example's recipe written the ordinary way
  (github.com/pytorch/examples, mnist/main.py): conv 32 → conv 64 → max-pool → dropout 0.25 →
  fc 128 → dropout 0.5 → fc 10, log-softmax + NLL, Adadelta lr 1.0, StepLR γ 0.7 per epoch,
  batch 64 (test batch 1000), a ``torch.utils.data.DataLoader`` over per-sample normalized
  tensors (ToTensor + Normalize((0.1307,), (0.3081,)) done per image), fp32 eager, NCHW. It is
  evaluated after every epoch and stops at the first epoch with ≥ 99.0 % (cap ``--baseline-
  epochs``). Its time is measured in this process from building the model to the end of each
  epoch's evaluation — training and evaluation included; interpreter start, imports and the
  data load are *not* (they would add ~3 s), which favours the baseline.

Task ``cifar10`` (target 2: ≥ 90.4 % mean test accuracy over ≥ 3 seeds, test-time
augmentation included, in ≤ half the record holder's time on the same CPU):

* **the preset** — ``cnnlab train --preset cifar10-speedrun --data …/cifar10-jpeg``, per seed as
  above (wall time includes the data load from the warm decode cache and the TTA evaluation).
  It evaluates only after its last epoch; with ``--keep-snapshots`` each epoch's weights are
  kept, and scored afterwards (untimed, one view) for the time-to-accuracy curve.
* **the reference** — the record holder's recipe, ``--preset cifar10-airbench94`` (airbench94 in
  cnnlab flags), timed the same way. ``--reference full`` trains it all the way (one seed,
  ~35 min here); ``--reference estimate`` (default) times a 2-epoch run of it and extrapolates:
  wall = (2-epoch wall − its 2 epochs) + 10 × its second (steady-state) epoch — the start, data
  load and TTA evaluation are measured, the training is per-epoch time × epochs.
  ``--reference reuse`` takes the full reference run already in results/speedrun-cifar10.json
  (speedrun-cifar10-TAG.json with ``--tag TAG``, which keeps each CPU kind's figures apart),
  and only if that file was written on the same CPU kind with the same thread count.
  It runs as the record holder's code does: on glibc's malloc (``CNNLAB_ALLOCATOR=system``)
  and PyTorch's own convolution kernels (the preset builds plain ``nn.Conv2d``). With
  ``estimate`` it is timed a second time on cnnlab's engine (reused heap memory, FastConv3x3),
  recorded as ``reference.on_cnnlab_engine``: the ratio against that one is the recipe's share
  of the speed-up alone.
* **the baseline** — the same layer table written the ordinary way: plain ``nn`` modules with
  PyTorch's default init (no whitening, no Dirac init, learned BN scales), a ``DataLoader`` whose
  Dataset pads, crops, flips and normalizes one image at a time, SGD (momentum 0.9, lr 0.05,
  weight decay 5e-4), batch 128, fp32 eager, NCHW; ``--baseline-epochs`` epochs (default 2),
  with images/s and test accuracy after each.

Both use the default thread count of this process (the CPU's cores), and the CPU kind is saved
with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cnnlab  # noqa: E402
from common import (  # noqa: E402
    SHARED,
    add_tag_argument,
    mean_std,
    plain_baseline,
    save_result,
    tagged,
    write_results_md,
)

TASKS = {
    "mnist": {"preset": "mnist-speedrun", "data": "mnist", "data_dir": str(SHARED),
              "target": 0.995, "baseline_target": 0.99, "speedup": 7.0},
    "cifar10": {"preset": "cifar10-speedrun", "data": str(SHARED / "cifar10-jpeg"),
                "data_dir": str(SHARED), "target": 0.904, "reference": "cifar10-airbench94",
                "reference_epochs": 10, "speedup": 2.0},
}


# -- the baseline: the PyTorch MNIST example, written the ordinary way ---------------------------
class ExampleNet(nn.Module):
    """pytorch/examples mnist/main.py ``Net``, layer for layer."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = F.max_pool2d(x, 2)
        x = self.dropout1(x)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = self.dropout2(x)
        return F.log_softmax(self.fc2(x), dim=1)


class NormalizedMNIST(TorchDataset):
    """uint8 images → ToTensor + Normalize((0.1307,), (0.3081,)), one image at a time."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        x = self.images[i].float().div(255.0)
        return (x - 0.1307) / 0.3081, int(self.labels[i])


def run_baseline(data, *, target: float, max_epochs: int, max_batches: int | None = None,
                 seed: int = 1) -> dict:
    """Train the example recipe; evaluate after each epoch; stop at ``target``."""
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    model = ExampleNet()
    train_loader = DataLoader(NormalizedMNIST(data.train.images, data.train.labels),
                              batch_size=64, shuffle=True)
    test_loader = DataLoader(NormalizedMNIST(data.test.images, data.test.labels),
                             batch_size=1000)
    optimizer = torch.optim.Adadelta(model.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.7)
    curve, reached_at = [], None
    for epoch in range(1, max_epochs + 1):
        model.train()
        for b, (x, y) in enumerate(train_loader):
            if max_batches is not None and b >= max_batches:
                break
            optimizer.zero_grad()
            loss = F.nll_loss(model(x), y)
            loss.backward()
            optimizer.step()
        model.eval()
        correct = 0
        with torch.no_grad():
            for x, y in test_loader:
                correct += (model(x).argmax(1) == y).sum().item()
        scheduler.step()
        acc = correct / len(data.test)
        curve.append({"epoch": epoch, "test_accuracy": acc,
                      "elapsed_seconds": round(time.perf_counter() - t0, 2)})
        print(f"baseline epoch {epoch}: {acc:.4f} at {curve[-1]['elapsed_seconds']:.1f} s",
              file=sys.stderr)
        if acc >= target:
            reached_at = curve[-1]["elapsed_seconds"]
            break
    return {"recipe": "pytorch/examples mnist: Adadelta lr 1.0, StepLR 0.7, batch 64, "
                      "DataLoader per-sample normalize, fp32 eager",
            "target": target, "seconds_to_target": reached_at,
            "epochs_to_target": len(curve) if reached_at is not None else None,
            "curve": curve, "threads": torch.get_num_threads(),
            "included": "model build, training and per-epoch evaluation (not interpreter "
                        "start, imports or data load)"}


# -- the CIFAR-10 baseline: the speed-run net's layer table, trained the ordinary way ----------
def ordinary_cifar_net() -> nn.Sequential:
    """cifar-speednet's layers as plain modules with default init (none of the recipe's tricks)."""

    def group(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.MaxPool2d(2),
                nn.BatchNorm2d(cout), nn.GELU(), nn.Conv2d(cout, cout, 3, padding=1, bias=False),
                nn.BatchNorm2d(cout), nn.GELU()]

    return nn.Sequential(nn.Conv2d(3, 24, 2), nn.GELU(), *group(24, 64), *group(64, 256),
                         *group(256, 256), nn.AdaptiveMaxPool2d(1), nn.Flatten(),
                         nn.Linear(256, 10))


CIFAR_STATS = (torch.tensor([0.4914, 0.4822, 0.4465]).view(3, 1, 1),
               torch.tensor([0.2470, 0.2435, 0.2616]).view(3, 1, 1))


def run_cifar_baseline(data, *, epochs: int, max_batches: int | None = None,
                       seed: int = 1) -> dict:
    """common.plain_baseline on the ordinary net: per-image pad/crop/flip/normalize, SGD."""
    torch.manual_seed(seed)
    result = plain_baseline(ordinary_cifar_net(), data, epochs=epochs, batch_size=128, lr=0.05,
                            augment=True, normalize=CIFAR_STATS, max_batches=max_batches)
    return {"recipe": "cifar-speednet's layer table as plain modules, default init; DataLoader "
                      "with per-image pad/crop/flip/normalize; SGD 0.9, lr 0.05, wd 5e-4, "
                      "batch 128, fp32 eager NCHW",
            "threads": torch.get_num_threads(), **result}


def reused_reference(name: str) -> dict:
    """The full reference run of an earlier results/<name>.json — on this CPU kind only."""
    from cnnlab.perf.hardware import machine_info

    path = Path(__file__).resolve().parent / "results" / f"{name}.json"
    if not path.exists():
        raise SystemExit(f"--reference reuse: {path} does not exist; run --reference full once")
    old = json.loads(path.read_text())
    ref, here = old.get("reference") or {}, machine_info()
    if ref.get("mode") not in ("full", "reused"):
        raise SystemExit(f"--reference reuse: {path} holds no full reference run")
    for key in ("cpu_kind", "threads"):
        if old["machine"].get(key) != here.get(key):
            raise SystemExit(f"--reference reuse: {path} was measured with {key} = "
                             f"{old['machine'].get(key)!r}, this machine has {here.get(key)!r}")
    return {**ref, "mode": "reused", "measured": old.get("date") if ref.get("mode") == "full"
            else ref.get("measured")}


# The record holder's code runs on glibc's malloc and PyTorch's own kernels: so does its
# reference run (cnnlab's allocator switched off, and cifar10-airbench94 builds plain convs).
REFERENCE_ENV = {"CNNLAB_ALLOCATOR": "system"}
# The same recipe on cnnlab's engine (reused heap memory, FastConv3x3, the fused
# pool-BN-act kernels): what the recipe alone would take here, so the report can split the
# speed-up into engine and recipe.
ENGINE_FLAGS = ["--model-arg", "fast_conv=true", "--model-arg", "fused=true"]


def run_reference(task: dict, mode: str, out_dir: Path, extra: list[str],
                  name: str = "speedrun-cifar10", engine: bool = False) -> dict:
    """The record holder's recipe, trained fully or timed for 2 epochs and extrapolated
    (``engine``: on cnnlab's allocator and kernels instead of the plain ones)."""
    if mode == "reuse":
        return reused_reference(name)
    epochs = task["reference_epochs"]
    ref = {**task, "preset": task["reference"]}
    env = None if engine else REFERENCE_ENV
    extra = [*ENGINE_FLAGS, *extra] if engine else extra
    if mode == "full":
        run = run_preset(ref, 0, out_dir, extra, env)
        return {"mode": "full", "preset": task["reference"], "wall_seconds": run["wall_seconds"],
                "test_accuracy": run["test_accuracy"], "run": run, "env": env or {}}
    run = run_preset(ref, 0, out_dir, ["--epochs", "2", *extra], env)
    epoch_s = [c["train_seconds"] for c in run["curve"]]
    steady = epoch_s[-1] - epoch_s[-2] if len(epoch_s) > 1 else epoch_s[-1]
    fixed = run["wall_seconds"] - epoch_s[-1]  # start, data load, whitening, TTA evaluation
    return {"mode": "estimate", "preset": task["reference"],
            "wall_seconds": round(fixed + epochs * steady, 1), "fixed_seconds": round(fixed, 1),
            "epoch_seconds": round(steady, 1), "epochs": epochs, "run": run, "env": env or {},
            "how": f"(2-epoch wall − its training) + {epochs} × the second epoch's time"}


# -- the preset, as a user runs it -------------------------------------------------------------
def run_preset(task: dict, seed: int, out_dir: Path, extra: list[str],
               env: dict[str, str] | None = None) -> dict:
    cmd = [sys.executable, "-m", "cnnlab", "train", "--preset", task["preset"],
           "--data", task["data"], "--data-dir", task["data_dir"], "--seed", str(seed),
           "--out", str(out_dir), "--json", "--no-progress", *extra]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True,
                          env={**os.environ, **env} if env else None)
    wall = time.perf_counter() - t0
    sys.stderr.write(proc.stderr[-2000:])
    if proc.returncode != 0:
        raise SystemExit(f"cnnlab failed ({proc.returncode}): {' '.join(cmd)}")
    result = json.loads(proc.stdout)
    elapsed, curve = 0.0, []
    for row in result["history"]:
        elapsed += float(row["epoch_seconds"])
        curve.append({"epoch": row["epoch"], "test_accuracy": row["eval_acc"] or None,
                      "train_seconds": round(elapsed, 2), "images_per_s": row["images_per_s"]})
    print(f"seed {seed}: {result['test_accuracy']:.4f} in {wall:.1f} s wall "
          f"({result['train_seconds']:.1f} s training, {result['precision']})", file=sys.stderr)
    env_file = Path(result["run_dir"]) / "env.json"  # what the run itself ran on
    allocator = json.loads(env_file.read_text()).get("allocator") if env_file.exists() else None
    return {"seed": seed, "test_accuracy": result["test_accuracy"], "wall_seconds": round(wall, 2),
            "train_seconds": result["train_seconds"], "precision": result["precision"],
            "allocator": allocator,
            "run_dir": result["run_dir"], "curve": curve, "command": " ".join(cmd[2:])}


def time_to_accuracy(runs: list[dict]) -> list[dict]:
    """Per epoch, the seeds' mean cumulative training time and mean one-view test accuracy."""
    points = []
    for i, point in enumerate(runs[0]["curve"]):
        accs = [r["curve"][i].get("test_accuracy_one_view") for r in runs]
        if any(a is None for a in accs):
            return []
        points.append({"epoch": point["epoch"],
                       "train_seconds": statistics.mean(r["curve"][i]["train_seconds"]
                                                        for r in runs),
                       "accuracy": statistics.mean(accs)})
    return points


def add_snapshot_accuracy(run: dict, data) -> None:
    """Score each epoch's kept weights on the test split (one view, so every epoch compares;
    the last epoch's TTA figure is the run's own) into the run's curve."""
    from cnnlab.evaluate.metrics import predict_logits, topk_accuracy

    for point in run["curve"]:
        model = cnnlab.load_model(run["run_dir"], snapshot=point["epoch"])
        model = model.to(memory_format=torch.channels_last)
        logits = predict_logits(model, data.test, batch_size=1000, channels_last=True)
        point["test_accuracy_one_view"] = round(topk_accuracy(logits, data.test.labels), 5)


def result_name(args: argparse.Namespace) -> str:
    """speedrun-TASK, or speedrun-TASK-TAG: one result file per CPU kind where --tag says so."""
    return tagged(f"speedrun-{args.task}", args.tag)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("task", choices=sorted(TASKS))
    parser.add_argument("--seeds", type=int, default=5, help="preset runs, seeds 0..N-1")
    parser.add_argument("--baseline-epochs", type=int, default=None,
                        help="cap on baseline epochs (mnist: 6) / its epochs (cifar10: 2)")
    parser.add_argument("--no-baseline", action="store_true", help="preset runs only")
    parser.add_argument("--reference", choices=("estimate", "full", "reuse", "none"),
                        default="estimate",
                        help="cifar10: how to time the record holder's recipe (see above)")
    parser.add_argument("--smoke", action="store_true", help="seconds: checks the script only")
    parser.add_argument("--out", default="runs/bench", help="where run directories go")
    add_tag_argument(parser)
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[],
                        help="more `cnnlab train` flags (override the preset's)")
    args = parser.parse_args()
    task = TASKS[args.task]
    extra = list(args.extra)
    seeds = list(range(args.seeds))
    if args.smoke:  # one short seed on a 2,000-image subset; a few baseline batches
        extra = ["--subset", "2000", "--epochs", "1", *extra]
        if args.task == "cifar10":  # one test view, not six: the smoke checks the script only
            extra = ["--tta", "none", *extra]
        seeds = seeds[:1]

    data = cnnlab.load_data(task["data"], data_dir=task["data_dir"])  # warms the decode cache
    stamp = time.strftime("%Y%m%d-%H%M%S")
    # both presets evaluate only after the last epoch (with TTA); each epoch's weights are kept
    # and scored afterwards, untimed, for the time-to-accuracy curve
    runs = [run_preset(task, s, Path(args.out) / f"speedrun-{args.task}-{stamp}-seed{s}",
                       ["--keep-snapshots", *extra]) for s in seeds]
    for run in runs:
        add_snapshot_accuracy(run, data)
    accs = [r["test_accuracy"] for r in runs]
    walls = [r["wall_seconds"] for r in runs]
    acc_stats, wall_stats = mean_std(accs), mean_std(walls)
    if args.task == "cifar10":
        cifar10_report(args, task, data, runs, acc_stats, wall_stats, extra, stamp)
        return

    baseline = None
    if not args.no_baseline:
        baseline = run_baseline(data, target=task["baseline_target"],
                                max_epochs=1 if args.smoke else (args.baseline_epochs or 6),
                                max_batches=5 if args.smoke else None)
    base_s = baseline and baseline["seconds_to_target"]
    ratio = base_s / wall_stats["mean"] if base_s else None

    figure = (f"{acc_stats['mean']:.4f} ± {acc_stats['std']:.4f} (min {acc_stats['min']:.4f}) "
              f"in {wall_stats['mean']:.1f} ± {wall_stats['std']:.1f} s wall, {len(runs)} seeds")
    if baseline is None:
        base_text = "not run"
    elif base_s is None:
        base_text = (f"did not reach {task['baseline_target']:.1%} in "
                     f"{len(baseline['curve'])} epochs")
    else:
        base_text = (f"{task['baseline_target']:.1%} after {baseline['epochs_to_target']} epochs "
                     f"in {base_s:.0f} s (preset {ratio:.1f}× faster)")
    summary = [{"task": result_name(args),
                "what": f"--preset {task['preset']}: test accuracy mean ± std (min), wall s "
                        f"({runs[0]['precision']})",
                "figure": figure, "baseline": base_text}]
    payload = {
        "command": f"cnnlab train --preset {task['preset']} --data {task['data']} --data-dir "
                   f"{task['data_dir']} " + " ".join(extra),
        "target_accuracy": task["target"], "runs": runs,
        "test_accuracy": acc_stats, "wall_seconds": wall_stats,
        "median_wall_seconds": statistics.median(walls), "baseline": baseline,
        "speedup_vs_baseline": ratio, "time_to_accuracy": time_to_accuracy(runs),
        "reached": {"accuracy": acc_stats["mean"] >= task["target"],
                    "speedup": ratio is not None and ratio >= task["speedup"]},
        "summary_rows": summary}
    if args.smoke:
        print(json.dumps({"smoke": True, **summary[0], "wall_seconds": walls}))
        return
    path = save_result(result_name(args), payload)
    write_results_md()
    print(json.dumps(summary[0]))
    print(f"wrote {path}", file=sys.stderr)


def cifar10_report(args, task, data, runs, acc_stats, wall_stats, extra, stamp) -> None:
    reference = None
    if args.reference != "none":
        ref_extra = ["--subset", "2000", "--tta", "none"] if args.smoke else []
        reference = run_reference(task, args.reference,
                                  Path(args.out) / f"speedrun-cifar10-{stamp}-reference",
                                  ref_extra, result_name(args))
        if args.reference == "estimate" and not args.smoke:
            reference["on_cnnlab_engine"] = run_reference(
                task, "estimate", Path(args.out) / f"speedrun-cifar10-{stamp}-reference-engine",
                ref_extra, engine=True)
    baseline = None
    if not args.no_baseline:
        epochs = 1 if args.smoke else (args.baseline_epochs or 2)
        baseline = run_cifar_baseline(data, epochs=epochs, max_batches=3 if args.smoke else None)
    ratio = reference["wall_seconds"] / wall_stats["mean"] if reference else None
    figure = (f"{acc_stats['mean']:.4f} ± {acc_stats['std']:.4f} (min {acc_stats['min']:.4f}) "
              f"in {wall_stats['mean']:.0f} ± {wall_stats['std']:.0f} s wall, {len(runs)} seeds")
    ref_text = ("not run" if reference is None else
                f"airbench94 recipe {reference['wall_seconds']:.0f} s ({reference['mode']}); "
                f"preset {ratio:.2f}× faster")
    engine_ref = (reference or {}).get("on_cnnlab_engine")
    if engine_ref:
        ref_text += (f" (the recipe on cnnlab's allocator and kernels: "
                     f"{engine_ref['wall_seconds']:.0f} s)")
    if baseline:
        last = baseline["epochs"][-1]
        ref_text += (f"; ordinary way {baseline['images_per_s']:.0f} img/s, "
                     f"{last['test_accuracy']:.1%} after {last['epoch']} epochs")
    summary = [{"task": result_name(args),
                "what": f"--preset {task['preset']}: test accuracy (TTA) mean ± std (min), wall s "
                        f"({runs[0]['precision']})",
                "figure": figure, "baseline": ref_text}]
    curve = time_to_accuracy(runs)
    if curve:
        summary.append({"task": result_name(args),
                        "what": "time to accuracy: mean training seconds → mean test accuracy "
                                "(one view) after each epoch",
                        "figure": ", ".join(f"{c['train_seconds']:.0f} s → {c['accuracy']:.1%}"
                                            for c in curve)})
    payload = {
        "command": f"cnnlab train --preset {task['preset']} --data {task['data']} "
                   + " ".join(extra),
        "target_accuracy": task["target"], "runs": runs, "test_accuracy": acc_stats,
        "wall_seconds": wall_stats, "reference": reference, "baseline": baseline,
        "speedup_vs_reference": ratio, "time_to_accuracy": curve,
        "reached": {"accuracy": acc_stats["mean"] >= task["target"],
                    "speedup": ratio is not None and ratio >= task["speedup"]},
        "summary_rows": summary}
    if args.smoke:
        print(json.dumps({"smoke": True, **summary[0], "wall_seconds": wall_stats,
                          "time_to_accuracy": curve}))
        return
    path = save_result(result_name(args), payload)
    write_results_md()
    print(json.dumps(summary[0]))
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
