from __future__ import annotations

import json

from cnnlab.cli import main
from cnnlab.transfer import layer_names, transfer


def test_layer_all_gives_one_accuracy_per_layer(backbone, backbone_run):
    out = transfer(backbone_run, "digits", classes=[5, 6, 7, 8, 9], mode="features",
                   layer="all", per_class="20")
    assert [r["layer"] for r in out["rows"]] == layer_names(backbone)
    assert all(0.0 <= r["mean"] <= 1.0 and r["per_class"] == 20 for r in out["rows"])
    assert out["rows"][-1]["mean"] > 0.5  # 5-way, chance 0.2


def test_unknown_layer_is_one_line_exit_2(backbone_run, capsys):
    code = main(["transfer", "--from", backbone_run, "--data", "digits", "--layer", "nope"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err
    assert "unknown layer 'nope'" in err and "block1" in err and "head-input" in err


def test_too_few_per_class_exit_2(backbone_run, capsys):
    code = main(["transfer", "--from", backbone_run, "--data", "digits", "--per-class", "5000"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "has 1" in err


def test_hub_name_needs_extra(capsys):
    code = main(["transfer", "--from", "resnet50", "--data", "digits"])
    err = capsys.readouterr().err
    assert code == 2 and "optional extra 'hub'" in err


def test_target_converted_and_resized_says_so(backbone_run, target, tmp_path, capsys,
                                               write_folder):
    folder = write_folder(tmp_path / "rgb", target.train.images[:60], target.train.labels[:60],
                          target.classes, rgb=True, size=12)
    code = main(["transfer", "--from", backbone_run, "--data", str(folder), "--json"])
    captured = capsys.readouterr()
    assert code == 0
    assert "from 3 to 1 channel" in captured.err and "from 12×12 to 8×8" in captured.err
    out = json.loads(captured.out)
    assert len(out["notes"]) == 2 and out["rows"][0]["mode"] == "features"


def test_compare_json_rows(backbone_run, capsys):
    code = main(["transfer", "--from", backbone_run, "--data", "digits", "--classes",
                 "5,6,7,8,9", "--mode", "compare", "--per-class", "3,6", "--seeds", "2",
                 "--epochs", "1", "--freeze-epochs", "1", "--min-steps", "3", "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    out = json.loads(captured.out)
    keys = {(r["mode"], r["per_class"]) for r in out["rows"]}
    assert keys == {(m, n) for m in ("scratch", "features", "finetune") for n in (3, 6)}
    for r in out["rows"]:
        assert len(r["accuracies"]) == 2 and r["std"] >= 0 and 0 <= r["mean"] <= 1
