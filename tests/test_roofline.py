"""The cost model (metrics/gpu_cost.py, metrics/roofline.py) against hand counts, not against itself."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dynconv_bench.metrics.gpu_cost import Op, conv_op, record_ops, trace_forward
from dynconv_bench.metrics.roofline import FITTED, GPUS, Constants, forward_time, op_time
from dynconv_bench.models.triton_tiles import ConvProblem

H200 = GPUS["h200"]


def _kernels(ops: list[Op]) -> list[Op]:
    return [o for o in ops if o.kernel]


def test_a_3x3_conv_bn_relu_and_linear_are_charged_their_hand_counted_flops_and_bytes() -> None:
    m = nn.Sequential(nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                      nn.Flatten(), nn.Linear(16, 4)).eval()
    conv, bn, relu, pool, fc = _kernels(record_ops(m, torch.randn(2, 8, 10, 10)))
    # conv: 2 samples x 16 outputs x 10x10 positions x 8 inputs x 9 taps MACs; x, W, y and the bias in fp32
    assert (conv.name, conv.flops, conv.compute) == ("convolution", 2 * 2 * 16 * 100 * 8 * 9, "tf32")
    assert conv.bytes == 4 * (2 * 8 * 100 + 16 * 8 * 9 + 2 * 16 * 100 + 16)
    # inference BN: x read, y written, four per-channel fp32 vectors
    assert (bn.name, bn.bytes) == ("batch_norm", 4 * 2 * 2 * 16 * 100 + 4 * 4 * 16)
    assert (relu.name, relu.bytes) == ("relu", 4 * 2 * 2 * 16 * 100)
    assert (pool.name, pool.bytes) == ("mean", 4 * (2 * 16 * 100 + 2 * 16))
    # the linear layer (an attention branch's fc): addmm of bias (4), x (2, 16), W^T (16, 4), on CUDA cores in
    # fp32 (PyTorch's matmul TF32 switch is off by default)
    assert (fc.name, fc.flops, fc.compute) == ("addmm", 2 * 2 * 4 * 16, "fp32")
    assert fc.bytes == 4 * (4 + 2 * 16 + 16 * 4 + 2 * 4)


def test_bf16_autocast_casts_each_fp32_operand_once_and_runs_the_conv_in_half() -> None:
    m = nn.Conv2d(8, 16, 3, padding=1, bias=False).eval()
    cast_x, cast_w, conv = _kernels(record_ops(m, torch.randn(2, 8, 10, 10), dtype="bf16"))
    assert (cast_x.name, cast_x.bytes) == ("_to_copy", (4 + 2) * 2 * 8 * 100)  # fp32 read, bf16 written
    assert (cast_w.name, cast_w.bytes) == ("_to_copy", (4 + 2) * 16 * 8 * 9)
    assert conv.compute == "half" and conv.bytes == 2 * (2 * 8 * 100 + 16 * 8 * 9 + 2 * 16 * 100)


def test_views_launch_nothing() -> None:
    ops = record_ops(lambda x: x.view(2, -1).t().unsqueeze(0), torch.randn(2, 3, 4))
    assert ops and not _kernels(ops)


def test_depthwise_runs_on_cuda_cores_and_per_sample_groups_are_marked_grouped() -> None:
    dw = conv_op(4, 32, 32, 32, (3, 3), (8, 8), (8, 8), 4, "tf32")
    assert (dw.compute, dw.grouped, dw.flops) == ("fp32", False, 2 * 4 * 32 * 64 * 9)
    per_sample = conv_op(1, 4 * 64, 4 * 64, 4, (3, 3), (8, 8), (8, 8), 4, "tf32")
    assert per_sample.grouped and per_sample.compute == "tf32"


def test_op_time_is_the_larger_of_compute_and_traffic_plus_the_fixed_cost() -> None:
    c = Constants(tensor_tf32=0.5, tensor_half=0.25, memory=0.8, kernel_us=4.0, host_us=10.0)
    compute_bound = Op("convolution", "conv", flops=1e12, bytes=1e6, compute="tf32")
    assert op_time(compute_bound, H200, c) == pytest.approx(1e12 / (H200.tf32 * 0.5) + 4e-6)
    memory_bound = Op("relu", "memory", flops=1e6, bytes=1e9)
    assert op_time(memory_bound, H200, c) == pytest.approx(1e9 / (H200.bandwidth * 0.8) + 4e-6)
    half = Op("convolution", "conv", flops=1e12, bytes=1.0, compute="half")
    assert op_time(half, H200, c) == pytest.approx(1e12 / (H200.half * 0.25) + 4e-6)
    assert op_time(Op("view", "free"), H200, c) == 0.0


def test_odconv_with_spatial_attention_is_never_offered_output_space_but_condconv_is() -> None:
    """per_sample_conv forbids output_space with per-tap (spatial) scales; the model must not charge it."""
    od = trace_forward("cifar_resnet8", "odconv", {"num_kernels": 1}, batch=4, input_size=32)
    cc = trace_forward("cifar_resnet8", "condconv", {"num_kernels": 3}, batch=4, input_size=32)
    assert od.choices and all("output_space" not in ch.options for ch in od.choices)
    assert cc.choices and all({"grouped", "bmm", "output_space"} <= set(ch.options) for ch in cc.choices)
    one = trace_forward("cifar_resnet8", "condconv", {"num_kernels": 3}, batch=1, input_size=32)
    assert {tuple(ch.options) for ch in one.choices} == {("loop",)}  # the tuner's choice at batch 1


def test_each_per_sample_conv_takes_its_cheapest_strategy_and_eager_is_bounded_by_the_host() -> None:
    trace = trace_forward("cifar_resnet8", "condconv", {"num_kernels": 3}, batch=4, input_size=32)
    best, picks = forward_time(trace, H200, FITTED)
    forced = {s: forward_time(trace, H200, FITTED, force=s)[0] for s in ("grouped", "bmm", "output_space")}
    assert sum(picks.values()) == len(trace.choices) and all(best <= t + 1e-15 for t in forced.values())
    kernels = sum(o.kernel for o in trace.ops([picks.most_common(1)[0][0]] * len(trace.choices)))
    slow_host = Constants(*FITTED.as_tuple()[:4], host_us=1000.0)
    assert forward_time(trace, H200, slow_host)[0] >= kernels * 1e-3 * 0.99  # eager: at least the host's time
    assert forward_time(trace, H200, slow_host, mode="graph")[0] < kernels * 1e-3  # a graph replay: no host


# -- fused designs (metrics/fused_designs.py), each against a hand count ----------------------------------------
def _problem(**kw) -> ConvProblem:
    base = dict(batch=4, cin=16, cout=16, groups=1, kernel=(3, 3), out_size=(16, 16), num_k=4, dtype="bf16",
                in_size=(16, 16))
    return ConvProblem(**{**base, **kw})


def test_todays_fused_kernel_mixes_per_row_tile_on_cuda_cores_and_splits_k_when_the_grid_is_small() -> None:
    from dynconv_bench.metrics.fused_designs import today

    # 256 rows of a sample in BM 64 tiles (4 row tiles), BN 16, BK 16; 16 CTAs on 132 SMs: split-K into 2
    (op,) = today(_problem(), H200)
    w = 16 * 16 * 9
    assert op.cuda_flops == 2 * 4 * 4 * 4 * w  # 2 x samples x row tiles x K x weights
    assert op.flops == 2 * 4 * 256 * 16 * 16 * 9 and op.compute == "half"  # no padding here
    assert op.bytes == 2 * (4 * 16 * 256 + 4 * 16 * 256 + 4 * w) + 2 * 4 * (4 * 16 * 256) * 2  # x, y, bank; slices
    assert op.occupancy == pytest.approx(32 / 132)  # 16 tiles x 2 splits


def test_tall_tiles_mix_once_per_256_rows() -> None:
    from dynconv_bench.metrics.fused_designs import tall, tall_tiles, today

    t = tall_tiles(_problem(), H200.sms)
    assert (t.bm, t.bn, t.splits) == (256, 16, 2)  # 256 x (1 + 16 x 4 / 256) beats 64 x 4 x (1 + 16 x 4 / 64)
    (op,), (old,) = tall(_problem(), H200), today(_problem(), H200)
    assert op.cuda_flops == old.cuda_flops / 4 == 2 * 4 * 1 * 4 * 16 * 16 * 9
    assert op.flops == old.flops and op.occupancy == pytest.approx(8 / 132)


def test_several_samples_per_program_mix_with_a_padded_tensor_core_dot_inside_the_register_budget() -> None:
    from dynconv_bench.metrics.fused_designs import ACC, MIXED, samples_dot, samples_tiles, today

    s, bm, bn, bk = samples_tiles(_problem())
    assert (s, bm, bn, bk) == (4, 128, 16, 16) and s * bm * bn <= ACC and s * bk * bn <= MIXED
    (op,) = samples_dot(_problem(), H200)
    w = 16 * 16 * 9
    mixing = 2 * 1 * 2 * 16 * 16 * w  # 2 x sample groups x row tiles x 16 padded rows x K padded to 16 x weights
    assert (op.flops, op.cuda_flops) == (2 * 4 * 256 * 16 * 16 * 9 + mixing, 0.0)
    assert op.occupancy == pytest.approx(2 / 132)
    assert samples_dot(_problem(dtype="fp32", precision="ieee"), H200) == today(
        _problem(dtype="fp32", precision="ieee"), H200)  # no tensor cores to mix on: today's kernel


def test_stream_k_spreads_tiles_times_steps_over_every_sm_and_pays_a_partial_tile_per_cta() -> None:
    from dynconv_bench.metrics.fused_designs import stream_k

    (op,) = stream_k(_problem(), H200)
    work = 16 * 9  # 16 tiles (4 samples x 4 row tiles) x 9 reduction steps on 132 CTAs: 2 steps for the busiest
    assert op.occupancy == pytest.approx(work / (132 * 2))
    assert op.bytes == 2 * (4 * 16 * 256 * 2 + 4 * 16 * 16 * 9) + 2 * 4 * 64 * 16 * 132


def test_the_prediction_prices_every_design_and_keeps_todays_as_fused() -> None:
    from dynconv_bench.metrics.fused_designs import DESIGNS
    from dynconv_bench.metrics.roofline import predict_model

    p = predict_model("cifar_resnet8", "condconv", {"num_kernels": 3}, "h200", 8, "fp32", 32)
    assert set(p.designs) == {*DESIGNS, "best_new"} and p.times["fused"] == p.designs["today"]
    assert p.designs["best_new"] <= min(p.designs[d] for d in DESIGNS if d != "today") + 1e-15
