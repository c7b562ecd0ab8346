"""The processes of a run: found, signalled and reaped through the operating system, not through a parent.

The app is not necessarily the parent of a run (it may have restarted), so liveness is read from the operating
system: the launcher's pid (checked against the run's token in its environment, so a recycled pid is not
mistaken for the run) and, when this process is the parent, the child's exit status (which also reaps it).
torchrun puts each worker in a session of its own, so the launcher tags every process of a run with
``ARCFACE_VIZ_RUN_TOKEN`` in its environment; Stop and reconcile find stray ranks by that tag (Linux ``/proc``)
as well as by process group.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Protocol

TOKEN_ENV = "ARCFACE_VIZ_RUN_TOKEN"

# children started by this process, by pid: polling them gives the exit code and reaps the zombie
_CHILDREN: dict[int, subprocess.Popen] = {}
_CHILDREN_LOCK = threading.Lock()


class RunProcesses(Protocol):
    """What identifies a run's processes: the launcher's pid and process group, and the run's token."""

    pid: int | None
    pgid: int | None
    token: str | None


_PROC = Path("/proc/self/environ").exists()  # Linux: processes can be found by their environment


def proc_state(pid: int) -> str | None:
    """The state letter of /proc/PID/stat (``Z`` for a zombie), None if gone or not Linux."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read().decode(errors="replace")
    except OSError:
        return None
    return stat[stat.rfind(")") + 2:][:1] or None


def pid_alive(pid: int | None) -> bool:
    """True while ``pid`` runs (zombies count as dead).  Reaps it if it is an untracked child of ours."""
    if not pid or pid <= 0:
        return False
    with _CHILDREN_LOCK:
        child = _CHILDREN.get(pid)
    if child is not None:
        return child.poll() is None
    with contextlib.suppress(ChildProcessError, OSError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return proc_state(pid) not in ("Z", "X")


def has_token(pid: int, token: str | None) -> bool | None:
    """Whether ``pid``'s environment carries the run's token (None where /proc cannot tell)."""
    if not token:
        return None
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            env = b"\0" + fh.read()
    except FileNotFoundError:
        return False if _PROC else None
    except OSError:
        return None
    return f"\0{TOKEN_ENV}={token}\0".encode() in env + b"\0"


def tagged_pids(token: str | None) -> list[int]:
    """Live processes whose environment carries ``token`` (every rank of a run, even re-parented ones)."""
    if not token or not _PROC:
        return []
    out = []
    me = os.getpid()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        pid = int(name)
        if has_token(pid, token) and proc_state(pid) not in ("Z", "X", None):
            out.append(pid)
    return out


def _group_exists(pgid: int | None) -> bool:
    if not pgid or pgid <= 1:
        return False
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_processes(run: RunProcesses) -> list[int]:
    """Every live process of ``run`` on this machine (Linux: every process carrying the run's token, wherever
    torchrun put it; elsewhere: the process group, while it exists).

    Membership is decided by the token, never by the group number alone: once a run's group is gone its
    number may belong to somebody else's processes.
    """
    if _PROC:
        return tagged_pids(run.token)
    return [run.pgid] if run.pgid and _group_exists(run.pgid) else []


def leader_alive(run: RunProcesses) -> bool:
    """Is the run's torchrun still running (and is that pid still the run, not a recycled one)?"""
    if not run.pid or not pid_alive(run.pid):
        return False
    return has_token(run.pid, run.token) is not False


def signal_run(run: RunProcesses, sig: int) -> None:
    """``sig`` to the launcher's process group (while torchrun leads it) and to every process of the run."""
    if leader_alive(run) or not _PROC:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(run.pgid, sig)
    for pid in tagged_pids(run.token):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def reap(pid: int | None) -> int | None:
    """The exit code of our child ``pid`` once it ended (negative: killed by that signal), else None."""
    if not pid:
        return None
    with _CHILDREN_LOCK:
        child = _CHILDREN.get(pid)
    if child is None:
        return None
    code = child.poll()
    if code is not None:
        with _CHILDREN_LOCK:
            _CHILDREN.pop(pid, None)
    return code


def wait_gone(run: RunProcesses, timeout: float, pids: list[int] | tuple[int, ...] = ()) -> bool:
    """Poll until no process of ``run`` is left (the launcher reaped if it is our child); True if none is.

    ``pids`` seen earlier are waited for by pid too: a process being torn down has lost its environment (so
    its token) while it still exists.
    """
    deadline = time.monotonic() + timeout
    while True:
        leader = leader_alive(run)
        if not leader and not run_processes(run) and not any(proc_state(p) not in ("Z", "X", None) for p in pids):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def signal_group(run: RunProcesses, sig: int) -> None:
    """Signal the launcher's process group only: torchrun forwards SIGTERM to its ranks and waits for them."""
    if run.pgid and run.pgid > 1 and leader_alive(run):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(run.pgid, sig)


def start(cmd: list[str], log_path: Path, env: dict[str, str], cwd: Path) -> subprocess.Popen:
    """Start ``cmd`` (an argument list, no shell) in a session and process group of its own, output appended
    to ``log_path``; this process keeps it as a child so that :func:`reap` can read its exit code."""
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=str(cwd),
                                env=env, start_new_session=True, close_fds=True)
    with _CHILDREN_LOCK:
        _CHILDREN[proc.pid] = proc
    return proc


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (for a single-node rendezvous)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host if host in ("127.0.0.1", "localhost", "0.0.0.0") else "", 0))
        return int(s.getsockname()[1])
