"""The zoo issue's two experiments on real data (cifar10-jpeg), each against its own baseline.

    python benchmarks/zoo_experiments.py degradation   # plain20/56 vs resnet20/56: 4 curves + PNG
    python benchmarks/zoo_experiments.py research      # quasi-hexagonal vs square kernels, 3 seeds
    python benchmarks/zoo_experiments.py all --smoke   # seconds on digits: checks the script only

**Degradation** (He et al. 2015, Fig. 1 and Fig. 6): with batch norm, a deeper *plain* net has a
*higher training error* than a shallower one — not overfitting, an optimization difficulty —
while the same depths with identity shortcuts get better with depth. All four nets share one
recipe, one stratified training subset (``--subset``, seeded) and one held-out validation split
carved from the training set, so the per-epoch curves compare like with like. The subset keeps
the four runs inside a session on a 2-core CPU; the claim checked is the ordering of the
training-error curves, not the paper's absolute errors.

**Research layer** (Sun et al. 2016, quasi-hexagonal kernels): a 7-tap ∇-shaped kernel whose
orientation turns layer by layer, against the square 3×3 kernel in the same ``research-cifar``
net (widths 32-32/64-64/128-128), same recipe, three seeds each: mean ± std of test accuracy and
the parameter count (hex has 7/9 of the conv weights; a masked 3×3 costs the same FLOPs here).

Results: results/zoo-degradation.json (+ zoo-degradation.png) and results/zoo-research.json,
one RESULTS.md row per figure.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cnnlab  # noqa: E402
from cnnlab.models import create_model  # noqa: E402
from cnnlab.perf.flops import count_params  # noqa: E402
from common import RESULTS, SHARED, mean_std, save_result, write_results_md  # noqa: E402

CIFAR = str(SHARED / "cifar10-jpeg")
RECIPE = dict(data=CIFAR, optimizer="sgd", nesterov=True, lr=0.1, momentum=0.9,
              weight_decay=5e-4, batch_size=128, schedule="onecycle", warmup_epochs=1,
              augment=["crop:4", "flip"], val_fraction=0.04, precision="fp32")
# batch 64 (lr 0.05, the paper's 0.1 at 128 scaled linearly) and 2 warm-up epochs: twice the
# steps of batch 128 for the same images, and the deep nets get past their unstable first steps
# (He et al. warm up ResNet-110 the same way)
DEGRADATION = dict(RECIPE, subset=4000, epochs=25, batch_size=64, lr=0.05, warmup_epochs=2)
DEPTHS = ["plain20", "plain56", "resnet20", "resnet56"]
RESEARCH = dict(RECIPE, subset=5000, epochs=10,
                model_kwargs={"cfg": [32, 32, "M", 64, 64, "M", 128, 128, "M"]})
SMOKE = dict(data="digits", epochs=2, batch_size=64, precision="fp32", val_fraction=0.2,
             report=False)  # no report.html: a second a run, and not what's checked


def train(model: str, cfg: dict, out: Path, **kw) -> dict:
    t0 = time.perf_counter()
    r = cnnlab.train(model=model, out=str(out), progress=False, **{**cfg, **kw})
    return {"model": model, "test_accuracy": r.test_accuracy, "train_seconds": r.train_seconds,
            "wall_seconds": round(time.perf_counter() - t0, 1), "history": r.history,
            "run_dir": r.run_dir}


def plot_degradation(runs: list[dict], path: Path) -> None:
    """Training error (solid) and validation error (dashed) per epoch, as in He et al. Fig. 6."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    colours = {"20": "tab:blue", "56": "tab:red"}
    for ax, family in zip(axes, ["plain", "resnet"], strict=True):
        for r in (r for r in runs if r["model"].startswith(family)):
            depth = r["model"].removeprefix(family)
            epochs = [h["epoch"] for h in r["history"]]
            ax.plot(epochs, [100 * (1 - h["train_acc"]) for h in r["history"]],
                    color=colours[depth], label=f"{r['model']} train")
            ax.plot(epochs, [100 * (1 - h["eval_acc"]) for h in r["history"]],
                    color=colours[depth], linestyle="--", label=f"{r['model']} val")
        ax.set_title(f"{family} nets" + (" (no shortcuts)" if family == "plain" else ""))
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    axes[0].set_ylabel("error (%)")
    fig.suptitle("Degradation: cifar10-jpeg, 4,000-image training subset, same recipe")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def task_degradation(args) -> tuple[dict, list[dict]]:
    cfg = SMOKE if args.smoke else DEGRADATION
    models = ["plain20", "resnet20"] if args.smoke else DEPTHS
    runs = [train(m, cfg, Path(args.out) / f"degradation-{m}-{time.strftime('%H%M%S')}")
            for m in models]
    final = {r["model"]: r for r in runs}

    def err(model: str, key: str, last: int = 3) -> float:  # mean of the last epochs: less noise
        return 100 * statistics.fmean(1 - h[key] for h in final[model]["history"][-last:])

    rows = []
    if not args.smoke:
        plot_degradation(runs, RESULTS / "zoo-degradation.png")
        for fam in ("plain", "resnet"):
            shallow, deep = f"{fam}20", f"{fam}56"
            rows.append({"task": "zoo degradation", "what": f"{shallow} vs {deep}: training error "
                         "(mean of last 3 epochs) / test accuracy; 4k-image subset, 25 epochs "
                         "(plot: results/zoo-degradation.png)",
                         "figure": f"{err(shallow, 'train_acc'):.1f} % vs "
                                   f"{err(deep, 'train_acc'):.1f} % / "
                                   f"{100 * final[shallow]['test_accuracy']:.1f} % vs "
                                   f"{100 * final[deep]['test_accuracy']:.1f} %"})
    summary = {m: {"train_error_last3": round(err(m, "train_acc"), 2),
                   "val_error_last3": round(err(m, "eval_acc"), 2),
                   "test_accuracy": final[m]["test_accuracy"],
                   "train_seconds": final[m]["train_seconds"]} for m in final}
    return {"config": {k: v for k, v in cfg.items()}, "summary": summary, "runs": runs}, rows


def free_params(net) -> int:
    """Trainable numbers that can move: a hex conv's masked taps stay exactly zero."""
    fixed = sum(int(m.weight.numel() * (1 - m.mask.float().mean())) for m in net.modules()
                if hasattr(m, "mask") and hasattr(m, "weight"))
    return count_params(net) - fixed


def task_research(args) -> tuple[dict, list[dict]]:
    cfg = SMOKE if args.smoke else RESEARCH
    seeds = range(1 if args.smoke else args.seeds)
    out: dict = {"config": cfg, "kinds": {}}
    rows = []
    for conv in ("square", "hex"):
        kwargs = {**cfg.get("model_kwargs", {}), "conv": conv}
        runs = [train("research-cifar", {**cfg, "model_kwargs": kwargs},
                      Path(args.out) / f"research-{conv}-s{s}-{time.strftime('%H%M%S')}", seed=s)
                for s in seeds]
        net = create_model("research-cifar", num_classes=10, **kwargs)
        acc = mean_std([r["test_accuracy"] for r in runs])
        out["kinds"][conv] = {"params": count_params(net), "free_params": free_params(net),
                              "test_accuracy": acc, "runs": runs}
    out["summary"] = {conv: {"test_accuracy": k["test_accuracy"]["mean"], "params": k["params"],
                             "free_params": k["free_params"]} for conv, k in out["kinds"].items()}
    sq, hx = out["kinds"]["square"], out["kinds"]["hex"]
    rows.append({"task": "zoo research layer", "what": "research-cifar (32-32/64-64/128-128), "
                 f"quasi-hexagonal vs square 3×3 kernels, {len(seeds)} seeds, 5k-image subset, "
                 "10 epochs: test accuracy mean ± std (trainable weights that can move)",
                 "figure": f"hex {100 * hx['test_accuracy']['mean']:.2f} ± "
                           f"{100 * hx['test_accuracy']['std']:.2f} % ({hx['free_params']:,})",
                 "baseline": f"square {100 * sq['test_accuracy']['mean']:.2f} ± "
                             f"{100 * sq['test_accuracy']['std']:.2f} % ({sq['free_params']:,})"})
    return out, rows


TASKS = {"degradation": task_degradation, "research": task_research}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("task", choices=[*TASKS, "all"])
    parser.add_argument("--smoke", action="store_true", help="digits, tiny: checks the script")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", default="runs/bench", help="where run directories go")
    args = parser.parse_args()
    for task in TASKS if args.task == "all" else [args.task]:
        t0 = time.perf_counter()
        results, rows = TASKS[task](args)
        payload = {"task": task, **results, "wall_seconds": round(time.perf_counter() - t0, 1),
                   "summary_rows": rows}
        if args.smoke:
            print(json.dumps({"smoke": True, "task": task, "wall_seconds": payload["wall_seconds"],
                              "summary": results.get("summary")}))
            continue
        path = save_result(f"zoo-{task}", payload)
        write_results_md()
        print(json.dumps(rows))
        print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
