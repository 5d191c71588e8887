"""What a measurement kind is: its options, typed result, records and headline; the registry that finds kinds.

A kind is one module (measures/speed.py, ...) defining a `Kind` subclass decorated with `@register_kind`.
Third-party kinds register the same way from a module named in the entry point group `dynconv_bench.measures`.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..discovery import KIND_GROUP, load_group
from ..errors import UserError, unknown_choice
from ..models.modelspec import ModelSpec
from .options import MeasureOptions

# the built-in kinds, by module name: loaded like plugins, so this module imports none of them
BUILTIN_KINDS = ("params", "macs", "speed", "memory", "accuracy", "layers", "deploy")


@dataclass(frozen=True)
class Record:
    """One measured (or exactly counted) value with its unit and what it was measured at."""

    metric: str
    value: float
    unit: str
    dims: tuple[tuple[str, Any], ...] = field(default=())
    flags: tuple[str, ...] = ()  # e.g. "load": measured while the machine was loaded beyond its cores
    ratio: float | None = None  # the ratio to the baseline measured in the same cell (interleaved timing)
    ratio_range: tuple[float, float] | None = None  # min and max of `ratio` over the cell's worker processes

    def dim(self, key: str, default: Any = None) -> Any:
        return dict(self.dims).get(key, default)

    @property
    def label(self) -> str:
        """The leaderboard column of this record (replicate dimensions such as the seed left out)."""
        return metric_spec(self.metric).label(dict(self.dims), self.unit)

    @property
    def order(self) -> tuple[int, int]:
        """Sort key of the column: cost, latency, throughput by mode and batch, memory, accuracy."""
        d = dict(self.dims)
        return metric_spec(self.metric).order, (1000 if d.get("mode") == "train" else 0) + int(d.get("batch_size") or 0)

    @property
    def compare(self) -> str:
        """How a leaderboard compares it with the baseline: 'ratio', 'speedup', 'points' or 'none'."""
        return metric_spec(self.metric).compare

    @property
    def higher_is_better(self) -> bool:
        return metric_spec(self.metric).higher_is_better


@dataclass(frozen=True)
class Metric:
    """How a leaderboard shows one metric: column label from (dims, unit), sort order, comparison with baseline."""

    label: Callable[[dict[str, Any], str], str]
    order: int
    compare: str = "ratio"  # 'ratio', 'speedup' (baseline / value), 'points' (difference) or 'none'
    in_leaderboard: bool = True  # False: reference levels and per-layer tables
    higher_is_better: bool = True
    timed: bool = False  # a wall-clock figure: load on the machine and other runs distort it


def record(metric: str, value: Any, unit: str, **dims: Any) -> list[Record]:
    """[Record] for a present value, [] for a missing one (old or failed rows lack keys)."""
    if value is None:
        return []
    return [Record(metric, float(value), unit, tuple(sorted(dims.items())))]


@dataclass
class Result:
    """Base of a kind's typed result: `to_values()` is what the store keeps, `from_values()` reads it back.

    Keys a stored row has that the class does not (rows of older versions) are kept in `extra`.
    """

    status: str = "ok"
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_values(self) -> dict[str, Any]:
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        return {**self.extra, **values}

    @classmethod
    def from_values(cls, values: Mapping[str, Any] | None) -> Result:
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        values = dict(values or {})
        return cls(**{k: values.pop(k) for k in list(values) if k in names}, extra=values)


class Kind:
    """One measurement kind: subclass it in one module and decorate with `@register_kind`."""

    name: ClassVar[str] = ""
    order: ClassVar[int] = 100  # cells run cheap kinds first so a partial run already gives a leaderboard
    options: ClassVar[type[MeasureOptions]] = MeasureOptions
    result: ClassVar[type[Result]] = Result
    metrics: ClassVar[dict[str, Metric]] = {}
    headline: ClassVar[str | None] = None  # the result field `report --compare` shows
    headline_shown: ClassVar[tuple[str, str, float, bool | None]] = ("", "", 1.0, None)  # name, unit, scale, higher?
    timed: ClassVar[bool] = False  # a wall-clock measurement that load on the machine can distort

    @classmethod
    def measure(cls, spec: ModelSpec, opts: MeasureOptions) -> Result:
        """Measure one cell of this kind (exceptions become a failed cell)."""
        raise NotImplementedError

    @classmethod
    def records(cls, options: Mapping[str, Any], result: Result) -> list[Record]:
        """The leaderboard records of one stored result."""
        return []

    @classmethod
    def processes(cls, opts: MeasureOptions) -> int:
        """Fresh worker processes a cell of this kind is measured in, one after another (0: the runner's own)."""
        return 0

    @classmethod
    def worker_environment(cls, opts: MeasureOptions) -> dict[str, str]:
        """Environment variables the cell's worker processes start with, on top of the runner's (default: none)."""
        return {}

    @classmethod
    def calibration(cls, first: Result) -> dict[str, Any] | None:
        """What the first worker process decided (e.g. run counts) that the later ones reuse, or None.

        The later workers read it as the option `calibration` of their MeasureOptions."""
        return None

    @classmethod
    def combine(cls, results: Sequence[Result]) -> Result:
        """One result from the results of the cell's worker processes (default: the only one)."""
        if len(results) != 1:
            raise NotImplementedError(f"kind {cls.name!r} does not combine {len(results)} processes")
        return results[0]

    @classmethod
    def ddp_workers(cls, opts: MeasureOptions) -> tuple[int, int]:
        """(DDP worker processes, nodes they span) that measure a cell together; more than one worker: the runner
        starts them (torchrun, or Ray Train on the ray executor). Default (1, 1): the cell is measured as usual."""
        return 1, 1

    @classmethod
    def rank_options(cls, opts: MeasureOptions) -> MeasureOptions:
        """The options each DDP worker's `measure()` gets, its process group joined (default: the cell's own);
        a check that refuses the cell before any worker starts raises here."""
        return opts

    @classmethod
    def ddp_result(cls, opts: MeasureOptions, rank0: dict[str, Any]) -> Result:
        """The cell's result from rank 0's values (which gain `launcher` and `nodes`, or are a failed status)."""
        return cls.result.from_values(rank0)

    @classmethod
    def check(cls, table: dict[str, Any], where: str) -> None:
        """Kind-specific checks of a validated option table at suite load (UserError naming `where`)."""

    @classmethod
    def note(cls, df: Any) -> str:
        """A line a report prints under the tables of these rows (store rows as a DataFrame), or ''."""
        return ""

    @classmethod
    def section(cls, df: Any) -> tuple[str, Any, str] | None:
        """An extra report section (title, DataFrame, note) from the store's rows, or None."""
        return None

    @classmethod
    def headline_of(cls, values: Mapping[str, Any] | None) -> float | None:
        value = cls.result.from_values(values).to_values().get(cls.headline) if cls.headline else None
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


_KINDS: dict[str, type[Kind]] = {}
_METRICS: dict[str, Metric] = {}
_loaded = False


def register_kind(cls: type[Kind]) -> type[Kind]:
    """Class decorator: make a measurement kind known to suites, the runner, the store and reports."""
    if not cls.name:
        raise TypeError(f"{cls.__name__} needs a `name`")
    clash = [m for m in cls.metrics if m in _METRICS and _KINDS.get(cls.name) is None]
    if clash:
        raise TypeError(f"kind {cls.name!r}: metric(s) {', '.join(clash)} belong to another kind")
    cls.options.kind = cls.name
    _KINDS[cls.name] = cls
    _METRICS.update(cls.metrics)
    return cls


def _load() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for name in BUILTIN_KINDS:  # each registers itself
        importlib.import_module(f"{__package__}.{name}")
    load_group(KIND_GROUP, "measurement kind")  # a broken plugin warns; it never takes the built-ins down


def list_kinds() -> list[str]:
    """Registered kinds, cheap ones first."""
    _load()
    return sorted(_KINDS, key=lambda k: (_KINDS[k].order, k))


def get_kind(name: str) -> type[Kind]:
    _load()
    if name not in _KINDS:
        raise unknown_choice("measurement kind", name, list_kinds())
    return _KINDS[name]


def metric_spec(metric: str) -> Metric:
    _load()
    return _METRICS.get(metric) or Metric(lambda d, u: f"{metric} ({u})", 9000)


def records_of(kind: str, options: Mapping[str, Any] | None, values: Mapping[str, Any] | None) -> list[Record]:
    """The records of one stored measurement ([] for an unknown kind or no values)."""
    _load()
    cls = _KINDS.get(kind)
    if cls is None or not values:
        return []
    records = cls.records(options or {}, cls.result.from_values(values))
    if cls.timed and _under_load(values):  # any timed kind: the runner recorded the load around measure()
        records = [r if "load" in r.flags else dataclasses.replace(r, flags=(*r.flags, "load")) for r in records]
    return records


def _under_load(values: Mapping[str, Any]) -> bool:
    """The cell ran while the 1-minute load average exceeded the core count by more than LOAD_SLACK."""
    from ..metrics.timing_result import LOAD_SLACK

    load, cores = values.get("load_avg"), values.get("cores")
    return isinstance(load, (int, float)) and isinstance(cores, int) and load > cores + LOAD_SLACK


def options_of(kind: str, options: Mapping[str, Any]) -> MeasureOptions:
    """The typed options of one cell of `kind`."""
    return get_kind(kind).options(options)


def check_options(kind: str, table: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The validated option table of `kind` (defaults + `table`), kind-specific checks included."""
    cls = get_kind(kind)
    out = cls.options.validate(table, where)
    cls.check(out, where)
    return out


__all__ = ["KIND_GROUP", "Kind", "Metric", "Record", "Result", "UserError", "check_options", "get_kind",
           "list_kinds", "metric_spec", "options_of", "record", "records_of", "register_kind"]
