"""Nothing in a data file runs (issue 35, item 1): a payload planted in each file a user's path reaches.

Every loader is tried with a pickle whose `__reduce__` would create a marker file: the marker must not
exist afterwards, and the error must be one line naming the file, never advising `weights_only=False`.
"""

from __future__ import annotations

import os
import pickle
import random
import re
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dynconv_bench.cli.main import main
from dynconv_bench.data import get_dataset
from dynconv_bench.errors import UserError
from dynconv_bench.untrusted import load_restricted_pickle, load_weights


class Payload:
    """Unpickling this creates `marker` (what an attacker's file would do, harmlessly)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (Path.touch, (self.marker,))


def _cifar10_dir(root: Path, planted: dict | None = None, name: str = "data_batch_1") -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for fname in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), b"labels": [0, 1, 2, 3],
                 b"batch_label": b"x", b"filenames": [b"a.png"] * 4}
        if fname == name and planted is not None:
            batch.update(planted)
        with open(folder / fname, "wb") as fh:
            pickle.dump(batch, fh, protocol=2)  # the protocol of the published (python 2) batches
    return folder


def _one_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, text
    assert "Traceback" not in text and "weights_only" not in text
    return lines[0]


def test_a_real_format_cifar_batch_still_loads(tmp_path: Path) -> None:
    """Protocol 2 (the published files) and protocol 5 (numpy's out-of-band buffers) both read."""
    _cifar10_dir(tmp_path)
    assert len(get_dataset("cifar10", "train", root=tmp_path)) == 20
    arr = np.arange(12, dtype=np.uint8)
    path = tmp_path / "p5.pkl"
    path.write_bytes(pickle.dumps({b"data": arr}, protocol=5))
    assert np.array_equal(load_restricted_pickle(path, "batch")[b"data"], arr)


def test_a_payload_in_a_cifar_batch_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    _cifar10_dir(tmp_path / "data", {b"labels": Payload(marker)})
    with pytest.raises(UserError) as err:
        get_dataset("cifar10", "train", root=tmp_path / "data")
    assert not marker.exists()
    line = _one_line(str(err.value))
    assert "data_batch_1" in line and "is refused" in line and "nothing in it was run" in line


def test_train_cli_refuses_a_planted_cifar_batch(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    from dynconv_bench.training.__main__ import main as train_main

    marker = tmp_path / "ran"
    _cifar10_dir(tmp_path / "data", {b"data": Payload(marker)}, name="test_batch")
    code = train_main(["--dataset", "cifar10", "--data-root", str(tmp_path / "data"), "--epochs", "1", "--quiet"])
    assert code == 2 and not marker.exists()
    assert "test_batch" in _one_line(capsys.readouterr().err)


def test_a_suite_accuracy_cell_on_a_planted_cifar_batch_fails_without_running_it(tmp_path: Path) -> None:
    import dynconv_bench
    from dynconv_bench.execution.cell import Cell
    from dynconv_bench.execution.measure_cell import run_cell

    marker = tmp_path / "ran"
    _cifar10_dir(tmp_path / "data", {b"data": Payload(marker)})
    options = {"num_classes": 10, "dataset": "cifar10", "data_root": str(tmp_path / "data"), "seed": 0, "epochs": 1,
               "threads": 1}
    out = run_cell(Cell("t", "cifar_resnet8", "static", "static", dynconv_bench.get_variant("static").validate({}),
                        "accuracy", options))
    assert out["status"] == "failed" and not marker.exists()
    assert "data_batch_1" in _one_line(out["error"])


def _checkpoint_with_payload(path: Path, marker: Path) -> None:
    torch.save({"model": {}, "optimizer": {}, "epoch": 1, "history": [], "fingerprint": Payload(marker)}, path)


def test_a_planted_resume_checkpoint_never_runs(tmp_path: Path) -> None:
    from dynconv_bench.training import train_and_evaluate

    marker = tmp_path / "ran"
    ckpt_dir = tmp_path / "ckpt"
    ckpt_dir.mkdir()
    _checkpoint_with_payload(ckpt_dir / "last.pt", marker)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(192, 10))
    with pytest.raises(UserError) as err:
        train_and_evaluate(model, "digits", "digits-quick", epochs=1, checkpoint_dir=ckpt_dir)
    assert not marker.exists()
    line = _one_line(str(err.value))
    assert "last.pt" in line and "never runs code" in line


def test_our_own_checkpoint_resumes_under_the_weights_only_loader(tmp_path: Path) -> None:
    from dynconv_bench.training import train_and_evaluate

    def net() -> torch.nn.Module:
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(192, 10))

    first = train_and_evaluate(net(), "digits", "digits-quick", epochs=1, checkpoint_dir=tmp_path, image_size=8)
    assert first["status"] == "ok", first.get("error")
    state = torch.load(tmp_path / "last.pt", weights_only=True)  # plain data only: no object of ours inside
    assert state["epoch"] == 1
    again = train_and_evaluate(net(), "digits", "digits-quick", epochs=1, checkpoint_dir=tmp_path, image_size=8)
    assert again["status"] == "ok" and again["top1"] == first["top1"]  # resumed: the stored epoch, not retrained


def test_import_refuses_a_planted_release_file_in_one_line(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    marker = tmp_path / "ran"
    path = tmp_path / "release.pth"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "extra": Payload(marker)}, path)
    assert main(["import", "odconv", str(path), "-o", str(tmp_path / "out.pt")]) == 2
    assert not marker.exists() and not (tmp_path / "out.pt").exists()
    line = _one_line(capsys.readouterr().err)
    assert "release.pth" in line and "Unsupported global" in line


@pytest.mark.parametrize("content", [b"", b"garbage" * 100, random.Random(0).randbytes(4096), b"PK\x03\x04broken zip"],
                         ids=["empty", "text", "random-bytes", "broken-zip"])  # ids the same in every xdist worker
def test_garbage_as_a_checkpoint_is_one_line_without_torchs_advice(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(UserError) as err:
        load_weights(path)
    assert "bad.pt" in _one_line(str(err.value))


def test_a_folder_fifo_or_device_as_a_checkpoint_says_what_it_is(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    cases = {tmp_path: "is a folder", tmp_path / "fifo": "is a FIFO", Path("/dev/zero"): "is a character device",
             tmp_path / "none.pt": "not found"}
    for path, said in cases.items():
        with pytest.raises(UserError, match=said):
            load_weights(path)
        with pytest.raises(UserError, match=said):
            load_restricted_pickle(path, "batch")
    assert stat.S_ISFIFO(os.stat(tmp_path / "fifo").st_mode)  # untouched, never opened (that would block)


def test_no_loader_in_the_package_or_scripts_unpickles_a_users_file_unrestricted() -> None:
    """Audit: every pickle/torch.load call site is one of the reviewed ones (internal IPC files in private
    temporary folders, or the two loaders of `untrusted`); a new one fails this test until it is reviewed."""
    root = Path(__file__).resolve().parent.parent
    reviewed = {
        "dynconv_bench/untrusted.py": 4,  # Unpickler subclass with find_class; torch.load(weights_only=True) (+2 in
        # its docstrings)
        "dynconv_bench/execution/processes/isolate.py": 2,  # the parent's call on the child's stdin; the child's
        # result file in a TemporaryDirectory of ours
        "dynconv_bench/execution/processes/ddp_launch.py": 2,  # torchrun payload/result in a TemporaryDirectory of
        # ours
    }
    found: dict[str, int] = {}
    pattern = re.compile(r"\bpickle\.loads?\(|\btorch\.load\(|allow_pickle\s*=\s*True|\byaml\.(?:unsafe_)?load\(|"
                         r"\bUnpickler\)|weights_only\s*=\s*False|(?<![.\w])exec\(|(?<![.\w])eval\(|\bmarshal\.loads?\(")
    for folder in ("dynconv_bench", "variants", "scripts", "benchmarks"):
        for path in (root / folder).rglob("*.py"):
            text = path.read_text()
            n = len(pattern.findall(text))
            if n:
                found[str(path.relative_to(root))] = n
    assert found == reviewed


def test_the_restricted_unpickler_refuses_every_global_outside_the_format(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    for payload in (Payload(marker), {b"k": [Payload(marker)]}, np.array([Payload(marker)], dtype=object)):
        path = tmp_path / "p.pkl"
        path.write_bytes(pickle.dumps(payload, protocol=2))
        with pytest.raises(UserError, match="is refused"):
            load_restricted_pickle(path, "batch")
    assert not marker.exists()
    code = ("import pickle, sys; from dynconv_bench.untrusted import load_restricted_pickle as L; "
            "from dynconv_bench.errors import UserError\ntry: L(sys.argv[1], 'batch')\n"
            "except UserError as e: print(e)")
    path.write_bytes(b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR.")  # a protocol-0 payload
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120)
    assert "os.system" in out.stdout and not marker.exists()
