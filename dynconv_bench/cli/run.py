"""CLI subcommands `run`, `report`, `plot`, `suites` and `train` (a verb module of dynconv_bench.cli.main)."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from ..discovery import EXECUTOR_GROUP, entry_point_names
from ..errors import UserError, unknown_choice
from ..reporting.formats import list_formats
from .common import bounded_float, check_output_file, command, db_path

MAX_TIMEOUT_S = 7 * 24 * 3600.0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run a suite (skips cells already done) and print its leaderboard")
    p.add_argument("suite", help="suite name (suites/NAME.toml) or path to a .toml file")
    p.add_argument("--force", action="store_true", help="redo cells that are already done")
    p.add_argument("--only", action="append", default=[], metavar="NAME",
                   help="run only cells of this kind, backbone or variant; repeated: a union (--only speed --only "
                        "resnet18: every speed cell and every resnet18 cell); joined by +: an intersection (--only "
                        "speed+resnet18: resnet18's speed cells)")
    p.add_argument("--executor", choices=entry_point_names(EXECUTOR_GROUP), default="local",
                   help="local: cells one after another on this machine (default); ray: cells as Ray tasks on a Ray "
                        "cluster (--ray-address) or a local Ray, timed kinds (speed, memory, layers) each holding a "
                        "whole node (CPU) or a whole GPU and its share of the node's CPUs (cuda), untimed ones packed "
                        "(docs/cluster.md); or one an installed plugin registers (docs/plugin-api.md)")
    p.add_argument("--subprocess", action="store_true", help="local executor: each cell in its own process")
    p.add_argument("--timeout", type=bounded_float(0, MAX_TIMEOUT_S, low_open=True), default=None,
                   help="per-cell time limit in s, at most a week (with --subprocess)")
    p.add_argument("--ray-address", default=None,
                   help="ray executor: the cluster's head, HOST:PORT as `ray start --head` prints it (default: "
                        "$RAY_ADDRESS, else the Ray that `ray start` started on this machine, else start a local Ray, "
                        "one per machine at a time)")
    p.add_argument("--ray-timeout", type=bounded_float(0, 3600, low_open=True), default=None, metavar="SECONDS",
                   help="ray executor: how long the head may take to answer before the run stops with an error "
                        "(default: $DYNCONV_RAY_TIMEOUT, else 30)")
    p.add_argument("--num-cpus", type=bounded_float(0, 1024, low_open=True), default=1,
                   help="ray executor: CPUs each untimed cell's task asks for (default 1; a timed cell asks for "
                        "every CPU of its node instead) and the torch threads it runs with")
    p.add_argument("--num-gpus", type=bounded_float(0, 64), default=0,
                   help="ray executor: GPUs each untimed cell's task asks for (default 0; a cuda cell asks for at "
                        "least 1, or its num_gpus option; a timed cuda cell holds 1 whole GPU)")
    p.add_argument("--plots-dir", default="plots", help="where figures are written (default ./plots)")
    p.add_argument("--no-plots", action="store_true", help="write no figures after the run")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (e.g. in CI logs)")
    p.add_argument("--dry-run", action="store_true",
                   help="validate the suite and list the pending cells (writes nothing)")
    p.add_argument("--memory-cap", default=None, metavar="CAP",
                   help="memory cap per cell (resident memory of the process; GPU memory on CUDA): bytes with a "
                        "unit (4GiB, 512MB), a fraction of the machine's memory (0.5, 50%%) or none; at least 64 MiB "
                        "(default: the suite's memory_cap, else what is available now less a reserve of 15%% of the "
                        "machine's memory and at least 2 GiB, at most 80%% of it); a cell over it fails, the run goes on")

    p = sub.add_parser("report", help="leaderboards from the results store")
    p.add_argument("--suite", default=None, help="suite to report (default: the most recent)")
    p.add_argument("--format", choices=list_formats(), default="md",
                   help="md (default), csv, json, latex (booktabs tables for a paper), html (a page with figures) or "
                        "one an installed plugin registers (docs/plugin-api.md)")
    p.add_argument("--output", "-o", default=None, help="file to write (default: stdout)")
    p.add_argument("--plots-dir", default=None,
                   help="html (a format with figures): embed the PNGs of this folder (default: figures made for the "
                        "page in a temporary folder)")
    p.add_argument("--no-plots", action="store_true", help="html (a format with figures): no figures")
    p.add_argument("--compare", nargs=2, metavar=("RUN_A", "RUN_B"), default=None,
                   help="headline value of each cell in two runs and the ratio B / A (run ids or prefixes)")
    p.add_argument("--runs", action="store_true", help="list the runs in the store (ids for --compare)")

    p = sub.add_parser("plot", help="figures (PNG + SVG + PDF) from the results store")
    p.add_argument("--suite", default=None, help="suite to plot (default: the most recent)")
    p.add_argument("--out-dir", default="plots",
                   help="folder for the figures (PNG, SVG with editable text, PDF); default ./plots")

    sub.add_parser("suites", help="list the suites found in ./suites and the bundled suites folder")

    # prefix_chars="+": every argument, --help included, is passed through to the training CLI
    p = sub.add_parser("train", help="train and evaluate one model (see `train --help`)", add_help=False,
                       prefix_chars="+")
    p.add_argument("train_args", nargs="*", help="arguments of the training command")




def _suite_rows(args: argparse.Namespace, suite: str | None):  # noqa: ANN202
    from ..reporting.rows import default_suite, load_results

    df = load_results(db_path(args), suite)
    _warn_malformed(df.attrs.get("malformed"))
    name = suite or default_suite(df)
    rows = df[df["suite"] == name]
    rows.attrs = dict(df.attrs)
    return name, rows


@command
def cmd_run(args: argparse.Namespace) -> int:
    """Validate and run a suite; print the leaderboard and where the plots are."""
    from ..execution.executors import make_executor
    from ..execution.runner import pending_cells, resolve_memory_cap, run_suite, select_cells
    from ..execution.store import ResultStore
    from ..execution.suite import load_suite

    suite = load_suite(args.suite)  # every validation error surfaces before anything runs
    if args.timeout is not None and not args.subprocess:
        raise UserError("--timeout needs --subprocess (a cell in this process cannot be stopped safely)")
    select_cells(suite.cells(), args.only)  # an --only that names nothing: before any store is opened
    _check_run_outputs(args)
    cap = resolve_memory_cap(suite, args.memory_cap)
    executor = make_executor(args.executor, subprocess=args.subprocess, timeout=args.timeout,
                             address=args.ray_address, num_cpus=args.num_cpus, num_gpus=args.num_gpus,
                             ray_timeout=args.ray_timeout, exit_on_timeout=True)
    plugged = _plugin_variants(suite)
    if plugged:
        print(f"suite {suite.name}: variants from plugins: {plugged}")
    if args.dry_run:  # read-only, and no store file is created when there is none
        path = Path(db_path(args))
        store = ResultStore(path, readonly=True) if path.exists() else None
        try:
            todo, skipped = pending_cells(suite, store, args.force, args.only)
        finally:
            if store is not None:
                store.close()
        print(f"suite {suite.name}: {len(todo)} cells to run, {skipped} already done; memory cap per cell "
              f"{_cap_text(cap)}")
        for cell in todo:
            print(f"  {cell.label()}")
        return 0
    if hasattr(executor, "connect"):  # a Ray head that does not answer: one line, exit 2, before the store is opened
        executor.connect()
    with ResultStore(db_path(args)) as store:
        summary = run_suite(suite, store, force=args.force, executor=executor, plugins=args.plugin,
                            only=args.only, progress=not args.no_progress, memory_cap=cap)
    print(summary.headline() + f" (run {summary.run_id})")
    for line in summary.handoff_lines():
        print(line)
    _, df = _suite_rows(args, suite.name)
    from ..reporting.history import claims_note, concurrency_note, sources_note
    from ..reporting.report import render
    from ..reporting.sources import superseded_note

    print()
    print(render(df, "md", suite.name))
    for note in (concurrency_note(df), claims_note(df, suite.name), sources_note(df), superseded_note(df)):
        if note:
            print(note)
    if not args.no_plots:
        from ..reporting.plots import make_plots

        paths = make_plots(df, args.plots_dir, suite.name)
        pngs = [p for p in paths if p.suffix == ".png"]
        written = {p.suffix.lstrip(".") for p in paths}
        kinds = " + ".join(f.upper() for f in ("png", "svg", "pdf") if f in written) or "PNG + SVG + PDF"
        print(f"plots: {len(pngs)} figures ({kinds}) in {Path(args.plots_dir).resolve()}")
    print(f"results store: {Path(db_path(args)).resolve()}")
    if not summary.ok:
        sys.stderr.write(f"dynconv-bench: {len(summary.failed)} cell(s) failed:\n")
        for label, err in summary.failed:
            sys.stderr.write(f"  {label}: {err}\n")
        return 1
    return 0


def _check_run_outputs(args: argparse.Namespace) -> None:
    """What `run` writes and reads from the environment, checked before any work (a dry run creates nothing)."""
    import os

    from ..execution.runner import strategy_cache_path
    from ..files import NAME_MAX, check_not_input, check_output_dir, check_output_path
    from ..models.per_sample_conv import CACHE_ENV, forced_strategy
    from ..models.strategy_cache import check_cache_file

    # the store follows a link: it opens only an SQLite file that is empty or a dynconv-bench store (store_schema.py)
    db = check_output_path(db_path(args), "results store", not args.dry_run, "results.sqlite", link_ok=True)
    check_not_input(db, [("suite file", _suite_file(args.suite)), *_plugin_inputs(args)], "results store")
    room = NAME_MAX - len(".strategies.json")  # the longest name SQLite and the runner put beside the store
    if len(os.fsencode(db.name)) > room:
        raise UserError(f"results store file name is {len(os.fsencode(db.name))} bytes; at most {room} (files named "
                        f"after it are kept beside it, such as {db.name[:20]}....strategies.json)")
    if not args.no_plots:
        check_output_dir(args.plots_dir, "figures", probe=not args.dry_run, no_link=True)
    forced_strategy()  # DYNCONV_BENCH_STRATEGY=bogus: one line now, not a failure in every cell
    check_cache_file(os.environ.get(CACHE_ENV, "").strip() or strategy_cache_path(db))


@command
def cmd_report(args: argparse.Namespace) -> int:
    """Print or write the leaderboards of one suite (its latest result per cell), or compare two runs."""
    from ..reporting.formats import get_format
    from ..reporting.history import claims_note, concurrency_note, sources_note
    from ..reporting.report import render
    from ..reporting.sources import superseded_note

    fmt = get_format(args.format)
    if args.output and args.output != "-":
        from ..files import check_not_input

        check_output_file(args.output, "report", "report.md")
        pngs = sorted(Path(args.plots_dir).glob("*.png")) if args.plots_dir and Path(args.plots_dir).is_dir() else []
        check_not_input(args.output, [("results store", db_path(args)), *_plugin_inputs(args),
                                      *(("figure", p) for p in pngs)], "report")
    if args.runs or args.compare:
        text = _runs_text(args)
    else:
        name, df = _suite_rows(args, args.suite)
        text = _with_figures(args, df, name) if fmt.figures else render(df, fmt.name, name)
        notes = ([concurrency_note(df), claims_note(df, name), sources_note(df), superseded_note(df)]
                 if fmt.notes else [])
        text += "".join(f"\n{note}\n" for note in notes if note)
    if args.output and args.output != "-":
        from ..files import write_atomic

        out = write_atomic(args.output, text, "report")
        print(f"wrote {out}")
    else:
        sys.stdout.write(text)
    return 0


def _plugin_inputs(args: argparse.Namespace) -> list[tuple[str, str]]:
    """The --plugin files as inputs of `files.check_not_input`."""
    return [("plugin", p) for p in getattr(args, "plugin", None) or []]


def _suite_file(suite: str) -> Path | None:
    """The file a suite argument names (a path, or suites/NAME.toml), None when it names none."""
    from ..execution.suite import resolve_suite_path

    try:
        return resolve_suite_path(suite)
    except (UserError, OSError, ValueError):
        return None


def _with_figures(args: argparse.Namespace, df: object, name: str) -> str:
    """The report of a format with figures (html) with the PNGs of --plots-dir, or figures made for it in a
    temporary folder."""
    from ..reporting.plots import make_plots
    from ..reporting.report import render

    if args.no_plots:
        return render(df, args.format, name)
    if args.plots_dir:
        if not Path(args.plots_dir).is_dir():
            raise UserError(f"plots folder does not exist: {args.plots_dir}")
        return render(df, args.format, name, sorted(Path(args.plots_dir).glob("*.png")))
    with tempfile.TemporaryDirectory(prefix="dynconv-report-") as tmp:  # read into the page, then gone
        return render(df, args.format, name, [p for p in make_plots(df, tmp, name) if p.suffix == ".png"])


def _warn_malformed(ids: list[int] | None) -> None:
    if ids:
        sys.stderr.write(f"dynconv-bench: warning: left out {len(ids)} store row(s) that cannot be reported "
                         f"(malformed JSON, values of the wrong type or outside their valid range): id "
                         f"{', '.join(map(str, ids))}\n")


def _runs_text(args: argparse.Namespace) -> str:
    from ..execution.store import ResultStore
    from ..reporting.history import compare_runs, render_comparison

    with ResultStore(db_path(args), readonly=True) as store:
        if args.suite is not None and args.suite not in store.suites():
            raise unknown_choice("suite in the store", args.suite, store.suites())
        if args.runs:
            runs = store.runs(args.suite)
            return "".join(f"{r['run_id']}  {r['suite']:<16} {r['cells']:>4} cells {r['failed'] or 0:>3} failed  "
                           f"{r['started']} .. {r['finished']}\n" for r in runs) or "no runs in the store\n"
        df = compare_runs(store, *args.compare)
        _warn_malformed(store.malformed)
    from ..reporting.formats import get_format

    return (get_format(args.format).comparison() or render_comparison)(df, *args.compare)  # else Markdown


def _plugin_variants(suite: object) -> str:
    """`name (source), ...` of the suite's variants that a plugin file or package registered."""
    from ..models.registry import plugin_source

    names = dict.fromkeys(c.variant_name for c in suite.cells())  # type: ignore[attr-defined]
    return ", ".join(f"{n} ({src})" for n in names if (src := plugin_source(n)))


def _cap_text(cap: object) -> str:
    from ..execution.processes.limits import cap_bytes

    if cap is None:
        return "none"
    text = f"{cap_bytes(cap) / 2**30:.1f} GiB"  # type: ignore[arg-type]
    return f"{text} ({cap:.0%} of this machine)" if isinstance(cap, float) else text


@command
def cmd_plot(args: argparse.Namespace) -> int:
    """Write the figures of one suite."""
    from ..files import check_output_dir
    from ..reporting.plots import make_plots

    check_output_dir(args.out_dir, "figures", no_link=True)  # a planted `plots -> /etc` is not written into
    name, df = _suite_rows(args, args.suite)
    paths = make_plots(df, args.out_dir, name)
    for p in paths:
        print(p)
    if not paths:
        print(f"no figures: suite {name} has no measurements that can be plotted")
    return 0


@command
def cmd_suites(args: argparse.Namespace) -> int:
    """List the suites that `run` finds by name."""
    from ..execution.suite import list_suites, load_suite

    for name in list_suites():
        try:
            suite = load_suite(name)
            print(f"{name:<18} {len(suite.cells()):>4} cells  {suite.description}")
        except UserError as exc:
            print(f"{name:<18} invalid: {exc}")
    return 0


@command
def cmd_train(args: argparse.Namespace) -> int:
    """Delegate to `python -m dynconv_bench.training`."""
    try:
        from ..training.__main__ import main as train_main
    except ImportError:
        raise UserError("the training command is not available in this installation") from None
    return int(train_main(list(args.train_args), prog="dynconv-bench train") or 0)
