"""Every benchmark script in benchmarks/ runs in its ``--smoke`` mode and prints its summary.

Each script runs as a subprocess (``sys.executable benchmarks/X.py … --smoke``), the way CI
runs it: the test checks the exit code and parses the JSON it prints on stdout — the keys, the
rows and the figures inside them (accuracies are fractions or percentages, speeds positive,
parameter counts near the papers'). Smoke mode checks the scripts, not the figures: the
thresholds are loose. Run directories go into pytest's ``tmp_path`` (``--out``), the working
directory is ``tmp_path`` too (so a forgotten default ``runs/…`` lands there, not in the repo),
and every test checks that benchmarks/results/ and benchmarks/RESULTS.md were not touched.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks"
SHARED = ROOT.parent / "shared" / "data"  # the same folder as benchmarks/common.py's SHARED
SCRIPTS = sorted(p.name for p in BENCH.glob("*.py") if p.name != "common.py")
PCT = r"(\d+(?:\.\d+)?) %"


def tracked_outputs() -> dict[str, str]:
    """Hashes of what a full (non-smoke) benchmark run writes: results/* and RESULTS.md."""
    files = [BENCH / "RESULTS.md", *sorted((BENCH / "results").glob("*"))]
    return {p.name: hashlib.sha1(p.read_bytes()).hexdigest() for p in files if p.is_file()}


def run_smoke(tmp_path: Path, script: str, *args: str, timeout: int = 300) -> list[dict]:
    """Run ``benchmarks/<script> <args> --smoke``; the JSON objects it printed on stdout."""
    before = tracked_outputs()
    cmd = [sys.executable, str(BENCH / script), *args, "--smoke"]
    env = {**os.environ, "MPLBACKEND": "Agg"}
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stderr[-4000:]}"
    assert tracked_outputs() == before, "smoke mode wrote benchmarks/results or RESULTS.md"
    assert not (tmp_path / "runs").exists(), "smoke mode wrote a default runs/ folder"
    out = proc.stdout.strip()
    try:
        docs = [json.loads(out)]
    except json.JSONDecodeError:
        docs = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert docs, f"no JSON on stdout:\n{out[-2000:]}"
    for doc in docs:
        assert doc.get("smoke") is True, doc
    return docs


def check_row(row: dict, task: str) -> None:
    assert row["task"] == task
    assert isinstance(row["what"], str) and row["what"]
    assert isinstance(row["figure"], str) and row["figure"]


def fraction(text: str, pattern: str) -> float:
    m = re.search(pattern, text)
    assert m, f"{pattern!r} not in {text!r}"
    return float(m.group(1))


@pytest.fixture
def real_data() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"real data not found at {SHARED} (benchmarks/common.py SHARED)")
    return SHARED


def test_every_benchmark_script_is_covered():
    covered = {"attacks.py", "bits.py", "classic.py", "core.py", "efficiency.py", "infer.py",
               "quadrant.py", "separability.py", "speedrun.py", "transfer.py",
               "zoo_experiments.py", "zoo_table.py"}
    assert set(SCRIPTS) == covered, "a new benchmark script needs a smoke test here"
    for name in SCRIPTS:
        assert "--smoke" in (BENCH / name).read_text(), f"{name} has no --smoke mode"


def test_core_digits(tmp_path):
    (doc,) = run_smoke(tmp_path, "core.py", "digits", "--out", str(tmp_path / "runs-out"))
    check_row(doc, "digits")
    assert doc["wall_seconds"] > 0
    acc = fraction(doc["figure"], r"^(\d\.\d{4}) in \d+ s, \d+ img/s$")
    assert 0.3 < acc <= 1.0  # 1 epoch on digits: ~0.9, chance 0.1
    base = fraction(doc["baseline"], r"^(\d\.\d{4}) after 1 epochs in \d+ s, \d+ img/s$")
    assert 0.0 <= base <= 1.0
    assert len(list((tmp_path / "runs-out").iterdir())) == 1


def test_attacks_all(tmp_path):
    docs = run_smoke(tmp_path, "attacks.py", "all", "--out", str(tmp_path / "runs-out"))
    assert [d["task"] for d in docs] == ["mnist", "mnist-adv", "cifar10"]
    mnist, adv, cifar = (d["rows"] for d in docs)
    for rows, task in ((mnist, "mnist"), (adv, "mnist-adv"), (cifar, "cifar10")):
        for row in rows:
            check_row(row, f"attack {task}")
    assert len(mnist) == 2 and len(adv) == 3 and len(cifar) == 3
    clean = fraction(mnist[0]["what"], r"clean " + PCT)
    assert clean > 50 and 0 <= fraction(mnist[0]["figure"], "^" + PCT) <= clean
    curve = re.findall(r"([\d.]+): " + PCT, mnist[1]["figure"])
    assert [float(e) for e, _ in curve] == [0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3]
    accs = [float(a) for _, a in curve]
    assert accs[0] == pytest.approx(clean) and accs[-1] <= accs[0]
    robust, clean_adv = re.fullmatch(PCT + " / " + PCT, adv[0]["figure"]).groups()
    assert 0 <= float(robust) <= float(clean_adv) <= 100
    assert "restarts" in adv[1]["what"] and 0 <= fraction(adv[1]["figure"], "^" + PCT) <= 100
    adv_curve = re.findall(r"([\d.]+): " + PCT, adv[2]["figure"])
    assert [float(e) for e, _ in adv_curve] == [0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3]
    eot, pgd = re.fullmatch(r"EOT " + PCT + " vs PGD " + PCT, cifar[2]["figure"]).groups()
    assert 0 <= float(eot) <= 100 and 0 <= float(pgd) <= 100
    sizes = re.findall(r"([\d.]+): " + PCT + r" \(noise " + PCT + r"\)", cifar[1]["figure"])
    assert [float(s) for s, _, _ in sizes] == [0.1, 0.2, 0.3, 0.4]
    assert len(list((tmp_path / "runs-out").iterdir())) == 3


def test_bits(tmp_path):
    (doc,) = run_smoke(tmp_path, "bits.py", "mnist", "--out", str(tmp_path / "runs-out"))
    assert doc["task"] == "mnist"
    (row,) = doc["rows"]
    check_row(row, "bits mnist")
    fp32, fp32_kb = re.fullmatch(r"fp32 ([\d.]+) % \(([\d.]+) KB\)", row["baseline"]).groups()
    assert 30 < float(fp32) <= 100
    found = dict.fromkeys(("bf16", "int8", "bnn", "xnor"))
    for part in row["figure"].split("; "):
        m = re.fullmatch(r"(\w+) ([\d.]+) % \(([\d.]+) KB\)", part)
        if m is None:  # int8 needs a PT2E-capable build; the row then reads "int8: –"
            assert part == "int8: –", row["figure"]
            continue
        found[m.group(1)] = (float(m.group(2)), float(m.group(3)))
    assert found["bf16"] and found["bnn"] and found["xnor"]
    for key, value in found.items():
        if value:
            assert 0 <= value[0] <= 100, (key, value)
    kb = float(fp32_kb)
    assert found["bf16"][1] == pytest.approx(kb / 2, rel=0.01)
    assert found["bnn"][1] < kb / 8 and found["xnor"][1] < kb / 8  # 1-bit weights, mostly
    if found["int8"]:
        assert found["int8"][1] == pytest.approx(kb / 4, rel=0.01)


def test_classic(tmp_path):
    (doc,) = run_smoke(tmp_path, "classic.py")
    rows = doc["summary_rows"]
    for row in rows:
        check_row(row, "classic-smoke")
    methods = [r["what"].split(" on ")[0] for r in rows[:4]]
    assert methods == ["hog+none+linear-svm", "dsift+bovw+linear-svm", "dsift+vlad+linear-svm",
                       "dsift+fisher+linear-svm"]
    for row in rows[:4]:
        assert 0.5 < fraction(row["figure"], r"^(\d\.\d{4}) in \d+ s") <= 1.0
        assert fraction(row["what"], r"\((\d+) train / \d+ test") == 600  # smoke's max_train


def test_efficiency(tmp_path):
    (doc,) = run_smoke(tmp_path, "efficiency.py")
    rows = doc["rows"]
    nets = [r["what"].split(":")[0] for r in rows]
    assert {"CIFAR speed-run net (cifar-speednet)", "resnet18 (CIFAR stem)", "vgg-small",
            "resnet20"} <= set(nets)
    for row in rows:
        check_row(row, "efficiency")
        assert "batch 8" in row["what"]
        # decimals below 10: a loaded CI machine can fall below 1 GFLOP/s at batch 8
        gflops, share = re.match(r"([\d.]+) GFLOP/s \((\d+) %\), \d+ img/s",
                                 row["figure"]).groups()
        # the share is the figure over the peak named in the row (a smoke's tiny matmul peak
        # on a loaded machine can be anything, so only the arithmetic is checked)
        peak = float(re.search(r"peak \(([\d.]+) GFLOP/s\)", row["what"]).group(1))
        assert float(gflops) > 0 and peak > 0
        expected = 100 * float(gflops) / peak  # both printed rounded to ±0.5
        assert abs(float(share) - expected) <= 1 + expected * (0.5 / float(gflops) + 0.5 / peak)
        assert fraction(row["baseline"], r"^[\d.]+ GFLOP/s, (\d+) img/s, fp32 NCHW$") > 0


def test_infer(tmp_path, tiny_run):
    (doc,) = run_smoke(tmp_path, "infer.py", str(tiny_run))
    rows = doc["rows"]
    assert rows[0]["what"].startswith("eager fp32:") and rows[0]["baseline"] == ""
    for row in rows:
        check_row(row, "infer simple-cnn")
        assert "accuracy on 32 test images" in row["what"]
        m = re.match(r"(\d+) / (\d+) img/s \(([\d.]+)× at 64\), ([\d.]+) %", row["figure"])
        assert m, row["figure"]
        b1, b64, speedup, acc = map(float, m.groups())
        assert b1 > 0 and b64 > 0 and speedup > 0 and 30 < acc <= 100


def test_quadrant(tmp_path):
    (doc,) = run_smoke(tmp_path, "quadrant.py")
    (seed,) = doc["seeds"]
    assert seed["model_accuracy"] > 0.9
    # the maps point at the evidence: more of their mass than the uniform 0.25 in its quadrant
    assert 0.25 < doc["grad_cam"]["mean"] <= 1.0
    assert 0.25 < doc["occlusion"]["mean"] <= 1.0
    check_row(doc["summary_rows"][0], "quadrant")


def test_separability(tmp_path, tiny_run):
    (doc,) = run_smoke(tmp_path, "separability.py", str(tiny_run))
    (run,) = doc["runs"]
    assert run["model"] == "simple-cnn" and run["n"] == 200
    assert 0 < run["chance"] < 0.5
    stages = run["stages"]
    assert stages[0]["name"] == "input" and len(stages) >= 2
    for s in stages:
        assert 0 <= s["probe_accuracy"] <= 1 and s["fisher_ratio"] >= 0 and s["dims"] > 0
    assert stages[-1]["probe_accuracy"] > run["chance"]
    check_row(doc["summary_rows"][0], "separability digits")


def test_transfer(tmp_path):
    (doc,) = run_smoke(tmp_path, "transfer.py", "--out", str(tmp_path / "work"))
    rows = doc["summary_rows"]
    for row in rows:
        check_row(row, "transfer")
    compare, curve = rows[:-1], rows[-1]
    modes = [(re.search(r", (\w+), (\d+)/class", r["what"]).groups()) for r in compare]
    assert sorted(modes) == sorted((m, n) for m in ("scratch", "features", "finetune")
                                   for n in ("5", "10"))
    for row in compare:
        mean, std = map(float, re.fullmatch(r"([\d.]+) ± ([\d.]+)", row["figure"]).groups())
        assert 0 <= mean <= 1 and 0 <= std <= 0.5
    layers = dict(re.findall(r"([\w-]+) ([\d.]+)", curve["figure"]))
    assert "head-input" in layers and all(0 <= float(v) <= 1 for v in layers.values())
    assert (tmp_path / "work-smoke").is_dir()


def test_zoo_experiments(tmp_path):
    docs = run_smoke(tmp_path, "zoo_experiments.py", "all", "--out", str(tmp_path / "runs-out"))
    assert [d["task"] for d in docs] == ["degradation", "research"]
    degradation, research = (d["summary"] for d in docs)
    assert set(degradation) == {"plain20", "resnet20"}
    for s in degradation.values():
        assert 0 <= s["train_error_last3"] <= 100 and 0 <= s["val_error_last3"] <= 100
        assert 0 <= s["test_accuracy"] <= 1 and s["train_seconds"] > 0
    assert set(research) == {"square", "hex"}
    for s in research.values():
        assert 0 <= s["test_accuracy"] <= 1
    # the quasi-hexagonal kernel has 7 of the 9 taps: fewer weights that can move
    assert research["hex"]["free_params"] < research["square"]["free_params"]
    assert research["hex"]["params"] == research["square"]["params"]


def test_zoo_table(tmp_path):
    (doc,) = run_smoke(tmp_path, "zoo_table.py")
    models = {m["name"]: m for m in doc["models"]}
    assert set(models) == {"lenet5", "resnet20", "resnet18"}
    for m in models.values():
        assert abs(m["params_diff"]) < 0.05 and m["macs"] > 0
    assert models["resnet18"]["params"] == 11_689_512
    assert models["resnet18"]["input_size"] == [3, 224, 224]
    assert abs(models["resnet18"]["macs_diff"]) < 0.05
    assert len(doc["summary_rows"]) == 3


SPEEDRUN_FIGURE = (r"^(\d\.\d{4}) ± \d\.\d{4} \(min \d\.\d{4}\) in [\d.]+ ± [\d.]+ s wall, "
                   r"1 seeds$")


@pytest.mark.realdata
def test_speedrun_mnist(tmp_path, real_data):
    (doc,) = run_smoke(tmp_path, "speedrun.py", "mnist", "--out", str(tmp_path / "runs-out"),
                       "--tag", "amx")
    check_row(doc, "speedrun-mnist-amx")  # --tag names the result file and its rows
    assert 0 <= fraction(doc["figure"], SPEEDRUN_FIGURE) <= 1
    assert len(doc["wall_seconds"]) == 1 and doc["wall_seconds"][0] > 0
    assert doc["baseline"]
    assert len(list((tmp_path / "runs-out").iterdir())) == 1


@pytest.mark.slow
@pytest.mark.realdata
def test_speedrun_cifar10(tmp_path, real_data):
    (doc,) = run_smoke(tmp_path, "speedrun.py", "cifar10", "--out", str(tmp_path / "runs-out"),
                       timeout=600)
    check_row(doc, "speedrun-cifar10")
    assert 0 <= fraction(doc["figure"], SPEEDRUN_FIGURE) <= 1
    assert doc["wall_seconds"]["n"] == 1 and doc["wall_seconds"]["mean"] > 0
    assert re.search(r"airbench94 recipe \d+ s \(estimate\); preset [\d.]+× faster",
                     doc["baseline"])
    assert re.search(r"ordinary way \d+ img/s, [\d.]+% after 1 epochs", doc["baseline"])
    # the record holder's recipe ran as its code does, on glibc's malloc; the preset on cnnlab's
    allocators = {("reference" in str(env)): json.loads(env.read_text())["allocator"]
                  for env in (tmp_path / "runs-out").rglob("env.json")}
    assert allocators == {True: "system", False: "heap"}
    # the kept snapshot of each epoch was scored afterwards (the time-to-accuracy curve)
    (point,) = doc["time_to_accuracy"]
    assert point["epoch"] == 1 and point["train_seconds"] > 0 and 0 <= point["accuracy"] <= 1


def test_tag_must_be_a_file_name_part(tmp_path):
    """--tag names a result file: a path in it is one clear argparse line and exit 2."""
    proc = subprocess.run([sys.executable, str(BENCH / "speedrun.py"), "mnist", "--tag", "a/b",
                           "--smoke"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "'a/b' is not a file-name tag" in proc.stderr and "Traceback" not in proc.stderr
