"""Hostile output locations for tests (issue 29): simulated full disks and read-only folders, special files.

Tests run as root, whom permission bits do not stop, and cannot mount file systems everywhere; so a full
disk is simulated by writes that raise ENOSPC after `room` bytes, a read-only folder by creations that raise
EROFS. `namespace_available()` says whether real ones can be mounted (an unprivileged user namespace).
"""

from __future__ import annotations

import builtins
import errno
import io
import os
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def _inside(path: Any, folder: str) -> bool:
    if isinstance(path, int):
        return False
    real = os.path.realpath(os.fspath(path))
    return real == folder or real.startswith(folder + os.sep)


def _writing(mode: str) -> bool:
    return any(c in mode for c in "wax+")


class _FullFile:
    """A file open for writing on a disk with `room` bytes left: a write past them writes what fits, then ENOSPC."""

    def __init__(self, fh: Any, room: int) -> None:
        self._fh, self._room = fh, room

    def write(self, data: Any) -> int:
        n = len(data)
        if n > self._room:
            self._fh.write(data[: self._room])
            self._room = 0
            self._fh.flush()
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._room -= n
        return self._fh.write(data)

    def __enter__(self) -> _FullFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self._fh.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fh, name)


def full_disk(monkeypatch: pytest.MonkeyPatch, folder: Path, room: int = 0) -> None:
    """Files opened for writing under `folder` (by `open`, `io.open`, `Path.open`) hold `room` bytes, then ENOSPC."""
    real_open, where = builtins.open, os.path.realpath(folder)

    def fake_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        fh = real_open(file, mode, *args, **kwargs)
        return _FullFile(fh, room) if _writing(mode) and _inside(file, where) else fh

    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(io, "open", fake_open)


def read_only(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """Nothing can be created, written or renamed under `folder` (EROFS), whoever asks."""
    where = os.path.realpath(folder)

    def refuse(path: Any) -> None:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fspath(path))

    def guard(real: Callable, test: Callable[..., bool]) -> Callable:
        def fake(*args: Any, **kwargs: Any) -> Any:
            if test(*args, **kwargs):
                refuse(args[0])
            return real(*args, **kwargs)
        return fake

    real_open = builtins.open
    fake_open = guard(real_open, lambda file, mode="r", *a, **k: _writing(mode) and _inside(file, where))
    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(io, "open", fake_open)
    monkeypatch.setattr(os, "open", guard(os.open, lambda path, flags, *a, **k: bool(flags & _WRITE_FLAGS)
                                          and _inside(path, where)))
    monkeypatch.setattr(os, "mkdir", guard(os.mkdir, lambda path, *a, **k: _inside(path, where)))
    for name in ("replace", "rename"):
        monkeypatch.setattr(os, name, guard(getattr(os, name), lambda src, dst, *a, **k: _inside(dst, where)))


def special_files(folder: Path) -> dict[str, Path]:
    """A character device (a copy of /dev/null, where mknod is allowed), a FIFO, a socket and a folder."""
    out = {}
    dev = folder / "null-device"
    try:
        os.mknod(dev, 0o666 | 0o020000, os.makedev(1, 3))
        out["device"] = dev
    except (OSError, AttributeError):
        pass
    os.mkfifo(folder / "fifo")
    out["fifo"] = folder / "fifo"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(folder / "socket"))
    sock.close()  # the socket file stays
    out["socket"] = folder / "socket"
    (folder / "folder").mkdir()
    out["folder"] = folder / "folder"
    return out


def kind_of(path: Path) -> str:
    import stat

    mode = os.lstat(path).st_mode
    return next(k for k, test in (("device", stat.S_ISCHR), ("fifo", stat.S_ISFIFO), ("socket", stat.S_ISSOCK),
                                  ("folder", stat.S_ISDIR), ("file", stat.S_ISREG)) if test(mode))


def leftovers(folder: Path) -> list[str]:
    """Temporary or probe files left in `folder` (or below it)."""
    return sorted(p.name for p in folder.rglob(".*") if p.is_file())


def namespace_available() -> bool:
    """Whether `unshare -rm` can mount a tmpfs here (real full and read-only file systems)."""
    try:
        return subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
                              capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False
