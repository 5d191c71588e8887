"""Tiles shrunk to fit shared memory still compute the per-sample conv exactly (Triton's CPU interpreter).

`choose_tiles` halves BM down to 16 and switches pipelining off for DCD's widest latents (z is a BM x LP tile):
the kernel then runs 16-row tiles, which no other configuration uses.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dynconv_bench.models import per_sample_conv as psc

pytest.importorskip("triton")


@pytest.fixture
def interpreter(monkeypatch):  # noqa: ANN001, ANN201
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.delenv(psc.STRATEGY_ENV, raising=False)
    yield


def test_a_1024_wide_low_rank_residual_runs_16_row_tiles_and_equals_the_reference(interpreter):
    from dynconv_bench.models.triton_conv import collect_problems, lowrank_conv
    from dynconv_bench.models.triton_tiles import TARGETS, choose_tiles, shared_bytes

    torch.manual_seed(0)
    b, cin, cout, rank = 2, 8, 12, 1024  # DCD's latent_dim maximum
    x = torch.randn(b, cin, 5, 5)
    w0, bias = torch.randn(cout, cin, 1, 1), torch.randn(cout)
    scale, q, pr = torch.rand(b, cout), torch.randn(cin, rank) / 8, torch.randn(b, rank, cout) / 32
    args = (x, w0, bias, scale, q, pr, (1, 1), (0, 0), (1, 1))
    with collect_problems() as problems, torch.no_grad():
        lowrank_conv(*args)
    (p,) = problems
    t = choose_tiles(p)  # no target: a configuration that fits every GPU in TARGETS
    assert (t.bm, t.stages) == (16, 1)
    assert all(shared_bytes(p, t, arch) <= target.smem_block for arch, target in TARGETS.items())
    with torch.no_grad():
        out = lowrank_conv(*args)
        z = torch.einsum("bchw,cl->blhw", x, q)
        ref = scale[:, :, None, None] * F.conv2d(x, w0) + torch.einsum("blhw,blo->bohw", z, pr) + bias[:, None, None]
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
