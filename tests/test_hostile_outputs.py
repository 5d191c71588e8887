"""Issue 29 (outputs): every output is written whole or not at all, paths that are not ours are refused, names and
locations are checked before any work, the strategy cache is a hint that never fails a cell."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from dynconv_bench.config_text import parse_config
from dynconv_bench.errors import UserError
from dynconv_bench.execution.executors import LocalExecutor
from dynconv_bench.execution.runner import run_suite
from dynconv_bench.execution.suite import parse_suite
from dynconv_bench.files import write_atomic
from dynconv_bench.models import per_sample_conv as psc

from .hostile_io import full_disk, kind_of, leftovers, namespace_available, read_only, special_files
from .test_hostile import one_line_exit_2

SUITE = 'name = "out"\nbackbones = ["cifar_resnet8"]\nvariants = ["static", "static-se"]\n[measure.params]\n'


def fake_cell(cell: dict, plugins: tuple = ()) -> dict:
    """A result without measuring: params, and a per-layer table (it gives one figure per variant)."""
    values = {"params": {"total": 1000 + len(cell["variant"])},
              "layers": {"layers": [{"layer": f"l{i}", "type": "Conv2d", "time_ms": 0.1 * i, "calls": 1}
                                    for i in range(6)]}}[cell["kind"]]
    return {"values": values, "status": "ok", "error": None, "environment": {"host": "box"},
            "started": None, "finished": None}


@pytest.fixture
def db(tmp_path: Path) -> str:
    """A store with params and layers results of suite `out` (faked: no model is measured)."""
    suite = parse_suite({"name": "out", "backbones": ["cifar_resnet8"], "variants": ["static"],
                         "measure": {"params": {}, "layers": {}}})
    run_suite(suite, tmp_path / "r.sqlite", executor=LocalExecutor(fn=fake_cell), progress=False)
    return str(tmp_path / "r.sqlite")


@pytest.fixture
def suite_file(tmp_path: Path) -> str:
    path = tmp_path / "out.toml"
    path.write_text(SUITE)
    return str(path)


@pytest.fixture
def cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """A clean strategy cache state, restored afterwards."""
    monkeypatch.setattr(psc, "_CACHE", {})
    monkeypatch.setattr(psc, "_CACHE_FILE", [])
    monkeypatch.delenv(psc.CACHE_ENV, raising=False)
    monkeypatch.delenv(psc.STRATEGY_ENV, raising=False)


def reference(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return torch.cat([F.conv2d(x[i:i + 1], w[i], None, 1, 1) for i in range(x.shape[0])])


def conv(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return psc.per_sample_conv(x, w, None, (1, 1), (1, 1), (1, 1), 1)


# -- 2. a full disk: one line naming the path, and the previous file survives ----------------------------------
def test_report_on_a_full_disk_keeps_the_previous_report(db: str, tmp_path: Path, monkeypatch, capsys) -> None:  # noqa: ANN001
    out = tmp_path / "w" / "report.md"
    out.parent.mkdir()
    out.write_text("the previous report\n")
    full_disk(monkeypatch, out.parent, room=10)
    one_line_exit_2(["--db", db, "report", "-o", str(out)], capsys, str(out), "no space left")
    assert out.read_text() == "the previous report\n" and leftovers(out.parent) == []


def test_figures_on_a_full_disk_keep_the_previous_figures(db: str, tmp_path: Path, monkeypatch, capsys) -> None:  # noqa: ANN001
    plots = tmp_path / "plots"
    assert subprocess_free_plot(db, plots) == 0
    before = {p.name: p.read_bytes() for p in plots.iterdir()}
    assert any(n.endswith(".png") for n in before)
    full_disk(monkeypatch, plots, room=100)
    one_line_exit_2(["--db", db, "plot", "--out-dir", str(plots)], capsys, "no space left", str(plots))
    assert {p.name: p.read_bytes() for p in plots.iterdir()} == before  # not truncated, nothing left behind


def subprocess_free_plot(db: str, plots: Path) -> int:
    from dynconv_bench.cli.main import main

    return main(["--db", db, "plot", "--out-dir", str(plots)])


def test_a_checkpoint_on_a_full_disk_keeps_the_previous_one(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    from dynconv_bench.training.loop import _save_checkpoint

    path = tmp_path / "ck" / "last.pt"
    _save_checkpoint(path, {"epoch": 1, "w": torch.ones(3)})
    (tmp_path / "ck" / "last.tmp").write_text("a user's file")  # 7: the old fixed temporary name
    full_disk(monkeypatch, path.parent, room=100)
    with pytest.raises(UserError, match=f"cannot write the checkpoint {path}: no space left"):
        _save_checkpoint(path, {"epoch": 2, "w": torch.zeros(1000)})
    monkeypatch.undo()
    assert torch.load(path, weights_only=True)["epoch"] == 1
    assert (tmp_path / "ck" / "last.tmp").read_text() == "a user's file"
    assert leftovers(path.parent) == []


def test_export_on_a_full_disk_keeps_the_previous_file_and_a_users_tmp(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    pytest.importorskip("onnxruntime")
    from dynconv_bench.metrics.export import export_checked

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU()).eval()
    out = tmp_path / "m.onnx"
    out.write_bytes(b"previous")
    (tmp_path / "m.onnx.tmp").write_bytes(b"a user's file")  # 7: the old fixed temporary name
    info = export_checked(model, out, (3, 8, 8))
    assert out.read_bytes()[:8] != b"previous" and info["bytes"] == out.stat().st_size
    assert (tmp_path / "m.onnx.tmp").read_bytes() == b"a user's file"
    good = out.read_bytes()
    full_disk(monkeypatch, tmp_path, room=100)
    with pytest.raises(Exception) as info:  # noqa: PT011 (the exporter may wrap the OSError)
        export_checked(model, out, (3, 8, 8))
    monkeypatch.undo()
    assert "No space left" in str(info.value) or "no space left" in str(info.value)
    assert out.read_bytes() == good and leftovers(tmp_path) == []


def test_write_atomic_keeps_the_previous_file_on_any_failure(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    out = tmp_path / "a.txt"
    write_atomic(out, "one")
    os.chmod(out, 0o600)
    full_disk(monkeypatch, tmp_path, room=2)
    with pytest.raises(UserError, match="no space left on the device"):
        write_atomic(out, "a longer text")
    monkeypatch.undo()
    assert out.read_text() == "one" and leftovers(tmp_path) == []
    write_atomic(out, "two")
    assert out.read_text() == "two" and (out.stat().st_mode & 0o777) == 0o600  # the mode of the file replaced


def test_real_full_and_read_only_file_systems(db: str, tmp_path: Path) -> None:
    """With a user namespace: a 2 MiB tmpfs filled to the last byte, and a read-only tmpfs (as root)."""
    if not namespace_available():
        pytest.skip("no unprivileged user namespace here to mount a tmpfs")
    full, ro = tmp_path / "full", tmp_path / "ro"
    full.mkdir()
    ro.mkdir()
    script = f"""
import contextlib, io, json, os, sys
from dynconv_bench.cli.main import main
def cli(*argv):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["--db", {db!r}, *argv])
    return [code, err.getvalue()]
out = {{}}
assert cli("plot", "--out-dir", "{full}/plots")[0] == 0
open("{full}/report.md", "w").write("previous")
before = {{n: open("{full}/plots/" + n, "rb").read() for n in os.listdir("{full}/plots")}}
for name, size in (("filler", 4096), ("filler2", 1)):  # to the last byte
    with open("{full}/" + name, "wb", buffering=0) as fh, contextlib.suppress(OSError):
        while True:
            fh.write(b"x" * size)
out["report"] = cli("report", "-o", "{full}/report.md")
out["report_kept"] = open("{full}/report.md").read() == "previous"
out["plot"] = cli("plot", "--out-dir", "{full}/plots")
out["plots_kept"] = before == {{n: open("{full}/plots/" + n, "rb").read() for n in os.listdir("{full}/plots")}}
out["ro_report"] = cli("report", "-o", "{ro}/report.md")
out["ro_run"] = cli("run", {suite_path(tmp_path)!r}, "--plots-dir", "{ro}/plots", "--no-progress")
out["left"] = sorted(n for n in os.listdir("{full}") if n.startswith("."))
print(json.dumps(out))
"""
    cmd = f"mount -t tmpfs -o size=2m tmpfs {full} && mount -t tmpfs -o ro,size=64k tmpfs {ro} && " \
          f"{sys.executable} -c \"$SCRIPT\""
    proc = subprocess.run(["unshare", "-rm", "sh", "-c", cmd], capture_output=True, text=True, timeout=240,
                          env={**os.environ, "SCRIPT": script, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    for key in ("report", "plot", "ro_report", "ro_run"):
        code, err = out[key]
        assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, (key, err)
    assert "no space left" in out["report"][1] and f"{full}/report.md" in out["report"][1]
    assert "no space left" in out["plot"][1] and out["report_kept"] and out["plots_kept"]
    assert "read-only file system" in out["ro_report"][1] and "read-only file system" in out["ro_run"][1]
    assert out["left"] == []


def suite_path(tmp_path: Path) -> str:
    (tmp_path / "out.toml").write_text(SUITE)
    return str(tmp_path / "out.toml")


# -- 4. paths that exist and are not regular files are refused, and stay what they were ---------------------
@pytest.mark.parametrize("kind", ["device", "fifo", "socket", "folder"])
def test_outputs_that_are_not_regular_files_are_refused(kind: str, db: str, suite_file: str, tmp_path: Path,
                                                        capsys) -> None:  # noqa: ANN001
    special = special_files(tmp_path)
    if kind not in special:
        pytest.skip("mknod is not allowed here")
    path = str(special[kind])
    expected = "is a directory" if kind == "folder" else "not a regular file"
    reader = os.open(special["fifo"], os.O_RDONLY | os.O_NONBLOCK)  # old code writing into the FIFO: no hang
    try:
        one_line_exit_2(["--db", db, "report", "-o", path], capsys, expected)
        one_line_exit_2(["export", "cifar_resnet8", "static", "-o", path], capsys, expected)
        one_line_exit_2(["--db", path, "run", suite_file, "--dry-run"], capsys, "results store", expected)
        one_line_exit_2(["--db", path, "run", suite_file, "--no-progress"], capsys, "results store", expected)
    finally:
        os.close(reader)
    assert kind_of(special[kind]) == kind
    assert not Path(path + "-journal").exists() and not Path(path + "-wal").exists()
    if kind != "folder":
        one_line_exit_2(["--db", db, "plot", "--out-dir", path], capsys, "not a folder")


def test_a_figure_name_taken_by_a_folder_is_one_line(db: str, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    plots = tmp_path / "plots"
    assert subprocess_free_plot(db, plots) == 0
    png = next(p for p in plots.iterdir() if p.suffix == ".png")
    png.unlink()
    png.mkdir()
    one_line_exit_2(["--db", db, "plot", "--out-dir", str(plots)], capsys, str(png), "is a directory")
    assert png.is_dir()


# -- 5. the strategy cache: a hint, never another program's file ---------------------------------------------
def test_a_foreign_json_file_is_never_rewritten(cache: None, tmp_path: Path, suite_file: str, monkeypatch,
                                                capsys) -> None:  # noqa: ANN001
    app = tmp_path / "appconfig.json"
    app.write_text('{"theme": "dark", "width": 3}\n')
    psc.set_strategy_cache(app)
    x, w = torch.randn(3, 4, 6, 6), torch.randn(3, 5, 4, 3, 3)
    torch.testing.assert_close(conv(x, w), reference(x, w))
    torch.testing.assert_close(conv(x[:2], w[:2]), reference(x[:2], w[:2]))  # a second key: no second warning
    assert app.read_text() == '{"theme": "dark", "width": 3}\n'
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a dynconv-bench strategy cache" in err and str(app) in err
    monkeypatch.setenv(psc.CACHE_ENV, str(app))
    one_line_exit_2(["--db", str(tmp_path / "r.sqlite"), "run", suite_file, "--dry-run"], capsys,
                    "appconfig.json is not a dynconv-bench strategy cache")
    assert app.read_text() == '{"theme": "dark", "width": 3}\n'


@pytest.mark.parametrize("where", ["folder", "unwritable", "full", "fifo", "device"])
def test_an_unusable_cache_never_fails_a_cell(where: str, cache: None, tmp_path: Path, monkeypatch,
                                              capsys) -> None:  # noqa: ANN001
    special = special_files(tmp_path)
    path = {"folder": special["folder"], "unwritable": Path("/proc/dynconv-bench-strategies.json"),
            "full": tmp_path / "full" / "s.json", "fifo": special["fifo"], "device": special.get("device")}[where]
    if path is None:
        pytest.skip("mknod is not allowed here")
    if where == "full":
        path.parent.mkdir()
        full_disk(monkeypatch, path.parent)
    psc.set_strategy_cache(path)
    x, w = torch.randn(3, 4, 6, 6), torch.randn(3, 5, 4, 3, 3)
    done: list[torch.Tensor] = []
    worker = threading.Thread(target=lambda: done.extend([conv(x, w), conv(x[:2], w[:2])]), daemon=True)
    worker.start()
    worker.join(60)  # reading a FIFO would block for ever
    assert len(done) == 2, "the strategy cache blocked or failed the cell"
    torch.testing.assert_close(done[0], reference(x, w))
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("dynconv-bench: warning: strategy cache "), err
    if where in ("fifo", "device", "folder"):
        assert kind_of(path) == where
    if where == "full":
        assert list(path.parent.iterdir()) == []


def test_a_stale_entry_is_tuned_afresh(cache: None, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    path = tmp_path / "s.json"
    psc.set_strategy_cache(path)
    x, w = torch.randn(3, 4, 6, 6), torch.randn(3, 5, 4, 3, 3)
    conv(x, w)
    conv(x[:2], w[:2])
    data = json.loads(path.read_text())
    assert data["format"] == "dynconv-bench strategy cache" and len(data["choices"]) == 2
    data["choices"] = dict.fromkeys(data["choices"], "fused")  # `fused` on plain kernels cannot run
    path.write_text(json.dumps(data))
    psc.clear_strategy_cache()
    torch.testing.assert_close(conv(x, w), reference(x, w))
    torch.testing.assert_close(conv(x[:2], w[:2]), reference(x[:2], w[:2]))
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'fused' does not apply" in err
    assert set(json.loads(path.read_text())["choices"].values()) <= {"grouped", "loop", "bmm"}  # rewritten: ours


def test_the_cache_layout_of_earlier_versions_is_read_and_upgraded(cache: None, tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    psc.set_strategy_cache(path)
    x, w = torch.randn(3, 4, 6, 6), torch.randn(3, 5, 4, 3, 3)
    conv(x, w)
    (key, choice), = json.loads(path.read_text())["choices"].items()
    other = "loop" if choice != "loop" else "bmm"
    path.write_text(json.dumps({key: other}))  # the unmarked layout
    psc.clear_strategy_cache()
    with psc.record_strategies() as used:
        conv(x, w)
    assert list(used) == [other]


# -- 10. names too long for any file system: one line, before any work -------------------------------------
def test_over_long_names_are_refused_before_any_work(db: str, suite_file: str, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    long = "n" * 300
    one_line_exit_2(["--db", db, "report", "-o", str(tmp_path / long)], capsys, "component of 300 bytes")
    one_line_exit_2(["--db", db, "report", "-o", str(tmp_path / ("é" * 128))], capsys, "component of 256 bytes")
    one_line_exit_2(["export", "cifar_resnet8", "static", "-o", str(tmp_path / long)], capsys, "component of 300")
    new_db = tmp_path / "new.sqlite"
    one_line_exit_2(["--db", str(tmp_path / long), "run", suite_file], capsys, "component of 300 bytes")
    one_line_exit_2(["--db", str(new_db), "run", suite_file, "--plots-dir", str(tmp_path / long / "p")], capsys,
                    "component of 300 bytes")
    one_line_exit_2(["--db", str(new_db), "run", suite_file, "--plots-dir", "/".join(["d" * 200] * 21)], capsys,
                    "bytes long (at most 4095)")
    one_line_exit_2(["--db", str(tmp_path / ("s" * 245)), "run", suite_file], capsys, "at most 239")
    assert not new_db.exists()  # nothing was measured
    one_line_exit_2(["--db", db, "report", "-o", str(tmp_path / "bad\0name")], capsys, "NUL character")


def test_a_5000_character_variant_name_is_refused_at_parse_time(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    suite = tmp_path / "long.toml"
    suite.write_text(f'backbones = ["cifar_resnet8"]\nvariants = [{{variant = "static", name = "{"v" * 5000}"}}]\n'
                     '[measure.params]\n')
    err = one_line_exit_2(["--db", str(tmp_path / "r.sqlite"), "run", str(suite), "--dry-run"], capsys,
                          "variants[0].name", "(5000 characters)", "1 to 64 characters")
    assert len(err) < 600
    suite.write_text('name = "a\\u001b[31mb"\nbackbones = ["cifar_resnet8"]\nvariants = ["static"]\n[measure.params]\n')
    one_line_exit_2(["--db", str(tmp_path / "r.sqlite"), "run", str(suite), "--dry-run"], capsys,
                    "name = 'a\\x1b[31mb'", "without control characters")


# -- 12. tracebacks: deep TOML, huge caps, unwritable folders found before measuring, linear checks ---------
def test_deeply_nested_toml_is_one_line(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    suite = tmp_path / "deep.toml"
    suite.write_text(f'backbones = ["cifar_resnet8"]\nvariants = ["static"]\nx = {"[" * 5000}{"]" * 5000}\n')
    one_line_exit_2(["run", str(suite), "--dry-run"], capsys, "nested too deeply")


@pytest.mark.parametrize("cap, where", [("99999999999999999999999999GiB", "suite"), ("9" * 400 + "GiB", "cli"),
                                        ("2PiB", "cli"), (str(2**64), "suite-int")])
def test_memory_caps_over_the_maximum_are_refused_at_parse_time(cap: str, where: str, tmp_path: Path,
                                                                capsys) -> None:  # noqa: ANN001
    suite = tmp_path / "cap.toml"
    value = {"suite": f'"{cap}"', "suite-int": cap}.get(where)
    suite.write_text('backbones = ["cifar_resnet8"]\nvariants = ["static"]\n'
                     + (f"memory_cap = {value}\n" if value else "") + "[measure.params]\n")
    extra = ["--memory-cap", cap] if where == "cli" else []
    err = one_line_exit_2(["--db", str(tmp_path / "r.sqlite"), "run", str(suite), "--dry-run", *extra], capsys,
                          "1 PiB", "64 MiB")
    assert len(err) < 400


def test_a_read_only_plots_folder_is_found_before_measuring(suite_file: str, tmp_path: Path, monkeypatch,
                                                            capsys) -> None:  # noqa: ANN001
    ro = tmp_path / "ro"
    ro.mkdir()
    read_only(monkeypatch, ro)
    db = tmp_path / "r.sqlite"
    one_line_exit_2(["--db", str(db), "run", suite_file, "--plots-dir", str(ro / "plots"), "--no-progress"], capsys,
                    "read-only file system")
    assert not db.exists()  # refused before the store was even created
    one_line_exit_2(["--db", str(ro / "r.sqlite"), "run", suite_file, "--no-plots", "--no-progress"], capsys,
                    "read-only file system")
    assert list(ro.iterdir()) == []


def test_proc_paths_are_one_line(db: str, capsys) -> None:  # noqa: ANN001
    one_line_exit_2(["--db", db, "report", "-o", "/proc/x"], capsys, "/proc/x")
    one_line_exit_2(["--db", db, "plot", "--out-dir", "/proc/x"], capsys, "/proc/x")
    one_line_exit_2(["--db", db, "plot", "--out-dir", "/proc/x/y"], capsys, "/proc/x/y")


def test_duplicate_checks_are_linear(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    """200,000 entries: a quadratic check takes hours; a linear one well under a second (bound: 60 s)."""
    suite = tmp_path / "big.toml"
    entries = ", ".join(['"cifar_resnet8"'] * 200_000)
    suite.write_text(f'backbones = [{entries}]\nvariants = ["static"]\n[measure.params]\n')
    t0 = time.perf_counter()
    one_line_exit_2(["run", str(suite), "--dry-run"], capsys, "backbones: duplicate value(s) cifar_resnet8")
    from dynconv_bench.execution.suite_checks import check_unique

    with pytest.raises(UserError, match=r"duplicate value\(s\) 0, 1, 10, 100, .*\(99990 more\)"):
        check_unique(list(range(100_000)) * 2, "s", "seeds")
    assert time.perf_counter() - t0 < 60

    class Counted(str):
        calls = 0

        def __eq__(self, other: object) -> bool:
            Counted.calls += 1
            return str.__eq__(self, other)

        __hash__ = str.__hash__

    check_unique([Counted(f"b{i}") for i in range(2000)], "s", "backbones")  # distinct: no error
    assert Counted.calls < 10 * 2000  # list.count per value: 4,000,000 comparisons


# -- 13. a bogus forced strategy and a repeated config key ---------------------------------------------------
def test_a_bogus_forced_strategy_is_refused_at_the_start(suite_file: str, tmp_path: Path, monkeypatch,
                                                         capsys) -> None:  # noqa: ANN001
    monkeypatch.setenv(psc.STRATEGY_ENV, "bogus")
    db = tmp_path / "r.sqlite"
    for extra in (["--dry-run"], ["--no-progress", "--no-plots"]):
        one_line_exit_2(["--db", str(db), "run", suite_file, *extra], capsys,
                        "DYNCONV_BENCH_STRATEGY='bogus' is not a strategy; valid: grouped, loop, bmm")
    assert not db.exists()


def test_a_repeated_config_key_names_the_key(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    with pytest.raises(UserError, match="config key 'num_kernels' is given twice"):
        parse_config(["num_kernels=4", "num_kernels=64"])
    with pytest.raises(UserError, match="no key"):
        parse_config(["=4"])
    assert parse_config(["num_kernels=4", "temperature=30"]) == {"num_kernels": 4, "temperature": 30}
    one_line_exit_2(["export", "cifar_resnet8", "dyconv", "num_kernels=4", "num_kernels=64", "-o",
                     str(tmp_path / "m.onnx")], capsys, "'num_kernels' is given twice")
    assert not (tmp_path / "m.onnx").exists()
