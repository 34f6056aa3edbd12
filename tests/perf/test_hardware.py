"""Which precision `auto` picks, and how the CPU kind is recorded beside every figure."""

import json

import pytest

from cnnlab.errors import ConfigError
from cnnlab.perf import hardware


@pytest.fixture
def fake_cpu(monkeypatch, tmp_path):
    """A CPU with a chosen name, flags and bf16 speed; the probe cache in a temp folder."""
    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path))
    for name in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY",
                 "MKL_ENABLE_INSTRUCTIONS"):
        monkeypatch.delenv(name, raising=False)  # the real CPU, even in an emulated test run
    hardware.bf16_speedup.cache_clear()
    state = {"name": "Intel(R) Xeon(R) Processor", "flags": {"avx512f", "avx512_bf16"},
             "native": True, "probe_calls": 0, "speedup": 1.0}
    monkeypatch.setattr(hardware, "cpu_model_name", lambda: state["name"])
    monkeypatch.setattr(hardware, "cpu_flags", lambda: set(state["flags"]))
    monkeypatch.setattr(hardware, "native_bf16", lambda: state["native"])

    def probe(bf16: bool) -> float:
        state["probe_calls"] += 1
        return 1.0 / state["speedup"] if bf16 else 1.0

    monkeypatch.setattr(hardware, "_time_conv_step", probe)
    monkeypatch.setattr(hardware.torch.cuda, "is_available", lambda: False)
    yield state
    hardware.bf16_speedup.cache_clear()


def test_cpu_kind_tells_amx_xeons_apart(fake_cpu):
    assert hardware.cpu_kind() == "Intel(R) Xeon(R) Processor (avx512-bf16)"
    fake_cpu["flags"] |= {"amx_bf16", "amx_tile"}
    assert hardware.cpu_kind() == "Intel(R) Xeon(R) Processor (avx512-bf16 + amx)"
    assert hardware.machine_info()["amx_bf16"] is True
    fake_cpu.update(name="AMD EPYC 9B45", flags={"avx512_bf16"})
    assert hardware.cpu_kind() == "zen5 (avx512-bf16)"
    fake_cpu.update(name="AMD EPYC 7B13", flags={"avx2"}, native=False)
    assert hardware.cpu_kind() == "zen3 (avx2)"


def test_auto_follows_the_probe_and_caches_it_per_amx_flag(fake_cpu, tmp_path):
    fake_cpu["speedup"] = 1.0  # a Xeon without AMX: bf16 no faster
    assert hardware.choose_precision("auto") == "fp32"
    assert fake_cpu["probe_calls"] == 2
    hardware.bf16_speedup.cache_clear()
    assert hardware.choose_precision("auto") == "fp32"  # from the disk cache: no new probe
    assert fake_cpu["probe_calls"] == 2

    # same model name, but AMX: the cached answer of the other Xeon must not be reused
    fake_cpu["flags"] |= {"amx_bf16"}
    fake_cpu["speedup"] = 2.7
    hardware.bf16_speedup.cache_clear()
    assert hardware.choose_precision("auto") == "bf16"
    assert fake_cpu["probe_calls"] == 4
    cached = json.loads((tmp_path / "bf16-probe.json").read_text())
    assert sorted(round(v, 2) for v in cached.values()) == [1.0, 2.7]
    assert any("amx=True" in k for k in cached) and any("amx=False" in k for k in cached)


def test_bf16_without_native_support_warns_and_bad_names_fail(fake_cpu):
    fake_cpu.update(native=False, flags={"avx2"})
    assert hardware.choose_precision("auto") == "fp32"
    assert fake_cpu["probe_calls"] == 0  # no probe where bf16 is not native
    with pytest.warns(UserWarning, match="10x slower"):
        assert hardware.choose_precision("bf16") == "bf16"
    assert hardware.choose_precision("fp32") == "fp32"
    with pytest.raises(ConfigError, match="unknown precision 'fp16'"):
        hardware.choose_precision("fp16")


def test_an_isa_cap_is_recorded_and_never_reuses_the_uncapped_probe(monkeypatch, tmp_path):
    """ONEDNN_MAX_CPU_ISA=AVX2 + ATEN_CPU_CAPABILITY=avx2 make an AVX-512 CPU run Zen 3's
    kernels: no native bf16 then (auto = fp32, no probe), the CPU kind says it is capped, and
    a capped probe (e.g. AVX512_CORE_BF16 without AMX) gets its own cache entry."""
    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path))
    monkeypatch.setattr(hardware.torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(hardware.torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    monkeypatch.setattr(hardware, "cpu_model_name", lambda: "Intel(R) Xeon(R) Processor")
    for name in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY",
                 "MKL_ENABLE_INSTRUCTIONS"):
        monkeypatch.delenv(name, raising=False)
    assert hardware.isa_cap() == "" and hardware.native_bf16()
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    assert not hardware.native_bf16()
    assert hardware.choose_precision("auto") == "fp32"
    info = hardware.machine_info()
    assert info["isa_cap"] == "ONEDNN_MAX_CPU_ISA=AVX2, ATEN_CPU_CAPABILITY=avx2"
    assert info["cpu_kind"] == ("Intel(R) Xeon(R) Processor capped "
                                "(ONEDNN_MAX_CPU_ISA=AVX2, ATEN_CPU_CAPABILITY=avx2)")
    assert not info["native_bf16"]
    monkeypatch.setenv("MKL_ENABLE_INSTRUCTIONS", "AVX2")  # MKL runs fp32 mm/bmm: capped too
    assert hardware.isa_cap().endswith(", MKL_ENABLE_INSTRUCTIONS=AVX2")
    monkeypatch.delenv("MKL_ENABLE_INSTRUCTIONS")

    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_BF16")
    monkeypatch.delenv("ATEN_CPU_CAPABILITY")
    assert hardware.native_bf16()
    monkeypatch.setattr(hardware, "cpu_flags", lambda: {"avx512_bf16", "amx_bf16"})
    assert not hardware.has_amx_bf16()  # capped below AMX: no tiles, whatever the flags say
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_AMX")
    assert hardware.has_amx_bf16()
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_BF16")
    monkeypatch.setattr(hardware, "_time_conv_step", lambda bf16: 1.6 if bf16 else 1.0)
    hardware.bf16_speedup.cache_clear()
    try:
        assert hardware.choose_precision("auto") == "fp32"
    finally:
        hardware.bf16_speedup.cache_clear()
    (key,) = json.loads((tmp_path / "bf16-probe.json").read_text())
    assert key.endswith("|ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16")


def test_a_capped_run_compiles_into_a_cache_of_its_own(monkeypatch, tmp_path):
    """torch's compile cache does not key on ATEN_CPU_CAPABILITY (a graph cached uncapped gave
    garbage logits under the cap): a capped process gets its own folder, an explicit one wins."""
    for name in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY",
                 "MKL_ENABLE_INSTRUCTIONS", "TORCHINDUCTOR_CACHE_DIR"):
        monkeypatch.delenv(name, raising=False)
    assert hardware.separate_compile_cache() is None
    assert "TORCHINDUCTOR_CACHE_DIR" not in hardware.os.environ
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    avx2 = hardware.separate_compile_cache()
    assert avx2 and "_isa-" in avx2 and hardware.os.environ["TORCHINDUCTOR_CACHE_DIR"] == avx2
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    both = hardware.separate_compile_cache()
    assert both and both != avx2  # another cap, another folder
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))
    assert hardware.separate_compile_cache() is None
    assert hardware.os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path)


def _tiny_net():
    import torch

    from cnnlab.models.fastconv import FastConv3x3

    torch.manual_seed(3)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8),
                               torch.nn.ReLU(), FastConv3x3(8, 8), torch.nn.Dropout(0.5),
                               torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                               torch.nn.Linear(8, 10))


def test_auto_times_the_net_itself_where_the_conv_probe_is_not_decisive(fake_cpu, monkeypatch):
    """Between 1.1x and MODEL_PROBE_BELOW the answer is the net's own step, timed both ways:
    fp32 has Winograd for wide 3×3 convs, which the 64-channel conv probe never reaches."""
    net = _tiny_net()
    seen = []

    def model_probe(model, shape, channels_last=True):
        seen.append((model, shape, channels_last))
        return fake_cpu["model"]

    monkeypatch.setattr(hardware, "model_bf16_speedup", model_probe)
    fake_cpu.update(speedup=1.5, model=0.8)  # bf16 ahead on the conv, behind on the net
    assert hardware.choose_precision("auto", model=net, input_shape=(500, 3, 8, 8)) == "fp32"
    assert seen == [(net, (500, 3, 8, 8), True)]
    fake_cpu["model"] = 1.3
    assert hardware.choose_precision("auto", net, (500, 3, 8, 8), False) == "bf16"
    assert hardware.last_auto_choice == {"conv_probe_bf16_speedup": 1.5,
                                         "net_step_bf16_speedup": 1.3}  # for env.json
    assert hardware.choose_precision("auto") == "bf16"  # no net given: the conv probe's answer
    assert hardware.last_auto_choice == {"conv_probe_bf16_speedup": 1.5}
    assert len(seen) == 2
    for speedup, expected in ((3.5, "bf16"), (1.05, "fp32")):  # decisive: the net is not timed
        fake_cpu.update(speedup=speedup, name=f"CPU {speedup}")  # a new probe-cache entry
        hardware.bf16_speedup.cache_clear()
        assert hardware.choose_precision("auto", net, (500, 3, 8, 8)) == expected
    assert len(seen) == 2
    assert hardware.choose_precision("fp32", net, (500, 3, 8, 8)) == "fp32"
    assert len(seen) == 2 and hardware.last_auto_choice == {}

    def broken(model, shape, channels_last=True):
        raise RuntimeError("Expected more than 1 value per channel when training")

    monkeypatch.setattr(hardware, "model_bf16_speedup", broken)
    fake_cpu.update(speedup=1.5, name="CPU again")
    hardware.bf16_speedup.cache_clear()
    with pytest.warns(UserWarning, match="could not time this net .*more than 1 value"):
        assert hardware.choose_precision("auto", net, (1, 3, 1, 1)) == "bf16"  # the conv probe
    assert hardware.last_auto_choice == {"conv_probe_bf16_speedup": 1.5}


def test_the_net_probe_leaves_model_and_rng_alone_and_is_cached(monkeypatch, tmp_path):
    import torch

    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path))
    monkeypatch.setattr(hardware, "cpu_model_name", lambda: "Test CPU")
    calls = []
    real = hardware._time_model_step

    def timed(model, shape, channels_last, bf16):
        calls.append((shape, bf16))
        assert model.training
        return real(model, shape, channels_last, bf16)

    monkeypatch.setattr(hardware, "_time_model_step", timed)
    net = _tiny_net().eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    torch.manual_seed(11)
    expected_draw = torch.rand(3)
    torch.manual_seed(11)
    ratio = hardware.model_bf16_speedup(net, (500, 3, 12, 12))
    assert torch.equal(torch.rand(3), expected_draw)  # the run's random stream is untouched
    assert ratio > 0 and calls == [((64, 3, 12, 12), False), ((64, 3, 12, 12), True)]
    assert not net.training and all(p.grad is None for p in net.parameters())
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())  # BN stats too
    assert hardware.model_bf16_speedup(net, (500, 3, 12, 12)) == ratio  # cached: not re-timed
    assert len(calls) == 2
    hardware.model_bf16_speedup(net, (500, 3, 64, 64))  # another input size: its own entry,
    assert calls[2:] == [((16, 3, 64, 64), False), ((16, 3, 64, 64), True)]  # fewer images
    keys = json.loads((tmp_path / "bf16-probe.json").read_text())
    assert sum("model-step|Sequential|" in k for k in keys) == 2


def test_training_with_auto_asks_for_the_net_probe(monkeypatch, tmp_path):
    import cnnlab
    from cnnlab.train import loop

    asked = []

    def choose(requested, model=None, input_shape=None, channels_last=True):
        asked.append((requested, type(model).__name__, input_shape, channels_last))
        hardware.last_auto_choice.update(conv_probe_bf16_speedup=1.5, net_step_bf16_speedup=0.8)
        return "fp32"

    monkeypatch.setattr(loop, "choose_precision", choose)
    monkeypatch.setattr(loop, "log", lambda line: asked.append(line))
    result = cnnlab.train(epochs=1, batch_size=32, progress=False, out=str(tmp_path / "run"))
    assert result.precision == "fp32"
    assert asked[0] == ("auto", "SimpleCNN", (32, 1, 8, 8), True)
    assert "fp32 (auto: this net's step 0.80x as fast in bf16)" in asked[1]
    env = json.loads((tmp_path / "run" / "env.json").read_text())
    assert env["precision_requested"] == "auto" and env["precision"] == "fp32"
    assert env["precision_evidence"] == {"conv_probe_bf16_speedup": 1.5,
                                         "net_step_bf16_speedup": 0.8}
    hardware.last_auto_choice.clear()


def test_int8_vnni_from_the_flags_and_the_cap(monkeypatch):
    """Without VNNI (Zen 3) int8 products are summed in saturating int16: the quantizer must
    then use 7-bit activations (perf/infer.py); an AVX2 cap hides VNNI as it hides bf16."""
    for name in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
        monkeypatch.delenv(name, raising=False)
    flags = {"avx2", "avx512_vnni"}
    monkeypatch.setattr(hardware, "cpu_flags", lambda: set(flags))
    assert hardware.has_int8_vnni() and hardware.machine_info()["int8_vnni"]
    flags.discard("avx512_vnni")
    assert not hardware.has_int8_vnni()  # a Zen 3
    flags.add("avx_vnni")  # the VEX-encoded form (Alder Lake, Zen 5) counts too
    assert hardware.has_int8_vnni()
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")  # the Zen 3 emulation
    assert not hardware.has_int8_vnni()
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "avx2_vnni")
    assert hardware.has_int8_vnni()
