"""The TF32 switches are read and set through the installed torch's own API, and restored after a block."""

from __future__ import annotations

import pytest
import torch

from dynconv_bench.models import tf32
from dynconv_bench.models.tf32 import conv_tf32, matmul_tf32, tf32_switches


@pytest.mark.parametrize("conv", [True, False])
@pytest.mark.parametrize("matmul", [True, False])
def test_switches_set_read_and_restore(conv, matmul):
    before = conv_tf32(), matmul_tf32()
    with tf32_switches(conv=conv, matmul=matmul):
        assert (conv_tf32(), matmul_tf32()) == (conv, matmul)
    assert (conv_tf32(), matmul_tf32()) == before


@pytest.mark.skipif(not tf32._NEW_API, reason="torch without fp32_precision")
def test_new_api_settings_are_read_with_inheritance():
    """A switch set by the new API, on the op or inherited from the global, is what the reader reports."""
    b = torch.backends
    saved = b.fp32_precision, b.cudnn.conv.fp32_precision, b.cuda.matmul.fp32_precision
    try:
        b.cudnn.conv.fp32_precision = "ieee"
        b.cuda.matmul.fp32_precision = "tf32"
        assert (conv_tf32(), matmul_tf32()) == (False, True)
        b.cudnn.conv.fp32_precision = b.cuda.matmul.fp32_precision = "none"  # inherit from the global
        b.fp32_precision = "tf32"
        assert (conv_tf32(), matmul_tf32()) == (True, True)
        b.fp32_precision = "ieee"
        assert (conv_tf32(), matmul_tf32()) == (False, False)
    finally:
        b.fp32_precision = saved[0]
        b.cudnn.conv.fp32_precision, b.cuda.matmul.fp32_precision = saved[1], saved[2]
