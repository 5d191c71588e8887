"""Any timm CNN x every registered variant (slow tier): builds under a memory bound, finite, deploys equal, MACs
counted, and converts at least one layer or says why not. docs/timm-sweep.md is the table of the same run."""

from __future__ import annotations

import pytest
import torch

import dynconv_bench
from dynconv_bench.metrics.timm_sweep import FAMILIES, MEMORY_BOUND_GIB, check_pair, memory_bound


def test_the_memory_bound_refuses_a_larger_allocation_and_is_lifted_afterwards():
    with memory_bound(0.125), pytest.raises(RuntimeError, match="memory"):
        torch.empty(2**28).fill_(1.0)  # 1 GiB
    torch.empty(2**28).fill_(1.0)


@pytest.mark.slow
@pytest.mark.parametrize("backbone", list(FAMILIES.values()), ids=list(FAMILIES))
def test_every_variant_builds_runs_deploys_and_counts_macs(backbone):
    static = check_pair(backbone, "static")
    assert not static.problems, static.problems
    problems = []
    for variant in dynconv_bench.list_variants():
        if variant == "static":
            continue
        res = check_pair(backbone, variant, static_unsupported=static.unsupported)
        if not (res.converted >= 1 or res.reason):
            res.problems.append("converted nothing without the no-layer-converted mark")
        problems += [f"{variant}: {p}" for p in res.problems]
    assert not problems, f"{backbone} (memory bound {MEMORY_BOUND_GIB} GiB): " + "; ".join(problems)
