import pytest

from cnnlab.errors import ConfigError
from cnnlab.train import make_config, read_config_file


def test_layers_override_left_to_right():
    cfg = make_config({"lr": 0.5, "epochs": 3}, {"lr": 0.1})
    assert cfg.lr == 0.1 and cfg.epochs == 3 and cfg.model == "simple-cnn"


def test_unknown_key_suggests_the_right_one():
    with pytest.raises(ConfigError, match="did you mean 'epochs'"):
        make_config({"epoch": 3})


@pytest.mark.parametrize("bad", [{"epochs": -1}, {"epochs": 0}, {"lr": 0}, {"lr": -0.1},
                                 {"batch_size": 0}, {"optimizer": "rmsprop"},
                                 {"val_fraction": 1.5}, {"subset": 0}, {"precision": "fp8"},
                                 {"norm": "pca"}])
def test_impossible_values_are_refused(bad):
    with pytest.raises(ConfigError):
        make_config(bad)


def test_augment_string_is_split_into_ops():
    assert make_config({"augment": "crop:4 flip"}).augment == ["crop:4", "flip"]


def test_config_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("lr: [1, 2\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        read_config_file(bad)
    with pytest.raises(ConfigError, match="not found"):
        read_config_file(tmp_path / "missing.yaml")
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        read_config_file(listy)


def test_yaml_roundtrip():
    cfg = make_config({"augment": ["crop:2"], "model_kwargs": {"width": 8}})
    import yaml

    assert make_config(yaml.safe_load(cfg.to_yaml())) == cfg
