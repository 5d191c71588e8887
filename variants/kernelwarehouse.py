"""KernelWarehouse (Li, Yao; ICML 2024): kernels assembled from cells of a warehouse shared across a stage.

Kernel partition: a layer's kernel (C_out, C_in/groups, kh, kw) is cut into m = (C_out/c_o) * (C_in/groups/c_i)
* kh*kw cells of shape (c_o, c_i, 1, 1) (the release partitions spatially, so cells are 1x1).
Warehouse sharing: the layers of one warehouse share n = int(cell_num_ratio * sum of their m) cells (or
the few more that the starting assignment below needs, which no released setting does); c_o and
c_i are the gcds of the members' output / input widths times `cell_outplane_ratio` / `cell_inplane_ratio`.
Contrasting-driven attention: per layer, GAP -> linear (no bias) -> BN -> ReLU -> linear to m x (n + 1)
logits; each mixture's n + 1 logits are divided by the sum of their absolute values (plus 1e-3), so
attentions may be negative; the last one weighs an all-zero cell and is dropped. Each cell of the kernel is
sum_j alpha_ij e_j, then one conv per sample.
Temperature (the release's "temperature initialisation"): alpha = (1 - tau) * alpha + tau * beta, where
beta selects one cell per mixture (each layer starts from its own cells); tau goes linearly from
`temperature` (1) to 0 over the first `anneal_epochs` epochs (release: 20 of 300 epochs for ResNets, 15 of
150 for MobileNetV2), or `anneal_fraction` of the run, and over at least `anneal_min_iters` steps. Counted
as a fraction of a short run (the first version here) tau reached 0 after a few dozen steps of a fresh
network and digits trained to 24%; counted in epochs as the release does, 94%.

Which convs share a warehouse (the release builds this into its models; here from the conv sites):
- a stage's convs, plus the entry convs of the next stage's first block (`handover`): for blocks without
  a depthwise conv, the convs that read the block's input (ResNet: conv1 and the shortcut); for blocks
  with one (inverted residuals), the whole first block; a head conv joins the last block's warehouse;
- within that, `sharing`: one warehouse ("stage": the release's ResNets, sharing_range layer_conv),
  one for depthwise and one for the other convs ("kind": MobileNetV2 1x, sharing_range layer+pwconv),
  or one per position in the block ("position": MobileNetV2 4x, sharing_range layer); the default
  ("auto") is kind on a model with depthwise convs, else stage. One warehouse for depthwise and dense
  convs together would cut cells to the depthwise width (1 input channel) and give each layer an
  attention of millions of logits.
Beyond the release (any timm CNN): a warehouse whose members' widths share only a small divisor (GhostNet's
92-, 100- and 240-channel ghost modules share 4) would cut kernels into thousands of tiny cells and give each
layer an attention of millions of logits (16 GB on ghostnet_100); such a group is split, first fit, into
warehouses whose cells cut no member into more than `max_mixtures` (32, the release's largest; groups within
it, every released one included, stay whole). Sizes are planned from the sites first and a group over
`max_group_mb` is refused before anything is allocated.
The release's MobileNetV2 also converts the stem (`policy="all"`); its ResNets do not (the default).
Not implemented: the release's `nonlocal_basis_ratio` < 1 (off in every released config).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from dynconv_bench import Param, StageContext, UserError, Variant
from dynconv_bench.models.conv_spec import ConvGeometry, ConvSpec
from dynconv_bench.models.layers import batchnorm_any_batch
from dynconv_bench.models.per_sample_conv import CellMixture, per_sample_conv
from dynconv_bench.models.sites import ConvSite
from dynconv_bench.models.variant import MAX_CHANNELS, MAX_KERNELS

from ._temperature import AnnealedLayer, TemperatureSchedule, temperature_params
from ._warehouse_plan import attention_width, plan_warehouses

__all__ = ["KernelWarehouse", "KWConv2d", "assign_cells", "warehouse_keys"]


def assign_cells(num_mixtures: int, num_cells: int, start: int, cell_num_ratio: float) -> tuple[torch.Tensor, int]:
    """The release's attention initialisation: a (num_mixtures, num_cells + 1) 0/1 target and the next free cell.

    With ratio >= 1 each mixture starts from its own cell (int(ratio) cells reserved per mixture); with
    ratio < 1 only some mixtures get a cell, the others start from the zero cell (the last column).
    """
    beta = torch.zeros(num_mixtures, num_cells + 1)
    if cell_num_ratio >= 1.0:
        step = int(cell_num_ratio)
        for i in range(num_mixtures):
            if start < num_cells:
                beta[i, start] = 1.0
            start += step
        return beta, start
    per = int(1.0 / cell_num_ratio)
    for i in range(num_mixtures):
        if i % per == (i // per) % per:
            if start < num_cells:
                beta[i, start] = 1.0
            start += 1
        else:
            beta[i, num_cells] = 1.0
    return beta, start


class KWConv2d(ConvGeometry, AnnealedLayer, nn.Module):
    """A conv whose kernel is assembled per sample from cells of a (shared) warehouse."""

    def __init__(self, conv: nn.Conv2d, warehouse: nn.Parameter, start_cell: int, cell_num_ratio: float = 1.0,
                 reduction: float = 0.0625, min_channels: int = 16,
                 temperature: float | TemperatureSchedule = 1.0) -> None:
        super().__init__()
        self.geometry = ConvSpec.from_conv(conv)
        self.warehouse = warehouse  # the same Parameter in every layer of the warehouse: counted once
        self.bias = conv.bias
        num_cells, co, ci = warehouse.shape
        kh, kw = self.kernel_size
        cin_g = self.in_channels // self.groups
        if self.out_channels % co or cin_g % ci:
            raise ValueError(f"cells ({co}, {ci}) do not tile a kernel ({self.out_channels}, {cin_g})")
        self.layout = (kh * kw, self.out_channels // co, cin_g // ci, co, ci)
        self.num_mixtures = kh * kw * (self.out_channels // co) * (cin_g // ci)
        hidden = attention_width(self.in_channels, reduction, min_channels)
        self.fc1 = nn.Linear(self.in_channels, hidden, bias=False)
        self.norm = nn.BatchNorm2d(hidden)  # on (B, hidden, 1, 1): the release's BatchNorm1d, batch-1 safe
        self.fc2 = nn.Linear(hidden, self.num_mixtures * (num_cells + 1))
        for fc in (self.fc1, self.fc2):
            nn.init.kaiming_normal_(fc.weight, mode="fan_out", nonlinearity="relu")
        nn.init.zeros_(self.fc2.bias)
        beta, self.end_cell = assign_cells(self.num_mixtures, num_cells, start_cell, cell_num_ratio)
        if self.end_cell > num_cells:
            raise ValueError(f"warehouse of {num_cells} cells is too small for its layers (cell_num_ratio "
                             f"{cell_num_ratio})")
        self.register_buffer("beta", beta.to(warehouse.device), persistent=False)
        self.start_cell = start_cell
        self.schedule = (temperature if isinstance(temperature, TemperatureSchedule)
                         else TemperatureSchedule.constant(temperature))
        self.temperature = float(self.schedule.start)

    @torch.no_grad()
    def init_own_cells(self) -> None:
        """Kaiming-normal (fan_out) initialisation of the cells this layer starts from."""
        if self.end_cell > self.start_cell:
            cells = self.warehouse.data[self.start_cell:self.end_cell]
            # viewed as (cells * c_o, c_i, 1, 1): the fan-out the release's initialisation sees
            nn.init.kaiming_normal_(cells.view(-1, cells.shape[-1], 1, 1), mode="fan_out", nonlinearity="relu")

    def set_progress(self, progress: float) -> None:
        """tau follows the schedule (by default 1 -> 0 over the first 20 epochs, as the release)."""
        self.temperature = self.schedule.at(progress)

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """Cell attentions of shape (B, m, n): contrasting-driven, mixed with the initial assignment."""
        b = x.shape[0]
        s = self.fc1(x.mean((2, 3)))
        s = F.relu(batchnorm_any_batch(self.norm, s.view(b, -1, 1, 1)).view(b, -1))
        a = self.fc2(s).view(b, self.num_mixtures, -1)
        a = a / (a.abs().sum(-1, keepdim=True) + 1e-3)
        tau = self.temperature
        if tau != 0:
            a = (1.0 - tau) * a + tau * self.beta.to(a.dtype)
        return a[..., :-1]

    def cell_mixture(self, x: torch.Tensor) -> CellMixture:
        """Per-sample kernels as cell attentions over the warehouse (assembled only where a strategy needs them)."""
        return CellMixture(self.attention(x), self.warehouse, self.layout, self.kernel_size)

    def kernels(self, x: torch.Tensor) -> torch.Tensor:
        """Per-sample kernels (B, C_out, C_in/groups, kh, kw) assembled from the warehouse."""
        return self.cell_mixture(x).weight()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.cell_mixture(x)
        x, padding = self.geometry.pad(x)
        out = per_sample_conv(x, weight, None, self.stride, padding, self.dilation, self.groups)
        if self.bias is not None:
            out = out + self.bias.view(1, -1, 1, 1).to(out.dtype)
        return out

    def param_categories(self) -> dict[str, str]:
        out = {"warehouse": "conv"}
        if self.bias is not None:
            out["bias"] = "conv"
        return out

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"groups={self.groups}, cells={tuple(self.warehouse.shape)}, mixtures={self.num_mixtures}")


def _block_input_channels(sites: Sequence[ConvSite]) -> int:
    return next((s.in_channels for s in sites if s.role != "shortcut"), sites[0].in_channels)


def warehouse_keys(sites: Sequence[ConvSite], handover: str = "auto", sharing: str = "auto") -> list[tuple]:
    """The warehouse each site belongs to, as hashable keys (same key = same warehouse)."""
    if sharing == "auto":  # the release's choice: one per stage for ResNets, by kind where depthwise convs are
        sharing = "kind" if any(s.is_depthwise for s in sites) else "stage"
    blocks: dict[str, list[ConvSite]] = {}
    for s in sites:
        if s.role in ("block", "shortcut"):
            blocks.setdefault(s.block or s.stage, []).append(s)
    stage_order = list(dict.fromkeys(s.stage for s in sites if s.role in ("block", "shortcut")))
    first_block = {}
    for name, members in blocks.items():
        first_block.setdefault(members[0].stage, name)
    target: dict[str, str] = {}
    for s in sites:
        if s.role in ("stem", "attention") or s.role == "head":
            continue
        target[s.name] = s.stage
        i = stage_order.index(s.stage)
        block = s.block or s.stage
        if handover == "none" or i == 0 or first_block.get(s.stage) != block:
            continue
        members = blocks[block]
        mode = handover
        if mode == "auto":
            mode = "block" if any(m.is_depthwise for m in members) else "input"
        if mode == "block" or s.in_channels == _block_input_channels(members):
            target[s.name] = stage_order[i - 1]
    last = target[[s for s in sites if s.name in target][-1].name] if target else "head"
    keys = []
    for s in sites:
        stage = target.get(s.name, last if s.role == "head" else s.stage)
        if sharing == "stage":
            sub: object = ""
        elif sharing == "kind":
            sub = "dw" if s.is_depthwise else "other"
        else:  # position within the block, counted from its end; a shortcut takes the first position
            sub = _position(s, blocks.get(s.block or s.stage, [s]))
        keys.append((stage, sub))
    return keys


def _position(site: ConvSite, members: Sequence[ConvSite]) -> object:
    if site.is_depthwise:
        return "dw"
    if site.role not in ("block", "shortcut"):
        return -1
    main = [m for m in members if m.role == "block" and not m.is_depthwise]
    if site.role == "shortcut" or site not in main:
        return -len(main)
    return main.index(site) - len(main)


class KernelWarehouse(Variant):
    """KernelWarehouse: per-sample kernels assembled from cells of warehouses shared across a stage."""

    paper = "Li, Yao. KernelWarehouse: Rethinking the Design of Dynamic Convolution. ICML 2024"
    year = 2024
    params = {
        "cell_num_ratio": Param(1.0, "warehouse cells / cells the member layers are cut into (the paper's "
                                     "n: '1x' = 1, '4x' = 4, '1/2x' = 0.5)", type=float, min=1e-3, max=MAX_KERNELS),
        "cell_inplane_ratio": Param(1.0, "cell input width / gcd of the members' input widths", type=float,
                                    min=1e-3, max=1.0),
        "cell_outplane_ratio": Param(1.0, "cell output width / gcd of the members' output widths", type=float,
                                     min=1e-3, max=1.0),
        "reduction": Param(0.0625, "attention width = max(int(C_in * reduction), min_channels)", type=float,
                           min=1e-6, max=1.0),
        "min_channels": Param(16, "floor of the attention width", min=1, max=MAX_CHANNELS),
        **temperature_params("the attention", end=0.0, epochs=20.0, start_param=Param(
            1.0, "initial weight of the starting cell assignment in the attention", type=float, min=0.0, max=1.0)),
        "sharing": Param("auto", "warehouses per stage: one (stage), depthwise vs other (kind), per block "
                                 "position (position); auto: kind where the model has depthwise convs, else stage",
                         choices=("auto", "stage", "kind", "position")),
        "handover": Param("auto", "which convs of a stage's first block use the previous stage's warehouse",
                          choices=("auto", "input", "block", "none")),
        "max_mixtures": Param(32, "split a warehouse whose cells (at cell ratios 1) would cut a member's kernel into "
                                  "more than this many (the release's largest: 32); 0 never splits", min=0),
        "max_group_mb": Param(1024.0, "refuse (before allocating) a warehouse whose cells and member attention "
                                      "exceed this many MiB", type=float, min=0.0),
        "policy": Param("no-stem", "which convs get kernels from a warehouse", type=str),
    }

    # the release's configurations whose parameter counts tests/test_kernelwarehouse.py checks exactly
    presets = {
        "paper": {"resnet18": {},
                  "mobilenetv2_100": {"sharing": "kind", "policy": "all", "anneal_epochs": 15.0}},
        "paper-4x": {"resnet18": {"cell_num_ratio": 4.0},
                     "mobilenetv2_100": {"cell_num_ratio": 4.0, "sharing": "position", "policy": "all",
                                         "anneal_epochs": 15.0}},
        "paper-half": {"resnet18": {"cell_num_ratio": 0.5, "cell_inplane_ratio": 0.5, "cell_outplane_ratio": 0.5}},
    }

    def convert_model(self, stages: list[StageContext]) -> dict[str, nn.Module]:
        sites = sorted((s for ctx in stages for s in ctx.sites), key=lambda s: s.index)
        if not sites:
            return {}
        c = self.cfg
        groups: dict[tuple, list[ConvSite]] = {}
        for key, site in zip(warehouse_keys(sites, c["handover"], c["sharing"]), sites):
            groups.setdefault(key, []).append(site)
        plans = plan_warehouses(groups, c)
        limit = c["max_group_mb"] * 2**20
        over = [p for p in plans if p.nbytes(p.members[0].conv.weight.element_size()) > limit]
        if over:  # refuse before allocating anything; name the largest group
            worst = max(over, key=lambda p: p.numel)
            more = f" (and {len(over) - 1} more over the bound)" if len(over) > 1 else ""
            raise UserError(f"{self.name or 'kernelwarehouse'}: {worst.describe()}, over max_group_mb="
                            f"{c['max_group_mb']:g}{more}; raise max_group_mb, or split warehouses further (sharing="
                            f"'position', a smaller max_mixtures) or use fewer cells (cell_num_ratio < 1)")
        out: dict[str, nn.Module] = {}
        for plan in plans:
            ref = plan.members[0].conv.weight
            # 3-D (cells, c_o, c_i): Module.to(memory_format=...) converts only 4-D and 5-D tensors
            warehouse = nn.Parameter(torch.randn(plan.num_cells, *plan.cell, device=ref.device, dtype=ref.dtype))
            next_cell = 0
            for site in plan.members:
                layer = KWConv2d(site.conv, warehouse, next_cell, c["cell_num_ratio"], c["reduction"],
                                 c["min_channels"], TemperatureSchedule.from_config(c, end=0.0))
                layer.init_own_cells()
                next_cell = layer.end_cell
                out[site.name] = layer
        return out
