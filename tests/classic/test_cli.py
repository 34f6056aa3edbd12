from __future__ import annotations

import json
import sys

import pytest

import cnnlab
from cnnlab.cli import main


def _one_line_error(capsys) -> str:
    """The one error line (progress logs may precede it on stderr)."""
    lines = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and errors[0] == lines[-1], lines
    return errors[0]


def test_classic_json_parses(capsys):
    code = main(["classic", "--data", "digits", "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    out = json.loads(captured.out)
    assert out["kind"] == "classic" and out["accuracy"] >= 0.9
    assert out["sizes"]["n_train"] == 1438 and "features" in out["timings"]


def test_classic_table(rgb_folder, capsys):
    code = main(["classic", "--data", str(rgb_folder), "--features", "hog", "--classifier",
                 "knn"])
    captured = capsys.readouterr()
    assert code == 0 and "hog+none+knn" in captured.out and "accuracy" in captured.out
    assert "converted to grey" in captured.err


@pytest.mark.parametrize("flag,value,hint", [("--features", "hgo", "'hog'"),
                                              ("--encoding", "flsher", "'fisher'"),
                                              ("--classifier", "linear-svn", "'linear-svm'")])
def test_unknown_names_one_line_did_you_mean(flag, value, hint, capsys):
    args = ["classic", "--data", "digits", flag, value]
    if flag == "--encoding":
        args += ["--features", "dsift"]
    assert main(args) == 2
    err = _one_line_error(capsys)
    assert f"'{value}'" in err and f"did you mean {hint}" in err


def test_codebook_larger_than_descriptors(rgb_folder, capsys):
    code = main(["classic", "--data", str(rgb_folder), "--features", "hog", "--encoding",
                 "bovw", "--codebook-size", "100000"])
    err = _one_line_error(capsys)
    # 48 training images × 25 HOG blocks (32 px, 5-px cells → 6 cells, 5 blocks a side)
    assert code == 2 and "100000 centres" in err and "has 1200" in err


def test_missing_opencv_says_which_extra(rgb_folder, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "cv2", None)  # import cv2 → ImportError
    code = main(["classic", "--data", str(rgb_folder), "--features", "dsift"])
    err = _one_line_error(capsys)
    assert code == 2 and 'pip install "cnnlab[classic]"' in err and "OpenCV" in err


def test_compare_missing_path(tmp_path, capsys):
    assert main(["compare", str(tmp_path / "nope")]) == 2
    err = _one_line_error(capsys)
    assert "not found" in err and "nope" in err


def test_compare_not_a_result(tmp_path, capsys):
    bad = tmp_path / "x.json"
    bad.write_text('{"hello": 1}')
    assert main(["compare", str(bad)]) == 2
    assert "not a cnnlab result" in _one_line_error(capsys)


@pytest.mark.slow
def test_compare_cnn_run_classic_and_transfer(tmp_path, capsys):
    run = cnnlab.train(model="simple-cnn", data="digits", epochs=1, out=str(tmp_path / "run"),
                       precision="fp32", progress=False)
    assert main(["classic", "--data", "digits", "--out", str(tmp_path / "hog.json")]) == 0
    transfer = {"model": "simple-cnn", "target": "digits", "seeds": 1,
                "rows": [{"mode": "features", "layer": "head-input", "per_class": "all",
                          "mean": 0.9}]}
    (tmp_path / "transfer.json").write_text(json.dumps(transfer))
    capsys.readouterr()
    code = main(["compare", run.run_dir, str(tmp_path / "hog.json"),
                 str(tmp_path / "transfer.json")])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    lines = captured.out.splitlines()
    assert len(lines) == 5  # header, rule, three rows
    assert "simple-cnn" in lines[2] and "cnn" in lines[2] and "digits" in lines[2]
    assert "hog+none+linear-svm" in lines[3] and "classic" in lines[3]
    assert "transfer" in lines[4]
    code = main(["compare", run.run_dir, str(tmp_path / "hog.json"), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert [r["kind"] for r in out["rows"]] == ["cnn", "classic"] and not out["notes"]
    assert abs(out["rows"][0]["accuracy"] - run.test_accuracy) < 1e-6
