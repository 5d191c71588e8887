"""DCD: Dynamic Convolution Decomposition (Li et al., "Revisiting Dynamic Convolution via Matrix Decomposition",
ICLR 2021).

W(x) = Lambda(x) W0 + P Phi(x) Q^T: the static kernel W0 (the backbone's conv) scaled per output channel by
the dynamic channel-wise attention Lambda(x), plus a dynamic residual that compresses the input to a latent
space of L channels (Q^T, C_in -> L), fuses the latent channels with a per-sample L x L matrix Phi(x) (dynamic
channel fusion) and expands back (P, L -> C_out). For a k x k kernel the residual sits on the kernel's centre
tap (a 1x1 conv at the conv's stride), as in the paper's extension to k x k kernels.

Dynamic branch (as the official release builds it): GAP -> linear (C_in -> S, no bias) -> a gate
x * hsigmoid(linear(x)) -> two heads, Phi = linear(S -> L*L) and Lambda = hsigmoid(linear(S -> C_out)), with
S = max(max(C_in, L^2) // reduction, min_channels). L = floor(C_in / 2^floor(log2 sqrt(C_in))) (the paper's
choice as this project read it, sqrt(C_in) <= L < 2 sqrt(C_in)) unless `latent_dim` sets it. The release's
code uses L = int(sqrt(C_in)) instead (e.g. 22 rather than 32 for 512 channels; public copies of its
`conv_dy`), and no floor on S.

Defaults differ from the release where the release departs from the paper's equation: the release adds an
identity to Phi and batch norms around it; here the layer computes the paper's W(x) exactly, so one per-sample
kernel and one conv give the same output. Depthwise convs are left static (the release converts only dense
convs); for a grouped conv the residual P Phi Q^T is dense across groups.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from dynconv_bench import DynamicLayer, Param, Variant
from dynconv_bench.models.conv_spec import ConvGeometry, ConvSpec
from dynconv_bench.models.per_sample_conv import forced_strategy, match_memory_format
from dynconv_bench.models.sites import ConvSite
from dynconv_bench.models.triton_conv import lowrank_conv, prefers_fused
from dynconv_bench.models.variant import MAX_CHANNELS

__all__ = ["DCD", "DCDConv2d", "latent_dim"]


def latent_dim(channels: int) -> int:
    """The paper's latent width L = floor(C / 2^floor(log2 sqrt(C)))."""
    return max(channels // 2 ** int(math.floor(math.log2(math.sqrt(channels)))), 1)


class DCDConv2d(ConvGeometry, DynamicLayer, nn.Module):
    """A conv computing Lambda(x) W0 * x + P Phi(x) Q^T * x (the residual on the kernel's centre tap)."""

    def __init__(self, conv: nn.Conv2d, latent: int = 0, reduction: int = 16, min_channels: int = 4) -> None:
        super().__init__()
        if not supported(conv):
            raise ValueError("DCD needs an odd kernel with zero padding given as numbers")
        self.conv = conv  # W0: the backbone's kernel (and bias)
        self.geometry = ConvSpec.from_conv(conv)
        cin, cout = conv.in_channels, conv.out_channels
        self.latent = latent or latent_dim(cin)
        hidden = max(max(cin, self.latent ** 2) // reduction, min_channels)
        self.q = nn.Conv2d(cin, self.latent, 1, bias=False)
        self.p = nn.Conv2d(self.latent, cout, 1, bias=False)
        self.fc = nn.Linear(cin, hidden, bias=False)
        self.gate = nn.Linear(hidden, hidden, bias=False)
        self.fc_phi = nn.Linear(hidden, self.latent ** 2, bias=False)
        self.fc_scale = nn.Linear(hidden, cout, bias=False)
        # the centre tap of output (i, j) reads input (i*s + off, j*s + off); off >= 0 crops, < 0 pads
        kh, kw = conv.kernel_size
        self.offset = tuple(d * (k - 1) // 2 - p for k, d, p in zip((kh, kw), conv.dilation, conv.padding))

    def dynamics(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Lambda (B, C_out) and Phi (B, L, L) of each sample."""
        s = self.fc(x.mean((2, 3)))
        s = s * F.hardsigmoid(self.gate(s))
        phi = self.fc_phi(s).view(-1, self.latent, self.latent)
        return F.hardsigmoid(self.fc_scale(s)), phi

    def _centre(self, x: torch.Tensor) -> torch.Tensor:
        """The input samples the centre tap sees, at the conv's stride: (B, C_in, H_out, W_out)."""
        oh, ow = self.offset
        if oh < 0 or ow < 0:
            x = F.pad(x, [max(-ow, 0)] * 2 + [max(-oh, 0)] * 2)
            oh, ow = max(oh, 0), max(ow, 0)
        h_out = (x.shape[2] - 2 * oh - 1) // self.conv.stride[0] + 1
        w_out = (x.shape[3] - 2 * ow - 1) // self.conv.stride[1] + 1
        sh, sw = self.conv.stride
        return x[:, :, oh:oh + (h_out - 1) * sh + 1:sh, ow:ow + (w_out - 1) * sw + 1:sw]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lam, phi = self.dynamics(x)
        c = self.conv
        if c.groups == 1 and forced_strategy() == "fused" and prefers_fused(x):
            return self._fused(x, lam, phi)
        out = F.conv2d(x, c.weight, None, c.stride, c.padding, c.dilation, c.groups)
        out = out * lam.view(*lam.shape, 1, 1).to(out.dtype)
        z = self.q(self._centre(x))
        b, _, h, w = z.shape
        z = torch.bmm(phi.to(z.dtype), z.reshape(b, self.latent, h * w)).view(b, self.latent, h, w)
        out = out + self.p(z)
        if c.bias is not None:
            out = out + c.bias.view(1, -1, 1, 1).to(out.dtype)
        return out

    def _fused(self, x: torch.Tensor, lam: torch.Tensor, phi: torch.Tensor) -> torch.Tensor:
        """The same sum in one Triton kernel: Lambda-scaled W0 conv plus (P Phi)(Q^T x) at the centre tap."""
        c = self.conv
        pr = torch.matmul(self.p.weight.flatten(1), phi.to(self.p.weight.dtype)).transpose(1, 2)  # (B, L, C_out)
        q = self.q.weight.flatten(1).t()  # (C_in, L)
        out = lowrank_conv(x, c.weight, c.bias, lam, q, pr, c.stride, c.padding, c.dilation)
        return match_memory_format(out, x, exact=True)

    def param_categories(self) -> dict[str, str]:
        """W0 is the conv; P and Q are the static factors of the dynamic residual."""
        out = {"conv.weight": "conv", "q.weight": "modulation", "p.weight": "modulation"}
        if self.conv.bias is not None:
            out["conv.bias"] = "conv"
        return out


def supported(conv: nn.Conv2d) -> bool:
    """Odd kernels with numeric zero padding (the centre tap is defined); not depthwise."""
    return (type(conv) is nn.Conv2d and conv.padding_mode == "zeros" and not isinstance(conv.padding, str)
            and all(k % 2 == 1 for k in conv.kernel_size)
            and not (conv.groups == conv.in_channels and conv.groups > 1))


class DCD(Variant):
    """Dynamic convolution decomposition: static kernel with channel attention plus a low-rank dynamic residual."""

    paper = "Li et al. Revisiting Dynamic Convolution via Matrix Decomposition. ICLR 2021"
    year = 2021
    params = {
        "latent_dim": Param(0, "latent width L of Phi (0: the paper's floor(C_in / 2^floor(log2 sqrt(C_in))))",
                            min=0, max=1024),
        "reduction": Param(16, "dynamic branch width = max(max(C_in, L^2) // reduction, min_channels)", min=1,
                           max=MAX_CHANNELS),
        "min_channels": Param(4, "floor of the dynamic branch width", min=1, max=MAX_CHANNELS),
        "policy": Param("blocks", "which convs become DCD (depthwise and even kernels stay static)", type=str),
    }

    def convert_conv(self, site: ConvSite) -> nn.Module | None:
        if not supported(site.conv):
            return None
        c = self.cfg
        return DCDConv2d(site.conv, c["latent_dim"], c["reduction"], c["min_channels"])
