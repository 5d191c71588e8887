"""The `dynconv-bench` command line: one parser over a table of verb modules, a thin shell over the Python API.

Text written to stdout passes through `reporting.escape.visible`: names a user chose (variants, suites, errors)
cannot send control characters, ANSI escapes or bidirectional marks to the terminal.

Each verb module (models, run, export) adds its subparsers and registers its commands with `common.command`;
they import torch and timm only inside the commands, so `--help` stays fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from ..errors import UserError
from . import export, models, published, run
from .common import COMMANDS, DB_ENV, DEFAULT_DB

VERB_MODULES = (models, run, export, published)
STORE_VERBS = ("run", "report", "plot")  # the verbs that read or write a results store (--db)
DESCRIPTION = ("Benchmark dynamic convolutions ({variants}) against static baselines: run a suite of measurements "
               "(accuracy, parameters, MACs, speed, memory), then read the leaderboards (Markdown, CSV, JSON, LaTeX, "
               "HTML) and plots.")


def _description() -> str:
    """The description, naming the installed variants from their entry points (no plugin is imported)."""
    from ..discovery import VARIANT_GROUP, entry_point_names

    names = sorted(set(entry_point_names(VARIANT_GROUP)) - {"static"})
    return DESCRIPTION.format(variants=", ".join(names) or "none installed")
EPILOG = ("Start with: dynconv-bench suites; dynconv-bench run smoke; dynconv-bench report --format html -o "
          "report.html. `dynconv-bench COMMAND --help` describes each command.")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dynconv-bench", description=_description(), epilog=EPILOG)
    parser.add_argument("--plugin", action="append", default=[], metavar="FILE.py",
                        help="import a Python file that registers variants (repeatable)")
    parser.add_argument("--allow-shadow", action="store_true",
                        help="let a --plugin file register a name a built-in or installed variant has; its rows are "
                             "labelled with the file and its sha256, never stored as the original's")
    parser.add_argument("--db", default=None, metavar="PATH",
                        help=f"results store (SQLite) of {', '.join(STORE_VERBS)}; default ${DB_ENV} or ./{DEFAULT_DB}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    for verbs in VERB_MODULES:
        verbs.add_parsers(sub)
    _accept_global_options_after_verb(parser, sub)
    return parser


LATE = "_late_"  # dest prefix of a global option given after the verb


def _accept_global_options_after_verb(parser: argparse.ArgumentParser, sub: argparse._SubParsersAction) -> None:
    """Let `dynconv-bench VERB ... --db X` mean `dynconv-bench --db X VERB ...` for every global option."""
    globals_ = [a for a in parser._actions if a.option_strings and a.dest != "help"]
    for subparser in sub.choices.values():
        if "-" not in subparser.prefix_chars:
            continue  # a pass-through command (train) hands every argument on
        taken = set(subparser._option_string_actions)
        if subparser.prog.split()[-1] not in STORE_VERBS:
            taken.add("--db")  # a verb that uses no store does not offer --db
        for action in globals_:
            if taken.isdisjoint(action.option_strings) and isinstance(action, argparse._StoreTrueAction):
                subparser.add_argument(*action.option_strings, dest=LATE + action.dest, action="store_true",
                                       default=None, help=action.help)
            elif taken.isdisjoint(action.option_strings):
                kwargs = {"action": "append"} if isinstance(action, argparse._AppendAction) else {}
                subparser.add_argument(*action.option_strings, dest=LATE + action.dest, default=None,
                                       metavar=action.metavar or action.dest.upper(), help=action.help, **kwargs)


def _merge_late_options(args: argparse.Namespace) -> None:
    """Fold global options given after the verb into the global ones (appended lists are joined)."""
    for key, value in list(vars(args).items()):
        if not key.startswith(LATE):
            continue
        delattr(args, key)
        dest = key[len(LATE):]
        if value is None:
            continue
        early = getattr(args, dest, None)
        setattr(args, dest, early + value if isinstance(early, list) and isinstance(value, list) else value)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: user errors print one line and return 2; no traceback."""
    parser = build_parser()

    def error(message: str) -> None:  # argparse errors: one line, exit 2
        sys.stderr.write(f"dynconv-bench: error: {message}\n")
        raise SystemExit(2)

    parser.error = error  # type: ignore[method-assign]
    for action in parser._subparsers._group_actions if parser._subparsers else []:
        for subparser in getattr(action, "choices", {}).values():
            subparser.error = error  # type: ignore[method-assign]
    args = parser.parse_args(argv)
    _merge_late_options(args)
    if not args.command:
        parser.print_help()
        return 2
    try:
        from ..models.registry import load_plugin_file

        if args.db is not None and args.command not in STORE_VERBS:
            raise UserError(f"--db is an option of {', '.join(STORE_VERBS)}; `{args.command}` uses no results store")
        for path in args.plugin:
            load_plugin_file(path)
        _check_shadowing(args.allow_shadow)
        return _run_visible(args)
    except UserError as exc:
        sys.stderr.write(f"dynconv-bench: error: {_visible(str(exc))}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("dynconv-bench: interrupted\n")
        return 130
    except BrokenPipeError:  # `dynconv-bench report | head`: the reader left; stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # no second error when Python flushes stdout at exit
        return 141


def _check_shadowing(allowed: bool) -> None:
    """A plugin file that takes a packaged variant's name is an error unless the user allowed it."""
    from ..models.registry import shadowed_variants

    shadowed = shadowed_variants()
    if shadowed and not allowed:
        name, path = next(iter(shadowed.items()))
        raise UserError(f"plugin file {path} registers {name!r}, the name of a built-in or installed variant; "
                        f"rename its variant, or pass --allow-shadow to measure it as '{name} [plugin ...]'")


def _run_visible(args: argparse.Namespace) -> int:
    """Run the command with stdout showing control characters as escapes."""
    from ..reporting.escape import VisibleStream

    stdout = sys.stdout
    sys.stdout = VisibleStream(stdout)  # type: ignore[assignment]
    try:
        return COMMANDS[args.command](args)
    finally:
        sys.stdout = stdout


def _visible(text: str) -> str:
    from ..reporting.escape import visible

    return visible(text)


if __name__ == "__main__":
    raise SystemExit(main())
