"""Any timm CNN x every registered variant: builds under a memory bound, runs finite, deploys equal, MACs counted.

Used by tests/test_timm_sweep.py (slow tier) and scripts/timm_sweep.py (writes docs/timm-sweep.md).
"""

from __future__ import annotations

import contextlib
import math
import resource
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

# one small config per family, built with pretrained=False (nothing is downloaded)
FAMILIES: dict[str, str] = {
    "ResNet": "resnet18", "RegNetX": "regnetx_002", "EfficientNet": "efficientnet_b0",
    "MobileNetV3": "mobilenetv3_small_100", "GhostNet": "ghostnet_100", "DenseNet": "densenet121",
    "ConvNeXt": "convnext_atto", "VoVNet": "ese_vovnet19b_dw", "HRNet": "hrnet_w18_small", "RepVGG": "repvgg_a0",
    "MixNet": "mixnet_s", "MobileNetV2": "mobilenetv2_050", "DLA": "dla46_c", "LCNet": "lcnet_050",
    "MnasNet": "mnasnet_small", "SKNet": "skresnet18", "ResNeSt": "resnest14d", "GENet": "gernet_s",
    "HGNetV2": "hgnetv2_b0", "MobileNetV4": "mobilenetv4_conv_small", "CSPDarkNet": "cs3darknet_s",
}
MEMORY_BOUND_GIB = 2.0  # growth of the process's data segment allowed while one pair is built and run


@dataclass
class PairResult:
    """What one backbone x variant pair did; `problems` is empty when it passed every check."""

    backbone: str
    variant: str
    converted: int = 0
    total_convs: int = 0
    reason: str | None = None  # why nothing was converted (ConversionReport.reason)
    params: int = 0
    macs: int = 0
    deploy_error: float = math.nan  # max |deployed - model| / max |model| in eval
    unsupported: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def _vm_data() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmData:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmData in /proc/self/status")


@contextlib.contextmanager
def memory_bound(gib: float = MEMORY_BOUND_GIB) -> Iterator[None]:
    """Let the process's data segment grow by at most `gib` GiB inside the block (Linux RLIMIT_DATA).

    An allocation beyond it fails with the allocator's out-of-memory error instead of exhausting the machine.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    limit = _vm_data() + int(gib * 2**30)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_DATA, (soft, hard))


def check_pair(backbone: str, variant: str, forward_size: tuple[int, int, int] = (3, 96, 96),
               macs_size: tuple[int, int, int] = (3, 64, 64), batch_size: int = 2, num_classes: int = 10,
               static_unsupported: dict[str, int] | None = None) -> PairResult:
    """Build `backbone` with `variant` under the memory bound and check it; failures go to `problems`."""
    from ..models.convert import create_model, deploy
    from ..models.per_sample_conv import use_strategy
    from ..models.registry import get_variant
    from .flops import profile

    res = PairResult(backbone, variant)
    torch.manual_seed(0)
    try:
        with memory_bound():
            model = create_model(backbone, variant, num_classes=num_classes).eval()
            report = model.dynconv_report
            res.converted, res.total_convs, res.reason = len(report.converted), report.total_convs, report.reason
            x = torch.randn(batch_size, *forward_size)
            with torch.no_grad(), use_strategy("grouped"):  # strategies have their own tests; no tuning here
                out = model(x)
                deployed = deploy(model)(x)
            prof = profile(model, input_size=macs_size)
    except Exception as exc:  # a sweep reports every pair; the test fails on any problem
        res.problems.append(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        return res
    res.params, res.macs, res.unsupported = prof.params, prof.macs, dict(prof.unsupported)
    if not torch.isfinite(out).all():
        res.problems.append("non-finite output")
    scale = out.abs().max().item()
    res.deploy_error = (deployed - out).abs().max().item() / max(scale, 1e-12)
    if not res.deploy_error <= 1e-4:
        res.problems.append(f"deployed form differs (relative {res.deploy_error:.2e})")
    if prof.macs <= 0 or prof.conv_macs <= 0:
        res.problems.append(f"MACs not counted ({prof.macs})")
    added = set(prof.unsupported) - set(static_unsupported or {})
    if static_unsupported is not None and added:
        res.problems.append(f"ops without a MAC handle: {', '.join(sorted(added))}")
    if not res.converted and get_variant(variant).converts_layers and res.reason is None:
        res.problems.append("no layer converted and no reason given")
    return res
