"""Typed results: (metric, value, unit, dimensions) records from a stored row, one function per measurement kind.

The store keeps each measurement's values as JSON; these functions are the only place that knows
their keys. Reports and plots read records, never the stored dicts or column names.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

# Dimensions that repeat a measurement (averaged over in a leaderboard) rather than tell measurements apart.
REPLICATE_DIMS = ("seed",)


@dataclass(frozen=True)
class Record:
    """One measured (or exactly counted) value with its unit and what it was measured at."""

    metric: str
    value: float
    unit: str
    dims: tuple[tuple[str, Any], ...] = field(default=())

    def dim(self, key: str, default: Any = None) -> Any:
        return dict(self.dims).get(key, default)

    @property
    def label(self) -> str:
        """The leaderboard column of this record (replicate dimensions such as the seed left out)."""
        return _LABELS[self.metric](dict(self.dims), self.unit)

    @property
    def order(self) -> tuple[int, int]:
        """Sort key of the column: cost, latency, throughput by mode and batch, memory, accuracy."""
        d = dict(self.dims)
        return _ORDER[self.metric], (1000 if d.get("mode") == "train" else 0) + int(d.get("batch_size") or 0)

    @property
    def compare(self) -> str:
        """How a leaderboard compares it with the baseline: 'ratio', 'points' (difference) or 'none'."""
        return _COMPARE.get(self.metric, "ratio")


def record(metric: str, value: Any, unit: str, **dims: Any) -> list[Record]:
    """[Record] for a present value, [] for a missing one (old or failed rows lack keys)."""
    if value is None:
        return []
    return [Record(metric, float(value), unit, tuple(sorted(dims.items())))]


def params_records(options: Mapping[str, Any], values: Mapping[str, Any]) -> list[Record]:
    deployed = values.get("deployed") or {}
    return (record("params", _scaled(values.get("total"), 1e-6), "M")
            + record("deployed_params", _scaled(deployed.get("total"), 1e-6), "M"))


def macs_records(options: Mapping[str, Any], values: Mapping[str, Any]) -> list[Record]:
    macs = values.get("macs")
    overhead = 100.0 * values.get("overhead_macs", 0) / macs if macs else None
    return record("macs", _scaled(macs, 1e-6), "M") + record("overhead", overhead, "% MACs")


def speed_records(options: Mapping[str, Any], values: Mapping[str, Any]) -> list[Record]:
    dims = {"device": options.get("device", "cpu"), "precision": options.get("precision", "fp32"),
            "channels_last": bool(options.get("channels_last", False)), "compile": bool(options.get("compile", False))}
    if options.get("cuda_graph"):  # replays of a captured graph: a column apart from the eager one
        dims["cuda_graph"] = True
    mode, batch = options.get("mode", "inference"), options.get("batch_size")
    out = record("throughput", values.get("throughput"), "img/s", mode=mode, batch_size=batch, **dims)
    if batch == 1 and mode != "train":
        out += record("latency", values.get("latency_ms"), "ms", batch_size=1, **dims)
    return out


def memory_records(options: Mapping[str, Any], values: Mapping[str, Any]) -> list[Record]:
    return record("peak_memory", _scaled(values.get("peak_bytes"), 1 / 2**20), "MiB",
                  mode=options.get("mode", "inference"), batch_size=options.get("batch_size"),
                  device=options.get("device", "cpu"))


def accuracy_records(options: Mapping[str, Any], values: Mapping[str, Any]) -> list[Record]:
    """Top-1 in percent as `evaluate()` returns it, and the chance level 100 / classes where known."""
    dataset = options.get("dataset") or values.get("dataset")
    classes = values.get("num_classes")
    return (record("top1", values.get("top1"), "%", dataset=dataset, seed=options.get("seed"))
            + record("chance", 100.0 / classes if classes else None, "%", dataset=dataset))


def layers_records(options: Mapping[str, Any], values: Mapping[str, Any]) -> list[Record]:
    """Median forward time of each layer (a per-layer table: plotted, not a leaderboard column)."""
    batch = values.get("batch_size", options.get("batch_size", 1))
    return [r for row in values.get("layers") or []
            for r in record("layer_time", row.get("time_ms"), "ms", layer=row.get("layer"), type=row.get("type"),
                            batch_size=batch)]


RECORDERS: dict[str, Callable[[Mapping[str, Any], Mapping[str, Any]], list[Record]]] = {
    "params": params_records, "macs": macs_records, "speed": speed_records, "memory": memory_records,
    "accuracy": accuracy_records, "layers": layers_records,
}
# Metrics that are not leaderboard columns: reference levels and per-layer tables.
NOT_IN_LEADERBOARD = ("chance", "layer_time")


def records_of(kind: str, options: Mapping[str, Any] | None, values: Mapping[str, Any] | None) -> list[Record]:
    """The records of one stored measurement ([] for an unknown kind or no values)."""
    fn = RECORDERS.get(kind)
    return fn(options or {}, values or {}) if fn is not None and values else []


def threads_of(options: Mapping[str, Any] | None, values: Mapping[str, Any] | None) -> int | None:
    """The torch thread count a cell ran with: measured (values) or requested (options)."""
    for source in (values or {}, options or {}):
        if source.get("threads"):
            return int(source["threads"])
    return None


def _scaled(value: Any, scale: float) -> float | None:
    return None if value is None else float(value) * scale


def speed_setting(d: Mapping[str, Any]) -> str:
    """Device, precision and options of a speed record, e.g. `cpu`, `cuda bf16 cl compiled`, `cuda graph`."""
    prec = "" if d.get("precision", "fp32") == "fp32" else f" {d['precision']}"
    return (f"{d.get('device', 'cpu')}{prec}{' cl' if d.get('channels_last') else ''}"
            f"{' compiled' if d.get('compile') else ''}{' graph' if _is_set(d.get('cuda_graph')) else ''}")


def _is_set(flag: Any) -> bool:
    return flag is not None and flag == flag and bool(flag)  # a dimension absent from a frame's row is NaN


def _memory_label(d: dict[str, Any], unit: str) -> str:
    dev = "" if d.get("device", "cpu") == "cpu" else f" {d['device']}"
    return f"peak mem{dev} {d.get('mode')} b{d.get('batch_size')} ({unit})"


_LABELS: dict[str, Callable[[dict[str, Any], str], str]] = {
    "params": lambda d, u: f"params ({u})",
    "deployed_params": lambda d, u: f"deployed params ({u})",
    "macs": lambda d, u: f"MACs ({u})",
    "overhead": lambda d, u: f"overhead ({u})",
    "latency": lambda d, u: f"latency {speed_setting(d)} b{d.get('batch_size')} ({u})",
    "throughput": lambda d, u: (f"{'train' if d.get('mode') == 'train' else 'infer'} {speed_setting(d)} "
                                f"b{d.get('batch_size')} ({u})"),
    "peak_memory": _memory_label,
    "top1": lambda d, u: f"top-1 {d.get('dataset')} ({u})",
    "chance": lambda d, u: f"chance {d.get('dataset')} ({u})",
    "layer_time": lambda d, u: f"{d.get('layer')} ({d.get('type')}, {u})",
}
_ORDER = {"params": 0, "deployed_params": 1, "macs": 2, "overhead": 3, "latency": 5, "throughput": 10,
          "peak_memory": 3000, "top1": 4000, "chance": 5000, "layer_time": 6000}
_COMPARE = {"overhead": "none", "top1": "points", "chance": "none", "layer_time": "none"}
