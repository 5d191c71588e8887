"""Options shared by measurement kinds: the typed table base (`MeasureOptions`) and Params several kinds use."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, ClassVar

from ..errors import UserError, did_you_mean, unknown_choice
from ..models.config_param import Param

DEVICES = ("cpu", "cuda")
PRECISIONS = ("fp32", "fp16", "bf16")
MODES = ("inference", "train")
# suite-table list keys and the cell option each value becomes when a table is expanded into cells
EXPANDED = {"modes": "mode", "batch_sizes": "batch_size", "datasets": "dataset", "seeds": "seed"}
# maxima: past these a cell crashes the process (OpenMP at 100000 threads) or cannot finish on any machine
MAX_THREADS = (os.cpu_count() or 1) * 4
MAX_CLASSES = 100_000  # ImageNet-21k has 21,841
MAX_CHANNELS, MAX_SIDE = 64, 4096  # input channels, image side in pixels
MAX_BATCH = 65_536
MAX_SEED = 2**32 - 1
MAX_SECONDS = 24 * 3600.0

SELECT = {
    "backbones": Param(None, "measure only these backbones (default: the suite's)", type=list),
    "variants": Param(None, "measure only these variant labels (default: all of the suite's)", type=list),
}
MODEL = {
    "num_classes": Param(None, "classifier outputs (default: the backbone's own, 10 for cifar_*)", type=int, min=1,
                         max=MAX_CLASSES),
    "input_size": Param(None, "C, H, W or one side (default: the backbone's input size)", type=(list, int)),
}
THREADS = Param(None, "torch intra-op threads for this cell (recorded; default: torch's)", type=int, min=1,
                 max=MAX_THREADS)
DEVICE = Param("cpu", "where the cell runs", type=str, choices=DEVICES)
BATCHES = Param([1], "batch sizes, one cell each", type=list)
MODES_PARAM = Param(["inference"], "inference (forward) and/or train (forward, backward, SGD step)", type=list)
GPUS = Param(None, "GPUs a Ray task asks for (default: 1 for cuda cells)", type=(int, float), min=0, max=64)


class MeasureOptions:
    """The options of one measurement kind; an instance reads one cell's options with the defaults filled in."""

    kind: ClassVar[str] = ""
    params: ClassVar[dict[str, Param]] = {}

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        values = {k: p.default for k, p in self.params.items()}
        for key, cell_key in EXPANDED.items():
            if key in self.params:
                values[cell_key] = (self.params[key].default or [None])[0]
        values.update(options or {})
        self._values = values

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["_values"][name]
        except KeyError:
            raise AttributeError(f"{self.kind} options have no {name!r}") from None

    def as_dict(self) -> dict[str, Any]:
        return dict(self._values)

    @classmethod
    def validate(cls, table: Mapping[str, Any], where: str) -> dict[str, Any]:
        """The full table (defaults + `table`) with every scalar checked by its Param; UserError otherwise."""
        out: dict[str, Any] = {}
        for key, p in cls.params.items():
            out[key] = _copy(p.default)
        for key, value in table.items():
            if key not in cls.params:
                raise UserError(f"unknown key '{where}.{key}'{did_you_mean(key, cls.params)}; "
                                f"valid: {', '.join(cls.params)}")
            p = cls.params[key]
            if p.type is list:  # lists are checked element by element where they are expanded (suite.py)
                out[key] = value
                continue
            if p.choices is not None and value not in p.choices:
                raise UserError(f"{where}.{key}: {unknown_choice(key, value, p.choices)}")
            out[key] = value if value is None else p.check(key, value, where)
        return out

    @classmethod
    def describe(cls) -> list[dict[str, Any]]:
        """(key, type, default, range or choices, help) of every option: for docs and listings."""
        rows = []
        for key, p in cls.params.items():
            t = p.type or type(p.default)
            rows.append({"key": key, "type": " or ".join(x.__name__ for x in (t if isinstance(t, tuple) else (t,))),
                         "default": p.default, "min": p.min, "max": p.max,
                         "choices": list(p.choices) if p.choices else None, "help": p.help})
        return rows


def _copy(value: Any) -> Any:
    return list(value) if isinstance(value, list) else dict(value) if isinstance(value, dict) else value
