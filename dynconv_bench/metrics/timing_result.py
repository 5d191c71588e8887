"""The one result type of a timed cell and the summary of several worker processes' results (no torch here:
the reports read stored results with it)."""

from __future__ import annotations

import dataclasses
import functools
import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

LOAD_SLACK = 0.5  # cores of load above the core count before a value is marked as measured under load
WAIT_MARGIN = 1.5  # wall time above (CPU time / threads) x this: the run waited (for a core, I/O, a lock)
SPREAD_WARNING = 0.10  # rows without per-round ratios: between-process sd above this fraction of the mean (pyperf's)
WIDTH_WARNING = 0.20  # the ratio's 95% interval wider than this fraction of its point: warn (the `§` mark)
INTERVAL_LEVEL = 0.95
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 36  # fixed: the same rows give the same interval in every report


@dataclass
class SpeedResult:
    """One timed cell (per-run seconds summarised; one run processes one batch) and what it ran with.

    `cpu_s` is the process CPU time per run (all threads); `processes` the fresh worker processes whose
    per-process medians were combined (0: measured in the calling process). With interleaving, `baseline_ratio`
    is the baseline's time over this model's (above 1: faster): the median of every round of every process
    (`round_ratios`, one list per process), and `ratio_interval` its 95% hierarchical bootstrap interval. Rows
    stored by older versions lack `round_ratios`: their `baseline_ratio` is the median of the per-process medians
    (`process_ratios`) and their interval the min-max of those (`interval_source` says which).
    `strategy_plan` maps each tuned per-sample conv layer (strategy key) to the strategy it ran: the first worker
    tunes it and every later worker of the cell runs it (`strategies` counts them).
    """

    status: str = "ok"
    error: str | None = None
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
    cpu_s: float | None = None  # process CPU seconds per run (every thread), median
    major_faults: int | None = None  # the process's major page faults (disk waits) in warm-up and timed runs
    minor_faults_per_run: float | None = None  # fresh pages the process faulted in per run (allocator churn)
    system_share: float | None = None  # the kernel's share of the process's CPU time in those runs
    allocator: str | None = None  # glibc malloc tunables of the measuring process (None: glibc's defaults)
    warmup: int = 0
    min_time: float = 0.0
    channels_last: bool = False
    amp: str | None = None
    compile: bool = False
    cuda_graph: bool = False  # replays of a captured CUDA graph were timed
    peak_memory_bytes: int | None = None
    strategies: dict[str, int] = field(default_factory=dict)  # per-sample conv strategy -> layers using it
    strategy_plan: dict[str, str] = field(default_factory=dict)  # tuned layer (strategy key) -> strategy it ran
    # candidates the strategy tuner dropped because they raised: 'layer <key> | strategy <name> | <error>' lines
    strategy_failures: list[str] = field(default_factory=list)
    rounds: int = 0  # interleaved rounds with the baseline (0: timed alone)
    runs_per_round: dict[str, int] = field(default_factory=dict)  # timed runs per round (own, baseline)
    baseline_ratio: float | None = None
    baseline_ratio_min: float | None = None  # over every round (of every process)
    baseline_ratio_max: float | None = None
    baseline_median_s: float | None = None
    baseline_cpu_s: float | None = None
    processes: int = 0  # fresh worker processes combined (0: the measuring process itself)
    process_ratios: list[float] = field(default_factory=list)  # per process: its median ratio
    round_ratios: list[list[float]] = field(default_factory=list)  # per process: its per-round ratios
    process_medians_s: list[float] = field(default_factory=list)  # per process: its median time per run
    spread_warning: str | None = None
    load_avg: float | None = None  # the highest 1-minute load average seen before and after each process
    cores: int | None = None
    cpu_mhz: float | None = None
    precisions: dict[str, str] = field(default_factory=dict)  # per side: 'conv' (cuDNN), 'fused', 'matmul'
    extra: dict[str, Any] = field(default_factory=dict, repr=False)  # stored keys of other versions
    times_s: list[float] = field(default_factory=list, repr=False)  # per-run seconds (not stored)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def under_load(self) -> bool:
        """Measured while more work wanted to run than the machine has cores: the 1-minute load average (which
        counts the cell's own threads and lags by design) above the core count by more than half a core."""
        return self.load_avg is not None and self.cores is not None and self.load_avg > self.cores + LOAD_SLACK

    @property
    def waited(self) -> bool:
        """Wall time per run above CPU time per run / threads by WAIT_MARGIN: the run waited, it did not work."""
        if not self.median_s or self.cpu_s is None or not self.threads or self.device != "cpu":
            return False
        return self.median_s > WAIT_MARGIN * self.cpu_s / self.threads

    @property
    def process_spread(self) -> float | None:
        """The between-process standard deviation over the mean, of the per-process ratios (else of the
        per-process medians); None for fewer than 2 processes. Unlike a min-max range, it does not grow with
        the number of processes."""
        values = self.process_ratios or self.process_medians_s
        if len(values) < 2 or statistics.fmean(values) <= 0:
            return None
        return statistics.stdev(values) / statistics.fmean(values)

    @property
    def rounds_by_process(self) -> list[list[float]]:
        """The per-round ratios of each process that has any (none: a row of an older version, or not interleaved)."""
        return [list(r) for r in self.round_ratios if r]

    @property
    def interval_source(self) -> str | None:
        """'bootstrap' (every round of every process), 'processes' (an older row: min-max of the per-process
        ratios) or None (no interval: not interleaved, or one process of an older version)."""
        if self.baseline_ratio is None:
            return None
        if self.rounds_by_process:
            return "bootstrap"
        return "processes" if len(self.process_ratios) > 1 else None

    @property
    def ratio_interval(self) -> tuple[float, float] | None:
        """The interval shown beside the ratio: the 95% hierarchical bootstrap interval of the median ratio over
        every round of every process (`ratio_bootstrap`), widened where needed to hold `baseline_ratio`; for an
        older row the min-max of its per-process ratios; None without either."""
        source = self.interval_source
        if source == "bootstrap":
            low, high = ratio_bootstrap(self.rounds_by_process)
            point = self.baseline_ratio
            return min(low, point), max(high, point)
        return self.process_range if source == "processes" else None

    @property
    def interval_width(self) -> float | None:
        """The width of `ratio_interval` over the ratio (None without an interval or a positive ratio)."""
        interval = self.ratio_interval
        if interval is None or not self.baseline_ratio or self.baseline_ratio <= 0:
            return None
        return (interval[1] - interval[0]) / self.baseline_ratio

    @property
    def unsteady(self) -> bool:
        """The measurement is too noisy to read its point: the ratio's 95% bootstrap interval is wider than
        WIDTH_WARNING of the ratio; for an older row without per-round ratios, the spread of its processes
        (process_spread) exceeds SPREAD_WARNING (pyperf's rule)."""
        if self.interval_source == "bootstrap":
            return (self.interval_width or 0.0) > WIDTH_WARNING
        return (self.process_spread or 0.0) > SPREAD_WARNING

    @property
    def flags(self) -> tuple[str, ...]:
        """What a reader must know about how this value was measured: 'load', 'waited', 'spread' (unsteady)."""
        return tuple(name for name, on in (("load", self.under_load), ("waited", self.waited),
                                           ("spread", self.unsteady)) if on)

    @property
    def process_range(self) -> tuple[float, float] | None:
        """Min and max of the per-process ratios (None unless several interleaved processes)."""
        return (min(self.process_ratios), max(self.process_ratios)) if len(self.process_ratios) > 1 else None

    def to_values(self) -> dict[str, Any]:
        """What the store keeps (JSON-able; the per-run times left out)."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("extra", "times_s")}
        d["input_size"] = list(self.input_size)
        return {**self.extra, **d}

    @classmethod
    def from_values(cls, values: Mapping[str, Any] | None) -> SpeedResult:
        """A result from stored values; keys this version does not know are kept in `extra`."""
        names = {f.name for f in dataclasses.fields(cls)} - {"extra", "times_s"}
        values = dict(values or {})
        return cls(**{k: values.pop(k) for k in list(values) if k in names}, extra=values)


# -- the interval of a ratio: every round of every process --------------------------------------------------------
def pooled_median(groups: list[list[float]]) -> float:
    """The median of every value of every group (the point a bootstrap interval belongs to)."""
    return statistics.median([v for g in groups for v in g])


def ratio_bootstrap(groups: list[list[float]], level: float = INTERVAL_LEVEL, resamples: int = BOOTSTRAP_RESAMPLES,
                    seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """The `level` percentile interval of the median of `groups` (per-round ratios, one list per process) by a
    hierarchical bootstrap: each resample draws as many processes as there are, with replacement, then within
    each drawn process as many of its rounds as it has, with replacement, and takes the median of all drawn
    rounds. A fixed `seed` makes the interval a function of the data.

    The draws, in this order: `integers(0, P, size=(resamples, P))` (the processes), then
    `random((resamples, P, R))` with R the most rounds of any process (round j of a drawn process with n rounds
    is `floor(u * n)`; draws past its n are unused); the quantiles are numpy's default (linear) ones.
    """
    groups = tuple(tuple(map(float, g)) for g in groups if len(g))
    if not groups:
        raise ValueError("no rounds to bootstrap")
    return _bootstrap(groups, level, resamples, seed)


@functools.lru_cache(maxsize=4096)  # a report reads each stored row several times (validation, tables, plots)
def _bootstrap(groups: tuple[tuple[float, ...], ...], level: float, resamples: int, seed: int) -> tuple[float, float]:
    import numpy as np

    counts = np.array([len(g) for g in groups])
    width = int(counts.max())
    table = np.full((len(groups), width), np.nan)
    for i, g in enumerate(groups):
        table[i, :len(g)] = g
    rng = np.random.default_rng(seed)
    procs = rng.integers(0, len(groups), size=(resamples, len(groups)))
    u = rng.random((resamples, len(groups), width))
    n = counts[procs][:, :, None]  # rounds of each drawn process
    rounds = np.minimum(np.floor(u * n).astype(int), n - 1)
    drawn = table[procs[:, :, None], rounds]
    drawn[np.arange(width)[None, None, :] >= n] = np.nan  # a process draws as many rounds as it has
    medians = np.nanmedian(drawn.reshape(resamples, -1), axis=1)
    low, high = np.quantile(medians, [(1.0 - level) / 2.0, (1.0 + level) / 2.0])
    return float(low), float(high)


# -- several fresh processes (pyperf's protocol): one value from the per-process medians ------------------------
def combine_processes(results: list[SpeedResult]) -> SpeedResult:
    """One result from the results of several worker processes: the median of the per-process medians (time,
    CPU time), the ratio as the median of every round of every process (older results: of the per-process
    ratios) with its interval (`ratio_interval`), runs summed, the highest load; a warning when the measurement
    is too noisy to read (`unsteady`) or the processes ran different per-sample conv strategies. The first
    failed process's result is returned as is."""
    failed = [r for r in results if r.status != "ok"]
    if failed or not results:
        return failed[0] if failed else SpeedResult("failed", "no worker process ran")
    out = dataclasses.replace(results[0], extra=dict(results[0].extra), times_s=[])
    med = statistics.median

    def values(name: str) -> list[float]:
        return [getattr(r, name) for r in results if getattr(r, name) is not None]

    out.processes = len(results)
    out.process_medians_s = values("median_s")
    out.median_s, out.iqr_s, out.mean_s = med(out.process_medians_s), med(values("iqr_s")), med(values("mean_s"))
    out.min_s, out.max_s = min(values("min_s")), max(values("max_s"))
    out.runs = sum(r.runs for r in results)
    out.major_faults = sum(values("major_faults")) if values("major_faults") else None
    for name in ("minor_faults_per_run", "system_share"):
        setattr(out, name, med(values(name)) if values(name) else None)
    out.throughput = out.batch_size / out.median_s if out.median_s and out.batch_size else None
    out.latency_ms = out.median_s * 1000.0 if out.median_s is not None else None
    for name in ("cpu_s", "baseline_cpu_s", "baseline_median_s"):
        setattr(out, name, med(values(name)) if values(name) else None)
    out.peak_memory_bytes = max(values("peak_memory_bytes")) if values("peak_memory_bytes") else None
    loads = values("load_avg")
    out.load_avg = max(loads) if loads else None
    out.cpu_mhz = round(statistics.fmean(values("cpu_mhz")), 1) if values("cpu_mhz") else None
    if results[0].baseline_ratio is not None:
        out.process_ratios = values("baseline_ratio")
        every = [r.rounds_by_process for r in results]
        out.round_ratios = [g for groups in every for g in groups] if all(every) else []
        out.baseline_ratio = pooled_median(out.round_ratios) if out.round_ratios else med(out.process_ratios)
        out.baseline_ratio_min, out.baseline_ratio_max = min(values("baseline_ratio_min")), max(
            values("baseline_ratio_max"))
    warnings = []
    if out.unsteady and out.interval_source == "bootstrap":
        low, high = out.ratio_interval
        warnings.append(f"the 95% interval of the ratio to the baseline over the {out.processes} processes' rounds, "
                        f"{low:.2f}-{high:.2f}, spans {100 * out.interval_width:.0f}% of the ratio "
                        f"{out.baseline_ratio:.2f} (over {100 * WIDTH_WARNING:.0f}%): the machine may be busy or "
                        f"the cell unstable")
    elif out.unsteady:
        what = "ratio to the baseline" if out.process_ratios else "median time"
        warnings.append(f"the {what} varies between the {out.processes} processes by a standard deviation of "
                        f"{100 * out.process_spread:.0f}% of the mean (over {100 * SPREAD_WARNING:.0f}%): "
                        f"the machine may be busy or the cell unstable")
    if any(r.strategies != results[0].strategies for r in results[1:]):
        warnings.append("the worker processes ran different per-sample conv strategies ("
                        + "; ".join(f"process {i + 1}: {r.strategies}" for i, r in enumerate(results))
                        + "); `strategies` is process 1's")
    out.spread_warning = "; ".join(warnings) or None
    return out
