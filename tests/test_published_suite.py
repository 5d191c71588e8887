"""`run published` with a fake ImageNet and the fixtures as downloaded files; `dynconv-bench import`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from dynconv_bench.cli.main import main

FIXTURES = Path(__file__).parent / "fixtures" / "published"
# the fixtures that are whole models, under the names suites/published.toml gives the downloaded files
DOWNLOADED = {"odconv1x_mobilenetv2_050.pth.tar": "odconv/mobilenetv2_050_1x.pt",
              "kerneldna_mobilenetv2_050.pth": "kerneldna/mobilenetv2_050.pt"}


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """data/imagenet/val with 2 synset classes x 3 images, weights/published with two fixture files."""
    from PIL import Image

    g = torch.Generator().manual_seed(0)
    for synset in ("n01440764", "n01443537"):
        folder = tmp_path / "data" / "imagenet" / "val" / synset
        folder.mkdir(parents=True)
        for i in range(3):
            pixels = torch.randint(0, 256, (72, 90, 3), generator=g, dtype=torch.uint8).numpy()
            Image.fromarray(pixels).save(folder / f"{i}.JPEG")
    weights = tmp_path / "weights" / "published"
    weights.mkdir(parents=True)
    for name, fixture in DOWNLOADED.items():
        shutil.copy(FIXTURES / fixture, weights / name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_run_published_prints_published_rows(workdir: Path, capsys: pytest.CaptureFixture) -> None:
    rc = main(["--db", str(workdir / "r.db"), "run", "published", "--only", "accuracy", "--no-plots",
               "--no-progress"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    skipped = [line for line in err.splitlines() if line.startswith("dynconv-bench: skipping")]
    assert len(skipped) == 15  # 17 files listed, 2 present
    assert all("not found" in line for line in skipped)
    assert out.count("(published weights)") == 2
    assert "paper top-1 imagefolder (%, reference)" in out
    assert main(["--db", str(workdir / "r.db"), "report", "--format", "json"]) == 0
    cells = dict(_walk(json.loads(capsys.readouterr().out)))
    assert cells["paper top-1 imagefolder (%, reference)"] == [68.06]  # ODConv's README; KernelDNA reports none


def _walk(obj: object):  # noqa: ANN202
    """(column, [values]) of every leaderboard row in a JSON report, numbers only."""
    out: dict[str, list] = {}
    stack = [obj]
    while stack:
        o = stack.pop()
        if isinstance(o, dict):
            for k, v in o.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    out.setdefault(k, []).append(v)
                else:
                    stack.append(v)
        elif isinstance(o, list):
            stack.extend(o)
    return out.items()


def test_evaluation_records_the_file(workdir: Path) -> None:
    from dynconv_bench.measures.base import options_of
    from dynconv_bench.measures.published_eval import evaluate_checkpoint
    from dynconv_bench.models.modelspec import ModelSpec
    from dynconv_bench.models.published import sha256_of

    spec = ModelSpec("kerneldna_mobilenetv2_050", "static", {})
    opts = options_of("accuracy", {"checkpoint": "kerneldna_mobilenetv2_050.pth", "release": "kerneldna",
                                   "weights_dir": "weights/published", "data_root": "data/imagenet",
                                   "dataset": "imagefolder", "seed": 0, "epochs": 0})
    out = evaluate_checkpoint(spec, opts)
    assert out["test_size"] == 6 and out["num_classes"] == 10
    assert out["published"]["sha256"] == sha256_of("weights/published/kerneldna_mobilenetv2_050.pth")
    assert out["published"]["labels"] == "folder order"  # 10 outputs: not the 1000 ImageNet synsets
    assert 0.0 <= out["top1"] <= 100.0


def test_import_writes_checked_model(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from dynconv_bench.models.published import get_pair

    out_file = tmp_path / "model.pt"
    src = FIXTURES / "odconv" / "mobilenetv2_050_1x.pt"
    assert main(["import", "odconv", str(src), "-o", str(out_file)]) == 0
    assert "odconv:mobilenetv2_050_1x: 824 tensors" in capsys.readouterr().out
    saved = torch.load(out_file, weights_only=True)
    model = get_pair("odconv", "mobilenetv2_050_1x").build(saved["num_classes"])
    model.load_state_dict(saved["state_dict"])
    fx = torch.load(src, weights_only=True)
    case = fx["cases"][0]
    with torch.no_grad():
        err = (model.eval()(case["input"]) - case["output"]).abs().max() / case["output"].abs().max()
    assert err <= 1e-5


def test_import_refuses_mismatch_and_corruption(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    src = FIXTURES / "odconv" / "mobilenetv2_050_1x.pt"
    rc = main(["import", "odconv", str(src), "--arch", "mobilenetv2_050_4x", "-o", str(tmp_path / "m.pt")])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert "release tensor 'features.0.0.weight'" not in err  # the stem is static in both
    assert "does not fit ours 'blocks.0.0.conv_dw.weight' (4, 16, 1, 3, 3)" in err
    broken = tmp_path / "broken.pth"
    broken.write_bytes(src.read_bytes()[: 4096])
    rc = main(["import", "odconv", str(broken), "-o", str(tmp_path / "m.pt")])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "broken.pth is not a torch checkpoint" in err
    rc = main(["import", "odconv", str(src), "--sha256", "0" * 64, "-o", str(tmp_path / "m.pt")])
    assert rc == 2 and "expected " + "0" * 64 in capsys.readouterr().err
    rc = main(["import", "nosuch", str(broken), "-o", str(tmp_path / "m.pt")])  # named before the file is read
    assert rc == 2 and capsys.readouterr().err.strip().endswith(
        "unknown release 'nosuch'; valid: kerneldna, kernelwarehouse, odconv, timm")
    assert not (tmp_path / "m.pt").exists()


@pytest.mark.slow
def test_run_published_whole_rows(workdir: Path, capsys: pytest.CaptureFixture) -> None:
    """Params, MACs, speed and accuracy of the two MobileNetV2 0.5x backbones."""
    rc = main(["--db", str(workdir / "r.db"), "run", "published", "--only", "mobilenetv2_050", "--only",
               "kerneldna_mobilenetv2_050", "--no-plots", "--no-progress"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert out.count("(published weights)") == 2
