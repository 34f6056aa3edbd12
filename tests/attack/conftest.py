"""Shared pieces for the attack tests: one small CNN trained on digits (8×8, embedded data)."""

from __future__ import annotations

import pytest
import torch

import cnnlab


@pytest.fixture(scope="package", autouse=True)
def _one_thread():
    """These models are tiny (8×8 inputs): a second intra-op thread buys nothing, and on a
    shared, loaded 2-core machine OpenMP's spinning made a 20-step PGD 60× slower (16 s vs
    0.26 s measured)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="package")
def digits_run(tmp_path_factory):
    """A simple-cnn (width 16) trained for 8 epochs on digits: ~97 % test accuracy in ~2 s."""
    out = tmp_path_factory.mktemp("attack") / "run"
    cnnlab.train(model="simple-cnn", model_kwargs={"width": 16}, epochs=8, precision="fp32",
                 progress=False, out=str(out))
    return out


@pytest.fixture(scope="package")
def digits_model(digits_run):
    return cnnlab.load_model(digits_run)


@pytest.fixture(scope="package")
def digits_data():
    ds = cnnlab.load_data("digits")
    return (ds.train.images.float() / 255, ds.train.labels,
            ds.test.images.float() / 255, ds.test.labels)
