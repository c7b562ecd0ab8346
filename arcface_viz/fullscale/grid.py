"""A grid of full-scale runs: one registry entry per cell, at most N running at once, or a Slurm array job.

The full-scale half of the sweep maps (:mod:`arcface_viz.sweep`): two keys of the run config (any number of
:data:`~arcface_viz.fullscale.config.RUN_SPEC`: ``lr``, ``s``, ``m2``, ``batch_size``, ``sample_rate``, …), a list
of values each, and one run per pair of values, the base config otherwise.  Every cell is an ordinary run of the
registry (its own run directory, config.json, logs, metrics, Stop and Resume), *held* in the queue until a slot
of its grid is free:

* ``mode="local"``: :func:`pump` starts held runs while fewer than ``slots`` of the grid run; a watcher process
  (``python -m arcface_viz.fullscale.grid``, started by :func:`launch_grid`, gone when the grid has nothing left to
  run) pumps every few seconds, so the queue moves on with nobody watching; the page and the CLI pump too;
* ``mode="slurm"``: nothing starts here; :func:`slurm_array_script` writes an ``sbatch --array=0-(n−1)%slots`` job
  whose task i trains cell i's config.json (the run directories are on a shared disk), and :func:`refresh` reads
  their metrics.jsonl into the registry.

:func:`grid_map` gives each cell's verification accuracy (the last value of a ``val_targets`` set) for the same
kind of heat map as the sweep page (:func:`arcface_viz.plots.sweep.grid_map_figure`).

Two tables next to ``runs`` in the registry's SQLite file: ``grids`` (axes, slots, mode, watcher pid) and
``grid_cells`` (run id, grid, column, row, and ``claimed``: a pump has taken it to start).  A held run is a
``queued`` run with an unclaimed row in ``grid_cells``; the registry's reconcile leaves those alone.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import processes as P
from .config import RUN_SPEC, set_key
from .launch import validate_config
from .metrics import last_metrics
from .runs import PROJECT_ROOT, Registry, Run, sbatch_head

SCHEMA = """
CREATE TABLE IF NOT EXISTS grids (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    created REAL NOT NULL,
    x_key TEXT NOT NULL,
    x_values TEXT NOT NULL,
    y_key TEXT NOT NULL,
    y_values TEXT NOT NULL,
    slots INTEGER NOT NULL,
    mode TEXT NOT NULL CHECK (mode IN ('local', 'slurm')),
    watcher INTEGER
);
CREATE TABLE IF NOT EXISTS grid_cells (
    run_id INTEGER PRIMARY KEY,
    grid INTEGER NOT NULL,
    ix INTEGER NOT NULL,
    iy INTEGER NOT NULL,
    claimed INTEGER NOT NULL DEFAULT 0
);
"""
MODES = ("local", "slurm")
MAX_CELLS = 400
POLL_SECONDS = 2.0
WATCHER_LOG = "grid-watcher.log"


@dataclass
class Grid:
    """One row of ``grids``: the axes (run-config keys and their values), the slots and the mode."""

    id: int
    name: str
    created: float
    x_key: str
    x_values: list[Any]
    y_key: str
    y_values: list[Any]
    slots: int
    mode: str
    watcher: int | None = None


def _tables(registry: Registry) -> None:
    with registry._db() as db:
        db.executescript(SCHEMA)


def axis_keys() -> tuple[str, ...]:
    """Run-config keys that may be an axis: every number of RUN_SPEC."""
    return tuple(p.name for p in RUN_SPEC if p.kind in ("int", "float"))


def parse_axis(text: str) -> tuple[str, list[Any]]:
    """``"lr=0.05,0.1"`` -> ("lr", [0.05, 0.1]), each value checked against RUN_SPEC's range (ValueError)."""
    key, sep, rest = str(text).partition("=")
    key = key.strip()
    if not sep or key not in axis_keys():
        raise ValueError(f"an axis is KEY=V1,V2,… with KEY a number of the run config ({', '.join(axis_keys())}); "
                         f"got {text!r}")
    items = [v.strip() for v in rest.split(",") if v.strip()]
    if not items:
        raise ValueError(f"axis {key}: give at least one value")
    try:
        values = [RUN_SPEC[key].coerce(v) for v in items]
    except ValueError as exc:
        raise ValueError(f"axis {key}: {exc}") from None
    if len(set(values)) != len(values):
        raise ValueError(f"axis {key}: a value is repeated")
    return key, values


def grid_configs(base: Mapping[str, Any], x: tuple[str, Sequence[Any]],
                 y: tuple[str, Sequence[Any]]) -> list[tuple[int, int, dict[str, Any]]]:
    """(column, row, config) per cell, row by row: ``base`` with the cell's two values set."""
    (xk, xs), (yk, ys) = x, y
    if xk == yk:
        raise ValueError(f"x and y are both {xk!r}: choose two different keys")
    out = []
    for iy, yv in enumerate(ys):
        for ix, xv in enumerate(xs):
            cfg = json.loads(json.dumps(dict(base)))
            set_key(cfg, xk, xv)
            set_key(cfg, yk, yv)
            out.append((ix, iy, cfg))
    return out


def _cell_name(name: str, xk: str, xv: Any, yk: str, yv: Any) -> str:
    return f"{name} {xk}={xv:g} {yk}={yv:g}" if isinstance(xv, float) and isinstance(yv, float) else \
        f"{name} {xk}={xv} {yk}={yv}"


def launch_grid(registry: Registry, base: Mapping[str, Any], x: tuple[str, Sequence[Any]],
                y: tuple[str, Sequence[Any]], *, slots: int = 1, mode: str = "local", name: str | None = None,
                nproc_per_node: int = 1, watch: bool = True) -> int:
    """Register one held run per cell (every config checked first: nothing is created if one fails) and, in
    local mode, start the first ``slots`` of them and a watcher that starts the rest as slots free up.
    Returns the grid's id."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if not isinstance(slots, int) or slots < 1:
        raise ValueError(f"at most N runs at once: N must be a whole number ≥ 1, got {slots!r}")
    cells = grid_configs(base, x, y)
    if len(cells) > MAX_CELLS:
        raise ValueError(f"{len(cells)} cells: at most {MAX_CELLS} runs in one grid")
    registry.runs_root.mkdir(parents=True, exist_ok=True)
    for _, _, cfg in cells:  # every value and path, before anything exists
        validate_config(cfg, registry.runs_root / "(new run)")
    (xk, xs), (yk, ys) = x, y
    name = str(name or f"grid {xk}×{yk}")[:120]
    _tables(registry)
    with registry._db() as db:
        cur = db.execute("INSERT INTO grids (name, created, x_key, x_values, y_key, y_values, slots, mode) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                         (name, time.time(), xk, json.dumps(list(xs)), yk, json.dumps(list(ys)), slots, mode))
        grid_id = int(cur.lastrowid)
    for ix, iy, cfg in cells:
        run_id = registry.launch(cfg, nproc_per_node=nproc_per_node, hold=True,
                                 name=_cell_name(name, xk, xs[ix], yk, ys[iy]))
        with registry._db() as db:
            db.execute("INSERT INTO grid_cells (run_id, grid, ix, iy) VALUES (?, ?, ?, ?)", (run_id, grid_id, ix, iy))
    if mode == "local":
        pump(registry)
        if watch:
            start_watcher(registry, grid_id)
    return grid_id


def held_ids(registry: Registry) -> set[int]:
    """Runs waiting in a grid's queue (queued, not yet claimed by a pump)."""
    _tables(registry)
    with registry._db() as db:
        return {r[0] for r in db.execute("SELECT c.run_id FROM grid_cells c JOIN runs r ON r.id = c.run_id "
                                         "WHERE r.status = 'queued' AND c.claimed = 0")}


def pump(registry: Registry) -> list[int]:
    """Start held runs of local grids while fewer than ``slots`` of each grid run; the ids started.

    The choice is made in one write transaction (a run is claimed before it starts), so the page, the CLI and
    the watcher may pump at once without starting a run twice or more than ``slots`` of a grid."""
    _tables(registry)
    chosen: list[int] = []
    with registry._db() as db:
        db.execute("BEGIN IMMEDIATE")
        try:
            for gid, slots in db.execute("SELECT id, slots FROM grids WHERE mode = 'local'").fetchall():
                busy = db.execute(
                    "SELECT COUNT(*) FROM grid_cells c JOIN runs r ON r.id = c.run_id WHERE c.grid = ? AND "
                    "(r.status = 'running' OR (r.status = 'queued' AND c.claimed = 1))", (gid,)).fetchone()[0]
                if busy >= slots:
                    continue
                ids = [r[0] for r in db.execute(
                    "SELECT c.run_id FROM grid_cells c JOIN runs r ON r.id = c.run_id WHERE c.grid = ? AND "
                    "r.status = 'queued' AND c.claimed = 0 ORDER BY c.iy, c.ix LIMIT ?", (gid, slots - busy))]
                db.executemany("UPDATE grid_cells SET claimed = 1 WHERE run_id = ?", [(i,) for i in ids])
                chosen += ids
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
    started = []
    for run_id in chosen:
        try:
            registry.start(run_id)
        except (ValueError, FileNotFoundError):  # the registry marked it failed, with why
            continue
        started.append(run_id)
    return started


def refresh(registry: Registry) -> None:
    """Slurm grids: copy each held run's metrics.jsonl summary into the registry; a run that wrote "done" is
    finished (the array job runs it elsewhere, so no process of it is seen here)."""
    _tables(registry)
    with registry._db() as db:
        rows = db.execute("SELECT c.run_id FROM grid_cells c JOIN grids g ON g.id = c.grid JOIN runs r ON "
                          "r.id = c.run_id WHERE g.mode = 'slurm' AND r.status = 'queued'").fetchall()
    for (run_id,) in rows:
        run = registry.get(run_id)
        metrics = last_metrics(run.path)
        if metrics.get("done"):
            registry._update(run_id, status="finished", ended=time.time(), last_metrics=metrics,
                             message="finished by the Slurm array job")
        elif metrics:
            registry._update(run_id, last_metrics=metrics, message="running in the Slurm array job")


def reconcile(registry: Registry) -> None:
    """What the page and the CLI call: the registry's reconcile, then the queues move on and Slurm grids are read."""
    registry.reconcile()
    pump(registry)
    refresh(registry)


def grids(registry: Registry) -> list[Grid]:
    """Every grid, newest first."""
    _tables(registry)
    with registry._db() as db:
        rows = db.execute("SELECT * FROM grids ORDER BY id DESC").fetchall()
    out = []
    for r in rows:
        d = dict(r)
        d["x_values"], d["y_values"] = json.loads(d["x_values"]), json.loads(d["y_values"])
        out.append(Grid(**d))
    return out


def get_grid(registry: Registry, grid_id: int) -> Grid:
    for g in grids(registry):
        if g.id == int(grid_id):
            return g
    raise ValueError(f"no grid with id {grid_id} in {registry.path}")


def cells(registry: Registry, grid_id: int) -> list[tuple[int, int, Run]]:
    """(column, row, run) of every cell of a grid."""
    _tables(registry)
    with registry._db() as db:
        rows = db.execute("SELECT run_id, ix, iy FROM grid_cells WHERE grid = ? ORDER BY iy, ix",
                          (int(grid_id),)).fetchall()
    return [(ix, iy, registry.get(run_id)) for run_id, ix, iy in rows]


def _busy(registry: Registry) -> bool:
    """Whether any local grid still has a run queued or running."""
    with registry._db() as db:
        return db.execute("SELECT COUNT(*) FROM grid_cells c JOIN grids g ON g.id = c.grid JOIN runs r ON "
                          "r.id = c.run_id WHERE g.mode = 'local' AND r.status IN ('queued', 'running')"
                          ).fetchone()[0] > 0


# ---------------------------------------------------------------------------------------------- the watcher


def watch(registry: Registry, poll: float = POLL_SECONDS) -> None:
    """Reconcile and pump every ``poll`` seconds until no local grid has anything queued or running."""
    while True:
        reconcile(registry)
        if not _busy(registry):
            return
        time.sleep(poll)


def watcher_alive(pid: int | None) -> bool:
    """Whether ``pid`` is a grid watcher that still runs."""
    if not pid or not P.pid_alive(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return True  # not Linux: trust the pid
    return b"arcface_viz.fullscale.grid" in cmdline


def start_watcher(registry: Registry, grid_id: int) -> int | None:
    """Start the watcher process unless one runs already (one watcher serves every grid); its pid."""
    for g in grids(registry):
        if watcher_alive(g.watcher):
            return g.watcher
    cmd = [sys.executable, "-m", "arcface_viz.fullscale.grid", "--registry", str(registry.path),
           "--runs-root", str(registry.runs_root), "--module", registry.module]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH")) if p)
    proc = P.start(cmd, registry.runs_root / WATCHER_LOG, env, PROJECT_ROOT)
    with registry._db() as db:
        db.execute("UPDATE grids SET watcher = ? WHERE id = ?", (proc.pid, int(grid_id)))
    return proc.pid


# ---------------------------------------------------------------------------------------------- Slurm


def slurm_array_script(registry: Registry, grid_id: int, partition: str | None = None, time_limit: str = "24:00:00",
                       cpus_per_task: int = 8, python: str | None = None) -> str:
    """An ``sbatch`` script for a grid: one array task per cell (``--array=0-(n−1)%slots``: at most ``slots`` at
    once), task i running torchrun on one node with cell i's config.json."""
    g = get_grid(registry, grid_id)
    runs = [run for _, _, run in cells(registry, grid_id)]
    if not runs:
        raise ValueError(f"grid {grid_id} has no cells")
    q = shlex.quote
    nproc = runs[0].nproc_per_node
    lines = sbatch_head(f"arcface-grid-{g.name}", registry.runs_root / f"grid{g.id}-%A_%a.out", partition,
                        time_limit, cpus_per_task, nproc, extra=(f"#SBATCH --array=0-{len(runs) - 1}%{g.slots}",))
    lines += [
        f"# {g.x_key} × {g.y_key}: task i trains cell i (row by row)",
        "configs=(",
        *(f"  {q(str(run.path / 'config.json'))}  # run {run.id}: {run.name}" for run in runs),
        ")",
        f"srun {q(python or sys.executable)} -m torch.distributed.run --standalone --nproc_per_node {nproc} \\",
        f'    -m {registry.module} --config "${{configs[$SLURM_ARRAY_TASK_ID]}}"',
        "",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- the map


def grid_map(registry: Registry, grid_id: int, target: str | None = None) -> dict[str, Any]:
    """A grid's verification accuracy per cell, for :func:`~arcface_viz.plots.sweep.grid_map_figure`:
    ``z`` (rows × columns, NaN where there is no value yet), ``trained`` (False for failed or stopped runs),
    ``hover`` (run, status, step, accuracy per set), ``text`` (the accuracy, or the status while there is none),
    ``run_ids``, the axes and ``targets`` (the sets seen).
    ``target``: which verification set colours the map (default: the first one any run reports)."""
    g = get_grid(registry, grid_id)
    ny, nx = len(g.y_values), len(g.x_values)
    z = [[math.nan] * nx for _ in range(ny)]
    trained = [[True] * nx for _ in range(ny)]
    hover = [[""] * nx for _ in range(ny)]
    text = [[""] * nx for _ in range(ny)]
    run_ids = [[0] * nx for _ in range(ny)]
    found = list(cells(registry, grid_id))
    targets = sorted({t for _, _, run in found for t in (run.last_metrics.get("val") or {})})
    target = target if target in targets else (targets[0] if targets else None)
    for ix, iy, run in found:
        m = run.last_metrics
        val = m.get("val") or {}
        acc = (val.get(target) or {}).get("acc") if target else None
        if isinstance(acc, int | float):
            z[iy][ix] = float(acc)
        trained[iy][ix] = run.status not in ("failed", "stopped")
        text[iy][ix] = f"{100 * acc:.1f}%" if isinstance(acc, int | float) else run.status
        lines = [f"<b>{g.x_key} = {g.x_values[ix]}, {g.y_key} = {g.y_values[iy]}</b>",
                 f"run {run.id}: {run.status}" + (f" — {run.message}" if run.message else "")]
        if "step" in m:
            lines.append(f"step {m['step']}" + (f", loss {m['loss']:.4f}" if isinstance(m.get("loss"), float) else ""))
        lines += [f"{t}: {100 * v['acc']:.2f}%" for t, v in val.items() if isinstance(v.get("acc"), int | float)]
        if not val:
            lines.append("no verification yet")
        lines.append("<i>click to show this run</i>")
        hover[iy][ix] = "<br>".join(lines)
        run_ids[iy][ix] = run.id
    return {"grid": g, "z": z, "trained": trained, "hover": hover, "text": text, "run_ids": run_ids,
            "targets": targets, "target": target}


def main(argv: list[str] | None = None) -> int:
    """The watcher: ``python -m arcface_viz.fullscale.grid --registry FILE --runs-root DIR``."""
    import argparse

    p = argparse.ArgumentParser(description="start the held runs of local grids as slots free up; exit when done")
    p.add_argument("--registry", required=True)
    p.add_argument("--runs-root", required=True)
    p.add_argument("--module", default="arcface_viz.train")
    p.add_argument("--poll", type=float, default=POLL_SECONDS)
    a = p.parse_args(argv)
    watch(Registry(a.registry, a.runs_root, module=a.module), poll=a.poll)
    return 0


if __name__ == "__main__":
    sys.exit(main())
