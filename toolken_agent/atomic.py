"""Directories written beside their destination and renamed into place, one writer at a time.

Checkpoints and converted models are directories. Each is written to a temporary
directory next to its destination and renamed into place, so a reader sees the old one
or the new one, never a mix. Writers in one parent directory take turns (an exclusive
``flock`` on the parent): two processes saving to one ``--out`` raced between moving the
old copy aside and moving the new one in. A writer killed with SIGKILL leaves its
temporary or moved-aside copy behind; the next writer removes it, after moving a
moved-aside copy back if the destination is missing.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import secrets
import shutil
import time
from pathlib import Path
from typing import Callable, Iterator

LOCK_TIMEOUT = 120.0  # seconds a checkpoint writer waits for another one
_UNLOCKABLE = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}  # filesystems without flock


@contextlib.contextmanager
def writer_lock(parent: Path, *, timeout: float | None = LOCK_TIMEOUT,
                on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold the exclusive writer lock of directory ``parent`` (waits; ``None``: for ever).

    The lock is on the directory itself, so no lock file is left beside a checkpoint.
    Raises ``TimeoutError`` naming the directory when another writer holds it too long.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: writers are not serialized
        yield
        return
    fd = os.open(parent, os.O_RDONLY)
    try:
        deadline = None if timeout is None else time.monotonic() + timeout
        waited = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError(errno.ETIMEDOUT, f"another process has been writing in {parent} "
                                                        f"for over {timeout:g} s; try again when it is done") from None
                if not waited and on_wait is not None:
                    on_wait()
                waited = True
                time.sleep(0.02)
            except OSError as exc:
                if exc.errno in _UNLOCKABLE:
                    break  # no locks on this filesystem: go ahead unserialized, as before
                raise
        yield
    finally:
        os.close(fd)  # releases the lock


def temp_dir(target: Path) -> Path:
    """A new empty directory beside ``target``, named for it and for this process.

    Created with mode 0777 less the umask, as any directory the user makes:
    ``tempfile.mkdtemp``'s 0700 made every checkpoint private to its writer.
    """
    for _ in range(100):
        candidate = target.with_name(f".{target.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
        try:
            os.mkdir(candidate, 0o777)
            return candidate
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, f"no free temporary name beside {target}")


def share_like_dir(directory: Path) -> None:
    """Give the files in ``directory`` the mode a file made under the usual umask has.

    safetensors writes through a private temporary file (0600); the directory, made by
    :func:`temp_dir`, already carries the umask, so its mode less the execute bits is
    the one a plain ``open()`` would have given (no racy ``os.umask`` read needed).
    """
    mode = directory.stat().st_mode & 0o666
    for path in directory.iterdir():
        if path.is_file() and not path.is_symlink():
            os.chmod(path, mode)


def swap_into_place(new: Path, target: Path) -> None:
    """Replace directory ``target`` by ``new``; the old one is removed only afterwards.

    A directory cannot be renamed over a non-empty one, so the old copy is moved aside
    first. If anything fails or Ctrl-C arrives between the two renames, the old one is
    moved back: ``target`` is never left missing by an exception.
    """
    old = target.with_name(f".{target.name}.old-{os.getpid()}") if target.exists() else None
    try:
        if old is not None:
            os.replace(target, old)
        os.replace(new, target)
    except BaseException:
        if old is not None and old.exists() and not target.exists():
            os.replace(old, target)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def clean_stale(target: Path) -> list[Path]:
    """Remove the temporary and moved-aside copies that dead writers left beside ``target``.

    Call it holding :func:`writer_lock`. A writer killed between its two renames left
    ``target`` missing and the previous copy moved aside: that copy is moved back
    first, so nothing is lost. Copies named for a live process other than this one are
    kept. Returns what was removed.
    """
    stale = [p for p in target.parent.glob(f".{glob_escape(target.name)}.*-*") if _is_stale(p, target.name)]
    olds = sorted((p for p in stale if p.name.startswith(f".{target.name}.old-")), key=_mtime, reverse=True)
    if olds and not os.path.lexists(target):
        os.replace(olds[0], target)
        stale.remove(olds[0])
    for path in stale:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                path.unlink()
    return stale


def _is_stale(path: Path, name: str) -> bool:
    rest = path.name[len(name) + 2:]  # after ".<name>."
    kind, _, tail = rest.partition("-")
    if kind not in ("tmp", "old"):
        return False
    pid = tail.split("-", 1)[0]
    return not (pid.isdigit() and int(pid) != os.getpid() and _alive(int(pid)))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    except OverflowError:
        return False  # no such pid can exist
    return True


def _mtime(path: Path) -> float:
    try:
        return path.lstat().st_mtime
    except OSError:
        return 0.0


def glob_escape(name: str) -> str:
    """``name`` with glob metacharacters taken literally."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes, read in 1 MiB chunks (model files are hundreds of MB)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
