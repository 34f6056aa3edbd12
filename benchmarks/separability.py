"""How separable the classes are, stage by stage, in trained runs (the DeCAF finding).

    python benchmarks/separability.py RUN [RUN …] [--limit 2000]
    python benchmarks/separability.py RUN --smoke    # 200 images: checks the script only

For each run: 2,000 seeded test images, global-average-pooled features of every stage of
``feature_layers()`` (input pixels first), a logistic-regression probe's accuracy and the Fisher
ratio per stage — the numbers behind ``cnnlab explain RUN --method separability``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cnnlab.api import load_model, load_run_data  # noqa: E402
from cnnlab.explain.separability import separability  # noqa: E402
from common import save_result, write_results_md  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--limit", type=int, default=2000)
    parser.add_argument("--smoke", action="store_true",
                        help="200 test images: checks the script (writes nothing)")
    args = parser.parse_args()
    if args.smoke:
        args.limit = min(args.limit, 200)
    results, summary = [], []
    for run in args.runs:
        model = load_model(run)
        test = load_run_data(run, model.meta).test
        idx = torch.randperm(len(test), generator=torch.Generator().manual_seed(0))[:args.limit]
        r = separability(model, test.images[idx.sort().values], test.labels[idx.sort().values])
        stages = [{k: s[k] for k in ("name", "depth", "dims", "probe_accuracy", "fisher_ratio")}
                  for s in r["stages"]]
        results.append({"run": run, "model": model.meta["model"], "data": model.meta["data"],
                        "n": len(idx), "chance": r["chance"], "stages": stages})
        summary.append({
            "task": f"separability {Path(str(model.meta['data'])).name}",
            "what": f"{model.meta['model']}: linear-probe accuracy by stage (Fisher ratio)",
            "figure": " → ".join(f"{s['name']} {s['probe_accuracy']:.3f} "
                                 f"({s['fisher_ratio']:.2f})" for s in stages),
            "baseline": f"chance {r['chance']:.3f}"})
        print(summary[-1]["figure"], file=sys.stderr if args.smoke else sys.stdout)
    if args.smoke:
        print(json.dumps({"smoke": True, "runs": results, "summary_rows": summary}))
        return
    save_result("explain-separability", {"runs": results, "summary_rows": summary})
    write_results_md()


if __name__ == "__main__":
    main()
