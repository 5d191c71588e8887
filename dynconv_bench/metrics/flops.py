"""Complete MAC counts per image, split into conv MACs and dynamic overhead, per layer and in total.

Built on fvcore's FlopCountAnalysis (jit trace) with handles for every op (see `flop_handles`); fvcore's
list of silently ignored ops is emptied, so anything not handled shows up in `Profile.unsupported`.
The model is traced in eval mode on a batch of `batch_size` images and every count is divided by the
batch size: per-sample work (attention, per-sample kernel aggregation) is counted per image, while
work done once per batch (e.g. folding a static modulation into a kernel) is shared by its images.

A converted layer (an instance of `dynconv_bench.DynamicLayer`) contributes to `conv_macs` what its
`conv_macs(out_size)` hook declares, by default the analytic MACs of one conv with its geometry at its output
size (C_out * C_in/groups * kh * kw * H_out * W_out); everything else counted inside it is `overhead_macs`. Plain convs outside converted
layers count as conv MACs. `macs` also includes the rest (norms, activations, pooling, classifier).
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch
from torch import nn

with warnings.catch_warnings():  # fvcore.nn scripts a loss at import; torch deprecates torch.jit.script
    warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=FutureWarning)
    from fvcore.nn import FlopCountAnalysis

from ..models.per_sample_conv import STRATEGIES, eager_paths, use_strategy
from ..models.variant import DynamicLayer
from .flop_handles import default_handles
from .param_count import _outermost_dynamic, count_params

CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


@dataclass
class Profile:
    """Parameters and per-image MACs of a model, with the per-layer breakdown."""

    params: int
    macs: int
    conv_macs: int
    overhead_macs: int
    breakdown: pd.DataFrame = field(repr=False)
    unsupported: dict[str, int] = field(default_factory=dict)
    by_operator: dict[str, int] = field(default_factory=dict)
    params_by_category: dict[str, int] = field(default_factory=dict)
    deployed_params: int | None = None
    input_size: tuple[int, ...] = (3, 224, 224)
    batch_size: int = 2

    @property
    def flops(self) -> int:
        return 2 * self.macs

    @property
    def other_macs(self) -> int:
        """MACs outside convs and converted layers (norms, activations, pooling, classifier)."""
        return self.macs - self.conv_macs - self.overhead_macs

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary (the breakdown as a list of row dicts)."""
        return {
            "params": self.params, "macs": self.macs, "flops": self.flops, "conv_macs": self.conv_macs,
            "overhead_macs": self.overhead_macs, "other_macs": self.other_macs,
            "unsupported": dict(self.unsupported), "by_operator": dict(self.by_operator),
            "params_by_category": dict(self.params_by_category), "deployed_params": self.deployed_params,
            "input_size": list(self.input_size),
            "batch_size": self.batch_size, "breakdown": self.breakdown.to_dict(orient="records"),
        }


def conv_macs_analytic(layer: nn.Module, out_hw: tuple[int, ...]) -> int:
    """MACs of one conv with `layer`'s geometry producing one output of spatial size `out_hw`."""
    ks = layer.kernel_size
    ks = (ks,) * len(out_hw) if isinstance(ks, int) else tuple(ks)
    area = 1
    for k in ks:
        area *= int(k)
    spatial = 1
    for s in out_hw:
        spatial *= int(s)
    return int(layer.out_channels) * (int(layer.in_channels) // int(layer.groups)) * area * spatial


def layer_conv_macs(name: str, layer: nn.Module, out_hw: tuple[int, ...]) -> int:
    """The conv MACs of one call of a converted layer: its `DynamicLayer.conv_macs` hook, else one conv of its
    geometry."""
    declared = layer.conv_macs(tuple(out_hw)) if isinstance(layer, DynamicLayer) else None
    if declared is not None:
        return int(declared)
    try:
        return conv_macs_analytic(layer, out_hw)
    except (AttributeError, TypeError) as exc:
        raise TypeError(f"converted layer {name!r} ({type(layer).__name__}) must expose conv geometry "
                        f"(in_channels, out_channels, kernel_size, groups) or declare conv_macs(): {exc}") from None


def _first_tensor(value: Any) -> torch.Tensor | None:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, list | tuple):
        for v in value:
            t = _first_tensor(v)
            if t is not None:
                return t
    return None


@contextlib.contextmanager
def _record_output_sizes(modules: dict[str, nn.Module]) -> Iterator[dict[str, list[tuple]]]:
    """Record the spatial output size of each call of the given modules while the block runs."""
    sizes: dict[str, list[tuple]] = {n: [] for n in modules}
    hooks = []
    for name, module in modules.items():
        def hook(mod: nn.Module, args: Any, output: Any, name: str = name) -> None:
            t = _first_tensor(output)
            if t is not None:
                sizes[name].append(tuple(int(s) for s in t.shape[2:]))
        hooks.append(module.register_forward_hook(hook))
    try:
        yield sizes
    finally:
        for h in hooks:
            h.remove()


def deployed_param_count(model: nn.Module) -> int:
    """Parameters of `dynconv_bench.deploy(model)` (the model's own count when nothing folds)."""
    folds = any(isinstance(m, DynamicLayer) and type(m).deploy_module is not DynamicLayer.deploy_module
                for m in model.modules())
    if not folds:
        return count_params(model)["total"]
    from ..models.convert import deploy

    return count_params(deploy(model))["total"]


def _module_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def profile(model: nn.Module, input_size: tuple[int, ...] = (3, 224, 224), batch_size: int = 2,
            strategy: str = "grouped") -> Profile:
    """Count parameters and per-image MACs of `model` on a batch of `batch_size` random inputs.

    `strategy` is the per-sample conv strategy the counted forward runs: 'grouped' (the default) counts the
    method's work; another of `per_sample_conv.STRATEGIES` counts what that strategy adds (e.g. output_space's
    K-fold conv).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown per-sample conv strategy {strategy!r}; valid: {', '.join(STRATEGIES)}")
    try:
        first = next(model.parameters())
        device, dtype = first.device, first.dtype
    except StopIteration:
        device, dtype = torch.device("cpu"), torch.float32
    x = torch.randn(batch_size, *input_size, device=device, dtype=dtype)
    was_training = model.training
    model.eval()
    try:
        dynamic = _outermost_dynamic(model)
        plain = {n: m for n, m in model.named_modules()
                 if isinstance(m, CONV_TYPES) and not any(n.startswith(p + ".") for p in dynamic)}
        analysis = FlopCountAnalysis(model, (x,))
        analysis._ignored_ops = set()  # report every op without a handle instead of skipping it silently
        analysis.set_op_handle(**default_handles())
        analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        logging.getLogger("fvcore.nn.jit_analysis").setLevel(logging.ERROR)
        # MACs are the method's, not an autotuner's pick: the per-sample convs run one given strategy (by default
        # one grouped conv); layers take the paths eager runs (not the batch-independent ones an export captures)
        with _record_output_sizes(dynamic) as sizes, use_strategy(strategy), eager_paths():  # one forward
            total = analysis.total()
        if any(not v for v in sizes.values()):  # a layer the trace did not call through its hooks
            with _record_output_sizes(dynamic) as sizes, torch.no_grad(), use_strategy(strategy):
                model(x)
        by_module = analysis.by_module()
        by_op = analysis.by_operator()
        unsupported = dict(analysis.unsupported_ops())
    finally:
        model.train(was_training)

    def per_image(v: float) -> float:
        return v / batch_size

    rows = []
    conv_total = 0.0
    overhead_total = 0.0
    names = {n: i for i, (n, _) in enumerate(model.named_modules())}
    for name in sorted(set(dynamic) | set(plain), key=lambda n: names.get(n, 0)):
        module = dynamic[name] if name in dynamic else plain[name]
        inside = per_image(by_module.get(analysis.canonical_module_name(name), 0))
        if name in dynamic:
            conv = float(sum(layer_conv_macs(name, module, hw) for hw in sizes[name]))
            if conv > inside + 0.5:
                raise ValueError(f"converted layer {name!r} ({type(module).__name__}) declares {conv:,.0f} conv MACs "
                                 f"per image but {inside:,.0f} were counted inside it: check its conv_macs()")
            overhead = inside - conv
        else:
            conv, overhead = inside, 0.0
        conv_total += conv
        overhead_total += overhead
        rows.append({"name": name, "type": type(module).__name__, "dynamic": name in dynamic,
                     "conv_macs": int(round(conv)), "overhead_macs": int(round(overhead)),
                     "macs": int(round(inside)), "params": _module_params(module)})
    macs = int(round(per_image(total)))
    conv_macs, overhead_macs = int(round(conv_total)), int(round(overhead_total))
    cats = count_params(model)
    rows.append({"name": "(other)", "type": "", "dynamic": False, "conv_macs": 0, "overhead_macs": 0,
                 "macs": macs - conv_macs - overhead_macs, "params": None})
    rows.append({"name": "(total)", "type": "", "dynamic": False, "conv_macs": conv_macs,
                 "overhead_macs": overhead_macs, "macs": macs, "params": cats["total"]})
    breakdown = pd.DataFrame(rows)
    breakdown["params"] = breakdown["params"].astype("Int64")
    return Profile(
        params=cats["total"], macs=macs, conv_macs=conv_macs, overhead_macs=overhead_macs,
        breakdown=breakdown, unsupported=unsupported,
        by_operator={k: int(round(per_image(v))) for k, v in by_op.items()},
        params_by_category=cats, deployed_params=deployed_param_count(model), input_size=tuple(input_size),
        batch_size=batch_size,
    )
