"""`dynconv_bench.load_imported(path)` (issue 36.7): the model an `import` file describes, weights loaded, computing
what the model `import` produced; anything else in the file is one UserError line, and nothing runs code."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import dynconv_bench
from dynconv_bench.cli.main import main
from dynconv_bench.errors import UserError
from dynconv_bench.models.published import get_pair, import_state_dict, read_state_dict

SRC = Path(__file__).parent / "fixtures" / "published" / "odconv" / "mobilenetv2_050_1x.pt"


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("imp") / "model.pt"
    assert main(["import", "odconv", str(SRC), "-o", str(out)]) == 0
    return out


def test_load_imported_computes_what_the_imported_model_computes(imported: Path) -> None:
    model = dynconv_bench.load_imported(imported)
    assert not model.training
    pair = get_pair("odconv", "mobilenetv2_050_1x")
    produced = import_state_dict(pair, read_state_dict(SRC))  # the model `import` built before saving it
    fx = torch.load(SRC, weights_only=True)
    x = torch.cat([c["input"] for c in fx["cases"]])
    with torch.no_grad():
        assert torch.equal(model(x), produced(x))
        ref = fx["cases"][0]  # and the release's own output
        assert (model(ref["input"]) - ref["output"]).abs().max() / ref["output"].abs().max() <= 1e-5
    assert model.dynconv_imported["release"] == "odconv" and model.dynconv_imported["arch"] == "mobilenetv2_050_1x"
    assert model.dynconv_imported["num_classes"] == 10 and len(model.dynconv_imported["source_sha256"]) == 64


def _refused(path: Path, payload: object) -> str:
    torch.save(payload, path)
    with pytest.raises(UserError) as info:
        dynconv_bench.load_imported(path)
    text = str(info.value)
    assert "\n" not in text and "weights_only=False" not in text
    return text


def test_a_file_that_is_not_an_import_is_one_line(imported: Path, tmp_path: Path) -> None:
    good = torch.load(imported, weights_only=True)
    sd = good["state_dict"]
    key = next(k for k, v in sd.items() if v.is_floating_point() and v.dim() > 1)
    bad = tmp_path / "bad.pt"
    assert "holds a bare state_dict (no model to build it into), not the dict `dynconv-bench import` writes" in (
        _refused(bad, sd))
    assert "holds a list, not the dict" in _refused(bad, [1, 2])
    assert "has no 'backbone'" in _refused(bad, {k: v for k, v in good.items() if k != "backbone"})
    assert "'num_classes' is 0, not a positive integer" in _refused(bad, {**good, "num_classes": 0})
    assert "unknown variant" in _refused(bad, {**good, "variant": "odconvv"})
    assert "tensor 'extra.weight' is not in the model" in _refused(
        bad, {**good, "state_dict": {**sd, "extra.weight": torch.zeros(1)}})
    assert f"the model's tensor {key!r} is missing" in _refused(
        bad, {**good, "state_dict": {k: v for k, v in sd.items() if k != key}})
    assert f"tensor {key!r} (1,) does not fit the model's {tuple(sd[key].shape)}" in _refused(
        bad, {**good, "state_dict": {**sd, key: torch.zeros(1)}})
    nan = sd[key].clone()
    nan.view(-1)[0] = float("nan")
    assert f"tensor {key!r} holds 1 non-finite value(s)" in _refused(bad, {**good, "state_dict": {**sd, key: nan}})
    # num_classes that the classifier does not have: named by the classifier's shapes
    assert "does not fit the model's (1000," in _refused(bad, {**good, "num_classes": 1000})
    with pytest.raises(UserError, match=r"imported model .*bad\.pt (is refused|is not a torch checkpoint)"):
        bad.write_bytes(b"not a checkpoint")
        dynconv_bench.load_imported(bad)


def test_a_file_that_would_run_code_is_refused(tmp_path: Path) -> None:
    class Payload:
        def __reduce__(self):  # noqa: ANN204
            return (print, ("ran",))

    path = tmp_path / "evil.pt"
    torch.save({"backbone": Payload()}, path)
    with pytest.raises(UserError, match="refused") as info:
        dynconv_bench.load_imported(path)
    assert "\n" not in str(info.value)
