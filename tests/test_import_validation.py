"""Weights that are not numbers of this model (issue 35, items 1 and 5): `import` refuses, in one line naming the
key, a state_dict with a sparse or meta tensor or a key that is no name, NaN/Inf/complex tensors and integer
tensors where the model holds floats, and a file that cannot be read (/proc/self/mem: EIO); an accuracy cell
whose evaluation is NaN or infinite is stored as failed, saying why."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from .test_hostile import one_line_exit_2

SRC = Path(__file__).parent / "fixtures" / "published" / "odconv" / "mobilenetv2_050_1x.pt"
WEIGHT = "features.0.0.weight"  # a float parameter of the release's state_dict


@pytest.fixture(scope="module")
def state_dict() -> dict[str, torch.Tensor]:
    sd = torch.load(SRC, weights_only=True)["state_dict"]
    assert WEIGHT in sd and sd[WEIGHT].is_floating_point()
    return sd


def _nan(t: torch.Tensor) -> torch.Tensor:
    return torch.full_like(t, float("nan"))


def _one_inf(t: torch.Tensor) -> torch.Tensor:
    out = t.clone()
    out.view(-1)[0] = float("inf")
    return out


CHANGES = {  # name: (change of the state_dict, what the error line says)
    "all-nan": (lambda sd: sd.update({WEIGHT: _nan(sd[WEIGHT])}), "non-finite value(s) (NaN)"),
    "one-inf": (lambda sd: sd.update({WEIGHT: _one_inf(sd[WEIGHT])}), "1 non-finite value(s) (Inf)"),
    "complex": (lambda sd: sd.update({WEIGHT: sd[WEIGHT].to(torch.complex64)}), "complex64"),
    "int64": (lambda sd: sd.update({WEIGHT: sd[WEIGHT].to(torch.int64)}), "is int64, but ours"),
    "sparse": (lambda sd: sd.update({WEIGHT: sd[WEIGHT].to_sparse()}), "sparse tensor"),
    "meta": (lambda sd: sd.update({WEIGHT: sd[WEIGHT].to("meta")}), "meta tensor"),
    "int-key": (lambda sd: sd.update({7: sd[WEIGHT]}), "key 7 (int)"),
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_import_refuses_tensors_that_are_not_weights(change: str, state_dict: dict, tmp_path: Path,
                                                     capsys) -> None:  # noqa: ANN001
    sd = dict(state_dict)
    fn, message = CHANGES[change]
    fn(sd)
    path = tmp_path / "bad.pth"
    torch.save({"state_dict": sd}, path)
    out = tmp_path / "model.pt"
    err = one_line_exit_2(["import", "odconv", str(path), "-o", str(out)], capsys, message)
    if change != "int-key":
        assert repr(WEIGHT) in err  # the line names the key
    assert not out.exists()


@pytest.mark.parametrize("arch", [None, "mobilenetv2_050_1x"])
def test_import_of_an_unreadable_file_is_one_line(arch: str | None, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    extra = ["--arch", arch] if arch else []
    one_line_exit_2(["import", "odconv", "/proc/self/mem", *extra, "-o", str(tmp_path / "m.pt")], capsys,
                    "/proc/self/mem")


def test_finite_tensors_still_import(state_dict: dict, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    from dynconv_bench.cli.main import main

    path = tmp_path / "ok.pth"
    torch.save({"state_dict": {**state_dict, WEIGHT: state_dict[WEIGHT].half()}}, path)  # fp16: still weights
    assert main(["import", "odconv", str(path), "-o", str(tmp_path / "m.pt")]) == 0, capsys.readouterr().err


@pytest.mark.parametrize("loss, top1", [(float("nan"), 0.0), (float("inf"), 10.0), (1.0, float("nan"))])
def test_a_non_finite_evaluation_is_a_failed_cell(loss: float, top1: float, tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    """A model that computes NaN (from weights or training) evaluates to top-1 0.00 and loss NaN: that is no
    result, and the store keeps it as failed with the reason."""
    from dynconv_bench.execution.runner import run_suite
    from dynconv_bench.execution.store import ResultStore
    from dynconv_bench.execution.suite import parse_suite
    from dynconv_bench.measures import accuracy

    def fake_training(*args, **kwargs) -> dict:  # noqa: ANN002, ANN003
        return {"top1": top1, "top5": 50.0, "loss": loss, "epochs": 1, "history": [], "dataset": "digits",
                "num_classes": 10}

    monkeypatch.setattr("dynconv_bench.training.train_and_evaluate", fake_training)
    assert accuracy.finite_evaluation({"loss": 1.0, "top1": 5.0}, "x") == {"loss": 1.0, "top1": 5.0}
    suite = parse_suite({"name": "nan", "backbones": ["cifar_resnet8"], "variants": ["static"],
                         "measure": {"accuracy": {"datasets": ["digits"], "epochs": 1}}})
    db = tmp_path / "r.sqlite"
    run_suite(suite, db, progress=False)
    with ResultStore(db, readonly=True) as store:
        (row,) = store.rows()
    assert row["status"] == "failed"
    assert "NonFiniteEvaluation" in row["error"] and "not a finite number" in row["error"]
