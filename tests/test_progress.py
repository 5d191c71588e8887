"""The run's progress ETA learns per kind of cell: a fake clock, known durations, exact estimates."""

from __future__ import annotations

import io

from dynconv_bench.execution.cell import Cell
from dynconv_bench.execution.runner import Progress


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _cells() -> list[Cell]:
    params = [Cell("t", "cifar_resnet8", f"v{i}", "static", {}, "params") for i in range(3)]
    return params + [Cell("t", "cifar_resnet8", f"v{i}", "static", {}, "accuracy") for i in range(2)]


def _run(progress: Progress, clock: FakeClock, cell: Cell, seconds: float, status: str = "ok") -> float | None:
    progress.start(cell)
    clock.now += seconds
    progress.done(cell, {"status": status, "error": "boom" if status != "ok" else None})
    return progress.eta()


def test_eta_is_the_mean_duration_of_finished_cells_of_each_kind() -> None:
    clock, stream = FakeClock(), io.StringIO()
    cells = _cells()
    progress = Progress(cells, "t", True, stream, clock=clock)
    assert progress.eta() is None  # nothing finished: nothing to learn from
    # params 1 s: the accuracy cells, none finished yet, borrow the mean of all finished cells
    assert _run(progress, clock, cells[0], 1.0) == 2 * 1.0 + 2 * 1.0
    assert _run(progress, clock, cells[1], 3.0) == 1 * 2.0 + 2 * 2.0  # params mean (1 + 3) / 2
    assert _run(progress, clock, cells[2], 2.0) == 2 * 2.0
    # one slow accuracy cell: the last one is expected to take as long (a run-wide mean would say 26.5 s)
    assert _run(progress, clock, cells[3], 100.0) == 100.0
    assert _run(progress, clock, cells[4], 90.0, status="failed") == 0.0
    lines = stream.getvalue().splitlines()
    assert lines[0] == "[1/5] cifar_resnet8/v0/params ok (1.0 s; ETA 0:04)"
    assert lines[3] == "[4/5] cifar_resnet8/v0/accuracy ok (100.0 s; ETA 1:40)"
    assert lines[4] == "[5/5] cifar_resnet8/v1/accuracy FAILED: boom (90.0 s; ETA 0:00)"


def test_cells_measured_elsewhere_leave_the_estimate() -> None:
    clock = FakeClock()
    cells = _cells()
    progress = Progress(cells, "t", False, io.StringIO(), clock=clock)
    progress.skip(cells[4])  # another run claimed it
    assert _run(progress, clock, cells[3], 50.0) == 3 * 50.0  # the params cells borrow the accuracy mean
    assert _run(progress, clock, cells[0], 2.0) == 2 * 2.0 and progress.total == 4


def test_the_terminal_bar_shows_the_same_estimate(monkeypatch) -> None:  # noqa: ANN001
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("CI", raising=False)
    clock, stream = FakeClock(), Terminal()
    cells = _cells()
    progress = Progress(cells, "t", True, stream, clock=clock)
    _run(progress, clock, cells[0], 1.0)
    progress.start(cells[1])
    assert "1/5 [" in stream.getvalue() and stream.getvalue().endswith(", ETA 0:04; cifar_resnet8/v1/params]")
    progress.close()
