"""Safe output files: every file the suite writes goes to a unique temporary name beside it, renamed when complete.

A full disk or a kill mid-write leaves the previous file as it was; a path that exists and is not a regular
file (a device, FIFO, socket or folder) is refused, never replaced. The `check_*` functions run at the start
of a command, before any work: they test writability by creating (and removing) a file, which also works
for root, whom permission bits do not stop.

Symbolic links: nothing is ever written through a link. An output file whose own name is a symbolic link
(dangling or not, to whatever target) is refused in one line, before any work and again just before the
rename; the rename itself (`os.replace`) replaces a name and never follows a link planted there meanwhile.
The figures folder (`check_output_dir` / `make_folder` with `no_link=True`) is refused when its own name is
a link, so a planted `plots -> /etc` is not written into. Folders above the final component are followed
(`/tmp` is a link on macOS, home folders often are): a user names them, and an attacker who can replace
them can replace the files anyway. The results store has its own rule (store_schema.py: a link to an
SQLite file is opened only when that file is a dynconv-bench store). `check_not_input` refuses an output
that is the same file (device and inode) as one of the command's inputs.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from .errors import UserError

NAME_MAX = 255  # bytes per path component on Linux/macOS file systems
PATH_MAX = 4096  # bytes of a whole path (Linux)
PROBE_PREFIX = ".dynconv-bench-probe-"


def show_path(text: str | os.PathLike[str], limit: int = 200) -> str:
    """A path as it may be printed on one line: control and format characters escaped, long ones shortened."""
    text = os.fspath(text)
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    shown = "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in text[:limit])
    return shown if len(text) <= limit else f"{shown}... ({len(text)} characters)"


def check_path_name(path: str | os.PathLike[str], what: str = "output") -> Path:
    """The path as a Path, or a one-line UserError when no file system could hold the name."""
    text = os.fspath(path)
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    if not text:
        raise UserError(f"{what} path is empty")
    if "\0" in text:
        raise UserError(f"{what} path {show_path(text)} contains a NUL character")
    try:
        raw = os.fsencode(text)
    except UnicodeEncodeError:
        raise UserError(f"{what} path {show_path(text)} cannot be encoded for the file system") from None
    if len(raw) >= PATH_MAX:
        raise UserError(f"{what} path is {len(raw)} bytes long (at most {PATH_MAX - 1}): {show_path(text)}")
    for part in Path(text).parts:
        size = len(os.fsencode(part))
        if size > NAME_MAX:
            raise UserError(f"{what} path has a component of {size} bytes (at most {NAME_MAX}): {show_path(part)}")
    return Path(text)


def check_output_path(path: str | os.PathLike[str], what: str = "output", probe: bool = True,
                      example: str = "out.txt", link_ok: bool = False) -> Path:
    """The path as a Path, or UserError (one line) when it cannot become a regular file of ours.

    `probe`: also create and remove a file in its folder (a read-only or virtual file system fails here);
    `example`: a file name the error for a folder suggests; `link_ok`: a symbolic link is checked as its target
    instead of refused (only the results store, which checks the file it opens itself: store_schema.py).
    """
    text = os.fspath(path)
    path = check_path_name(path, what)
    if str(text).endswith(os.sep):
        raise UserError(f"{what} {show_path(text)} names a folder; give a file path")
    if not link_ok:
        _refuse_link(path, what)
    mode = _mode(path, what)
    if mode is not None and stat.S_ISDIR(mode):
        raise UserError(f"{what} {show_path(path)} is a directory; pass a file path such as "
                        f"{show_path(path / example)}")
    if mode is not None and not stat.S_ISREG(mode):
        raise UserError(f"{what} {show_path(path)} is not a regular file (a device, FIFO or socket); dynconv-bench "
                        f"writes only regular files: pass a file path such as {example}")
    parent = _parent(path)
    if not parent.is_dir():
        raise UserError(f"folder of the {what} does not exist: {show_path(parent)}")
    if probe:
        check_writable_folder(parent, what, path)
    return path


def check_output_dir(path: str | os.PathLike[str], what: str = "figures", probe: bool = True,
                     no_link: bool = False) -> Path:
    """`path` as a folder that files can be written into (it may not exist yet), or a one-line UserError.

    `no_link`: refuse a `path` that is itself a symbolic link (the figures folder, whose file names anyone can
    predict); its parent folders are followed.
    """
    path = check_path_name(path, what)
    if no_link:
        _refuse_link(path, f"folder for the {what}")
    mode = _mode(path, what)
    if mode is not None and not stat.S_ISDIR(mode):
        kind = "a file" if stat.S_ISREG(mode) else "a device, FIFO or socket"
        raise UserError(f"folder for the {what} {show_path(path)} is {kind}, not a folder; give a folder path")
    existing = path
    while _mode(existing, what) is None:  # the nearest folder that exists: `make_folder` creates the rest
        existing = _parent(existing)
    if not existing.is_dir():
        raise UserError(f"folder for the {what} {show_path(path)}: {show_path(existing)} is a file, not a folder")
    if probe:
        check_writable_folder(existing, what, path)
    return path


def check_writable_folder(folder: str | os.PathLike[str], what: str = "output",
                          target: str | os.PathLike[str] | None = None) -> None:
    """Create and remove a file in `folder` (for `target`, named in the error); a one-line UserError if that fails."""
    try:
        fd, name = tempfile.mkstemp(prefix=PROBE_PREFIX, dir=folder)
    except OSError as exc:
        raise UserError(f"cannot write the {what} {show_path(target if target is not None else folder)}: "
                        f"{_reason(exc)} (folder {show_path(folder)})") from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(name)


def make_folder(path: str | os.PathLike[str], what: str = "figures", no_link: bool = False) -> Path:
    """Create `path` and its parents (as `mkdir -p`); a one-line UserError when that fails (`no_link`: see
    `check_output_dir`)."""
    path = check_output_dir(path, what, probe=False, no_link=no_link)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create the folder for the {what} {show_path(path)}: {_reason(exc)}") from None
    return path


@contextlib.contextmanager
def replacing(path: str | os.PathLike[str], what: str = "output") -> Iterator[Path]:
    """Yield a unique temporary path beside `path` (same suffix); rename it over `path` when the block ends cleanly.

    Any exception removes the temporary file and leaves `path` untouched; OSErrors become one-line UserErrors.
    A symbolic link is never written through: a `path` that is a link is refused (UserError, one line), and one
    planted after that check is replaced by the rename, its target untouched.
    """
    path = shown = check_output_path(path, what, probe=False)
    parent = _parent(path)
    suffix = path.suffix if 0 < len(os.fsencode(path.suffix)) <= 32 else ".part"
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{_clip(path.stem, 60)}.", suffix=suffix, dir=parent)
    except OSError as exc:
        raise UserError(_os_error_line(exc, shown, what)) from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with contextlib.suppress(OSError):  # keep the permissions of the file replaced; a new one gets 0644
            before = os.lstat(path) if os.path.lexists(path) else None
            os.chmod(tmp, stat.S_IMODE(before.st_mode) if before and stat.S_ISREG(before.st_mode) else 0o644)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        check_output_path(path, what, probe=False)  # it may have become a device, folder or link meanwhile
        os.replace(tmp, path)
        _sync_folder(parent)
    except OSError as exc:
        raise UserError(_os_error_line(exc, shown, what)) from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def write_atomic(path: str | os.PathLike[str], data: str | bytes, what: str = "output") -> Path:
    """Write `data` to `path` through a temporary file; the previous file survives any failure."""
    with replacing(path, what) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data.encode("utf-8") if isinstance(data, str) else data)
    return Path(path)


def check_not_input(output: str | os.PathLike[str], inputs: Iterable[tuple[str, str | os.PathLike[str] | None]],
                    what: str = "output") -> None:
    """Refuse (one-line UserError) an `output` that is the same file (device and inode: the same name, a hard
    link or a link to it) as one of `inputs`, given as (what the input is, its path); missing paths pass."""
    try:
        out = os.stat(output)
    except (OSError, ValueError):
        return
    for name, path in inputs:
        if path is None or not os.fspath(path):
            continue
        try:
            st = os.stat(path)
        except (OSError, ValueError):
            continue
        if (st.st_dev, st.st_ino) == (out.st_dev, out.st_ino):
            raise UserError(f"{what} {show_path(output)} is the same file as the {name} {show_path(path)}, which "
                            f"this command reads; pass another output path")


def _refuse_link(path: Path, what: str) -> None:
    """A one-line UserError when `path` itself is a symbolic link: nothing is written through a link."""
    if not os.path.islink(path):
        return
    try:
        target = os.readlink(path)
    except OSError:
        target = "?"
    raise UserError(f"{what} {show_path(path)} is a symbolic link (to {show_path(target, 100)}); dynconv-bench "
                    f"never writes through a link: remove it or pass another path")


def _mode(path: Path, what: str) -> int | None:
    """st_mode of `path` (following links), None when nothing is there; a UserError for any other failure."""
    try:
        return os.stat(path).st_mode
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        raise UserError(f"{what} path {show_path(path)}: a part of it is a file, not a folder") from None
    except OSError as exc:
        raise UserError(f"cannot write the {what} {show_path(path)}: {_reason(exc)}") from None


def _parent(path: Path) -> Path:
    return path.parent if str(path.parent) else Path(".")


def _clip(text: str, max_bytes: int) -> str:
    while len(os.fsencode(text)) > max_bytes:
        text = text[:-1]
    return text


def _sync_folder(folder: Path) -> None:
    """Make the rename durable (best effort: not every file system lets a folder be opened and synced)."""
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _reason(exc: OSError) -> str:
    if exc.errno == errno.EROFS:
        return "read-only file system"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "no space left on the device"
    if exc.errno == errno.ENOENT:  # in a folder that exists: /proc and the like accept no new files
        return "files cannot be created there (No such file or directory)"
    return exc.strerror or str(exc)


def _os_error_line(exc: OSError, path: Path, what: str) -> str:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return (f"cannot write the {what} {show_path(path)}: no space left on the device (the previous file, if "
                f"any, is unchanged)")
    return f"cannot write the {what} {show_path(path)}: {_reason(exc)}"
