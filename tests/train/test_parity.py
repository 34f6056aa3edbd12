"""Speed options must not change the answer: channels-last, torch.compile and bf16 against the
plain fp32 eager step, to tolerance (correctness in tests; timings belong to benchmarks)."""

import pytest
import torch
from torch import nn

import cnnlab
from cnnlab.models import create_model


def _grads(model: nn.Module, x: torch.Tensor, y: torch.Tensor, fn=None) -> dict:
    model.zero_grad(set_to_none=True)
    loss = nn.functional.cross_entropy((model if fn is None else fn)(x), y)
    loss.backward()
    return {n: p.grad.detach().clone() for n, p in model.named_parameters()}, loss.item()


def _pair():
    torch.manual_seed(0)
    model = create_model("simple-cnn", num_classes=10, in_chans=3, input_size=(16, 16)).train()
    x, y = torch.rand(8, 3, 16, 16), torch.randint(0, 10, (8,))
    return model, x, y


def test_channels_last_step_equals_nchw_step():
    model, x, y = _pair()
    ref, ref_loss = _grads(model, x, y)
    model = model.to(memory_format=torch.channels_last)
    got, loss = _grads(model, x.contiguous(memory_format=torch.channels_last), y)
    assert loss == pytest.approx(ref_loss, rel=1e-5)
    for name in ref:
        torch.testing.assert_close(got[name], ref[name], rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.slow
def test_compiled_step_equals_eager_step():
    model, x, y = _pair()
    ref, ref_loss = _grads(model, x, y)
    got, loss = _grads(model, x, y, fn=torch.compile(model))
    assert loss == pytest.approx(ref_loss, rel=1e-4)
    for name in ref:
        torch.testing.assert_close(got[name], ref[name], rtol=1e-3, atol=1e-4, msg=name)


@pytest.mark.slow
def test_bf16_training_reaches_the_fp32_accuracy_for_the_same_seed(tmp_path):
    acc = {p: cnnlab.train(epochs=6, precision=p, seed=3, progress=False,
                           out=str(tmp_path / p)).test_accuracy for p in ("fp32", "bf16")}
    assert acc["fp32"] > 0.9
    assert abs(acc["bf16"] - acc["fp32"]) < 0.03, acc
