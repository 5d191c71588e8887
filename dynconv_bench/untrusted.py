"""Reading files that others may have written (datasets, checkpoints): nothing in them ever runs.

Two loaders cover every pickle a user's file reaches: `load_restricted_pickle` (a plain pickle, e.g. a CIFAR
batch, admitting only the globals its format needs) and `load_weights` (torch's weights-only unpickler, with
errors of one line that never advise turning the protection off). Both say what a path is when it is not a
regular file (folder, FIFO, device) instead of trying to read it.
"""

from __future__ import annotations

import os
import pickle
import re
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any, BinaryIO

from .errors import UserError
from .files import show_path

# What a numpy array pickles as (numpy >= 2 writes numpy._core, older files numpy.core).
NUMPY_ARRAY_GLOBALS = frozenset({
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),  # pickle protocol 5
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("_codecs", "encode"),  # how pickle protocol 2 writes bytes from Python 3 (returns data, calls nothing)
})


def describe_file_type(path: str | os.PathLike[str], what: str) -> None:
    """UserError (one line) unless `path` is a regular file: says whether it is missing, a folder, a FIFO, ..."""
    shown = show_path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise UserError(f"{what} not found: {shown}") from None
    except OSError as exc:
        raise UserError(f"cannot read the {what} {shown}: {exc.strerror or exc}") from None
    if stat.S_ISREG(mode):
        return
    kind = ("a folder" if stat.S_ISDIR(mode) else "a FIFO (named pipe)" if stat.S_ISFIFO(mode)
            else "a character device" if stat.S_ISCHR(mode) else "a block device" if stat.S_ISBLK(mode)
            else "a socket" if stat.S_ISSOCK(mode) else "not a regular file")
    raise UserError(f"{what} {shown} is {kind}; give the path of a regular file")


class _Refused(pickle.UnpicklingError):
    """The file asked for something its format never holds; the load stopped before anything ran."""


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, fh: BinaryIO, allowed: frozenset[tuple[str, str]], encoding: str) -> None:
        super().__init__(fh, encoding=encoding)
        self._allowed = allowed

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._allowed:
            return super().find_class(module, name)
        raise _Refused(f"it refers to {show_path(module, 80)}.{show_path(name, 80)}, which this format never holds")

    def persistent_load(self, pid: Any) -> Any:
        raise _Refused("it holds a persistent reference, which this format never holds")


def load_restricted_pickle(path: str | os.PathLike[str], what: str,
                           allowed: Iterable[tuple[str, str]] = NUMPY_ARRAY_GLOBALS, encoding: str = "bytes") -> Any:
    """Unpickle `path` admitting only builtin containers, strings, bytes, numbers and the `allowed` globals.

    Anything else (a function, a class, `os.system`, ...) stops the load before it is called: one UserError
    line naming the file and the global it asked for.
    """
    describe_file_type(path, what)
    try:
        with open(path, "rb") as fh:
            return _RestrictedUnpickler(fh, frozenset(allowed), encoding).load()
    except _Refused as exc:
        raise UserError(f"{what} {show_path(path)} is refused: {exc}; nothing in it was run") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError, AttributeError, MemoryError,
            RecursionError, UnicodeError) as exc:
        raise UserError(f"{what} {show_path(path)} is malformed: not a readable pickle ({type(exc).__name__}: "
                        f"{_first_line(exc)})") from None
    except OSError as exc:
        raise UserError(f"cannot read the {what} {show_path(path)}: {exc.strerror or exc}") from None


_UNSUPPORTED = re.compile(r"(Unsupported global: [^\n]*?|Unsupported operand [^\n]*?|"
                          r"Trying to [^\n]*?)(?:\.\s|\n|$)")


def load_weights(path: str | os.PathLike[str], what: str = "checkpoint", safe_globals: Iterable[Any] = ()) -> Any:
    """`torch.load(path, weights_only=True)` on CPU; every failure is one UserError line.

    Files holding objects the weights-only unpickler refuses are refused, and the error never passes on
    torch's advice to load them with `weights_only=False`.
    """
    import torch

    describe_file_type(path, what)
    try:
        with torch.serialization.safe_globals(list(safe_globals)):
            return torch.load(Path(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        if "weights_only" in text or "Weights only" in text:
            found = _UNSUPPORTED.search(text)
            why = found.group(1).rstrip(". ") if found else "it holds objects other than tensors and plain data"
            raise UserError(f"{what} {show_path(path)} is refused: {why}; dynconv-bench loads weights only "
                            "and never runs code from a file") from None
        raise UserError(f"{what} {show_path(path)} is not a torch checkpoint ({_first_line(exc)})") from None
    except OSError as exc:
        raise UserError(f"cannot read the {what} {show_path(path)}: {exc.strerror or exc}") from None
    except Exception as exc:  # torch raises RuntimeError/ValueError/EOFError/... for files it cannot parse
        raise UserError(f"{what} {show_path(path)} is not a torch checkpoint ({type(exc).__name__}: "
                        f"{_first_line(exc)})") from None


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip() and "weights_only" not in ln]
    return show_path(lines[0], 160) if lines else type(exc).__name__
