"""``cnnlab data info``, ``cnnlab data download`` and ``cnnlab data list``."""

from __future__ import annotations

import argparse
import sys
import time

INFO_EPILOG = """\
examples:
  cnnlab data info mnist --data-dir ../shared/data
  cnnlab data info ../shared/data/cifar10-jpeg --grid cifar.png
  cnnlab data info my_photos/ --image-size 64 --json
  cnnlab data download fashion-mnist --data-dir ~/data
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="inspect and download data sets",
                       description="Inspect data sets (classes, counts, mean/std, sample grid) "
                       "and download the named ones.", epilog=INFO_EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    dsub = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    p.set_defaults(func=lambda args: (p.print_help(), 0)[1])

    i = dsub.add_parser("info", help="classes, counts per split, image size, mean/std",
                        description="Load a data set (named or a folder/.zip of class folders) "
                        "and print what the training code will see.", epilog=INFO_EPILOG,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    i.add_argument("data", metavar="NAME_OR_PATH",
                   help="digits | mnist | fashion-mnist | cifar10 | cifar100 | a folder or .zip")
    i.add_argument("--data-dir", help="where named data sets live (default $CNNLAB_DATA or "
                   "~/.cache/cnnlab)")
    i.add_argument("--image-size", type=int, help="resize images to N×N")
    i.add_argument("--channels", type=int, choices=(1, 3), help="convert to grey (1) or RGB (3)")
    i.add_argument("--val-fraction", type=float, help="held-out share per class: the test split "
                   "where the data has none, else a validation split from train")
    i.add_argument("--seed", type=int, default=0, help="seed of random splits (default 0)")
    i.add_argument("--skip-corrupt", action="store_true", help="skip unreadable images (counted)")
    i.add_argument("--no-cache", action="store_true", help="decode again, ignore the cache")
    i.add_argument("--grid", metavar="FILE.png", help="save a labelled grid of sample images")
    i.add_argument("--per-class", type=int, default=8, help="images per class in --grid "
                   "(default 8)")
    i.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    i.set_defaults(func=run_info)

    d = dsub.add_parser("download", help="download a named data set (MD5-checked)",
                        description="Download the canonical files of a named data set into "
                        "--data-dir, resuming partial downloads and checking MD5s; tries the "
                        "mirrors in order.")
    d.add_argument("name", help="mnist | fashion-mnist | cifar10 | cifar100")
    d.add_argument("--data-dir", help="target folder (default $CNNLAB_DATA or ~/.cache/cnnlab)")
    d.add_argument("--mirror", action="append", metavar="URL",
                   help="base URL to use instead of the built-in mirrors (repeatable)")
    d.add_argument("--timeout", type=float, default=30.0, help="seconds per connection "
                   "(default 30)")
    d.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    d.set_defaults(func=run_download)

    ls = dsub.add_parser("list", help="the named data sets and whether their files are here")
    ls.add_argument("--data-dir")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=run_list)


def run_info(args: argparse.Namespace) -> int:
    from ..data import load_data
    from ..data.preview import describe, sample_grid
    from . import emit_json, print_table

    start = time.perf_counter()
    ds = load_data(args.data, data_dir=args.data_dir, val_fraction=args.val_fraction,
                   seed=args.seed, image_size=args.image_size, channels=args.channels,
                   skip_corrupt=args.skip_corrupt, cache=not args.no_cache)
    out = describe(ds)
    out["load_seconds"] = round(time.perf_counter() - start, 3)
    if args.grid:
        out["grid"] = str(sample_grid(ds, args.grid, per_class=args.per_class, seed=args.seed))
    if args.json:
        emit_json(out)
        return 0
    splits = out["splits"]
    c, h, w = out["image_shape"]
    counts = " / ".join(f"{s['count']:,} {k}" for k, s in splits.items())
    print(f"{out['name']}  ({out['source']})")
    print(f"{counts} images, {c}×{h}×{w}, {len(out['classes'])} classes\n")
    keys = list(splits)
    rows = [[name, *[splits[k]["per_class"][j] for k in keys]]
            for j, name in enumerate(out["classes"])]
    rows.append(["total", *[splits[k]["count"] for k in keys]])
    print_table(rows, ["class", *keys])
    print()
    print_table([[ch["channel"], ch["mean"], ch["std"]] for ch in out["channels"]],
                ["channel", "mean", "std"])
    info = out["info"]
    notes = [f"{k}: {v}" for k, v in info.items() if k not in ("files", "skipped_files")]
    if notes:
        print()
        for note in notes:
            print(note)
    print(f"loaded in {out['load_seconds']:.2f} s")
    if args.grid:
        print(f"sample grid saved to {out['grid']}")
    return 0


def run_download(args: argparse.Namespace) -> int:
    from ..data.download import download
    from . import emit_json

    paths = download(args.name, args.data_dir, mirrors=args.mirror, timeout=args.timeout,
                     progress=None if not args.json else False)
    if args.json:
        emit_json({"name": args.name, "files": [str(p) for p in paths]})
    else:
        for p in paths:
            print(p)
        print(f"done: `cnnlab data info {args.name}"
              + (f" --data-dir {args.data_dir}`" if args.data_dir else "`"), file=sys.stderr)
    return 0


def run_list(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..data import SOURCES, default_data_dir
    from ..data.download import REMOTES
    from ..data.sources import source_status
    from . import emit_json, print_table

    data_dir = Path(args.data_dir).expanduser() if args.data_dir else default_data_dir()
    rows = []
    for name, fn in SOURCES.items():
        doc = (fn.__doc__ or "").strip().splitlines()
        status = source_status(name, data_dir)
        if status == "missing" and name in REMOTES:
            status += f" (cnnlab data download {name})"
        rows.append({"name": name, "status": status, "description": doc[0] if doc else ""})
    if args.json:
        emit_json({"data_dir": str(data_dir), "sources": rows})
        return 0
    print(f"named data sets in {data_dir}:\n")
    print_table([[r["name"], r["status"], r["description"]] for r in rows],
                ["name", "status", "description"])
    return 0
