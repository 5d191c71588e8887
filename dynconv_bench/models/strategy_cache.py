"""The strategy cache file: tuned per-sample conv choices kept between processes.

The file is a hint. Our file carries a marker (`FORMAT`, `VERSION`); a file without it belongs to someone else
and is never rewritten. Inside a cell nothing here raises: a file that cannot be read or written, or is not
ours, gives one warning per file and the choices stay in memory. `check_cache_file` is the strict check a
command runs at its start, before any work.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

from ..errors import UserError
from ..files import check_path_name, make_folder, show_path, write_atomic

FORMAT = "dynconv-bench strategy cache"
VERSION = 1
_WARNED: set[tuple[str, str]] = set()
_MEMORY_ONLY: set[str] = set()  # files found unusable in this process: no further reads or writes


class NotOurs(Exception):
    """The file exists and is not a strategy cache of this version (or not a regular file)."""


def warn_once(path: Path | str, topic: str, message: str) -> None:
    """One warning line per file and topic in this process."""
    if (str(path), topic) in _WARNED:
        return
    _WARNED.add((str(path), topic))
    sys.stderr.write(f"dynconv-bench: warning: strategy cache {show_path(path)}: {message}\n")


def parse(text: str) -> dict[str, str]:
    """The choices held by a cache file's text; NotOurs when the text is not such a file."""
    if not text.strip():
        return {}  # an empty file (`touch`): nothing in it to lose
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        raise NotOurs("not JSON") from None
    if not isinstance(data, dict):
        raise NotOurs("JSON without our marker")
    if data.get("format") == FORMAT:
        if data.get("version") != VERSION:
            raise NotOurs(f"version {data.get('version')!r}, this dynconv-bench reads version {VERSION}")
        choices = data.get("choices")
        if not isinstance(choices, dict):
            raise NotOurs("no 'choices' table")
        return {k: v for k, v in choices.items() if isinstance(v, str)}
    if data and all("|threads=" in k and isinstance(v, str) for k, v in data.items()):
        return dict(data)  # the unmarked layout of earlier versions: keys are ours beyond doubt
    raise NotOurs("JSON without our marker")


def read(path: Path) -> dict[str, str]:
    """The choices stored in `path` ({} when it is missing); NotOurs or OSError when it cannot be used."""
    try:
        mode = os.stat(path).st_mode  # never open a FIFO: it would block
    except FileNotFoundError:
        return {}
    if not stat.S_ISREG(mode):
        raise NotOurs("a folder" if stat.S_ISDIR(mode) else "not a regular file (a device, FIFO or socket)")
    with open(path, encoding="utf-8", errors="strict") as fh:
        try:
            return parse(fh.read())
        except UnicodeDecodeError:
            raise NotOurs("not UTF-8 text") from None


def load(path: Path) -> dict[str, str]:
    """`read` for use inside a cell: any problem is one warning per file, and then memory only."""
    if str(path) in _MEMORY_ONLY:
        return {}
    try:
        check_path_name(path, "strategy cache")
        return read(path)
    except NotOurs as exc:
        _give_up(path, "not ours", f"not a dynconv-bench strategy cache ({exc}); it is left untouched and tuned "
                                   f"choices are kept in memory only")
    except (OSError, UserError) as exc:
        _give_up(path, "read", f"cannot be read ({_why(exc)}); tuned choices are kept in memory only")
    return {}


def store(path: Path, key: str, choice: str) -> None:
    """Merge one choice into the file (other processes may have added keys meanwhile); warns once on failure."""
    if str(path) in _MEMORY_ONLY:
        return
    try:
        check_path_name(path, "strategy cache")
        choices = read(path)
        choices[key] = choice
        make_folder(path.parent if str(path.parent) else Path("."), "strategy cache")
        text = json.dumps({"format": FORMAT, "version": VERSION, "choices": choices}, indent=1, sort_keys=True)
        write_atomic(path, text + "\n", "strategy cache")
    except NotOurs as exc:
        _give_up(path, "not ours", f"not a dynconv-bench strategy cache ({exc}); it is left untouched and tuned "
                                   f"choices are kept in memory only")
    except (OSError, UserError) as exc:
        _give_up(path, "write", f"cannot be written ({_why(exc)}); tuned choices are kept in memory only")


def check_cache_file(path: str | os.PathLike[str] | None) -> None:
    """Refuse (UserError, one line) a cache path that names a file that is not ours, a folder or a device."""
    if path is None or not str(path):
        return
    path = check_path_name(path, "strategy cache")
    try:
        read(path)
    except NotOurs as exc:
        raise UserError(f"strategy cache {show_path(path)} is not a dynconv-bench strategy cache ({exc}); it is "
                        f"never rewritten: set DYNCONV_BENCH_STRATEGY_CACHE to a new file name, or unset it") from None
    except OSError:
        pass  # unreadable: a hint only; the cells warn once and tune


def _give_up(path: Path, topic: str, message: str) -> None:
    _MEMORY_ONLY.add(str(path))
    warn_once(path, topic, message)


def _why(exc: BaseException) -> str:
    text = str(exc) if isinstance(exc, UserError) else (getattr(exc, "strerror", None) or str(exc))
    return text.split("\n", 1)[0]
