import pytest

from cnnlab.train import make_config
from cnnlab.train.optim import lr_factor


def test_onecycle_rises_then_falls_to_zero():
    cfg = make_config({"schedule": "onecycle", "epochs": 10, "warmup_epochs": 2})
    f = [lr_factor(cfg, s, 10) for s in range(100)]
    assert f[0] < f[10] and max(f) == pytest.approx(1.0)
    assert f.index(max(f)) == 19 and f[-1] < 0.02


def test_step_schedule_decays_by_gamma():
    cfg = make_config({"schedule": "step", "epochs": 30, "step_size": 10, "gamma": 0.1,
                       "warmup_epochs": 0})
    assert lr_factor(cfg, 0, 5) == 1.0
    assert lr_factor(cfg, 50, 5) == pytest.approx(0.1)
    assert lr_factor(cfg, 100, 5) == pytest.approx(0.01)


def test_cosine_ends_near_zero():
    cfg = make_config({"schedule": "cosine", "epochs": 4, "warmup_epochs": 0})
    assert lr_factor(cfg, 0, 10) == pytest.approx(1.0)
    assert lr_factor(cfg, 20, 10) == pytest.approx(0.5)
    assert lr_factor(cfg, 40, 10) == pytest.approx(0.0, abs=1e-9)
