"""Cells call the metrics and training APIs with the suite's options; results are repeatable."""

from __future__ import annotations

import torch

import dynconv_bench
from dynconv_bench.execution.cell import Cell
from dynconv_bench.execution.measure_cell import run_cell


def _cell(kind: str, variant: str = "static", **options: object) -> Cell:
    cfg = dynconv_bench.get_variant(variant).validate({})
    return Cell("t", "cifar_resnet8", variant, variant, cfg, kind, {"num_classes": 10, **options})


def test_macs_cell_matches_profile() -> None:
    out = run_cell(_cell("macs", "static-se", input_size=[3, 32, 32], threads=1))
    assert out["status"] == "ok", out["error"]
    model = dynconv_bench.create_model("cifar_resnet8", "static-se", num_classes=10).eval()
    ref = dynconv_bench.profile(model, input_size=(3, 32, 32))
    assert (out["values"]["macs"], out["values"]["overhead_macs"]) == (ref.macs, ref.overhead_macs)
    assert "breakdown" not in out["values"]


def test_speed_cell_records_options_and_restores_threads() -> None:
    before = torch.get_num_threads()
    out = run_cell(_cell("speed", batch_size=2, input_size=[3, 32, 32], mode="inference", threads=1,
                         warmup=1, min_time=0.01, device="cpu", processes=1))  # in one fresh worker
    assert out["status"] == "ok", out["error"]
    v = out["values"]
    assert (v["batch_size"], v["threads"], v["processes"]) == (2, 1, 1) and v["throughput"] > 0 and v["runs"] >= 1
    assert v["cpu_s"] > 0
    assert torch.get_num_threads() == before
    train = run_cell(_cell("speed", batch_size=2, input_size=[3, 32, 32], mode="train", threads=1,
                           warmup=1, min_time=0.01, processes=0))  # in this process
    assert train["status"] == "ok", train["error"]


def test_accuracy_cell_is_repeatable_with_a_fixed_seed() -> None:
    opts = dict(dataset="digits", recipe="digits-quick", epochs=1, seed=3, train_samples=64, threads=1,
                overrides={"image_size": 8, "batch_size": 32})
    a = run_cell(_cell("accuracy", **opts))
    b = run_cell(_cell("accuracy", **opts))
    assert a["status"] == "ok", a["error"]
    assert a["values"]["top1"] == b["values"]["top1"] and a["values"]["loss"] == b["values"]["loss"]
    assert 0 <= a["values"]["top1"] <= 100 and a["values"]["epochs"] == 1 and a["values"]["threads"] == 1


def test_unknown_dataset_path_is_a_failed_cell(tmp_path) -> None:  # noqa: ANN001
    out = run_cell(_cell("accuracy", dataset="imagefolder", data_root=str(tmp_path / "none"), seed=0))
    assert out["status"] == "failed" and out["values"] is None
    assert "UserError" in out["error"]  # the data module's one-line message about the expected layout


def test_model_spec_builds_in_any_process_and_passes_preset_only_when_set(monkeypatch) -> None:
    import importlib
    import pickle

    from dynconv_bench.models.modelspec import ModelSpec

    convert = importlib.import_module("dynconv_bench.models.convert")  # the module (the package exports a function of that name)

    spec = ModelSpec("cifar_resnet8", "static-se", {"reduction": 8})
    assert pickle.loads(pickle.dumps(spec)) == spec and ModelSpec.from_dict(spec.to_dict()) == spec
    model = spec.build(num_classes=7, in_chans=1)
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 7) and model.dynconv_report.config["reduction"] == 8
    seen: list[dict] = []
    monkeypatch.setattr(convert, "create_model", lambda *a, **kw: seen.append(kw))
    spec.build(num_classes=3)
    ModelSpec("cifar_resnet8", "static", preset="paper").build(num_classes=3)
    assert seen == [{"num_classes": 3, "reduction": 8}, {"num_classes": 3, "preset": "paper"}]
