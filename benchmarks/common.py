"""Shared pieces of the benchmark scripts: machine record, result files, RESULTS.md, baseline.

Every result JSON carries the machine (CPU kind, native bf16, threads, versions) so figures are
only ever compared within one kind of CPU. The plain-PyTorch baseline is the ordinary way to
train: a ``DataLoader`` over a dataset with per-sample transforms, fp32 eager, no tricks.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from cnnlab.perf.hardware import machine_info

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
SHARED = HERE.parent.parent / "shared" / "data"


def save_result(name: str, payload: dict[str, Any]) -> Path:
    """Write results/<name>.json with the machine record, then refresh RESULTS.md."""
    RESULTS.mkdir(exist_ok=True)
    payload = {"benchmark": name, "date": time.strftime("%Y-%m-%d %H:%M"),
               "machine": machine_info(), **payload}
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


def add_tag_argument(parser) -> None:
    """``--tag TAG``: results/NAME-TAG.json instead of NAME.json, so a second CPU kind's figures
    (``--tag amx``) sit beside the first's in RESULTS.md instead of replacing them."""
    parser.add_argument("--tag", default="", type=_tag,
                        help="write results/NAME-TAG.json: keeps another CPU kind's figures "
                             "(e.g. --tag amx)")


def _tag(text: str) -> str:
    """A tag becomes part of a file name: letters, digits, '.', '_' and '-' only."""
    if not re.fullmatch(r"[A-Za-z0-9._-]*", text):
        raise argparse.ArgumentTypeError(f"'{text}' is not a file-name tag: use letters, digits, "
                                         "'.', '_' or '-'")
    return text


def tagged(name: str, tag: str) -> str:
    """The result name for ``--tag``: NAME, or NAME-TAG."""
    return f"{name}-{tag}" if tag else name


def mean_std(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "std": statistics.pstdev(values) if len(values) > 1
            else 0.0, "min": min(values), "max": max(values), "n": len(values)}


class PerSampleDataset(TorchDataset):
    """uint8 images → per-sample float conversion, augmentation (pad 4 reflect + random crop +
    random flip) and optional normalization in Python (the usual way)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, augment: bool,
                 normalize: tuple[torch.Tensor, torch.Tensor] | None = None) -> None:
        self.images, self.labels, self.augment = images, labels, augment
        self.normalize = normalize

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        x = self.images[i].float() / 255.0
        if self.augment:
            pad = nn.functional.pad(x, (4, 4, 4, 4), mode="reflect")
            dy, dx = torch.randint(0, 9, (2,)).tolist()
            x = pad[:, dy:dy + x.shape[1], dx:dx + x.shape[2]]
            if torch.rand(()) < 0.5:
                x = x.flip(2)
        if self.normalize is not None:
            mean, std = self.normalize
            x = (x - mean) / std
        return x, self.labels[i]


def plain_baseline(model: nn.Module, data, *, epochs: int, batch_size: int, lr: float,
                   optimizer: str = "sgd", augment: bool = False,
                   normalize: tuple[torch.Tensor, torch.Tensor] | None = None,
                   max_batches: int | None = None) -> dict[str, Any]:
    """Train ``model`` the ordinary way; returns images/s and test accuracy per epoch.

    ``normalize``: per-channel (mean, std) of shape (C, 1, 1), applied per sample in training
    and to the test images.
    """
    loader = DataLoader(PerSampleDataset(data.train.images, data.train.labels, augment,
                                         normalize),
                        batch_size=batch_size, shuffle=True, num_workers=0)
    opt = (torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
           if optimizer == "sgd" else torch.optim.Adam(model.parameters(), lr=lr))
    rows = []
    wall0 = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        t0, seen = time.perf_counter(), 0
        for b, (x, y) in enumerate(loader):
            if max_batches is not None and b >= max_batches:
                break
            loss = nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            seen += len(y)
        train_s = time.perf_counter() - t0
        model.eval()
        correct = 0
        with torch.no_grad():
            for i in range(0, len(data.test), 500):
                x = data.test.images[i:i + 500].float() / 255.0
                if normalize is not None:
                    x = (x - normalize[0]) / normalize[1]
                correct += (model(x).argmax(1) == data.test.labels[i:i + 500]).sum().item()
        rows.append({"epoch": epoch + 1, "test_accuracy": correct / len(data.test),
                     "images_per_s": seen / train_s, "epoch_seconds": train_s,
                     "wall_seconds": time.perf_counter() - wall0})
    return {"epochs": rows, "images_per_s": statistics.median(r["images_per_s"] for r in rows)}


def write_results_md() -> None:
    """RESULTS.md: one table row per result file (the JSON files hold the details)."""
    rows = []
    for path in sorted(RESULTS.glob("*.json")):
        r = json.loads(path.read_text())
        for line in r.get("summary_rows", []):
            rows.append([line.get("task", r["benchmark"]), line.get("what", ""),
                         line.get("figure", ""), line.get("baseline", ""),
                         f"{r['machine']['cpu_kind']}, {r['machine'].get('threads', '?')} thr",
                         r["date"], path.name])
    head = ["task", "what", "cnnlab", "plain-PyTorch baseline (same run)", "CPU kind, threads",
            "date",
            "file"]
    table = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    table += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    intro = (HERE / "RESULTS.intro.md").read_text() if (HERE / "RESULTS.intro.md").exists() else ""
    (HERE / "RESULTS.md").write_text(intro + "\n".join(table) + "\n")
