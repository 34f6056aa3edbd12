"""``cnnlab profile`` / ``cnnlab export`` / ``cnnlab bench-infer``: where the time goes, and
the model outside eager PyTorch."""

from __future__ import annotations

import argparse
import sys

from .zoo import parse_input_size

PROFILE_EPILOG = """\
examples:
  cnnlab profile alexnet                       forward time per layer at 3×224×224, batch 1
  cnnlab profile resnet18 --batch-size 32 --channels-last --train
  cnnlab profile runs/<run> --json             a trained run at its input size
  cnnlab profile alexnet --compare             fp32 / bf16 × channels-last, whole model

times are medians over --repeat runs after a warm-up, measured with hooks on leaf modules;
'other (functional ops)' is the time outside any leaf module, so shares sum to 100 %.
macs are multiply-adds of the whole batch (FlopCounterMode); with --train backward counts 2×
forward macs. Record the CPU kind (printed) with every figure.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("profile", help="per-layer time, share, multiply-adds and GFLOP/s",
                       description="Per-layer forward (and backward) time of a model, grouped "
                       "by layer type.", epilog=PROFILE_EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", metavar="MODEL", help="zoo model name or run directory")
    p.add_argument("--input-size", type=parse_input_size, metavar="C,H,W",
                   help="input size (default: the model's)")
    p.add_argument("--batch-size", type=int, default=1, help="batch size (default 1)")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--channels-last", action="store_true", help="channels-last memory format")
    p.add_argument("--train", action="store_true", help="train mode, forward + backward")
    p.add_argument("--repeat", type=int, default=5, help="timed runs (median; default 5)")
    p.add_argument("--top", type=int, default=15, help="layers shown in the table (default 15)")
    p.add_argument("--compare", action="store_true",
                   help="whole-model time for fp32/bf16 × channels-last off/on instead")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(func=run_profile)

    e = sub.add_parser("export", help="export a run to ONNX or torch.export, with a parity check",
                       description="Export a trained run and check the exported model against "
                       "the eager one on up to 1,000 test images.")
    e.add_argument("run", metavar="RUN", help="run directory")
    e.add_argument("--format", choices=["onnx", "torch-export"], default="onnx")
    e.add_argument("--out", help="output file (default RUN/model.onnx or RUN/model.pt2)")
    e.add_argument("--n", type=int, default=1000, help="images for the parity check")
    e.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    e.set_defaults(func=run_export)

    b = sub.add_parser("bench-infer", help="inference images/s and accuracy per runtime",
                       description="Inference throughput at several batch sizes for eager "
                       "fp32, channels-last, bf16 (native only), torch.compile, torch.compile "
                       "with freezing (BN folded, weights pre-packed), int8 static PT2E "
                       "quantization (extra 'quant'; calibrated on training images), int8 "
                       "dynamic quantization and onnxruntime — each with its test accuracy, "
                       "its speed-up over eager fp32 at the largest batch and its accuracy "
                       "change in points.")
    b.add_argument("run", metavar="RUN", help="run directory")
    b.add_argument("--batch-sizes", default="1,64", help="comma-separated (default 1,64)")
    b.add_argument("--n", type=int, default=1000, help="test images (default 1000)")
    b.add_argument("--compile-timeout", type=float, default=120.0,
                   help="seconds allowed for each compile / quantization (default 120; "
                   "0 skips them)")
    b.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    b.set_defaults(func=run_bench_infer)


def run_profile(args: argparse.Namespace) -> int:
    from ..perf.profile import compare_variants, profile_model
    from . import emit_json, print_table

    if args.compare:
        res = compare_variants(args.model, input_size=args.input_size,
                               batch_size=args.batch_size, train=args.train, repeat=args.repeat)
        if args.json:
            emit_json(res)
            return 0
        print(f"{res['model']} {'×'.join(map(str, res['input_size']))} batch "
              f"{res['batch_size']} {'train' if res['train'] else 'forward'} — "
              f"{res['machine']['cpu_kind']}, {res['machine']['threads']} threads")
        print_table([[r["precision"], "on" if r["channels_last"] else "off", r["ms"],
                      r["images_per_s"], f"{r['speedup']:.2f}x"] for r in res["variants"]],
                    ["precision", "channels-last", "ms", "img/s", "vs fp32"])
        if res["skipped"]:
            print(res["skipped"])
        return 0
    res = profile_model(args.model, input_size=args.input_size, batch_size=args.batch_size,
                        precision=args.precision, channels_last=args.channels_last,
                        train=args.train, repeat=args.repeat)
    if args.json:
        emit_json(res)
        return 0
    m = res["machine"]
    print(f"{res['model']} {'×'.join(map(str, res['input_size']))} batch {res['batch_size']} "
          f"{res['precision']}{' channels-last' if res['channels_last'] else ''} "
          f"{'forward+backward' if res['train'] else 'forward'}: {res['total_ms']:.3f} ms, "
          f"{res['gflops']:.1f} GFLOP/s — {m['cpu_kind']}, {m['threads']} threads")
    rows = [[r["name"], r["type"], r["ms"], f"{100 * r['share']:.1f}%", r["macs"] / 1e6,
             r["gflops"]] for r in res["layers"][:max(args.top, 0)]]
    print()
    print_table(rows, ["layer", "type", "ms", "share", "MMACs", "GFLOP/s"])
    hidden = len(res["layers"]) - len(rows)
    if hidden > 0:
        print(f"... {hidden} more layers (--top N, or --json for all)")
    print()
    print_table([[t["type"], t["count"], t["ms"], f"{100 * t['share']:.1f}%", t["macs"] / 1e6,
                  t["gflops"]] for t in res["by_type"]],
                ["type", "layers", "ms", "share", "MMACs", "GFLOP/s"])
    for note in res.get("notes", []):
        print(f"note: {note}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from ..perf.export import export_run
    from . import emit_json, print_table

    res = export_run(args.run, fmt=args.format, out=args.out, n=args.n)
    if args.json:
        emit_json(res)
        return 0
    print(f"wrote {res['path']} ({res['format']}, {res['exporter']}, "
          f"{res['bytes'] / 1e6:.2f} MB)")
    print_table([[res["parity_data"], res["parity_n"], f"{res['max_abs_diff']:.3g}",
                  res["agreement"]]], ["parity inputs", "images", "max |Δlogit|", "agreement"])
    return 0


def run_bench_infer(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from ..perf.infer import bench_infer
    from . import emit_json, print_table

    try:
        sizes = [int(v) for v in args.batch_sizes.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"--batch-sizes expects comma-separated integers, got "
                          f"'{args.batch_sizes}'") from None
    res = bench_infer(args.run, batch_sizes=sizes, n=args.n,
                      compile_timeout=args.compile_timeout)
    if args.json:
        emit_json(res)
        return 0
    print(f"{res['model']} on {res['data']} ({res['n']} images) — "
          f"{res['machine']['cpu_kind']}, {res['machine']['threads']} threads")
    headers = ["runtime", *[f"img/s @{b}" for b in sizes], "× eager", "accuracy", "Δ points",
               "note"]
    rows = []
    for r in res["rows"]:
        ips = [r["images_per_s"].get(str(b)) for b in sizes]
        rows.append([r["runtime"], *[("-" if v is None else v) for v in ips],
                     "-" if r["speedup"] is None else f"{r['speedup']:.2f}",
                     "-" if r["accuracy"] is None else r["accuracy"],
                     "-" if r["accuracy_delta"] is None else f"{r['accuracy_delta']:+.2f}",
                     r.get("note", "")])
    print_table(rows, headers)
    sys.stdout.flush()
    return 0
