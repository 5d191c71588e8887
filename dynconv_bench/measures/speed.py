"""The `speed` kind: inference throughput and batch-1 latency, or training-step throughput, timed on one device."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from ..metrics.env import MALLOC_SETTINGS, malloc_environment
from ..metrics.timing_result import SpeedResult
from ..models.config_param import Param
from ..models.modelspec import ModelSpec
from .base import Kind, Metric, Record, record, register_kind
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
        "processes": Param(None, "fresh worker processes per cell, one after another, each importing once and "
                                 "building its models once, the later ones with the first one's run counts and tuned "
                                 "strategies; the ratio is the median of every round of every process, with a 95% "
                                 "bootstrap interval (default: 3 on CPU, 1 on CUDA; 0: in the runner's process, "
                                 "for debugging)", type=int, min=0, max=100),
        "malloc": Param("steady", "glibc malloc in the worker processes: 'steady' fixes its mmap and trim "
                                  "thresholds (64 MiB, 256 MiB) so no process drifts into faulting in fresh pages "
                                  "every run; 'inherit' keeps the runner's environment (results/README.md compares them)",
                        type=str, choices=MALLOC_SETTINGS),
        "num_gpus": GPUS,
    }


BASELINE = "static"
DEFAULT_PROCESSES = {"cpu": 3, "cuda": 1}


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
    result = SpeedResult
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
    def processes(cls, opts: MeasureOptions) -> int:
        return DEFAULT_PROCESSES[str(opts.device).split(":")[0]] if opts.processes is None else int(opts.processes)

    @classmethod
    def worker_environment(cls, opts: MeasureOptions) -> dict[str, str]:
        return malloc_environment(opts.malloc)

    @classmethod
    def calibration(cls, first: SpeedResult) -> dict[str, Any] | None:
        """The first process's run counts (per round when interleaved), as pyperf reuses its calibrated loops, and
        its tuned per-sample conv strategies (`strategy_plan`): every later process runs the same ones."""
        if first.status != "ok":
            return None
        out: dict[str, Any] = {"runs_per_round": dict(first.runs_per_round)} if first.rounds else {"runs": first.runs}
        if first.strategy_plan:
            out["strategy_plan"] = dict(first.strategy_plan)
        return out

    @classmethod
    def combine(cls, results: Sequence[SpeedResult]) -> SpeedResult:
        from ..metrics.timing_result import combine_processes

        return combine_processes(list(results))

    @classmethod
    def measure(cls, spec: ModelSpec, opts: MeasureOptions) -> SpeedResult:
        """One process's measurement (the runner combines those of several fresh processes)."""
        from ..metrics.timing import check_cuda_graph, machine_load
        from ..models.triton_conv import dot_precisions

        before = machine_load()
        if opts.cuda_graph:
            check_cuda_graph(opts.mode, opts.device, opts.compile, opts.interleave)
        from ..models.per_sample_conv import follow_plan

        calibration = getattr(opts, "calibration", None) or {}
        with follow_plan(calibration.get("strategy_plan")):  # the first process's tuned strategies, if handed on
            out = cls._interleaved(spec, opts, calibration) if opts.interleave else cls._alone(spec, opts, calibration)
        after = machine_load()
        loads = [x["load_avg"] for x in (before, after) if x["load_avg"] is not None]
        out.load_avg, out.cores, out.cpu_mhz = (max(loads) if loads else None), after["cores"], after["cpu_mhz"]
        # what each side's convs ran in ('tf32', 'fp32', 'bf16', ...): cuDNN (static's), the fused kernel, matmuls
        out.precisions = dot_precisions(out.device, None if opts.precision == "fp32" else opts.precision)
        return out

    @classmethod
    def _alone(cls, spec: ModelSpec, opts: MeasureOptions, calibration: Mapping[str, Any]) -> SpeedResult:
        from ..metrics import timing
        from ..models.convert import deploy

        model = spec.build(opts.num_classes)
        kw: dict[str, Any] = {"device": opts.device, "threads": opts.threads, "channels_last": opts.channels_last,
                              "amp": None if opts.precision == "fp32" else opts.precision, "compile": opts.compile}
        for key in ("warmup", "min_time", "min_runs"):  # None: the harness's per-device default
            if getattr(opts, key) is not None:
                kw[key] = getattr(opts, key)
        if calibration.get("runs"):  # the first process's run count, exactly
            kw.update(min_time=0.0, min_runs=int(calibration["runs"]), max_runs=int(calibration["runs"]))
        size = tuple(opts.input_size)
        if opts.mode == "train":
            return timing.measure_train_step(model, opts.batch_size, size, opts.num_classes, **kw)
        return timing.measure_inference(deploy(model) if opts.deploy else model, opts.batch_size, size,
                                        cuda_graph=opts.cuda_graph, **kw)

    @classmethod
    def _interleaved(cls, spec: ModelSpec, opts: MeasureOptions, calibration: Mapping[str, Any]) -> SpeedResult:
        """Time this model and the baseline round-robin; own times pooled, ratio per round (median, min, max)."""
        from ..metrics.paired_timing import measure_paired
        from ..models.convert import deploy

        models = [spec.build(opts.num_classes),
                  dataclasses.replace(spec, variant=BASELINE, config={}, preset=None).build(opts.num_classes)]
        if opts.mode != "train" and opts.deploy:
            models = [deploy(m) for m in models]
        return measure_paired(*models, opts.mode, opts.batch_size, tuple(opts.input_size), opts.interleave,
                              opts.device, opts.threads, opts.warmup, opts.min_time, opts.min_runs or 1,
                              opts.channels_last, None if opts.precision == "fp32" else opts.precision,
                              opts.compile, opts.num_classes, calibration.get("runs_per_round"))

    @classmethod
    def records(cls, options: Mapping[str, Any], result: SpeedResult) -> list[Record]:
        dims = {"device": options.get("device", "cpu"), "precision": options.get("precision", "fp32"),
                "channels_last": bool(options.get("channels_last", False)),
                "compile": bool(options.get("compile", False))}
        if options.get("cuda_graph"):  # replays of a captured graph: a column apart from the eager one
            dims["cuda_graph"] = True
        mode, batch = options.get("mode", "inference"), options.get("batch_size")
        flags = result.flags
        if result.interval_source == "processes":  # an older row: the min-max of its per-process ratios
            flags = (*flags, "process-range")
        ratio, interval = result.baseline_ratio, result.ratio_interval
        out = record("throughput", result.throughput, "img/s", mode=mode, batch_size=batch, **dims)
        if batch == 1 and mode != "train":
            out += record("latency", result.latency_ms, "ms", batch_size=1, **dims)
        return [dataclasses.replace(r, flags=flags, ratio=ratio, ratio_range=interval) for r in out]  # latency's: the speed-up too
