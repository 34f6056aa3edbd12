"""``cnnlab zoo``: every registered model with its paper, parameters, multiply-adds and depth."""

from __future__ import annotations

import argparse
import contextlib
import re
import sys
import time

from ..errors import ConfigError, ModelError, unknown

ZOO_EPILOG = """\
examples:
  cnnlab zoo                          every model at its default input size
  cnnlab zoo resnet vgg16             names containing "resnet", and vgg16
  cnnlab zoo wrn-22-8                 any wrn-DEPTH-WIDTH is a model
  cnnlab zoo resnet50 --input-size 3,160,160 --num-classes 10
  cnnlab zoo --json                   one JSON list of objects

params leave out training-only auxiliary heads (GoogLeNet's); macs are multiply-adds of one
image (FLOPs / 2, counted by torch.utils.flop_counter); depth counts the conv and linear layers
on the longest path (ResNet-50 → 50); models are built on the 'meta' device (no memory, no init).
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("zoo", help="list models with params, multiply-adds and depth",
                       description="The model zoo: name, family, paper, default input size, "
                       "parameters, multiply-adds and depth of every registered model.",
                       epilog=ZOO_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("names", nargs="*", metavar="NAME",
                   help="model names or parts of names to show (default: all)")
    p.add_argument("--input-size", type=parse_input_size, metavar="C,H,W",
                   help="count at this input size instead of each model's default (C,H,W; H,W; "
                   "or H — channels then stay the model's)")
    p.add_argument("--num-classes", type=int, help="count with this many classes")
    p.add_argument("--json", action="store_true", help="print one JSON list on stdout")
    p.set_defaults(func=run_zoo)


def parse_input_size(text: str) -> tuple[int, ...]:
    try:
        size = tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected C,H,W or H,W or H, got '{text}'") from None
    if not 1 <= len(size) <= 3 or min(size) < 1:
        raise argparse.ArgumentTypeError(f"expected C,H,W or H,W or H, got '{text}'")
    return size


def select_models(filters: list[str]) -> list[str]:
    """Registered names matching ``filters`` (a full name or alias, else a substring of names and
    aliases); an unknown filter is a ModelError with a suggestion."""
    from ..models.registry import get_spec, list_models, resolve_name

    names = sorted(list_models(), key=natural_key)
    if not filters:
        return names
    chosen: list[str] = []
    for f in filters:
        key = f.strip().lower()
        try:
            hits = [resolve_name(key)]
        except ModelError:
            hits = [n for n in names if key in n or any(key in a for a in get_spec(n).aliases)]
            if not hits:
                choices = [*names, *(a for n in names for a in get_spec(n).aliases)]
                raise ModelError(unknown("model or filter", f, choices)) from None
        chosen += [n for n in hits if n not in chosen]
    return chosen


def natural_key(name: str) -> list:
    """'resnet18' before 'resnet101': digit runs compare as numbers."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def zoo_rows(filters: list[str], input_size: tuple[int, ...] | None = None,
             num_classes: int | None = None) -> list[dict]:
    """One :func:`~cnnlab.perf.flops.model_stats` dict per selected model.

    With an ``input_size`` override, models matched only by a substring (or by listing all) that
    cannot take that size (AlexNet at 16×16) are left out with a warning; a model asked for by
    name is an error.
    """
    from ..models.registry import get_spec, resolve_name
    from ..perf.flops import model_stats

    if num_classes is not None and num_classes < 1:
        raise ConfigError(f"--num-classes must be at least 1, got {num_classes}")
    named = set()
    for f in filters:
        with contextlib.suppress(ModelError):  # a substring filter, not a name
            named.add(resolve_name(f))
    rows, skipped = [], []
    for name in select_models(filters):
        size = None
        if input_size is not None:
            c = get_spec(name).input_size[0]
            hw = input_size[-2:] if len(input_size) > 1 else input_size * 2
            size = (input_size[0] if len(input_size) == 3 else c, *hw)
        try:
            rows.append(model_stats(name, input_size=size, num_classes=num_classes))
        except (ValueError, RuntimeError) as exc:  # e.g. an input too small for the model
            if name in named or input_size is None:
                raise ModelError(f"cannot build {name} at input {list(size or [])}: "
                                 f"{str(exc).splitlines()[0]}") from exc
            skipped.append(name)
    if skipped:
        print(f"warning: left out {len(skipped)} models that cannot take input "
              f"{list(size or [])}: {', '.join(skipped)}", file=sys.stderr)
    if not rows:
        raise ModelError(f"no selected model can take input {list(size or [])}")
    return rows


def run_zoo(args: argparse.Namespace) -> int:
    from . import emit_json, print_table

    t0 = time.perf_counter()
    rows = zoo_rows(args.names, args.input_size, args.num_classes)
    if args.json:
        emit_json(rows)
        return 0
    params = _right([human(r["params"]) for r in rows])
    macs = _right([human(r["macs"]) for r in rows])
    print_table([[r["name"], r["family"], f"{r['paper']} ({r['year']})",
                  "×".join(str(v) for v in r["input_size"]), p, m, r["depth"]]
                 for r, p, m in zip(rows, params, macs, strict=True)],
                ["name", "family", "paper", "input", "params", "mult-adds", "depth"])
    sys.stdout.flush()
    print(f"{len(rows)} models, counted in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return 0


def human(n: int) -> str:
    """12,345,678 → '12.35 M' (K, M, G: powers of 1000)."""
    for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n}  "


def _right(cells: list[str]) -> list[str]:
    width = max((len(c) for c in cells), default=0)
    return [c.rjust(width) for c in cells]
