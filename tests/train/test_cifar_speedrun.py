"""The CIFAR-10 speed-run machinery: cifar-speednet's whitening layer, look-ahead EMA, the
triangular schedule, the BN-shift lr scale, alternating flip, progressive resizing,
test-time augmentation and --eval-every."""

import csv

import pytest
import torch
from torch import nn

import cnnlab
from cnnlab.data.augment import build_augment
from cnnlab.data.dataset import Split
from cnnlab.data.loader import Loader
from cnnlab.errors import ConfigError
from cnnlab.evaluate.metrics import TTA_KINDS, least_confident, predict_logits, tta_logits
from cnnlab.models import create_model
from cnnlab.perf.flops import count_macs
from cnnlab.train import make_config
from cnnlab.train.lookahead import Lookahead
from cnnlab.train.optim import (
    build_optimizer,
    build_scheduler,
    lr_factor,
    param_groups,
    whiten_bias_freeze_step,
)


def test_cifar_speednet_shape_size_and_dirac_init():
    net = create_model("cifar-speednet")
    assert net(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    assert net(torch.rand(2, 3, 24, 24)).shape == (2, 10)  # progressive resizing
    assert net(torch.rand(2, 3, 8, 8)).shape == (2, 10)  # tiny inputs keep a pixel
    # airbench94's net: 118 M multiply-adds at 32×32 (0.36 PFLOP over its 9.9-epoch run)
    assert 115e6 < count_macs(net.eval(), (3, 32, 32)) < 121e6
    conv = net.features[3][0]  # group2's first conv, 64 → 256: the first 64 filters are identities
    assert torch.equal(conv.weight[:64, :, 1, 1], torch.eye(64))
    assert conv.weight[:64].abs().sum() == 64
    assert not net.whiten.weight.requires_grad
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(not m.weight.requires_grad and m.momentum == 0.4 for m in bns)


def test_cifar_speednet_activation_option():
    relu = create_model("cifar-speednet", act="relu")
    acts = [m for m in relu.modules() if isinstance(m, (nn.ReLU, nn.GELU))]
    assert len(acts) == 7 and all(isinstance(m, nn.ReLU) for m in acts)  # whiten + 2 per group
    assert sum(isinstance(m, nn.GELU) for m in create_model("cifar-speednet").modules()) == 7
    assert relu(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    with pytest.raises(ValueError, match="act must be one of gelu, relu"):
        create_model("cifar-speednet", act="swish")
    for option in ("fused", "fast_conv"):  # on/off switches take booleans, not any truthy text
        with pytest.raises(ValueError, match=f"{option} must be true or false, got 'maybe'"):
            create_model("cifar-speednet", **{option: "maybe"})


def test_a_refused_option_value_is_one_line_on_the_command_line(capsys):
    from cnnlab.cli import main

    code = main(["train", "cifar-speednet", "--data", "digits", "--channels", "3",
                 "--epochs", "1", "--model-arg", "act=swish"])
    err = capsys.readouterr().err
    assert code != 0 and "Traceback" not in err
    assert err.strip() == ("error: model 'cifar-speednet' with options {'act': 'swish'}: act "
                           "must be one of gelu, relu, got 'swish'")


def test_whitening_layer_decorrelates_patches():
    torch.manual_seed(0)
    net = create_model("cifar-speednet")
    # correlated pixels: smooth images, so the 2×2 patch covariance is far from the identity
    images = nn.functional.avg_pool2d(torch.rand(64, 3, 35, 35), 4, 1)
    net.norm.set_stats(mean=images.mean((0, 2, 3)), std=images.std((0, 2, 3)))
    net.init_from_data(images)
    out = net.whiten(net.norm(images)) - net.whiten.bias.view(1, -1, 1, 1)
    flat = out[:, :12].permute(0, 2, 3, 1).reshape(-1, 12).double()
    cov = flat.T @ flat / len(flat)
    # unit variance (up to eps / λ) and uncorrelated; the other 12 filters are the negatives
    assert torch.allclose(cov, torch.eye(12, dtype=torch.float64), atol=0.05)
    assert torch.allclose(net.whiten.weight[12:], -net.whiten.weight[:12])


def test_lookahead_pulls_weights_to_their_average_and_syncs():
    model = nn.Linear(2, 1, bias=False)
    la = Lookahead(model, total_steps=10, start=0.0, every=1, base=0.5, power=0.0)
    with torch.no_grad():
        model.weight.fill_(1.0)
    la.update(1)  # the first update only takes the snapshot
    with torch.no_grad():
        model.weight.fill_(3.0)
    la.update(2)  # rho = 0.5: average = 1 + 0.5·(3 − 1) = 2, copied back into the model
    assert torch.allclose(model.weight, torch.full((1, 2), 2.0))
    with torch.no_grad():
        model.weight.fill_(9.0)
    la.sync()
    assert torch.allclose(model.weight, torch.full((1, 2), 2.0))
    late = Lookahead(model, total_steps=10, start=0.5, every=2)
    late.update(3)
    assert late.average is None  # before its start fraction it does nothing


def test_triangular_onecycle_starts_and_ends_where_asked():
    cfg = make_config({"schedule": "onecycle", "epochs": 10, "warmup_epochs": 2.5,
                       "lr_start": 0.2, "lr_end": 0.07})
    factors = [lr_factor(cfg, s, 100) for s in range(1000)]
    assert factors[0] == pytest.approx(0.2 + 0.8 / 250)
    assert max(factors) == pytest.approx(1.0) and factors.index(max(factors)) == 249
    assert factors[-1] == pytest.approx(0.07 + 0.93 / 750)
    plain = make_config({"schedule": "onecycle", "epochs": 10})
    assert lr_factor(plain, 999, 100) == pytest.approx(1 / 900)  # the old triangle, to zero


def test_bias_lr_scale_gives_bn_shifts_their_own_group():
    net = create_model("cifar-speednet")
    groups = param_groups(net, 0.002, lr=0.5, bias_lr_scale=64.0)
    assert len(groups) == 3
    bn_biases = {id(m.bias) for m in net.modules() if isinstance(m, nn.BatchNorm2d)}
    assert {id(p) for p in groups[2]["params"]} == bn_biases
    assert groups[2]["lr"] == 32.0 and groups[2]["weight_decay"] == pytest.approx(0.002 / 64)
    # the whitening bias is a plain 1-D parameter: normal lr, no decay
    assert any(p is net.whiten.bias for p in groups[1]["params"])
    opt = build_optimizer(net, make_config({"optimizer": "sgd", "lr": 0.5,
                                            "bias_lr_scale": 64.0}))
    assert [g["lr"] for g in opt.param_groups] == [0.5, 0.5, 32.0]
    assert len(param_groups(net, 0.002)) == 2  # scale 1: the usual two groups


def test_alternating_flip_flips_each_image_once_every_two_epochs():
    n = 64
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 2, 2).clone()
    images[:, :, :, 1] = 255  # right column white: a flip moves it to the left
    split = Split(images, torch.zeros(n, dtype=torch.long))
    flipped = []
    for epoch in (0, 1, 2):
        loader = Loader(split, 16, shuffle=True, augment=build_augment(["altflip"]), seed=3)
        loader.set_epoch(epoch)
        state = torch.zeros(n, dtype=torch.bool)
        for x, _ in loader:
            # the image id is in the dark column, wherever the flip put it
            ids = torch.where(x[:, 0, 0, 0] > 0.99, (x[:, 0, 0, 1] * 255).round().long(),
                              (x[:, 0, 0, 0] * 255).round().long())
            state[ids] = x[:, 0, 0, 0] > 0.99
        flipped.append(state)
    assert torch.equal(flipped[0], ~flipped[1])  # each image flipped in exactly one of two epochs
    assert torch.equal(flipped[0], flipped[2])  # a fixed pattern, not a fresh coin per epoch
    assert 16 < int(flipped[0].sum()) < 48  # about half


def test_tta_views_are_the_documented_average():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LazyLinear(5))
    x = torch.rand(2, 3, 8, 8)
    model(x)
    assert torch.equal(tta_logits(model, x, "none"), model(x))
    pair = 0.5 * model(x) + 0.5 * model(x.flip(3))
    assert torch.allclose(tta_logits(model, x, "flip"), pair)
    pad = nn.functional.pad(x, (1, 1, 1, 1), mode="reflect")
    views = [pad[:, :, :8, :8], pad[:, :, 2:, 2:]]
    shifted = [0.5 * model(v) + 0.5 * model(v.flip(3)) for v in views]
    expect = 0.5 * pair + 0.25 * (shifted[0] + shifted[1])
    assert torch.allclose(tta_logits(model, x, "flip-translate"), expect, atol=1e-6)
    assert make_config({"tta": "flip-translate"}).tta in TTA_KINDS
    with pytest.raises(ValueError, match="unknown tta"):
        tta_logits(model, x, "mirror")


def test_translate_tta_shifts_by_one_pixel_without_mirroring():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.LazyLinear(5))
    x = torch.rand(3, 1, 7, 7)
    model(x)

    def moved(dy: int, dx: int) -> torch.Tensor:
        """x moved by (dy, dx) pixels, what leaves the frame gone, zeros come in"""
        out = torch.zeros_like(x)
        out[:, :, max(dy, 0):7 + min(dy, 0), max(dx, 0):7 + min(dx, 0)] = \
            x[:, :, max(-dy, 0):7 + min(-dy, 0), max(-dx, 0):7 + min(-dx, 0)]
        return out

    views = [moved(0, 1), moved(0, -1), moved(1, 0), moved(-1, 0)]
    expect = 0.5 * model(x) + 0.125 * sum(model(v) for v in views)
    assert torch.allclose(tta_logits(model, x, "translate"), expect, atol=1e-6)
    cl = x.contiguous(memory_format=torch.channels_last)
    assert torch.allclose(tta_logits(model, cl, "translate"), expect, atol=1e-6)
    first = model(x)  # the plain view, when the caller has it already, is not run again
    assert torch.allclose(tta_logits(model, x, "translate", first=first), expect, atol=1e-6)
    # a digit: the views never mirror it (a mirrored view would change these logits)
    assert not torch.allclose(tta_logits(model, x.flip(3), "translate"), expect, atol=1e-3)
    assert make_config({"tta": "translate"}).tta == "translate"


def test_tta_fraction_gives_the_views_to_the_least_confident_images_only():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 5))
    split = Split(torch.randint(0, 256, (40, 3, 8, 8), dtype=torch.uint8),
                  torch.zeros(40, dtype=torch.long))
    seen = []
    model.register_forward_hook(lambda m, i, o: seen.append(len(i[0])))
    one = predict_logits(model, split, batch_size=16)
    full = predict_logits(model, split, batch_size=16, tta="flip-translate")
    seen.clear()
    gated = predict_logits(model, split, batch_size=16, tta="flip-translate", tta_fraction=0.25)
    assert sum(seen) == 40 + 5 * 10  # one view each, five more for the 10 least confident
    chosen = least_confident(one, 10)
    top2 = one.softmax(1).topk(2, 1).values
    margin = top2[:, 0] - top2[:, 1]
    others = torch.ones(40, dtype=torch.bool)
    others[chosen] = False
    assert margin[chosen].max() <= margin[others].min()  # the closest calls, no others
    assert torch.allclose(gated[chosen], full[chosen], atol=1e-5)  # all six views, same weights
    assert torch.equal(gated[others], one[others])  # the sure ones keep their one view
    assert torch.equal(predict_logits(model, split, batch_size=16, tta="flip-translate",
                                      tta_fraction=1.0), full)
    with pytest.raises(ValueError, match="tta_fraction"):
        predict_logits(model, split, tta="flip", tta_fraction=0.0)


def test_whiten_bias_trains_at_the_bn_lr_falls_to_zero_then_freezes(tmp_path):
    net = create_model("cifar-speednet")
    cfg = make_config({"optimizer": "muon", "lr": 0.5, "bias_lr_scale": 64.0,
                       "weight_decay": 0.0064, "whiten_bias_epochs": 2, "epochs": 4})
    opt = build_optimizer(net, cfg)
    own = [g for g in opt.param_groups if g.get("whiten_bias")]
    assert len(own) == 1 and own[0]["params"] == [net.whiten.bias]
    assert own[0]["lr"] == 32.0 and own[0]["weight_decay"] == pytest.approx(0.0001)
    assert sum(p is net.whiten.bias for g in opt.param_groups for p in g["params"]) == 1
    sched = build_scheduler(opt, cfg, steps_per_epoch=10)
    lrs, others = [], []
    for _ in range(40):
        lrs.append(own[0]["lr"])
        others.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == 32.0 and lrs[10] == pytest.approx(16.0) and lrs[20:] == [0.0] * 20
    assert min(others[5:30]) > 0  # the others keep their own schedule
    with pytest.raises(ConfigError, match="whitening"):
        build_optimizer(create_model("simple-cnn"), cfg)
    # in training: the bias moves during its epochs, then stays (and stops needing gradients)
    _assert_whiten_bias_moves_in_epoch_1_only(tmp_path, whiten_bias_epochs=1)


def _assert_whiten_bias_moves_in_epoch_1_only(tmp_path, **option):
    out = tmp_path / "run"
    cnnlab.train(preset="cifar10-speedrun", data="digits", channels=3, epochs=3, batch_size=128,
                 progressive=[], lookahead=False, tta="none", keep_snapshots=True,
                 progress=False, out=str(out), **option)
    biases = [cnnlab.load_model(out, snapshot=e).whiten.bias for e in (1, 2, 3)]
    assert biases[0].abs().sum() > 0
    assert torch.equal(biases[0], biases[1]) and torch.equal(biases[1], biases[2])


def test_freeze_whiten_bias_keeps_its_lr_then_stops(tmp_path):
    """--freeze-whiten-bias E: the bias trains like the other biases (no group of its own)
    until epoch E, then stays put; with --whiten-bias-epochs too, whichever stops first."""
    net = create_model("cifar-speednet")
    cfg = make_config({"optimizer": "muon", "freeze_whiten_bias": 1.5, "epochs": 4})
    opt = build_optimizer(net, cfg)
    assert not any(g.get("whiten_bias") for g in opt.param_groups)
    assert whiten_bias_freeze_step(cfg, 10) == 15
    both = make_config({"freeze_whiten_bias": 3, "whiten_bias_epochs": 2, "epochs": 4})
    assert whiten_bias_freeze_step(both, 10) == 20
    assert whiten_bias_freeze_step(make_config({}), 10) == 0
    with pytest.raises(ConfigError, match="--freeze-whiten-bias"):
        cnnlab.train(model="simple-cnn", data="digits", epochs=1, freeze_whiten_bias=1,
                     progress=False, out=str(tmp_path / "bad"))
    _assert_whiten_bias_moves_in_epoch_1_only(tmp_path, freeze_whiten_bias=1)


@pytest.mark.parametrize("bad", [{"tta": "mirror"}, {"progressive": [2]}, {"lr_start": 1.5},
                                 {"bias_lr_scale": 0}, {"eval_every": -1},
                                 {"lookahead_start": 1.0}, {"tta_fraction": 0},
                                 {"tta_fraction": 1.5}, {"whiten_bias_epochs": -1},
                                 {"freeze_whiten_bias": -1}])
def test_speedrun_options_are_validated(bad):
    with pytest.raises(ConfigError):
        make_config(bad)


def test_airbench_preset_trains_with_progressive_resizing_and_sparse_evaluation(tmp_path,
                                                                              monkeypatch):
    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path / "cache"))
    seen: list[tuple[int, int]] = []
    real_forward = cnnlab.models.speedrun.CifarSpeedNet.forward_features

    def spy(self, x):
        if self.training:
            seen.append(tuple(x.shape[2:]))
        return real_forward(self, x)

    monkeypatch.setattr(cnnlab.models.speedrun.CifarSpeedNet, "forward_features", spy)
    out = tmp_path / "run"
    result = cnnlab.train(preset="cifar10-airbench94", data="digits", channels=3, epochs=3,
                          batch_size=128, lr=0.2, progressive=[6], eval_every=2,
                          tta="flip", precision="fp32",  # auto may time a copy at 8×8 first
                          progress=False, out=str(out))
    assert result.test_accuracy > 0.5
    assert seen[0] == (6, 6) and seen[-1] == (8, 8)
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert [r["eval_acc"] != "" for r in rows] == [False, True, True]
    assert float(rows[-1]["eval_acc"]) == pytest.approx(result.test_accuracy, abs=1e-4)
    # the fitted whitening filters travel in the checkpoint
    loaded = cnnlab.load_model(out)
    trained_whiten = loaded.whiten.weight
    assert trained_whiten.abs().sum() > 0 and not torch.equal(
        trained_whiten, create_model("cifar-speednet").whiten.weight)
