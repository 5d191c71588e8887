"""Property tests (issue 20): any suite document and `run` argument list validates or is one line, exit 2.

Generated suites are valid, or valid with one known corruption (then the error line must name the corrupted
field: every corruption is tried on a few generated suites), or garbage (then only: exit 0 or 2, one line, no
traceback). Every command runs `run --dry-run` in-process; no store file may be created or changed.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from dynconv_bench.cli.main import main
from dynconv_bench.errors import UserError
from dynconv_bench.execution.runner import run_suite
from dynconv_bench.execution.suite import parse_suite
from dynconv_bench.files import write_atomic
from dynconv_bench.models import strategy_cache

BACKBONES = ["cifar_resnet8", "cifar_resnet20", "resnet18"]
VARIANTS = ["static", "static-se", "condconv", "dyconv", "odconv", "kerneldna", "kernelwarehouse", "dcd"]
_SIZES = st.lists(st.integers(1, 64), min_size=1, max_size=3, unique=True)
KIND_OPTIONS = {
    "params": {"num_classes": st.integers(1, 1000)},
    "macs": {"threads": st.integers(1, 2), "input_size": st.sampled_from([32, [3, 32, 32], [1, 16, 24]])},
    "speed": {"batch_sizes": _SIZES, "threads": st.integers(1, 2), "min_time": st.floats(0, 5),
              "warmup": st.integers(0, 10), "modes": st.sampled_from([["inference"], ["train"], ["inference", "train"]]),
              "precision": st.sampled_from(["fp32", "bf16"]), "device": st.just("cpu")},
    "memory": {"batch_sizes": _SIZES, "modes": st.just(["inference"])},
    "accuracy": {"datasets": st.just(["digits"]), "seeds": st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=3,
                                                                    unique=True),
                 "epochs": st.integers(1, 5), "recipe": st.just("digits-quick"),
                 "overrides": st.sampled_from([{}, {"image_size": 8}, {"lr": 0.05}]), "train_samples": st.integers(1, 999)},
    "layers": {"batch_size": st.integers(1, 64), "repeats": st.integers(1, 10)},
    "deploy": {"targets": st.sampled_from([["onnx"], ["torch_export", "onnx"]]), "min_time": st.floats(0, 2)},
}
CONFIGS = {
    "dyconv": {"num_kernels": st.integers(1, 8), "temperature": st.floats(1, 100)},
    "odconv": {"num_kernels": st.integers(1, 8), "policy": st.sampled_from(["blocks", "re:layer[23]"])},
    "condconv": {"num_kernels": st.integers(1, 8)},
    "kerneldna": {"reduction": st.integers(1, 16)},
}

# (where, key, value, what the error line must name); where: top, measure:KIND, config:VARIANT or entry:VARIANT
NAN, INF = math.nan, math.inf
SUITE_CORRUPTIONS = [
    ("top", "bogus_key", 1, "bogus_key"), ("top", "name", 5, "name"), ("top", "backbones", [], "backbones"),
    ("top", "backbones", ["nosuch_net"], "nosuch_net"), ("top", "backbones", 7, "backbones"),
    ("top", "backbones", ["cifar_resnet8", "cifar_resnet8"], "duplicate"), ("top", "variants", [], "variants"),
    ("top", "variants", ["bogus"], "bogus"), ("top", "variants", [3], "variants[0]"), ("top", "measure", {}, "measure"),
    ("top", "measure", {"bogus_kind": {}}, "bogus_kind"), ("top", "measure", 3, "measure"),
    ("top", "memory_cap", "4i", "memory_cap"), ("top", "memory_cap", "2", "memory_cap"),
    ("top", "memory_cap", 1, "memory_cap"), ("top", "memory_cap", NAN, "memory_cap"),
    ("top", "memory_cap", "-1GiB", "memory_cap"), ("top", "memory_cap", [], "memory_cap"),
    ("measure:macs", "threads", 100000, "threads"), ("measure:macs", "threads", 0, "threads"),
    ("measure:macs", "threads", "4", "threads"), ("measure:macs", "threads", 2.5, "threads"),
    ("measure:macs", "input_size", 10**6, "input_size"), ("measure:macs", "input_size", [3, 0, 32], "input_size"),
    ("measure:macs", "input_size", [3, 32], "input_size"), ("measure:macs", "input_size", True, "input_size"),
    ("measure:params", "num_classes", -5, "num_classes"), ("measure:params", "num_classes", 10**9, "num_classes"),
    ("measure:params", "bogus_opt", 1, "bogus_opt"), ("measure:params", "backbones", ["nosuch_net"], "nosuch_net"),
    ("measure:params", "variants", ["nosuch_label"], "nosuch_label"),
    ("measure:speed", "batch_sizes", [0], "batch_sizes"), ("measure:speed", "batch_sizes", [10**7], "batch_sizes"),
    ("measure:speed", "batch_sizes", [], "batch_sizes"), ("measure:speed", "batch_sizes", [1, 1], "batch_sizes"),
    ("measure:speed", "batch_sizes", ["8"], "batch_sizes"), ("measure:speed", "min_time", NAN, "min_time"),
    ("measure:speed", "min_time", INF, "min_time"), ("measure:speed", "min_time", -1.0, "min_time"),
    ("measure:speed", "min_time", 1e12, "min_time"), ("measure:speed", "warmup", -1, "warmup"),
    ("measure:speed", "min_runs", 10**12, "min_runs"), ("measure:speed", "device", "tpu", "device"),
    ("measure:speed", "modes", ["eval"], "mode"), ("measure:speed", "precision", "fp8", "precision"),
    ("measure:speed", "num_gpus", -1, "num_gpus"), ("measure:speed", "compile", "yes", "compile"),
    ("measure:accuracy", "seeds", [-1], "seeds"), ("measure:accuracy", "seeds", [2**40], "seeds"),
    ("measure:accuracy", "epochs", 0, "epochs"), ("measure:accuracy", "epochs", 10**7, "epochs"),
    ("measure:accuracy", "datasets", ["imagenet22k"], "dataset"), ("measure:accuracy", "recipe", "bogus", "recipe"),
    ("measure:accuracy", "overrides", {"lr": "fast"}, "overrides"),
    ("measure:accuracy", "overrides", {"bogus": 1}, "overrides"), ("measure:accuracy", "overrides", {"lr": NAN}, "lr"),
    ("measure:accuracy", "overrides", {"batch_size": 10**9}, "batch_size"),
    ("measure:accuracy", "train_samples", 0, "train_samples"), ("measure:layers", "repeats", 10**9, "repeats"),
    ("measure:layers", "batch_size", 0, "batch_size"), ("measure:deploy", "targets", ["tflite"], "tflite"),
    ("config:dyconv", "temperature", NAN, "temperature"), ("config:dyconv", "temperature", INF, "temperature"),
    ("config:dyconv", "temperature", -INF, "temperature"), ("config:dyconv", "num_kernels", 0, "num_kernels"),
    ("config:dyconv", "num_kernels", 10**6, "num_kernels"), ("config:dyconv", "bogus", 1, "bogus"),
    ("config:odconv", "policy", "re:([", "policy"), ("config:odconv", "policy", "most", "policy"),
    ("config:odconv", "reduction", 5.0, "reduction"), ("config:odconv", "min_channels", 10**9, "min_channels"),
    ("config:condconv", "num_kernels", -3, "num_kernels"), ("config:condconv", "routing", "net", "routing"),
    ("config:kerneldna", "reduction", 10**9, "reduction"), ("config:kerneldna", "parent", "middle", "parent"),
    ("config:kernelwarehouse", "cell_num_ratio", 1e9, "cell_num_ratio"), ("config:dcd", "latent_dim", 10**9, "latent_dim"),
    ("entry:odconv", "preset", "best", "preset"), ("entry:odconv", "preset", 4, "preset"),
    ("entry:odconv", "name", 4, "name"), ("entry:odconv", "bogus", 4, "bogus"),
]
CLI_CORRUPTIONS = [
    (["--memory-cap", "4i"], "memory cap"), (["--memory-cap", "4ib"], "memory cap"), (["--memory-cap", "2"], "unit"),
    (["--memory-cap", "1b"], "memory cap"), (["--memory-cap", "0"], "memory cap"), (["--memory-cap", "lots"], "memory cap"),
    (["--subprocess", "--timeout", "nan"], "--timeout"), (["--subprocess", "--timeout", "inf"], "--timeout"),
    (["--subprocess", "--timeout", "-5"], "--timeout"), (["--subprocess", "--timeout", "0"], "--timeout"),
    (["--timeout", "10"], "--timeout"), (["--only", "bogus"], "--only"), (["--executor", "dask"], "--executor"),
    (["--num-cpus", "0"], "--num-cpus"), (["--num-cpus", "nan"], "--num-cpus"), (["--num-gpus", "-1"], "--num-gpus"),
    (["--bogus-flag"], "--bogus-flag"), (["--db"], "--db"),
]
CLI_VALID = [[], ["--force"], ["--subprocess"], ["--subprocess", "--timeout", "30"], ["--memory-cap", "4GiB"],
             ["--memory-cap", "0.5"], ["--memory-cap", "50%"], ["--memory-cap", "none"], ["--no-plots", "--no-progress"],
             ["--executor", "local"], ["--only", "cifar_resnet8"]]


@st.composite
def valid_suites(draw: st.DrawFn) -> dict:
    doc: dict = {"name": draw(st.sampled_from(["hostile", "h2"]))}
    doc["backbones"] = draw(st.lists(st.sampled_from(BACKBONES), min_size=1, max_size=2, unique=True))
    if "cifar_resnet8" not in doc["backbones"]:  # CLI_VALID's --only names it
        doc["backbones"].append("cifar_resnet8")
    if draw(st.booleans()):
        doc["variants"] = ["*"]
    else:
        names = draw(st.lists(st.sampled_from(VARIANTS), min_size=1, max_size=4, unique=True))
        doc["variants"] = []
        for name in names:
            if name in CONFIGS and draw(st.booleans()):
                doc["variants"].append({"variant": name, "name": f"{name}-x",
                                        "config": draw(st.fixed_dictionaries({}, optional=CONFIGS[name]))})
            else:
                doc["variants"].append(name)
    kinds = draw(st.lists(st.sampled_from(list(KIND_OPTIONS)), min_size=1, max_size=3, unique=True))
    doc["measure"] = {k: draw(st.fixed_dictionaries({}, optional=KIND_OPTIONS[k])) for k in kinds}
    if draw(st.booleans()):
        doc["memory_cap"] = draw(st.sampled_from(["4GiB", "50%", 0.5, "none", 2**31, "512 MiB"]))
    return doc


def corrupt(doc: dict, where: str, key: str, value: object) -> dict:
    doc = json.loads(json.dumps(doc))
    section, _, name = where.partition(":")
    if section == "top":
        doc[key] = value
    elif section == "measure":
        doc["measure"].setdefault(name, {})[key] = value
        if name == "accuracy" and key not in ("datasets", "recipe"):
            doc["measure"][name].update(datasets=["digits"], recipe="digits-quick")
    elif section == "config":
        doc["variants"] = [{"variant": name, "config": {key: value}}]
    else:
        doc["variants"] = [{"variant": name, key: value}]
    return doc


def toml(value: object) -> str:
    """A TOML value (inline tables for dicts; what tomllib reads back as `value`)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {toml(v)}" for k, v in value.items()) + "}"


def document(doc: dict) -> str:
    return "".join(f"{json.dumps(k)} = {toml(v)}\n" for k, v in doc.items())


@st.composite
def garbage(draw: st.DrawFn, doc: dict) -> tuple[str, list[str]]:
    """A suite document cut short or with junk spliced in, or a valid one with junk arguments."""
    text = document(doc)
    if draw(st.booleans()):
        cut = draw(st.integers(0, len(text)))
        junk = draw(st.text(alphabet='[]{}="\\\n ,.#abc01', max_size=12))
        return text[:cut] + junk + text[cut:], []
    return text, draw(st.lists(st.text(alphabet="-=abcdefmnoprstuy0123456789.%", min_size=1, max_size=12), max_size=4))


class Tally(Counter):
    def describe(self) -> str:
        return (f"{self['inputs']} inputs tried: {self['valid']} validated, {self['errors']} one-line errors, "
                f"{self['tracebacks']} tracebacks")


def check_case(folder: Path, text: str, extra: list[str], token: str | None, tally: Tally) -> None:
    suite = folder / "suite.toml"
    suite.write_text(text)
    before = {p.name: p.read_bytes() for p in sorted(folder.iterdir())}
    out, err = io.StringIO(), io.StringIO()
    argv = ["--db", str(folder / "store.sqlite"), "run", str(suite), "--dry-run", *extra]
    tally["inputs"] += 1
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse
            code = exc.code
        except BaseException:
            tally["tracebacks"] += 1
            raise
    after = {p.name: p.read_bytes() for p in sorted(folder.iterdir())}
    assert after == before, f"a dry run changed files: {argv}"
    err_text = err.getvalue()
    assert "Traceback" not in err_text + out.getvalue()
    if code == 0:
        tally["valid"] += 1
        assert token in (None, ""), f"accepted a bad {token!r}:\n{text}\n{extra}"
        lines = out.getvalue().splitlines()
        assert lines[0].startswith("suite ") and " cells to run, " in lines[0]
        assert len(lines) == 1 + int(lines[0].split(": ", 1)[1].split()[0])  # one line per listed cell
        return
    tally["errors"] += 1
    assert code == 2 and token is not None, f"exit {code} for a valid input:\n{text}\n{extra}\n{err_text}"
    assert err_text.count("\n") == 1 and err_text.startswith("dynconv-bench: error: "), err_text
    assert token in err_text, f"the error does not name {token!r}: {err_text}"


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """An empty folder, and one holding a store with results of the suite `hostile` (neither may change)."""
    empty, full = tmp_path_factory.mktemp("empty"), tmp_path_factory.mktemp("full")
    run_suite(parse_suite({"name": "hostile", "backbones": ["cifar_resnet8"], "variants": ["static"],
                           "measure": {"params": {}}}), full / "store.sqlite", progress=False)
    for extra in full.glob("store.sqlite-*"):  # a closed store: the WAL was checkpointed
        extra.unlink()
    shutil.rmtree(full / "plots", ignore_errors=True)
    return empty, full


TALLY = Tally()
CORRUPTIONS = [pytest.param((where, key, value), [], token, id=f"{where}.{key}={value!r}")
               for where, key, value, token in SUITE_CORRUPTIONS]
CORRUPTIONS += [pytest.param(None, args, token, id=" ".join(args)) for args, token in CLI_CORRUPTIONS]
_SETTINGS = {"derandomize": True, "database": None, "deadline": None,
             "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large]}


def check_corruption(folders: tuple[Path, Path], change: tuple | None, args: list[str], token: str,
                     examples: int) -> None:
    @settings(max_examples=examples, **_SETTINGS)
    @given(doc=valid_suites(), with_store=st.booleans())
    def prop(doc: dict, with_store: bool) -> None:
        text = document(corrupt(doc, *change) if change else doc)
        check_case(folders[with_store], text, args, token, TALLY)

    prop()


def check_valid(folders: tuple[Path, Path], examples: int) -> None:
    @settings(max_examples=examples, **_SETTINGS)
    @given(doc=valid_suites(), args=st.sampled_from(CLI_VALID), with_store=st.booleans())
    def prop(doc: dict, args: list[str], with_store: bool) -> None:
        check_case(folders[with_store], document(doc), args, None, TALLY)

    prop()


def check_garbage(folders: tuple[Path, Path], examples: int) -> None:
    @settings(max_examples=examples, **_SETTINGS)
    @given(data=st.data(), with_store=st.booleans())
    def prop(data: st.DataObject, with_store: bool) -> None:
        text, args = data.draw(garbage(data.draw(valid_suites())))
        check_case(folders[with_store], text, args, "", TALLY)

    prop()


@pytest.mark.parametrize("change, args, token", CORRUPTIONS)
def test_a_corrupted_field_is_one_line_naming_it(folders: tuple[Path, Path], change: tuple | None, args: list[str],
                                                 token: str) -> None:
    check_corruption(folders, change, args, token, examples=2)


def test_valid_inputs_list_their_cells(folders: tuple[Path, Path]) -> None:
    check_valid(folders, examples=50)


def test_garbage_validates_or_is_one_line(folders: tuple[Path, Path]) -> None:
    check_garbage(folders, examples=50)
    print(f"\n{TALLY.describe()}")  # the counts issue 20 asks for (shown with pytest -s)


@pytest.mark.slow  # ~4,000 inputs: a few minutes on a 2-core machine
@pytest.mark.parametrize("change, args, token", CORRUPTIONS)
def test_a_corrupted_field_is_one_line_naming_it_many(folders: tuple[Path, Path], change: tuple | None,
                                                      args: list[str], token: str) -> None:
    check_corruption(folders, change, args, token, examples=25)


@pytest.mark.slow
def test_valid_and_garbage_inputs_many(folders: tuple[Path, Path]) -> None:
    check_valid(folders, examples=600)
    check_garbage(folders, examples=1000)
    print(f"\n{TALLY.describe()}")


# -- issue 29: names, paths and output locations for the writers (report -o, plot --out-dir, write_atomic, the
# strategy cache). A name is written exactly where it says, or refused in one printable line; a location that is
# not ours stays what it was; a full disk keeps the previous file; no temporary file is ever left behind.
NAMES = st.one_of(
    st.text(max_size=40),  # any code point: controls, format marks (RTL), surrogates, separators
    st.text(alphabet=st.sampled_from(["a", "é", "变", "/", ".", "-", " ", "\n", "\x1b", "\u202e", "\\"]), max_size=30),
    st.builds(lambda c, n: c * n, st.sampled_from(["n", "é", "变"]), st.integers(60, 300)),  # about NAME_MAX bytes
    st.sampled_from(["", ".", "..", "/", "a/", "a//b", "../x", ".hidden", "a" * 255, "a" * 256, "é" * 127,
                     "é" * 128, "/".join(["d" * 250] * 17)]),
)
LOCATIONS = ["device", "fifo", "socket", "folder", "read-only", "full-disk", "proc", "missing-folder", "file-parent"]
WRITERS = ["report", "plot", "write_atomic", "cache"]


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory, folders: tuple[Path, Path]) -> tuple[Path, Path, str]:
    """A working folder, a copy of the store with results, and the report as `report` prints it."""
    work = tmp_path_factory.mktemp("outputs")
    db = work / "store.sqlite"
    shutil.copy(folders[1] / "store.sqlite", db)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["--db", str(db), "report"]) == 0
    return work, db, out.getvalue()


def _cli(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code
    return code, err.getvalue()


def _one_printable_line(err: str, prefix: str = "dynconv-bench: error: ") -> None:
    assert err.count("\n") == 1 and err.startswith(prefix) and "Traceback" not in err, err
    assert err[:-1].isprintable(), f"control or format characters reach the terminal: {err!r}"


def _files(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if not p.is_dir()}


def check_name(outputs: tuple[Path, Path, str], name: str, writer: str) -> None:
    work, db, text = outputs
    base = Path(os.path.realpath(tempfile.mkdtemp(dir=work)))
    folder = base / "a" / "b" / "c"
    folder.mkdir(parents=True)
    target = str(folder) + "/" + name
    if not os.path.normpath(target).startswith(f"{base}{os.sep}"):  # `../../../..`: never write outside the test
        shutil.rmtree(base)
        return
    if writer == "report":
        code, err = _cli(["--db", str(db), "report", "-o", target])
        written = code == 0
        if not written:
            assert code == 2
            _one_printable_line(err)
    elif writer == "write_atomic":
        try:
            write_atomic(target, text)
            written = True
        except UserError as exc:
            written = False
            _one_printable_line(f"dynconv-bench: error: {exc}\n")
    else:  # the strategy cache: never raises, at most one warning
        err_io = io.StringIO()
        with contextlib.redirect_stderr(err_io):
            strategy_cache.store(Path(target), "key|threads=1", "grouped")
        written = not err_io.getvalue()
        if not written:
            _one_printable_line(err_io.getvalue(), "dynconv-bench: warning: ")
    files = _files(base)
    if written:
        path = Path(os.path.realpath(target))
        assert files == {path}, f"{name!r}: {sorted(map(str, files))}"  # that file, and nothing else
        content = path.read_text(encoding="utf-8")
        assert content == text if writer != "cache" else json.loads(content)["choices"] == {"key|threads=1": "grouped"}
    else:
        assert files == set(), f"a refused {name!r} left {sorted(map(str, files))}"
    shutil.rmtree(base)


SUCCEEDS = {("plot", "folder"), ("plot", "missing-folder"), ("cache", "missing-folder")}  # folders are made


def check_location(outputs: tuple[Path, Path, str], location: str, writer: str) -> None:
    from tests.hostile_io import full_disk, kind_of, read_only, special_files

    work, db, text = outputs
    folder = Path(tempfile.mkdtemp(dir=work))
    special = special_files(folder)
    (folder / "previous").mkdir()
    (folder / "afile").write_text("a file")
    target = {"read-only": folder / "previous" / "out", "full-disk": folder / "previous" / "out",
              "proc": Path("/proc/dynconv-bench-x"), "missing-folder": folder / "nosuch" / "out",
              "file-parent": folder / "afile" / "out"}.get(location) or special.get(location)
    if target is None:
        return  # mknod is not allowed here
    if location == "full-disk" and writer == "plot":
        target.mkdir()
    elif location == "full-disk":  # a previous file the writer would replace
        target.write_text(json.dumps({"format": strategy_cache.FORMAT, "version": strategy_cache.VERSION,
                                      "choices": {}}) if writer == "cache" else "previous content")
    kinds = {p: kind_of(p) for p in special.values()}
    before = {p: p.read_bytes() for p in _files(folder) if kind_of(p) == "file"}
    with pytest.MonkeyPatch.context() as mp:
        if location == "read-only":
            read_only(mp, folder / "previous")
        if location == "full-disk":
            full_disk(mp, folder / "previous", room=20)
        if writer in ("report", "plot"):
            code, err = _cli(["--db", str(db), "report", "-o", str(target)] if writer == "report"
                             else ["--db", str(work / "plots.sqlite"), "plot", "--out-dir", str(target)])
            assert code == (0 if (writer, location) in SUCCEEDS else 2), err
            if code:
                _one_printable_line(err)
        elif writer == "write_atomic":
            with pytest.raises(UserError) as info:
                write_atomic(target, text)
            _one_printable_line(f"dynconv-bench: error: {info.value}\n")
        else:
            err_io = io.StringIO()
            with contextlib.redirect_stderr(err_io):
                strategy_cache.store(target, "key|threads=1", "grouped")
                strategy_cache.store(target, "key2|threads=1", "loop")
            if (writer, location) not in SUCCEEDS:  # one warning for the two writes
                _one_printable_line(err_io.getvalue(), "dynconv-bench: warning: ")
        if location == "full-disk" and (writer, location) not in SUCCEEDS and writer != "cache":
            assert "no space left" in (err if writer in ("report", "plot") else str(info.value))
    assert {p: kind_of(p) for p in special.values()} == kinds  # nothing replaced
    after = {p: p.read_bytes() for p in _files(folder) if kind_of(p) == "file"}
    if (writer, location) in SUCCEEDS:  # what it wrote is in the target folder
        made = target if writer == "plot" else target.parent
        after = {p: b for p, b in after.items() if made not in p.parents}
    assert after == before, f"{location}/{writer} changed or left files"
    shutil.rmtree(folder)


@pytest.fixture(scope="module")
def plot_store(outputs: tuple[Path, Path, str]) -> None:
    from dynconv_bench.execution.executors import LocalExecutor
    from tests.test_hostile_outputs import fake_cell

    suite = parse_suite({"name": "po", "backbones": ["cifar_resnet8"], "variants": ["static"],
                         "measure": {"layers": {}}})
    run_suite(suite, outputs[0] / "plots.sqlite", executor=LocalExecutor(fn=fake_cell), progress=False)


_NO_SHRINK = {**_SETTINGS, "phases": (Phase.explicit, Phase.generate)}  # a failure shows its example at once


def check_names(outputs: tuple[Path, Path, str], examples: int) -> None:
    @settings(max_examples=examples, **_NO_SHRINK)
    @given(name=NAMES, writer=st.sampled_from(["report", "write_atomic", "cache"]))
    def prop(name: str, writer: str) -> None:
        check_name(outputs, name, writer)

    prop()


def check_locations(outputs: tuple[Path, Path, str], examples: int) -> None:
    @settings(max_examples=examples, **_NO_SHRINK)
    @given(location=st.sampled_from(LOCATIONS), writer=st.sampled_from(WRITERS))
    def prop(location: str, writer: str) -> None:
        check_location(outputs, location, writer)

    prop()


def test_output_names_are_written_exactly_or_refused_in_one_line(outputs: tuple[Path, Path, str]) -> None:
    check_names(outputs, examples=60)


def test_output_locations_that_are_not_ours_stay_untouched(outputs: tuple[Path, Path, str], plot_store: None) -> None:
    for location in LOCATIONS:  # every pair once, then drawn ones
        for writer in WRITERS:
            check_location(outputs, location, writer)
    check_locations(outputs, examples=10)


@pytest.mark.slow
def test_output_names_many(outputs: tuple[Path, Path, str]) -> None:
    check_names(outputs, examples=1500)


# -- issue 35 (items 3, 6, 7): hostile store contents. Rows of a store with every built-in kind get random JSON
# (or raw SQLite values: numbers, text, BLOBs) in random columns, or in one field of their values; `report` in
# every format and `plot` then exit 0 (the rows they cannot use left out with one warning line naming their ids)
# or 2 (one error line), never with a traceback.
STORE_TALLY = Tally()
_JSON_LEAVES = st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20),
                         st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8))
JSON_VALUES = st.recursive(_JSON_LEAVES, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                                 st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                           max_leaves=8)
STORE_COLUMNS = ["values", "options", "environment", "config", "status", "kind", "variant", "backbone", "suite",
                 "error", "finished", "run_id", "owner", "heartbeat"]
VALUE_FIELDS = ["total", "deployed", "macs", "throughput", "latency_ms", "median_s", "batch_size", "threads",
                "process_ratios", "baseline_ratio", "load_avg", "cores", "peak_bytes", "top1", "top5", "loss",
                "num_classes", "final_temperatures", "temperature_schedules", "layers", "targets", "published",
                "no_layer_converted", "input_size", "cpu_s", "device"]
RAW = st.one_of(st.integers(-2**63, 2**63 - 1), st.floats(allow_nan=False), st.text(max_size=10),
                st.binary(max_size=6), st.none())


@st.composite
def store_edits(draw: st.DrawFn) -> list[tuple[str, str, object]]:
    """1-3 edits: (column, how, what): `json` text of a JSON value, `raw` SQLite value, `field` of the values."""
    edits = []
    for _ in range(draw(st.integers(1, 3))):
        how = draw(st.sampled_from(["json", "raw", "field", "field"]))
        column = "values" if how == "field" else draw(st.sampled_from(STORE_COLUMNS))
        what = (draw(st.sampled_from(VALUE_FIELDS)), draw(JSON_VALUES)) if how == "field" else (
            draw(JSON_VALUES) if how == "json" else draw(RAW))
        edits.append((column, how, what))
    return edits


@pytest.fixture(scope="module")
def hostile_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from dynconv_bench.execution.executors import LocalExecutor
    from tests.test_hostile_store import SUITE, fake_cell

    db = tmp_path_factory.mktemp("hostile-store") / "pristine.sqlite"
    run_suite(parse_suite(SUITE), db, executor=LocalExecutor(fn=fake_cell), progress=False)
    for extra in db.parent.glob("pristine.sqlite-*"):
        extra.unlink()
    return db


def _store_copy(pristine: Path) -> tuple[Path, Path]:
    """A private folder holding a copy of the pristine store: (folder, store)."""
    work = Path(tempfile.mkdtemp(dir=pristine.parent))
    shutil.copy(pristine, work / "r.sqlite")
    return work, work / "r.sqlite"


def _report_every_format(db: Path, work: Path, with_plot: bool, tally: Tally) -> Iterator[tuple[list, int, str, str]]:
    """Each report format on `db` (and `plot` when asked): (argv, exit code, stdout, stderr); a traceback is
    counted in `tally` and raised."""
    commands = [["report", "--format", fmt, "--no-plots"] for fmt in ("md", "csv", "json", "html", "latex")]
    if with_plot:
        commands.append(["plot", "--out-dir", str(work / "figs")])
    for argv in commands:
        tally["inputs"] += 1
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(["--db", str(db), *argv])
            except SystemExit as exc:
                code = exc.code
            except BaseException:
                tally["tracebacks"] += 1
                raise
        yield argv, code, out.getvalue(), err.getvalue()


def check_store(pristine: Path, edits: list, row_ids: list[int], with_plot: bool) -> None:
    import sqlite3

    work, db = _store_copy(pristine)
    with sqlite3.connect(db) as conn:
        for (column, how, what), rid in zip(edits, row_ids):
            if how == "field":
                key, value = what
                row = conn.execute('SELECT "values" FROM results WHERE id=?', (rid,)).fetchone()
                try:
                    values = json.loads(row[0]) if row and isinstance(row[0], str) else {}
                except ValueError:
                    values = {}
                values = values if isinstance(values, dict) else {}
                values[key] = value  # NaN and Infinity as Python's json writes them (SQLite's json() refuses them)
                conn.execute('UPDATE results SET "values"=? WHERE id=?', (json.dumps(values), rid))
            else:
                text = json.dumps(what) if how == "json" else what
                try:
                    conn.execute(f'UPDATE results SET "{column}"=? WHERE id=?', (text, rid))
                except sqlite3.IntegrityError:  # NOT NULL columns
                    conn.execute(f'UPDATE results SET "{column}"=? WHERE id=?', ("", rid))
    conn.close()
    for argv, code, out, text in _report_every_format(db, work, with_plot, STORE_TALLY):
        assert "Traceback" not in text + out, (edits, argv, text)
        if code == 0:
            STORE_TALLY["valid"] += 1
            assert text == "" or (text.count("\n") == 1 and text.startswith("dynconv-bench: warning: left out ")), \
                (edits, argv, text)
        else:
            STORE_TALLY["errors"] += 1
            assert code == 2 and text.count("\n") == 1 and text.startswith("dynconv-bench: error: "), \
                (edits, argv, code, text)
    shutil.rmtree(work)


def check_stores(pristine: Path, examples: int) -> None:
    @settings(max_examples=examples, **_NO_SHRINK)
    @given(edits=store_edits(), rows=st.lists(st.integers(1, 14), min_size=3, max_size=3), with_plot=st.booleans())
    def prop(edits: list, rows: list[int], with_plot: bool) -> None:
        check_store(pristine, edits, rows, with_plot)

    prop()


def test_hostile_store_contents_report_or_are_one_line(hostile_store: Path) -> None:
    check_stores(hostile_store, examples=15)  # ~80 commands; about 1.5 min on 2 shared cores
    print(f"\nhostile stores: {STORE_TALLY.describe()}")


@pytest.mark.slow
def test_hostile_store_contents_many(hostile_store: Path) -> None:
    check_stores(hostile_store, examples=400)
    print(f"\nhostile stores: {STORE_TALLY.describe()}")


# -- labels: any text a suite or a store may carry as a variant's label ----------------------------------------
LABEL_TALLY = Tally()
LABELS = st.text(st.characters(codec="utf-8"), min_size=1, max_size=24)  # every category: controls, bidi, Cf, CJK


def check_label(pristine: Path, label: str, with_plot: bool) -> None:
    """`static-se`'s rows relabelled `label`: every report format and `plot` exit 0 with no traceback, the label
    never turns into markup (a link in Markdown, an unescaped macro or a raw non-ASCII character in LaTeX)."""
    import re
    import sqlite3

    work, db = _store_copy(pristine)
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE results SET variant=? WHERE variant='static-se'", (label,))
    conn.close()
    for argv, code, text, err in _report_every_format(db, work, with_plot, LABEL_TALLY):
        assert code == 0 and "Traceback" not in err, (label, argv, err)
        LABEL_TALLY["valid"] += 1
        if "latex" in argv:
            body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("%"))
            assert all(32 <= ord(c) < 127 or c == "\n" for c in body), (label, "raw character in LaTeX")
            assert not re.search(r"\\(input|include|write|openout|read|catcode|def)\b", body), label
        if "md" in argv:
            assert not re.search(r"(?<!\\)\]\((?!\s*\d)", text.replace(r"\]", "")), (label, "a live Markdown link")
    shutil.rmtree(work)


def test_any_label_reports_and_plots_as_text(hostile_store: Path) -> None:
    @settings(max_examples=12, **_NO_SHRINK)
    @given(label=st.one_of(LABELS, st.sampled_from(["$\\undefinedmacro$", "[x](javascript:alert(1))", "\u202e=1+1",
                                                     " =cmd", "\uff1dcmd", "\u2028\u200b\ufeff", "x}}\\input{/etc/hostname}{{",
                                                     "a$b", "%#&_^~"])),
           with_plot=st.booleans())
    def prop(label: str, with_plot: bool) -> None:
        check_label(hostile_store, label, with_plot)

    prop()
    print(f"\nhostile labels: {LABEL_TALLY.describe()}")
