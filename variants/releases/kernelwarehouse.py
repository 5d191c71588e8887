"""KernelWarehouse official release (github.com/OSVAI/KernelWarehouse): kw_resnet18 / kw_resnet50, 1x and 4x.

Release layout: each KW conv holds only its attention (`<conv>.attention.fc1 / norm1 / fc2`); the cells live in
`warehouse_manager.weights.<i>` (n, c_o, c_i, 1, 1), warehouse i being the i-th created (stage order). Ours: the
attention as `<conv>.fc1 / norm / fc2` and the warehouse (n, c_o, c_i) as one Parameter shared by its convs, the
i-th warehouse being the i-th met in module order. Cells are cut and assembled in the same order (mixture index =
(tap, output block, input block)), so the tensors map one to one. A trained model runs at temperature 0 (the
release's `temp_value` after its schedule, and at construction).
"""

from __future__ import annotations

import re

import torch
from torch import nn

from dynconv_bench.models.published import EvalTransform, Pair, PaperResult, Placement, register_pair

TRANSFORM = EvalTransform(256, 224, "bicubic", source="KernelWarehouse datasets.py build_transform: "
                                                      "Resize(int(224 / 0.875), bicubic), CenterCrop(224), ImageNet "
                                                      "default mean/std")
README = "KernelWarehouse README (ImageNet top-1 of the released models)"
_ATTENTION = re.compile(r"(.+)\.attention\.(fc1|norm1|fc2)\.(.+)$")
_WAREHOUSE = re.compile(r"warehouse_manager\.weights\.(\d+)$")
_RENAME = {"fc1": "fc1", "norm1": "norm", "fc2": "fc2"}


def warehouses_of(model: nn.Module) -> list[list[str]]:
    """Our warehouses in module order, each as the state_dict keys of its (shared) cells."""
    order: dict[int, list[str]] = {}
    for name, module in model.named_modules():
        cells = getattr(module, "warehouse", None)
        if isinstance(cells, nn.Parameter):
            order.setdefault(id(cells), []).append(f"{name}.warehouse")
    return list(order.values())


def _place(key: str, tensor: torch.Tensor, model: nn.Module) -> Placement | None:
    m = _ATTENTION.match(key)
    if m is not None:
        return [(f"{m.group(1)}.{_RENAME[m.group(2)]}.{m.group(3)}", tensor)]
    m = _WAREHOUSE.match(key)
    if m is not None:
        groups = warehouses_of(model)
        i = int(m.group(1))
        if i >= len(groups):
            return [(f"(warehouse {i}: ours has {len(groups)})", tensor)]
        cells = tensor.reshape(tensor.shape[:3]) if tensor.dim() == 5 and tensor.shape[3:] == (1, 1) else tensor
        return [(name, cells) for name in groups[i]]
    return [(key, tensor)]


_KW = {"temperature": 0.0, "reduction": 0.0625, "sharing": "stage", "handover": "auto", "policy": "no-stem"}
# the release's Bottleneck leaves the first block's conv1 and its stride-1 shortcut static (no previous stage
# to take cells from: `enabled=(conv1_stage_idx >= 0)`, `enabled=(stride != 1)`)
_POLICY = {"resnet18": "no-stem", "resnet50": r"re:^layer(?!1\.0\.(conv1|downsample))"}
for arch, backbone, ratio, top1 in (("resnet18_1x", "resnet18", 1.0, 74.77), ("resnet18_4x", "resnet18", 4.0, 76.05),
                                    ("resnet50_1x", "resnet50", 1.0, 80.38), ("resnet50_4x", "resnet50", 4.0, 81.05)):
    register_pair(Pair("kernelwarehouse", arch, backbone, "kernelwarehouse", {**_KW, "cell_num_ratio": ratio,
                                                                                  "policy": _POLICY[backbone]}, _place,
                       TRANSFORM, "fc.weight", PaperResult(top1, README),
                       f"kw_{backbone}(cell_num_ratio={ratio:g}, sharing_range='layer_conv')"))


# -- test fixtures (scripts/make_release_fixtures.py finds them through this module's entry point) ---------------
FIXTURE_CASES = [("resnet18_1x", 10, 32, ["layer1.0", "layer2.0.conv1", "layer2.0.downsample"]),
                 ("resnet18_4x", 10, 32, ["layer1.0", "layer2.0.conv1", "layer2.0.downsample"])]


def fixture_builders(get):  # noqa: ANN001, ANN201
    """arch -> f(num_classes) building the release's own model; `get(module, name)` imports from the checkout."""
    return {f"resnet{d}_{k}x": (lambda n, d=d, k=k: get("models.kw_resnet", f"kw_resnet{d}")(
        num_classes=n, cell_num_ratio=k, sharing_range="layer_conv", reduction=0.0625)) for d in ("18", "50")
        for k in (1, 4)}


def fixture_tensors(model: nn.Module, modules: list[str]) -> dict[str, torch.Tensor]:
    """The warehouses the saved layers take their cells from (saved beside the layers' own tensors)."""
    sd = model.state_dict()
    used = {mod.warehouse_id for m in modules for mod in model.get_submodule(m).modules()
            if hasattr(mod, "warehouse_id")}
    return {f"warehouse_manager.weights.{i}": sd[f"warehouse_manager.weights.{i}"].clone() for i in sorted(used)}
