"""Accuracy versus bits (the speed issue's "Fewer bits"): 32 / 16 / 8 / 1 on MNIST and cifar10-jpeg.

    python benchmarks/bits.py mnist            # vgg-small, 20k-image MNIST subset, 2 seeds
    python benchmarks/bits.py cifar10 --seeds 1   # vgg-small, 10k-image cifar10-jpeg subset
    python benchmarks/bits.py all --smoke      # seconds on digits: checks the script only

One net (``vgg-small``), one recipe per data set, the same seeds for every row:

* **32** — fp32 training (the reference).
* **16** — bf16 autocast training (``--precision bf16``), same seeds: the half-precision
  accuracy comparison. On a CPU without native bf16 it is slow (the figure still holds; the time
  does not) — the CPU kind is in the JSON.
* **8** — post-training int8 of each fp32 model: PT2E static quantization with the x86 Inductor
  quantizer, calibrated on 256 training images (``cnnlab.perf.infer.int8_static``), scored on the
  whole test split.
* **1** — a binarized network (Hubara et al. 2016; ``--model-arg binary=bnn``): 1-bit weights and
  activations everywhere except the first conv and the classifier, trained with the straight-
  through estimator, Adam and a longer schedule (BNNs learn slower); the XNOR-Net variant
  (per-channel α) beside it.

The weight-storage column counts bits per weight as stored for inference (1 per binary weight).
Results: results/bits-<task>.json and one RESULTS.md row per task.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cnnlab  # noqa: E402
from cnnlab.models.binary import weight_bits  # noqa: E402
from cnnlab.perf.infer import _predict, calibration_images, int8_static  # noqa: E402
from common import SHARED, mean_std, save_result, write_results_md  # noqa: E402

TASKS = {
    "mnist": dict(model="vgg-small", data="mnist", data_dir=str(SHARED), optimizer="sgd",
                  nesterov=True, lr=0.1, momentum=0.9, weight_decay=5e-4, batch_size=128,
                  epochs=4, subset=20000, label_smoothing=0.1),
    "cifar10": dict(model="vgg-small", data=str(SHARED / "cifar10-jpeg"), optimizer="sgd",
                    nesterov=True, lr=0.1, momentum=0.9, weight_decay=5e-4, batch_size=128,
                    epochs=12, subset=10000, label_smoothing=0.1, augment=["crop:4", "flip"]),
}
# BNNs: Adam (Hubara et al. used Adam with a decaying lr), no weight decay on ±1 weights, and
# half as many epochs again, since the straight-through gradient is a noisy one
BINARY = dict(optimizer="adam", lr=3e-3, weight_decay=0.0, nesterov=False)
SMOKE = dict(model="simple-cnn", data="digits", epochs=2, batch_size=64, optimizer="adam",
             lr=3e-3, report=False)  # no report.html: a second a run, and not what's checked


def train(cfg: dict, out: Path, **kw) -> dict:
    t0 = time.perf_counter()
    r = cnnlab.train(out=str(out), progress=False, **{**cfg, **kw})
    return {"run_dir": r.run_dir, "test_accuracy": r.test_accuracy,
            "train_seconds": r.train_seconds, "wall_seconds": round(time.perf_counter() - t0, 1),
            "precision": r.precision}


def int8_accuracy(run_dir: str) -> dict:
    """Accuracy of the run's model after PT2E int8 post-training quantization (whole test set)."""
    from cnnlab.api import load_run_data

    model = cnnlab.load_model(run_dir)
    test = load_run_data(run_dir, model.meta).test
    x = test.images.float().div_(255.0)
    calib, _ = calibration_images(Path(run_dir), model, 256)
    fn, note = int8_static(model, calib, x[:250], timeout=600)
    if fn is None:
        return {"accuracy": None, "note": note}
    with torch.no_grad():
        pred = _predict(fn, x, 250).argmax(1)
    return {"accuracy": float((pred == test.labels).float().mean()), "note": note}


def run_task(task: str, args) -> tuple[dict, list[dict]]:
    base = SMOKE if args.smoke else TASKS[task]
    seeds = list(range(1 if args.smoke else args.seeds))
    out = Path(args.out)
    stamp = time.strftime("%H%M%S")
    rows: dict[str, list[dict]] = {"fp32": [], "bf16": [], "int8": [], "bnn": [], "xnor": []}
    reused = None
    if args.binary_only:  # the 32/16/8-bit rows of the last full run, if its recipe is this one
        reused = reused_rows(task, base)
        rows.update({k: reused["runs"][k] for k in ("fp32", "bf16", "int8")})
        seeds = reused["seeds"]
    for s in [] if reused else seeds:
        fp32 = train(base, out / f"bits-{task}-fp32-s{s}-{stamp}", precision="fp32", seed=s)
        rows["fp32"].append(fp32)
        rows["int8"].append({**int8_accuracy(fp32["run_dir"]), "from": fp32["run_dir"]})
        rows["bf16"].append(train(base, out / f"bits-{task}-bf16-s{s}-{stamp}",
                                  precision="bf16", seed=s))
    epochs = base["epochs"] + base["epochs"] // 2
    for kind in ("bnn", "xnor"):
        kwargs = {**base.get("model_kwargs", {}), "binary": kind}
        rows[kind].append(train({**base, **BINARY, "epochs": epochs},
                                out / f"bits-{task}-{kind}-{stamp}", precision="fp32",
                                seed=0, model_kwargs=kwargs))
    model = cnnlab.load_model(rows["fp32"][0]["run_dir"])
    bnn = cnnlab.load_model(rows["bnn"][0]["run_dir"])
    xnor = cnnlab.load_model(rows["xnor"][0]["run_dir"])
    storage = {"fp32": weight_bits(model, 32), "bf16": weight_bits(model, 16),
               "int8": weight_bits(model, 8), "bnn": weight_bits(bnn, 32),
               "xnor": weight_bits(xnor, 32)}
    summary = {}
    for key, runs in rows.items():
        accs = [r["accuracy"] if "accuracy" in r else r["test_accuracy"] for r in runs]
        accs = [a for a in accs if a is not None]
        summary[key] = {"accuracy": mean_std(accs) if accs else None,
                        "weight_kbytes": round(storage[key] / 8 / 1024, 1)}

    def fmt(key: str) -> str:
        a = summary[key]["accuracy"]
        if a is None:
            return f"{key}: –"
        spread = f" ± {100 * a['std']:.2f}" if a["n"] > 1 else ""
        return f"{key} {100 * a['mean']:.2f}{spread} % ({summary[key]['weight_kbytes']} KB)"

    what = (f"{base['model']}, bits 32/16/8/1: test accuracy (weights), seeds {len(seeds)} for "
            f"fp32/bf16/int8, 1 for binary; {base['epochs']} epochs"
            + (f", {base['subset']}-image subset" if base.get("subset") else "")
            + f" ({epochs} for binary)")
    table = [{"task": f"bits {task}", "what": what,
              "figure": "; ".join(fmt(k) for k in ("bf16", "int8", "bnn", "xnor")),
              "baseline": fmt("fp32")}]
    extra = {"reused_rows": {"fp32/bf16/int8": reused["date"]}} if reused else {}
    return {"config": base, "binary_config": {**BINARY, "epochs": epochs}, "seeds": seeds,
            "summary": summary, "runs": rows, **extra}, table


def reused_rows(task: str, base: dict) -> dict:
    """results/bits-<task>.json, when it was measured with this recipe on this CPU kind."""
    from cnnlab.perf.hardware import machine_info

    path = Path(__file__).resolve().parent / "results" / f"bits-{task}.json"
    if not path.exists():
        raise SystemExit(f"--binary-only: {path} does not exist; run without it once")
    old = json.loads(path.read_text())
    if old.get("config") != base:
        raise SystemExit(f"--binary-only: {path} was measured with another recipe")
    if old["machine"].get("cpu_kind") != machine_info().get("cpu_kind"):
        raise SystemExit(f"--binary-only: {path} was measured on {old['machine']['cpu_kind']}")
    return {**old, "date": old.get("reused_rows", {}).get("fp32/bf16/int8", old.get("date"))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("task", choices=[*TASKS, "all"])
    parser.add_argument("--smoke", action="store_true", help="digits, tiny: checks the script")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--binary-only", action="store_true",
                        help="retrain the 1-bit rows only; reuse the fp32/bf16/int8 rows of "
                             "results/bits-<task>.json (same recipe and CPU kind)")
    parser.add_argument("--out", default="runs/bench", help="where run directories go")
    args = parser.parse_args()
    for task in TASKS if args.task == "all" else [args.task]:
        t0 = time.perf_counter()
        results, rows = run_task(task, args)
        payload = {"task": task, **results, "wall_seconds": round(time.perf_counter() - t0, 1),
                   "summary_rows": rows}
        if args.smoke:
            print(json.dumps({"smoke": True, "task": task, "rows": rows}))
            continue
        path = save_result(f"bits-{task}", payload)
        write_results_md()
        print(json.dumps(rows))
        print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
