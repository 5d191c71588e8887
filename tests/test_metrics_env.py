"""Environment record (dynconv_bench/metrics/env.py)."""

from __future__ import annotations

import json
import os
import subprocess

import fvcore  # noqa: F401
import timm
import torch

from dynconv_bench.metrics.env import collect_environment


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


def test_git_commit_and_dirty_flag_of_a_repository(tmp_path):
    """A commit made here is the one recorded; an edit to a tracked file sets git_dirty; no repository: None."""
    from dynconv_bench.metrics.env import git_commit

    def git(*args):
        return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path,
                              capture_output=True, text=True, check=True).stdout.strip()

    assert git_commit(tmp_path) == {"git_commit": None, "git_dirty": None}
    git("init", "-q")
    (tmp_path / "f.txt").write_text("a")
    git("add", "f.txt")
    git("commit", "-q", "-m", "one")
    made = git("log", "-1", "--format=%H")
    assert git_commit(tmp_path) == {"git_commit": made, "git_dirty": False}
    (tmp_path / "f.txt").write_text("b")
    assert git_commit(tmp_path) == {"git_commit": made, "git_dirty": True}
