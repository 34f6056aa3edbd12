"""Shared fixtures: where the real data is, and small fast defaults for tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from cnnlab.perf.hardware import separate_compile_cache

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

# a suite run under an instruction-set cap (Zen 3 emulation, README "Measured") compiles into a
# cache of its own: torch's compile cache does not key on the cap (perf/hardware.py)
separate_compile_cache()


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Each test session gets its own cnnlab cache, never the user's ~/.cache/cnnlab."""
    cache = tmp_path_factory.getbasetemp() / "cnnlab-cache"
    cache.mkdir(exist_ok=True)
    monkeypatch.setenv("CNNLAB_DATA", str(cache))
    # The bf16 probe costs a second; tests pin precision explicitly where it matters.
    torch.manual_seed(0)


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """One trained run shared by the report, explain and perf tests: ``cnnlab train``'s default
    (simple-cnn on digits), 2 epochs, fp32 — ~96 % test accuracy in about a second. Tests may
    add files to it (reports, exports) but must not change its weights."""
    import cnnlab

    out = tmp_path_factory.mktemp("tiny-run") / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CNNLAB_DATA", str(tmp_path_factory.getbasetemp() / "cnnlab-cache"))
        cnnlab.train(epochs=2, precision="fp32", progress=False, out=str(out))
    return out


def pytest_configure(config):
    os.environ.setdefault("CNNLAB_DIST_TIMEOUT", "60")
    # Tests use tiny batches: one intra-op thread is faster for them, and it keeps timings sane
    # when the suite shares the 2 cores with other work.
    torch.set_num_threads(1)
