"""The `speed` kind: inference throughput and batch-1 latency, or training-step throughput, timed on one device."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..models.modelspec import ModelSpec
from ..models.variant import Param
from .base import Kind, Metric, Record, Result, record, register_kind
from .options import BATCHES, DEVICE, GPUS, MODEL, MODES_PARAM, PRECISIONS, SELECT, THREADS, MeasureOptions


class SpeedOptions(MeasureOptions):
    params = {
        **SELECT, **MODEL, "device": DEVICE, "batch_sizes": BATCHES, "modes": MODES_PARAM, "threads": THREADS,
        "precision": Param("fp32", "fp32, or autocast to fp16/bf16", type=str, choices=PRECISIONS),
        "channels_last": Param(False, "channels_last memory format for model and input"),
        "compile": Param(False, "torch.compile the model first"),
        "warmup": Param(None, "untimed runs first (default: 3 on CPU, 20 on CUDA)", type=int, min=0),
        "min_time": Param(None, "seconds of timed runs at least (default: 1.0)", type=float, min=0.0),
        "min_runs": Param(None, "timed runs at least (default: 5)", type=int, min=1),
        "deploy": Param(True, "time the deployed (folded) form in inference"),
        "num_gpus": GPUS,
    }


@dataclass
class SpeedValues(Result):
    """One timed cell: per-run seconds summarised (one run processes one batch) and what it ran with."""

    mode: str = "inference"
    batch_size: int | None = None
    input_size: list[int] = field(default_factory=list)
    device: str = "cpu"
    threads: int | None = None
    runs: int = 0
    median_s: float | None = None
    iqr_s: float | None = None
    min_s: float | None = None
    max_s: float | None = None
    mean_s: float | None = None
    throughput: float | None = None
    latency_ms: float | None = None
    warmup: int = 0
    min_time: float = 0.0
    channels_last: bool = False
    amp: str | None = None
    compile: bool = False
    peak_memory_bytes: int | None = None
    strategies: dict[str, int] = field(default_factory=dict)  # per-sample conv strategy -> layers using it


def speed_setting(d: Mapping[str, Any]) -> str:
    """Device, precision and options of a speed record, e.g. `cpu`, `cuda bf16 cl compiled`."""
    prec = "" if d.get("precision", "fp32") == "fp32" else f" {d['precision']}"
    return f"{d.get('device', 'cpu')}{prec}{' cl' if d.get('channels_last') else ''}{' compiled' if d.get('compile') else ''}"


@register_kind
class Speed(Kind):
    name = "speed"
    order = 2
    options = SpeedOptions
    result = SpeedValues
    headline = "throughput"
    timed = True
    metrics = {
        "latency": Metric(lambda d, u: f"latency {speed_setting(d)} b{d.get('batch_size')} ({u})", 5,
                          higher_is_better=False),
        "throughput": Metric(lambda d, u: (f"{'train' if d.get('mode') == 'train' else 'infer'} {speed_setting(d)} "
                                           f"b{d.get('batch_size')} ({u})"), 10, higher_is_better=True),
    }

    @classmethod
    def measure(cls, spec: ModelSpec, opts: MeasureOptions) -> SpeedValues:
        from ..metrics import speed
        from ..models.convert import deploy

        model = spec.build(opts.num_classes)
        kw: dict[str, Any] = {"device": opts.device, "threads": opts.threads, "channels_last": opts.channels_last,
                              "amp": None if opts.precision == "fp32" else opts.precision, "compile": opts.compile}
        for key in ("warmup", "min_time", "min_runs"):  # None: the harness's per-device default
            if getattr(opts, key) is not None:
                kw[key] = getattr(opts, key)
        size = tuple(opts.input_size)
        if opts.mode == "train":
            result = speed.measure_train_step(model, opts.batch_size, size, opts.num_classes, **kw)
        else:
            result = speed.measure_inference(deploy(model) if opts.deploy else model, opts.batch_size, size, **kw)
        return SpeedValues.from_values(result.to_dict())

    @classmethod
    def records(cls, options: Mapping[str, Any], result: SpeedValues) -> list[Record]:
        dims = {"device": options.get("device", "cpu"), "precision": options.get("precision", "fp32"),
                "channels_last": bool(options.get("channels_last", False)),
                "compile": bool(options.get("compile", False))}
        mode, batch = options.get("mode", "inference"), options.get("batch_size")
        out = record("throughput", result.throughput, "img/s", mode=mode, batch_size=batch, **dims)
        if batch == 1 and mode != "train":
            out += record("latency", result.latency_ms, "ms", batch_size=1, **dims)
        return out
