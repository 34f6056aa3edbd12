"""``cnnlab explain``: every method end to end on a tiny digits run, and the bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from cnnlab.cli import main

METHOD_KEYS = {
    "filters": ["conv", "shape"],
    "feature-maps": ["layer", "top_channels"],
    "deconv": ["layer", "channel", "location", "top9"],
    "actmax": ["objective_start", "objective_end", "history"],
    "saliency": ["target", "probability", "map_peak"],
    "guided-backprop": ["target", "map_peak"],
    "grad-cam": ["layer", "cam_peak"],
    "occlusion": ["base_probability", "min_location", "probability_map"],
    "separability": ["stages", "chance"],
}


@pytest.fixture(scope="module")
def run_dir(tiny_run: Path) -> Path:
    return tiny_run


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("method", list(METHOD_KEYS))
def test_method_writes_pngs_and_numbers(run_dir, tmp_path, capsys, method):
    extra = {"actmax": ["--steps", "8"], "separability": ["--limit", "200"]}.get(method, [])
    code, out, err = _run(capsys, "explain", str(run_dir), "--method", method, "--index", "3",
                          "--out", str(tmp_path), "--json", *extra)
    assert code == 0, err
    result = json.loads(out)
    assert result["method"] == method
    for key in METHOD_KEYS[method]:
        assert key in result, key
    assert result["files"]
    for f in result["files"]:
        assert Path(f).parent == tmp_path
        with Image.open(f) as img:
            assert img.format == "PNG" and img.width > 50
    if method == "separability":
        names = [s["name"] for s in result["stages"]]
        assert names == ["input", "block1", "block2", "block3"]
        assert all(0 <= s["probe_accuracy"] <= 1 for s in result["stages"])
    if method == "occlusion":
        assert result["target"] == result["true_class"]  # the true class with --index


def test_layer_and_channel_options(run_dir, tmp_path, capsys):
    for argv in (["--method", "feature-maps", "--layer", "block2", "--channel", "5"],
                 ["--method", "filters", "--layer", "block3"],
                 ["--method", "grad-cam", "--layer", "block1", "--target", "7"],
                 ["--method", "deconv", "--layer", "block2", "--channel", "0"],
                 ["--method", "actmax", "--layer", "block3", "--channel", "2", "--steps", "4"]):
        code, out, err = _run(capsys, "explain", str(run_dir), *argv, "--out", str(tmp_path))
        assert code == 0, (argv, err)
        assert "wrote " in out
    assert (tmp_path / "feature-maps-block2-c5.png").is_file()
    assert (tmp_path / "filters-block3.png").is_file()


def _one_line_error(code: int, err: str) -> str:
    assert code == 2
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ")
    return lines[0]


def test_unknown_layer_lists_the_valid_names(run_dir, capsys):
    code, _, err = _run(capsys, "explain", str(run_dir), "--method", "grad-cam",
                        "--layer", "block9")
    line = _one_line_error(code, err)
    assert "unknown layer 'block9'" in line and "block1, block2, block3" in line


def test_channel_out_of_range(run_dir, capsys):
    code, _, err = _run(capsys, "explain", str(run_dir), "--method", "feature-maps",
                        "--layer", "block1", "--channel", "32")
    line = _one_line_error(code, err)
    assert "--channel 32 is out of range" in line and "32 channels (0–31)" in line


def test_index_out_of_range(run_dir, capsys):
    code, _, err = _run(capsys, "explain", str(run_dir), "--method", "saliency",
                        "--index", "100000")
    assert "out of range" in _one_line_error(code, err)


def test_run_directory_without_weights(tmp_path, capsys):
    (tmp_path / "config.yaml").write_text("model: simple-cnn\n")
    code, _, err = _run(capsys, "explain", str(tmp_path), "--method", "filters")
    assert "has no trained weights" in _one_line_error(code, err)


def test_wrong_size_and_mode_image_is_converted_with_a_note(run_dir, tmp_path, capsys):
    path = tmp_path / "big.png"
    Image.new("RGBA", (40, 30), (200, 10, 10, 255)).save(path)
    code, out, err = _run(capsys, "explain", str(run_dir), "--method", "saliency",
                          "--image", str(path), "--out", str(tmp_path), "--json")
    assert code == 0, err
    assert "note: big.png: converted RGBA to grey (L) and resized 40×30 to 8×8" in err
    assert json.loads(out)["image"] == str(path)


def test_an_image_that_fits_gets_no_note(run_dir, tmp_path, capsys):
    path = tmp_path / "fits.png"
    Image.new("L", (8, 8), 128).save(path)
    code, _, err = _run(capsys, "explain", str(run_dir), "--method", "grad-cam",
                        "--image", str(path), "--out", str(tmp_path))
    assert code == 0 and "note:" not in err


def test_unreadable_image_is_one_line(run_dir, tmp_path, capsys):
    path = tmp_path / "broken.png"
    path.write_bytes(b"not an image")
    code, _, err = _run(capsys, "explain", str(run_dir), "--method", "saliency",
                        "--image", str(path))
    assert "broken.png" in _one_line_error(code, err)
