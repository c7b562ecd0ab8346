"""The run registry of full-scale training runs (the backend of issue 6): a SQLite file of runs and their control.

A run is one training job of :mod:`arcface_viz.train` started under ``torchrun`` in its own process group::

    python -m torch.distributed.run --nproc_per_node P --nnodes N --node_rank R \\
        --master_addr A --master_port PORT -m arcface_viz.train --config RUN_DIR/config.json [--resume]

(insightface's arcface_torch convention, ``torchrun --nproc_per_node=8 train.py configs/X``).  Every run is a
row of a SQLite file (WAL mode, so the app, the CLI and several browser sessions can read and write it at
once) and a folder ``RUN_DIR`` that the trainer fills: ``config.json``, ``train.log``, ``metrics.jsonl``,
``checkpoints/``, ``model.pt`` and ``embeddings.npz``; the launcher adds ``launcher.log`` (torchrun's output).

What a launch checks first is in :mod:`.launch`; how a run's processes are found, signalled and reaped (the
app need not be their parent) in :mod:`.processes`; ``metrics.jsonl`` is read by :mod:`.metrics`.

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
import sqlite3
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import settings
from . import processes as P
from .files import tail_lines
from .launch import check_launch, validate_config
from .metrics import last_metrics, read_metrics

STATUSES = ("queued", "running", "finished", "failed", "stopped")
HELD_MESSAGE = "waiting in its grid's queue for a free slot"
TRAINER_MODULE = "arcface_viz.train"
PROJECT_ROOT = Path(__file__).resolve().parents[2]

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


def _used_port(run: Run) -> int:
    """The rendezvous port of the run's last start (the requested one, else torchrun's default 29500)."""
    cmd = run.command
    if "--master_port" in cmd[:-1]:
        with contextlib.suppress(ValueError):
            return int(cmd[cmd.index("--master_port") + 1])
    return run.master_port if run.master_port is not None else 29500


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
               master_addr: str = "127.0.0.1", master_port: int | None = None, name: str | None = None,
               hold: bool = False) -> int:
        """Validate, create the run directory, write config.json and start torchrun; return the run's id.

        Every check runs before any process starts; a bad value raises ValueError with a message.  ``hold``: leave
        the run queued, without a process (a grid's queue starts it later with :meth:`start`; see
        :mod:`.grid`).
        """
        check_launch(nproc_per_node=nproc_per_node, nnodes=nnodes, node_rank=node_rank, master_addr=master_addr,
                     master_port=master_port)
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
        if hold:
            self._update(run_id, message=HELD_MESSAGE)
        else:
            self._start(self.get(run_id), resume=False)
        return run_id

    def start(self, run_id: int) -> Run:
        """Start a held run (queued, never started): what a grid's queue does when a slot is free."""
        run = self.get(run_id)
        if run.status != "queued" or run.pid is not None:
            raise ValueError(f"run {run_id} is {run.status}, not waiting to start")
        self._start(run, resume=False)
        return self.get(run_id)

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
        port = run.master_port if run.master_port is not None else P.free_port(run.master_addr)
        cmd = self._command(run, resume, port=port)
        token = f"{run.id}-{uuid.uuid4().hex}"
        env = dict(os.environ)
        env[P.TOKEN_ENV] = token
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH")) if p)
        env.setdefault("OMP_NUM_THREADS", "1")
        env["PYTHONUNBUFFERED"] = "1"
        log_path = run.path / "launcher.log"
        try:
            with open(log_path, "ab") as log:
                stamp = time.strftime("%Y-%m-%d %H:%M:%S")
                log.write(f"# {stamp} {'resume' if resume else 'launch'}: {shlex.join(cmd)}\n".encode())
            proc = P.start(cmd, log_path, env, PROJECT_ROOT)
        except OSError as exc:
            self._update(run.id, status="failed", ended=time.time(), message=f"could not start torchrun: {exc}")
            raise ValueError(f"could not start torchrun: {exc}") from None
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
        if run.status == "queued" and run.pid is None:  # waiting in a queue: it never gets a process
            self._update(run.id, status="stopped", ended=time.time(), message="taken out of the queue by the user")
            return self.get(run_id)
        grace = self.grace if grace is None else grace
        pids = P.run_processes(run)
        P.signal_group(run, signal.SIGTERM)
        if not P.wait_gone(run, grace, pids):
            pids = sorted(set(pids) | set(P.run_processes(run)))
            P.signal_run(run, signal.SIGKILL)
            P.wait_gone(run, 10.0, pids)
        code = P.reap(run.pid)
        self._update(run.id, status="stopped", ended=time.time(), exit_code=code,
                     last_metrics=last_metrics(run.path), message="stopped by the user")
        return self.get(run_id)

    def reconcile(self) -> list[int]:
        """Bring every running run in line with the operating system; return the ids whose status changed.

        A run whose torchrun ended is ``finished`` if metrics.jsonl has its "done" line or torchrun exited
        with 0, else ``failed`` (its logs stay in the run directory); ranks left behind are killed.  Running
        runs get their last_metrics refreshed.
        """
        from .grid import held_ids

        changed = []
        with self._db() as db:
            rows = db.execute("SELECT * FROM runs WHERE status IN ('running', 'queued')").fetchall()
        held = held_ids(self) if any(r["status"] == "queued" for r in rows) else set()
        for run in map(_row_to_run, rows):
            if run.status == "queued":
                if run.pid is None and run.id not in held and time.time() - run.created > 300:
                    self._update(run.id, status="failed", ended=time.time(), message="never started")
                    changed.append(run.id)
                continue
            metrics = last_metrics(run.path)
            if P.leader_alive(run):
                self._update(run.id, last_metrics=metrics)
                continue
            stray = P.run_processes(run)
            if stray:  # torchrun is gone: ranks it left behind would keep writing into the run directory
                P.signal_run(run, signal.SIGKILL)
                P.wait_gone(run, 10.0, stray)
            code = P.reap(run.pid)
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
        check_launch(nproc_per_node=run.nproc_per_node, nnodes=run.nnodes, node_rank=0, master_addr="127.0.0.1",
                     master_port=port)
        gpus = run.nproc_per_node if gpus_per_node is None else int(gpus_per_node)
        q = shlex.quote
        py = q(python or sys.executable)
        lines = sbatch_head(f"arcface-{run.name}", run.path / "slurm-%j.out", partition, time_limit, cpus_per_task,
                            gpus, nodes=run.nnodes)
        lines += [
            "# the rendezvous runs on the first node of the allocation",
            'head_node=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)',
            "",
            f"srun --kill-on-bad-exit=1 {py} -m torch.distributed.run \\",
            f"    --nnodes {run.nnodes} --nproc_per_node {run.nproc_per_node} \\",
            f'    --rdzv_id "$SLURM_JOB_ID" --rdzv_backend c10d --rdzv_endpoint "$head_node:{port}" \\',
            f"    -m {self.module} --config {q(str(run.path / 'config.json'))}" + (" --resume" if resume else ""),
            "",
        ]
        return "\n".join(lines)


def sbatch_head(job: str, output: str | os.PathLike, partition: str | None, time_limit: str, cpus_per_task: int,
                gpus: int, nodes: int = 1, extra: tuple[str, ...] = ()) -> list[str]:
    """The first lines of an ``sbatch`` script: the ``#SBATCH`` options (``extra`` ones after the job name), then the
    project as working directory and on PYTHONPATH.  ValueError for a partition or a time limit that Slurm would
    not take."""
    if partition is not None and not re.fullmatch(r"[A-Za-z0-9_.,-]+", partition):
        raise ValueError(f"partition must be a Slurm partition name, got {partition!r}")
    if not re.fullmatch(r"(\d+-)?\d{1,3}(:\d{2}){0,2}", time_limit):
        raise ValueError(f"time limit must look like 24:00:00 or 2-00:00:00, got {time_limit!r}")
    q = shlex.quote
    return [
        "#!/bin/bash",
        f"#SBATCH --job-name={_slug(job)}",
        *extra,
        f"#SBATCH --nodes={nodes}",
        "#SBATCH --ntasks-per-node=1",
        f"#SBATCH --gpus-per-node={gpus}" if gpus > 0 else "# (CPU only: no --gpus-per-node)",
        f"#SBATCH --cpus-per-task={int(cpus_per_task)}",
        f"#SBATCH --time={time_limit}",
        f"#SBATCH --output={output}",
        *([f"#SBATCH --partition={partition}"] if partition else []),
        "",
        "set -euo pipefail",
        f"cd {q(str(PROJECT_ROOT))}",
        f"export PYTHONPATH={q(str(PROJECT_ROOT))}${{PYTHONPATH:+:$PYTHONPATH}}",
    ]


def reconcile_existing(path: str | os.PathLike | None = None) -> list[int]:
    """Reconcile the registry at app start, if there is one (never creates the file); the changed run ids.

    For app.py: runs whose processes died while the app was down become failed (or finished), and any rank
    left behind by a dead torchrun is killed.
    """
    p = Path(path) if path is not None else settings.registry_path()
    if not p.is_file():
        return []
    return Registry(p).reconcile()
