"""The allocator switch: freed tensor memory is reused instead of page-faulted in again."""

import json
import os
import subprocess
import sys

import pytest

from cnnlab.perf import memory

# A fresh interpreter per case: mallopt changes the whole process, and pytest's own may already
# run tuned (every CLI test goes through cli.main, which switches it on).
PROBE = r"""
import json, resource, sys
import torch
from cnnlab.perf.memory import tune_allocator, allocator_state
from cnnlab.perf.hardware import machine_info
state = tune_allocator()
assert tune_allocator() == state  # once per process: a second call changes nothing
def faults_of_one_step():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    x = torch.empty(16 * 2**20).fill_(1.0)   # 64 MiB written, as a step's activations are
    del x
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
# the first steps grow the heap either way (a freed block is not always where the next fits);
# what matters is the steady state of a training loop
for _ in range(6):
    faults_of_one_step()
again = [faults_of_one_step() for _ in range(3)]
print(json.dumps({"state": state, "again": again, "info": machine_info()["allocator"],
                  "reported": allocator_state()}))
"""


def _probe(**env: str) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                         env={**os.environ, **env}, check=True)
    return json.loads(out.stdout)


linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")


@linux_only
def test_tuned_allocator_reuses_freed_memory_without_page_faults():
    tuned = _probe(CNNLAB_ALLOCATOR="")
    assert tuned["state"] == tuned["info"] == tuned["reported"] == "heap"
    # 64 MiB = 16,384 pages of 4 KiB: glibc's defaults fault every one of them in again each
    # step; once the heap has grown, reused heap memory faults (almost) none
    assert max(tuned["again"]) < 500, tuned
    system = _probe(CNNLAB_ALLOCATOR="system")
    assert system["state"] == system["info"] == "system"
    assert min(system["again"]) > 8_000, system


def test_opt_out_and_state_before_tuning(monkeypatch):
    monkeypatch.setattr(memory, "_state", None)
    assert memory.allocator_state() == "system"  # nothing switched yet
    monkeypatch.setenv("CNNLAB_ALLOCATOR", "System")
    assert memory.tune_allocator() == "system"
    assert memory.allocator_state() == "system"


def test_other_platforms_keep_their_allocator(monkeypatch):
    monkeypatch.setattr(memory, "_state", None)
    monkeypatch.delenv("CNNLAB_ALLOCATOR", raising=False)
    monkeypatch.setattr(memory.sys, "platform", "darwin")
    assert memory.tune_allocator() == "system"


def test_a_c_library_without_mallopt_is_left_alone(monkeypatch):
    monkeypatch.setattr(memory, "_state", None)
    monkeypatch.delenv("CNNLAB_ALLOCATOR", raising=False)
    monkeypatch.setattr(memory.sys, "platform", "linux")

    def no_libc(name):
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(memory.ctypes, "CDLL", no_libc)
    assert memory.tune_allocator() == "system"
