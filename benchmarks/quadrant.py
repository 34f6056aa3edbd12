"""Do the attribution maps point at the evidence? The quadrant check over several seeds.

    python benchmarks/quadrant.py [--seeds 3]
    python benchmarks/quadrant.py --smoke     # one seed, seconds: checks the script only

Synthetic 16×16 grey images whose class-1 evidence (a bright blob) lies in the top-left
quadrant; a tiny CAM-style CNN learns them in about a second. Reported: the share of Grad-CAM's
mass and of occlusion's probability drop that falls in that quadrant (uniform would be 0.25).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cnnlab.explain.attribution import grad_cam, occlusion  # noqa: E402
from cnnlab.explain.synthetic import quadrant_fraction, train_quadrant_model  # noqa: E402
from common import mean_std, save_result, write_results_md  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--smoke", action="store_true",
                        help="one seed, 4 occluded images: checks the script (writes nothing)")
    args = parser.parse_args()
    if args.smoke:
        args.seeds = 1
    per_seed = []
    for seed in range(args.seeds):
        model, x, y, acc = train_quadrant_model(seed=seed)
        positives = x[y == 1]
        cam = quadrant_fraction(grad_cam(model, positives, "conv2", target=1)["cam"])
        occ = torch.stack([quadrant_fraction(occlusion(model, img, target=1, patch=4,
                                                       stride=2)["drop"])
                           for img in positives[:4 if args.smoke else 16]])
        per_seed.append({"seed": seed, "model_accuracy": acc, "grad_cam": cam.mean().item(),
                         "grad_cam_min": cam.min().item(), "occlusion": occ.mean().item(),
                         "occlusion_min": occ.min().item(), "images": len(positives)})
        print(per_seed[-1], file=sys.stderr if args.smoke else sys.stdout)
    cam_s = mean_std([r["grad_cam"] for r in per_seed])
    occ_s = mean_std([r["occlusion"] for r in per_seed])
    summary = [{"task": "quadrant", "what": f"share of map mass in the evidence quadrant "
                f"({args.seeds} seeds)",
                "figure": f"Grad-CAM {cam_s['mean']:.3f} ± {cam_s['std']:.3f}, occlusion "
                          f"{occ_s['mean']:.3f} ± {occ_s['std']:.3f}",
                "baseline": f"uniform 0.250; model accuracy "
                            f"{statistics.fmean(r['model_accuracy'] for r in per_seed):.3f}"}]
    if args.smoke:
        print(json.dumps({"smoke": True, "seeds": per_seed, "grad_cam": cam_s,
                          "occlusion": occ_s, "summary_rows": summary}))
        return
    save_result("explain-quadrant", {"seeds": per_seed, "grad_cam": cam_s, "occlusion": occ_s,
                                     "summary_rows": summary})
    write_results_md()
    print(summary[0]["figure"])


if __name__ == "__main__":
    main()
