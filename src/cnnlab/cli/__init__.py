"""The ``cnnlab`` command: parse → call one library function → print (table, or one JSON object).

Each command group lives in its own module with ``register(subparsers)``; the parser's ``func``
does the work. Errors the user can act on (:class:`CnnlabError`) become one line on stderr and a
non-zero exit; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import warnings
from collections.abc import Sequence
from typing import Any

from ..errors import CnnlabError
from ..perf.hardware import separate_compile_cache
from ..perf.memory import tune_allocator

# One module per command group; each defines register(subparsers).
COMMAND_MODULES = ["train", "data", "zoo", "report", "explain", "attack", "perf", "transfer",
                   "classic"]

DESCRIPTION = """\
cnnlab — train, evaluate and explain the classic deep CNNs on an ordinary machine.

Start here:
  cnnlab train                         small CNN on scikit-learn's digits (no download)
  cnnlab train dlfs-deepconvnet --data mnist --data-dir ../shared/data --epochs 15
  cnnlab evaluate runs/<run>           accuracy, top-5, per-class scores, confusion matrix
  cnnlab predict runs/<run> img.png    class probabilities for image files
  cnnlab data info mnist               classes, counts, mean/std of a data set
  cnnlab zoo                           every model with params and multiply-adds

Every command that reports numbers takes --json (one JSON object on stdout; logs on stderr).
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cnnlab", description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"cnnlab {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith(__name__):
                continue  # a command group not built yet
            raise
        module.register(sub)
    return parser


def emit_json(obj: Any) -> None:
    """Exactly one JSON object on stdout."""
    sys.stdout.write(json.dumps(obj, indent=2, default=_default) + "\n")
    sys.stdout.flush()


def _default(obj: Any) -> Any:
    import torch

    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    return str(obj)


def print_table(rows: Sequence[Sequence[Any]], headers: Sequence[str], file=None) -> None:
    """A plain aligned table (numbers right-aligned)."""
    file = file or sys.stdout
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    numeric = [all(_is_num(r[i]) for r in rows) if rows else False for i in range(len(headers))]

    def line(r: list[str]) -> str:
        return "  ".join(c.rjust(w) if numeric[i] else c.ljust(w)
                         for i, (c, w) in enumerate(zip(r, widths, strict=True))).rstrip()

    print(line(cells[0]), file=file)
    print("  ".join("-" * w for w in widths), file=file)
    for r in cells[1:]:
        print(line(r), file=file)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 100 else f"{value:,.1f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def _is_num(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    debug = args.debug or os.environ.get("CNNLAB_DEBUG") == "1"
    tune_allocator()  # every command runs tensors: reuse freed memory (perf/memory.py)
    separate_compile_cache()  # an ISA-capped run (Zen 3 emulation) must not share Inductor's
    warnings.formatwarning = lambda msg, cat, *a, **k: f"warning: {msg}\n"
    try:
        code = args.func(args)
        return int(code or 0)
    except CnnlabError as exc:
        if debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `cnnlab zoo | head`: the reader left; stop quietly, as Unix tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except MemoryError:
        if debug:
            raise
        print("error: out of memory — try a smaller --batch-size or --image-size", file=sys.stderr)
        return 2


def entry() -> None:
    sys.exit(main())
