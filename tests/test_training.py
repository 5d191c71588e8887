"""Training: recipes and schedules, determinism, checkpoint/resume, progress, divergence, the entry point."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

import dynconv_bench
from dynconv_bench.data import get_dataset
from dynconv_bench.errors import ConfigError, UserError
from dynconv_bench.models.variant import DynamicLayer
from dynconv_bench.training import RECIPES, aggregate_seeds, get_recipe, topk_correct, train_and_evaluate
from dynconv_bench.training.__main__ import main

KEYS = {"status", "error", "top1", "top5", "loss", "epochs", "history", "train_time_s", "seed"}
MEASURED = {"train_time_s", "epoch_time_s", "peak_rss_mib", "peak_cuda_mib"}  # per-epoch cost: differs run to run


def trajectory(history: list[dict]) -> list[dict]:
    """A history without its measured cost: what a deterministic run must repeat exactly."""
    return [{k: v for k, v in h.items() if k not in MEASURED} for h in history]


class ProgressProbe(DynamicLayer, nn.Module):
    """A stand-in dynamic layer: a conv that records every progress fraction it is told."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)
        self.seen: list[float] = []

    def set_progress(self, fraction: float) -> None:
        self.seen.append(fraction)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def tiny_net(num_classes: int, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(ProgressProbe(3, 8), nn.BatchNorm2d(8), nn.ReLU(), nn.Dropout(0.1),
                         nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, num_classes))


@pytest.fixture(scope="module")
def tiny_data() -> tuple:
    kw = {"num_samples": 96, "num_classes": 6, "image_size": 16}
    return get_dataset("synthetic", "train", **kw), get_dataset("synthetic", "test", **kw)


QUICK = {"batch_size": 16, "eval_batch_size": 32}


# -- recipes -----------------------------------------------------------------------------------
def test_recipes_validate_and_reference_values() -> None:
    for recipe in RECIPES.values():
        recipe.validate()
    # Reference values of the official recipes (VARIANTS.md), not measured results.
    r50 = RECIPES["kerneldna-resnet50"]
    assert (r50.epochs, r50.warmup_epochs, r50.lr, r50.weight_decay, r50.schedule) == (300, 20, 0.1, 1e-4, "cosine")
    mb = RECIPES["kerneldna-mobilenetv2"]
    assert (mb.epochs, mb.lr, mb.weight_decay, mb.momentum, mb.label_smoothing) == (150, 0.05, 4e-5, 0.9, 0.0)
    assert RECIPES["kerneldna-resnet18"].epochs == 90 and RECIPES["odconv-resnet"].epochs == 100
    assert {"digits-quick", "synthetic-quick", "dyconv-resnet"} <= set(RECIPES)


def test_lr_schedule_values() -> None:
    r = get_recipe("digits-quick", lr=0.2, epochs=10, warmup_epochs=2, warmup_start_factor=0.1, min_lr=0.0)
    assert r.lr_at(0, 10) == pytest.approx(0.02)
    assert r.lr_at(10, 10) == pytest.approx(0.02 + 0.18 * 0.5)  # half-way through warm-up
    assert r.lr_at(20, 10) == pytest.approx(0.2)  # warm-up done, cosine starts at lr
    assert r.lr_at(60, 10) == pytest.approx(0.1)  # half of the cosine span
    assert r.lr_at(100, 10) == pytest.approx(0.0, abs=1e-12)
    s = get_recipe("odconv-resnet")
    assert [s.lr_at(e * 5, 5) for e in (0, 29, 30, 60, 95)] == pytest.approx([0.1, 0.1, 0.01, 1e-3, 1e-4])


def test_recipe_overrides_rejected() -> None:
    with pytest.raises(ConfigError, match="unknown key 'lr_rate'.*valid keys: amp, batch_size"):
        get_recipe("digits-quick", lr_rate=0.1)
    with pytest.raises(ConfigError, match="schedule must be one of: cosine, step"):
        get_recipe("digits-quick", schedule="linear")
    with pytest.raises(ConfigError, match="epochs must be an integer"):
        get_recipe("digits-quick", epochs=0)
    with pytest.raises(UserError, match="unknown recipe 'digits-quik'.*did you mean 'digits-quick'"):
        get_recipe("digits-quik")
    assert get_recipe("digits-quick", milestones=[1, 2]).milestones == (1, 2)


def test_topk_correct() -> None:
    logits = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.3], [0.2, 0.3, 0.5]])
    target = torch.tensor([1, 2, 0])
    # ranks of the target: 1st, 2nd, 3rd -> top1 = 1, top2 = 2, top5 (capped at 3 classes) = 3
    assert topk_correct(logits, target, (1, 2, 5)) == [1, 2, 3]


def test_aggregate_seeds() -> None:
    runs = [{"status": "ok", "seed": 0, "top1": 90.0, "top5": None, "loss": 0.5},
            {"status": "ok", "seed": 1, "top1": 94.0, "top5": None, "loss": 0.3},
            {"status": "failed", "seed": 2, "top1": None, "top5": None, "loss": None}]
    agg = aggregate_seeds(runs)
    assert (agg["runs"], agg["ok"], agg["failed"], agg["seeds"]) == (3, 2, 1, [0, 1])
    assert agg["top1_mean"] == 92.0 and agg["top1_std"] == pytest.approx(math.sqrt(8.0))
    assert agg["loss_mean"] == pytest.approx(0.4) and agg["top5_mean"] is None and agg["top5_std"] is None


# -- the loop --------------------------------------------------------------------------------------
def test_result_format_progress_and_determinism(tiny_data: tuple) -> None:
    seen: list[tuple[int, int]] = []
    model = tiny_net(6)
    r1 = train_and_evaluate(model, tiny_data, "synthetic-quick", seed=3, epochs=3,
                            progress=lambda e, t, info: seen.append((e, t)), **QUICK)
    assert KEYS <= set(r1) and r1["status"] == "ok" and r1["error"] is None
    assert r1["epochs"] == 3 and len(r1["history"]) == 3 and seen == [(1, 3), (2, 3), (3, 3)]
    assert 0 <= r1["top1"] <= 100 and r1["top5"] is not None and r1["top5"] >= r1["top1"]
    assert r1["top1"] == r1["history"][-1]["test_top1"] and math.isfinite(r1["loss"])
    probe = model[0].seen
    iters = 96 // 16
    assert len(probe) == 3 * iters + 1  # once at the start, then after every iteration
    assert probe[0] == 0.0 and probe[-1] == 1.0 and probe == sorted(probe)
    assert probe[iters] == pytest.approx(1 / 3)
    # every call also carries the iteration and the run's shape, for schedules counted in epochs
    assert all(isinstance(p, dynconv_bench.TrainingProgress) for p in probe)
    assert [p.iteration for p in probe] == list(range(3 * iters + 1))
    assert {(p.iters_per_epoch, p.total_iters) for p in probe} == {(iters, 3 * iters)}
    assert (probe[iters].epoch, probe[iters + 3].epoch) == (1.0, 1.5)
    r2 = train_and_evaluate(tiny_net(6), tiny_data, "synthetic-quick", seed=3, epochs=3, **QUICK)
    assert trajectory(r2["history"]) == trajectory(r1["history"])
    assert all(MEASURED - {"peak_cuda_mib"} <= set(h) for h in r1["history"])  # each epoch's cost is recorded
    assert r2["top1"] == r1["top1"] and r2["loss"] == r1["loss"]


def test_top5_none_with_five_classes_or_fewer() -> None:
    kw = {"num_samples": 40, "num_classes": 4, "image_size": 12}
    data = (get_dataset("synthetic", "train", **kw), get_dataset("synthetic", "test", **kw))
    r = train_and_evaluate(tiny_net(4), data, "synthetic-quick", epochs=1, **QUICK)
    assert r["status"] == "ok" and r["top5"] is None and r["history"][0]["test_top5"] is None


def test_checkpoint_resume_matches_uninterrupted(tiny_data: tuple, tmp_path: Path) -> None:
    full_model = tiny_net(6)
    full = train_and_evaluate(full_model, tiny_data, "synthetic-quick", seed=1, epochs=4, **QUICK)

    def interrupt(epoch: int, total: int, info: dict) -> None:
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_and_evaluate(tiny_net(6), tiny_data, "synthetic-quick", seed=1, epochs=4, checkpoint_dir=tmp_path,
                           progress=interrupt, **QUICK)
    assert torch.load(tmp_path / "last.pt", weights_only=True)["epoch"] == 2
    resumed_model = tiny_net(6, seed=123)  # different init: everything must come from the checkpoint
    resumed = train_and_evaluate(resumed_model, tiny_data, "synthetic-quick", seed=1, epochs=4,
                                 checkpoint_dir=tmp_path, **QUICK)
    assert resumed["resumed_from_epoch"] == 2
    assert (resumed["top1"], resumed["loss"]) == (full["top1"], full["loss"])
    assert trajectory(resumed["history"]) == trajectory(full["history"])
    for (name, a), b in zip(full_model.state_dict().items(), resumed_model.state_dict().values()):
        assert torch.equal(a, b), name
    assert resumed_model[0].seen[0] == pytest.approx(0.5) and resumed_model[0].seen[-1] == 1.0
    assert (resumed_model[0].seen[0].iteration, resumed_model[0].seen[0].epoch) == (2 * 96 // 16, 2.0)
    with pytest.raises(UserError, match="belongs to a different run"):
        train_and_evaluate(tiny_net(6), tiny_data, "synthetic-quick", seed=2, epochs=4, checkpoint_dir=tmp_path,
                           **QUICK)


def test_diverging_loss_fails_early(tiny_data: tuple) -> None:
    r = train_and_evaluate(tiny_net(6), tiny_data, "synthetic-quick", epochs=3, lr=1e6, warmup_epochs=0, **QUICK)
    assert r["status"] == "failed" and "diverged" in r["error"] and r["top1"] is None
    assert r["epochs"] < 3

    class NaNNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(3, 6)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x.mean((2, 3))) * float("nan")

    r = train_and_evaluate(NaNNet(), tiny_data, "synthetic-quick", epochs=2, **QUICK)
    assert r["status"] == "failed" and "epoch 1 iteration 1" in r["error"] and "non-finite" in r["error"]
    assert r["history"] == [] and r["epochs"] == 0


def test_amp_grad_clip_label_smoothing_step_run(tiny_data: tuple) -> None:
    r = train_and_evaluate(tiny_net(6), tiny_data, "synthetic-quick", epochs=2, amp=True, grad_clip=1.0,
                           label_smoothing=0.1, schedule="step", milestones=(1,), **QUICK)
    assert r["status"] == "ok" and r["history"][1]["lr"] == pytest.approx(0.01)
    assert r["recipe_config"]["amp"] is True


def test_wrong_class_count_and_unknown_override(tiny_data: tuple) -> None:
    with pytest.raises(UserError, match="model has 10 outputs but .* has 6 classes"):
        train_and_evaluate(tiny_net(10), tiny_data, "synthetic-quick", epochs=1, **QUICK)
    with pytest.raises(ConfigError, match="unknown key 'batchsize'"):
        train_and_evaluate(tiny_net(6), tiny_data, "synthetic-quick", batchsize=8)


@pytest.mark.parametrize("variant", ["dyconv", "odconv"])
def test_loop_drives_the_temperature_schedule(variant: str) -> None:
    if variant not in dynconv_bench.list_variants():
        pytest.skip(f"{variant} not registered")
    kw = {"num_samples": 16, "num_classes": 4, "image_size": 8}
    data = (get_dataset("synthetic", "train", **kw), get_dataset("synthetic", "test", **kw))
    recipe = {"epochs": 1, "batch_size": 8, "eval_batch_size": 16}  # 2 iterations
    # default: 30 -> 1 over 10 epochs, at least 200 iterations: 2 of 200 steps done
    model = dynconv_bench.create_model("cifar_resnet8", variant, num_classes=4)
    temps = [m for m in model.modules() if hasattr(m, "temperature") and hasattr(m, "set_progress")]
    assert temps and all(float(m.temperature) == 30.0 for m in temps)
    assert train_and_evaluate(model, data, "synthetic-quick", **recipe)["status"] == "ok"
    assert [m.temperature for m in temps] == [pytest.approx(1 + 29 * (1 - 2 / 200))] * len(temps)
    # a fraction of the run without a floor reaches 1 within the run
    model = dynconv_bench.create_model("cifar_resnet8", variant, num_classes=4, anneal_unit="fraction",
                                       anneal_fraction=0.5, anneal_min_iters=0)
    temps = [m for m in model.modules() if hasattr(m, "temperature") and hasattr(m, "set_progress")]
    r = train_and_evaluate(model, data, "synthetic-quick", **recipe)
    assert r["status"] == "ok" and {m.temperature for m in temps} == {1.0}


# -- entry point -----------------------------------------------------------------------------------
def test_main_user_errors(capsys: pytest.CaptureFixture) -> None:
    assert main(["--variant", "dyconvv", "--dataset", "digits", "--epochs", "1"]) == 2
    assert "unknown variant" in capsys.readouterr().err
    assert main(["--recipe", "nope"]) == 2
    assert "unknown recipe 'nope'" in capsys.readouterr().err
    assert main(["--set", "lrr=0.1"]) == 2
    assert "unknown key 'lrr'" in capsys.readouterr().err
    assert main(["--dataset", "cifar10", "--data-root", "/nonexistent/x"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "data_batch_1" in err


def test_main_writes_result(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "r.json"
    code = main(["--backbone", "cifar_resnet8", "--variant", "static", "--dataset", "digits", "--epochs", "1",
                 "--seed", "2", "--set", "batch_size=128", "--set", "image_size=8", "--device", "cpu", "--out", str(out), "--quiet"])
    assert code == 0
    res = json.loads(out.read_text())
    assert KEYS <= set(res) and res["status"] == "ok" and res["seed"] == 2 and res["epochs"] == 1
    assert (res["backbone"], res["variant"], res["dataset"], res["world_size"]) == ("cifar_resnet8", "static", "digits", 1)
    assert res["test_size"] == 360 and res["recipe_config"]["batch_size"] == 128
    assert "top1" in capsys.readouterr().out


def test_train_command_threads_and_program_name(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from dynconv_bench.cli.main import main as cli_main

    before = torch.get_num_threads()
    out = tmp_path / "r.json"
    try:
        code = cli_main(["train", "--backbone", "cifar_resnet8", "--dataset", "digits", "--epochs", "1", "--threads",
                         "1", "--device", "cpu", "--quiet", "--out", str(out)])
        assert code == 0 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    res = json.loads(out.read_text())
    assert res["threads"] == 1 and res["recipe_config"]["image_size"] == 8  # digits at their own 8x8
    assert "1 thread(s)" in capsys.readouterr().out
    assert cli_main(["train", "--threads", "0"]) == 2
    assert "--threads must be an integer >= 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli_main(["train", "--help"])
    assert capsys.readouterr().out.startswith("usage: dynconv-bench train ")
    with pytest.raises(SystemExit):
        main(["--help"])
    assert capsys.readouterr().out.startswith("usage: python -m dynconv_bench.training ")


@pytest.mark.slow
def test_static_digits_quick_reaches_95() -> None:
    from dynconv_bench.training import train_model

    r = train_model("cifar_resnet8", "static", "digits", "digits-quick", seed=0)  # the quick comparison's backbone
    assert r["status"] == "ok" and r["top1"] >= 95.0, r


def test_eval_shards_cover_each_sample_once() -> None:
    from dynconv_bench.training.loop import _ShardSampler

    shards = [list(_ShardSampler(10, rank, 3)) for rank in range(3)]
    assert sorted(sum(shards, [])) == list(range(10)) and [len(s) for s in shards] == [4, 3, 3]


@pytest.mark.slow
def test_synthetic_is_learnable_but_not_solved() -> None:
    from dynconv_bench.training import train_model

    r = train_model("cifar_resnet8", "static", "synthetic", "synthetic-quick", seed=0)
    assert r["status"] == "ok" and 20.0 < r["top1"] < 100.0, r  # chance is 10%
