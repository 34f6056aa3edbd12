"""The zoo against the papers' tables: params and multiply-adds, counted, not typed in.

    python benchmarks/zoo_table.py
    python benchmarks/zoo_table.py --smoke    # three small nets: checks the script only

Counts come from ``cnnlab.perf.flops`` (FlopCounterMode; multiply-adds = FLOPs / 2) at the
papers' input size and class count; the published figures are the targets of the zoo issue.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cnnlab.models import create_model, get_spec  # noqa: E402
from cnnlab.perf.flops import count_macs, count_params  # noqa: E402
from common import save_result, write_results_md  # noqa: E402

# name: (published params, published multiply-adds or None)
PUBLISHED = {
    "lenet5": (61_706, None), "alexnet": (61_100_840, None),
    "vgg-a": (132_863_336, None), "vgg-b": (133_047_848, None), "vgg-c": (133_638_952, None),
    "vgg-d": (138_357_544, None), "vgg-e": (143_667_240, None),
    "googlenet": (6_800_000, None),
    "resnet18": (11_689_512, 1.8e9), "resnet34": (21_797_672, 3.6e9),
    "resnet50": (25_557_032, 3.8e9), "resnet101": (44_549_160, 7.6e9),
    "resnet152": (60_192_808, 11.3e9),
    "resnet20": (270_000, None), "resnet32": (460_000, None), "resnet44": (660_000, None),
    "resnet56": (850_000, None), "resnet110": (1_700_000, None),
    "preact-resnet164": (1_700_000, None), "preact-resnet1001": (10_200_000, None),
    "wrn-28-10": (36_500_000, None), "densenet121": (7_978_856, None),
    "densenet-bc-100-12": (800_000, None),
}
SMOKE = ["lenet5", "resnet20", "resnet18"]  # small, CIFAR-size, one with published mult-adds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true",
                        help=f"only {', '.join(SMOKE)}: checks the script (writes nothing)")
    args = parser.parse_args()
    names = SMOKE if args.smoke else list(PUBLISHED)
    rows, summary = [], []
    for name in names:
        params_pub, macs_pub = PUBLISHED[name]
        spec = get_spec(name)
        c, h, w = spec.input_size
        model = create_model(name, num_classes=spec.num_classes, in_chans=c, input_size=(h, w))
        params, macs = count_params(model), count_macs(model, spec.input_size)
        row = {"name": name, "input_size": list(spec.input_size), "params": params,
               "params_published": params_pub, "params_diff": params / params_pub - 1,
               "macs": macs, "macs_published": macs_pub,
               "macs_diff": None if macs_pub is None else macs / macs_pub - 1}
        rows.append(row)
        mac_text = f", {macs / 1e9:.2f} G mult-adds" + (
            f" (paper {macs_pub / 1e9:.1f} G, {row['macs_diff']:+.1%})" if macs_pub else "")
        summary.append({"task": "zoo", "what": f"{name} at {c}×{h}×{w}",
                        "figure": f"{params:,} params{mac_text}",
                        "baseline": f"paper: {params_pub:,} ({row['params_diff']:+.2%})"})
        print(f"{name:20s} {params:>12,} {row['params_diff']:+.2%}  {macs / 1e9:8.3f} G",
              file=sys.stderr if args.smoke else sys.stdout)
    if args.smoke:
        print(json.dumps({"smoke": True, "models": rows, "summary_rows": summary}))
        return
    save_result("zoo-table", {"models": rows, "summary_rows": summary})
    write_results_md()


if __name__ == "__main__":
    main()
