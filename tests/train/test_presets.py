"""Named presets (defaults < preset < config file < flags), --no-report and the speed-run net."""

import json

import pytest
import torch
import yaml

import cnnlab
from cnnlab.cli import main
from cnnlab.errors import ConfigError
from cnnlab.models import create_model
from cnnlab.perf.flops import count_macs
from cnnlab.train import make_config
from cnnlab.train.config import FIELDS, TrainConfig
from cnnlab.train.presets import PRESETS, get_preset, preset_config


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_is_valid_config_and_explains_itself(name):
    preset = get_preset(name)
    assert set(preset.config) <= set(FIELDS) and "preset" not in preset.config
    cfg = make_config({"preset": name})
    for key, value in preset.config.items():
        assert getattr(cfg, key) == value, key
    assert cfg.preset == name and len(preset.description) > 200 and preset.summary


def test_layering_defaults_preset_config_file_flags():
    speed = preset_config("mnist-speedrun")
    cfg = make_config({"preset": "mnist-speedrun"})
    assert cfg.lr == speed["lr"] and cfg.model == "mnist-speednet" and cfg.report is False
    assert cfg.seed == TrainConfig().seed  # what the preset leaves alone stays the default
    # the config file beats the preset, even when the preset is named by a flag after it ...
    cfg = make_config({"lr": 0.05, "epochs": 7}, {"preset": "mnist-speedrun", "epochs": 3})
    assert cfg.lr == 0.05 and cfg.epochs == 3 and cfg.batch_size == speed["batch_size"]
    # ... and a preset named in the file is overridden by flags
    cfg = make_config({"preset": "mnist-speedrun", "lr": 0.05}, {"lr": 0.01, "report": True})
    assert cfg.lr == 0.01 and cfg.report is True and cfg.optimizer == speed["optimizer"]


def test_cli_layering_through_print_config(tmp_path, capsys):
    conf = tmp_path / "exp.yaml"
    conf.write_text("lr: 0.05\nweight_decay: 0.001\n")
    assert main(["train", "--preset", "mnist-speedrun", "--config", str(conf), "--lr", "0.3",
                 "--print-config"]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["lr"] == 0.3 and cfg["weight_decay"] == 0.001
    assert cfg["model"] == "mnist-speednet" and cfg["preset"] == "mnist-speedrun"
    assert cfg["report"] is False


def test_unknown_preset_is_an_error_with_a_suggestion(capsys):
    with pytest.raises(ConfigError, match="did you mean 'mnist-speedrun'"):
        make_config({"preset": "mnist-sppedrun"})
    assert main(["train", "--preset", "cifar-magic", "--print-config"]) == 2
    assert "unknown preset 'cifar-magic'" in capsys.readouterr().err


def test_preset_list_and_help_show_the_presets(capsys):
    assert main(["train", "--preset", "list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in PRESETS) and "label smoothing" in out.lower()
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "mnist-speedrun" in capsys.readouterr().out


def test_no_report_leaves_no_report_html(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--epochs", "1", "--precision", "fp32", "--no-report", "--out",
                 str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["epochs"] == 1
    assert (out / "model.safetensors").is_file() and (out / "metrics.csv").is_file()
    assert not (out / "report.html").exists()
    assert yaml.safe_load((out / "config.yaml").read_text())["report"] is False


def test_speednet_is_small_and_size_agnostic():
    model = create_model("mnist-speednet")
    assert 3e6 < count_macs(model, (1, 28, 28)) < 5e6  # the preset's budget: models/speedrun.py
    for size in [(8, 8), (28, 28), (32, 32)]:
        net = create_model("speednet", input_size=size, num_classes=7)
        assert net(torch.rand(2, 1, *size)).shape == (2, 7)
    assert [f.stride for f in model.feature_layers()] == [2, 4, 8]
    for head in ("max", "avg"):
        net = create_model("mnist-speednet", head=head, cfg=[8, "M", 16])
        assert net(torch.rand(2, 1, 28, 28)).shape == (2, 10)


def test_speednet_valid_stem_shrinks_every_map():
    """stem_padding=0: the 5×5 stride-2 stem reads the 28×28 digit without padding (12×12, not
    14×14), so each later map shrinks too (6×6, 3×3) — 2.78 M multiply-adds, not 4.07 M."""
    padded, valid = create_model("mnist-speednet"), create_model("mnist-speednet", stem_padding=0)
    assert padded.feature_shape()[1:] == (128, 4, 4)
    assert valid.feature_shape()[1:] == (128, 3, 3)
    assert count_macs(valid, (1, 28, 28)) == 144 * 25 * 32 + 144 * 9 * 32 * 32 + \
        36 * 9 * 32 * 64 + 9 * 9 * 64 * 128 + 128 * 9 * 10
    assert valid.features[0].padding == (0, 0) and padded.features[0].padding == (2, 2)
    digits = create_model("mnist-speednet", stem_padding=0, input_size=(8, 8))
    assert digits(torch.rand(2, 1, 8, 8)).shape == (2, 10)  # still runs on 8×8 digits
    with pytest.raises(ValueError, match="stem_padding must be 0..2"):
        create_model("mnist-speednet", stem_padding=-1)


def test_speedrun_preset_learns_digits(tmp_path):
    """The preset's recipe end to end on digits (8×8): the net still fits, quickly. (Its
    unpadded stem is for 28×28 digits: on 8×8 it would leave a 2×2 map, so the padded one.)"""
    result = cnnlab.train(preset="mnist-speedrun", data="digits", epochs=12, batch_size=64,
                          precision="fp32", model_kwargs={"stem_padding": 2},
                          out=str(tmp_path / "speed"), progress=False)
    assert result.test_accuracy >= 0.9
    assert not (tmp_path / "speed" / "report.html").exists()
    saved = yaml.safe_load((tmp_path / "speed" / "config.yaml").read_text())
    assert saved["model"] == "mnist-speednet" and saved["data"] == "digits"
    # model options travel with the run: the saved net loads as trained
    assert saved["model_kwargs"] == {"stem_padding": 2} and saved["tta"] == "translate"
    assert cnnlab.load_model(tmp_path / "speed").features[0].padding == (2, 2)
    assert make_config({"preset": "mnist-speedrun"}).model_kwargs == {"stem_padding": 0}
