"""``cnnlab report RUN``: (re)write the run's self-contained report.html and print its path."""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="write the run's HTML report (curves, confusion, mistakes)",
                       description="Write RUN/report.html: config, environment, training curves, "
                       "confusion matrix, per-class scores, the most confidently wrong test "
                       "images, first-layer filters, parameters and multiply-adds. One file, "
                       "images inlined, opens offline. Training writes it too.")
    p.add_argument("run", help="run directory")
    p.add_argument("--open-path-only", action="store_true",
                   help="print only the report's path (for `xdg-open $(cnnlab report RUN "
                   "--open-path-only)`); an existing report is reused, not rewritten")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run_report)


def run_report(args: argparse.Namespace) -> int:
    from ..evaluate.report import REPORT, build_context, render
    from ..train import checkpoint as ckpt
    from . import emit_json

    run = Path(args.run)
    existing = run / REPORT
    if args.open_path_only and existing.is_file():
        ckpt.read_meta(run)  # still a run directory with weights
        print(existing)
        return 0
    t0 = time.perf_counter()
    page, errors = render(build_context(run))
    ckpt.write_text(existing, page)
    seconds = round(time.perf_counter() - t0, 3)
    if args.open_path_only:
        print(existing)
    elif args.json:
        emit_json({"path": str(existing), "seconds": seconds, "bytes": len(page.encode()),
                   "section_errors": errors})
    else:
        print(f"wrote {existing} ({len(page.encode()) / 1024:.0f} KiB, {seconds:.1f} s)")
    return 0
