"""The GPU machine's tooling, checked on CPU: the quick GPU suite's cells, the summary, the wheel repacker."""

from __future__ import annotations

import importlib.util
import zipfile
from pathlib import Path

import pytest

import dynconv_bench
from dynconv_bench.execution.cell import Cell
from dynconv_bench.execution.store import ResultStore
from dynconv_bench.execution.suite import load_suite

ROOT = Path(__file__).resolve().parents[1]


def _script(name: str):  # noqa: ANN202
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_quick_suite_times_b1_eager_and_graph_for_every_variant() -> None:
    cells = load_suite(ROOT / "suites" / "gpu-quick.toml").cells()
    variants = dynconv_bench.list_variants()
    speed = [c for c in cells if c.kind == "speed"]
    settings = sorted({(c.options["batch_size"], c.options.get("precision", "fp32"),
                        bool(c.options.get("channels_last")), bool(c.options.get("cuda_graph"))) for c in speed})
    assert settings == [(1, "fp32", False, False), (1, "fp32", False, True), (128, "bf16", True, False),
                        (128, "fp32", False, False)]
    assert all(c.options["device"] == "cuda" and c.backbone == "resnet18" for c in speed)
    assert sorted(c.variant for c in speed) == sorted(variants * 4)
    memory = [c for c in cells if c.kind == "memory"]
    assert sorted(c.variant for c in memory) == sorted(variants) and {c.options["batch_size"] for c in memory} == {128}
    assert len(cells) == 6 * len(variants)  # with one params cell each


def _put(store: ResultStore, variant: str, kind: str, values: dict | None, status: str = "ok", **options) -> None:  # noqa: ANN003
    env = {"gpu": "Test GPU", "torch": "2.x", "cuda": "13.0"}
    store.put(Cell("gpu-quick", "resnet18", variant, variant, {}, kind, options), values, status,
              "boom" if status == "failed" else None, environment=env)


def test_summary_table_puts_eager_and_graph_side_by_side(tmp_path) -> None:  # noqa: ANN001
    summary = _script("gpu_summary").summary
    with ResultStore(tmp_path / "s.sqlite") as store:
        for variant, params, eager, graph, thr in (("static", 11.7e6, 1.4, 0.5, 2000.0),
                                                   ("condconv", 40.0e6, 3.2, 0.8, 1000.0)):
            _put(store, variant, "params", {"total": params, "deployed": {"total": params}})
            _put(store, variant, "speed", {"throughput": 1 / eager, "latency_ms": eager}, device="cuda",
                 batch_size=1, mode="inference")
            _put(store, variant, "speed", {"throughput": 1 / graph, "latency_ms": graph}, device="cuda",
                 batch_size=1, mode="inference", cuda_graph=True)
            _put(store, variant, "speed", {"throughput": thr}, device="cuda", batch_size=128, mode="inference")
        _put(store, "condconv", "memory", None, "failed", device="cuda", batch_size=128, mode="inference")
    log = tmp_path / "pytest.log"
    log.write_text("....\n========== 14 passed, 2 failed in 95.1s ==========\n")
    text = summary(tmp_path / "s.sqlite", log, "150").splitlines()
    assert text[0] == "gpu-check summary: Test GPU, torch 2.x, CUDA 13.0"
    assert text[1] == "GPU test tier: 14 passed, 2 failed in 95.1s"
    assert text[2].startswith("quick suite: 8 cells ok, 1 failed, 150 s")
    rows = {line.split()[0]: line.split() for line in text[6:8]}
    assert rows["static"] == ["static", "11.7", "1.4", "0.5", "2000", "(1.00x)", "-", "-"]
    assert rows["condconv"] == ["condconv", "40", "3.2", "0.8", "1000", "(0.50x)", "-", "-"]
    assert any(line.startswith("  FAILED condconv memory") and line.endswith("boom") for line in text)
    assert len(text) <= 24  # one screen
    log.write_text("....F\n= stopped at the 210 s limit =\n")
    assert summary(tmp_path / "s.sqlite", log).splitlines()[1] == "GPU test tier: stopped at the 210 s limit"


def test_repacked_wheel_installs_the_installed_files(tmp_path) -> None:  # noqa: ANN001
    repack = _script("wheel_from_installed")
    path = repack.wheel_from_installed("iniconfig", tmp_path)
    import importlib.metadata as md

    dist = md.distribution("iniconfig")
    assert path.name == f"iniconfig-{dist.version}-py3-none-any.whl"
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
        record = zf.read(next(n for n in names if n.endswith(".dist-info/RECORD"))).decode()
        wheel = zf.read(next(n for n in names if n.endswith(".dist-info/WHEEL"))).decode()
        source = Path(dist.locate_file("iniconfig/__init__.py")).read_bytes()
        assert zf.read("iniconfig/__init__.py") == source
    assert "Root-Is-Purelib: true" in wheel and "Tag: py3-none-any" in wheel
    assert {line.split(",")[0] for line in record.splitlines()} == names
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    with pytest.raises(SystemExit, match="compiled files"):
        repack.wheel_from_installed("numpy", tmp_path)
    with pytest.raises(SystemExit, match="not installed"):
        repack.wheel_from_installed("no-such-distribution-xyz", tmp_path)
    assert repack.main([]) == 2
