"""Strategies of the per-sample conv: equal outputs and gradients, the tuner's choice, cache and switches."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from dynconv_bench.models import per_sample_conv as psc
from dynconv_bench.models.per_sample_conv import (
    KernelMixture,
    per_sample_conv,
    record_strategies,
    use_strategy,
)

from .conftest import DYNAMIC_CONV_CASES, make_case_conv


@pytest.fixture(autouse=True)
def _fresh_cache(monkeypatch):  # noqa: ANN001, ANN202
    monkeypatch.delenv(psc.STRATEGY_ENV, raising=False)
    monkeypatch.delenv(psc.CACHE_ENV, raising=False)
    psc.clear_strategy_cache()
    yield
    psc._CACHE_FILE.clear()
    psc.clear_strategy_cache()


def _mixture_case(case, batch=3, k=3):  # noqa: ANN001, ANN202
    conv = make_case_conv(case)
    x = torch.randn(batch, conv.in_channels, 11, 11, requires_grad=True)
    att = torch.rand(batch, k, requires_grad=True)
    bank = torch.randn(k, *conv.weight.shape, requires_grad=True)
    bias = torch.randn(k, conv.out_channels, requires_grad=True) if conv.bias is not None else None
    return conv, x, att, bank, bias


def _reference(conv, x, att, bank, bias):  # noqa: ANN001, ANN202
    outs = []
    for b in range(x.shape[0]):
        w = sum(att[b, i] * bank[i] for i in range(bank.shape[0]))
        bb = None if bias is None else att[b] @ bias
        outs.append(F.conv2d(x[b:b + 1], w, bb, conv.stride, conv.padding, conv.dilation, conv.groups))
    return torch.cat(outs)


@pytest.mark.parametrize("case", DYNAMIC_CONV_CASES)
@pytest.mark.parametrize("name", psc.STRATEGIES)
def test_mixture_output_and_gradients_equal_the_reference(case, name):
    conv, x, att, bank, bias = _mixture_case(case)
    leaves = [t for t in (x, att, bank, bias) if t is not None]
    ref = _reference(conv, x, att, bank, bias)
    g = torch.randn_like(ref)
    ref_grads = torch.autograd.grad(ref, leaves, g)
    out = per_sample_conv(x, KernelMixture(att, bank, bias), None, conv.stride, conv.padding, conv.dilation,
                          conv.groups, strategy=name)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
    for got, want in zip(torch.autograd.grad(out, leaves, g), ref_grads):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_output_space_with_channels_last_keeps_values_and_format():
    conv, x, att, bank, bias = _mixture_case(DYNAMIC_CONV_CASES[7].values[0])
    x = x.detach().to(memory_format=torch.channels_last)
    out = per_sample_conv(x, KernelMixture(att, bank, bias), None, conv.stride, conv.padding, conv.dilation,
                          conv.groups, strategy="output_space")
    torch.testing.assert_close(out, _reference(conv, x, att, bank, bias), rtol=1e-4, atol=1e-4)
    assert out.is_contiguous(memory_format=torch.channels_last)


def test_auto_records_caches_and_writes_its_choice(tmp_path):
    path = tmp_path / "strategies.json"
    psc.set_strategy_cache(path)
    x, w = torch.randn(4, 8, 9, 9), torch.randn(4, 6, 8, 3, 3)
    with record_strategies() as rec:
        out = per_sample_conv(x, w, None, (1, 1), (1, 1), (1, 1), 1)
        per_sample_conv(x, w, None, (1, 1), (1, 1), (1, 1), 1)
    (choice,) = rec  # the same strategy both times
    assert rec[choice] == 2 and choice in psc.STRATEGIES[:3]
    with use_strategy(choice):
        assert torch.equal(out, per_sample_conv(x, w, None, (1, 1), (1, 1), (1, 1), 1))
    stored = json.loads(path.read_text())["choices"]
    assert list(stored.values()) == [choice]
    key = next(iter(stored))
    assert "threads=" in key and "(4,8,9,9)" in key
    psc.clear_strategy_cache()  # a new process: read back from the file, not re-tuned
    stored[key] = "loop" if choice != "loop" else "bmm"
    path.write_text(json.dumps(stored))
    with record_strategies() as rec:
        per_sample_conv(x, w, None, (1, 1), (1, 1), (1, 1), 1)
    assert list(rec) == [stored[key]]


def test_tuning_under_autograd_changes_neither_output_nor_gradient():
    x = torch.randn(3, 4, 8, 8, requires_grad=True)
    w = torch.randn(3, 5, 4, 3, 3, requires_grad=True)
    with record_strategies() as rec:
        out = per_sample_conv(x, w, None, (1, 1), (1, 1), (1, 1), 1)
    grads = torch.autograd.grad(out.sum(), (x, w))
    (choice,) = rec
    with use_strategy(choice):
        again = per_sample_conv(x, w, None, (1, 1), (1, 1), (1, 1), 1)
    assert torch.equal(out, again)
    for a, b in zip(grads, torch.autograd.grad(again.sum(), (x, w))):
        assert torch.equal(a, b)


def test_env_var_forces_a_strategy_and_bad_names_raise(monkeypatch):
    x, w = torch.randn(2, 4, 6, 6), torch.randn(2, 3, 4, 1, 1)
    monkeypatch.setenv(psc.STRATEGY_ENV, "bmm")
    with record_strategies() as rec:
        per_sample_conv(x, w, None, (1, 1), (0, 0), (1, 1), 1)
        with use_strategy("loop"):  # the context manager wins over the environment
            per_sample_conv(x, w, None, (1, 1), (0, 0), (1, 1), 1)
        per_sample_conv(x, w, None, (1, 1), (0, 0), (1, 1), 1, strategy="output_space")  # no mixture: grouped
    assert rec == {"bmm": 1, "loop": 1, "grouped": 1}
    monkeypatch.setenv(psc.STRATEGY_ENV, "fast")
    with pytest.raises(ValueError, match="grouped, loop, bmm, output_space, fused, auto"):
        per_sample_conv(x, w, None, (1, 1), (0, 0), (1, 1), 1)
    with pytest.raises(ValueError, match="valid"):
        use_strategy("fast").__enter__()


def test_batch_one_needs_no_tuning():
    with record_strategies() as rec:
        per_sample_conv(torch.randn(1, 4, 6, 6), torch.randn(1, 3, 4, 3, 3), None, (1, 1), (1, 1), (1, 1), 1)
    assert rec == {"loop": 1} and psc._CACHE == {}


def _raise(message):  # noqa: ANN001, ANN202
    def run(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise RuntimeError(message)
    return run


def test_a_candidate_that_raises_is_dropped_and_recorded_and_the_others_are_tuned(monkeypatch):
    from dynconv_bench.models import triton_conv

    # the fused kernel as a candidate (as on CUDA) that cannot launch: out of shared memory
    monkeypatch.setattr(psc, "_fused_fits", lambda *args, **kwargs: True)
    monkeypatch.setattr(triton_conv, "fused_conv", _raise("out of resource: shared memory, Required: 303104,\n"
                                                          "Hardware limit: 232448"))
    monkeypatch.setitem(psc._RUN, "bmm", _raise("bmm broke"))
    conv, x, att, bank, bias = _mixture_case(DYNAMIC_CONV_CASES[0].values[0])
    x, att, bank = x.detach(), att.detach(), bank.detach()
    bias = None if bias is None else bias.detach()
    with torch.no_grad(), record_strategies() as rec:
        out = per_sample_conv(x, KernelMixture(att, bank, bias), None, conv.stride, conv.padding, conv.dilation,
                              conv.groups)
    (choice,) = rec
    assert choice in ("grouped", "loop", "output_space")  # a candidate that ran
    torch.testing.assert_close(out, _reference(conv, x, att, bank, bias), rtol=1e-4, atol=1e-4)
    assert len(rec.failures) == 2 and all("\n" not in line for line in rec.failures)  # one line each
    fused, bmm = sorted(rec.failures, key=lambda line: "bmm" in line)
    assert fused.startswith("layer (3,") and "| strategy fused | RuntimeError: out of resource: shared memory, " \
                                            "Required: 303104, Hardware limit: 232448" in fused
    assert "| strategy bmm | RuntimeError: bmm broke" in bmm
    key = next(iter(psc._CACHE))
    assert fused.split(" | ")[0] == f"layer {key}" and psc._CACHE[key] == choice  # the layer: its strategy key
    with record_strategies() as again:  # the choice is cached: no second tuning, nothing more recorded
        per_sample_conv(x, KernelMixture(att, bank, bias), None, conv.stride, conv.padding, conv.dilation, conv.groups)
    assert again == {choice: 1} and again.failures == []


def test_every_candidate_failing_raises_a_clear_error(monkeypatch):
    for name in ("grouped", "loop", "bmm"):
        monkeypatch.setitem(psc._RUN, name, _raise(f"{name} broke"))
    x, w = torch.randn(3, 4, 6, 6), torch.randn(3, 5, 4, 3, 3)
    with record_strategies() as rec, pytest.raises(psc.StrategyError, match="every per-sample conv strategy failed") as err:
        per_sample_conv(x, w, None, (1, 1), (1, 1), (1, 1), 1)
    assert all(f"strategy {n} | RuntimeError: {n} broke" in str(err.value) for n in ("grouped", "loop", "bmm"))
    assert len(rec.failures) == 3 and psc._CACHE == {}  # nothing cached: the next call tunes afresh
