"""Per-sample kernels described lazily: a mixture of K kernels (optionally scaled per sample) or of warehouse cells.

`per_sample_conv` takes either in place of a (B, C_out, C_in/g, kh, kw) tensor; its strategies materialise the
kernels (all at once, or one sample at a time) or, the fused one, never do.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["CellMixture", "KernelMixture", "aggregate_kernels"]


@dataclass(frozen=True)
class KernelMixture:
    """Per-sample kernels given lazily as attention (B, K) over a bank (K, C_out, C_in/g, kh, kw) and its biases.

    Attention None means the one kernel bank[0] for every sample. Per-sample scales of
    input channels (B, C_in), output channels (B, C_out) and taps (B, kh, kw) multiply the kernel (not the bias).
    """

    attention: torch.Tensor | None
    bank: torch.Tensor
    bias_bank: torch.Tensor | None = None
    channel: torch.Tensor | None = None
    filter: torch.Tensor | None = None
    spatial: torch.Tensor | None = None

    @property
    def batch(self) -> int:
        return next(t.shape[0] for t in (self.attention, self.channel, self.filter, self.spatial) if t is not None)

    def weight(self) -> torch.Tensor:
        if self.attention is None:
            return self._scaled(self.bank[0].expand(self.batch, *self.bank.shape[1:]), slice(None))
        return self._scaled(aggregate_kernels(self.attention, self.bank), slice(None))

    def bias(self) -> torch.Tensor | None:
        if self.bias_bank is None:
            return None
        if self.attention is None:
            return self.bias_bank[0].expand(self.batch, -1)
        return self.attention.to(self.bias_bank.dtype) @ self.bias_bank

    def __getitem__(self, i: int) -> torch.Tensor:
        """Sample i's kernel alone (the loop strategy aggregates each just before its conv, while in cache)."""
        if self.attention is None:
            w = self.bank[0]
        else:
            w = (self.attention[i].to(self.bank.dtype) @ self.bank.reshape(self.bank.shape[0], -1)
                 ).view(self.bank.shape[1:])
        return self._scaled(w.unsqueeze(0), slice(i, i + 1))[0]

    def _scaled(self, w: torch.Tensor, rows: slice) -> torch.Tensor:
        b, cout, cin_g = w.shape[:3]
        if self.spatial is not None:
            w = w * self.spatial[rows].reshape(b, 1, 1, *w.shape[3:]).to(w.dtype)
        if self.channel is not None:  # input channel g * C_in/g + j scales column j of group g's filters
            g = self.channel.shape[1] // cin_g
            ch = self.channel[rows].reshape(b, g, 1, cin_g).expand(b, g, cout // g, cin_g)
            w = w * ch.reshape(b, cout, cin_g, 1, 1).to(w.dtype)
        if self.filter is not None:
            w = w * self.filter[rows].reshape(b, cout, 1, 1, 1).to(w.dtype)
        return w

    def detach(self) -> KernelMixture:
        return KernelMixture(*(None if t is None else t.detach() for t in (
            self.attention, self.bank, self.bias_bank, self.channel, self.filter, self.spatial)))


@dataclass(frozen=True)
class CellMixture:
    """Per-sample kernels assembled from warehouse cells, lazily: cell attention (B, m, n) over cells (n, c_o, c_i, 1, 1).

    `layout` is (kh*kw, C_out/c_o, (C_in/g)/c_i, c_o, c_i): mixture index (tap, out block, in block).
    """

    attention: torch.Tensor
    cells: torch.Tensor
    layout: tuple[int, int, int, int, int]
    kernel_size: tuple[int, int]

    @property
    def shape(self) -> tuple[int, ...]:
        gs, go, gi, co, ci = self.layout
        return (self.attention.shape[0], go * co, gi * ci, *self.kernel_size)

    def weight(self) -> torch.Tensor:
        a, b = self.attention, self.attention.shape[0]
        cells = self.cells.reshape(self.cells.shape[0], -1)
        w = torch.mm(a.reshape(-1, a.shape[-1]).to(cells.dtype), cells)  # (B*m, c_o*c_i)
        gs, go, gi, co, ci = self.layout
        w = w.view(b, gs, go, gi, co, ci).permute(0, 2, 4, 3, 5, 1)
        return w.reshape(self.shape)

    def bias(self) -> None:
        return None

    def detach(self) -> CellMixture:
        return CellMixture(self.attention.detach(), self.cells.detach(), self.layout, self.kernel_size)


def aggregate_kernels(attention: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
    """Per-sample kernels sum_k attention[b, k] * bank[k] as one matmul: (B, K) x (K, ...) -> (B, ...)."""
    flat = torch.mm(attention.to(bank.dtype), bank.reshape(bank.shape[0], -1))  # autocast still applies
    return flat.view(attention.shape[0], *bank.shape[1:])
