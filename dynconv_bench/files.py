"""Safe output files: every file the suite writes goes to a unique temporary name beside it, renamed when complete.

A full disk or a kill mid-write leaves the previous file as it was; a path that exists and is not a regular
file (a device, FIFO, socket or folder) is refused, never replaced.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import UserError

NAME_MAX = 255  # bytes per path component on Linux/macOS file systems


def check_output_path(path: str | os.PathLike[str], what: str = "output") -> Path:
    """The path as a Path, or UserError (one line) when it cannot become a regular file of ours."""
    path = Path(path)
    for part in path.parts:
        if len(os.fsencode(part)) > NAME_MAX:
            raise UserError(f"{what} path has a component of {len(os.fsencode(part))} bytes (at most {NAME_MAX}): "
                            f"{_short(part)}")
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        raise UserError(f"cannot write {what} {path}: {exc.strerror or exc}") from None
    if mode is not None and not stat.S_ISREG(mode):
        kind = "a folder" if stat.S_ISDIR(mode) else "not a regular file (a device, FIFO or socket)"
        raise UserError(f"{what} {path} is {kind}; dynconv-bench writes only regular files: pass a file path")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise UserError(f"folder of the {what} does not exist: {parent}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"cannot write {what} {path}: its folder {parent} is not writable")
    return path


@contextlib.contextmanager
def replacing(path: str | os.PathLike[str], what: str = "output") -> Iterator[Path]:
    """Yield a unique temporary path beside `path` (same suffix); rename it over `path` when the block ends cleanly.

    Any exception removes the temporary file and leaves `path` untouched; OSErrors become one-line UserErrors.
    """
    path = check_output_path(path, what)
    parent = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem[:60]}.", suffix=path.suffix or ".part", dir=parent)
    except OSError as exc:
        raise UserError(f"cannot write {what} {path}: {exc.strerror or exc}") from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if path.exists():  # keep the permissions of the file we replace
            with contextlib.suppress(OSError):
                os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode))
        else:
            with contextlib.suppress(OSError):  # mkstemp makes 0600; an output is as readable as any new file
                os.chmod(tmp, 0o644)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        check_output_path(path, what)  # it may have become a device or folder meanwhile
        os.replace(tmp, path)
    except OSError as exc:
        raise UserError(_os_error_line(exc, path, what)) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_atomic(path: str | os.PathLike[str], data: str | bytes, what: str = "output") -> Path:
    """Write `data` to `path` through a temporary file; the previous file survives any failure."""
    with replacing(path, what) as tmp:
        try:
            if isinstance(data, bytes):
                tmp.write_bytes(data)
            else:
                tmp.write_text(data, encoding="utf-8")
        except OSError as exc:
            raise UserError(_os_error_line(exc, Path(path), what)) from None
    return Path(path)


def _os_error_line(exc: OSError, path: Path, what: str) -> str:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"cannot write {what} {path}: no space left on the device (the previous file, if any, is unchanged)"
    return f"cannot write {what} {path}: {exc.strerror or exc}"


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"
