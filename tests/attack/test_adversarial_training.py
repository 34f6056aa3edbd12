"""``cnnlab train --adv fgsm|pgd``: config, metrics.csv's robust_acc, and that it helps."""

from __future__ import annotations

import csv

import pytest
import torch

import cnnlab
from cnnlab.attack import pgd
from cnnlab.cli import main
from cnnlab.errors import ConfigError
from cnnlab.train import make_config

FAST = dict(model="simple-cnn", model_kwargs={"width": 16}, epochs=8, precision="fp32",
            progress=False)


@pytest.fixture(scope="module")
def fgsm_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("adv") / "fgsm"
    result = cnnlab.train(out=str(out), adv="fgsm", adv_eps=0.1, **FAST)
    return result, out


def test_metrics_csv_has_clean_and_robust_accuracy(fgsm_run, digits_run):
    result, out = fgsm_run
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert len(rows) == 8 and "robust_acc" in rows[0]
    robust = [float(r["robust_acc"]) for r in rows]
    clean = [float(r["eval_acc"]) for r in rows]
    assert all(0 <= r <= c + 0.05 for r, c in zip(robust, clean, strict=True))
    assert result.test_accuracy > 0.9
    assert "adv: fgsm" in (out / "config.yaml").read_text()
    # a plain run has the column, empty
    plain = list(csv.DictReader((digits_run / "metrics.csv").open()))
    assert all(r["robust_acc"] == "" for r in plain)


def test_adversarial_training_raises_robust_accuracy(fgsm_run, digits_model, digits_data):
    """FGSM-RS at ε = 0.1 vs the same net trained plainly (the package's digits model)."""
    _, out = fgsm_run
    robust_model = cnnlab.load_model(out)
    _, _, x, y = digits_data

    def pgd_acc(model):
        x_adv = pgd(model, x, y, 0.1, steps=10, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            return (model(x_adv).argmax(1) == y).float().mean().item()

    plain, robust = pgd_acc(digits_model), pgd_acc(robust_model)
    assert robust > plain + 0.15, (plain, robust)  # measured: 0.46 → 0.82


def test_pgd_training_one_epoch(tmp_path):
    out = tmp_path / "pgd"
    cnnlab.train(out=str(out), adv="pgd", adv_eps=0.1, adv_steps=2, **{**FAST, "epochs": 1})
    row = next(csv.DictReader((out / "metrics.csv").open()))
    assert 0 <= float(row["robust_acc"]) <= 1


@pytest.mark.parametrize("bad,match", [({"adv": "cw"}, "--adv"), ({"adv_eps": 1.5}, "--adv-eps"),
                                       ({"adv_eps": -0.1}, "--adv-eps"),
                                       ({"adv_steps": 0}, "--adv-steps"),
                                       ({"adv_step_size": 0}, "--adv-step-size")])
def test_bad_adversarial_options_are_refused(bad, match):
    with pytest.raises(ConfigError, match=match):
        make_config({"adv": "pgd", **bad})


def test_resume_cannot_change_the_attack(fgsm_run):
    _, out = fgsm_run
    with pytest.raises(ConfigError, match="adv_eps"):
        cnnlab.train(resume=str(out), adv_eps=0.2, progress=False)


def test_cli_flags_reach_the_config(capsys):
    assert main(["train", "--adv", "pgd", "--adv-eps", "0.25", "--adv-steps", "3",
                 "--adv-step-size", "0.1", "--print-config"]) == 0
    text = capsys.readouterr().out
    assert "adv: pgd" in text and "adv_eps: 0.25" in text and "adv_steps: 3" in text
    assert "adv_step_size: 0.1" in text
    assert main(["train", "--adv", "pgd", "--adv-steps", "-1", "--print-config"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--adv-steps" in err[0]


def test_eps_warmup_ramps_linearly_then_holds():
    from cnnlab.attack.training import adversarial_batch, eps_schedule
    from cnnlab.train import make_config

    cfg = make_config({"adv": "pgd", "adv_eps": 0.3, "adv_eps_warmup": 2.0})
    assert [eps_schedule(cfg, e) for e in (0.0, 0.5, 1.0, 2.0, 5.0)] == pytest.approx(
        [0.0, 0.075, 0.15, 0.3, 0.3])
    assert eps_schedule(make_config({"adv": "pgd"}), 0.0) == 0.3  # no warm-up: full ε at once
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    x, y = torch.rand(4, 1, 4, 4), torch.tensor([0, 1, 2, 0])
    assert torch.equal(adversarial_batch(model, x, y, cfg, eps=0.0), x)
    x_adv = adversarial_batch(model, x, y, cfg, eps=0.1)
    assert 0.05 < float((x_adv - x).abs().max()) <= 0.1 + 1e-6  # within the ramped budget
