"""Shared pieces for the attack tests: one small CNN trained on digits (8×8, embedded data)."""

from __future__ import annotations

import pytest

import cnnlab


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
