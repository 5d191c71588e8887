"""Measure one cell by calling the metrics and training APIs; never raises (failures become results)."""

from __future__ import annotations

import functools
import json
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from .store import utcnow
from .suite import Cell

RESULT_MARKER = "@@dynconv-bench-result@@"
_PLUGINS: list[str] = []  # plugin files of the current cell (memory cells pass them to their subprocess)


@functools.lru_cache(maxsize=1)
def environment() -> dict[str, Any]:
    """The environment of this process (cached: collected once per worker)."""
    try:
        from .metrics.env import collect_environment

        return collect_environment()
    except Exception as exc:  # the store still gets the basics
        import platform

        return {"host": platform.node(), "torch": torch.__version__, "error": f"{type(exc).__name__}: {exc}"}


def build_model(cell: Cell, num_classes: int | None = None, in_chans: int = 3) -> nn.Module:
    """The backbone converted with the cell's variant and config."""
    import timm

    from .convert import convert, create_model
    from .registry import load_architectures

    load_architectures()
    classes = num_classes if num_classes is not None else cell.options.get("num_classes", 1000)
    if in_chans == 3:
        return create_model(cell.backbone, cell.variant_name, num_classes=classes, **cell.config)
    model = timm.create_model(cell.backbone, pretrained=False, num_classes=classes, in_chans=in_chans)
    return convert(model, cell.variant_name, **cell.config)


def measure_params(cell: Cell) -> dict[str, Any]:
    from .convert import deploy
    from .metrics.params import count_params

    model = build_model(cell)
    report = getattr(model, "dynconv_report", None)
    out = {**count_params(model), "deployed": count_params(deploy(model))}
    if report is not None:
        out["converted_layers"] = len(report.converted)
        out["total_convs"] = report.total_convs
    return out


def measure_macs(cell: Cell) -> dict[str, Any]:
    from .metrics.flops import profile

    model = build_model(cell).eval()
    prof = profile(model, input_size=tuple(cell.options["input_size"]))
    out = prof.to_dict()
    out.pop("breakdown", None)  # per-layer tables are large; the layers kind keeps timing per layer
    return out


def measure_speed(cell: Cell) -> dict[str, Any]:
    from .convert import deploy
    from .metrics import speed

    o = cell.options
    model = build_model(cell)
    amp = None if o.get("precision", "fp32") == "fp32" else o["precision"]
    kw: dict[str, Any] = {"device": o.get("device", "cpu"), "threads": o.get("threads"),
                          "channels_last": o.get("channels_last", False), "amp": amp,
                          "compile": o.get("compile", False)}
    for key in ("warmup", "min_time", "min_runs"):
        if o.get(key) is not None:
            kw[key] = o[key]
    if o.get("mode", "inference") == "train":
        result = speed.measure_train_step(model, o["batch_size"], tuple(o["input_size"]),
                                          o.get("num_classes", 1000), **kw)
    else:
        if o.get("deploy", True):
            model = deploy(model)
        result = speed.measure_inference(model, o["batch_size"], tuple(o["input_size"]), **kw)
    return result.to_dict()


def measure_memory(cell: Cell) -> dict[str, Any]:
    from .metrics.memory import peak_memory

    o = cell.options
    return peak_memory(cell.backbone, cell.variant_name, dict(cell.config), o["batch_size"], tuple(o["input_size"]),
                       mode=o.get("mode", "inference"), device=o.get("device", "cpu"),
                       num_classes=o.get("num_classes", 1000), plugins=tuple(_PLUGINS))


def measure_accuracy(cell: Cell) -> dict[str, Any]:
    from .data import dataset_info
    from .training import train_and_evaluate
    from .training.recipes import default_recipe

    o = cell.options
    info = dataset_info(o["dataset"], root=o.get("data_root"))
    torch.manual_seed(o.get("seed", 0))  # the same initial weights for the same seed
    model = build_model(cell, num_classes=info["num_classes"], in_chans=info.get("channels", 3))
    kw: dict[str, Any] = dict(o.get("overrides") or {})
    kw["recipe"] = o.get("recipe") or default_recipe(o["dataset"])
    if o.get("epochs") is not None:
        kw["epochs"] = o["epochs"]
    dataset: Any = o["dataset"]
    if o.get("train_samples"):
        from .training.recipes import get_recipe

        size = kw.pop("image_size", None) or get_recipe(kw["recipe"]).image_size or info["image_size"]
        dataset = _subset_split(o["dataset"], o, info, size)
    out = train_and_evaluate(model, dataset, seed=o.get("seed", 0), data_root=o.get("data_root"),
                             device=o.get("device", "cpu"), **kw)
    return {**out, "threads": torch.get_num_threads()}


def _subset_split(name: str, o: dict[str, Any], info: dict[str, Any], size: int) -> tuple:
    """(a subset of `train_samples` training items drawn with the cell's seed, the full test split)."""
    from torch.utils.data import Subset

    from .data import get_dataset

    root = o.get("data_root")
    train = get_dataset(name, "train", root, image_size=size)  # the same data as the full-split path
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(o.get("seed", 0))).tolist()
    subset = Subset(train, order[: o["train_samples"]])
    subset.num_classes = info["num_classes"]  # type: ignore[attr-defined]
    subset.name = name  # type: ignore[attr-defined]
    return subset, get_dataset(name, "test", root, image_size=size)


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


def measure_layers(cell: Cell) -> dict[str, Any]:
    from .convert import deploy

    o = cell.options
    model = deploy(build_model(cell))
    layers = layer_latency(model, tuple(o["input_size"]), o.get("batch_size", 1), o.get("repeats", 5))
    return {"status": "ok", "layers": layers, "total_ms": sum(r["time_ms"] for r in layers),
            "batch_size": o.get("batch_size", 1), "threads": torch.get_num_threads()}


MEASURES: dict[str, Callable[[Cell], dict[str, Any]]] = {
    "params": measure_params, "macs": measure_macs, "speed": measure_speed, "memory": measure_memory,
    "accuracy": measure_accuracy, "layers": measure_layers,
}


def run_cell(cell: Cell | dict[str, Any], plugins: Sequence[str] = ()) -> dict[str, Any]:
    """Measure one cell: {values, status, error, environment, started, finished}; never raises."""
    from .registry import load_plugin_file

    started = utcnow()
    values: dict[str, Any] | None = None
    try:
        cell = cell if isinstance(cell, Cell) else Cell.from_dict(cell)
        _PLUGINS[:] = list(plugins)
        for path in plugins:
            load_plugin_file(path)
        threads = torch.get_num_threads()
        try:
            if cell.options.get("threads"):  # a fixed, recorded thread count for this cell only
                torch.set_num_threads(int(cell.options["threads"]))
            values = MEASURES[cell.kind](cell)
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


def main(argv: Sequence[str] | None = None) -> int:
    """Subprocess entry: read {cell, plugins} JSON on stdin, print the result JSON after a marker."""
    request = json.loads(sys.stdin.read())
    result = run_cell(request["cell"], request.get("plugins", ()))
    sys.stdout.write("\n" + RESULT_MARKER + json.dumps(result, default=str) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
