"""``cnnlab data info`` / ``list``: table, JSON, sample grid, one-line errors."""

from __future__ import annotations

import json

from PIL import Image

from cnnlab.cli import main


def test_info_table_shows_classes_counts_and_stats(tmp_path, fake, capsys):
    fake.mnist(tmp_path / "mnist")
    assert main(["data", "info", "mnist", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "30 train / 10 test images, 1×28×28, 10 classes" in out
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("class"))
    assert lines[header].split() == ["class", "train", "test"]
    assert lines[header + 2].split() == ["0", "3", "1"]
    assert any(line.split()[:1] == ["grey"] for line in lines)
    assert "total" in out


def test_info_json_is_one_object_with_stats(tmp_path, fake, capsys):
    root = fake.tree(tmp_path / "pets", {"cat": 5, "dog": 5})
    assert main(["data", "info", str(root), "--json", "--data-dir", str(tmp_path)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["classes"] == ["cat", "dog"] and out["image_shape"] == [3, 8, 8]
    assert out["splits"]["train"]["per_class"] == [4, 4]
    assert out["splits"]["test"]["count"] == 2
    assert [c["channel"] for c in out["channels"]] == ["R", "G", "B"]
    mean = out["channels"][0]["mean"]
    assert 0.3 < mean < 0.7  # uniform random pixels
    assert out["info"]["layout"] == "folder/classes"


def test_info_grid_png(tmp_path, fake, capsys):
    root = fake.tree(tmp_path / "pets", {"cat": 5, "dog": 5, "eel": 5})
    grid = tmp_path / "out" / "grid.png"
    assert main(["data", "info", str(root), "--grid", str(grid), "--per-class", "3",
                 "--data-dir", str(tmp_path)]) == 0
    with Image.open(grid) as img:
        assert img.format == "PNG" and img.height > 150 and img.width > 150
    assert f"sample grid saved to {grid}" in capsys.readouterr().out


def test_info_error_is_one_line_exit_2(tmp_path, capsys):
    assert main(["data", "info", "mnist", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: mnist files not found")


def test_info_image_size_and_channels_flags(tmp_path, fake, capsys):
    fake.mnist(tmp_path / "mnist")
    assert main(["data", "info", "mnist", "--data-dir", str(tmp_path), "--image-size", "16",
                 "--channels", "3", "--json", "--no-cache"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["image_shape"] == [3, 16, 16] and out["info"]["cache"] == "off"


def test_list(tmp_path, fake, capsys):
    fake.mnist(tmp_path / "mnist")
    assert main(["data", "list", "--data-dir", str(tmp_path), "--json"]) == 0
    rows = {r["name"]: r["status"] for r in json.loads(capsys.readouterr().out)["sources"]}
    assert rows["mnist"] == "found" and rows["digits"] == "embedded"
    assert rows["cifar10"].startswith("missing")
