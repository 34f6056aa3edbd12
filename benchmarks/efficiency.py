"""Hardware efficiency of training (the speed issue's target 3): achieved GFLOP/s and its share
of the machine's matmul peak, measured in one run.

    python benchmarks/efficiency.py           # matmul peak + training steps of each net
    python benchmarks/efficiency.py --smoke   # seconds: checks the script only
    python benchmarks/efficiency.py --tag amx # results/efficiency-amx.json (another CPU kind)

For each net: FLOPs of one training step (forward + backward at the batch size) counted with
``FlopCounterMode``; the wall time of ``--steps`` optimizer steps after warm-up (median of
three repeats), on in-memory batches — so the figure is the training step itself, as the issue
defines it. The FLOPs are the net's direct convolutions' even where cnnlab computes a layer in
Winograd's F(4×4, 3×3) (fp32, models/winograd.py, which steps aside under FlopCounterMode): an
"effective" GFLOP/s, as Winograd papers quote it — the work the net defines, per second.
cnnlab's way (channels-last, the precision ``--precision auto`` picks on this CPU, the reused
heap memory every cnnlab command runs on) is measured next to the plain baseline (NCHW, fp32,
eager, glibc's default malloc) in the same run: the baselines first, because switching the
allocator is process-wide. The matmul peak is the best of fp32 (and bf16 where native)
2048²/4096² matmuls, the GUIDE's §5 reference kernel.

Nets: the CIFAR speed-run net (``cifar-speednet``, airbench94's, at the preset's batch 500; the
step here is plain SGD, so the figure is the net's kernels, not Muon's orthogonalization),
CIFAR-size ResNet-18 (3×3 stem; 0.56 G mult-adds), the zoo's vgg-small and resnet20, and the
MNIST speed-run net. The issue's target names the first two.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cnnlab.models import create_model, list_models  # noqa: E402
from cnnlab.perf.hardware import choose_precision, native_bf16  # noqa: E402
from cnnlab.perf.memory import tune_allocator  # noqa: E402
from common import add_tag_argument, save_result, tagged, write_results_md  # noqa: E402

NETS = [("CIFAR speed-run net (cifar-speednet)", "cifar-speednet", {}, (3, 32, 32), 500),
        ("resnet18 (CIFAR stem)", "resnet18", dict(stem="cifar"), (3, 32, 32), 128),
        ("vgg-small", "vgg-small", {}, (3, 32, 32), 256),
        ("resnet20", "resnet20", {}, (3, 32, 32), 128),
        ("mnist speed-run net", "mnist-speednet", {}, (1, 28, 28), 256)]


def matmul_peak(dtype: torch.dtype, sizes=(2048, 4096), repeats: int = 5) -> float:
    best = 0.0
    for n in sizes:
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        a @ b
        for _ in range(repeats):
            t0 = time.perf_counter()
            a @ b
            best = max(best, 2 * n**3 / (time.perf_counter() - t0) / 1e9)
    return best


def train_step_fn(model: nn.Module, precision: str, channels_last: bool):
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = loss_fn(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def measure(name: str, kwargs: dict, shape, batch: int, precision: str, channels_last: bool,
            steps: int) -> dict:
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, in_chans=shape[0], input_size=shape[1:],
                         **kwargs).train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    step = train_step_fn(model, precision, channels_last)
    x, y = torch.rand(batch, *shape), torch.randint(0, 10, (batch,))
    counter = FlopCounterMode(display=False)
    with counter:
        step(x, y)
    flops = counter.get_total_flops()
    step(x, y)  # warm-up
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(steps):
            step(x, y)
        times.append((time.perf_counter() - t0) / steps)
    t = statistics.median(times)
    return {"precision": precision, "channels_last": channels_last, "batch": batch,
            "flops_per_step": flops, "seconds_per_step": t, "gflops": flops / t / 1e9,
            "images_per_s": batch / t}


def _g(gflops: float) -> str:
    """Whole GFLOP/s, or two decimals below 10 (a smoke run on a loaded machine)."""
    return f"{gflops:.0f}" if gflops >= 10 else f"{gflops:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--steps", type=int, default=5)
    add_tag_argument(parser)
    args = parser.parse_args()
    steps = 1 if args.smoke else args.steps
    peak = {"fp32": matmul_peak(torch.float32, (256,) if args.smoke else (2048, 4096))}
    if native_bf16():  # not under an ISA cap: an emulated bf16 4096² matmul takes minutes
        peak["bf16"] = matmul_peak(torch.bfloat16, (256,) if args.smoke else (2048, 4096))
    precision = choose_precision("auto")
    name_ = tagged("efficiency", args.tag)
    registered = set(list_models())
    nets, rows = [], []
    todo = [(label, name, kwargs, shape, 8 if args.smoke else batch)
            for label, name, kwargs, shape, batch in NETS if name in registered]
    # the plain baselines first, on glibc's default malloc as plain PyTorch runs; then every
    # cnnlab command's reused heap memory (perf/memory.py: process-wide, so it comes second)
    bases = [measure(name, kwargs, shape, batch, "fp32", False, steps)
             for _, name, kwargs, shape, batch in todo]
    allocator = tune_allocator()
    for (label, name, kwargs, shape, batch), base in zip(todo, bases, strict=True):
        ours = measure(name, kwargs, shape, batch, precision, True, steps)
        ours["allocator"], base["allocator"] = allocator, "system"
        ours["peak_fraction"] = ours["gflops"] / peak[precision]
        base["peak_fraction"] = base["gflops"] / peak["fp32"]
        nets.append({"net": label, "model": name, "model_kwargs": kwargs, "input": list(shape),
                     "cnnlab": ours, "baseline": base})
        rows.append({"task": name_, "what": f"{label}: training GFLOP/s (FlopCounterMode "
                     f"FLOPs / step time), batch {batch}, share of the {precision} matmul peak "
                     f"({peak[precision]:.0f} GFLOP/s)",
                     "figure": f"{_g(ours['gflops'])} GFLOP/s ({100 * ours['peak_fraction']:.0f} "
                               f"%), {ours['images_per_s']:.0f} img/s, {precision} channels-last",
                     "baseline": f"{_g(base['gflops'])} GFLOP/s, {base['images_per_s']:.0f} "
                                 "img/s, fp32 NCHW"})
    payload = {"matmul_peak_gflops": peak, "precision": precision, "nets": nets,
               "summary_rows": rows}
    if args.smoke:
        print(json.dumps({"smoke": True, "rows": rows}))
        return
    path = save_result(name_, payload)
    write_results_md()
    print(json.dumps(rows, indent=1))
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
