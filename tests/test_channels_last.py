"""channels_last for every registered variant (plugins too, through the registry): runs and equals contiguous."""

from __future__ import annotations

import pytest
import torch

import dynconv_bench
from dynconv_bench import create_model
from dynconv_bench.models.per_sample_conv import STRATEGIES, record_strategies, use_strategy

# per-sample conv strategies are forced (no tuning runs); the default tier runs the first, the slow tier all
STRATEGY_PARAMS = [pytest.param(s, marks=[pytest.mark.slow] if i else []) for i, s in enumerate(STRATEGIES)]


def _relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    return ((out.float() - ref.float()).abs().max() / ref.float().abs().max()).item()


def _forwards(model: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        out = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return out, model(x)


@pytest.mark.parametrize("strategy", STRATEGY_PARAMS)
@pytest.mark.parametrize("variant", dynconv_bench.list_variants())
def test_channels_last_model_and_input_equal_the_contiguous_forward(variant, strategy):
    model = create_model("cifar_resnet20", variant, num_classes=10).eval()
    x = torch.randn(2, 3, 32, 32)
    with use_strategy(strategy), record_strategies() as used:
        ref, ref_bf16 = _forwards(model, x)
    if strategy != STRATEGIES[0] and not used:
        pytest.skip(f"{variant} runs no per-sample conv")
    model = model.to(memory_format=torch.channels_last)  # users call this themselves: no parameter may refuse
    assert any(p.dim() == 4 and not p.is_contiguous() and p.is_contiguous(memory_format=torch.channels_last)
               for p in model.parameters())
    with use_strategy(strategy):
        out, out_bf16 = _forwards(model, x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5 * ref.abs().max().item())
    assert out_bf16.dtype == torch.bfloat16 and torch.isfinite(out_bf16).all()
    assert _relative_error(out_bf16, ref_bf16) < 0.05  # bf16 rounding in both, in different orders
    assert _relative_error(out_bf16, ref) < 0.1
