"""A 1000-class checkpoint is never scored on class folders that are not ImageNet synsets (issue 36.6): such a
folder is refused in one line instead of a `0.00 (published weights)` row beside the paper's top-1."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dynconv_bench.cli.main import main
from dynconv_bench.data.imagefolder import require_imagenet_synsets
from dynconv_bench.errors import UserError

FIXTURE = Path(__file__).parent / "fixtures" / "published" / "odconv" / "mobilenetv2_050_1x.pt"
MESSAGE = ("class folders are not ImageNet synset ids (nXXXXXXXX): cat, dog; a 1000-class checkpoint's top-1 on them "
           "means nothing")


def _images(root: Path, classes: tuple[str, ...]) -> None:
    from PIL import Image

    g = torch.Generator().manual_seed(0)
    for name in classes:
        folder = root / "val" / name
        folder.mkdir(parents=True)
        for i in range(2):
            pixels = torch.randint(0, 256, (40, 48, 3), generator=g, dtype=torch.uint8).numpy()
            Image.fromarray(pixels).save(folder / f"{i}.png")


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """weights/od.pth: the ODConv MobileNetV2 0.5x fixture with a 1000-class classifier; data/val/{cat,dog}."""
    sd = dict(torch.load(FIXTURE, weights_only=True)["state_dict"])
    g = torch.Generator().manual_seed(0)
    sd["classifier.1.weight"] = 0.01 * torch.randn(1000, sd["classifier.1.weight"].shape[1], generator=g)
    sd["classifier.1.bias"] = torch.zeros(1000)
    (tmp_path / "weights").mkdir()
    torch.save(sd, tmp_path / "weights" / "od.pth")
    _images(tmp_path / "data", ("cat", "dog"))
    (tmp_path / "pub.toml").write_text(
        'name = "pub"\nbackbones = ["mobilenetv2_050"]\n'
        'variants = [{name = "odconv-1x", variant = "odconv", config = {num_kernels = 1, temperature = 1.0}}]\n'
        '[[measure.accuracy]]\nrelease = "odconv"\ncheckpoint = "od.pth"\nweights_dir = "weights"\n'
        'data_root = "data"\ndatasets = ["imagefolder"]\nepochs = 0\n')
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _opts(data_root: str) -> object:
    from dynconv_bench.measures.base import options_of

    return options_of("accuracy", {"checkpoint": "od.pth", "release": "odconv", "weights_dir": "weights",
                                   "data_root": data_root, "dataset": "imagefolder", "seed": 0, "epochs": 0})


def test_a_1000_class_checkpoint_on_cat_and_dog_folders_is_refused_in_one_line(work: Path) -> None:
    from dynconv_bench.measures.published_eval import evaluate_checkpoint
    from dynconv_bench.models.modelspec import ModelSpec

    spec = ModelSpec("mobilenetv2_050", "odconv", {"num_kernels": 1, "temperature": 1.0})
    with pytest.raises(UserError) as info:
        evaluate_checkpoint(spec, _opts("data"))
    assert str(info.value) == f"{Path('data') / 'val'}: {MESSAGE}" and "\n" not in str(info.value)


def test_run_prints_no_top1_for_them_and_names_the_reason(work: Path, capsys: pytest.CaptureFixture) -> None:
    rc = main(["--db", str(work / "r.db"), "run", "pub.toml", "--no-plots", "--no-progress"])
    out, err = capsys.readouterr()
    assert rc == 1
    assert "(published weights)" not in out and "0.00" not in out  # no meaningless top-1 beside the paper's
    assert MESSAGE in err
    line = next(line for line in err.splitlines() if MESSAGE in line)
    assert line.strip().startswith("mobilenetv2_050/odconv-1x/accuracy") and line.count("UserError") == 1


def test_synset_folders_are_scored_with_imagenet_labels(work: Path) -> None:
    from dynconv_bench.measures.published_eval import evaluate_checkpoint
    from dynconv_bench.models.modelspec import ModelSpec

    _images(work / "imagenet", ("n01440764", "n01443537"))
    spec = ModelSpec("mobilenetv2_050", "odconv", {"num_kernels": 1, "temperature": 1.0})
    out = evaluate_checkpoint(spec, _opts("imagenet"))
    assert out["num_classes"] == 1000 and out["test_size"] == 4
    assert out["published"]["labels"] == "imagenet synsets"


def test_the_message_names_the_first_folders_that_are_not_synsets(tmp_path: Path) -> None:
    for name in ("n01440764", "n99999999", "cat", *(f"c{i}" for i in range(6))):
        (tmp_path / "val" / name).mkdir(parents=True)
    with pytest.raises(UserError) as info:
        require_imagenet_synsets(tmp_path)
    text = str(info.value)  # 8 of 9: n99999999, synset-shaped but not in ImageNet-1k, counts; five are named
    assert ": c0, c1, c2, c3, c4, ... (8 of 9); a 1000-class checkpoint's top-1" in text
    ok = tmp_path / "ok"
    for name in ("n01440764", "n01443537"):
        (ok / "val" / name).mkdir(parents=True)
    assert require_imagenet_synsets(ok) == ["n01440764", "n01443537"]
