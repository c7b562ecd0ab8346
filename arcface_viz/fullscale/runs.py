"""The run registry and launcher of full-scale training runs (the backend of issue 6).

A run is one training job of :mod:`arcface_viz.train` started under ``torchrun`` in its own process group::

    python -m torch.distributed.run --nproc_per_node P --nnodes N --node_rank R \\
        --master_addr A --master_port PORT -m arcface_viz.train --config RUN_DIR/config.json [--resume]

(insightface's arcface_torch convention, ``torchrun --nproc_per_node=8 train.py configs/X``).  Every run is a
row of a SQLite file (WAL mode, so the app, the CLI and several browser sessions can read and write it at
once) and a folder ``RUN_DIR`` that the trainer fills: ``config.json``, ``train.log``, ``metrics.jsonl``,
``checkpoints/``, ``model.pt`` and ``embeddings.npz``; the launcher adds ``launcher.log`` (torchrun's output).

The app is not necessarily the parent of a run (it may have restarted), so liveness is read from the
operating system: the launcher's pid (checked against the run's token in its environment, so a recycled
pid is not mistaken for the run) and, when this process is the parent, the child's exit status (which also
reaps it).  torchrun puts each worker in a session of its own, so the launcher tags every process of a run
with ``ARCFACE_VIZ_RUN_TOKEN`` in its environment; Stop and reconcile find stray ranks by that tag (Linux
``/proc``) as well as by process group.

Nothing here builds a shell string: processes start from argument lists, and the command lines shown to
the user are ``shlex``-quoted for copying only.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import settings

STATUSES = ("queued", "running", "finished", "failed", "stopped")
TOKEN_ENV = "ARCFACE_VIZ_RUN_TOKEN"
TRAINER_MODULE = "arcface_viz.train"
PROJECT_ROOT = Path(__file__).resolve().parents[2]
MAX_PROCS_PER_NODE = 1024
MAX_NODES = 4096
_HOST_RE = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9._-]{0,252})|\[?[0-9A-Fa-f:.]+\]?)$")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    created REAL NOT NULL,
    config TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'finished', 'failed', 'stopped')),
    pid INTEGER,
    pgid INTEGER,
    started REAL,
    ended REAL,
    run_dir TEXT NOT NULL,
    command TEXT,
    nproc_per_node INTEGER NOT NULL DEFAULT 1,
    nnodes INTEGER NOT NULL DEFAULT 1,
    node_rank INTEGER NOT NULL DEFAULT 0,
    master_addr TEXT NOT NULL DEFAULT '127.0.0.1',
    master_port INTEGER,
    token TEXT,
    launches INTEGER NOT NULL DEFAULT 0,
    last_metrics TEXT,
    exit_code INTEGER,
    message TEXT
);
CREATE INDEX IF NOT EXISTS runs_status ON runs(status);
"""

# children started by this process, by pid: polling them gives the exit code and reaps the zombie
_CHILDREN: dict[int, subprocess.Popen] = {}
_CHILDREN_LOCK = threading.Lock()


@dataclass
class Run:
    """One row of the registry; ``config``, ``command`` and ``last_metrics`` are decoded from JSON."""

    id: int
    name: str
    created: float
    config: dict[str, Any]
    status: str
    pid: int | None
    pgid: int | None
    started: float | None
    ended: float | None
    run_dir: str
    command: list[str] = field(default_factory=list)
    nproc_per_node: int = 1
    nnodes: int = 1
    node_rank: int = 0
    master_addr: str = "127.0.0.1"
    master_port: int | None = None
    token: str | None = None
    launches: int = 0
    last_metrics: dict[str, Any] = field(default_factory=dict)
    exit_code: int | None = None
    message: str | None = None

    @property
    def path(self) -> Path:
        return Path(self.run_dir)

    @property
    def world_size(self) -> int:
        return self.nproc_per_node * self.nnodes

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (times as epoch seconds), as ``runs show --json`` prints them."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _row_to_run(row: sqlite3.Row) -> Run:
    d = dict(row)
    d["config"] = json.loads(d["config"] or "{}")
    d["command"] = json.loads(d["command"] or "[]")
    d["last_metrics"] = json.loads(d["last_metrics"] or "{}")
    return Run(**d)


# ---------------------------------------------------------------------------------------------
# metrics.jsonl


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Every complete JSON line of a ``metrics.jsonl``; a partial or corrupt line (being written) is skipped."""
    p = Path(path)
    if not p.is_file():
        return []
    out = []
    with open(p, "rb") as fh:
        for line in fh:
            if not line.endswith(b"\n"):  # the trainer is half-way through writing it
                break
            try:
                rec = json.loads(line)
            except (ValueError, UnicodeDecodeError):
                continue
            if isinstance(rec, dict):
                out.append(rec)
    return out


def _tail_bytes(path: Path, n: int) -> bytes:
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        fh.seek(max(0, size - n))
        return fh.read()


def summarize_metrics(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The latest training values, the latest accuracy per verification target and whether "done" was seen."""
    out: dict[str, Any] = {}
    val: dict[str, Any] = {}
    for rec in records:
        kind = rec.get("kind")
        if kind == "train":
            out.update({k: rec[k] for k in ("step", "epoch", "loss", "lr", "samples_per_sec", "eta_s", "time")
                        if k in rec})
        elif kind == "val" and "target" in rec:
            val[str(rec["target"])] = {k: rec.get(k) for k in ("step", "acc", "std", "threshold")}
        elif kind == "done":
            out["done"] = True
            if "step" in rec:
                out["step"] = rec["step"]
    if val:
        out["val"] = val
    return out


def _last_metrics(run_dir: Path) -> dict[str, Any]:
    """:func:`summarize_metrics` of the end of metrics.jsonl (the last 256 KiB: cheap on long runs)."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return {}
    data = _tail_bytes(path, 256 * 1024)
    lines = data.split(b"\n")
    if path.stat().st_size > len(data):
        lines = lines[1:]  # the first one is cut
    records = []
    for line in lines[:-1]:  # the last piece has no newline yet (or is empty)
        try:
            rec = json.loads(line)
        except (ValueError, UnicodeDecodeError):
            continue
        if isinstance(rec, dict):
            records.append(rec)
    return summarize_metrics(records)


def tail_lines(path: str | os.PathLike, lines: int = 50) -> str:
    """The last ``lines`` lines of a text file ("" if it does not exist)."""
    p = Path(path)
    if not p.is_file() or lines <= 0:
        return ""
    size, chunk = p.stat().st_size, 64 * 1024
    while True:
        data = _tail_bytes(p, chunk)
        if data.count(b"\n") > lines or chunk >= size:
            break
        chunk *= 4
    text = data.decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])


# ---------------------------------------------------------------------------------------------
# processes


_PROC = Path("/proc/self/environ").exists()  # Linux: processes can be found by their environment


def _proc_state(pid: int) -> str | None:
    """The state letter of /proc/PID/stat (``Z`` for a zombie), None if gone or not Linux."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read().decode(errors="replace")
    except OSError:
        return None
    return stat[stat.rfind(")") + 2:][:1] or None


def _pid_alive(pid: int | None) -> bool:
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
    return _proc_state(pid) not in ("Z", "X")


def _has_token(pid: int, token: str | None) -> bool | None:
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


def _tagged_pids(token: str | None) -> list[int]:
    """Live processes whose environment carries ``token`` (every rank of a run, even re-parented ones)."""
    if not token or not _PROC:
        return []
    out = []
    me = os.getpid()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        pid = int(name)
        if _has_token(pid, token) and _proc_state(pid) not in ("Z", "X", None):
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


def run_processes(run: Run) -> list[int]:
    """Every live process of ``run`` on this machine (Linux: every process carrying the run's token, wherever
    torchrun put it; elsewhere: the process group, while it exists).

    Membership is decided by the token, never by the group number alone: once a run's group is gone its
    number may belong to somebody else's processes.
    """
    if _PROC:
        return _tagged_pids(run.token)
    return [run.pgid] if run.pgid and _group_exists(run.pgid) else []


def _leader_alive(run: Run) -> bool:
    """Is the run's torchrun still running (and is that pid still the run, not a recycled one)?"""
    if not run.pid or not _pid_alive(run.pid):
        return False
    return _has_token(run.pid, run.token) is not False


def _signal_run(run: Run, sig: int) -> None:
    """``sig`` to the launcher's process group (while torchrun leads it) and to every process of the run."""
    if _leader_alive(run) or not _PROC:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(run.pgid, sig)
    for pid in _tagged_pids(run.token):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _reap(pid: int | None) -> int | None:
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


def _wait_gone(run: Run, timeout: float, pids: list[int] | tuple[int, ...] = ()) -> bool:
    """Poll until no process of ``run`` is left (the launcher reaped if it is our child); True if none is.

    ``pids`` seen earlier are waited for by pid too: a process being torn down has lost its environment (so
    its token) while it still exists.
    """
    deadline = time.monotonic() + timeout
    while True:
        leader = _leader_alive(run)
        if not leader and not run_processes(run) and not any(_proc_state(p) not in ("Z", "X", None) for p in pids):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def _used_port(run: Run) -> int:
    """The rendezvous port of the run's last start (the requested one, else torchrun's default 29500)."""
    cmd = run.command
    if "--master_port" in cmd[:-1]:
        with contextlib.suppress(ValueError):
            return int(cmd[cmd.index("--master_port") + 1])
    return run.master_port if run.master_port is not None else 29500


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (for a single-node rendezvous)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host if host in ("127.0.0.1", "localhost", "0.0.0.0") else "", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------------------------------------
# configs


def _trainer():
    """The trainer module (load_config, TrainConfig, config_errors); imported on first use (it pulls in torch)."""
    from . import train

    return train


def load_launch_config(config_or_preset: str | os.PathLike | Mapping[str, Any]) -> dict[str, Any]:
    """A config as a plain dict from a preset name (``list_presets()``), a JSON file or a dict.

    Only the JSON is read here; :func:`validate_config` checks it (``launch`` does so before anything starts).
    """
    if isinstance(config_or_preset, Mapping):
        return dict(config_or_preset)
    text = os.fspath(config_or_preset)
    trainer = _trainer()
    p = Path(text).expanduser()
    if not p.is_file():
        if text in trainer.list_presets():
            return json.loads((trainer.CONFIG_DIR / f"{text}.json").read_text(encoding="utf-8"))
        raise FileNotFoundError(f"config {text!r} is neither a file nor a preset "
                                f"({', '.join(trainer.list_presets())})")
    try:
        cfg = json.loads(p.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"config {text}: not valid JSON ({exc})") from None
    if not isinstance(cfg, dict):
        raise ValueError(f"config {text}: expected a JSON object, got {type(cfg).__name__}")
    return cfg


def validate_config(config: Mapping[str, Any], output: str | os.PathLike) -> dict[str, Any]:
    """Check a config before anything starts; return it with confined absolute paths and ``output`` set.

    ``data.root`` and every verification set must lie inside :func:`settings.data_roots` (after ``..`` and
    symlinks are resolved); the output is the run directory the registry chose.  Then the trainer's own
    checks run (``TrainConfig.from_dict`` + ``config_errors`` with the data paths checked), so a typo, a value
    out of range or missing data is reported here, not in a log after the launch.  Raises ValueError.
    """
    if not isinstance(config, Mapping):
        raise ValueError(f"a config is a JSON object, got {type(config).__name__}")
    try:
        cfg = json.loads(json.dumps(dict(config)))  # a deep copy, and only what JSON can hold
    except (TypeError, ValueError) as exc:
        raise ValueError(f"the config cannot be written as JSON: {exc}") from None
    trainer = _trainer()
    roots = settings.data_roots()
    data = cfg.get("data")
    root = None
    if isinstance(data, dict) and isinstance(data.get("root"), str) and data["root"].strip():
        data["root"] = root = str(settings.confine(data["root"], roots, what="data.root"))
    targets = cfg.get("val_targets")
    if isinstance(targets, list):
        checked = []
        for t in targets:
            if isinstance(t, str) and t and (root is not None or _names_a_file(t)):
                t = str(settings.confine(trainer.resolve_val_target(t, root), roots, what=f"verification set {t!r}"))
            checked.append(t)
        cfg["val_targets"] = checked
    cfg["output"] = str(output)
    try:
        tc = trainer.TrainConfig.from_dict(cfg)
    except TypeError as exc:
        raise ValueError(f"config: {exc}") from None
    errors = trainer.config_errors(tc, check_paths=True)
    if errors:
        raise ValueError("config: " + "; ".join(errors))
    return cfg


def _names_a_file(target: str) -> bool:
    """A verification target given as a path (else a name such as ``lfw``, looked up as <data.root>/lfw.bin)."""
    return target.endswith(".bin") or "/" in target or os.sep in target


def _check_launch(nproc_per_node: Any, nnodes: Any, node_rank: Any, master_addr: Any, master_port: Any) -> None:
    def whole(name: str, v: Any, lo: int, hi: int) -> int:
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise ValueError(f"{name} must be a whole number from {lo} to {hi}, got {v!r}")
        return v

    whole("nproc_per_node", nproc_per_node, 1, MAX_PROCS_PER_NODE)
    whole("nnodes", nnodes, 1, MAX_NODES)
    whole("node_rank", node_rank, 0, nnodes - 1)
    if master_port is not None:
        whole("master_port", master_port, 1, 65535)
    if not isinstance(master_addr, str) or not _HOST_RE.match(master_addr):
        raise ValueError(f"master_addr must be a host name or IP address, got {master_addr!r}")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._]+", "-", text).strip("-.")[:48] or "run"


# ---------------------------------------------------------------------------------------------
# the registry


class Registry:
    """Runs in a SQLite file (``settings.registry_path()`` by default); survives restarts of the app.

    ``module`` is the trainer's module (tests may point it elsewhere); ``grace`` the seconds Stop waits after
    SIGTERM before SIGKILL.
    """

    def __init__(self, path: str | os.PathLike | None = None, runs_root: str | os.PathLike | None = None,
                 module: str = TRAINER_MODULE, grace: float = 10.0) -> None:
        self.path = Path(path) if path is not None else settings.registry_path()
        self.runs_root = Path(runs_root).resolve() if runs_root is not None else settings.runs_root()
        self.module = module
        self.grace = grace
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._db() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)

    @contextlib.contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        # one short-lived connection per operation: safe across Streamlit's script threads and processes
        db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        db.row_factory = sqlite3.Row
        try:
            db.execute("PRAGMA busy_timeout=30000")
            yield db
        finally:
            db.close()

    def _update(self, run_id: int, **values: Any) -> None:
        for k in ("config", "command", "last_metrics"):
            if k in values and not isinstance(values[k], str | type(None)):
                values[k] = json.dumps(values[k])
        cols = ", ".join(f"{k} = ?" for k in values)
        with self._db() as db:
            db.execute(f"UPDATE runs SET {cols} WHERE id = ?", (*values.values(), run_id))

    # -- reading -------------------------------------------------------------------------------

    def get(self, run_id: int) -> Run:
        with self._db() as db:
            row = db.execute("SELECT * FROM runs WHERE id = ?", (int(run_id),)).fetchone()
        if row is None:
            raise ValueError(f"no run with id {run_id} in {self.path}")
        return _row_to_run(row)

    def list(self, reconcile: bool = True) -> list[Run]:
        """All runs, newest first (reconciled with the operating system first)."""
        if reconcile:
            self.reconcile()
        with self._db() as db:
            rows = db.execute("SELECT * FROM runs ORDER BY id DESC").fetchall()
        return [_row_to_run(r) for r in rows]

    def metrics(self, run_id: int) -> list[dict[str, Any]]:
        return read_metrics(self.get(run_id).path / "metrics.jsonl")

    def log_tail(self, run_id: int, lines: int = 50) -> str:
        """The end of train.log, or of launcher.log (torchrun's output) when the trainer wrote nothing."""
        run = self.get(run_id)
        text = tail_lines(run.path / "train.log", lines)
        return text or tail_lines(run.path / "launcher.log", lines)

    def launcher_log_tail(self, run_id: int, lines: int = 50) -> str:
        return tail_lines(self.get(run_id).path / "launcher.log", lines)

    # -- starting --------------------------------------------------------------------------------

    def launch(self, config: Mapping[str, Any], nproc_per_node: int = 1, nnodes: int = 1, node_rank: int = 0,
               master_addr: str = "127.0.0.1", master_port: int | None = None, name: str | None = None) -> int:
        """Validate, create the run directory, write config.json and start torchrun; return the run's id.

        Every check runs before any process starts; a bad value raises ValueError with a message.
        """
        _check_launch(nproc_per_node, nnodes, node_rank, master_addr, master_port)
        if nnodes > 1 and master_port is None:
            master_port = 29500  # torchrun's default: the other nodes must be told the same port
        self.runs_root.mkdir(parents=True, exist_ok=True)
        validate_config(config, self.runs_root / "(new run)")  # every value and path, before anything exists
        name = str(name or config.get("name") or self._default_name(config))[:200]
        self.runs_root.mkdir(parents=True, exist_ok=True)
        with self._db() as db:
            cur = db.execute(
                "INSERT INTO runs (name, created, config, status, run_dir, nproc_per_node, nnodes, node_rank, "
                "master_addr, master_port) VALUES (?, ?, ?, 'queued', '', ?, ?, ?, ?, ?)",
                (name, time.time(), json.dumps(dict(config)), nproc_per_node, nnodes, node_rank, master_addr,
                 master_port))
            run_id = int(cur.lastrowid)
        run_dir = self.runs_root / f"{run_id:05d}-{_slug(name)}"
        try:
            run_dir.mkdir(parents=True, exist_ok=False)
            cfg = validate_config(config, run_dir)  # again: the output is now known
            (run_dir / "config.json").write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")
            self._update(run_id, run_dir=str(run_dir), config=cfg)
        except Exception as exc:
            self._update(run_id, run_dir=str(run_dir), status="failed", ended=time.time(),
                         message=f"not started: {exc}")
            raise
        self._start(self.get(run_id), resume=False)
        return run_id

    @staticmethod
    def _default_name(config: Mapping[str, Any]) -> str:
        parts = [str(config[k]) for k in ("network", "loss") if config.get(k)]
        return "-".join(parts) or "run"

    def _command(self, run: Run, resume: bool, node_rank: int | None = None, port: int | None = None) -> list[str]:
        """torchrun's argument list; ``port`` defaults to the one the run last used (or asked for)."""
        port = port if port is not None else _used_port(run)
        cmd = [sys.executable, "-m", "torch.distributed.run",
               "--nproc_per_node", str(run.nproc_per_node), "--nnodes", str(run.nnodes),
               "--node_rank", str(run.node_rank if node_rank is None else node_rank),
               "--master_addr", run.master_addr, "--master_port", str(port),
               "-m", self.module, "--config", str(run.path / "config.json")]
        return [*cmd, "--resume"] if resume else cmd

    def _start(self, run: Run, resume: bool) -> None:
        # master_port None (single node only): a port that is free now, chosen again at every start
        port = run.master_port if run.master_port is not None else free_port(run.master_addr)
        cmd = self._command(run, resume, port=port)
        token = f"{run.id}-{uuid.uuid4().hex}"
        env = dict(os.environ)
        env[TOKEN_ENV] = token
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH")) if p)
        env.setdefault("OMP_NUM_THREADS", "1")
        env["PYTHONUNBUFFERED"] = "1"
        log_path = run.path / "launcher.log"
        try:
            with open(log_path, "ab") as log:
                stamp = time.strftime("%Y-%m-%d %H:%M:%S")
                log.write(f"# {stamp} {'resume' if resume else 'launch'}: {shlex.join(cmd)}\n".encode())
                log.flush()
                proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        cwd=str(PROJECT_ROOT), env=env, start_new_session=True, close_fds=True)
        except OSError as exc:
            self._update(run.id, status="failed", ended=time.time(), message=f"could not start torchrun: {exc}")
            raise ValueError(f"could not start torchrun: {exc}") from None
        with _CHILDREN_LOCK:
            _CHILDREN[proc.pid] = proc
        self._update(run.id, status="running", pid=proc.pid, pgid=proc.pid, token=token, command=cmd,
                     started=time.time(), ended=None, exit_code=None, launches=run.launches + 1,
                     message="resumed from the latest checkpoint" if resume else None)

    def resume(self, run_id: int) -> Run:
        """Start a run that ended again, in the same run directory, with ``--resume`` (latest checkpoint)."""
        self.reconcile()
        run = self.get(run_id)
        if run.status in ("running", "queued"):
            raise ValueError(f"run {run_id} is {run.status}; stop it before resuming")
        if not (run.path / "config.json").is_file():
            raise FileNotFoundError(f"run {run_id}: {run.path / 'config.json'} is missing, nothing to resume")
        latest = run.path / "checkpoints" / "latest.json"
        if latest.is_file():
            try:
                info = json.loads(latest.read_text(encoding="utf-8"))
            except ValueError:
                info = {}
            saved = info.get("world_size")
            if saved is not None and int(saved) != run.world_size:
                raise ValueError(f"run {run_id}: the checkpoint was saved by {saved} ranks but the run has "
                                 f"{run.world_size}; Partial FC shards need the same number of ranks")
        self._start(run, resume=True)
        return self.get(run_id)

    # -- stopping and watching -----------------------------------------------------------------

    def stop(self, run_id: int, grace: float | None = None) -> Run:
        """SIGTERM to the run's process group (torchrun passes it to every rank), SIGKILL to whatever is left
        after ``grace`` seconds, including ranks in sessions of their own; then mark the run stopped."""
        self.reconcile()  # a run that ended by itself is finished or failed, not stopped
        run = self.get(run_id)
        if run.status not in ("running", "queued"):
            raise ValueError(f"run {run_id} is not running (status {run.status})")
        grace = self.grace if grace is None else grace
        pids = run_processes(run)
        _signal_run_group_only(run, signal.SIGTERM)
        if not _wait_gone(run, grace, pids):
            pids = sorted(set(pids) | set(run_processes(run)))
            _signal_run(run, signal.SIGKILL)
            _wait_gone(run, 10.0, pids)
        code = _reap(run.pid)
        self._update(run.id, status="stopped", ended=time.time(), exit_code=code,
                     last_metrics=_last_metrics(run.path), message="stopped by the user")
        return self.get(run_id)

    def reconcile(self) -> list[int]:
        """Bring every running run in line with the operating system; return the ids whose status changed.

        A run whose torchrun ended is ``finished`` if metrics.jsonl has its "done" line or torchrun exited
        with 0, else ``failed`` (its logs stay in the run directory); ranks left behind are killed.  Running
        runs get their last_metrics refreshed.
        """
        changed = []
        with self._db() as db:
            rows = db.execute("SELECT * FROM runs WHERE status IN ('running', 'queued')").fetchall()
        for run in map(_row_to_run, rows):
            if run.status == "queued":
                if run.pid is None and time.time() - run.created > 300:
                    self._update(run.id, status="failed", ended=time.time(), message="never started")
                    changed.append(run.id)
                continue
            metrics = _last_metrics(run.path)
            if _leader_alive(run):
                self._update(run.id, last_metrics=metrics)
                continue
            stray = run_processes(run)
            if stray:  # torchrun is gone: ranks it left behind would keep writing into the run directory
                _signal_run(run, signal.SIGKILL)
                _wait_gone(run, 10.0, stray)
            code = _reap(run.pid)
            if metrics.get("done") or code == 0:
                status, message = "finished", None
            else:
                why = f"exit code {code}" if code is not None and code >= 0 else (
                    f"killed by signal {-code}" if code is not None else "its process is gone")
                status = "failed"
                message = f"ended without finishing ({why}); see train.log and launcher.log in {run.run_dir}"
                if stray:
                    message += f"; killed {len(stray)} leftover rank process(es)"
            self._update(run.id, status=status, ended=time.time(), exit_code=code, last_metrics=metrics,
                         message=message)
            changed.append(run.id)
        return changed

    def wait(self, run_id: int, timeout: float | None = None, poll: float = 0.2) -> Run:
        """Block until the run is no longer running (reconciling as it goes); return it."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self.reconcile()
            run = self.get(run_id)
            if run.status not in ("running", "queued"):
                return run
            if deadline is not None and time.monotonic() >= deadline:
                return run
            time.sleep(poll)

    # -- commands for the user -------------------------------------------------------------------

    def command_line(self, run_id: int, node_rank: int | None = None, resume: bool = False) -> str:
        """The exact shell command that (re)starts the run, or node ``node_rank`` of a multi-node run."""
        run = self.get(run_id)
        if node_rank is not None and not 0 <= int(node_rank) < run.nnodes:
            raise ValueError(f"node_rank must be from 0 to {run.nnodes - 1}, got {node_rank}")
        cmd = self._command(run, resume, node_rank)
        return f"cd {shlex.quote(str(PROJECT_ROOT))} && {shlex.join(cmd)}"

    def slurm_script(self, run_id: int, partition: str | None = None, time_limit: str = "24:00:00",
                     cpus_per_task: int = 8, gpus_per_node: int | None = None, python: str | None = None,
                     resume: bool = False, port: int = 29500) -> str:
        """An ``sbatch`` script: one ``srun`` task per node, each running torchrun with a c10d rendezvous on the
        job's first node (``--rdzv_endpoint HEAD:PORT``), so no node needs its rank spelled out."""
        run = self.get(run_id)
        if partition is not None and not re.fullmatch(r"[A-Za-z0-9_.,-]+", partition):
            raise ValueError(f"partition must be a Slurm partition name, got {partition!r}")
        if not re.fullmatch(r"(\d+-)?\d{1,3}(:\d{2}){0,2}", time_limit):
            raise ValueError(f"time limit must look like 24:00:00 or 2-00:00:00, got {time_limit!r}")
        _check_launch(run.nproc_per_node, run.nnodes, 0, "127.0.0.1", port)
        gpus = run.nproc_per_node if gpus_per_node is None else int(gpus_per_node)
        q = shlex.quote
        py = q(python or sys.executable)
        lines = [
            "#!/bin/bash",
            f"#SBATCH --job-name={_slug('arcface-' + run.name)}",
            f"#SBATCH --nodes={run.nnodes}",
            "#SBATCH --ntasks-per-node=1",
            f"#SBATCH --gpus-per-node={gpus}" if gpus > 0 else "# (CPU only: no --gpus-per-node)",
            f"#SBATCH --cpus-per-task={int(cpus_per_task)}",
            f"#SBATCH --time={time_limit}",
            f"#SBATCH --output={run.path / 'slurm-%j.out'}",
        ]
        if partition:
            lines.append(f"#SBATCH --partition={partition}")
        lines += [
            "",
            "set -euo pipefail",
            f"cd {q(str(PROJECT_ROOT))}",
            "# the rendezvous runs on the first node of the allocation",
            'head_node=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)',
            f"export PYTHONPATH={q(str(PROJECT_ROOT))}${{PYTHONPATH:+:$PYTHONPATH}}",
            "",
            f"srun --kill-on-bad-exit=1 {py} -m torch.distributed.run \\",
            f"    --nnodes {run.nnodes} --nproc_per_node {run.nproc_per_node} \\",
            f'    --rdzv_id "$SLURM_JOB_ID" --rdzv_backend c10d --rdzv_endpoint "$head_node:{port}" \\',
            f"    -m {self.module} --config {q(str(run.path / 'config.json'))}" + (" --resume" if resume else ""),
            "",
        ]
        return "\n".join(lines)


def _signal_run_group_only(run: Run, sig: int) -> None:
    """Signal the launcher's process group only: torchrun forwards SIGTERM to its ranks and waits for them."""
    if run.pgid and run.pgid > 1 and _leader_alive(run):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(run.pgid, sig)


def reconcile_existing(path: str | os.PathLike | None = None) -> list[int]:
    """Reconcile the registry at app start, if there is one (never creates the file); the changed run ids.

    For app.py: runs whose processes died while the app was down become failed (or finished), and any rank
    left behind by a dead torchrun is killed.
    """
    p = Path(path) if path is not None else settings.registry_path()
    if not p.is_file():
        return []
    return Registry(p).reconcile()


# ---------------------------------------------------------------------------------------------
# data preparation inside the data roots (the page's helpers; the CLI is ``arcface-viz data``)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def _is_image_folder(path: Path, subdirs: list[str]) -> bool:
    """One sub-folder per identity: the first sub-folder holds images (only a few entries are looked at)."""
    if not subdirs:
        return False
    with contextlib.suppress(OSError), os.scandir(path / subdirs[0]) as it:
        for k, entry in enumerate(it):
            if entry.name.lower().endswith(IMAGE_EXTENSIONS):
                return True
            if k >= 50:
                break
    return False


def find_datasets(roots: list[Path] | None = None, max_depth: int = 3, max_dirs: int = 2000) -> dict[str, list[Path]]:
    """Data sets under the data roots: ``rec`` folders (train.rec + train.idx), image ``folder``s (one
    sub-folder of images per identity) and verification ``bin`` files.  Image folders are not descended
    into and at most ``max_dirs`` folders are listed, so a root holding millions of images stays cheap."""
    roots = settings.data_roots() if roots is None else roots
    found: dict[str, list[Path]] = {"rec": [], "folder": [], "bin": []}
    visited = 0
    for root in roots:
        if not root.is_dir():
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            visited += 1
            here = Path(dirpath)
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            if "train.rec" in filenames and "train.idx" in filenames:
                found["rec"].append(here)
            found["bin"] += [here / f for f in sorted(filenames) if f.endswith(".bin")]
            if _is_image_folder(here, dirnames):
                found["folder"].append(here)
                dirnames[:] = []
            if len(here.relative_to(root).parts) >= max_depth or visited >= max_dirs:
                dirnames[:] = []
    return found


def prepare_synthetic(out: str | os.PathLike, identities: int = 20, images_per_identity: int = 10, seed: int = 0,
                      val_identities: int = 10, val_pairs: int = 40) -> dict[str, Any]:
    """``data make-synthetic`` confined to the data roots: RecordIO + image folder + ``val.bin``."""
    from toy_data.faces import make_synthetic_faces, make_verification_bin

    roots = settings.data_roots()
    out_dir = settings.confine(out, roots, what="output folder", base=roots[0])
    info = make_synthetic_faces(out_dir, identities, images_per_identity, seed, ("rec", "folder"))
    n = make_verification_bin(out_dir / "val.bin", val_identities, val_pairs, seed) if val_pairs else 0
    return {"out": str(out_dir), "identities": info.num_identities, "images": info.num_images,
            "folder": str(info.folder), "val_bin": str(out_dir / "val.bin") if n else None, "val_pairs": n}


def prepare_rec(folder: str | os.PathLike, out: str | os.PathLike) -> dict[str, Any]:
    """``data make-rec`` confined to the data roots: image folder -> train.rec / train.idx / property."""
    from toy_data.faces import build_rec_from_folder

    roots = settings.data_roots()
    src = settings.confine(folder, roots, what="image folder", base=roots[0])
    dst = settings.confine(out, roots, what="output folder", base=roots[0])
    if not src.is_dir():
        raise FileNotFoundError(f"image folder not found: {src}")
    info = build_rec_from_folder(src, dst)
    return {"out": str(dst), "images": info.num_images, "identities": info.num_classes}


def prepare_bin(pairs: str | os.PathLike, out: str | os.PathLike) -> dict[str, Any]:
    """``data make-bin`` confined to the data roots; every image the pairs file names is confined as well."""
    from toy_data.faces import build_bin_from_pairs, read_pairs_file

    roots = settings.data_roots()
    pairs_file = settings.confine(pairs, roots, what="pairs file", base=roots[0])
    dst = settings.confine(out, roots, what="output .bin", base=roots[0])
    if dst.suffix != ".bin":
        raise ValueError(f"output .bin: expected a file name ending in .bin, got {dst.name!r}")
    triples = [(settings.confine(a, roots, what="image in the pairs file"),
                settings.confine(b, roots, what="image in the pairs file"), same)
               for a, b, same in read_pairs_file(pairs_file)]
    n = build_bin_from_pairs(triples, dst)
    return {"out": str(dst), "pairs": n}


# ---------------------------------------------------------------------------------------------
# curves of a run (the page draws them live; numbers from metrics.jsonl)


def metric_series(records: list[dict[str, Any]]) -> dict[str, dict[str, list[float]]]:
    """Columns for the curves: ``train`` (step, loss, lr, samples_per_sec, epoch) and one ``val:TARGET``
    (step, acc) per verification set.  Should a step appear twice, the later record wins."""
    train: dict[int, dict[str, Any]] = {}
    val: dict[str, dict[int, float]] = {}
    for rec in records:
        step = rec.get("step")
        if not isinstance(step, int | float):
            continue
        if rec.get("kind") == "train":
            train[int(step)] = rec
        elif rec.get("kind") == "val" and isinstance(rec.get("acc"), int | float):
            val.setdefault(str(rec.get("target")), {})[int(step)] = float(rec["acc"])
    steps = sorted(train)
    out: dict[str, dict[str, list[float]]] = {
        "train": {"step": steps, **{k: [_num(train[s].get(k)) for s in steps]
                                    for k in ("loss", "lr", "samples_per_sec", "epoch")}}}
    for target, by_step in sorted(val.items()):
        s = sorted(by_step)
        out[f"val:{target}"] = {"step": s, "acc": [by_step[k] for k in s]}
    return out


def _num(v: Any) -> float:
    return float(v) if isinstance(v, int | float) else float("nan")


def metrics_figure(records: list[dict[str, Any]], title: str = ""):
    """Four panels over the training step: loss, samples/s, learning rate and verification accuracy (%)."""
    from plotly.subplots import make_subplots

    series = metric_series(records)
    tr = series["train"]
    fig = make_subplots(rows=2, cols=2, subplot_titles=("loss", "speed (samples/s)", "learning rate",
                                                        "verification accuracy (%)"),
                        horizontal_spacing=0.08, vertical_spacing=0.16)
    fig.add_scatter(x=tr["step"], y=tr["loss"], mode="lines", name="loss", row=1, col=1)
    fig.add_scatter(x=tr["step"], y=tr["samples_per_sec"], mode="lines", name="samples/s", row=1, col=2)
    fig.add_scatter(x=tr["step"], y=tr["lr"], mode="lines", name="lr", row=2, col=1)
    for key, s in series.items():
        if key.startswith("val:"):
            fig.add_scatter(x=s["step"], y=[100 * a for a in s["acc"]], mode="lines+markers", name=key[4:],
                            row=2, col=2)
    for c in (1, 2):
        fig.update_xaxes(title_text="step", row=2, col=c)
    fig.update_yaxes(range=[0, 100.5], row=2, col=2)
    fig.update_layout(title=title or None, height=560, margin=dict(l=40, r=20, t=60, b=40), legend_orientation="h")
    return fig


# ---------------------------------------------------------------------------------------------
# the launch form's parameters (one Spec: widgets, validation, URL and the config written to disk)


def trainer_presets() -> list[str]:
    """The shipped config presets (``arcface_viz/configs/*.json``)."""
    return list(_trainer().list_presets())


def launch_spec(presets: list[str] | None = None, datasets: dict[str, list[Path]] | None = None,
                default_preset: str = "tiny_cpu"):
    """The launch form as a :class:`~arcface_viz.params.Spec`: names follow the config's keys
    (``data_format``/``data_root``/``num_classes``/``num_images`` are ``data.*``), plus torchrun's launch values.

    ``datasets`` (from :func:`find_datasets`) turns data roots and ``.bin`` files into choices, so the page
    only ever offers paths inside the data roots.  Defaults come from ``default_preset``.
    """
    from ..params import LOSS_SPEC, Param, Spec
    from .backbones import BACKBONES

    trainer = _trainer()
    presets = list(trainer.list_presets() if presets is None else presets) or ["custom"]
    preset = default_preset if default_preset in presets else presets[0]
    base = load_launch_config(preset) if preset != "custom" else {}
    v = values_from_config(base)
    found = datasets or {"rec": [], "folder": [], "bin": []}
    roots = ("", *(str(p) for p in found.get("rec", [])), *(str(p) for p in found.get("folder", [])))
    root_labels = {"": "(none: synthetic data)", **{str(p): f"RecordIO: {p}" for p in found.get("rec", [])},
                   **{str(p): f"image folder: {p}" for p in found.get("folder", [])}}
    bins = tuple(str(p) for p in found.get("bin", []))
    loss = LOSS_SPEC.subset(("loss", "s", "m1", "m2", "m3", "easy_margin", "margin", "m", "lam"))
    loss = loss.with_defaults(**{k: v[k] for k in loss.names if k in v})
    return Spec((
        Param("preset", "choice", preset, "Preset", "Start from a shipped config (arcface_viz/configs); picking "
              "one loads its values.", choices=tuple(presets)),
        Param("network", "choice", v.get("network", "iresnet50"), "Backbone",
              "IResNet (the paper's ResNet with the improved residual unit) or MobileFaceNet; 112×112 in.",
              choices=BACKBONES),
        Param("embedding_size", "int", v.get("embedding_size", 512), "embedding size",
              "Dimension of the BN-Dropout-FC-BN output (512 in the paper).", min=2),
        *loss,
        Param("sample_rate", "float", float(v.get("sample_rate", 1.0)), "Partial FC sample rate",
              "Fraction of negative class centres used per step (1 = all; insightface's PFC-0.1 is 0.1).",
              min=0.05, max=1.0, step=0.05, format="%.2f"),
        Param("amp", "choice", v.get("amp", "none"), "mixed precision", "fp16 (with a gradient scaler) or bf16.",
              choices=trainer.AMP_MODES),
        Param("batch_size", "int", v.get("batch_size", 128), "batch size per process",
              "Samples per GPU (process) and step; insightface uses 128.", min=2),
        Param("optimizer", "choice", v.get("optimizer", "sgd"), "optimizer", "SGD (momentum 0.9) or AdamW.",
              choices=trainer.OPTIMIZERS),
        Param("lr", "float", float(v.get("lr", 0.1)), "learning rate", "Peak learning rate after warm-up (0.1 "
              "for SGD with 8×128 in insightface).", min=1e-7, step=0.001, format="%.5f"),
        Param("num_epoch", "int", v.get("num_epoch", 20), "epochs", "Passes over the training set.", min=1),
        Param("warmup_epoch", "float", float(v.get("warmup_epoch", 0.0)), "warm-up epochs",
              "Linear warm-up before the polynomial decay; must be below the epochs.", min=0.0, step=0.5,
              format="%.2f"),
        Param("max_steps", "int", v.get("max_steps", 0), "max steps (0 = all epochs)",
              "Stop after this many steps (the lr schedule decays over them).", min=0),
        Param("data_format", "choice", v.get("data_format", "synthetic"), "data format",
              "insightface RecordIO (train.rec/idx/property), an image folder (one sub-folder per identity) or "
              "random tensors for speed tests.", choices=trainer.DATA_FORMATS),
        Param("data_root", "choice", v.get("data_root") if v.get("data_root") in roots else "", "data set",
              "Data sets found in the data roots (make one on the Prepare data tab).", choices=roots,
              labels=root_labels),
        Param("num_classes", "int", v.get("num_classes", 0), "classes (synthetic; 0 = from the data)",
              "Identity count: required for synthetic data, read from `property` for RecordIO.", min=0),
        Param("num_images", "int", v.get("num_images", 0), "images (synthetic)", "Size of the synthetic set.",
              min=0),
        Param("val_targets", "multi", tuple(t for t in v.get("val_targets", ()) if t in bins),
              "verification sets", "LFW-protocol accuracy with flip test on these .bin sets.", choices=bins),
        Param("val_every", "int", v.get("val_every", 2000), "verify every (steps)", min=1),
        Param("checkpoint_every", "int", v.get("checkpoint_every", 2000), "checkpoint every (steps)",
              "Resume loses at most this many steps.", min=1),
        Param("log_every", "int", v.get("log_every", 50), "log every (steps)", min=1),
        Param("num_workers", "int", v.get("num_workers", 2), "data loader workers", min=0),
        Param("seed", "int", v.get("seed", 2048), "seed", min=0),
        Param("nproc_per_node", "int", 1, "processes per node", "GPUs to use on each machine (torchrun "
              "--nproc_per_node); on CPU, processes.", min=1),
        Param("nnodes", "int", 1, "nodes", "Machines (torchrun --nnodes); start the others with the command "
              "lines shown on the Runs tab.", min=1),
        Param("node_rank", "int", 0, "this node's rank", "0 for the machine that hosts the rendezvous.", min=0),
        Param("master_port", "int", 0, "master port (0 = a free one)", "torchrun --master_port; 29500 when "
              "several nodes are used and it is 0.", min=0),
    ))


_DATA_KEYS = {"data_format": "format", "data_root": "root", "num_classes": "num_classes", "num_images": "num_images"}
_LOSS_EXTRA = ("easy_margin", "margin", "m", "lam")
_PLAIN_KEYS = ("network", "embedding_size", "sample_rate", "amp", "batch_size", "optimizer", "lr", "num_epoch",
               "warmup_epoch", "val_every", "checkpoint_every", "log_every", "num_workers", "seed")


def values_from_config(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The launch form's values for a config (the inverse of :func:`config_from_values` on the form's keys)."""
    out = {k: cfg[k] for k in (*_PLAIN_KEYS, "loss", "s", "m1", "m2", "m3") if cfg.get(k) is not None}
    out["max_steps"] = cfg.get("max_steps") or 0
    out.update({k: v for k, v in (cfg.get("loss_params") or {}).items() if k in _LOSS_EXTRA})
    data = cfg.get("data") or {}
    for key, dkey in _DATA_KEYS.items():
        value = data.get(dkey)
        out[key] = ("" if key == "data_root" else 0) if value is None else value
    out["val_targets"] = tuple(cfg.get("val_targets") or ())
    return out


def config_from_values(values: Mapping[str, Any], base: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A trainer config from the launch form: ``base`` (the preset's config by default) with the form's values.

    Loss parameters the chosen loss does not use are left out (s, m1, m2, m3 then take the loss's defaults).
    """
    from ..losses import LOSSES

    if base is None:
        preset = values.get("preset")
        base = load_launch_config(preset) if preset and preset != "custom" else {}
    cfg = json.loads(json.dumps(dict(base)))
    for k in _PLAIN_KEYS:
        if k in values:
            cfg[k] = values[k]
    loss = values.get("loss", cfg.get("loss", "arcface"))
    if loss not in LOSSES:
        raise ValueError(f"loss {loss!r} is unknown; choose one of {', '.join(LOSSES)}")
    used = LOSSES[loss].params
    cfg["loss"] = loss
    for k in ("s", "m1", "m2", "m3"):
        cfg[k] = values[k] if k in used and k in values else None
    cfg["loss_params"] = {k: values[k] for k in _LOSS_EXTRA if k in used and k in values}
    if "max_steps" in values:
        cfg["max_steps"] = int(values["max_steps"]) or None
    data = dict(cfg.get("data") or {})
    for key, dkey in _DATA_KEYS.items():
        if key in values:
            value = values[key]
            data[dkey] = None if value in ("", 0, None) else value
    cfg["data"] = data
    if "val_targets" in values:
        cfg["val_targets"] = list(values["val_targets"])
    return cfg
