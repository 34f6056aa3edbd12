"""``cnnlab zoo``: the table, ``--json``, filters, overrides and errors."""

from __future__ import annotations

import json

import pytest

from cnnlab.cli import main
from cnnlab.cli.zoo import natural_key, select_models
from cnnlab.models import list_models


def run_json(capsys, *args: str) -> list[dict]:
    assert main(["zoo", "--json", *args]) == 0
    return json.loads(capsys.readouterr().out)


def test_json_filtered(capsys):
    rows = run_json(capsys, "resnet50", "googlenet")
    assert [r["name"] for r in rows] == ["resnet50", "googlenet"]
    r = rows[0]
    assert r["params"] == 25_557_032 and abs(r["macs"] - 3.8e9) < 0.03 * 3.8e9
    assert r["input_size"] == [3, 224, 224] and r["num_classes"] == 1000
    assert (r["family"], r["year"], r["depth"]) == ("resnet", 2015, 50) and r["paper"]
    assert rows[1]["params"] == 6_998_552  # without the training-only aux heads
    assert rows[1]["depth"] == 22


@pytest.mark.slow
def test_json_whole_zoo(capsys):
    rows = run_json(capsys)
    assert isinstance(rows, list) and {r["name"] for r in rows} == set(list_models())
    by_name = {r["name"]: r for r in rows}
    assert by_name["resnet50"]["params"] == 25_557_032
    assert by_name["resnet50"]["macs"] == 3_857_973_248
    assert all(r["params"] > 0 and r["macs"] > 0 and r["depth"] > 0 for r in rows)


def test_substring_filter_and_overrides(capsys):
    rows = run_json(capsys, "plain", "resnet18", "--input-size", "3,32,32", "--num-classes", "10")
    names = [r["name"] for r in rows]
    assert names == ["plain18", "plain20", "plain34", "plain56", "resnet18"]
    r18 = next(r for r in rows if r["name"] == "resnet18")
    assert r18["input_size"] == [3, 32, 32] and r18["num_classes"] == 10
    assert r18["params"] == 11_689_512 - 512 * 990 - 990
    assert r18["macs"] < 0.05e9


def test_natural_order():
    assert sorted(["resnet101", "resnet18", "resnet1001", "resnet20"], key=natural_key) == [
        "resnet18", "resnet20", "resnet101", "resnet1001"]
    assert select_models(["vgg1"])[:4] == ["vgg-a", "vgg-a-bn", "vgg-b", "vgg-b-bn"]  # aliases


def test_height_only_input_size_keeps_channels(capsys):
    (row,) = run_json(capsys, "lenet5", "--input-size", "28")
    assert row["input_size"] == [1, 28, 28]


def test_pattern_name(capsys):
    (row,) = run_json(capsys, "wrn-22-8")
    assert row["name"] == "wrn-22-8" and 17e6 < row["params"] < 17.3e6


def test_table(capsys):
    assert main(["zoo", "vgg16", "resnet20"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["name", "family", "paper"]
    assert out[2].startswith("vgg-d") and "138.36 M" in out[2] and "15.47 G" in out[2]
    assert out[3].startswith("resnet20") and "269.72 K" in out[3]


def test_unknown_filter_is_one_line(capsys):
    assert main(["zoo", "resnt50"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith("error: unknown model or filter 'resnt50'") and "resnet50" in err


def test_input_too_small(capsys):
    assert main(["zoo", "alexnet", "--input-size", "16"]) == 2  # asked for by name: an error
    assert "cannot build alexnet" in capsys.readouterr().err
    assert main(["zoo", "alex", "--input-size", "16", "--json"]) == 0  # by substring: left out
    captured = capsys.readouterr()
    assert [r["name"] for r in json.loads(captured.out)] == ["alexnet-cifar"]
    assert "left out 1 models" in captured.err and "alexnet" in captured.err
