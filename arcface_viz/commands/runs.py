"""``arcface-viz runs {launch,list,show,stop,resume,keys}``: full-scale training runs under torchrun.

The same registry as the app's Backend page (``$ARCFACE_VIZ_REGISTRY``, default ``runs/registry.sqlite3``),
so a run launched here shows up there and the other way round.

- ``launch --config FILE|PRESET [--set key=value ...] [--nproc-per-node P --nnodes N --node-rank R
  --master-addr A --master-port PORT] [--wait]``
- ``list [--json]``, ``show ID [--json] [--log N] [--slurm]``, ``stop ID``, ``resume ID [--wait]``
- ``keys [--json]``: every key of the run config (``--set`` takes them; a dot sets one nested key, ``data.root``)
- ``convert CONFIG.py [--out FILE]``: an insightface arcface_torch config (``configs/*.py``, read, never run) as
  our run config (:mod:`arcface_viz.fullscale.insightface`); exit 2 naming every key we do not support
- ``grid --config FILE|PRESET --x KEY=V1,V2,… --y KEY=V1,… [--parallel N] [--slurm FILE]``: one run per pair of
  values, at most N at once (or an array job for Slurm); ``grid-map ID [--json] [--target SET]``: their
  verification accuracy, the map of the Training runs page
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from ..fullscale.config import set_key, spec_table
from ..fullscale.files import atomic_write_text
from ..fullscale.insightface import convert_file
from ..fullscale.launch import load_launch_config
from ..fullscale.runs import Registry, Run


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("runs", help="launch, list, show, stop and resume full-scale training runs",
                       description=__doc__.splitlines()[0])
    p.add_argument("--registry", metavar="FILE", default=None,
                   help="SQLite registry (default: $ARCFACE_VIZ_REGISTRY or runs/registry.sqlite3)")
    rsub = p.add_subparsers(dest="runs_command", required=True, metavar="ACTION")

    la = rsub.add_parser("launch", help="validate a config and start it under torchrun",
                         description="Validate a config (file or preset), write it into a new run directory "
                                     "and start torchrun in its own process group.")
    la.add_argument("--config", required=True, metavar="FILE|PRESET", help="a JSON config file or a preset name")
    la.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override one config key (`runs keys` lists them; data.root sets one nested key); VALUE "
                         "is read as JSON if it parses, else as text; repeatable")
    la.add_argument("--name", default=None, help="a name for the run (default: network-loss)")
    la.add_argument("--nproc-per-node", type=int, default=1, help="processes (GPUs) on this node (default 1)")
    la.add_argument("--nnodes", type=int, default=1, help="number of machines (default 1)")
    la.add_argument("--node-rank", type=int, default=0, help="this machine's rank, 0 … nnodes-1 (default 0)")
    la.add_argument("--master-addr", default="127.0.0.1", help="address of node 0 (default 127.0.0.1)")
    la.add_argument("--master-port", type=int, default=None,
                    help="rendezvous port (default: a free port on one node, 29500 on several)")
    la.add_argument("--wait", action="store_true", help="wait for the run to end and exit 1 unless it finished")
    la.add_argument("--json", action="store_true", help="print the run as one JSON object")
    la.set_defaults(func=run_launch)

    ls = rsub.add_parser("list", help="every run with its status and last metrics")
    ls.add_argument("--json", action="store_true", help="print a JSON list")
    ls.set_defaults(func=run_list)

    sh = rsub.add_parser("show", help="one run: status, metrics, command lines, log tail")
    sh.add_argument("id", type=int)
    sh.add_argument("--json", action="store_true", help="print one JSON object (with the metrics records)")
    sh.add_argument("--log", type=int, default=20, metavar="N", help="lines of the log to print (default 20)")
    sh.add_argument("--slurm", action="store_true", help="print an sbatch script for the run instead")
    sh.set_defaults(func=run_show)

    st = rsub.add_parser("stop", help="SIGTERM every rank of a run, SIGKILL after a grace period")
    st.add_argument("id", type=int)
    st.add_argument("--grace", type=float, default=10.0, help="seconds between SIGTERM and SIGKILL (default 10)")
    st.set_defaults(func=run_stop)

    re_ = rsub.add_parser("resume", help="restart a run from its latest checkpoint, in the same run directory")
    re_.add_argument("id", type=int)
    re_.add_argument("--wait", action="store_true", help="wait for the run to end and exit 1 unless it finished")
    re_.set_defaults(func=run_resume)

    gr = rsub.add_parser("grid", help="one run per pair of values of two config keys, at most N at once",
                         description="Register one run per cell of KEY × KEY (every config checked first) and start "
                                     "them at most N at once (a watcher process starts the rest as runs end), or "
                                     "write a Slurm array job that trains them.")
    gr.add_argument("--config", required=True, metavar="FILE|PRESET", help="the base config")
    gr.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override one key of the base config (as for launch); repeatable")
    gr.add_argument("--x", required=True, metavar="KEY=V1,V2,…", help="the columns: a number of the config")
    gr.add_argument("--y", required=True, metavar="KEY=V1,V2,…", help="the rows")
    gr.add_argument("--parallel", type=int, default=1, metavar="N", help="runs at once (default 1)")
    gr.add_argument("--nproc-per-node", type=int, default=1, help="processes (GPUs) per run (default 1)")
    gr.add_argument("--name", default=None, help="a name for the grid")
    gr.add_argument("--slurm", metavar="FILE.sbatch", default=None,
                    help="start nothing here: write an sbatch array job (--array=0-(n-1)%%N) to FILE")
    gr.add_argument("--json", action="store_true", help="print the grid and its runs as one JSON object")
    gr.set_defaults(func=run_grid)

    gm = rsub.add_parser("grid-map", help="a grid's verification accuracy per cell")
    gm.add_argument("id", type=int)
    gm.add_argument("--target", default=None, help="the verification set (default: the first one reported)")
    gm.add_argument("--json", action="store_true", help="print one JSON object")
    gm.set_defaults(func=run_grid_map)

    ke = rsub.add_parser("keys", help="every key of the run config: default, allowed values, meaning")
    ke.add_argument("--json", action="store_true", help="print a JSON list")
    ke.set_defaults(func=run_keys)

    co = rsub.add_parser("convert", help="read an insightface arcface_torch config (configs/*.py) into ours",
                         description="Read an arcface_torch config file (never executed: parsed with ast, over "
                                     "base.py beside it or arcface_torch's base values) and write our run config; "
                                     "every key we do not support is named and the exit status is 2.")
    co.add_argument("config", metavar="CONFIG.py", help="an arcface_torch config, e.g. configs/ms1mv3_r50.py")
    co.add_argument("--out", metavar="FILE", default=None, help="write the JSON here (default: print it)")
    co.set_defaults(func=run_convert)


def _registry(args: argparse.Namespace) -> Registry:
    return Registry(args.registry) if args.registry else Registry()


def _parse_override(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ValueError(f"--set expects KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def _when(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else "–"


def _summary(run: Run) -> str:
    m = run.last_metrics
    parts = []
    if "step" in m:
        parts.append(f"step {m['step']}")
    if isinstance(m.get("loss"), int | float):
        parts.append(f"loss {m['loss']:.4f}")
    if isinstance(m.get("samples_per_sec"), int | float):
        parts.append(f"{m['samples_per_sec']:.1f} samples/s")
    for target, v in (m.get("val") or {}).items():
        if isinstance(v.get("acc"), int | float):
            parts.append(f"{target} {100 * v['acc']:.2f}%")
    return ", ".join(parts)


def _wait_and_report(reg: Registry, run_id: int) -> int:
    run = reg.wait(run_id)
    print(f"run {run.id} {run.status}" + (f": {run.message}" if run.message else ""))
    return 0 if run.status == "finished" else 1


def run_launch(args: argparse.Namespace) -> int:
    config = load_launch_config(args.config)
    for item in args.overrides:
        set_key(config, *_parse_override(item))
    reg = _registry(args)
    run_id = reg.launch(config, nproc_per_node=args.nproc_per_node, nnodes=args.nnodes, node_rank=args.node_rank,
                        master_addr=args.master_addr, master_port=args.master_port, name=args.name)
    run = reg.get(run_id)
    if args.json:
        print(json.dumps(run.to_dict()))
    else:
        print(f"run {run.id} started (pid {run.pid}) in {run.run_dir}")
        if run.nnodes > 1:
            for rank in range(run.nnodes):
                if rank != run.node_rank:
                    print(f"  node {rank}: {reg.command_line(run.id, node_rank=rank)}")
    return _wait_and_report(reg, run_id) if args.wait else 0


def run_list(args: argparse.Namespace) -> int:
    runs = _registry(args).list()
    if args.json:
        print(json.dumps([r.to_dict() for r in runs]))
        return 0
    if not runs:
        print("no runs yet: python -m arcface_viz runs launch --config PRESET")
        return 0
    print(f"{'id':>4}  {'status':<9} {'created':<19}  {'ranks':>5}  {'name':<24} last metrics")
    for r in runs:
        print(f"{r.id:>4}  {r.status:<9} {_when(r.created):<19}  {r.world_size:>5}  {r.name[:24]:<24} {_summary(r)}")
    return 0


def run_show(args: argparse.Namespace) -> int:
    reg = _registry(args)
    reg.reconcile()
    run = reg.get(args.id)
    if args.slurm:
        print(reg.slurm_script(run.id))
        return 0
    if args.json:
        out = run.to_dict()
        out["metrics"] = reg.metrics(run.id)
        out["command_line"] = reg.command_line(run.id)
        out["resume_command_line"] = reg.command_line(run.id, resume=True)
        out["node_command_lines"] = [reg.command_line(run.id, node_rank=k) for k in range(run.nnodes)]
        print(json.dumps(out))
        return 0
    print(f"run {run.id} \"{run.name}\": {run.status}" + (f" ({run.message})" if run.message else ""))
    print(f"  directory: {run.run_dir}")
    print(f"  created {_when(run.created)}, started {_when(run.started)}, ended {_when(run.ended)}")
    print(f"  ranks: {run.nproc_per_node} per node × {run.nnodes} node(s); pid {run.pid}, "
          f"exit code {run.exit_code if run.exit_code is not None else '–'}")
    if run.last_metrics:
        print(f"  last metrics: {_summary(run)}")
    print(f"  rerun: {reg.command_line(run.id)}")
    print(f"  resume: {reg.command_line(run.id, resume=True)}")
    for rank in range(1, run.nnodes):
        print(f"  node {rank}: {reg.command_line(run.id, node_rank=rank)}")
    tail = reg.log_tail(run.id, args.log)
    if tail:
        print(f"--- last {args.log} lines of the log ---")
        print(tail)
    return 0


def run_stop(args: argparse.Namespace) -> int:
    reg = _registry(args)
    reg.reconcile()
    run = reg.stop(args.id, grace=args.grace)
    print(f"run {run.id} stopped")
    return 0


def run_resume(args: argparse.Namespace) -> int:
    reg = _registry(args)
    run = reg.resume(args.id)
    print(f"run {run.id} resumed (pid {run.pid}) in {run.run_dir}")
    return _wait_and_report(reg, run.id) if args.wait else 0


def run_keys(args: argparse.Namespace) -> int:
    rows = spec_table()
    if args.json:
        print(json.dumps(rows))
        return 0
    width = max(len(r["key"]) for r in rows)
    for r in rows:
        print(f"{r['key']:<{width}}  {r['default']:<12} {r['allowed']}")
        print(f"{'':<{width}}  {r['help']}")
    return 0


def run_grid(args: argparse.Namespace) -> int:
    from ..fullscale import grid as G

    config = load_launch_config(args.config)
    for item in args.overrides:
        set_key(config, *_parse_override(item))
    reg = _registry(args)
    mode = "slurm" if args.slurm else "local"
    grid_id = G.launch_grid(reg, config, G.parse_axis(args.x), G.parse_axis(args.y), slots=args.parallel, mode=mode,
                            name=args.name, nproc_per_node=args.nproc_per_node)
    cells = G.cells(reg, grid_id)
    if args.slurm:
        try:
            with open(args.slurm, "w", encoding="utf-8") as fh:
                fh.write(G.slurm_array_script(reg, grid_id))
        except OSError as exc:
            raise ValueError(f"cannot write {args.slurm}: {exc.strerror or exc}") from None
    if args.json:
        print(json.dumps({"grid": grid_id, "mode": mode, "slurm": args.slurm,
                          "runs": [{"ix": ix, "iy": iy, **run.to_dict()} for ix, iy, run in cells]}))
        return 0
    print(f"grid {grid_id}: {len(cells)} runs " + (f"for the Slurm array job in {args.slurm} (sbatch it)" if args.slurm
                                                else f"queued, at most {args.parallel} at once"))
    for _, _, run in cells:
        print(f"  run {run.id}: {run.name} ({run.status})")
    return 0


def run_grid_map(args: argparse.Namespace) -> int:
    from ..fullscale import grid as G

    reg = _registry(args)
    G.reconcile(reg)
    m = G.grid_map(reg, args.id, args.target)
    g = m["grid"]
    z = [[None if v != v else v for v in row] for row in m["z"]]  # NaN (no value yet) as null
    if args.json:
        print(json.dumps({"grid": g.id, "name": g.name, "x": {"key": g.x_key, "values": g.x_values},
                          "y": {"key": g.y_key, "values": g.y_values}, "target": m["target"], "targets": m["targets"],
                          "verification_accuracy": z, "run_ids": m["run_ids"], "trained": m["trained"]}))
        return 0
    print(f"grid {g.id} \"{g.name}\": verification accuracy ({m['target'] or 'none reported yet'}), "
          f"rows {g.y_key}, columns {g.x_key}")
    print(f"{'':>10}" + "".join(f"{str(v):>10}" for v in g.x_values))
    for iy, yv in enumerate(g.y_values):
        cells = ["✗" if not m["trained"][iy][ix] else "–" if z[iy][ix] is None else f"{100 * z[iy][ix]:.2f}%"
                 for ix in range(len(g.x_values))]
        print(f"{str(yv):>10}" + "".join(f"{c:>10}" for c in cells))
    return 0


def run_convert(args: argparse.Namespace) -> int:
    cfg, notes = convert_file(args.config)
    text = json.dumps(cfg, indent=2) + "\n"
    if args.out is None:
        print(text, end="")
        return 0
    try:
        atomic_write_text(args.out, text)
    except OSError as exc:
        raise ValueError(f"cannot write {args.out}: {exc.strerror or exc}") from None
    print(f"wrote {args.out}: {cfg['network']} + {cfg['loss']}, launch it with "
          f"`arcface-viz runs launch --config {args.out}`" + "".join(f"; note: {n}" for n in notes))
    return 0
