"""Executor plugin (`dynconv_bench.executors`): the local executor, remembering each cell it ran."""

from __future__ import annotations

from dynconv_bench.execution.executors import LocalExecutor

RAN: list[str] = []  # labels of the cells, in the order they ran


class CountingExecutor(LocalExecutor):
    name = "test-counting"

    def map(self, cells, plugins=(), on_start=None, memory_cap=None):  # noqa: ANN001, ANN201
        for cell, result in super().map(cells, plugins, on_start, memory_cap):
            RAN.append(cell.label())
            yield cell, result
