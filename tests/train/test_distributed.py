"""torchrun/DDP on CPU (gloo): 2 processes equal 1 process with the same global batch."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

import cnnlab
from cnnlab.train.distributed import DistInfo, shard_bounds

ARGS = ["train", "lenet5", "--epochs", "1", "--batch-size", "64", "--optimizer", "sgd",
        "--lr", "0.05", "--schedule", "constant", "--warmup-epochs", "0", "--precision", "fp32",
        "--no-channels-last", "--seed", "7", "--no-progress", "--json"]


def _env():
    # One thread per rank: 2 ranks on 2 cores, and no oversubscription.
    return {**os.environ, "OMP_NUM_THREADS": "1", "CNNLAB_DIST_TIMEOUT": "30"}


def _torchrun(nproc, *args):
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc_per_node={nproc}", "-m", "cnnlab", *args]


@pytest.mark.slow
def test_two_processes_match_one_process(tmp_path):
    one = subprocess.run([sys.executable, "-m", "cnnlab", *ARGS, "--out", str(tmp_path / "one")],
                         env=_env(), capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr
    two = subprocess.run(_torchrun(2, *ARGS, "--out", str(tmp_path / "two")), env=_env(),
                         capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr
    a = load_file(tmp_path / "one" / "model.safetensors")
    b = load_file(tmp_path / "two" / "model.safetensors")
    changed = 0
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5)
        changed += 1
    assert changed > 0
    # Only rank 0 wrote files, and exactly one JSON result came out.
    assert two.stdout.count('"test_accuracy"') == 1
    assert "world_size" in (tmp_path / "two" / "env.json").read_text()
    # each rank scored its share of the test set: gathered in order, the accuracy is the one
    # a single process measures on the saved weights (a shuffled gather would be ~chance)
    reported = json.loads(two.stdout[two.stdout.index("{"):])["test_accuracy"]
    alone = cnnlab.evaluate(tmp_path / "two")["accuracy"]
    assert reported == pytest.approx(alone, abs=0.003)  # at most one image of ~360


@pytest.mark.slow
def test_whitening_bias_freezes_under_torchrun_too(tmp_path):
    """DDP fixes the trained parameters up front, so a frozen whitening bias has its gradient
    dropped instead: after the freeze epoch it does not move, as in one process."""
    args = ["train", "--preset", "cifar10-speedrun", "--data", "digits", "--channels", "3",
            "--epochs", "2", "--batch-size", "128", "--freeze-whiten-bias", "1",
            "--progressive", "", "--no-lookahead", "--tta", "none", "--keep-snapshots",
            "--precision", "fp32", "--no-progress", "--out", str(tmp_path / "run")]
    proc = subprocess.run(_torchrun(2, *args), env=_env(), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    first = cnnlab.load_model(tmp_path / "run", snapshot=1).whiten.bias
    last = cnnlab.load_model(tmp_path / "run").whiten.bias
    assert first.abs().sum() > 0 and torch.equal(first, last)


@pytest.mark.parametrize("world", [2, 3])
@pytest.mark.parametrize("n", [0, 1, 2, 5, 10000])
def test_rank_shares_cover_every_row_once_in_order(n, world):
    bounds = [shard_bounds(n, DistInfo(rank, world)) for rank in range(world)]
    rows = [i for lo, hi in bounds for i in range(lo, hi)]
    assert rows == list(range(n))
    assert all(lo <= hi for lo, hi in bounds)


@pytest.mark.slow
def test_a_failed_rank_ends_the_job_instead_of_hanging(tmp_path):
    args = [*ARGS, "--epochs", "500", "--out", str(tmp_path / "long")]
    proc = subprocess.Popen(_torchrun(2, *args), env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.time() + 120
        workers = []
        while time.time() < deadline and len(workers) < 2:
            time.sleep(0.5)
            workers = _worker_pids(proc.pid)
        assert len(workers) == 2, "workers did not start"
        time.sleep(3)
        os.kill(workers[-1], signal.SIGKILL)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode != 0
    assert "failed" in err.lower() or "error" in err.lower()


@pytest.mark.slow
def test_a_refused_out_ends_every_rank_with_one_line(tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "model.json").write_text("{}")
    proc = subprocess.run(_torchrun(2, *ARGS, "--out", str(tmp_path / "taken")), env=_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "already holds a run" in proc.stderr
    # rank 1 was waiting in DDP's first broadcast: it ends with a sentence (or torchrun ends it
    # first), never with a traceback through cnnlab's code (torchrun's own launcher still prints
    # its ChildFailedError summary, which names the failed rank)
    assert not re.search(r'File "[^"]*cnnlab[^"]*"', proc.stderr), proc.stderr[-3000:]
    assert not re.search(r"\[rank\d\]: Traceback", proc.stderr)


def _worker_pids(parent: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=,ppid=,args=", "-e"], capture_output=True, text=True)
    rows = [line.split(None, 2) for line in out.stdout.strip().splitlines()]
    return sorted(int(pid) for pid, ppid, cmd in rows
                  if int(ppid) == parent and "cnnlab" in cmd and "distributed.run" not in cmd)
