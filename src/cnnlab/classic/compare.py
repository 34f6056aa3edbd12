"""``cnnlab compare``: CNN runs, transfer results and classical-pipeline results in one table.

Each source is read as it was saved — nothing is retrained or re-evaluated — so the table is
only as comparable as the runs: rows on different data sets are flagged.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import ConfigError


def _data_name(value: object) -> str:
    text = str(value or "?")
    return Path(text).name if ("/" in text or "\\" in text) else text


def _run_rows(path: Path) -> list[dict]:
    from ..train.checkpoint import read_meta

    meta = read_meta(path)
    metrics = meta.get("metrics", {})
    return [{"name": f"{meta.get('model', '?')} ({path.name})", "kind": "cnn",
             "data": _data_name(meta.get("data")), "accuracy": metrics.get("test_accuracy"),
             "seconds": metrics.get("train_seconds"),
             "notes": f"{meta.get('epoch', '?')} epochs, {meta.get('precision', '?')}",
             "source": str(path)}]


def _classic_rows(obj: dict, path: Path) -> list[dict]:
    s = obj.get("sizes", {})
    return [{"name": obj.get("name", path.stem), "kind": "classic",
             "data": _data_name(obj.get("data")), "accuracy": obj.get("accuracy"),
             "seconds": obj.get("timings", {}).get("total"),
             "notes": f"{s.get('n_train')} train / {s.get('n_test')} test, "
                      f"{s.get('encoding_dim')} dims",
             "source": str(path)}]


def _transfer_rows(obj: dict, path: Path) -> list[dict]:
    return [{"name": f"{obj.get('model', '?')} {r.get('mode')} [{r.get('layer')}]",
             "kind": "transfer", "data": _data_name(obj.get("target")),
             "accuracy": r.get("mean"), "seconds": None,
             "notes": f"{r.get('per_class')}/class, {obj.get('seeds', 1)} seed(s)",
             "source": str(path)} for r in obj["rows"]]


def _benchmark_rows(obj: dict, path: Path) -> list[dict]:
    """A benchmarks/results/core-*.json file: the cnnlab run it recorded."""
    words = str(obj.get("command", "")).split()
    model = (words[2] if len(words) > 2 and words[1] == "train" and not words[2].startswith("-")
             else "default model")
    data = (words[words.index("--data") + 1] if "--data" in words[:-1]
            else str(obj.get("benchmark", "?")).removeprefix("core-"))
    run = obj["cnnlab"]
    return [{"name": f"{model} ({path.name})", "kind": "cnn", "data": _data_name(data),
             "accuracy": run.get("test_accuracy"),
             "seconds": run.get("train_seconds", obj.get("wall_seconds")),
             "notes": f"{run.get('epochs', '?')} epochs, {run.get('precision', '?')}",
             "source": str(path)}]


def read_source(source: str | Path) -> list[dict]:
    """Table rows of one run directory or result JSON."""
    path = Path(source).expanduser()
    if not path.exists():
        raise ConfigError(f"compare: '{source}' not found — give a run directory (cnnlab "
                          "train) or a result JSON (cnnlab classic --out, cnnlab transfer --json)")
    if path.is_dir():
        return _run_rows(path)
    try:
        obj = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"compare: {path} is not a JSON file: {exc}") from exc
    if isinstance(obj, dict):
        if obj.get("kind") == "classic":
            return _classic_rows(obj, path)
        if isinstance(obj.get("rows"), list) and "target" in obj:
            return _transfer_rows(obj, path)
        if isinstance(obj.get("cnnlab"), dict) and "test_accuracy" in obj["cnnlab"]:
            return _benchmark_rows(obj, path)
    raise ConfigError(f"compare: {path} is not a cnnlab result (expected the JSON of "
                      "`cnnlab classic --out`, `cnnlab transfer --json` or a benchmark result)")


def compare(sources: list[str | Path]) -> dict:
    """Rows (name, kind, data, accuracy, seconds, notes) of every source, in the order given."""
    if not sources:
        raise ConfigError("compare: give at least one run directory or result JSON")
    rows = [row for source in sources for row in read_source(source)]
    notes = []
    datasets = sorted({r["data"] for r in rows})
    if len(datasets) > 1:
        notes.append(f"rows are on different data ({', '.join(datasets)}); their accuracies "
                     "are not comparable")
    return {"rows": rows, "notes": notes}
