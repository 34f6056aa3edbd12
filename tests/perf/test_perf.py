"""cnnlab profile / export / bench-infer: per-layer times add up, MACs match FlopCounterMode,
exported models agree with eager PyTorch, one clear error line on bad input."""

import json
from collections import Counter

import pytest
import torch
from torch import nn

from cnnlab.cli import main
from cnnlab.models.registry import create_model, get_spec
from cnnlab.perf.flops import count_macs
from cnnlab.perf.profile import OTHER, leaf_modules, profile_model


def _conv_macs(model: nn.Module, x: torch.Tensor) -> int:
    """Conv multiply-adds by hand: output elements × (C_in / groups) × kernel area."""
    total = []

    def hook(m, args, out):
        total.append(out.numel() * (m.in_channels // m.groups) * m.kernel_size[0]
                     * m.kernel_size[1])

    hs = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        model.eval()(x)
    for h in hs:
        h.remove()
    return sum(total)


@pytest.fixture(scope="module")
def prof():
    return profile_model("simple-cnn", batch_size=4, repeat=2)


def test_shares_sum_to_one_and_macs_match(prof):
    assert prof["input_size"] == list(get_spec("simple-cnn").input_size)
    total_share = sum(r["share"] for r in prof["layers"]) + prof["other_ms"] / prof["total_ms"]
    assert total_share == pytest.approx(1.0, abs=1e-6)
    assert sum(t["share"] for t in prof["by_type"]) == pytest.approx(1.0, abs=1e-6)
    model = create_model("simple-cnn")
    size = get_spec("simple-cnn").input_size
    assert prof["macs"] == 4 * count_macs(model, size)
    conv = sum(r["macs"] for r in prof["layers"] if r["type"] == "Conv2d")
    assert conv == _conv_macs(model, torch.rand(4, *size)) > 0
    assert all(r["ms"] >= 0 and r["gflops"] >= 0 for r in prof["layers"])
    assert any(r["gflops"] > 0 for r in prof["layers"] if r["type"] == "Conv2d")


def test_grouping_by_type(prof):
    model = create_model("simple-cnn")
    leaves = Counter(type(m).__name__ for _, m in leaf_modules(model))
    by = {t["type"]: t for t in prof["by_type"]}
    assert OTHER in by
    for typ, n in leaves.items():
        assert by[typ]["count"] == n, typ
        rows = [r for r in prof["layers"] if r["type"] == typ]
        assert by[typ]["ms"] == pytest.approx(sum(r["ms"] for r in rows))
        assert by[typ]["macs"] == sum(r["macs"] for r in rows)
    assert by["Conv2d"]["count"] == 4 and by["Linear"]["macs"] > 0


def test_profile_train_has_backward():
    res = profile_model("lenet5", batch_size=4, repeat=2, train=True, channels_last=True)
    convs = [r for r in res["layers"] if r["type"] == "Conv2d"]
    assert len(convs) == 2
    assert all(r["backward_ms"] > 0 and r["forward_ms"] > 0 for r in convs)
    assert sum(r["share"] for r in res["layers"]) <= 1.0 + 1e-9


def test_profile_cli_json(capsys):
    code = main(["profile", "lenet5", "--batch-size", "4", "--repeat", "2", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert {"layers", "by_type", "total_ms", "machine"} <= set(out)
    assert {"name", "type", "ms", "share", "macs", "gflops"} <= set(out["layers"][0])


def test_profile_cli_table(capsys):
    assert main(["profile", "simple-cnn", "--repeat", "1", "--top", "3"]) == 0
    out = capsys.readouterr().out
    assert "Conv2d" in out and OTHER in out and "more layers" in out


def test_compare_cli_json(capsys):
    assert main(["profile", "simple-cnn", "--compare", "--repeat", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["variants"]) in (2, 4)
    assert (out["skipped"] is None) == (len(out["variants"]) == 4)


def test_too_small_input_is_one_line(capsys):
    for model in ("simple-cnn", "alexnet-cifar"):  # fails in forward / when built
        code = main(["profile", model, "--input-size", "1,1,1"])
        err = capsys.readouterr().err.strip()
        assert code == 2
        assert len(err.splitlines()) == 1
        assert f"too small for {model}" in err and "try at least" in err


def test_unknown_model_suggests(capsys):
    assert main(["profile", "lenet55"]) == 2
    assert "did you mean" in capsys.readouterr().err


@pytest.fixture(scope="module")
def run_dir(tiny_run):
    return tiny_run


def _no_temp_files(folder):
    return not [p for p in folder.iterdir() if p.name.startswith(".")]


def test_export_torch(run_dir, capsys):
    out = run_dir / "m.pt2"
    assert main(["export", str(run_dir), "--format", "torch-export", "--out", str(out),
                 "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert out.is_file() and _no_temp_files(run_dir)
    assert res["max_abs_diff"] < 1e-4 and res["agreement"] == 1.0
    assert res["parity_data"].startswith("digits") and res["parity_n"] > 100


def test_export_onnx(run_dir, capsys):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    out = run_dir / "m.onnx"
    assert main(["export", str(run_dir), "--format", "onnx", "--out", str(out), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert out.is_file() and _no_temp_files(run_dir)
    assert res["max_abs_diff"] < 1e-4 and res["agreement"] == 1.0


def test_export_not_a_run(tmp_path, capsys):
    assert main(["export", str(tmp_path)]) == 2
    assert "not a run directory" in capsys.readouterr().err


def test_bench_infer_smoke(run_dir, capsys):
    assert main(["bench-infer", str(run_dir), "--n", "64", "--batch-sizes", "1,16",
                 "--compile-timeout", "0", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    names = [r["runtime"] for r in res["rows"]]
    expected = ["eager fp32", "channels-last", "bf16 autocast", "torch.compile",
                "compiled + frozen", "int8 static", "int8 dynamic"]
    assert names[:7] == expected
    for r in res["rows"]:
        if r["runtime"] in ("torch.compile", "compiled + frozen", "int8 static"):
            assert r["note"].startswith("skipped") and r["accuracy"] is None
        elif r["accuracy"] is not None:
            assert set(r["images_per_s"]) == {"1", "16"} and 0 <= r["accuracy"] <= 1
    eager = res["rows"][0]
    assert eager["accuracy"] is not None and eager["images_per_s"]["16"] > 0


@pytest.mark.slow
def test_frozen_compile_and_int8_keep_the_predictions(run_dir):
    """The fast runtimes must answer like eager: frozen fp32 to float tolerance, int8 nearly."""
    pytest.importorskip("torchao")
    from cnnlab.api import load_model
    from cnnlab.perf.infer import bench_infer, calibration_images

    calib, kind = calibration_images(run_dir, load_model(run_dir), n=64)
    assert kind == "training images" and calib.shape[0] == 64
    res = bench_infer(run_dir, batch_sizes=[32], n=256, compile_timeout=300, budget_s=0.2,
                      onnx=False)
    rows = {r["runtime"]: r for r in res["rows"]}
    assert rows["eager fp32"]["speedup"] == 1.0 and rows["eager fp32"]["accuracy_delta"] == 0
    frozen, int8 = rows["compiled + frozen"], rows["int8 static"]
    assert frozen["accuracy"] is not None, frozen["note"]
    assert abs(frozen["accuracy_delta"]) <= 0.4  # at most one of 256 images flips
    assert int8["accuracy"] is not None, int8["note"]
    assert "calibrated on 256 training images" in int8["note"]
    assert abs(int8["accuracy_delta"]) <= 3.0


def test_bench_infer_shows_the_plain_convs_beside_fastconv(tmp_path):
    """A net with FastConv3x3 layers (Winograd in fp32 inference) also gets a row with plain
    nn.Conv2d layers, so the gain of cnnlab's conv is visible; the answers are the same."""
    import cnnlab
    from cnnlab.perf.infer import bench_infer

    out = tmp_path / "run"
    cnnlab.train(model="cifar-speednet", data="digits", channels=3, epochs=1, precision="fp32",
                 progress=False, out=str(out))
    res = bench_infer(out, batch_sizes=[1, 16], n=64, compile_timeout=0, budget_s=0.05,
                      onnx=False, int8=False)
    rows = {r["runtime"]: r for r in res["rows"]}
    assert [r["runtime"] for r in res["rows"]][:2] == ["eager fp32", "eager fp32, plain convs"]
    plain = rows["eager fp32, plain convs"]
    assert plain["accuracy"] == rows["eager fp32"]["accuracy"] and "Winograd" in plain["note"]


def test_int8_static_uses_7_bit_activations_without_vnni(monkeypatch):
    """On a CPU without VNNI (Zen 3) 8-bit activations overflow oneDNN's int16 pair sums
    (vgg-small: 50.6 % instead of 90.3 %, AVX2-capped Xeon); the quantizer is asked for
    reduce_range there, and the note says so."""
    pytest.importorskip("torchao")
    from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as xiq

    from cnnlab.perf import infer

    asked = []
    real = xiq.get_default_x86_inductor_quantization_config

    def spy(*args, **kwargs):
        asked.append(kwargs.get("reduce_range"))
        return real(*args, **kwargs)

    monkeypatch.setattr(xiq, "get_default_x86_inductor_quantization_config", spy)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                                torch.nn.Linear(4 * 6 * 6, 3)).eval()
    x = torch.rand(16, 1, 8, 8)
    for vnni in (False, True):
        monkeypatch.setattr(infer, "has_int8_vnni", lambda v=vnni: v)
        fn, note = infer.int8_static(model, x, x, timeout=300)
        assert fn is not None, note
        assert ("7-bit activations (no VNNI)" in note) is not vnni
        with torch.no_grad():
            assert (fn(x) - model(x)).abs().max() < 0.1
    assert asked == [True, False]


def test_profile_run_dir(run_dir, capsys):
    assert main(["profile", str(run_dir), "--repeat", "1", "--batch-size", "2", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["model"] == "simple-cnn" and res["batch_size"] == 2
    assert main(["profile", str(run_dir), "--input-size", "1,16,16"]) == 2
    assert "does not fit its weights" in capsys.readouterr().err


def test_bench_infer_table(run_dir, capsys):
    assert main(["bench-infer", str(run_dir), "--n", "16", "--batch-sizes", "4",
                 "--compile-timeout", "0"]) == 0
    out = capsys.readouterr().out
    assert "eager fp32" in out and "Linear layers only" in out


def test_onnx_unsupported_op_is_one_clear_error(tmp_path):
    pytest.importorskip("onnxscript")
    from cnnlab.errors import ModelError
    from cnnlab.perf.export import export_onnx

    class Zeta(nn.Module):
        def forward(self, x):
            return torch.special.zeta(x, x + 2).flatten(1)

    with pytest.raises(ModelError, match="unsupported op aten.*zeta"):
        export_onnx(Zeta(), torch.rand(2, 1, 4, 4), tmp_path / "z.onnx", "zeta-net")
    assert list(tmp_path.iterdir()) == []
