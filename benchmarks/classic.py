"""The pre-deep-learning pipeline next to CNNs (the classical-pipeline part of issue 7).

    python benchmarks/classic.py mnist      # HOG + linear SVM on full MNIST, next to the CNN
    python benchmarks/classic.py cifar10    # dense SIFT + BoVW / VLAD / Fisher on cifar10-jpeg
    python benchmarks/classic.py --smoke    # seconds on digits: checks the script only

mnist: HOG (7×7 cells of 4 px, 2×2-cell blocks, 9 orientations; 1,296 dims) + LinearSVC with C
by 3-fold CV on the training split, 60k train / 10k test — the issue asks for ≥ 97 %. The CNN
row is read from results/core-mnist.json (``python benchmarks/core.py mnist``).

cifar10: a seeded stratified 10k-train / 2k-test subset of cifar10-jpeg; dense SIFT (sizes 8, 12,
16 px, step 4 → 110 descriptors per 32×32 image) encoded as BoVW (256 words), VLAD (32 centres)
and Fisher vectors (32 Gaussians on 64-dim PCA'd SIFT), each + LinearSVC, with the time of
every stage. The trained CNN's row is read from results/core-cifar10.json; "CNN features"
(the trained CNN's head-input features → linear SVM, ``cnnlab.transfer``, 1,000 training
images per class, full 10k test split) runs when that run directory still exists.

Results: results/classic-<task>.json and RESULTS.md rows (not written with --smoke).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from cnnlab.classic import run_classic  # noqa: E402
from cnnlab.classic.compare import read_source  # noqa: E402
from common import RESULTS, SHARED, save_result, write_results_md  # noqa: E402

TASKS = {
    "mnist": dict(data="mnist", data_dir=str(SHARED), cnn="core-mnist.json", label="MNIST",
                  runs=[dict(features="hog", encoding="none")]),
    "cifar10": dict(data=str(SHARED / "cifar10-jpeg"), data_dir=None, cnn="core-cifar10.json",
                    label="cifar10-jpeg 10k/2k", max_train=10_000, max_test=2_000,
                    cnn_features=True,
                    runs=[dict(features="dsift", encoding="bovw"),
                          dict(features="dsift", encoding="vlad"),
                          dict(features="dsift", encoding="fisher")]),
    "smoke": dict(data="digits", data_dir=None, cnn="core-digits.json", label="digits (smoke)",
                  image_size=16, max_train=600,
                  runs=[dict(features="hog", encoding="none"),
                        dict(features="dsift", encoding="bovw", codebook_size=32),
                        dict(features="dsift", encoding="vlad", codebook_size=8),
                        dict(features="dsift", encoding="fisher", codebook_size=4, pca=16)]),
}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def cnn_rows(spec: dict) -> list[dict]:
    """The trained CNN's row from an existing core benchmark result, if it was run."""
    path = RESULTS / spec["cnn"]
    if not path.exists():
        log(f"no {path.name}: run `python benchmarks/core.py` for the CNN row")
        return []
    return read_source(path)


def cnn_feature_row(spec: dict) -> dict | None:
    """The trained CNN's frozen features + linear SVM on the same data (cnnlab.transfer)."""
    from cnnlab.transfer import transfer

    path = RESULTS / spec["cnn"]
    run_dir = json.loads(path.read_text())["cnnlab"]["run_dir"] if path.exists() else None
    if not run_dir or not Path(run_dir).is_dir():
        log(f"CNN-features row skipped: run directory {run_dir} not found")
        return None
    t0 = time.perf_counter()
    r = transfer(run_dir, spec["data"], mode="features", classifier="svm", per_class="1000",
                 log=log)
    row = r["rows"][0]
    return {"name": f"{r['model']} features [{row['layer']}] + linear-svm", "kind": "transfer",
            "accuracy": row["mean"], "seconds": round(time.perf_counter() - t0, 1),
            "notes": f"1000/class train, {r['test_images']} test", "result": r}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("task", nargs="?", choices=["mnist", "cifar10"])
    parser.add_argument("--smoke", action="store_true", help="digits, seconds: checks the script")
    args = parser.parse_args()
    if not args.smoke and not args.task:
        parser.error("give a task (mnist, cifar10) or --smoke")
    task = "smoke" if args.smoke else args.task
    spec = TASKS[task]
    t0 = time.perf_counter()
    results, rows = [], []
    for run in spec["runs"]:
        r = run_classic(spec["data"], data_dir=spec["data_dir"], classifier="linear-svm",
                        max_train=spec.get("max_train"), max_test=spec.get("max_test"),
                        image_size=spec.get("image_size"), progress=False, log=log, **run)
        results.append(r)
        t, s = r["timings"], r["sizes"]
        rows.append({"task": f"classic-{task}", "what": f"{r['name']} on {spec['label']} "
                     f"({s['n_train']} train / {s['n_test']} test, {s['encoding_dim']} dims)",
                     "figure": f"{r['accuracy']:.4f} in {t['total']:.0f} s (features "
                     f"{t['features']:.0f} s, codebook {t['codebook']:.0f} s, encode "
                     f"{t['encode']:.0f} s, fit {t['fit']:.0f} s)", "baseline": ""})
    extra = []
    if spec.get("cnn_features"):
        row = cnn_feature_row(spec)
        if row:
            extra.append(row)
            rows.append({"task": f"classic-{task}", "what": f"{row['name']} on {spec['label']} "
                         f"({row['notes']})", "figure": f"{row['accuracy']:.4f} in "
                         f"{row['seconds']:.0f} s", "baseline": ""})
    for cnn in cnn_rows(spec):
        extra.append(cnn)
        rows.append({"task": f"classic-{task}", "what": f"next to: trained CNN {cnn['name']} "
                     f"({cnn['notes']})", "figure": f"{cnn['accuracy']:.4f} in "
                     f"{cnn['seconds']:.0f} s training", "baseline": ""})
    payload = {"task": task, "classic": results, "compared": extra,
               "wall_seconds": round(time.perf_counter() - t0, 1), "summary_rows": rows}
    if args.smoke:
        print(json.dumps({"smoke": True, "wall_seconds": payload["wall_seconds"],
                          "summary_rows": rows}, indent=2))
        return
    path = save_result(f"classic-{task}", payload)
    write_results_md()
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
