"""The `accuracy` kind: train with a recipe on an offline dataset and evaluate top-1 (and top-5) per seed."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import UserError, unknown_choice
from ..models.config_param import Param
from ..models.modelspec import ModelSpec
from .base import Kind, Metric, Record, Result, record, register_kind
from .options import DEVICE, GPUS, SELECT, THREADS, MeasureOptions
from .published_eval import CHECKPOINT, check_checkpoint, evaluate_checkpoint, is_checkpoint_table


class AccuracyOptions(MeasureOptions):
    params = {
        **SELECT,
        "datasets": Param(["digits"], "datasets, one cell each (see dynconv_bench.data)", type=list),
        "recipe": Param(None, "training recipe (default: the dataset's quick recipe)", type=str),
        "seeds": Param([0], "seeds, one cell each (initial weights and data order)", type=list),
        "epochs": Param(None, "override the recipe's epochs (0: evaluate a `checkpoint`, no training)", type=int,
                        min=0, max=10_000),
        "data_root": Param(None, "local folder of the dataset (cifar*, imagefolder)", type=str),
        "device": DEVICE,
        "overrides": Param({}, "recipe settings to override, e.g. {image_size = 8}", type=dict),
        "num_gpus": GPUS,
        "train_samples": Param(None, "train on a fixed random subset of this size (quick runs)", type=int, min=1,
                               max=100_000_000),
        "threads": THREADS,
        "gpus": Param(1, "DDP workers training this one cell (GPUs on cuda, gloo CPU processes on cpu): torchrun "
                         "on the local executor, Ray Train on the ray executor; the recipe's batch_size stays the "
                         "global batch (batch_size / gpus per worker) and its lr is not scaled", type=int, min=1,
                      max=1024),
        "nodes": Param(1, "nodes the gpus workers span (ray executor; 1: all on one node)", type=int, min=1,
                       max=256),
        **CHECKPOINT,
    }

    @classmethod
    def validate(cls, table: Mapping[str, Any], where: str) -> dict[str, Any]:
        out = super().validate(table, where)
        for key in ("gpus", "nodes"):  # one process on one node: left out, so cells keep their stored identity
            if out.get(key) == 1:
                del out[key]
        return out


@dataclass
class AccuracyValues(Result):
    """What `train_and_evaluate` returns: final top-1/top-5 in percent, loss, per-epoch history, schedules."""

    top1: float | None = None
    top5: float | None = None
    loss: float | None = None
    epochs: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    train_time_s: float = 0.0
    seed: int | None = None
    recipe: str | None = None
    recipe_config: dict[str, Any] = field(default_factory=dict)
    dataset: str | None = None
    num_classes: int | None = None
    train_size: int | None = None
    test_size: int | None = None
    world_size: int = 1
    device: str = "cpu"
    threads: int | None = None
    strategy: str | None = None  # the fixed per-sample conv strategy training and evaluation ran with
    temperature_schedules: list[str] = field(default_factory=list)
    final_temperatures: list[float] = field(default_factory=list)
    launcher: str | None = None  # "torchrun" or "ray-train" when several DDP workers trained the cell
    nodes: int = 1  # nodes the workers spanned
    gpus: int = 0  # GPUs that trained it (world_size on cuda, 0 on cpu)
    published: dict[str, Any] | None = None  # evaluated published weights: release, file sha256, paper's top-1
    memory_method: str | None = None  # how history's peak_rss_mib was read: "VmHWM" (reset per epoch) or "ru_maxrss"


@register_kind
class Accuracy(Kind):
    name = "accuracy"
    order = 4
    options = AccuracyOptions
    result = AccuracyValues
    headline = "top1"
    headline_shown = ("top-1", "%", 1.0, True)
    metrics = {"top1": Metric(lambda d, u: f"top-1 {d.get('dataset')} ({u})", 4000, compare="points"),
               "chance": Metric(lambda d, u: f"chance {d.get('dataset')} ({u})", 5000, compare="none",
                                in_leaderboard=False),
               "top5": Metric(lambda d, u: f"top-5 {d.get('dataset')} ({u})", 4001, compare="none"),
               "paper_top1": Metric(lambda d, u: f"paper top-1 {d.get('dataset')} ({u}, reference)", 4002,
                                    compare="none"),
               # what training cost, per epoch (history's epoch_time_s, peak_rss_mib / peak_cuda_mib): shown as
               # measured, never as a ratio to the baseline (not an interleaved timing: compare "none")
               "train_epoch_s": Metric(lambda d, u: f"train s/epoch {d.get('dataset')}", 4003, compare="none",
                                       higher_is_better=False),
               "train_peak_mib": Metric(lambda d, u: f"train peak MiB {d.get('dataset')} ({d.get('memory')})", 4004,
                                        compare="none", higher_is_better=False)}

    @classmethod
    def measure(cls, spec: ModelSpec, opts: MeasureOptions) -> AccuracyValues:
        import torch

        from ..data import dataset_info, training_subset
        from ..training import train_and_evaluate
        from ..training.recipes import default_recipe, get_recipe

        if getattr(opts, "checkpoint", None):
            return AccuracyValues.from_values(finite_evaluation(evaluate_checkpoint(spec, opts), "the checkpoint"))
        if int(opts.gpus or 1) > 1:  # the runner trains such a cell in DDP workers, each measuring rank_options
            raise UserError(f"accuracy: gpus = {opts.gpus} is trained by DDP workers the runner starts (run_cell); "
                            "measure() trains in this one process")
        info = dataset_info(opts.dataset, root=opts.data_root)
        torch.manual_seed(opts.seed)  # the same initial weights for the same seed
        model = spec.build(info["num_classes"], info.get("channels", 3))
        kw: dict[str, Any] = dict(opts.overrides or {})
        kw["recipe"] = opts.recipe or default_recipe(opts.dataset)
        if opts.epochs is not None:
            kw["epochs"] = opts.epochs
        dataset: Any = opts.dataset
        if opts.train_samples:
            size = kw.pop("image_size", None) or get_recipe(kw["recipe"]).image_size or info["image_size"]
            dataset = training_subset(opts.dataset, opts.train_samples, opts.seed, opts.data_root, size)
        out = train_and_evaluate(model, dataset, seed=opts.seed, data_root=opts.data_root, device=opts.device, **kw)
        gpus = out.get("world_size", 1) if str(opts.device).startswith("cuda") else 0
        out = finite_evaluation(out, "the trained model")
        return AccuracyValues.from_values({**out, "threads": torch.get_num_threads(), "gpus": gpus})

    # `gpus = N` (`nodes = M`): N DDP workers over M nodes train the cell, with a single process's semantics: the
    # recipe's batch_size is the global batch (each worker takes batch_size / N per step) and its lr belongs to
    # that global batch, so neither changes with N.
    @classmethod
    def ddp_workers(cls, opts: MeasureOptions) -> tuple[int, int]:
        if getattr(opts, "checkpoint", None) or int(opts.gpus or 1) <= 1:
            return 1, 1
        return int(opts.gpus), int(opts.nodes or 1)

    @classmethod
    def rank_options(cls, opts: MeasureOptions) -> MeasureOptions:
        """One process's options, once the recipe's global batch splits evenly over the workers."""
        from ..training.recipes import default_recipe, get_recipe

        workers = int(opts.gpus)
        recipe = get_recipe(opts.recipe or default_recipe(opts.dataset), **dict(opts.overrides or {}))
        if recipe.batch_size % workers:
            raise UserError(f"accuracy: batch_size {recipe.batch_size} of recipe {recipe.name} does not split over "
                            f"gpus = {workers} workers; the global batch must be a multiple of gpus")
        return cls.options({**opts.as_dict(), "gpus": 1, "nodes": 1})

    @classmethod
    def ddp_result(cls, opts: MeasureOptions, rank0: dict[str, Any]) -> AccuracyValues:
        """Rank 0's values, with `gpus` the GPUs that trained the cell (its world size on cuda, 0 on cpu)."""
        cuda = str(opts.device).startswith("cuda")
        out = {**rank0, "gpus": int(rank0.get("world_size") or int(opts.gpus)) if cuda else 0}
        return AccuracyValues.from_values(finite_evaluation(out, "the trained model"))

    @classmethod
    def note(cls, df: Any) -> str:
        return temperature_note(df)

    @classmethod
    def records(cls, options: Mapping[str, Any], result: AccuracyValues) -> list[Record]:
        """Top-1 in percent as `evaluate()` returns it, and the chance level 100 / classes where known."""
        dataset = options.get("dataset") or result.dataset
        classes = result.num_classes
        if result.published is not None:  # published weights: the row is marked; top-5 and the paper's top-1 beside
            top1 = [Record("top1", float(result.top1), "%", (("dataset", dataset),), ("published",))]
            return (top1 + record("top5", result.top5, "%", dataset=dataset)
                    + record("paper_top1", result.published.get("paper_top1"), "%", dataset=dataset))
        return (record("top1", result.top1, "%", dataset=dataset, seed=options.get("seed"))
                + record("chance", 100.0 / classes if classes else None, "%", dataset=dataset)
                + training_cost(result, dataset, options.get("seed")))

    @classmethod
    def check(cls, table: dict[str, Any], where: str) -> None:
        """Datasets and recipe exist, and the overrides are keys of every recipe the table will use."""
        from ..data import DATASETS
        from ..errors import ConfigError
        from ..training.recipes import RECIPES, default_recipe, get_recipe

        datasets = table["datasets"]
        if isinstance(datasets, str):
            datasets = [datasets]
        if not isinstance(datasets, list) or not datasets or not all(isinstance(d, str) for d in datasets):
            raise UserError(f"{where}.datasets must be a non-empty list of names")
        table["datasets"] = datasets
        gpus, nodes = int(table.get("gpus") or 1), int(table.get("nodes") or 1)
        if nodes > gpus or gpus % nodes:
            raise UserError(f"{where}: nodes = {nodes} must divide gpus = {gpus} (the workers per node)")
        for d in datasets:
            if d not in DATASETS:
                raise UserError(f"{where}.datasets: {unknown_choice('dataset', d, DATASETS)}")
        if is_checkpoint_table(table):
            check_checkpoint(table, where)
            return
        if table["epochs"] == 0:
            raise UserError(f"{where}.epochs = 0 evaluates published weights: name a checkpoint and its release")
        if table["recipe"] is not None and table["recipe"] not in RECIPES:
            raise UserError(f"{where}.recipe: {unknown_choice('recipe', table['recipe'], RECIPES)}")
        try:
            recipes = [table["recipe"]] if table["recipe"] else [default_recipe(d) for d in datasets]
        except ConfigError as exc:
            raise UserError(f"{where}: {exc}") from None
        overrides = dict(table["overrides"] or {})
        if table["epochs"] is not None:
            overrides["epochs"] = table["epochs"]
        for name in recipes:  # the recipe each cell trains with must accept the overrides
            try:
                get_recipe(name, **overrides)
            except ConfigError as exc:
                raise UserError(f"{where}.overrides: {exc}") from None
            except (TypeError, ValueError) as exc:  # a value of the wrong type in a recipe's checks
                raise UserError(f"{where}.overrides: a value has the wrong type ({exc})") from None


def _numbers(history: list[Any], key: str) -> list[float]:
    return [float(e[key]) for e in history if isinstance(e, dict) and isinstance(e.get(key), (int, float))
            and not isinstance(e.get(key), bool)]


def training_cost(result: AccuracyValues, dataset: Any, seed: Any) -> list[Record]:
    """Mean training seconds per epoch and the largest per-epoch peak memory (CUDA allocator peak on CUDA, else
    peak RSS) from the history; rows older than per-epoch costs give s/epoch from train_time_s / epochs."""
    history = result.history if isinstance(result.history, list) else []
    times = _numbers(history, "epoch_time_s")
    epochs = result.epochs if isinstance(result.epochs, int) and not isinstance(result.epochs, bool) else 0
    total = result.train_time_s
    per_epoch = (sum(times) / len(times) if times else
                 total / epochs if epochs > 0 and isinstance(total, (int, float)) and total > 0 else None)
    cuda, rss = _numbers(history, "peak_cuda_mib"), _numbers(history, "peak_rss_mib")
    peak, memory = (max(cuda), "CUDA") if cuda else (max(rss), "RSS") if rss else (None, None)
    return (record("train_epoch_s", per_epoch, "s", dataset=dataset, seed=seed)
            + record("train_peak_mib", peak, "MiB", dataset=dataset, seed=seed, memory=memory))


class NonFiniteEvaluation(RuntimeError):
    """An evaluation whose loss or accuracy is NaN or infinite: the model computes no numbers, the cell fails."""


def finite_evaluation(values: dict[str, Any], what: str) -> dict[str, Any]:
    """`values` when its loss, top-1 and top-5 are finite (or absent); else NonFiniteEvaluation, which the runner
    stores as a failed cell naming why (a NaN model's top-1 of 0.00 is not a result)."""
    import math

    for key in ("loss", "top1", "top5"):
        value = values.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise NonFiniteEvaluation(f"evaluating {what} gave {key} = {value!r} (not a finite number): its outputs "
                                      f"are NaN or infinite, so its accuracy is no result")
    return values


def temperature_note(df: Any) -> str:
    """One line: each annealing variant's temperature schedule as its accuracy rows recorded it, and where runs ended."""
    acc = df[(df["kind"] == "accuracy") & (df["status"] == "ok")]
    parts = []
    for variant, rows in acc.groupby("variant", sort=False):
        values = [v for v in rows["values"] if isinstance(v, dict)]
        described = sorted({s for v in values for s in v.get("temperature_schedules") or []})
        if not described:  # no recorded schedule (none, or a row older than recorded schedules): never guess one
            continue
        ends = [t for v in values for t in v.get("final_temperatures") or []]
        low, high = (f"{min(ends):.3g}", f"{max(ends):.3g}") if ends else ("", "")
        end = "" if not ends else f", at {low} when training ended" if low == high else (
            f", at {low}-{high} when training ended")
        parts.append(f"{variant} {'; '.join(described)}{end}")
    return "Temperature schedules (accuracy runs): " + "; ".join(parts) + "." if parts else ""
