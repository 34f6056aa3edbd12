"""The training loop end to end on digits (embedded, fast): runs, checkpoints, resume, errors."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import cnnlab
from cnnlab.errors import CheckpointError, ConfigError, TrainingError
from cnnlab.models import CnnlabModel, register_model

FAST = dict(epochs=3, precision="fp32", progress=False)


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "digits"
    result = cnnlab.train(out=str(out), **FAST)
    return result, out


def test_run_directory_holds_everything(digits_run):
    result, out = digits_run
    assert result.test_accuracy > 0.9
    names = {p.name for p in out.iterdir()}
    assert {"model.safetensors", "model.json", "state.pt", "config.yaml", "metrics.csv",
            "env.json"} <= names
    assert not [n for n in names if n.endswith(".tmp")]
    meta = json.loads((out / "model.json").read_text())
    assert meta["model"] == "simple-cnn" and meta["classes"] == [str(i) for i in range(10)]
    assert meta["metrics"]["test_accuracy"] == pytest.approx(result.test_accuracy)
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert float(rows[-1]["eval_acc"]) == pytest.approx(result.test_accuracy, abs=1e-4)
    state = torch.load(out / "state.pt", weights_only=True)
    assert state["epoch"] == 3 and "optimizer" in state


def test_loaded_model_reproduces_the_test_accuracy(digits_run):
    result, out = digits_run
    model = cnnlab.load_model(out)
    assert not model.training
    ds = cnnlab.load_data("digits")
    with torch.no_grad():
        acc = (model(ds.test.images.float() / 255).argmax(1) == ds.test.labels).float().mean()
    assert acc.item() == pytest.approx(result.test_accuracy, abs=1e-6)
    report = cnnlab.evaluate(out)
    assert report["accuracy"] == pytest.approx(result.test_accuracy, abs=1e-6)
    cm = torch.tensor(report["confusion_matrix"])
    assert cm.sum() == len(ds.test) and cm.trace() / cm.sum() == pytest.approx(report["accuracy"])
    assert 0.9 < report["top5"] <= 1.0 and len(report["per_class"]) == 10


def test_model_normalizes_its_own_input(digits_run):
    _, out = digits_run
    model = cnnlab.load_model(out)
    assert model.norm.kind == "standardize"
    assert 0.2 < float(model.norm.mean.flatten()[0]) < 0.4  # digits' mean ink in [0, 1] units


def test_checkpoint_of_another_model_is_refused(digits_run, tmp_path):
    _, out = digits_run
    meta = json.loads((out / "model.json").read_text())
    meta["model"] = "lenet5"
    other = tmp_path / "other"
    other.mkdir()
    (other / "model.json").write_text(json.dumps(meta))
    (other / "model.safetensors").write_bytes((out / "model.safetensors").read_bytes())
    with pytest.raises(CheckpointError, match="another architecture"):
        cnnlab.load_model(other)


def test_resume_refuses_flags_that_change_the_experiment(digits_run):
    _, out = digits_run
    with pytest.raises(ConfigError, match="cannot change lr"):
        cnnlab.train(resume=str(out), lr=0.5, progress=False)


def test_out_dir_of_a_finished_run_is_not_overwritten(digits_run):
    _, out = digits_run
    with pytest.raises(CheckpointError, match="already holds a run"):
        cnnlab.train(out=str(out), **FAST)


def test_init_from_loads_weights_but_starts_a_new_run(digits_run, tmp_path):
    _, out = digits_run
    result = cnnlab.train(out=str(tmp_path / "ft"), init_from=str(out), epochs=1,
                          lr=1e-4, precision="fp32", progress=False)
    # One epoch at a tiny lr from trained weights stays near the trained accuracy.
    assert result.test_accuracy > 0.9
    assert json.loads((tmp_path / "ft" / "model.json").read_text())["epoch"] == 1


class _Exploding(CnnlabModel):
    """Returns NaN logits from its 5th training step on: a stand-in for a diverging run."""

    def __init__(self, *, num_classes=10, in_chans=1, input_size=(8, 8), norm="standardize"):
        super().__init__(in_chans, num_classes, input_size, norm)
        self.features = torch.nn.Flatten()
        self.head = torch.nn.Linear(in_chans * input_size[0] * input_size[1], num_classes)
        self.calls = 0

    def forward(self, x):
        out = super().forward(x)
        if self.training:
            self.calls += 1
            if self.calls >= 5:
                out = out * float("nan")
        return out


register_model("test-exploding", family="test", paper="-", year=0, input_size=(1, 8, 8),
               num_classes=10)(lambda **kw: _Exploding(**kw))


def test_non_finite_loss_stops_with_epoch_step_and_lr(tmp_path):
    with pytest.raises(TrainingError, match=r"epoch 1, step 5 \(lr [0-9.e-]+\)"):
        cnnlab.train(model="test-exploding", out=str(tmp_path / "nan"), **FAST)


def _cli(*args, **kw):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "cnnlab", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def _epochs_done(run: Path) -> int:
    try:
        return len((run / "metrics.csv").read_text().strip().splitlines()) - 1
    except OSError:
        return 0


@pytest.mark.slow
def test_resume_after_sigkill_matches_the_uninterrupted_run(tmp_path):
    args = ["train", "--epochs", "6", "--batch-size", "16", "--model-arg", "width=48",
            "--seed", "3", "--precision", "fp32", "--no-progress", "--augment", "crop:1",
            "--json"]
    full = _cli(*args, "--out", str(tmp_path / "full"))
    out, err = full.communicate(timeout=300)
    assert full.returncode == 0, err
    expected = json.loads(out)

    run = tmp_path / "killed"
    proc = _cli(*args, "--out", str(run))
    deadline = time.time() + 240
    while _epochs_done(run) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)  # into epoch 3
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = _epochs_done(run)
    assert 2 <= done < 6, f"kill landed after {done} epochs"
    assert not list(run.glob("*.tmp"))

    resumed = _cli("train", "--resume", str(run), "--json", "--no-progress")
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    got = json.loads(out)
    assert f"resuming after epoch {done}" in err
    assert got["test_accuracy"] == expected["test_accuracy"]
    a = load_file(tmp_path / "full" / "model.safetensors")
    b = load_file(run / "model.safetensors")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-5)


def test_riemannian_sgd_keeps_stiefel_kernels_orthonormal_through_the_loop(tmp_path):
    cnnlab.train(model="research-cifar", model_kwargs={"conv": "stiefel", "cfg": [16, "M", 32]},
                 optimizer="riemannian-sgd", lr=0.05, out=str(tmp_path / "st"), **FAST)
    model = cnnlab.load_model(tmp_path / "st")
    checked = 0
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            w = module.weight.flatten(1).double()
            gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
            torch.testing.assert_close(gram, torch.eye(gram.shape[0], dtype=torch.float64),
                                       atol=1e-5, rtol=0)
            checked += 1
    assert checked == 2


def test_subset_trains_on_a_stratified_seeded_slice(tmp_path, capsys):
    from cnnlab.data import load_data
    from cnnlab.data.dataset import train_subset

    train = load_data("digits").train
    part = train_subset(train, 300, 10, seed=1)
    counts = part.counts(10)
    assert abs(len(part) - 300) <= 10 and min(counts) >= 25 and max(counts) <= 35
    assert torch.equal(part.labels, train_subset(train, 300, 10, seed=1).labels)
    assert train_subset(train, 10**6, 10, seed=1) is train
    cnnlab.train(out=str(tmp_path / "sub"), subset=200, epochs=1, precision="fp32",
                 progress=False)
    err = capsys.readouterr().err
    n = len(train_subset(train, 200, 10, seed=0))
    assert f": {n} train / " in err and "subset: 200" in (tmp_path / "sub/config.yaml").read_text()


def test_image_size_h_w_and_channels_reach_the_model(tmp_path):
    from cnnlab.cli import main

    out = tmp_path / "rgb"
    assert main(["train", "--epochs", "1", "--image-size", "10,12", "--channels", "3",
                 "--precision", "fp32", "--out", str(out), "--no-progress", "--no-report"]) == 0
    meta = json.loads((out / "model.json").read_text())
    assert meta["input_size"] == [10, 12] and meta["in_chans"] == 3
    assert cnnlab.evaluate(out)["accuracy"] > 0.1  # reloads with the same conversion


@pytest.mark.parametrize("flags", [["--image-size", "0"], ["--image-size", "3,4,5"],
                                   ["--channels", "2"]])
def test_bad_image_size_or_channels_is_one_line(flags, capsys):
    from cnnlab.cli import main

    with pytest.raises(SystemExit) as exc:
        code = main(["train", "--epochs", "1", *flags])
        raise SystemExit(code)
    assert exc.value.code == 2
    assert "Traceback" not in capsys.readouterr().err
