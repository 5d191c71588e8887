"""Peak memory (dynconv_bench/metrics/step_memory.py): a bigger batch needs more, failures are results."""

from __future__ import annotations

import pytest

from dynconv_bench.errors import UserError
from dynconv_bench.execution.processes.isolate import run_isolated
from dynconv_bench.metrics import step_memory
from dynconv_bench.metrics.step_memory import peak_memory
from dynconv_bench.models.modelspec import ModelSpec

ONE_ACTIVATION_B128 = 128 * 16 * 32 * 32 * 4  # one fp32 feature map of cifar_resnet8's first stage


def test_cuda_without_gpu_and_bad_arguments():
    import torch

    if not torch.cuda.is_available():
        out = step_memory._measure(ModelSpec("cifar_resnet8"), 1, (3, 32, 32), "inference", "cuda", 10, None)
        assert out["status"] == "failed" and "CUDA" in out["error"] and out["peak_bytes"] is None
    with pytest.raises(UserError, match="valid: inference, train"):
        peak_memory("cifar_resnet8", mode="eval")
    with pytest.raises(UserError, match="batch_size"):
        peak_memory("cifar_resnet8", batch_size=0)


@pytest.mark.parametrize("mode", ["inference", "train"])
def test_fresh_subprocess_bigger_batch_reports_more(mode):
    # Only a fresh process measures peaks reliably: in a long-lived one (e.g. pytest) the allocator
    # reuses memory freed by earlier work and the resident-set peak need not move.
    kw = {"input_size": (3, 32, 32), "num_classes": 10, "threads": 1, "mode": mode}
    small = run_isolated(peak_memory, "cifar_resnet8", "static", {}, batch_size=1, **kw)
    big = run_isolated(peak_memory, ModelSpec("cifar_resnet8", "static"), batch_size=128, **kw)  # a spec, as cells
    assert small["status"] == big["status"] == "ok"
    assert big["peak_bytes"] > small["peak_bytes"] + ONE_ACTIVATION_B128
    assert big["method"] in ("VmHWM after clear_refs", "ru_maxrss delta")
    assert big["peak_total_bytes"] == big["baseline_bytes"] + big["peak_bytes"]


def test_a_failure_in_the_fresh_subprocess_is_a_result():
    kw = {"input_size": (3, 32, 32), "num_classes": 10, "threads": 1}
    bad = run_isolated(peak_memory, "cifar_resnet8", "no-such-variant", {}, batch_size=1, **kw)
    assert bad["status"] == "failed" and "unknown variant" in bad["error"] and bad["peak_bytes"] is None
