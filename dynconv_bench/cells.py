"""Measure one cell by calling the metrics and training APIs; never raises (failures become results)."""

from __future__ import annotations

import functools
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from .modelspec import ModelSpec
from .options import MeasureOptions
from .store import utcnow
from .suite import Cell


@functools.lru_cache(maxsize=1)
def environment() -> dict[str, Any]:
    """The environment of this process (cached: collected once per worker)."""
    try:
        from .metrics.env import collect_environment

        return collect_environment()
    except Exception as exc:  # the store still gets the basics
        import platform

        return {"host": platform.node(), "torch": torch.__version__, "error": f"{type(exc).__name__}: {exc}"}


def measure_params(spec: ModelSpec, o: MeasureOptions) -> dict[str, Any]:
    from .convert import deploy
    from .metrics.params import count_params

    model = spec.build(o.num_classes)
    report = getattr(model, "dynconv_report", None)
    out = {**count_params(model), "deployed": count_params(deploy(model))}
    if report is not None:
        out["converted_layers"] = len(report.converted)
        out["total_convs"] = report.total_convs
        out["no_layer_converted"] = report.nothing_converted
        out["no_conversion_reason"] = report.reason
    return out


def measure_macs(spec: ModelSpec, o: MeasureOptions) -> dict[str, Any]:
    from .metrics.flops import profile

    model = spec.build(o.num_classes).eval()
    out = profile(model, input_size=tuple(o.input_size)).to_dict()
    out.pop("breakdown", None)  # per-layer tables are large; the layers kind keeps timing per layer
    return out


def measure_speed(spec: ModelSpec, o: MeasureOptions) -> dict[str, Any]:
    from .convert import deploy
    from .metrics import speed

    model = spec.build(o.num_classes)
    kw: dict[str, Any] = {"device": o.device, "threads": o.threads, "channels_last": o.channels_last,
                          "amp": None if o.precision == "fp32" else o.precision, "compile": o.compile}
    for key in ("warmup", "min_time", "min_runs"):  # None: the harness's per-device default
        if getattr(o, key) is not None:
            kw[key] = getattr(o, key)
    if o.mode == "train":
        result = speed.measure_train_step(model, o.batch_size, tuple(o.input_size), o.num_classes, **kw)
    else:
        result = speed.measure_inference(deploy(model) if o.deploy else model, o.batch_size, tuple(o.input_size),
                                         **kw)
    return result.to_dict()


def measure_memory(spec: ModelSpec, o: MeasureOptions) -> dict[str, Any]:
    from .metrics.memory import peak_memory

    return peak_memory(spec, batch_size=o.batch_size, input_size=tuple(o.input_size), mode=o.mode, device=o.device,
                       num_classes=o.num_classes)


def measure_accuracy(spec: ModelSpec, o: MeasureOptions) -> dict[str, Any]:
    from .data import dataset_info
    from .training import train_and_evaluate
    from .training.recipes import default_recipe

    info = dataset_info(o.dataset, root=o.data_root)
    torch.manual_seed(o.seed)  # the same initial weights for the same seed
    model = spec.build(info["num_classes"], info.get("channels", 3))
    kw: dict[str, Any] = dict(o.overrides or {})
    kw["recipe"] = o.recipe or default_recipe(o.dataset)
    if o.epochs is not None:
        kw["epochs"] = o.epochs
    dataset: Any = o.dataset
    if o.train_samples:
        from .training.recipes import get_recipe

        size = kw.pop("image_size", None) or get_recipe(kw["recipe"]).image_size or info["image_size"]
        dataset = training_subset(o, info, size)
    out = train_and_evaluate(model, dataset, seed=o.seed, data_root=o.data_root, device=o.device, **kw)
    return {**out, "threads": torch.get_num_threads()}


def training_subset(o: MeasureOptions, info: dict[str, Any], size: int) -> tuple:
    """(a subset of `train_samples` training items drawn with the cell's seed, the full test split)."""
    from torch.utils.data import Subset

    from .data import get_dataset

    train = get_dataset(o.dataset, "train", o.data_root, image_size=size)  # the same data as the full-split path
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(o.seed)).tolist()
    subset = Subset(train, order[: o.train_samples])
    subset.num_classes = info["num_classes"]  # type: ignore[attr-defined]
    subset.name = o.dataset  # type: ignore[attr-defined]
    return subset, get_dataset(o.dataset, "test", o.data_root, image_size=size)


def layer_latency(model: nn.Module, input_size: Sequence[int], batch_size: int = 1, repeats: int = 5,
                  warmup: int = 2) -> list[dict[str, Any]]:
    """Median forward time of every leaf module and converted layer, from hooks around each call."""
    from .variant import DynamicLayer

    model = model.eval()
    targets = [(n, m) for n, m in model.named_modules()
               if n and (isinstance(m, DynamicLayer) or not any(True for _ in m.children()))]
    inside = {n for n, m in targets if isinstance(m, DynamicLayer)}
    targets = [(n, m) for n, m in targets if not any(n.startswith(p + ".") for p in inside)]
    times: dict[str, list[float]] = {n: [] for n, _ in targets}
    starts: dict[str, float] = {}
    handles = []
    for name, mod in targets:
        handles.append(mod.register_forward_pre_hook(lambda m, a, n=name: starts.__setitem__(n, time.perf_counter())))
        handles.append(mod.register_forward_hook(
            lambda m, a, r, n=name: times[n].append(time.perf_counter() - starts[n])))
    x = torch.randn(batch_size, *input_size)
    try:
        with torch.no_grad():
            for i in range(warmup + repeats):
                if i == warmup:
                    for v in times.values():
                        v.clear()
                model(x)
    finally:
        for h in handles:
            h.remove()
    out = []
    for name, mod in targets:
        if times[name]:
            ts = sorted(times[name])
            out.append({"layer": name, "type": type(mod).__name__, "time_ms": 1000 * ts[len(ts) // 2],
                        "calls": len(ts) // repeats})
    return out


def measure_layers(spec: ModelSpec, o: MeasureOptions) -> dict[str, Any]:
    from .convert import deploy

    model = deploy(spec.build(o.num_classes))
    layers = layer_latency(model, tuple(o.input_size), o.batch_size, o.repeats)
    return {"status": "ok", "layers": layers, "total_ms": sum(r["time_ms"] for r in layers),
            "batch_size": o.batch_size, "threads": torch.get_num_threads()}


def measure_deploy(spec: ModelSpec, o: MeasureOptions) -> dict[str, Any]:
    from .convert import deploy
    from .metrics.export import TARGETS, calibrate_batchnorm, deploy_matrix

    model = spec.build(o.num_classes)
    calibrated = calibrate_batchnorm(model, tuple(o.input_size))  # outputs O(1), as in a trained model
    kw = {"min_time": o.min_time} if o.min_time is not None else {}
    out = deploy_matrix(deploy(model), tuple(o.input_size), o.targets or TARGETS, **kw)
    return {**out, "batchnorms_calibrated": calibrated}


MEASURES: dict[str, Callable[[ModelSpec, MeasureOptions], dict[str, Any]]] = {
    "params": measure_params, "macs": measure_macs, "speed": measure_speed, "memory": measure_memory,
    "accuracy": measure_accuracy, "layers": measure_layers,
    "deploy": measure_deploy,
}


def run_cell(cell: Cell | dict[str, Any], plugins: Sequence[str] = ()) -> dict[str, Any]:
    """Measure one cell: {values, status, error, environment, started, finished}; never raises."""
    started = utcnow()
    values: dict[str, Any] | None = None
    try:
        cell = cell if isinstance(cell, Cell) else Cell.from_dict(cell)
        spec = cell.model_spec(plugins)
        spec.load_plugins()
        o = cell.opts
        threads = torch.get_num_threads()
        try:
            if getattr(o, "threads", None):  # a fixed, recorded thread count for this cell only
                torch.set_num_threads(int(o.threads))
            values = MEASURES[cell.kind](spec, o)
        finally:
            torch.set_num_threads(threads)
        if not isinstance(values, dict):
            values = {"value": values}
        status = values.get("status", "ok")
        status = "ok" if status in ("ok", None) else "failed"
        error = values.get("error") if status == "failed" else None
        if status == "failed" and not error:
            error = f"{cell.kind} measurement reported status {values.get('status')!r}"
    except Exception as exc:
        status, error = "failed", _error_text(exc)
    return {"values": values, "status": status, "error": error, "environment": environment(),
            "started": started, "finished": utcnow()}


def _error_text(exc: BaseException) -> str:
    tb = traceback.extract_tb(exc.__traceback__)
    where = f" (at {tb[-1].filename.rsplit('/', 1)[-1]}:{tb[-1].lineno})" if tb else ""
    return f"{type(exc).__name__}: {exc}{where}"
