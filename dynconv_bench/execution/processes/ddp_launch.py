"""A cell trained by N DistributedDataParallel workers (`Kind.ddp_workers`), and `launch`: one function run by N
DDP worker processes, through torchrun on this machine or Ray Train's TorchTrainer on a Ray cluster.

The workers import their target by "module:function"; the cells' target is `_rank` below, which finds the kind
through the registry, so no function above this floor is ever run by name (tests/test_import_layers.py).
"""

from __future__ import annotations

import importlib
import os
import pickle
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import UserError
from ...measures import Result, get_kind
from ..cell import Cell

if TYPE_CHECKING:
    from ...models.modelspec import ModelSpec

EXECUTOR_ENV = "DYNCONV_EXECUTOR"  # "ray" inside a cell's Ray task: `launch` then goes through Ray Train


def measure_ddp(cell: Cell, spec: ModelSpec, workers: int, nodes: int) -> Result:
    """Measure `cell` in `workers` DDP processes over `nodes` nodes; its kind makes rank 0's values the result.

    The kind's `rank_options` (checked here, before any worker starts) are what each worker measures with."""
    kind, opts = get_kind(cell.kind), cell.opts
    per_rank = kind.rank_options(opts)
    payload = {"kind": cell.kind, "spec": spec, "options": per_rank.as_dict()}
    out = launch(f"{__name__}:_rank", payload, workers, nodes, str(getattr(opts, "device", "cpu")),
                 cpus_per_worker=getattr(opts, "threads", None) or 1)
    return kind.ddp_result(opts, out)


def _rank(payload: dict[str, Any]) -> dict[str, Any]:
    """One DDP worker: fix the thread count, join the process group, then measure as a one-process cell does."""
    import torch

    from ...training.distributed import init_distributed

    kind = get_kind(payload["kind"])
    opts = kind.options(payload["options"])
    if getattr(opts, "threads", None):
        torch.set_num_threads(int(opts.threads))
    init_distributed(str(getattr(opts, "device", "auto")))
    return kind.measure(payload["spec"], opts).to_values()


# -- launching N workers ------------------------------------------------------------------------------
# Each rank runs: import the target, call it with the payload, rank 0 writes what it returned.
_RANK_BOOT = ("import sys\n"
              "from dynconv_bench.execution.processes.ddp_launch import _rank_main\n"
              "_rank_main(sys.argv[1], sys.argv[2])\n")


def launch(target: str, payload: Any, workers: int, nodes: int = 1, device: str = "cpu",
           cpus_per_worker: float = 1, launcher: str | None = None) -> dict[str, Any]:
    """Call `target` ("module:function", taking `payload`) in `workers` DDP processes; rank 0's dict comes back.

    `launcher`: "torchrun" (this machine, `--standalone`) or "ray" (Ray Train's TorchTrainer, workers across
    `nodes` nodes); default: "ray" inside a cell's Ray task, else "torchrun". The target joins the process group
    with `training.distributed.init_distributed` (gloo on CPU, nccl on CUDA). The dict gains `launcher` and
    `nodes` (nodes spanned).
    """
    launcher = launcher or ("ray" if os.environ.get(EXECUTOR_ENV) == "ray" else "torchrun")
    if launcher == "ray":
        return _launch_ray_train(target, payload, workers, nodes, device, cpus_per_worker)
    if nodes > 1:
        raise UserError(f"nodes = {nodes}: torchrun from one process reaches this machine only; run the suite "
                        "with --executor ray (Ray Train spreads the workers over the cluster's nodes)")
    return _launch_torchrun(target, payload, workers, cpus_per_worker)


def _target(target: str) -> Callable[[Any], dict[str, Any]]:
    module, _, name = target.partition(":")
    fn: Any = importlib.import_module(module)
    for part in name.split("."):
        fn = getattr(fn, part)
    return fn


def _launch_torchrun(target: str, payload: Any, workers: int, cpus_per_worker: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="dynconv_ddp_") as tmp:
        given, out = Path(tmp) / "payload.pkl", Path(tmp) / "rank0.pkl"
        given.write_bytes(pickle.dumps((target, payload)))
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={workers}",
               "--no-python", sys.executable, "-c", _RANK_BOOT, str(given), str(out)]
        threads = str(max(1, int(cpus_per_worker)))
        env = {**os.environ, "OMP_NUM_THREADS": threads, "PYTHONWARNINGS": "ignore"}
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0 or not out.is_file():
            tail = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()][-3:]
            return {"status": "failed", "error": f"torchrun with {workers} workers exited {proc.returncode}: "
                                                 + " | ".join(tail)[-1500:]}
        result = pickle.loads(out.read_bytes())
    return {**result, "launcher": "torchrun", "nodes": 1}


def _rank_main(given: str, out: str) -> None:
    """A torchrun rank: call the target (it joins the group), rank 0 writes its result (atomically)."""
    from ...training.distributed import cleanup

    target, payload = pickle.loads(Path(given).read_bytes())
    result = _target(target)(payload)
    if int(os.environ.get("RANK", "0")) == 0:
        tmp = Path(out + ".part")
        tmp.write_bytes(pickle.dumps(result))
        tmp.replace(out)
    cleanup()


def _launch_ray_train(target: str, payload: Any, workers: int, nodes: int, device: str,
                      cpus_per_worker: float) -> dict[str, Any]:
    try:
        from ray.train import RunConfig, ScalingConfig
        from ray.train.torch import TorchConfig, TorchTrainer
    except ImportError as exc:
        raise UserError(f"DDP cells on the ray executor need Ray Train: pip install 'ray[train]' ({exc})") from None
    cuda = device.startswith("cuda")
    strategy = "STRICT_PACK" if nodes == 1 else "STRICT_SPREAD" if nodes == workers else "PACK"
    resources = {"CPU": float(cpus_per_worker), **({"GPU": 1.0} if cuda else {})}
    import ray

    mailbox = ray.remote(num_cpus=0)(_Mailbox).remote()  # rank 0's result comes back through it, from any node
    with tempfile.TemporaryDirectory(prefix="dynconv_ray_train_") as tmp:
        trainer = TorchTrainer(
            _ray_train_loop, train_loop_config={"target": target, "payload": payload, "mailbox": mailbox},
            torch_config=TorchConfig(backend="nccl" if cuda else "gloo"),
            scaling_config=ScalingConfig(num_workers=workers, use_gpu=cuda, resources_per_worker=resources,
                                         placement_strategy=strategy),
            run_config=RunConfig(name=f"dynconv-{uuid.uuid4().hex[:8]}", storage_path=tmp))
        try:
            trainer.fit()
            result, nodes = ray.get(mailbox.get.remote())
        except Exception as exc:  # a worker failed: the cell fails with its reason
            text = str(exc).strip().splitlines()
            return {"status": "failed", "error": f"Ray Train with {workers} workers failed: "
                                                 f"{type(exc).__name__}: {text[0] if text else ''}"[:1500]}
        finally:
            ray.kill(mailbox)
    return {**result, "launcher": "ray-train", "nodes": nodes}


class _Mailbox:
    """A Ray actor holding rank 0's result for the process that launched the workers."""

    def __init__(self) -> None:
        self.value: Any = None

    def put(self, value: Any) -> None:
        self.value = value

    def get(self) -> Any:
        if self.value is None:
            raise RuntimeError("rank 0 reported no result")
        return self.value


def _ray_train_loop(config: dict[str, Any]) -> None:
    """A Ray Train worker (its process group already joined): call the target; rank 0 posts its result."""
    import ray
    import torch.distributed as dist

    from ...training.distributed import current

    result = _target(config["target"])(config["payload"])
    info = current()
    node = ray.get_runtime_context().get_node_id()
    nodes: list[Any] = [node] * info.world_size
    if info.distributed:
        dist.all_gather_object(nodes, node)
    if info.is_main:
        ray.get(config["mailbox"].put.remote((result, len(set(nodes)))))
