"""DDP helpers, and the entry point under `torchrun --nproc_per_node 2` with gloo on CPU."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dynconv_bench.training import distributed as D


def test_single_process_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    info = D.init_distributed("cpu")
    assert (info.rank, info.world_size, info.is_main, info.distributed, info.backend) == (0, 1, True, False, None)
    t = torch.tensor([1.0, 2.0])
    assert D.all_reduce_sum(t, info) is t
    assert D.broadcast_flag(True, info) is True and D.broadcast_flag(False, info) is False
    model = torch.nn.Linear(2, 2)
    assert D.wrap_model(model, info) is model


def test_torchrun_detection_and_device(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("RANK", "0")
    assert not D.launched_by_torchrun()
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert D.launched_by_torchrun()
    assert D.resolve_device("cpu", 3) == "cpu"
    assert D.resolve_device("cuda", 1) == "cuda:1"
    assert D.resolve_device("auto", 0) == ("cuda:0" if torch.cuda.is_available() else "cpu")


@pytest.mark.slow
def test_torchrun_two_cpu_processes(tmp_path: Path) -> None:
    torchrun = shutil.which("torchrun")
    if torchrun is None:
        pytest.skip("torchrun not installed")
    out = tmp_path / "ddp.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    cmd = [torchrun, "--standalone", "--nproc_per_node", "2", "-m", "dynconv_bench.training", "--backbone",
           "cifar_resnet8", "--variant", "static", "--dataset", "digits", "--epochs", "3", "--seed", "0",
           "--device", "cpu", "--set", "image_size=16", "--out", str(out), "--quiet"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(out.read_text())
    assert res["status"] == "ok" and res["error"] is None and res["world_size"] == 2
    assert res["epochs"] == 3 and len(res["history"]) == 3 and res["seed"] == 0
    assert res["top5"] is not None and res["top1"] >= 60.0  # digits: a sensible accuracy after 3 epochs
    assert proc.stdout.count("top1") == 1  # only rank 0 reports
    # the same format as a single-process run
    single = subprocess.run([sys.executable, "-m", "dynconv_bench.training", *cmd[cmd.index("--backbone"):-3],
                             "--out", str(tmp_path / "one.json"), "--quiet"], env=env, capture_output=True,
                            text=True, timeout=600)
    assert single.returncode == 0, single.stderr[-3000:]
    one = json.loads((tmp_path / "one.json").read_text())
    assert set(one) == set(res) and set(one["history"][0]) == set(res["history"][0])
    assert one["world_size"] == 1
