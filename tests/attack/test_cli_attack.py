"""``cnnlab attack``: one JSON object, files written, one clear line on bad input."""

from __future__ import annotations

import json

import pytest

from cnnlab.cli import main

QUICK = ["--n", "60", "--n-train", "120"]


def run_json(capsys, *argv) -> dict:
    assert main(["attack", *argv, *QUICK, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_fgsm_curve_json_and_files(digits_run, tmp_path, capsys):
    out = tmp_path / "fgsm"
    r = run_json(capsys, str(digits_run), "--method", "fgsm", "--eps", "0,0.1,0.3",
                 "--out", str(out))
    for key in ("clean_accuracy", "adversarial_accuracy", "success_rate", "mean_linf",
                "max_linf", "mean_l2", "max_l2", "mean_confidence_new_label", "curve"):
        assert key in r, key
    assert [p["eps"] for p in r["curve"]] == [0.0, 0.1, 0.3] and r["eps"] == 0.3
    assert r["curve"][0]["success_rate"] == 0 and r["curve"][0]["max_linf"] == 0
    accs = [p["adversarial_accuracy"] for p in r["curve"]]
    assert accs[0] == r["clean_accuracy"] and accs[2] < accs[1] < accs[0]
    assert 0.29 < r["max_linf"] <= 0.3 and r["n"] == 60
    assert {p.name for p in out.iterdir()} == {"result.json", "gallery.png", "curve.json",
                                                "curve.png"}
    assert json.loads((out / "curve.json").read_text())["x"] == "eps"


def test_pgd_table_targeted_by_name_and_default_out(digits_run, capsys):
    assert main(["attack", str(digits_run), "--method", "pgd", "--eps", "8/255",
                 "--steps", "5", "--targeted", "7", *QUICK]) == 0
    text = capsys.readouterr().out
    assert "adv_acc" in text and "success_rate" in text and "target 7" in text
    assert (digits_run / "attack-pgd" / "gallery.png").is_file()
    saved = json.loads((digits_run / "attack-pgd" / "result.json").read_text())
    assert saved["target_class"] == "7" and saved["eps"] == pytest.approx(8 / 255)


@pytest.mark.parametrize("method,extra,keys", [
    ("universal", ["--eps", "0.2", "--steps", "2"], ["fooling_rate", "random_noise_fooling_rate"]),
    ("patch", ["--patch-size", "0.25,0.5", "--steps", "20", "--targeted", "3"],
     ["random_patch_success_rate", "patch_area"]),
    ("eot", ["--eps", "0.1", "--steps", "5", "--samples", "4", "--draws", "4"],
     ["eot_success_under_transforms", "pgd_success_under_transforms"]),
])
def test_other_methods_report(digits_run, tmp_path, capsys, method, extra, keys):
    r = run_json(capsys, str(digits_run), "--method", method, *extra, "--out", str(tmp_path))
    assert all(k in r for k in keys), sorted(r)
    assert r["max_linf"] <= (0.2 if method != "patch" else 1.0)
    assert (tmp_path / "gallery.png").is_file()
    if method == "patch":
        assert r["target_class"] == "3" and [p["patch_size"] for p in r["curve"]] == [0.25, 0.5]
        assert (tmp_path / "patches.pt").is_file() and (tmp_path / "curve.png").is_file()


@pytest.mark.parametrize("argv,needle", [
    (["--method", "pgd", "--eps", "2"], "outside [0, 1]"),
    (["--method", "fgsm", "--eps", "-0.1"], "outside [0, 1]"),
    (["--method", "pgd", "--eps", "0.1,abc"], "--eps takes numbers"),
    (["--method", "pgd", "--steps", "-3"], "--steps must be at least 1"),
    (["--method", "pgd", "--targeted", "cat"], "0, 1, 2, 3, 4, 5, 6, 7, 8, 9"),
    (["--method", "pgd", "--targeted", "12"], "no such class"),
    (["--method", "patch", "--patch-size", "1.5"], "larger than the image"),
    (["--method", "patch", "--patch-size", "0"], "must be > 0"),
    (["--method", "deepfool"], "--method must be one of"),
    (["--method", "pgd", "--norm", "l1"], "--norm must be one of"),
    (["--method", "pgd", "--n", "0"], "--n must be at least 1"),
    (["--method", "universal", "--targeted", "3"], "untargeted"),
])
def test_bad_input_is_one_line_and_exit_2(digits_run, capsys, argv, needle):
    code = main(["attack", str(digits_run), *argv])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], err


def test_run_without_weights_and_missing_run(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    for run, needle in ((tmp_path / "empty", "no trained weights"),
                        (tmp_path / "nowhere", "not found")):
        assert main(["attack", str(run), "--method", "fgsm"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0]
