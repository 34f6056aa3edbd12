"""The run report: written by training, self-contained, every image a PNG that a browser loads.

The browser check uses Debian's ``chromium`` headless (``apt-get install -y chromium``); it is
skipped, with the reason, where chromium is not installed.
"""

from __future__ import annotations

import base64
import importlib
import io
import json
import re
import shutil
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

import cnnlab
from cnnlab.cli import main
from cnnlab.evaluate.report import REPORT, SECTIONS, write_report


@pytest.fixture(scope="module")
def run_dir(tiny_run: Path) -> Path:
    return tiny_run


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def _parse(page: str) -> list[tuple[str, dict]]:
    p = _Collect()
    p.feed(page)
    return p.tags


def test_training_writes_the_report_with_every_section(run_dir):
    page = (run_dir / REPORT).read_text()
    tags = _parse(page)
    ids = [a.get("id") for t, a in tags if t == "section"]
    assert ids == list(SECTIONS)
    body = next(a for t, a in tags if t == "body")
    assert body["data-section-errors"] == "0"
    assert 'class="error section-error"' not in page
    for needle in ("Confusion matrix", "Per-class scores", "Most confidently wrong",
                   "First-layer filters", "multiply-adds", "learning rate", "batch_size",
                   "torch"):
        assert needle in page, needle


def test_every_image_is_an_inlined_png_and_nothing_is_fetched(run_dir):
    page = (run_dir / REPORT).read_text()
    tags = _parse(page)
    imgs = [a for t, a in tags if t == "img"]
    assert len(imgs) >= 4  # curves, confusion, mistakes, filters
    for a in imgs:
        src = a["src"]
        assert src.startswith("data:image/png;base64,"), src[:40]
        blob = base64.b64decode(src.split(",", 1)[1], validate=True)
        with Image.open(io.BytesIO(blob)) as img:
            assert img.format == "PNG" and img.width > 50 and img.height > 20
        assert a.get("alt")
    for tag, attrs in tags:  # no external resource of any kind
        for key in ("src", "href"):
            value = attrs.get(key) or ""
            assert not re.match(r"^(https?:)?//", value), (tag, value)
    assert "@import" not in page and "url(" not in page


def test_report_numbers_agree_with_evaluate(run_dir):
    page = (run_dir / REPORT).read_text()
    ev = cnnlab.evaluate(run_dir)
    assert f"<td>test accuracy (top-1)</td><td class=num>{ev['accuracy']:.4f}</td>" in page
    for row in ev["per_class"]:
        assert f"<td>{row['class']}</td><td class=num>{row['precision']:.4f}</td>" in page


def test_params_and_macs_with_and_without_perf_flops(run_dir, monkeypatch):
    from cnnlab.evaluate.report import complexity

    model = cnnlab.load_model(run_dir)
    size = (model.in_chans, *model.input_size)
    monkeypatch.setitem(sys.modules, "cnnlab.perf.flops", None)  # as if not written yet
    fallback = complexity(model, size)
    assert "FLOPs / 2" in fallback["counted_by"]
    assert fallback["params"] == sum(p.numel() for p in model.parameters())
    monkeypatch.undo()
    try:
        importlib.import_module("cnnlab.perf.flops")
    except ImportError:
        pytest.skip("cnnlab.perf.flops is not there to compare with")
    counted = complexity(model, size)
    assert (counted["params"], counted["macs"]) == (fallback["params"], fallback["macs"])
    # simple-cnn at 8×8: convs 1→32 (64 px), 32→32 (64), 32→64 (16), 64→128 (16), FC 128→10
    expected = 64 * (9 * 32) + 64 * (9 * 32 * 32) + 16 * (9 * 32 * 64) + 16 * (9 * 64 * 128)
    assert fallback["macs"] == expected + 128 * 10


def test_cli_rewrites_and_reports(run_dir, capsys):
    t0 = time.perf_counter()
    assert main(["report", str(run_dir), "--json"]) == 0
    seconds = time.perf_counter() - t0
    out = json.loads(capsys.readouterr().out)
    assert out["path"] == str(run_dir / REPORT) and out["section_errors"] == []
    assert main(["report", str(run_dir), "--open-path-only"]) == 0
    assert capsys.readouterr().out == f"{run_dir / REPORT}\n"
    with capsys.disabled():
        print(f"\nreport written in {seconds:.2f} s ({out['bytes'] / 1024:.0f} KiB)")


def test_a_directory_without_weights_is_one_line(tmp_path, capsys):
    (tmp_path / "config.yaml").write_text("model: simple-cnn\n")
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "has no trained weights" in err and "Traceback" not in err


def test_missing_data_costs_only_the_sections_that_need_it(run_dir, tmp_path, capsys):
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    cfg = (copy / "config.yaml").read_text().replace("data: digits", "data: ./no-such-folder")
    (copy / "config.yaml").write_text(cfg)
    path = write_report(copy)
    page = path.read_text()
    body = next(a for t, a in _parse(page) if t == "body")
    assert body["data-section-errors"] == "3"  # confusion, per-class, mistakes
    assert "data folder not found" in page
    assert "First-layer filters" in page and "learning rate" in page
    assert "could not be rendered" in capsys.readouterr().err


CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run",
                  "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000",
                  "--dump-dom"]


def _chromium_dump(page: Path, profile: Path) -> tuple[str, str]:
    exe = shutil.which("chromium")
    proc = subprocess.run([exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", page.as_uri()],
                          capture_output=True, text=True, timeout=120)
    return proc.stdout, proc.stderr


@pytest.mark.skipif(shutil.which("chromium") is None,
                    reason="Debian's chromium is not installed (apt-get install -y chromium)")
def test_headless_chromium_loads_every_image_without_console_errors(run_dir, tmp_path):
    page = run_dir / REPORT
    n_img = len([t for t, _ in _parse(page.read_text()) if t == "img"])
    dom, log = _chromium_dump(page, tmp_path / "profile")
    body = re.search(r"<body[^>]*>", dom)
    assert body, f"chromium printed no DOM: {log[-2000:]}"
    attrs = dict(re.findall(r'(data-[\w-]+)="([^"]*)"', body.group(0)))
    # set by the report's script on the load event: decoded images / all images
    assert attrs.get("data-images-ok") == f"{n_img}/{n_img}", attrs
    assert attrs.get("data-js-errors") == "0", attrs
    console = [ln for ln in log.splitlines() if ":CONSOLE" in ln]
    assert not console, console

    # the check itself can fail: a broken image and a script error are caught
    bad = tmp_path / "bad.html"
    bad.write_text(page.read_text().replace("base64,iVBOR", "base64,XXXX", 1)
                   .replace("</body>", "<script>undefinedName();</script></body>"))
    dom, log = _chromium_dump(bad, tmp_path / "profile2")
    attrs = dict(re.findall(r'(data-[\w-]+)="([^"]*)"', re.search(r"<body[^>]*>", dom).group(0)))
    assert attrs["data-images-ok"] == f"{n_img - 1}/{n_img}"
    assert attrs["data-js-errors"] != "0"
    assert any(":CONSOLE" in ln for ln in log.splitlines())
