"""Inference speed of a trained run across runtimes (the speed issue's target 4), as a result file.

    python benchmarks/infer.py runs/bench/cifar10-…      # the cifar10-jpeg vgg-small run
    python benchmarks/infer.py RUN --smoke               # a few images: checks the script only
    python benchmarks/infer.py RUN --tag amx             # results/infer-MODEL-amx.json

Runs ``cnnlab.perf.infer.bench_infer`` (the code behind ``cnnlab bench-infer``) on 1,000 test
images at batch 1 and 64; eager fp32 in the same run is the baseline. Target: ≥ 2× eager fp32
images/s at batch 64 with < 0.3 points of accuracy lost. Writes results/infer-<model>.json and
one RESULTS.md row per runtime.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cnnlab.perf.infer import bench_infer  # noqa: E402
from cnnlab.perf.memory import tune_allocator  # noqa: E402
from common import add_tag_argument, save_result, tagged, write_results_md  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--smoke", action="store_true")
    add_tag_argument(parser)
    args = parser.parse_args()
    tune_allocator()  # as `cnnlab bench-infer` runs (cli/__init__.py)
    res = bench_infer(args.run, batch_sizes=[1, 64], n=32 if args.smoke else args.n,
                      compile_timeout=0 if args.smoke else 300,
                      budget_s=0.2 if args.smoke else 3.0)
    base = res["rows"][0]
    rows = []
    for r in res["rows"]:
        if r["accuracy"] is None:
            continue
        ips = r["images_per_s"]
        rows.append({"task": f"infer {tagged(res['model'], args.tag)}",
                     "what": f"{r['runtime']}: img/s at batch 1 / 64, accuracy on {res['n']} "
                             f"test images ({res['data']})",
                     "figure": f"{ips['1']:.0f} / {ips['64']:.0f} img/s ({r['speedup']:.2f}× at "
                               f"64), {100 * r['accuracy']:.1f} % ({r['accuracy_delta']:+.1f})",
                     "baseline": "" if r is base else
                                 f"eager fp32 {base['images_per_s']['64']:.0f} img/s, "
                                 f"{100 * base['accuracy']:.1f} %"})
    if args.smoke:
        print(json.dumps({"smoke": True, "rows": rows}))
        return
    path = save_result(tagged(f"infer-{res['model']}", args.tag), {**res, "summary_rows": rows})
    write_results_md()
    print(json.dumps(rows, indent=1))
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
