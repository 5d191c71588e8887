"""Results of different code are never pooled (issue 36.1): per cell, a report shows the rows of the source and
config measured last, lists the older rows, and `report --compare` matches cells across an edit of a plugin."""

from __future__ import annotations

import hashlib
import json
import statistics

import pandas as pd
import pytest

from dynconv_bench.cli.main import main
from dynconv_bench.errors import UserError
from dynconv_bench.execution.executors import LocalExecutor
from dynconv_bench.execution.runner import run_suite
from dynconv_bench.execution.store import ResultStore
from dynconv_bench.execution.suite import parse_suite
from dynconv_bench.reporting.history import compare_runs, render_comparison, sources_note
from dynconv_bench.reporting.leaderboard import leaderboards
from dynconv_bench.reporting.report import render
from dynconv_bench.reporting.rows import load_results
from dynconv_bench.reporting.sources import current_rows, superseded_note

PLUGIN = '''
from torch import nn

from dynconv_bench import Param, Variant, register_variant


class Scaled(nn.Module):
    def __init__(self, conv, scale):
        super().__init__()
        self.conv, self.scale = conv, scale

    def forward(self, x):
        return self.conv(x) * self.scale


@register_variant
class Gated(Variant):
    name = "gated-src-test"
    params = {"policy": Param("blocks", type=str), "gate_scale": Param(GATE, "scales each converted conv")}

    def convert_conv(self, site):
        return Scaled(site.conv, self.cfg["gate_scale"])
'''
SUITE = '''name = "src"
backbones = ["cifar_resnet8", "resnet18"]
variants = ["static", "gated-src-test"]
[measure.params]
[measure.accuracy]
backbones = ["cifar_resnet8"]
datasets = ["digits"]
recipe = "digits-quick"
epochs = 1
seeds = [0, 1]
threads = 1
train_samples = 64
overrides = { image_size = 8, batch_size = 32 }
'''
TOP1 = "top-1 digits (%)"


def _sha(path) -> str:  # noqa: ANN001
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_an_edited_plugin_is_never_pooled_and_compare_answers(tmp_path, capsys) -> None:  # noqa: ANN001
    plugin, suite, db = tmp_path / "gated.py", tmp_path / "src.toml", tmp_path / "s.sqlite"
    suite.write_text(SUITE)
    plugin.write_text(PLUGIN.replace("GATE", "1.0"))
    old = _sha(plugin)
    run = ["--db", str(db), "--plugin", str(plugin), "run", str(suite), "--no-plots", "--no-progress"]
    assert main(run) == 0
    plugin.write_text(PLUGIN.replace("GATE", "0.25"))  # the default changes: a new source, a new config
    new = _sha(plugin)
    assert main([*run, "--only", "cifar_resnet8"]) == 0  # resnet18 is not measured again
    out = capsys.readouterr().out
    assert "3 run, 3 already done" in out  # the plugin's params and two seeds; static's cells are done

    with ResultStore(db, readonly=True) as store:
        runs = [r["run_id"] for r in store.runs()]
        every = store.dataframe(suite="src", history=True)
    assert len(runs) == 2
    acc = every[(every["kind"] == "accuracy") & (every["variant"] == "gated-src-test")]
    by_sha = {sha: [r["values"]["top1"] for r in acc.to_dict("records")
                    if r["environment"]["variant_source"]["sha256"] == sha] for sha in (old, new)}
    assert len(by_sha[old]) == len(by_sha[new]) == 2  # both versions are kept in the store
    assert all(r["variant_config"]["gate_scale"] in (1.0, 0.25) for r in acc["environment"])

    # the leaderboard: the new version's two seeds only, never the four
    df = load_results(db, "src")
    board = leaderboards(df)["cifar_resnet8"]
    assert board.loc["gated-src-test", f"{TOP1} n"] == 2  # n = the number of seeds
    assert board.loc["gated-src-test", TOP1] == pytest.approx(statistics.fmean(by_sha[new]))
    assert board.loc["static", f"{TOP1} n"] == 2
    assert len(df.attrs["superseded"]) == 2  # cifar_resnet8: the params cell and the accuracy cell
    shown = df[df["variant"] == "gated-src-test"]
    assert {r["variant_source"]["sha256"] for r, b in zip(shown["environment"], shown["backbone"])
            if b == "cifar_resnet8"} == {new}

    assert main(["--db", str(db), "report", "--suite", "src"]) == 0
    md = capsys.readouterr().out
    assert "(n=2)" in md and "(n=4)" not in md
    assert "## Superseded rows" in md
    assert (f"superseded: 3 rows of gated-src-test from plugin sha256 {old[:12]} (gated.py) measured ") in md
    assert (f"the table shows plugin sha256 {new[:12]} (gated.py); defaults or config changed: gate_scale 1.0 -> "
            f"0.25") in md
    # the notes name the source of the rows shown; resnet18's row (not measured again) is marked as older code
    (note,) = [line for line in md.splitlines() if line.startswith("note: variant gated-src-test")]
    assert note.startswith(f"note: variant gated-src-test comes from plugin file {plugin.resolve()} "
                           f"(sha256 {new[:12]}) on cifar_resnet8; resnet18 shows rows of an older version, plugin "
                           f"file {plugin.resolve()} (sha256 {old[:12]}), measured ")
    assert note.endswith(": rerun the suite to measure those with the current code")
    assert main(["--db", str(db), "report", "--suite", "src", "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert {(r["cell"], r["rows left out"]) for r in doc["superseded rows"]} == {
        ("cifar_resnet8/gated-src-test/params", 1), ("cifar_resnet8/gated-src-test/accuracy[dataset=digits]", 2)}

    # did my change help? --compare matches the cells across the edit and says the source differs
    assert main(["--db", str(db), "report", "--compare", runs[0], runs[1]]) == 0
    text = capsys.readouterr().out
    assert "no cell measured ok in both" not in text
    for cell in ("cifar_resnet8/gated-src-test/params", "cifar_resnet8/gated-src-test/accuracy[dataset=digits,seed=0]",
                 "cifar_resnet8/gated-src-test/accuracy[dataset=digits,seed=1]"):
        assert f"| {cell} |" in text
    assert (f"source differs: plugin sha256 {old[:12]} (gated.py) -> plugin sha256 {new[:12]} (gated.py) (defaults "
            f"or config changed: gate_scale 1.0 -> 0.25), for gated-src-test") in text
    assert main(["--db", str(db), "report", "--compare", runs[0], runs[1], "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    accuracy = sorted((r for r in rows if r["metric"] == "top-1"), key=lambda r: r["cell"])
    assert [r["A"] for r in accuracy] == pytest.approx(by_sha[old])  # run A's rows, seeds 0 and 1
    assert [r["B"] for r in accuracy] == pytest.approx(by_sha[new])  # run B's rows
    assert all(r["source differs"] and r["source A"].startswith(f"plugin sha256 {old[:12]}") for r in rows)


# -- without training: made-up measurements, as tests/test_report.py -----------------------------------------------
BASE = {"name": "b", "backbones": ["cifar_resnet8"], "variants": ["static", "static-se"],
        "measure": {"params": {}, "accuracy": {"seeds": [0, 1]}}}


def _fake(commit: str, top1: float):  # noqa: ANN202
    def cell(c: dict, plugins: tuple = ()) -> dict:
        values = ({"total": 1_000_000} if c["kind"] == "params" else
                  {"status": "ok", "top1": top1 + c["options"].get("seed", 0)})
        return {"values": values, "status": "ok", "error": None, "started": None, "finished": None,
                "environment": {"host": "box", "cpu_model": "Test CPU", "threads": 2, "torch": "2.x",
                                "git_commit": commit, "git_dirty": commit.endswith("!")}}
    return cell


def _run(db, spec: dict, commit: str, top1: float, only: list[str] | None = None, force: bool = False) -> str:  # noqa: ANN001
    summary = run_suite(parse_suite(spec), db, executor=LocalExecutor(fn=_fake(commit, top1)), progress=False,
                        force=force, only=only or [])
    return summary.run_id


def test_a_built_in_at_another_commit_is_another_source(tmp_path) -> None:  # noqa: ANN001
    db = tmp_path / "b.sqlite"
    a = _run(db, BASE, "a" * 40, 90.0)
    b = _run(db, BASE, "b" * 40, 80.0, only=["static-se+accuracy"], force=True)  # both seeds, at a later commit
    df = load_results(db, "b")
    board = leaderboards(df)["cifar_resnet8"]
    assert board.loc["static-se", TOP1] == pytest.approx(80.5) and board.loc["static-se", f"{TOP1} n"] == 2
    assert board.loc["static", TOP1] == pytest.approx(90.5)  # static's rows at commit a are its only ones
    assert superseded_note(df) is None  # --force replaced the cells: no older row is kept per cell key

    c = _run(db, {**BASE, "measure": {"accuracy": {"seeds": [0, 1, 2]}}}, "c" * 12 + "!", 70.0,
             only=["static-se"])  # seed 2 only (0 and 1 are done): a third source, dirty
    df = load_results(db, "b")
    board = leaderboards(df)["cifar_resnet8"]
    assert board.loc["static-se", f"{TOP1} n"] == 1 and board.loc["static-se", TOP1] == pytest.approx(72.0)
    note = superseded_note(df)
    assert note.startswith(f"superseded: 2 rows of static-se from dynconv-bench 0.1.0 commit {'b' * 12} measured ")
    assert note.endswith(f"(left out of every mean); the table shows dynconv-bench 0.1.0 commit {'c' * 12}+dirty")
    md = render(df, "md", "b")
    assert "## Superseded rows" in md and "(n=3)" not in md
    assert current_rows(df).attrs["superseded"] == df.attrs["superseded"]  # again: nothing more left out

    with ResultStore(db, readonly=True) as store:
        cmp = compare_runs(store, a, b)
        with pytest.raises(UserError, match="no cell measured ok in both"):  # c measured seed 2 alone
            compare_runs(store, b, c)
    assert set(cmp["cell"]) == {f"cifar_resnet8/static-se/accuracy[dataset=digits,seed={s}]" for s in (0, 1)}
    assert list(cmp["B / A"]) == pytest.approx([80 / 90, 81 / 91])
    text = render_comparison(cmp, a, b)
    assert (f"source differs: dynconv-bench 0.1.0 commit {'a' * 12} -> dynconv-bench 0.1.0 commit {'b' * 12}, for "
            f"static-se") in text


def test_a_changed_config_supersedes_the_rows_of_the_earlier_one(tmp_path) -> None:  # noqa: ANN001
    db = tmp_path / "c.sqlite"
    spec = {**BASE, "variants": ["static", {"name": "cc", "variant": "condconv", "config": {"num_kernels": 4}}]}
    a = _run(db, spec, "a" * 40, 90.0)
    spec["variants"][1]["config"] = {"num_kernels": 8}
    b = _run(db, spec, "a" * 40, 85.0, only=["cc+accuracy"])  # same code, another config: a new cell key
    df = load_results(db, "b")
    board = leaderboards(df)["cifar_resnet8"]
    assert board.loc["cc", f"{TOP1} n"] == 2 and board.loc["cc", TOP1] == pytest.approx(85.5)
    assert "params (M)" in board and board.loc["cc", "params (M)"] == pytest.approx(1.0)  # its params row: kept
    note = superseded_note(df)
    assert note.startswith(f"superseded: 2 rows of cc from dynconv-bench 0.1.0 commit {'a' * 12} with an earlier "
                           f"config measured ")
    assert note.endswith("the table shows the current config (num_kernels 4 -> 8)")
    assert len(load_results(db, "b", current=False)) == len(df) + 2
    with ResultStore(db, readonly=True) as store:
        cmp = compare_runs(store, a, b)
    assert not cmp["source differs"].any() and cmp["config differs"].all()
    assert "config differs (defaults or config changed: num_kernels 4 -> 8), for cc" in render_comparison(cmp, a, b)


def test_the_latest_source_is_the_one_finished_last_ties_by_row() -> None:
    def row(i: int, sha: str, finished: str | None, seed: int) -> dict:
        src = {"from": "plugin file", "path": "/p/x.py", "sha256": sha}
        return {"id": i, "suite": "s", "backbone": "b", "variant": "x", "kind": "accuracy", "status": "ok",
                "options": {"seed": seed}, "config_hash": sha[:4], "finished": finished,
                "environment": {"variant_source": src}}

    df = pd.DataFrame([row(1, "new" * 8, "2026-01-02T00:00:00+00:00", 0), row(2, "old" * 8, "2026-01-01T00:00:00+00:00", 1),
                       row(3, "tie" * 8, "2026-01-02T00:00:00+00:00", 1)])
    out = current_rows(df)
    assert list(out["id"]) == [3]  # same finish time as id 1: the row stored last wins
    assert [(s["rows"], s["source"]) for s in out.attrs["superseded"]] == [
        (1, "plugin sha256 oldoldoldold (x.py)"), (1, "plugin sha256 newnewnewnew (x.py)")]
    assert sources_note(out) == "note: variant x comes from plugin file /p/x.py (sha256 tietietietie)"
    assert current_rows(df.iloc[:0]).empty


def test_the_note_names_the_version_shown_first_when_finish_times_tie() -> None:
    """Finish times are to the second: an old version's row on another backbone that finished in the same second
    as the new version's rows must not be named as the version shown (the CI failure of 2026-12-07)."""
    def row(i: int, sha: str, backbone: str) -> dict:
        return {"id": i, "suite": "s", "backbone": backbone, "variant": "x", "kind": "params", "status": "ok",
                "options": {}, "config_hash": sha[:4], "finished": "2026-01-02T00:00:00+00:00",
                "environment": {"variant_source": {"from": "plugin file", "path": "/p/x.py", "sha256": sha}}}

    df = current_rows(pd.DataFrame([row(1, "old" * 8, "a"), row(2, "old" * 8, "b"), row(3, "new" * 8, "a")]))
    assert sorted(zip(df["backbone"], df["id"])) == [("a", 3), ("b", 2)]
    assert sources_note(df) == ("note: variant x comes from plugin file /p/x.py (sha256 newnewnewnew) on a; b shows rows"
                                " of an older version, plugin file /p/x.py (sha256 oldoldoldold), measured 2026-01-02 "
                                "00:00: rerun the suite to measure those with the current code")
