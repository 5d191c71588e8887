"""Suites on a Ray cluster: placement of timed and untimed cells, rows that name their node, a node killed mid-run.

The placement tests need no Ray. The cluster tests start a local multi-node cluster (`ray.cluster_utils.Cluster`,
2 CPUs per simulated node) and are slow: run them with `-m slow tests/test_cluster.py`.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import tomllib

from dynconv_bench.execution.cell import Cell
from dynconv_bench.execution.placement import Demand, Ledger, cell_demand
from dynconv_bench.execution.suite import parse_suite
from dynconv_bench.metrics.env import environment_key


def _node(nid: str, cpus: float, gpus: float = 0, alive: bool = True, host: str = "h") -> dict:
    return {"NodeID": nid, "Alive": alive, "NodeManagerHostname": host, "Resources": {"CPU": cpus, "GPU": gpus}}


def _cell(kind: str, **options: object) -> Cell:
    return Cell("s", "cifar_resnet8", "static", "static", {}, kind, dict(options))


def test_timed_cells_hold_a_node_untimed_cells_pack() -> None:
    ledger = Ledger([_node("a", 2), _node("b", 2), _node("dead", 8, alive=False)])
    assert sorted(ledger.nodes) == ["a", "b"]
    untimed, timed = cell_demand(_cell("params")), cell_demand(_cell("speed"))
    assert (untimed.timed, untimed.cpus, timed.timed) == (False, 1.0, True)
    assert [cell_demand(_cell(k)).timed for k in ("macs", "memory", "layers", "accuracy", "deploy")] == [
        False, True, True, False, False]
    first = ledger.place(untimed)
    second = ledger.place(untimed)  # packs beside the first: the other node stays whole for a timed cell
    assert first.node_id == second.node_id and (first.cpus, first.gpus) == (1.0, 0.0)
    whole = ledger.place(timed)
    assert whole.node_id != first.node_id and (whole.cpus, whole.gpus, whole.timed) == (2.0, 0.0, True)
    assert ledger.place(timed) is None  # no node is free as a whole
    assert ledger.place(untimed) is None  # the node the waiting timed cell reserved takes no untimed cell
    ledger.release(first)
    assert ledger.place(untimed) is None  # still reserved for the waiting timed cell
    ledger.release(second)
    again = ledger.place(timed)
    assert again.node_id == first.node_id and again.cpus == 2.0
    ledger.release(whole)
    assert ledger.place(untimed).node_id == whole.node_id  # reservation gone once the timed cell was placed


def test_cuda_cells_hold_a_gpu_and_its_cpu_share() -> None:
    ledger = Ledger([_node("cpu", 4), _node("gpu", 16, 8)])
    timed = cell_demand(_cell("speed", device="cuda"))
    placed = [ledger.place(timed) for _ in range(8)]
    assert {p.node_id for p in placed} == {"gpu"} and {(p.cpus, p.gpus) for p in placed} == {(2.0, 1.0)}
    assert ledger.place(timed) is None  # eight GPUs, eight timed cells
    assert ledger.place(cell_demand(_cell("params"))).node_id == "cpu"
    untimed_gpu = cell_demand(_cell("accuracy", device="cuda"), num_cpus=1)
    assert (untimed_gpu.gpus, untimed_gpu.timed) == (1.0, False)
    assert cell_demand(_cell("accuracy", device="cuda", num_gpus=0.5)).gpus == 0.5
    ddp = cell_demand(_cell("accuracy", gpus=2))  # Ray Train's workers ask for the resources themselves
    assert (ddp.pinned, ddp.cpus, ddp.gpus) == (False, 0.0, 0.0) and ledger.place(ddp).node_id is None


def test_a_cell_no_node_can_hold_is_refused_with_the_nodes_named() -> None:
    ledger = Ledger([_node("a", 2, host="box1")])
    why = ledger.impossible(cell_demand(_cell("speed", device="cuda")))
    assert why == ("no live node of the Ray cluster can hold this cell: it needs a whole GPU "
                   "(nodes: box1 2 CPU 0 GPU)")
    assert ledger.impossible(Demand(False, False, 4.0, 0.0)).endswith("it needs 4 CPU and 0 GPU (nodes: box1 2 CPU 0 GPU)")
    assert ledger.impossible(cell_demand(_cell("speed"))) is None
    assert ledger.update([_node("b", 2)]) == ["a"]  # a node that died leaves the ledger
    ledger.forget("b")  # its task died with it before Ray's node table said so
    assert ledger.update([_node("b", 2)]) == [] and not ledger.nodes and ledger.place(Demand(False, False, 1, 0)) is None


def test_ddp_cells_the_nodes_cannot_hold_are_refused() -> None:
    """Ray Train waits forever for workers that no node can hold (`gpus = 4` on 2 CPUs hung 300 s): refused."""
    one = Ledger([_node("a", 2, host="box1")])
    ddp = cell_demand(_cell("accuracy", gpus=4))
    assert (ddp.workers, ddp.worker_cpus, ddp.worker_gpus, ddp.strategy) == (4, 1.0, 0.0, "STRICT_PACK")
    assert one.impossible(ddp) == ("no live node of the Ray cluster can hold this cell: it needs 4 DDP workers of "
                                   "1 CPU each, on one node (STRICT_PACK) (nodes: box1 2 CPU 0 GPU)")
    assert one.impossible(cell_demand(_cell("accuracy", gpus=2))) is None
    spread = cell_demand(_cell("accuracy", gpus=3, nodes=3))
    assert one.impossible(spread).endswith("3 DDP workers of 1 CPU each, each on its own node (3 nodes) "
                                           "(STRICT_SPREAD) (nodes: box1 2 CPU 0 GPU)")
    three = Ledger([_node("a", 1), _node("b", 1), _node("c", 1), _node("head", 0)])
    assert three.impossible(spread) is None and three.impossible(ddp) is not None
    assert three.impossible(cell_demand(_cell("accuracy", gpus=2, nodes=2, threads=1))) is None
    gpus = Ledger([_node("g1", 8, 2), _node("g2", 8, 2)])
    cuda = cell_demand(_cell("accuracy", gpus=4, nodes=2, device="cuda", threads=2))
    assert (cuda.strategy, gpus.impossible(cuda)) == ("PACK", None)  # 2 + 2 GPUs over the cluster
    assert "4 DDP workers of 2 CPU and 1 GPU each, on one node" in gpus.impossible(
        cell_demand(_cell("accuracy", gpus=4, device="cuda", threads=2)))
    assert "over 2 nodes (PACK)" in gpus.impossible(cell_demand(_cell("accuracy", gpus=6, nodes=2, device="cuda")))
    assert Ledger([]).impossible(ddp).endswith("(nodes: none)")


def test_cluster_rows_key_by_cluster_and_hardware() -> None:
    base = {"cpu_model": "X", "threads": 2, "gpu": "H100", "torch": "2", "timm": "1"}
    local = {**base, "host": "head"}
    node1 = {**base, "host": "worker1", "cluster": "head", "node_id": "n1"}
    node2 = {**base, "host": "worker2", "cluster": "head", "node_id": "n2", "gpu_index": [3]}
    other_gpu = {**node2, "gpu": "A100"}
    assert environment_key(node1) == environment_key(node2) == environment_key(local)
    assert environment_key(other_gpu) != environment_key(node1)
    assert environment_key({**base, "host": "worker1"}) != environment_key(node1)  # without Ray: per host


# -- a local multi-node cluster ---------------------------------------------------------------------
CLUSTER_SUITE = {
    "name": "cluster", "backbones": ["cifar_resnet20"], "variants": ["static", "condconv", "dyconv"],
    "measure": {"params": {"num_classes": 10}, "macs": {"num_classes": 10, "threads": 1},
                "speed": {"batch_sizes": [1, 2], "warmup": 1, "min_time": 0.05, "min_runs": 2,
                          "input_size": 16, "processes": 1}},
}


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):  # noqa: ANN201
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("DYNCONV_TEST_MARKS", str(tmp_path / "marks"))  # the nodes' workers inherit it
    (tmp_path / "marks").mkdir()
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False})
    workers = [c.add_node(num_cpus=2), c.add_node(num_cpus=2)]
    ray.init(address=c.address, log_to_driver=False)
    c.wait_for_nodes()
    try:
        yield c, workers
    finally:
        ray.shutdown()
        c.shutdown()


def _t(text: str) -> datetime:
    return datetime.fromisoformat(text)


def overlap_table(rows: list[dict]) -> list[tuple[str, str, str, str, str]]:
    """(node, kind, label, started, finished) of each row, by node then start."""
    out = [(r["environment"]["node_id"][:8], r["kind"], f"{r['variant']} b{r['options'].get('batch_size', '')}",
            r["started"][11:23], r["finished"][11:23]) for r in rows]
    return sorted(out)


@pytest.mark.xdist_group("ray")  # one Ray at a time: a second ray.init finds the first one's cluster
@pytest.mark.slow
def test_cluster_timed_cells_never_share_a_node(cluster, tmp_path: Path) -> None:  # noqa: ANN001
    from dynconv_bench.execution.executors_ray import RayExecutor
    from dynconv_bench.execution.runner import run_suite
    from dynconv_bench.execution.store import ResultStore

    c, _ = cluster
    suite = parse_suite(CLUSTER_SUITE)
    with ResultStore(tmp_path / "r.sqlite") as store:
        summary = run_suite(suite, store, executor=RayExecutor(poll_s=0.5), progress=False)
        assert summary.ok and summary.ran == 12, summary.describe()
        rows = store.rows()
    for line in overlap_table(rows):
        print(*line)
    assert Counter(r["kind"] for r in rows) == {"params": 3, "macs": 3, "speed": 6}
    import ray

    alive = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    assert all(r["environment"]["node_id"] in alive and r["environment"]["executor"] == "ray" for r in rows)
    timed = defaultdict(list)
    for r in rows:
        if r["kind"] == "speed":
            timed[r["environment"]["node_id"]].append((_t(r["started"]), _t(r["finished"])))
            assert r["environment"]["task_cpus"] == 2 and r["values"]["threads"] == 2  # the node's CPUs
    for spans in timed.values():
        spans.sort()
        assert all(b[0] >= a[1] for a, b in zip(spans, spans[1:])), spans  # one after another on a node
    assert len(timed) >= 2  # different nodes time in parallel
    untimed = sorted((_t(r["started"]), _t(r["finished"])) for r in rows if r["kind"] != "speed")
    assert any(b[0] < a[1] for a, b in zip(untimed, untimed[1:]))  # untimed cells overlap: they pack
    keys = {environment_key(r["environment"]) for r in rows}
    assert len(keys) == 1  # one hardware: one leaderboard section


def marking_run_cell(cell: dict, plugins: tuple = ()) -> dict:
    """run_cell, leaving a file named after the node and cell first (module level: Ray imports it)."""
    import ray

    from dynconv_bench.execution.measure_cell import run_cell

    marks = Path(os.environ["DYNCONV_TEST_MARKS"])
    c = Cell.from_dict(cell)
    (marks / f"{ray.get_runtime_context().get_node_id()}.{c.kind}.{c.variant}.{os.getpid()}").touch()
    return run_cell(cell, plugins)


KILL_SUITE = """
name = "kill"
backbones = ["cifar_resnet20"]
variants = ["static", "condconv", "dyconv"]

[measure.params]
num_classes = 10

[measure.macs]
num_classes = 10
threads = 1

[measure.speed]
batch_sizes = [1, 2]
warmup = 1
min_time = 1.5
min_runs = 2
input_size = 16
processes = 1
"""


@pytest.mark.xdist_group("ray")  # one Ray at a time: a second ray.init finds the first one's cluster
@pytest.mark.slow
def test_node_killed_mid_cell_rerun_completes_each_cell_once(cluster, tmp_path: Path) -> None:  # noqa: ANN001
    from dynconv_bench.execution.executors_ray import RayExecutor
    from dynconv_bench.execution.runner import run_suite
    from dynconv_bench.execution.store import ResultStore
    from dynconv_bench.execution.store_read import STALE_AFTER_S

    c, workers = cluster
    victim = workers[0]
    marks = tmp_path / "marks"
    killed = threading.Event()

    def kill_when_timing() -> None:  # remove the node as soon as a speed cell runs on it
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            if any(p.name.startswith(f"{victim.node_id}.speed.") for p in marks.iterdir()):
                time.sleep(0.5)
                c.remove_node(victim, allow_graceful=False)
                killed.set()
                return
            time.sleep(0.1)

    suite = parse_suite(tomllib.loads(KILL_SUITE))
    db = tmp_path / "r.sqlite"
    killer = threading.Thread(target=kill_when_timing, daemon=True)
    killer.start()
    with ResultStore(db) as store:
        first = run_suite(suite, store, executor=RayExecutor(fn=marking_run_cell, poll_s=0.5), progress=False)
        killer.join(timeout=5)
        assert killed.is_set()
        rows = store.rows(history=True)
        assert not [r for r in rows if r["status"] == "running"]  # no claim left behind
        failed = [r for r in rows if r["status"] == "failed"]
        assert failed and len(first.failed) == len(failed)
        assert all(r["values"] is None and r["environment"]["node_id"] == victim.node_id for r in failed)
        assert all("ray task failed on node" in r["error"] for r in failed)
        print("failed with the node:", *(f"{r['kind']} {r['variant']} {r['options'].get('batch_size', '')}"
                                         for r in failed), sep="\n  ")
        assert all(r["values"] for r in rows if r["status"] == "ok")  # nothing half-written
        ok_before = {tuple(r[k] for k in ("variant", "kind", "options_hash")) for r in rows if r["status"] == "ok"}

        # a claim held by a run on a dead node: kept while its heartbeat is fresh, taken over once it expires
        held = Cell.from_dict(failed[0])
        claim = store.claim(held, "ghost-run", owner="deadnode:4242")
        second = run_suite(suite, store, executor=RayExecutor(poll_s=0.5), progress=False)
        assert second.ok and second.elsewhere == 1 and second.ran == len(failed) - 1
        old = (datetime.now(timezone.utc) - timedelta(seconds=STALE_AFTER_S + 5)).isoformat(timespec="seconds")
        with sqlite3.connect(db) as conn:
            conn.execute("UPDATE results SET heartbeat=? WHERE id=?", (old, claim))
        # the rerun as docs/cluster.md gives it: the CLI against the cluster's address
        (tmp_path / "kill.toml").write_text(KILL_SUITE)
        cli = subprocess.run([sys.executable, "-m", "dynconv_bench.cli", "run", str(tmp_path / "kill.toml"),
                              "--executor", "ray", "--ray-address", c.address, "--db", str(db), "--no-plots",
                              "--no-progress"], capture_output=True, text=True, timeout=240)
        assert cli.returncode == 0, cli.stderr[-2000:]
        assert "suite kill: 12 cells, 1 run, 11 already done, 0 failed" in cli.stdout
        rows = store.rows(history=True)
    ok = Counter(tuple(r[k] for k in ("variant", "kind", "options_hash")) for r in rows if r["status"] == "ok")
    assert len(ok) == 12 and set(ok.values()) == {1}  # every cell measured exactly once
    assert ok_before <= set(ok)
    assert {r["environment"]["node_id"] for r in rows if r["status"] == "ok"} <= {n.node_id for n in [
        c.head_node, *workers]}
    for line in overlap_table([r for r in rows if r["status"] == "ok"]):
        print(*line)



def test_run_help_explains_the_ray_options(capsys: pytest.CaptureFixture[str]) -> None:
    from dynconv_bench.cli.main import main

    with pytest.raises(SystemExit) as exit_:
        main(["run", "--help"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for phrase in ("ray: cells as Ray tasks on a Ray cluster (--ray-address)", "each holding a whole node (CPU)",
                   "--num-cpus NUM_CPUS ray executor: CPUs each untimed cell's task asks for",
                   "--num-gpus NUM_GPUS ray executor: GPUs each untimed cell's task asks for",
                   "HOST:PORT as `ray start --head` prints it", "docs/cluster.md"):
        assert phrase in text, phrase
    assert (Path(__file__).resolve().parents[1] / "docs" / "cluster.md").is_file()
