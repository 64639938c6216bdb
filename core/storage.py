"""Storage failures and checks: what is the machine's fault, not the input's (DESIGN 3.3, 3.4).

A full disk, an I/O error, a broken pipe or a permission problem says nothing about the video being
processed, so it must never become a (cached) reject: the stage stops with a :class:`StorageError`
naming the path and the fix (exit status 2), and a re-run resumes from the cache once it is fixed.
:func:`check_writable` finds a read-only or full output or cache folder before any compute starts.
:class:`AtomicDir` builds an output folder beside its target and swaps it in atomically.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import glob
import os
import re
import shutil
import socket
import time
import uuid
from pathlib import Path
from typing import Any, Sequence

#: errno values of storage and environment failures (never a property of the input file).
TRANSIENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EPIPE, errno.EROFS, errno.EACCES, errno.EPERM,
                              errno.ENOMEM, errno.EMFILE, errno.ENFILE, errno.ESTALE})
#: The same failures as ffmpeg prints them (it reports a full disk as a failed write, not an errno).
_TRANSIENT_TEXT = re.compile(r"No space left on device|Disk quota exceeded|Input/output error|Broken pipe|"
                             r"Read-only file system|Permission denied|Operation not permitted|Too many open files")

_HOST = re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:24] or "host"
FIX = ("this is a problem of the machine, not of the input (nothing was cached for it): free disk space, fix the "
       "permissions or the disk, then re-run; finished work is reused from the cache")


class StorageError(RuntimeError):
    """A disk, I/O or permission failure; the message names the path and the fix."""


def is_transient(e: BaseException, names: Sequence[str] = ()) -> bool:
    """Whether ``e`` (or what it was raised from) is a storage/environment failure, not bad input.

    ``names``: the input's paths, left out when reading ffmpeg's message (a file may be *named*
    "No space left on device.mp4")."""
    seen = 0
    while e is not None and seen < 8:
        if isinstance(e, StorageError):
            return True
        if isinstance(e, OSError) and e.errno in TRANSIENT_ERRNOS:
            return True
        text = str(e)
        for name in sorted((n for n in names if n), key=len, reverse=True):
            text = text.replace(name, "")
        if not isinstance(e, OSError) and _TRANSIENT_TEXT.search(text):  # ffmpeg's own words
            return True
        e, seen = e.__cause__ or e.__context__, seen + 1  # type: ignore[assignment]
    return False


def storage_error(e: BaseException, where: str, path: Path | str | None = None) -> StorageError:
    """A :class:`StorageError` for ``e`` naming the path (``e.filename`` when it has one)."""
    if isinstance(e, StorageError):
        return e
    name = getattr(e, "filename", None) or path or "?"
    text = e.strerror if isinstance(e, OSError) and e.strerror else str(e).splitlines()[0][:300] if str(e) else type(e).__name__
    return StorageError(f"{where}: {text} ({name}); {FIX}")


def check_writable(folder: Path | str, min_free_mb: float, what: str) -> None:
    """Raise :class:`StorageError` unless ``folder`` (created if missing) takes a new file and has
    ``min_free_mb`` MiB free. ``what`` names the params key, so the message says what to change."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-check-{uuid.uuid4().hex[:8]}"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as e:
        raise StorageError(f"{what}: cannot write to {folder}: {e.strerror or e}; make it writable or point {what} "
                           f"elsewhere, then re-run") from e
    free_mb = shutil.disk_usage(folder).free / (1 << 20)
    if free_mb < min_free_mb:
        raise StorageError(f"{what}: only {free_mb:.0f} MiB free in {folder} (at least {min_free_mb:g} MiB wanted before "
                           f"starting); free space there or point {what} elsewhere, then re-run")


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_AT_FDCWD, _RENAME_EXCHANGE = -100, 2
STALE_AFTER_S = 86400.0  # a temp folder of another machine (shared storage) counts as stale after this


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one step (Linux ``renameat2(RENAME_EXCHANGE)``); False where unsupported."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False  # kernel or filesystem without it
    raise OSError(err, os.strerror(err), str(b))


def write_text_atomic(path: Path | str, text: str) -> None:
    """Write a small file by rename (a temp file beside it), so a reader never sees half of it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class AtomicDir:
    """Build a folder beside ``target`` and swap it in on success (context manager).

    The temp folder is ``.<name>.tmp-<host>-<pid>-<rand>`` (DVC- and git-ignored): one left by a killed
    run is removed by the next writer (its process is gone, or it is a day old). The swap holds an
    exclusive lock (``flock`` of the parent folder) and exchanges the two folders in one step where the OS can, so
    concurrent writers never fail and readers never see the target missing or half-written.
    """

    def __init__(self, target: Path):
        self.target = Path(target)
        self.prefix = f".{self.target.name}."
        self.tmp = self.target.parent / f"{self.prefix}tmp-{_HOST}-{os.getpid()}-{uuid.uuid4().hex[:8]}"

    def remove_stale(self) -> list[Path]:
        """Remove temp folders of ``target`` left by killed runs; returns them."""
        gone = []
        for p in self.target.parent.glob(f"{glob.escape(self.prefix)}*-*"):
            kind, _, owner = p.name[len(self.prefix):].partition("-")
            if kind not in ("tmp", "old") or p == self.tmp:
                continue
            host, _, rest = owner.partition("-")
            pid = rest.split("-", 1)[0]
            try:
                stale = (not pid_alive(int(pid))) if host == _HOST and pid.isdigit() else time.time() - p.lstat().st_mtime > STALE_AFTER_S
            except FileNotFoundError:
                continue
            if stale:
                shutil.rmtree(p, ignore_errors=True)
                gone.append(p)
        return gone

    def __enter__(self) -> Path:
        try:
            self.target.parent.mkdir(parents=True, exist_ok=True)
            self.remove_stale()
            self.tmp.mkdir()
        except OSError as e:
            raise storage_error(e, f"cannot write {self.target}", self.target.parent) from e
        return self.tmp

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            if isinstance(exc, OSError) and is_transient(exc):  # name the output folder, not the temp folder (or no path)
                raise storage_error(exc, f"cannot write {self.target}", self.target) from exc
            return
        old = self.target.parent / f"{self.prefix}old-{_HOST}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            lock = os.open(self.target.parent, os.O_RDONLY)  # the parent folder is the lock: no lock file left behind
            try:
                fcntl.flock(lock, fcntl.LOCK_EX)
                if not self.target.exists():
                    os.rename(self.tmp, self.target)
                elif _exchange(self.tmp, self.target):
                    os.rename(self.tmp, old)  # self.tmp now holds the previous folder
                else:
                    os.rename(self.target, old)
                    os.rename(self.tmp, self.target)
            finally:
                os.close(lock)
        except OSError as e:
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise storage_error(e, f"cannot write {self.target}", self.target) from e
        shutil.rmtree(old, ignore_errors=True)
