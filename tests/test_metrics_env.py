"""Environment record (dynconv_bench/metrics/env.py)."""

from __future__ import annotations

import json
import os
import subprocess

import fvcore  # noqa: F401
import timm
import torch

from dynconv_bench.metrics.env import PROJECT_ROOT, collect_environment


def test_environment_has_every_field_and_is_json():
    env = collect_environment()
    json.dumps(env)
    assert env["torch"] == torch.__version__ and env["timm"] == timm.__version__
    assert env["fvcore"] and env["cpu_model"] and env["host"]
    assert env["cores"] == os.cpu_count() and env["threads"] == torch.get_num_threads()
    assert env["gpu"] is None if not torch.cuda.is_available() else env["gpu"] == torch.cuda.get_device_name(0)
    assert "driver" in env


def test_threads_reflect_the_current_setting():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert collect_environment()["threads"] == 1
    finally:
        torch.set_num_threads(before)


def test_git_commit_is_the_projects_head():
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True)
    expected = head.stdout.strip() if head.returncode == 0 else None
    assert collect_environment()["git_commit"] == expected
