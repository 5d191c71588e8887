"""The `dynconv-bench` command line: a thin shell over the Python API."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence

from .errors import UserError

DB_ENV = "DYNCONV_BENCH_DB"
DEFAULT_DB = "dynconv_bench.sqlite"

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def command(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    COMMANDS[fn.__name__.removeprefix("cmd_").replace("_", "-")] = fn
    return fn


def parse_value(text: str) -> object:
    """Parse a `key=value` value: JSON when it parses (numbers, bools, lists), else the string."""
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_config(pairs: Sequence[str]) -> dict[str, object]:
    cfg: dict[str, object] = {}
    for pair in pairs:
        if "=" not in pair:
            raise UserError(f"config {pair!r} must be key=value (e.g. num_kernels=4)")
        key, value = pair.split("=", 1)
        cfg[key.strip()] = parse_value(value.strip())
    return cfg


def db_path(args: argparse.Namespace) -> str:
    return getattr(args, "db", None) or os.environ.get(DB_ENV) or DEFAULT_DB


@command
def cmd_variants(args: argparse.Namespace) -> int:
    """List registered variants: paper, every config key (type, default, range, help) and presets."""
    from .registry import get_variant, installation_problems, list_variants

    for problem in installation_problems():
        sys.stderr.write(f"dynconv-bench: warning: {problem}\n")
    rows = [get_variant(n).describe() for n in list_variants()]
    if args.format == "json":
        print(json.dumps(rows, indent=2, default=str))
        return 0
    for row in rows:
        year = f" ({row['year']})" if row["year"] else ""
        print(f"{row['name']}  {row['paper']}{year}")
        for key, p in row["params"].items():
            print(f"    {key:<16} {_param_summary(p)}")
        for preset, backbones in row["presets"].items():
            print(f"    preset={preset}: {', '.join(backbones)}")
    return 0


def _param_summary(p: dict) -> str:
    """`int = 4, >= 1: help text` for one config key."""
    text = f"{p['type']} = {p['default']!r}"
    if "choices" in p:
        text += f", one of {', '.join(map(str, p['choices']))}"
    bounds = [f">= {p['min']}" if "min" in p else "", f"<= {p['max']}" if "max" in p else ""]
    text += "".join(f", {b}" for b in bounds if b)
    return f"{text}: {p['help']}" if p["help"] else text


@command
def cmd_backbones(args: argparse.Namespace) -> int:
    """List the standard backbones and registered architectures."""
    from .backbones import default_input_size, list_backbones

    for name in list_backbones():
        print(f"{name:<28} input {'x'.join(map(str, default_input_size(name)))}")
    print("(any other timm CNN name works too: see timm.list_models())")
    return 0


@command
def cmd_convert(args: argparse.Namespace) -> int:
    """Convert a backbone with a variant and print which layers were replaced."""
    import torch

    from .backbones import default_input_size
    from .convert import create_model

    cfg = parse_config(args.config)  # may include preset=NAME
    model = create_model(args.backbone, args.variant, num_classes=args.num_classes, **cfg)
    report = model.dynconv_report
    print(report.summary())
    for name in report.converted:
        print(f"  {name}")
    size = default_input_size(args.backbone)
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(2, *size))
    params = sum(p.numel() for p in model.parameters())
    print(f"params {params:,}; output {tuple(out.shape)} for input {(2, *size)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dynconv-bench", description=__doc__)
    parser.add_argument("--plugin", action="append", default=[], metavar="FILE.py",
                        help="import a Python file that registers variants (repeatable)")
    parser.add_argument("--db", default=None, help=f"results store (SQLite); default ${DB_ENV} or ./{DEFAULT_DB}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("variants", help="list registered variants")
    p.add_argument("--format", choices=["text", "json"], default="text")
    sub.add_parser("backbones", help="list standard backbones and registered architectures")
    p = sub.add_parser("convert", help="convert a backbone and list the replaced layers")
    p.add_argument("backbone")
    p.add_argument("variant")
    p.add_argument("config", nargs="*", help="variant config as key=value (preset=paper for a published one)")
    p.add_argument("--num-classes", type=int, default=None, help="default: the backbone's own")

    for extend in _EXTENSIONS:
        extend(sub)
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
        for action in globals_:
            if taken.isdisjoint(action.option_strings):
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


# Modules that add subcommands (runner, report, plot) append a function(subparsers) here.
_EXTENSIONS: list[Callable[[argparse._SubParsersAction], None]] = []


def _load_extensions() -> None:
    import importlib
    import importlib.util

    if importlib.util.find_spec(f"{__package__}.cli_run") is not None:
        importlib.import_module(f"{__package__}.cli_run")  # registers run / report / plot
    importlib.import_module(f"{__package__}.cli_export")  # registers export




def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: user errors print one line and return 2; no traceback."""
    _load_extensions()
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
        from .registry import load_plugin_file

        for path in args.plugin:
            load_plugin_file(path)
        return COMMANDS[args.command](args)
    except UserError as exc:
        sys.stderr.write(f"dynconv-bench: error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("dynconv-bench: interrupted\n")
        return 130
    except BrokenPipeError:  # `dynconv-bench report | head`: the reader left; stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # no second error when Python flushes stdout at exit
        return 141


if __name__ == "__main__":
    # run the imported module's main: extensions (cli_run) register into dynconv_bench.cli, not __main__
    from dynconv_bench.cli import main as _main

    raise SystemExit(_main())
