"""The options of each measurement kind: one typed table of `Param`s (type, range, help, default) per kind."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, ClassVar

from ..errors import UserError, did_you_mean, unknown_choice
from ..models.variant import Param

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

_SELECT = {
    "backbones": Param(None, "measure only these backbones (default: the suite's)", type=list),
    "variants": Param(None, "measure only these variant labels (default: all of the suite's)", type=list),
}
_MODEL = {
    "num_classes": Param(None, "classifier outputs (default: the backbone's own, 10 for cifar_*)", type=int, min=1,
                         max=MAX_CLASSES),
    "input_size": Param(None, "C, H, W or one side (default: the backbone's input size)", type=(list, int)),
}
_THREADS = Param(None, "torch intra-op threads for this cell (recorded; default: torch's)", type=int, min=1,
                 max=MAX_THREADS)
_DEVICE = Param("cpu", "where the cell runs", type=str, choices=DEVICES)
_BATCHES = Param([1], "batch sizes, one cell each", type=list)
_MODES = Param(["inference"], "inference (forward) and/or train (forward, backward, SGD step)", type=list)
_GPUS = Param(None, "GPUs a Ray task asks for (default: 1 for cuda cells)", type=(int, float), min=0, max=64)


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


class ParamsOptions(MeasureOptions):
    kind = "params"
    params = {**_SELECT, "num_classes": _MODEL["num_classes"]}


class MacsOptions(MeasureOptions):
    kind = "macs"
    params = {**_SELECT, **_MODEL, "threads": _THREADS}


class SpeedOptions(MeasureOptions):
    kind = "speed"
    params = {
        **_SELECT, **_MODEL, "device": _DEVICE, "batch_sizes": _BATCHES, "modes": _MODES, "threads": _THREADS,
        "precision": Param("fp32", "fp32, or autocast to fp16/bf16", type=str, choices=PRECISIONS),
        "channels_last": Param(False, "channels_last memory format for model and input"),
        "compile": Param(False, "torch.compile the model first"),
        "warmup": Param(None, "untimed runs first (default: 3 on CPU, 20 on CUDA)", type=int, min=0, max=100_000),
        "min_time": Param(None, "seconds of timed runs at least (default: 1.0)", type=float, min=0.0,
                          max=MAX_SECONDS),
        "min_runs": Param(None, "timed runs at least (default: 5)", type=int, min=1, max=1_000_000),
        "deploy": Param(True, "time the deployed (folded) form in inference"),
        "num_gpus": _GPUS,
    }


class MemoryOptions(MeasureOptions):
    kind = "memory"
    params = {**_SELECT, **_MODEL, "device": _DEVICE, "batch_sizes": _BATCHES, "modes": _MODES}


class AccuracyOptions(MeasureOptions):
    kind = "accuracy"
    params = {
        **_SELECT,
        "datasets": Param(["digits"], "datasets, one cell each (see dynconv_bench.data)", type=list),
        "recipe": Param(None, "training recipe (default: the dataset's quick recipe)", type=str),
        "seeds": Param([0], "seeds, one cell each (initial weights and data order)", type=list),
        "epochs": Param(None, "override the recipe's epochs", type=int, min=1, max=10_000),
        "data_root": Param(None, "local folder of the dataset (cifar*, imagefolder)", type=str),
        "device": _DEVICE,
        "overrides": Param({}, "recipe settings to override, e.g. {image_size = 8}", type=dict),
        "num_gpus": _GPUS,
        "train_samples": Param(None, "train on a fixed random subset of this size (quick runs)", type=int, min=1,
                               max=100_000_000),
        "threads": _THREADS,
    }


class LayersOptions(MeasureOptions):
    kind = "layers"
    params = {
        **_SELECT, **_MODEL,
        "batch_size": Param(1, "batch size of the timed forwards", type=int, min=1, max=MAX_BATCH),
        "repeats": Param(5, "timed forwards (median per layer)", type=int, min=1, max=100_000),
        "threads": _THREADS,
    }


class DeployOptions(MeasureOptions):
    kind = "deploy"
    params = {
        **_SELECT, **_MODEL,
        "targets": Param(None, "torch_export, onnx, compile, torchscript (default: all)", type=list),
        "threads": _THREADS,
        "min_time": Param(None, "seconds of timed onnxruntime and eager runs at least", type=float, min=0.0,
                          max=MAX_SECONDS),
    }


OPTIONS: dict[str, type[MeasureOptions]] = {
    c.kind: c for c in (ParamsOptions, MacsOptions, SpeedOptions, MemoryOptions, AccuracyOptions, LayersOptions,
                        DeployOptions)}
KINDS = tuple(OPTIONS)  # cheap kinds first: a partial run already gives a leaderboard


def options_of(kind: str, options: Mapping[str, Any]) -> MeasureOptions:
    """The typed options of one cell of `kind`."""
    return OPTIONS[kind](options)
