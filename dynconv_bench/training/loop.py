"""Train and evaluate one model: SGD, warm-up + cosine/step, checkpoint/resume, divergence stop, DDP."""

from __future__ import annotations

import contextlib
import functools
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from ..errors import UserError
from ..files import make_folder, replacing, show_path
from ..metrics.step_memory import release_free_memory, reset_peak_rss, status_kib
from ..models.convert import set_progress
from ..models.layers import recomputing_batchnorm
from ..models.per_sample_conv import forced_strategy, use_strategy
from ..models.variant import DynamicLayer, TrainingProgress
from ..untrusted import load_weights
from . import distributed as D
from .recipes import Recipe, get_recipe

CHECKPOINT_NAME = "last.pt"
ProgressFn = Callable[[int, int, dict], None]
# Per-sample conv strategies differ in summation order, so an autotuned (timed, cached) choice would make the
# trajectory depend on the machine's load and the strategy cache: training and evaluation run a fixed one.
# output_space runs a kernel mixture as one dense conv over its K kernels (cifar_resnet20 at 8x8, batch 64, one
# CPU thread: a training step 32-34 ms vs 105-122 ms grouped); other per-sample kernels fall back to grouped.
TRAINING_STRATEGY = "output_space"


class Diverged(RuntimeError):
    """The training loss became NaN/inf or grew past the recipe's divergence limit."""


class _ShardSampler(Sampler[int]):
    """Indices rank, rank + world, ... in order: each test image evaluated exactly once over all ranks."""

    def __init__(self, n: int, rank: int, world: int) -> None:
        self.indices = list(range(rank, n, world))

    def __iter__(self):  # noqa: ANN204
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def topk_correct(logits: torch.Tensor, target: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> list[int]:
    """Number of samples whose target is among the top-k logits, for each k (k capped at the class count)."""
    maxk = min(max(ks), logits.shape[1])
    pred = logits.topk(maxk, dim=1).indices
    hit = pred.eq(target.view(-1, 1))
    return [int(hit[:, :min(k, maxk)].any(dim=1).sum()) for k in ks]


def training_strategy() -> str:
    """The per-sample conv strategy training and evaluation run: the one the user forces, else TRAINING_STRATEGY."""
    return forced_strategy() or TRAINING_STRATEGY


def _fixed_strategy(fn: Callable) -> Callable:
    """Run `fn` with `training_strategy()` forced: no timing, no strategy cache."""
    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        with use_strategy(training_strategy()):
            return fn(*args, **kwargs)
    return run


def _autocast(device: str, amp: bool) -> contextlib.AbstractContextManager:
    if not amp:
        return contextlib.nullcontext()
    dev = "cuda" if device.startswith("cuda") else "cpu"
    return torch.autocast(dev, dtype=torch.float16 if dev == "cuda" else torch.bfloat16)


@_fixed_strategy
@torch.no_grad()
def evaluate(model: nn.Module, dataset: Dataset, batch_size: int = 256, device: str = "cpu", amp: bool = False,
             num_classes: int | None = None, info: D.DistInfo | None = None, workers: int = 0) -> dict[str, Any]:
    """Top-1, top-5 (None with <= 5 classes) in percent and mean cross-entropy over `dataset`."""
    info = info or D.DistInfo(device=device)
    sampler = _ShardSampler(len(dataset), info.rank, info.world_size)
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers)
    was_training = model.training
    model.eval()
    sums = torch.zeros(4, dtype=torch.float64)  # loss, top1, top5, count
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with _autocast(device, amp):
            logits = model(x)
        logits = logits.float()
        c1, c5 = topk_correct(logits, y)
        sums += torch.tensor([float(F.cross_entropy(logits, y, reduction="sum")), c1, c5, len(y)],
                             dtype=torch.float64)
    model.train(was_training)
    sums = D.all_reduce_sum(sums, info).cpu()
    n = max(sums[3].item(), 1.0)
    classes = num_classes if num_classes is not None else 0
    return {"top1": 100.0 * sums[1].item() / n, "top5": 100.0 * sums[2].item() / n if classes > 5 else None,
            "loss": sums[0].item() / n, "count": int(sums[3].item())}


@_fixed_strategy
@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, dataset: Dataset, batch_size: int, batches: int, device: str,
                          amp: bool = False, info: D.DistInfo | None = None, workers: int = 0) -> int:
    """Recompute every BatchNorm's running statistics as the plain average over `batches` batches.

    The first batches of the (unshuffled) training set are used in train mode, without gradients;
    returns the number of batches seen. The model's train/eval mode is restored afterwards.
    """
    indices = list(range(len(dataset)))
    if info is not None and info.world_size > 1:
        indices = indices[info.rank::info.world_size]
    loader = DataLoader(torch.utils.data.Subset(dataset, indices), batch_size=batch_size, shuffle=False,
                        num_workers=workers)
    seen = 0
    with recomputing_batchnorm(model) as norms:
        if not norms:
            return 0
        for x, _ in loader:
            if seen == batches:
                break
            with _autocast(device, amp):
                model(x.to(device))
            seen += 1
    return seen


def _fingerprint(recipe: Recipe, seed: int, dataset: str, num_classes: int) -> dict[str, Any]:
    d = recipe.to_dict()
    for key in ("notes", "workers", "eval_batch_size", "source", "eval_every"):
        d.pop(key, None)
    return {"recipe": d, "seed": seed, "dataset": dataset, "num_classes": num_classes}


def _load_checkpoint(path: Path, fingerprint: dict, model: nn.Module, opt: torch.optim.Optimizer,
                     scaler: Any) -> dict[str, Any] | None:
    if not os.path.lexists(path):
        return None
    state = load_weights(path, "checkpoint")  # weights-only: our checkpoints hold tensors and plain data
    if not isinstance(state, dict) or not {"model", "optimizer"} <= set(state):
        raise UserError(f"checkpoint {show_path(path)} is not a training checkpoint of dynconv-bench (a dict with "
                        "'model', 'optimizer', 'epoch', 'history' and 'fingerprint'); use another checkpoint "
                        "directory or delete it")
    if state.get("fingerprint") != fingerprint:
        raise UserError(f"checkpoint {str(path)!r} belongs to a different run (recipe, seed or dataset differ); "
                        "use another checkpoint directory or delete it")
    try:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
    except (RuntimeError, KeyError, ValueError, TypeError, AttributeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"checkpoint {show_path(path)} does not fit this model and optimizer ({show_path(first, 160)})"
                        "; use another checkpoint directory or delete it") from None
    return state


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    make_folder(path.parent, "checkpoint")
    with replacing(path, "checkpoint") as tmp, open(tmp, "wb") as fh:  # a full disk: one line, the old one kept
        try:
            torch.save(state, fh)
        except RuntimeError as exc:  # torch's zip writer hides the OSError of a failed write behind its own
            if isinstance(exc.__context__, OSError):
                raise exc.__context__ from None
            raise


def _resolve_datasets(dataset: str | tuple[Dataset, Dataset], data_root: str | None,
                      image_size: int | None) -> tuple[str, Dataset, Dataset]:
    if isinstance(dataset, str):
        from ..data import get_dataset

        return (dataset, get_dataset(dataset, "train", data_root, image_size=image_size),
                get_dataset(dataset, "test", data_root, image_size=image_size))
    if isinstance(dataset, (tuple, list)) and len(dataset) == 2:
        return getattr(dataset[0], "name", "custom"), dataset[0], dataset[1]
    raise UserError("dataset must be a dataset name or a (train, test) pair of Datasets")


def _temperatures(model: nn.Module) -> list[float]:
    """The distinct values the converted layers' scheduled quantities reached (`DynamicLayer.schedule_value`)."""
    values = {m.schedule_value() for m in model.modules() if isinstance(m, DynamicLayer)}
    return sorted(round(float(v), 6) for v in values if v is not None)


def _schedules(model: nn.Module) -> list[str]:
    """The distinct schedules the converted layers anneal, described (`DynamicLayer.schedule_description`)."""
    found = {m.schedule_description() for m in model.modules() if isinstance(m, DynamicLayer)}
    return sorted(d for d in found if d)


class EpochCost:
    """Wall time and peak memory of one training epoch (the forward, backward and optimizer steps of its batches).

    Peak RSS: the process's resident peak (`VmHWM`, absolute: model, data and libraries included; DataLoader worker
    processes not), its mark reset at the epoch's start (`/proc/self/clear_refs` <- "5", Linux), so each epoch has
    its own, after the allocator's free pages are handed back (else the pages cells trained earlier in the same
    process freed stay resident, and every later cell shows their peak). Where the mark cannot be reset,
    `ru_maxrss` (the process's peak so far: an earlier higher peak hides a lower one; `memory_method` says which).
    On CUDA also `torch.cuda.max_memory_allocated` with the allocator's peak reset at the epoch's start (tensors
    this process allocated on the device)."""

    def __init__(self, device: str) -> None:
        self.cuda = str(device).startswith("cuda") and torch.cuda.is_available()
        self.device = device
        self.method = "VmHWM" if reset_peak_rss() else "ru_maxrss"
        self.t0 = 0.0

    def start(self) -> None:
        if self.method == "VmHWM":
            release_free_memory()  # else the pages earlier cells freed stay resident and every cell's peak is theirs
            reset_peak_rss()
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(self.device)
        self.t0 = time.perf_counter()

    def stop(self) -> dict[str, Any]:
        """{epoch_time_s, peak_rss_mib[, peak_cuda_mib]} of the epoch since `start`."""
        if self.cuda:
            torch.cuda.synchronize(self.device)
        out: dict[str, Any] = {"epoch_time_s": time.perf_counter() - self.t0}
        hwm = status_kib("VmHWM") if self.method == "VmHWM" else None
        if hwm is None:
            import resource

            self.method = "ru_maxrss"
            hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        out["peak_rss_mib"] = hwm / 1024
        if self.cuda:
            out["peak_cuda_mib"] = torch.cuda.max_memory_allocated(self.device) / 2**20
        return out


def _epoch_seed(seed: int, epoch: int, rank: int) -> int:
    return (int(seed) * 1_000_003 + epoch * 9_973 + rank * 101) % (2 ** 63)


@_fixed_strategy
def train_and_evaluate(model: nn.Module, dataset: str | tuple[Dataset, Dataset], recipe: str | Recipe = "digits-quick",
                       seed: int = 0, data_root: str | None = None, device: str = "cpu", epochs: int | None = None,
                       checkpoint_dir: str | os.PathLike | None = None, progress: ProgressFn | None = None,
                       **overrides: Any) -> dict[str, Any]:
    """Train `model` on `dataset` with a named recipe, evaluate after each epoch, return the result dict.

    Keys: status ("ok"/"failed"), error, top1, top5 (None with <= 5 classes), loss, epochs, history,
    train_time_s, seed (plus recipe, dataset, num_classes, world_size, device, memory_method). Each history entry
    holds its epoch's training cost (`EpochCost`): `epoch_time_s`, `peak_rss_mib` and, on CUDA, `peak_cuda_mib`
    (`train_time_s` there is the running total). With `checkpoint_dir`
    the state is saved after every epoch and a rerun resumes from it. Under torchrun (process group
    initialised) the model is wrapped in DDP, `batch_size` is global and metrics are all-reduced. Per-sample convs
    run one fixed strategy (`training_strategy()`, recorded as `strategy`), never an autotuned one.
    """
    rec = get_recipe(recipe, **overrides)
    if epochs is not None:
        rec = rec.replace(epochs=int(epochs))
    from ..data import num_classes_of

    info = D.current(D.resolve_device(device, int(os.environ.get("LOCAL_RANK", "0"))))
    dev = info.device
    name, train_ds, test_ds = _resolve_datasets(dataset, data_root, rec.image_size)
    num_classes = num_classes_of(train_ds)
    result: dict[str, Any] = {"status": "ok", "error": None, "top1": None, "top5": None, "loss": None,
                              "epochs": 0, "history": [], "train_time_s": 0.0, "seed": seed, "recipe": rec.name,
                              "recipe_config": rec.to_dict(), "dataset": name, "num_classes": num_classes,
                              "train_size": len(train_ds), "test_size": len(test_ds),
                              "world_size": info.world_size, "device": dev, "strategy": training_strategy()}

    model.to(dev)
    net = D.wrap_model(model, info)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=rec.lr, momentum=rec.momentum,
                          weight_decay=rec.weight_decay, nesterov=rec.nesterov)
    scaler = torch.amp.GradScaler("cuda") if rec.amp and dev.startswith("cuda") else None
    per_rank = max(rec.batch_size // info.world_size, 1)
    sampler = DistributedSampler(train_ds, num_replicas=info.world_size, rank=info.rank, shuffle=True, seed=seed)
    loader = DataLoader(train_ds, batch_size=per_rank, sampler=sampler, num_workers=rec.workers,
                        drop_last=len(sampler) >= per_rank, pin_memory=dev.startswith("cuda"))
    iters = len(loader)
    total = rec.epochs * iters
    limit = rec.divergence_factor * max(math.log(num_classes), 1.0)
    fingerprint = _fingerprint(rec, seed, name, num_classes)
    ckpt = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir is not None else None
    start, history, train_time = 0, [], 0.0
    if ckpt is not None:
        state = _load_checkpoint(ckpt, fingerprint, model, opt, scaler)
        if state is not None:
            start, history, train_time = state["epoch"], state["history"], state["train_time_s"]
            result["resumed_from_epoch"] = start
    set_progress(model, TrainingProgress.at(start * iters, iters, total))
    cost = EpochCost(dev)

    try:
        for epoch in range(start, rec.epochs):
            sampler.set_epoch(epoch)
            torch.manual_seed(_epoch_seed(seed, epoch, info.rank))  # augmentation and dropout, resume-exact
            net.train()
            cost.start()
            t0 = time.perf_counter()
            sums = torch.zeros(3, dtype=torch.float64)  # loss, top1, count
            lr = rec.lr
            for i, (x, y) in enumerate(loader):
                it = epoch * iters + i
                lr = rec.lr_at(it, iters)
                for group in opt.param_groups:
                    group["lr"] = lr
                x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
                with _autocast(dev, rec.amp):
                    logits = net(x)
                if logits.shape[-1] != num_classes:
                    raise UserError(f"model has {logits.shape[-1]} outputs but {name} has {num_classes} classes")
                loss = F.cross_entropy(logits.float(), y, label_smoothing=rec.label_smoothing)
                value = float(loss.detach())
                bad = not math.isfinite(value) or value > limit
                if D.broadcast_flag(bad, info):
                    what = "became non-finite" if not math.isfinite(value) else f"reached {value:.4g} > limit {limit:.4g}"
                    raise Diverged(f"loss diverged at epoch {epoch + 1} iteration {i + 1}: training loss {what}"
                                   if bad else f"loss diverged on another rank at epoch {epoch + 1} iteration {i + 1}")
                opt.zero_grad(set_to_none=True)
                if scaler is not None:
                    scaler.scale(loss).backward()
                    if rec.grad_clip is not None:
                        scaler.unscale_(opt)
                        nn.utils.clip_grad_norm_(model.parameters(), rec.grad_clip)
                    scaler.step(opt)
                    scaler.update()
                else:
                    loss.backward()
                    if rec.grad_clip is not None:
                        nn.utils.clip_grad_norm_(model.parameters(), rec.grad_clip)
                    opt.step()
                set_progress(model, TrainingProgress.at(it + 1, iters, total))
                sums += torch.tensor([value * len(y), topk_correct(logits.detach().float(), y, (1,))[0], len(y)],
                                     dtype=torch.float64)
            train_time += time.perf_counter() - t0
            spent = cost.stop()
            sums = D.all_reduce_sum(sums, info).cpu()
            entry: dict[str, Any] = {"epoch": epoch + 1, "lr": lr, "train_loss": sums[0].item() / max(sums[2].item(), 1),
                                     "train_top1": 100.0 * sums[1].item() / max(sums[2].item(), 1),
                                     "train_time_s": train_time, **spent}
            evaluating = (epoch + 1) % rec.eval_every == 0 or epoch + 1 == rec.epochs
            if evaluating and rec.bn_recalibration_batches > 0:
                recalibrate_batchnorm(model, train_ds, per_rank, rec.bn_recalibration_batches, dev, rec.amp,
                                      info, rec.workers)
            D.sync_buffers(model, info)
            if evaluating:
                ev = evaluate(model, test_ds, rec.eval_batch_size, dev, rec.amp, num_classes, info, rec.workers)
                entry.update({"test_top1": ev["top1"], "test_top5": ev["top5"], "test_loss": ev["loss"]})
            history.append(entry)
            if ckpt is not None:
                if info.is_main:
                    _save_checkpoint(ckpt, {"model": model.state_dict(), "optimizer": opt.state_dict(),
                                            "scaler": scaler.state_dict() if scaler is not None else None,
                                            "epoch": epoch + 1, "history": history, "train_time_s": train_time,
                                            "fingerprint": fingerprint})
                D.barrier(info)
            if progress is not None and info.is_main:
                progress(epoch + 1, rec.epochs, entry)
    except Diverged as exc:
        result.update(status="failed", error=str(exc))
    except UserError:
        raise
    except Exception as exc:  # e.g. out of memory: recorded as a failed run, never a crash of the suite
        result.update(status="failed", error=f"{type(exc).__name__}: {exc}")

    result.update(history=history, epochs=len(history), train_time_s=train_time, memory_method=cost.method,
                  final_temperatures=_temperatures(model), temperature_schedules=_schedules(model))
    if result["status"] == "ok" and history:
        last = history[-1]
        result.update(top1=last.get("test_top1"), top5=last.get("test_top5"), loss=last.get("test_loss"))
    return result
