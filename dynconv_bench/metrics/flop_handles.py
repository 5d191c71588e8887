"""fvcore op handles for everything a model here runs, so that no op is skipped or ignored.

Conventions (one multiply-add = 1 MAC, like fvcore and the papers' "MAdds"):
- conv, linear, matmul/bmm/einsum: the multiply-adds of the contraction (fvcore's formulas); a
  grouped conv costs C_out * C_in/groups * kh * kw per output position, so a per-sample conv run with
  the batch folded into the channels (groups = B * g) is counted correctly;
- elementwise arithmetic and activations (add, mul, div, sub, relu, sigmoid, hardswish, silu, gelu,
  softmax, ...): 1 per output element (0 for 0-d results: the tracer's shape arithmetic);
- batch norm in eval mode: 1 per element (it folds to one multiply-add y = a * x + b);
  group/layer/instance norm keep fvcore's estimate (5 per element with affine, 4 without);
- reductions and pooling: adaptive_avg_pool / mean / sum: 1 per input element; avg/max pooling:
  kernel area per output element;
- views, reshapes, indexing, concatenation, copies (im2col: unfold), dropout (eval), tensor creation: 0 (supported).
"""

from __future__ import annotations

from collections.abc import Callable
from math import prod
from typing import Any

from fvcore.nn.jit_analysis import _IGNORED_OPS
from fvcore.nn.jit_handles import (
    addmm_flop_jit,
    bmm_flop_jit,
    conv_flop_jit,
    einsum_flop_jit,
    get_shape,
    linear_flop_jit,
    matmul_flop_jit,
    norm_flop_counter,
)

Handle = Callable[[list[Any], list[Any]], float]


def _numel(val: Any) -> int:
    shape = get_shape(val)
    return int(prod(shape)) if shape is not None else 0


def per_output_element(scale: int = 1) -> Handle:
    """`scale` MACs per element of the op's first output."""

    def handle(inputs: list[Any], outputs: list[Any]) -> float:
        shape = get_shape(outputs[0])
        # 0-d results are shape arithmetic recorded by the tracer (e.g. batch * channels): free
        return scale * int(prod(shape)) if shape else 0

    return handle


def per_input_element(inputs: list[Any], outputs: list[Any]) -> float:
    """1 MAC per element of the op's first input (reductions, global pooling)."""
    return _numel(inputs[0])


def zero(inputs: list[Any], outputs: list[Any]) -> float:
    """Free ops: views, copies, indexing, tensor creation."""
    return 0


def _int_list(val: Any) -> list[int] | None:
    """The constant int list a jit value holds (directly or through prim::ListConstruct)."""
    try:
        k = val.toIValue()
    except Exception:
        k = None
    if k is None and val.node().kind() == "prim::ListConstruct":
        try:
            k = [v.toIValue() for v in val.node().inputs()]
        except Exception:
            return None
    if isinstance(k, int):
        return [k]
    if isinstance(k, list | tuple) and all(isinstance(v, int) for v in k):
        return list(k)
    return None


def _kernel_area(val: Any, dims: int) -> int:
    k = _int_list(val)
    if not k:
        raise ValueError("pooling kernel size is not a constant")
    if len(k) == 1:
        k = k * dims
    return int(prod(k))


def pool_handle(inputs: list[Any], outputs: list[Any]) -> float:
    """Avg/max pooling: kernel area per output element (`aten::*_pool2d(x, kernel_size, ...)`)."""
    out_shape = get_shape(outputs[0])
    return _kernel_area(inputs[1], max(len(out_shape) - 2, 1)) * int(prod(out_shape))


def batch_norm_handle(inputs: list[Any], outputs: list[Any]) -> float:
    """Eval batch norm: 1 per element; training mode: fvcore's norm estimate."""
    training = inputs[5].toIValue()
    if training:
        return norm_flop_counter(1)(inputs, outputs)
    return _numel(inputs[0])


def conv_handle(inputs: list[Any], outputs: list[Any]) -> float:
    """`aten::conv*d(x, w, ...)`: C_in/groups * kernel area per output element."""
    w = get_shape(inputs[1])
    return _numel(outputs[0]) * int(prod(w[1:]))


def conv_any(inputs: list[Any], outputs: list[Any]) -> float:
    """`aten::_convolution` (fvcore's handle, which also covers transposed convs)."""
    return conv_flop_jit(inputs, outputs)["conv"]


ELEMENTWISE = [
    "add", "add_", "sub", "sub_", "rsub", "mul", "mul_", "div", "div_", "neg", "abs", "reciprocal",
    "pow", "sqrt", "rsqrt", "exp", "log", "square", "addcmul", "addcdiv", "where", "lerp",
    "relu", "relu_", "relu6", "relu6_", "leaky_relu", "leaky_relu_", "elu", "elu_", "prelu", "hardtanh",
    "hardtanh_", "hardswish", "hardswish_", "hardsigmoid", "hardsigmoid_", "silu", "silu_", "gelu",
    "gelu_", "mish", "mish_", "sigmoid", "sigmoid_", "tanh", "tanh_", "softplus", "clamp", "clamp_",
    "clamp_min", "clamp_min_", "clamp_max", "clamp_max_", "softmax", "_softmax", "log_softmax",
    "_log_softmax", "masked_fill", "masked_fill_", "maximum", "minimum", "fill_", "floor",
    "floor_divide", "remainder", "eq", "ne", "ge", "gt", "le", "lt", "__and__", "bitwise_not",
]
REDUCTIONS = ["mean", "sum", "amax", "amin", "max", "min", "std", "var", "adaptive_avg_pool1d",
              "adaptive_avg_pool2d", "adaptive_avg_pool3d", "adaptive_max_pool2d", "norm", "linalg_vector_norm"]
POOLS = ["avg_pool1d", "avg_pool2d", "avg_pool3d", "max_pool1d", "max_pool2d", "max_pool3d",
         "max_pool2d_with_indices"]
FREE = sorted({op.split("::", 1)[1] for op in _IGNORED_OPS} | {
    "view_as", "reshape_as", "flatten", "unflatten", "expand_as", "repeat", "repeat_interleave", "tile",
    "clone", "dropout", "dropout_", "feature_dropout", "alpha_dropout", "feature_alpha_dropout", "pad",
    "reflection_pad2d", "replication_pad2d", "ones_like", "empty_like", "rand", "randn", "rand_like",
    "randn_like", "numel", "dim", "lift_fresh", "alias", "movedim", "swapaxes", "pixel_shuffle",
    "pixel_unshuffle", "channel_shuffle", "roll", "flip", "contiguous", "as_strided", "resolve_conj",
    "resolve_neg", "scalar_tensor", "tensor", "sort", "topk", "argmax", "argmin", "index_select",
    "scatter", "scatter_", "zero_", "new_ones", "new_tensor", "__getitem__", "__or__", "__not__",
    "detach_", "requires_grad_", "set_", "im2col",
} - set(ELEMENTWISE) - set(REDUCTIONS))


def default_handles() -> dict[str, Handle]:
    """Every op handle the profiler registers (fvcore's defaults replaced where conventions differ)."""
    handles: dict[str, Handle] = {f"aten::{op}": zero for op in FREE}
    handles.update({f"aten::{op}": per_output_element() for op in ELEMENTWISE})
    handles.update({f"aten::{op}": per_input_element for op in REDUCTIONS})
    handles.update({f"aten::{op}": pool_handle for op in POOLS})
    handles.update({
        "aten::_convolution": conv_any,
        "aten::conv1d": conv_handle, "aten::conv2d": conv_handle, "aten::conv3d": conv_handle,
        "aten::convolution": conv_handle,
        "aten::addmm": addmm_flop_jit, "aten::bmm": bmm_flop_jit, "aten::baddbmm": bmm_flop_jit,
        "aten::mm": matmul_flop_jit, "aten::matmul": matmul_flop_jit, "aten::linear": linear_flop_jit,
        "aten::einsum": einsum_flop_jit,
        "aten::batch_norm": batch_norm_handle,
        "aten::group_norm": norm_flop_counter(2), "aten::layer_norm": norm_flop_counter(2),
        "aten::instance_norm": norm_flop_counter(1),
        "aten::upsample_nearest2d": per_output_element(), "aten::upsample_bilinear2d": per_output_element(4),
    })
    return handles
