"""The CLI: one JSON object with --json, one clear error line and exit 2 on bad input."""

import json
import subprocess
import sys

import pytest
from PIL import Image

from cnnlab.cli import main


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", "--epochs", "2", "--precision", "fp32", "--out", str(out),
                 "--no-progress"]) == 0
    return out


def test_train_json_is_one_object_on_stdout(tmp_path, capsys):
    code = main(["train", "--epochs", "1", "--precision", "fp32", "--out",
                 str(tmp_path / "r"), "--json"])
    captured = capsys.readouterr()
    assert code == 0
    result = json.loads(captured.out)
    assert {"test_accuracy", "train_seconds", "epochs", "run_dir"} <= set(result)
    assert result["epochs"] == 1 and "epoch 1/1" in captured.err


def test_evaluate_json(run_dir, capsys):
    assert main(["evaluate", str(run_dir), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"accuracy", "top5", "confusion_matrix", "per_class"} <= set(out)
    assert len(out["confusion_matrix"]) == 10


def test_evaluate_with_test_time_augmentation(run_dir, capsys):
    assert main(["evaluate", str(run_dir), "--tta", "flip", "--json"]) == 0
    flipped = json.loads(capsys.readouterr().out)
    assert flipped["tta"] == "flip" and 0 < flipped["accuracy"] <= 1
    assert main(["evaluate", str(run_dir), "--json"]) == 0
    plain = json.loads(capsys.readouterr().out)
    # digits are not mirror-symmetric: averaging in the mirrored view changes the logits
    assert plain["tta"] == "none"
    assert plain["confusion_matrix"] != flipped["confusion_matrix"]
    assert main(["evaluate", str(run_dir), "--tta", "rotate"]) == 2
    assert "--tta must be one of" in capsys.readouterr().err
    # the views only for the least confident half: between no TTA and TTA everywhere
    assert main(["evaluate", str(run_dir), "--tta", "flip", "--tta-fraction", "0.5"]) == 0
    assert "TTA flip on the 50% least confident" in capsys.readouterr().out
    assert main(["evaluate", str(run_dir), "--tta", "flip", "--tta-fraction", "0"]) == 2
    assert "--tta-fraction must be a share in (0, 1]" in capsys.readouterr().err


def test_evaluate_table(run_dir, capsys):
    assert main(["evaluate", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "top-1" in out and "confusion matrix" in out and "precision" in out


def test_predict_files_and_folders(run_dir, tmp_path, capsys):
    import cnnlab

    ds = cnnlab.load_data("digits")
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(ds.test.images[i, 0].numpy()).save(folder / f"{i}.png")
    Image.fromarray(ds.test.images[0, 0].numpy()).convert("RGBA").save(tmp_path / "rgba.png")
    (folder / ".hidden.png").write_bytes(b"not an image")  # hidden files are ignored
    assert main(["predict", str(run_dir), str(folder), str(tmp_path / "rgba.png"),
                 "--top-k", "2", "--json"]) == 0
    preds = json.loads(capsys.readouterr().out)["predictions"]
    assert len(preds) == 4 and all(len(p["top"]) == 2 for p in preds)
    assert all(p["top"][0]["probability"] >= p["top"][1]["probability"] for p in preds)
    labels = [ds.classes[int(i)] for i in ds.test.labels[:3]]
    assert sum(p["top"][0]["class"] == t for p, t in zip(preds, labels, strict=False)) >= 2


def test_print_config_merges_file_and_flags(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("lr: 0.5\nepochs: 7\n")
    assert main(["train", "--config", str(cfg), "--lr", "0.1", "--print-config"]) == 0
    out = capsys.readouterr().out
    assert "lr: 0.1" in out and "epochs: 7" in out


@pytest.mark.parametrize("args, message", [
    (["train", "--epochs", "-1"], "--epochs must be at least 1"),
    (["train", "--batch-size", "0"], "--batch-size must be at least 1"),
    (["train", "--lr", "0"], "--lr must be > 0"),
    (["train", "lenet55"], "did you mean 'lenet5'"),
    (["train", "--data", "mnsit"], "did you mean 'mnist'"),
    (["train", "--data", "./no/such/folder"], "data folder not found"),
    (["evaluate", "/no/such/run"], "run directory not found"),
    (["train", "--model-arg", "depth=3", "--epochs", "1"], "does not take these options"),
    (["train", "--optimizer", "sgd", "--momentum", "0", "--nesterov"],
     "--nesterov needs --momentum > 0"),
])
def test_bad_input_is_one_line_and_exit_2(args, message, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_predict_missing_image_and_run_without_weights(run_dir, tmp_path, capsys):
    assert main(["predict", str(run_dir), str(tmp_path / "none.png")]) == 2
    assert "image or folder not found" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["predict", str(empty), str(tmp_path)]) == 2
    assert "no trained weights" in capsys.readouterr().err


def test_resume_with_conflicting_flags(run_dir, capsys):
    assert main(["train", "--resume", str(run_dir), "--batch-size", "8"]) == 2
    assert "cannot change batch_size" in capsys.readouterr().err


def test_corrupt_image_in_predict_names_the_file(run_dir, tmp_path, capsys):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    assert main(["predict", str(run_dir), str(bad)]) == 2
    assert "broken.png" in capsys.readouterr().err


def test_real_process_exit_code_and_no_traceback():
    proc = subprocess.run([sys.executable, "-m", "cnnlab", "train", "--epochs", "0"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: --epochs must be at least 1, got 0"
    assert proc.stdout == ""


def test_snapshots_give_accuracy_per_epoch(tmp_path, capsys):
    out = tmp_path / "snap"
    assert main(["train", "--epochs", "3", "--precision", "fp32", "--eval-every", "0",
                 "--keep-snapshots", "--out", str(out), "--no-progress", "--no-report"]) == 0
    assert sorted(p.name for p in (out / "snapshots").iterdir()) == [
        "epoch-001.safetensors", "epoch-002.safetensors", "epoch-003.safetensors"]
    capsys.readouterr()
    accs = []
    for epoch in (1, 2, 3):
        assert main(["evaluate", str(out), "--snapshot", str(epoch), "--json"]) == 0
        result = json.loads(capsys.readouterr().out)
        assert result["snapshot"] == epoch
        accs.append(result["accuracy"])
    assert main(["evaluate", str(out), "--json"]) == 0
    final = json.loads(capsys.readouterr().out)
    assert final["accuracy"] == accs[-1]  # the last snapshot is the final model
    assert len(set(accs)) > 1  # and the earlier ones are not
    assert main(["evaluate", str(out), "--snapshot", "9"]) == 2
    assert "no snapshot of epoch 9 (kept: 1, 2, 3)" in capsys.readouterr().err
