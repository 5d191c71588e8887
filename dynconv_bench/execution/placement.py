"""Where the Ray executor puts a cell, and what it asks Ray for.

A timed cell (its kind's `timed`: speed, memory, layers, plugin kinds marked timed) asks for every CPU of one
node on CPU, or for one whole GPU and that GPU's share of the node's CPUs on CUDA, and is pinned to that node
(`NodeAffinitySchedulingStrategy`, hard): Ray's own resource accounting then keeps every other CPU task off
the node (or off the GPU) while it runs. Untimed cells ask for `--num-cpus` / `--num-gpus` and pack.

`Ledger` is this run's view of the cluster (from `ray.nodes()`) and of what it has in flight per node: it
chooses nodes so that a timed cell is not queued behind packed untimed ones (the node chosen for a waiting
timed cell takes no new untimed cell), and fails a cell that no live node can ever hold. Ray enforces the
requests; nothing here is a lock.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..measures import get_kind
from .cell import Cell


@dataclass(frozen=True)
class Demand:
    """What one cell needs: `timed` cells hold a node (cpu) or a GPU and its CPU share (cuda)."""

    timed: bool
    cuda: bool
    cpus: float  # untimed: the request; timed: resolved per node (`Node.request`)
    gpus: float
    pinned: bool = True  # False: a coordinator (DDP accuracy) that asks for nothing and goes anywhere
    workers: int = 0  # DDP accuracy: Ray Train's workers, each asking worker_cpus CPUs and worker_gpus GPUs,
    worker_cpus: float = 0.0  # spread over `nodes` nodes (1: STRICT_PACK, = workers: STRICT_SPREAD, else PACK)
    worker_gpus: float = 0.0
    nodes: int = 1

    @property
    def strategy(self) -> str:
        """The placement strategy of the DDP workers' placement group (processes/ddp_launch.py does the same)."""
        return "STRICT_PACK" if self.nodes == 1 else "STRICT_SPREAD" if self.nodes == self.workers else "PACK"


@dataclass
class Node:
    """One live Ray node: its totals and what this run has placed on it."""

    node_id: str
    host: str
    cpus: float
    gpus: float
    used_cpus: float = 0.0
    used_gpus: float = 0.0
    timed: int = 0  # timed cells of this run in flight here
    reserved: bool = False  # a timed cell waits for this node: no new untimed cell goes here

    @property
    def gpu_cpu_share(self) -> float:
        """The CPUs that come with one GPU: the node's CPUs over its GPUs (whole CPUs when at least one)."""
        share = self.cpus / self.gpus if self.gpus else 0.0
        return float(math.floor(share)) if share >= 1 else share

    def request(self, demand: Demand) -> tuple[float, float]:
        """(CPUs, GPUs) the cell asks Ray for on this node."""
        if demand.timed:
            return (self.gpu_cpu_share, 1.0) if demand.cuda else (self.cpus, 0.0)
        return demand.cpus, demand.gpus

    def could_hold(self, demand: Demand) -> bool:
        """Whether this node, empty, could run the cell at all."""
        cpus, gpus = self.request(demand)
        if demand.timed and not demand.cuda:
            return self.cpus > 0
        return cpus <= self.cpus + 1e-9 and gpus <= self.gpus + 1e-9 and (not demand.cuda or self.gpus > 0)

    def fits_now(self, demand: Demand) -> bool:
        """Whether the cell fits beside what this run has in flight here."""
        if not self.could_hold(demand):
            return False
        if self.reserved and not demand.timed:
            return False
        cpus, gpus = self.request(demand)
        return (self.cpus - self.used_cpus >= cpus - 1e-9) and (self.gpus - self.used_gpus >= gpus - 1e-9)


def cell_demand(cell: Cell, num_cpus: float = 1, num_gpus: float = 0) -> Demand:
    """The demand of `cell`: its kind's `timed`, its device, the executor's per-task CPUs and GPUs."""
    options = cell.options
    cuda = str(options.get("device", "cpu")).startswith("cuda")
    workers = int(options.get("gpus") or 1)
    if cell.kind == "accuracy" and workers > 1:  # Ray Train's workers hold the resources
        return Demand(False, cuda, 0.0, 0.0, pinned=False, workers=workers,
                      worker_cpus=float(options.get("threads") or 1), worker_gpus=1.0 if cuda else 0.0,
                      nodes=int(options.get("nodes") or 1))
    gpus = options.get("num_gpus")
    if gpus is None:
        gpus = max(num_gpus, 1) if cuda else num_gpus
    timed = bool(getattr(get_kind(cell.kind), "timed", False))
    return Demand(timed, cuda, float(num_cpus), float(gpus))


@dataclass
class Placement:
    """A cell placed: the node and the resources it asked for there (None: unpinned coordinator)."""

    node_id: str | None
    cpus: float
    gpus: float
    timed: bool
    node_cpus: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


class Ledger:
    """The live nodes and what this run has placed on each (see the module docstring)."""

    def __init__(self, nodes: Iterable[Mapping[str, Any]] = ()) -> None:
        self.nodes: dict[str, Node] = {}
        self.dead: set[str] = set()  # nodes a task died with: never placed on again, whatever ray.nodes() says yet
        self.update(nodes)

    def forget(self, node_id: str) -> None:
        """A node died (its task said so before Ray's node table did): place nothing there again."""
        self.dead.add(node_id)
        self.nodes.pop(node_id, None)

    def update(self, nodes: Iterable[Mapping[str, Any]]) -> list[str]:
        """Take the live nodes from `ray.nodes()` entries; return the ids of nodes that are gone."""
        alive = {}
        for n in nodes:
            if not n.get("Alive", n.get("alive", False)) or n["NodeID"] in self.dead:
                continue
            res = n.get("Resources") or {}
            nid = n["NodeID"]
            old = self.nodes.get(nid)
            node = Node(nid, str(n.get("NodeManagerHostname") or n.get("NodeManagerAddress") or ""),
                        float(res.get("CPU", 0.0)), float(res.get("GPU", 0.0)))
            if old is not None:
                node.used_cpus, node.used_gpus, node.timed, node.reserved = (old.used_cpus, old.used_gpus,
                                                                             old.timed, old.reserved)
            alive[nid] = node
        gone = [nid for nid in self.nodes if nid not in alive]
        self.nodes = alive
        return gone

    def impossible(self, demand: Demand) -> str | None:
        """Why no live node can ever run a cell of this demand, or None."""
        have = "; ".join(f"{n.host or n.node_id[:8]} {n.cpus:g} CPU {n.gpus:g} GPU" for n in self.nodes.values())
        if demand.workers:
            return self._workers_impossible(demand, have or "none")
        if not demand.pinned or any(n.could_hold(demand) for n in self.nodes.values()):
            return None
        what = ("a whole GPU" if demand.cuda else "a node with CPUs") if demand.timed else \
            f"{demand.cpus:g} CPU and {demand.gpus:g} GPU"
        return f"no live node of the Ray cluster can hold this cell: it needs {what} (nodes: {have or 'none'})"

    def _workers_impossible(self, demand: Demand, have: str) -> str | None:
        """Why the live nodes, empty, cannot hold a DDP cell's workers together (Ray Train would wait forever)."""
        def slots(node: Node) -> int:  # the workers this node holds when empty
            fits = [math.floor(total / each + 1e-9) for total, each in
                    ((node.cpus, demand.worker_cpus), (node.gpus, demand.worker_gpus)) if each > 0]
            return min(fits) if fits else demand.workers

        held = [slots(n) for n in self.nodes.values()]
        strategy = demand.strategy
        if strategy == "STRICT_PACK":
            ok, where = max(held, default=0) >= demand.workers, "on one node"
        elif strategy == "STRICT_SPREAD":
            ok, where = sum(1 for k in held if k >= 1) >= demand.workers, f"each on its own node ({demand.workers} nodes)"
        else:
            ok, where = sum(held) >= demand.workers, f"over {demand.nodes} nodes"
        if ok:
            return None
        each = f"{demand.worker_cpus:g} CPU" + (f" and {demand.worker_gpus:g} GPU" if demand.worker_gpus else "")
        return (f"no live node of the Ray cluster can hold this cell: it needs {demand.workers} DDP workers of {each} "
                f"each, {where} ({strategy}) (nodes: {have})")

    def place(self, demand: Demand) -> Placement | None:
        """A node where the cell fits now (and its accounting taken), or None: wait for a cell to finish.

        Untimed cells go to the busiest node where they fit (packing leaves whole nodes free for timed
        cells); timed cells to the least busy. A timed cell that fits nowhere reserves the least busy node
        that could hold it, so that untimed cells stop filling it.
        """
        if not demand.pinned:
            return Placement(None, 0.0, 0.0, False)
        fitting = [n for n in self.nodes.values() if n.fits_now(demand)]
        if demand.timed:
            fitting.sort(key=lambda n: (n.used_cpus / max(n.cpus, 1e-9), n.node_id))
        else:
            fitting.sort(key=lambda n: (-(n.used_cpus / max(n.cpus, 1e-9)), n.node_id))
        if not fitting:
            if demand.timed and not any(n.reserved for n in self.nodes.values()):
                holders = [n for n in self.nodes.values() if n.could_hold(demand)]
                if holders:
                    min(holders, key=lambda n: (n.used_cpus, n.timed, n.node_id)).reserved = True
            return None
        node = fitting[0]
        cpus, gpus = node.request(demand)
        node.used_cpus += cpus
        node.used_gpus += gpus
        if demand.timed:
            node.timed += 1
            for other in self.nodes.values():  # the waiting timed cell has a node: the next one reserves anew
                other.reserved = False
        return Placement(node.node_id, cpus, gpus, demand.timed, node.cpus)

    def release(self, placement: Placement) -> None:
        """Give back what a finished cell held (nothing for a node that is gone)."""
        node = self.nodes.get(placement.node_id or "")
        if node is None:
            return
        node.used_cpus = max(node.used_cpus - placement.cpus, 0.0)
        node.used_gpus = max(node.used_gpus - placement.gpus, 0.0)
        if placement.timed:
            node.timed -= 1
