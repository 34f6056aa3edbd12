"""Transfer-learning benchmark (the transfer issue's experiment).

    python benchmarks/transfer.py            # vgg-small on cifar10-jpeg classes 0–4 → 5–9
    python benchmarks/transfer.py --smoke    # seconds on digits 0–4 → 5–9: checks the script only
    python benchmarks/transfer.py --run runs/bench/transfer-backbone   # reuse a trained backbone

1. The backbone is trained with ``cnnlab.train`` on classes 0–4 only (written once as a PNG
   folder by :func:`cnnlab.transfer.data.write_folder`, since ``load_data`` has no class filter).
2. ``cnnlab.transfer.transfer(mode="compare")`` on classes 5–9 with 5/10/50 images per class and
   3 seeds: scratch vs frozen features + logistic regression vs fine-tuning, mean ± std on the
   full 5-class test split (expected ordering: scratch < features < fine-tune).
3. The per-layer curve: frozen features of every ``feature_layers()`` stage + head-input, linear
   probe trained on 50 images per class.

Results: results/transfer.json and a RESULTS.md row per figure (not written with --smoke).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cnnlab  # noqa: E402
from cnnlab.transfer import select_classes, transfer  # noqa: E402
from cnnlab.transfer.data import write_folder  # noqa: E402
from common import SHARED, save_result, write_results_md  # noqa: E402

SOURCE, TARGET = [0, 1, 2, 3, 4], [5, 6, 7, 8, 9]
FULL = dict(data=str(SHARED / "cifar10-jpeg"), label="cifar10",
            train=dict(model="vgg-small", optimizer="sgd", nesterov=True, lr=0.1, momentum=0.9,
                       weight_decay=5e-4, batch_size=256, epochs=15, label_smoothing=0.1,
                       augment=["crop:4", "flip"]),
            compare=dict(per_class="5,10,50", seeds=3, epochs=10, freeze_epochs=2,
                         min_steps=100),
            curve_per_class="50")
SMOKE = dict(data="digits", label="digits",
             train=dict(model="simple-cnn", model_kwargs={"width": 16}, epochs=2,
                        precision="fp32", report=False),
             compare=dict(per_class="5,10", seeds=2, epochs=1, freeze_epochs=1, min_steps=5),
             curve_per_class="10")


def train_backbone(spec: dict, out: Path, smoke: bool) -> str:
    folder = out / "source-classes"
    if not (folder / "train").is_dir():
        ds = select_classes(cnnlab.load_data(spec["data"]), SOURCE)
        write_folder(ds, folder)
    result = cnnlab.train(data=str(folder), out=str(out / "backbone"), progress=not smoke,
                          **spec["train"])
    print(f"backbone: {result.run_dir} test accuracy {result.test_accuracy:.4f} "
          f"on classes {SOURCE}", file=sys.stderr)
    return result.run_dir


def log(msg: str) -> None:
    print(msg, file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="digits, tiny: checks the script")
    parser.add_argument("--run", help="reuse this backbone run directory")
    parser.add_argument("--out", default="runs/bench/transfer", help="work folder")
    args = parser.parse_args()
    spec = SMOKE if args.smoke else FULL
    t0 = time.perf_counter()
    out = Path(args.out + ("-smoke" if args.smoke else ""))
    out.mkdir(parents=True, exist_ok=True)
    if args.run:
        run = args.run
    else:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        run = train_backbone(spec, out / stamp, args.smoke)
    compare = transfer(run, spec["data"], mode="compare", classes=TARGET, log=log,
                       **spec["compare"])
    curve = transfer(run, spec["data"], mode="features", layer="all", classes=TARGET,
                     per_class=spec["curve_per_class"], log=log)
    rows = []
    for r in compare["rows"]:
        rows.append({"task": "transfer", "what": f"{compare['model']} {spec['label']} 0–4 → 5–9, "
                     f"{r['mode']}, {r['per_class']}/class, {compare['seeds']} seeds",
                     "figure": f"{r['mean']:.3f} ± {r['std']:.3f}", "baseline": ""})
    curve_txt = ", ".join(f"{r['layer']} {r['mean']:.3f}" for r in curve["rows"])
    rows.append({"task": "transfer", "what": f"{compare['model']} per-layer linear probe, "
                 f"{spec['curve_per_class']}/class", "figure": curve_txt, "baseline": ""})
    payload = {"backbone_run": run, "source_classes": SOURCE, "target_classes": TARGET,
               "compare": compare, "layer_curve": curve,
               "wall_seconds": round(time.perf_counter() - t0, 1), "summary_rows": rows}
    if args.smoke:
        print(json.dumps({"smoke": True, "wall_seconds": payload["wall_seconds"],
                          "summary_rows": rows}, indent=2))
        return
    path = save_result("transfer", payload)
    write_results_md()
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
