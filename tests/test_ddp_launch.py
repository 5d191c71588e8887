"""Accuracy cells trained by several DDP workers (`gpus = N`): torchrun locally, Ray Train under the ray executor.

The slow tests train with gloo on 2 CPU worker processes: `-m slow tests/test_ddp_launch.py`.
"""

from __future__ import annotations

import statistics

import pytest
import torch

from dynconv_bench.errors import UserError
from dynconv_bench.execution.processes.ddp_launch import launch
from dynconv_bench.execution.suite import parse_suite


def _suite(gpus: int, seeds: list[int], name: str = "ddp") -> dict:
    accuracy = {"datasets": ["digits"], "recipe": "digits-quick", "epochs": 2, "seeds": seeds, "threads": 1,
                "overrides": {"image_size": 8}}
    if gpus is not None:
        accuracy["gpus"] = gpus
    return {"name": name, "backbones": ["cifar_resnet8"], "variants": ["static"], "measure": {"accuracy": accuracy}}


def test_one_worker_cells_keep_their_identity_and_bad_layouts_are_refused() -> None:
    plain, one = parse_suite(_suite(None, [0])).cells(), parse_suite(_suite(1, [0])).cells()
    assert plain[0].key == one[0].key and "gpus" not in one[0].options  # stored cells are not rerun
    two = parse_suite(_suite(2, [0])).cells()[0]
    assert two.options["gpus"] == 2 and two.key != plain[0].key and two.opts.nodes == 1
    bad = _suite(4, [0])
    bad["measure"]["accuracy"]["nodes"] = 3
    with pytest.raises(UserError, match=r"nodes = 3 must divide gpus = 4"):
        parse_suite(bad)
    with pytest.raises(UserError, match=r"nodes = 2: torchrun from one process reaches this machine only"):
        launch("dynconv_bench.execution.processes.ddp_launch:_rank", {}, workers=2, nodes=2, launcher="torchrun")


def test_the_runner_checks_the_split_before_starting_workers() -> None:
    """The kind decides the workers; run_cell starts them after `rank_options` accepted the global batch."""
    import dynconv_bench
    from dynconv_bench.execution.cell import Cell
    from dynconv_bench.execution.measure_cell import run_cell
    from dynconv_bench.measures import get_kind

    cfg = dynconv_bench.get_variant("static").validate({})
    opts = {"num_classes": 10, "dataset": "digits", "recipe": "digits-quick", "seed": 0, "gpus": 3}
    accuracy = get_kind("accuracy")
    assert accuracy.ddp_workers(accuracy.options(opts)) == (3, 1)
    assert accuracy.ddp_workers(accuracy.options({**opts, "gpus": 1})) == (1, 1)
    assert get_kind("speed").ddp_workers(get_kind("speed").options({})) == (1, 1)
    out = run_cell(Cell("t", "cifar_resnet8", "static", "static", cfg, "accuracy", opts))
    assert out["status"] == "failed"
    assert out["error"].startswith("UserError: accuracy: batch_size 64 of recipe digits-quick does not split over "
                                   "gpus = 3 workers; the global batch must be a multiple of gpus")


def train_without_batchnorm(payload: dict) -> dict:
    """A DDP worker (module level: the ranks import it): a BatchNorm-free net, so N workers equal one exactly."""
    from dynconv_bench.training import distributed as D
    from dynconv_bench.training.loop import train_and_evaluate

    torch.set_num_threads(1)
    D.init_distributed("cpu")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
                                torch.nn.Linear(8 * 8 * 8, 10))
    out = train_and_evaluate(model, "digits", "digits-quick", epochs=payload["epochs"], image_size=8,
                             bn_recalibration_batches=0)
    return {"losses": [h["train_loss"] for h in out["history"]], "test_loss": out["loss"], "top1": out["top1"],
            "world_size": out["world_size"], "weights": [p.detach().double().sum().item() for p in model.parameters()]}


@pytest.mark.slow
def test_two_workers_train_the_global_batch_of_one() -> None:
    """Global batch, gradient averaging and the unscaled lr: 2 gloo workers give one process's trajectory."""
    one = train_without_batchnorm({"epochs": 2})
    two = launch(f"{__name__}:train_without_batchnorm", {"epochs": 2}, workers=2, launcher="torchrun")
    assert (one["world_size"], two["world_size"], two["launcher"], two["nodes"]) == (1, 2, "torchrun", 1)
    assert two["losses"] == pytest.approx(one["losses"], rel=1e-4)
    assert two["test_loss"] == pytest.approx(one["test_loss"], rel=1e-4) and two["top1"] == pytest.approx(one["top1"])
    assert two["weights"] == pytest.approx(one["weights"], rel=1e-4, abs=1e-5)


@pytest.mark.xdist_group("ray")  # one Ray at a time: a second ray.init finds the first one's cluster
@pytest.mark.slow
def test_ddp_accuracy_cell_through_torchrun_and_ray_train(tmp_path) -> None:  # noqa: ANN001
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.train")
    from dynconv_bench.execution.executors import LocalExecutor
    from dynconv_bench.execution.executors_ray import RayExecutor
    from dynconv_bench.execution.runner import run_suite
    from dynconv_bench.execution.store import ResultStore

    with ResultStore(tmp_path / "r.sqlite") as store:
        assert run_suite(parse_suite(_suite(None, [0, 1, 2], "one")), store, executor=LocalExecutor(),
                         progress=False).ok
        single = [r["values"]["top1"] for r in store.rows(suite="one")]
        assert run_suite(parse_suite(_suite(2, [0], "torchrun")), store, executor=LocalExecutor(), progress=False).ok
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            assert run_suite(parse_suite(_suite(2, [0], "ray")), store, executor=RayExecutor(), progress=False).ok
        finally:
            ray.shutdown()
        ddp = {s: store.rows(suite=s)[0] for s in ("torchrun", "ray")}
    mean, spread = statistics.fmean(single), statistics.stdev(single)
    print(f"1 worker top-1 {single} (mean {mean:.2f} std {spread:.2f}); 2 workers: "
          f"{ {s: r['values']['top1'] for s, r in ddp.items()} }")
    for suite, launcher in (("torchrun", "torchrun"), ("ray", "ray-train")):
        values = ddp[suite]["values"]
        assert (values["world_size"], values["launcher"], values["nodes"], values["gpus"]) == (2, launcher, 1, 0)
        assert abs(values["top1"] - mean) <= max(3 * spread, 1.0)  # within the seed spread of one worker
        assert values["recipe_config"]["batch_size"] == 64 and values["recipe_config"]["lr"] == 0.1
    assert ddp["ray"]["environment"]["executor"] == "ray"


@pytest.mark.xdist_group("ray")  # one Ray at a time: a second ray.init finds the first one's cluster
@pytest.mark.slow
def test_ddp_cell_spans_two_nodes_of_a_cluster(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    """`nodes = 2`: Ray Train puts one worker on each of two simulated nodes; the record says so."""
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.train")
    from ray.cluster_utils import Cluster

    from dynconv_bench.execution.executors_ray import RayExecutor
    from dynconv_bench.execution.runner import run_suite
    from dynconv_bench.execution.store import ResultStore

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address, log_to_driver=False)
    try:
        suite = _suite(2, [0], "spread")
        suite["measure"]["accuracy"]["nodes"] = 2
        with ResultStore(tmp_path / "r.sqlite") as store:
            summary = run_suite(parse_suite(suite), store, executor=RayExecutor(), progress=False)
            assert summary.ok, summary.describe()
            values = store.rows()[0]["values"]
    finally:
        ray.shutdown()
        cluster.shutdown()
    assert (values["world_size"], values["nodes"], values["launcher"]) == (2, 2, "ray-train")
    assert values["top1"] > 90.0  # digits after 2 epochs, as the one-node runs above
