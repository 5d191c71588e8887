"""The `speed` kind: inference throughput and batch-1 latency, or training-step throughput, timed on one device."""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import UserError
from ..models.modelspec import ModelSpec
from ..models.variant import Param
from .base import Kind, Metric, Record, Result, record, register_kind
from .options import (
    BATCHES,
    DEVICE,
    GPUS,
    MAX_SECONDS,
    MODEL,
    MODES_PARAM,
    PRECISIONS,
    SELECT,
    THREADS,
    MeasureOptions,
)


class SpeedOptions(MeasureOptions):
    params = {
        **SELECT, **MODEL, "device": DEVICE, "batch_sizes": BATCHES, "modes": MODES_PARAM, "threads": THREADS,
        "precision": Param("fp32", "fp32, or autocast to fp16/bf16", type=str, choices=PRECISIONS),
        "channels_last": Param(False, "channels_last memory format for model and input"),
        "compile": Param(False, "torch.compile the model first"),
        "warmup": Param(None, "untimed runs first (default: 3 on CPU, 20 on CUDA)", type=int, min=0, max=100_000),
        "min_time": Param(None, "seconds of timed runs at least (default: 1.0)", type=float, min=0.0,
                          max=MAX_SECONDS),
        "min_runs": Param(None, "timed runs at least (default: 5)", type=int, min=1, max=1_000_000),
        "deploy": Param(True, "time the deployed (folded) form in inference"),
        "cuda_graph": Param(False, "inference on CUDA: time replays of the forward captured in a CUDA graph "
                                   "(the GPU work without Python and launch overhead)"),
        "interleave": Param(0, "rounds of round-robin timing with the baseline (static) in the same process, "
                               "order reversed every other round; the ratio is taken per round; min_time is split over the rounds, "
                               "min_runs holds in each (0: off)",
                            type=int, min=0, max=1000),
        "num_gpus": GPUS,
    }


BASELINE = "static"
LOAD_SLACK = 0.5  # cores of load above the core count before a value is marked as measured under load


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
    cuda_graph: bool = False  # replays of a captured CUDA graph were timed
    rounds: int = 0  # interleaved rounds with the baseline (0: timed alone)
    baseline_ratio: float | None = None  # median over rounds of baseline time / own time (> 1: faster)
    baseline_ratio_min: float | None = None
    baseline_ratio_max: float | None = None
    load_avg: float | None = None  # the higher 1-minute load average of before and after the cell
    cores: int | None = None
    cpu_mhz: float | None = None

    @property
    def under_load(self) -> bool:
        """Measured while more work wanted to run than the machine has cores: the 1-minute load average (which
        counts the cell's own threads and lags by design) above the core count by more than half a core."""
        return self.load_avg is not None and self.cores is not None and self.load_avg > self.cores + LOAD_SLACK


def speed_setting(d: Mapping[str, Any]) -> str:
    """Device, precision and options of a speed record, e.g. `cpu`, `cuda bf16 cl compiled`, `cuda graph`."""
    prec = "" if d.get("precision", "fp32") == "fp32" else f" {d['precision']}"
    return (f"{d.get('device', 'cpu')}{prec}{' cl' if d.get('channels_last') else ''}"
            f"{' compiled' if d.get('compile') else ''}{' graph' if _is_set(d.get('cuda_graph')) else ''}")


def _is_set(flag: Any) -> bool:
    return flag is not None and flag == flag and bool(flag)  # a dimension absent from a frame's row is NaN


@register_kind
class Speed(Kind):
    name = "speed"
    order = 2
    options = SpeedOptions
    result = SpeedValues
    headline = "throughput"
    headline_shown = ("throughput", "img/s", 1.0, True)
    timed = True
    metrics = {
        "latency": Metric(lambda d, u: f"latency {speed_setting(d)} b{d.get('batch_size')} ({u})", 5,
                          compare="speedup", higher_is_better=False, timed=True),
        "throughput": Metric(lambda d, u: (f"{'train' if d.get('mode') == 'train' else 'infer'} {speed_setting(d)} "
                                           f"b{d.get('batch_size')} ({u})"), 10, timed=True),
    }

    @classmethod
    def measure(cls, spec: ModelSpec, opts: MeasureOptions) -> SpeedValues:
        from ..metrics.interleave import machine_load

        before = machine_load()
        if opts.interleave and opts.cuda_graph:
            raise UserError("speed: interleave and cuda_graph cannot be combined yet; time graphs alone")
        out = cls._interleaved(spec, opts) if opts.interleave else cls._alone(spec, opts)
        after = machine_load()
        loads = [x["load_avg"] for x in (before, after) if x["load_avg"] is not None]
        out.load_avg, out.cores, out.cpu_mhz = (max(loads) if loads else None), after["cores"], after["cpu_mhz"]
        return out

    @classmethod
    def _alone(cls, spec: ModelSpec, opts: MeasureOptions) -> SpeedValues:
        from ..metrics import speed
        from ..models.convert import deploy

        model = spec.build(opts.num_classes)
        kw: dict[str, Any] = {"device": opts.device, "threads": opts.threads, "channels_last": opts.channels_last,
                              "amp": None if opts.precision == "fp32" else opts.precision, "compile": opts.compile}
        for key in ("warmup", "min_time", "min_runs"):  # None: the harness's per-device default
            if getattr(opts, key) is not None:
                kw[key] = getattr(opts, key)
        size = tuple(opts.input_size)
        if opts.cuda_graph:
            speed.check_cuda_graph(opts.mode, speed.resolve_device(opts.device), opts.compile)
        if opts.mode == "train":
            result = speed.measure_train_step(model, opts.batch_size, size, opts.num_classes, **kw)
        else:
            result = speed.measure_inference(deploy(model) if opts.deploy else model, opts.batch_size, size,
                                             cuda_graph=opts.cuda_graph, **kw)
        return SpeedValues.from_values(result.to_dict())

    @classmethod
    def _interleaved(cls, spec: ModelSpec, opts: MeasureOptions) -> SpeedValues:
        """Time this model and the baseline round-robin; own times pooled, ratio per round (median, min, max)."""
        import dataclasses

        from ..metrics.interleave import measure_paired
        from ..models.convert import deploy

        models = [spec.build(opts.num_classes),
                  dataclasses.replace(spec, variant=BASELINE, config={}, preset=None).build(opts.num_classes)]
        if opts.mode != "train" and opts.deploy:
            models = [deploy(m) for m in models]
        result, ratios = measure_paired(*models, opts.mode, opts.batch_size, tuple(opts.input_size), opts.interleave,
                                        opts.device, opts.threads, opts.warmup, opts.min_time, opts.min_runs or 1,
                                        opts.channels_last, None if opts.precision == "fp32" else opts.precision,
                                        opts.compile, opts.num_classes)
        out = SpeedValues.from_values(result.to_dict())
        out.rounds = opts.interleave
        out.baseline_ratio = statistics.median(ratios)
        out.baseline_ratio_min, out.baseline_ratio_max = min(ratios), max(ratios)
        return out

    @classmethod
    def records(cls, options: Mapping[str, Any], result: SpeedValues) -> list[Record]:
        dims = {"device": options.get("device", "cpu"), "precision": options.get("precision", "fp32"),
                "channels_last": bool(options.get("channels_last", False)),
                "compile": bool(options.get("compile", False))}
        if options.get("cuda_graph"):  # replays of a captured graph: a column apart from the eager one
            dims["cuda_graph"] = True
        mode, batch = options.get("mode", "inference"), options.get("batch_size")
        flags = ("load",) if result.under_load else ()
        ratio = result.baseline_ratio
        out = record("throughput", result.throughput, "img/s", mode=mode, batch_size=batch, **dims)
        if batch == 1 and mode != "train":
            out += record("latency", result.latency_ms, "ms", batch_size=1, **dims)
        return [dataclasses.replace(r, flags=flags, ratio=ratio) for r in out]  # latency's: the speed-up too
