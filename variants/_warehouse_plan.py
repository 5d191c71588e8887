"""KernelWarehouse sizing: the warehouses and attention sizes of a model, computed from its conv sites before
anything is allocated, and the split that keeps a warehouse's cells at the scale of its layers."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from dynconv_bench import ConfigError
from dynconv_bench.models.sites import ConvSite

__all__ = ["WarehousePlan", "attention_width", "cells_needed", "plan_warehouses"]


def attention_width(in_channels: int, reduction: float, min_channels: int) -> int:
    """Width of a layer's attention bottleneck: max(int(C_in * reduction), min_channels)."""
    return max(int(in_channels * reduction), min_channels)


def cells_needed(num_mixtures: int, start: int, cell_num_ratio: float) -> int:
    """The next free cell after the release's starting assignment hands cells to `num_mixtures` mixtures."""
    if cell_num_ratio >= 1.0:
        return start + num_mixtures * int(cell_num_ratio)
    per = int(1.0 / cell_num_ratio)
    return start + sum(1 for i in range(num_mixtures) if i % per == (i // per) % per)


@dataclass(frozen=True)
class WarehousePlan:
    """One warehouse: its member convs, cell shape, cell count, and per member the mixtures and attention width."""

    label: str  # e.g. "blocks.6 [dw] #2": stage, sub-key, and the part when the group was split
    members: tuple[ConvSite, ...]
    cell: tuple[int, int]  # (c_o, c_i)
    num_cells: int
    mixtures: tuple[int, ...]
    hidden: tuple[int, ...]

    @property
    def warehouse_numel(self) -> int:
        return self.num_cells * self.cell[0] * self.cell[1]

    @property
    def attention_numel(self) -> int:
        """Floats of every member's attention: fc1, BatchNorm (weights and statistics), fc2 and the start target."""
        total = 0
        for site, m, h in zip(self.members, self.mixtures, self.hidden):
            logits = m * (self.num_cells + 1)
            total += site.in_channels * h + 4 * h + (h + 1) * logits + logits
        return total

    @property
    def numel(self) -> int:
        return self.warehouse_numel + self.attention_numel

    def nbytes(self, element_size: int = 4) -> int:
        return self.numel * element_size

    def describe(self) -> str:
        """One line: the group, its convs, its cells and what they cost."""
        names = self.members[0].name if len(self.members) == 1 else f"{self.members[0].name} .. {self.members[-1].name}"
        return (f"warehouse group {self.label!r} ({len(self.members)} convs: {names}) needs {self.nbytes() / 2**20:,.1f} "
                f"MiB: {self.num_cells} cells of {self.cell[0]}x{self.cell[1]} ({self.warehouse_numel:,} floats) and "
                f"attention over up to {max(self.mixtures)} mixtures x {self.num_cells + 1} cells "
                f"({self.attention_numel:,} floats)")


def _cell_shape(members: Sequence[ConvSite], out_ratio: float, in_ratio: float) -> tuple[int, int, int, int]:
    gcd_out = math.gcd(*(s.out_channels for s in members))
    gcd_in = math.gcd(*(s.in_channels // s.groups for s in members))
    return max(int(gcd_out * out_ratio), 1), max(int(gcd_in * in_ratio), 1), gcd_out, gcd_in


def _fits(site: ConvSite, members: Sequence[ConvSite], max_mixtures: int) -> bool:
    """Whether cells cut from the gcds of the members' widths (ratios 1) cut `site` into at most `max_mixtures`."""
    co, ci, _, _ = _cell_shape(members, 1.0, 1.0)
    positions = site.kernel_size[0] * site.kernel_size[1]
    units = (site.out_channels // co) * (site.in_channels // site.groups // ci)
    return units * positions <= max(max_mixtures, positions)  # a conv on its own always fits


def split_by_width(members: Sequence[ConvSite], max_mixtures: int) -> list[list[ConvSite]]:
    """First-fit split so that no member is cut into more than `max_mixtures` cells (at cell ratios 1).

    A group whose members all fit stays whole (every prefix of it fits too), so the release's warehouses are
    unchanged; a group mixing widths with a small common divisor (ghost modules' 92-, 100- and 240-channel
    convs share only 4) is split into warehouses of compatible widths. `max_mixtures` 0 never splits.
    """
    if max_mixtures <= 0:
        return [list(members)]
    parts: list[list[ConvSite]] = []
    for site in members:
        for part in parts:
            trial = [*part, site]
            if all(_fits(s, trial, max_mixtures) for s in trial):
                part.append(site)
                break
        else:
            parts.append([site])
    return parts


def plan_warehouses(groups: dict[tuple, list[ConvSite]], cfg: dict) -> list[WarehousePlan]:
    """The warehouses of a model (members in model order), sized from the sites alone: nothing is allocated."""
    plans = []
    for key, members in groups.items():
        parts = split_by_width(members, cfg["max_mixtures"])
        for i, part in enumerate(parts):
            stage, sub = key
            label = stage + (f" [{sub}]" if sub != "" else "") + (f" #{i + 1}" if len(parts) > 1 else "")
            plans.append(_plan_one(label, part, cfg))
    return plans


def _plan_one(label: str, members: list[ConvSite], cfg: dict) -> WarehousePlan:
    co, ci, gcd_out, gcd_in = _cell_shape(members, cfg["cell_outplane_ratio"], cfg["cell_inplane_ratio"])
    if gcd_out % co or gcd_in % ci:
        raise ConfigError(f"kernelwarehouse: cells of {co}x{ci} channels do not tile layers whose widths have gcds "
                          f"{gcd_out}x{gcd_in}; choose cell_outplane_ratio/cell_inplane_ratio = 1/k")
    mixtures = tuple((s.out_channels // co) * (s.in_channels // s.groups // ci) * s.kernel_size[0] * s.kernel_size[1]
                     for s in members)
    needed = 0  # at least the cells the starting assignment hands out (equal in every released setting)
    for m in mixtures:
        needed = cells_needed(m, needed, cfg["cell_num_ratio"])
    num_cells = max(int(sum(mixtures) * cfg["cell_num_ratio"]), needed, 1)
    hidden = tuple(attention_width(s.in_channels, cfg["reduction"], cfg["min_channels"]) for s in members)
    return WarehousePlan(label, tuple(members), (co, ci), num_cells, mixtures, hidden)
