"""Run-directory safety: an exclusive lock per workdir and removal of stale temporary files.

The lock is `workdir/.lock`, held with `fcntl.flock` for the life of the process and holding
the holder's pid and host. The kernel releases a flock when its holder dies (even on kill -9),
so a lock file left by a dead process is stale by construction and simply taken over; a
second live process gets a ValueError naming the workdir and the holder's pid.

Temporary files are written as `.tmp-<pid>@<host>-<name>` next to their final name and renamed into
place (`os.replace`, atomic). `clean_stale_temp` removes those whose writer is no longer
alive (or, with `all_pids=True`, every one: callers that hold the lock know nobody else writes).

`check_workdir` refuses a workdir that cannot be created or written before any work starts;
`open_metrics` appends to metrics.jsonl, ending a line a killed process cut short.
"""
from __future__ import annotations

import errno
import os
import re
import socket
from typing import List
from configs.errors import InputError

LOCK_NAME = ".lock"
_TMP = re.compile(r"^\.tmp-(?:(\d+)(?:@([A-Za-z0-9_]+))?-)?")


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname())[:40] or "host"


def temp_prefix() -> str:
    """`.tmp-<pid>@<host>-`: whose file it is, so a later start can tell a dead writer's leftovers."""
    return f".tmp-{os.getpid()}@{_host()}-"


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except OSError as e:
        return e.errno == errno.EPERM      # exists, owned by someone else
    return True


class WorkdirLock:
    """Exclusive lock on a run directory (`with WorkdirLock(workdir): ...` or acquire/release).

    Re-entrant within one process: acquiring a workdir this process already holds is a no-op
    that returns the same lock (run.py locks for `--mode all`, `train()` locks again inside).
    """
    _held = {}

    def __init__(self, workdir: str):
        self.workdir = os.path.abspath(workdir)
        self.path = os.path.join(self.workdir, LOCK_NAME)
        self.fd = None
        self.depth = 0

    def acquire(self) -> "WorkdirLock":
        import fcntl
        owner = WorkdirLock._held.get(self.path)
        if owner is not None:
            owner.depth += 1
            return owner
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").split()
            os.close(fd)
            pid = holder[0] if holder else "unknown"
            host = f" on {holder[1]}" if len(holder) > 1 else ""
            raise InputError(f"workdir {self.workdir!r} is in use by pid {pid}{host} (lock {self.path}); "
                             f"wait for it to finish or use another --workdir") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
        self.fd, self.depth = fd, 1
        WorkdirLock._held[self.path] = self
        return self

    def release(self) -> None:
        if self.fd is None:
            return
        self.depth -= 1
        if self.depth > 0:
            return
        WorkdirLock._held.pop(self.path, None)
        try:
            os.ftruncate(self.fd, 0)
        finally:
            os.close(self.fd)      # closing the descriptor releases the flock
            self.fd = None

    def __enter__(self):
        self._lock = self.acquire()
        return self._lock

    def __exit__(self, *exc):
        self._lock.release()


def lock_workdir(workdir: str) -> WorkdirLock:
    """Acquire and return the workdir's lock (release() it, or let process exit release it)."""
    return WorkdirLock(workdir).acquire()


def temp_name(directory: str, name: str) -> str:
    """The temporary path to write `name` through: `.tmp-<pid>@<host>-<name>` in the same directory."""
    return os.path.join(directory, temp_prefix() + name)


def clean_stale_temp(directory: str, all_pids: bool = False) -> List[str]:
    """Remove `.tmp-*` files under `directory` (recursively) whose writer is dead; return them.

    Only files written on this host are judged (a pid means nothing on another machine of a
    shared file system). A temp file without a pid in its name (an older version's) counts as
    stale only with `all_pids=True`.
    """
    removed = []
    if not os.path.isdir(directory):
        return removed
    for root, _, files in os.walk(directory):
        for f in files:
            m = _TMP.match(f)
            if not m:
                continue
            pid = int(m.group(1)) if m.group(1) else None
            here = m.group(2) in (None, _host())
            if all_pids or (pid is not None and here and pid != os.getpid() and not pid_alive(pid)):
                path = os.path.join(root, f)
                try:
                    os.remove(path)
                    removed.append(path)
                except FileNotFoundError:
                    pass
    return removed


def check_workdir(workdir: str) -> None:
    if not isinstance(workdir, str) or not workdir:
        raise InputError(f"workdir must be a non-empty path, got {workdir!r}")
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise InputError(f"workdir {workdir!r} exists and is not a directory")
    parent = os.path.abspath(workdir)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise InputError(f"cannot create workdir {workdir!r}: {parent!r} is a file, not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"workdir {workdir!r}: {parent!r} is not writable by this user")


def open_metrics(path: str):
    """metrics.jsonl for appending; a last line cut short by a killed process is ended first."""
    if os.path.exists(path) and os.path.getsize(path) > 0:
        with open(path, "rb+") as f:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                f.write(b"\n")
    return open(path, "a")
