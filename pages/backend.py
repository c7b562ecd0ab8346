"""Backend: launch, follow, stop and resume full-scale face-recognition training runs (torchrun).

Locked unless the operator enables it (ARCFACE_VIZ_BACKEND=1 or st.secrets["backend"]["enabled"]); optionally
behind st.secrets["backend"]["password"].  Everything it does is in arcface_viz.fullscale (the registry in
``runs``, the launch form and its checks in ``launch``, data sets in ``prepare``; also the CLI
``python -m arcface_viz runs ...``); this page only draws it.  The launch form is the run config's one Spec
(``fullscale.config.RUN_SPEC``): a key added there shows up here by itself, under "More settings".
"""

import hmac
import json
import time
from pathlib import Path

import streamlit as st

from arcface_viz import settings
from arcface_viz.fullscale import grid as G
from arcface_viz.fullscale import launch as L
from arcface_viz.fullscale import runs as R
from arcface_viz.fullscale.config import LOSS_KEYS
from arcface_viz.fullscale.insightface import ConvertError, convert_text
from arcface_viz.fullscale.prepare import find_datasets, prepare_bin, prepare_rec, prepare_synthetic
from arcface_viz.losses import LOSSES
from arcface_viz.plots.runs import metrics_figure
from arcface_viz.plots.sweep import clicked_cell, grid_map_figure
from pages._registry import PAGES
from pages._ui import app_frame, chart, controls, page_state, sync_url

PAGE = "backend"
STATUS_BADGE = {"queued": ("gray", ":material/schedule:"), "running": ("blue", ":material/sync:"),
                "finished": ("green", ":material/check_circle:"), "failed": ("red", ":material/error:"),
                "stopped": ("orange", ":material/stop_circle:")}

app_frame()  # a deep link on a fresh server: run inside app.py's navigation first
st.title("Full-scale training runs")
st.caption("Train a face backbone with any loss of the family, on one GPU, many GPUs or many machines "
           "(torchrun), and follow it live.")


def _secret(section: str, key: str):
    try:
        return st.secrets[section][key]
    except Exception:  # no secrets file, no section, no key: all mean "not set"
        return None


# ---------------------------------------------------------------------------------------------
# the lock: off unless the operator switched it on

if not settings.backend_enabled(_secret("backend", "enabled")):
    where = ("This app is **hosted for the public**, so the backend is off: it starts processes and "
             "writes files on the server." if settings.hosted() else
             "The backend starts training processes and writes files on this machine, so it is off until "
             "the operator switches it on.")
    st.warning(f"**The training backend is locked.** {where}", icon=":material/lock:")
    st.markdown(
        "To enable it, the operator sets **one** of:\n\n"
        "- the environment variable `ARCFACE_VIZ_BACKEND=1` before `streamlit run app.py`, or\n"
        "- in `.streamlit/secrets.toml`:\n\n"
        "  ```toml\n  [backend]\n  enabled = true\n  password = \"...\"   # optional: ask for it first\n  ```\n\n"
        "Runs and data stay inside `ARCFACE_VIZ_RUNS` (default `./runs`) and `ARCFACE_VIZ_DATA_ROOTS` "
        "(default `./data` and the user cache). The same runs are available from the command line: "
        "`python -m arcface_viz runs --help`."
    )
    st.stop()

password = _secret("backend", "password")
if password and not st.session_state.get("backend:unlocked"):
    entered = st.text_input("Backend password", type="password", key="backend:password",
                            help="Set by the operator in st.secrets['backend']['password'].")
    if entered:
        if hmac.compare_digest(str(entered).encode(), str(password).encode()):
            st.session_state["backend:unlocked"] = True
            st.rerun()
        st.warning("Wrong password.", icon=":material/key_off:")
    else:
        st.info("The backend is protected by a password.", icon=":material/key:")
    st.stop()

registry = R.Registry()
with st.sidebar:
    st.caption(f"Runs: `{registry.runs_root}`  \nData: " + ", ".join(f"`{r}`" for r in settings.data_roots()))

# Every action runs in a button callback: callbacks run before the script, so a rerun of the script
# (app_frame, a fragment) never loses a click.  What an action has to say waits in a "flash" message.


def _flash(where: str, kind: str, text: str, payload: dict | None = None) -> None:
    st.session_state[f"{PAGE}:flash:{where}"] = (kind, text, payload)


def _show_flash(where: str) -> None:
    item = st.session_state.pop(f"{PAGE}:flash:{where}", None)
    if item:
        kind, text, payload = item
        icon = {"success": ":material/check:", "error": ":material/block:", "warning": ":material/warning:"}
        getattr(st, kind)(text, icon=icon.get(kind))
        if payload:
            st.json(payload)


def _current(spec) -> dict:
    """The launch form's values as the widgets hold them now (callbacks run before load_state merges them)."""
    values = dict(st.session_state.get(f"_values:{PAGE}", spec.defaults()))
    for p in spec:
        if f"{PAGE}:{p.name}" in st.session_state:
            values[p.name] = st.session_state[f"{PAGE}:{p.name}"]
    return values


def _base(values: dict) -> dict | None:
    """The config the form's values go into: an imported arcface_torch config while the preset is still the one
    it was imported over (None: the preset's own config)."""
    imported = st.session_state.get(f"{PAGE}:imported")
    return imported["config"] if imported and imported["preset"] == values.get("preset") else None


def _launch(spec) -> None:
    try:
        checked = spec.validate(_current(spec))
        run_id = registry.launch(L.config_from_values(checked, _base(checked)),
                                 nproc_per_node=checked["nproc_per_node"],
                                 nnodes=checked["nnodes"], node_rank=checked["node_rank"],
                                 master_addr=st.session_state.get(f"{PAGE}:master_addr", "127.0.0.1").strip(),
                                 master_port=checked["master_port"] or None,
                                 name=st.session_state.get(f"{PAGE}:name", "").strip() or None)
    except (ValueError, FileNotFoundError) as exc:
        _flash("launch", "error", f"Not launched: {exc}")
    else:
        st.session_state[f"{PAGE}:run"] = run_id
        _flash("launch", "success", f"Run {run_id} started: follow it on the Runs tab.")


def _launch_grid(spec) -> None:
    """One held run per pair of values, started at most N at once (or written for a Slurm array job)."""
    k = f"{PAGE}:grid"
    try:
        checked = spec.validate(_current(spec))
        x = G.parse_axis(f"{st.session_state[k + '_x']}={st.session_state[k + '_x_values']}")
        y = G.parse_axis(f"{st.session_state[k + '_y']}={st.session_state[k + '_y_values']}")
        mode = st.session_state[k + "_mode"]
        grid_id = G.launch_grid(registry, L.config_from_values(checked), x, y,
                                slots=int(st.session_state[k + "_slots"]), mode=mode,
                                name=st.session_state.get(f"{PAGE}:name", "").strip() or None,
                                nproc_per_node=checked["nproc_per_node"])
    except (ValueError, FileNotFoundError) as exc:
        _flash("grid", "error", f"Grid not launched: {exc}")
    else:
        st.session_state[f"{PAGE}:grid_id"] = grid_id
        what = ("its first runs started; the others start as slots free up" if mode == "local" else
                "its runs wait for the Slurm array job (download the script on the Runs tab)")
        _flash("grid", "success", f"Grid {grid_id} registered: {what}.")


def _select_run(grid_map: dict) -> None:
    cell = clicked_cell(st.session_state.get(f"{PAGE}-grid-map"))
    if cell is not None:
        st.session_state[f"{PAGE}:run"] = grid_map["run_ids"][cell[1]][cell[0]]


def _data_action(where: str, label: str, fn, *keys: str, ints: tuple[str, ...] = ()) -> None:
    args = [int(st.session_state[f"{PAGE}:{k}"]) if k in ints else str(st.session_state.get(f"{PAGE}:{k}", ""))
            for k in keys]
    try:
        out = fn(*args)
    except (ValueError, FileNotFoundError, OSError) as exc:
        _flash(where, "error", f"{label}: {exc}")
    else:
        _flash(where, "success", f"{label}: done.", out)


def _stop(run_id: int) -> None:
    try:
        registry.stop(run_id)
    except ValueError as exc:
        _flash("run", "warning", str(exc))


def _resume(run_id: int) -> None:
    try:
        registry.resume(run_id)
    except (ValueError, FileNotFoundError) as exc:
        _flash("run", "error", f"Not resumed: {exc}")


def _open_embeddings(path: str) -> None:
    st.session_state["stats_embeddings_path"] = path
    st.session_state[f"{PAGE}:goto_stats"] = True


def _fit_choices(spec, values: dict) -> None:
    """Data sets come and go: a stored choice that is no longer offered falls back to the default."""
    for p in spec:
        if p.kind == "choice" and values.get(p.name) not in p.choices:
            values[p.name] = p.default
            st.session_state.pop(f"{PAGE}:{p.name}", None)
        elif p.kind == "multi" and any(v not in p.choices for v in values.get(p.name, ())):
            values[p.name] = tuple(v for v in values[p.name] if v in p.choices)
            st.session_state.pop(f"{PAGE}:{p.name}", None)


def _fill_form(spec, values: dict, config: dict) -> None:
    """Load a config's values into every control of the launch form (a value a control cannot take is skipped)."""
    for name, value in L.values_from_config(config).items():
        if name in spec:
            try:
                value = spec[name].coerce(value)
            except ValueError:
                continue
            values[name] = value
            st.session_state[f"{PAGE}:{name}"] = value


def _apply_preset(spec, values: dict) -> None:
    """Picking another preset loads its values into every control (the first visit keeps the URL's values)."""
    key = f"{PAGE}:applied_preset"
    if st.session_state.get(key, values["preset"]) != values["preset"]:
        _fill_form(spec, values, L.load_launch_config(values["preset"]))
    st.session_state[key] = values["preset"]


def _import(spec) -> None:
    """Read an arcface_torch config (uploaded or pasted; parsed, never run) into the launch form."""
    upload = st.session_state.get(f"{PAGE}:import_file")
    if upload is not None:
        text, name = upload.getvalue().decode("utf-8", errors="replace"), Path(upload.name).stem
    else:
        text, name = st.session_state.get(f"{PAGE}:import_text", ""), "pasted_config"
    if not text.strip():
        _flash("import", "warning", "Choose an arcface_torch config file or paste one first.")
        return
    try:
        config, notes = convert_text(text, name)
    except ConvertError as exc:
        _flash("import", "error", f"Not imported: {exc}")
        return
    values = _current(spec)
    _fill_form(spec, values, config)
    st.session_state[f"{PAGE}:imported"] = {"preset": values["preset"], "config": config}
    todo = []
    if config["data"]["root"] and config["data"]["root"] not in spec["data.root"].choices:
        todo.append(f"its data {config['data']['root']} is not among the data sets found here: pick one")
    if config["val_targets"]:
        todo.append(f"its verification sets {', '.join(config['val_targets'])}: pick their .bin files")
    _flash("import", "success", f"Imported {name}.py ({config['network']} + {config['loss']}) into the form"
           + "".join(f"; {t}" for t in [*notes, *todo]) + ".")


def _number_box(spec, values: dict, name: str, container) -> None:
    """A float with no upper bound and a format of its own (lr 0.0005, weight decay 5e-4): a number box with
    that many digits, which the shared controls do not show."""
    p, key = spec[name], f"{PAGE}:{name}"
    if key not in st.session_state:
        st.session_state[key] = float(values[name])
    values[name] = container.number_input(p.title, min_value=float(p.min), step=p.step, format=p.format, key=key,
                                          help=p.help)


def _draw(spec, values: dict, names, container, **kwargs) -> None:
    for name in names:
        p = spec[name]
        if p.kind == "float" and p.max is None and p.format:
            _number_box(spec, values, name, container)
        else:
            controls(PAGE, spec, (name,), container, **kwargs)


def _fmt(value, spec: str) -> str:
    return format(value, spec) if isinstance(value, int | float) else ""


def _stats_page() -> str | None:
    """The registered page that shows Table 3 and the hypersphere for an embeddings.npz, if there is one."""
    for word in ("stat", "table", "sphere"):
        for path, *_ in PAGES:
            if word in Path(path).stem and path != "pages/backend.py":
                return path
    return None


found = find_datasets()
spec = L.launch_spec(datasets=found)
values = page_state(PAGE, spec)
_fit_choices(spec, values)
_apply_preset(spec, values)
if st.session_state.pop(f"{PAGE}:goto_stats", False) and _stats_page():
    st.switch_page(_stats_page())

tab_runs, tab_launch, tab_data = st.tabs(["Runs", "Launch a run", "Prepare data"])

# ---------------------------------------------------------------------------------------------
# launch form

with tab_launch:
    st.markdown("Pick a preset, then change what you need. Every value is checked before anything starts; data "
                "sets are the ones found in the data roots (make one on *Prepare data*).")
    with st.expander("Import an insightface arcface_torch config (configs/*.py)", icon=":material/upload_file:"):
        st.caption("Its keys go into the form below (margin_list, network, lr, batch_size, num_epoch …), with what "
                   "arcface_torch's train_v2.py fixes in code: s = 64, momentum 0.9, the margin without gradient, "
                   "its lr schedule. The file is read, never run; a key this trainer does not support is named.")
        st.file_uploader("arcface_torch config", type=["py"], key=f"{PAGE}:import_file")
        st.text_area("… or paste it", key=f"{PAGE}:import_text", height=120,
                     placeholder="from easydict import EasyDict as edict\nconfig = edict()\n"
                                 "config.margin_list = (1.0, 0.5, 0.0)\n…")
        st.button("Import into the form", key=f"{PAGE}:import", icon=":material/input:", on_click=_import,
                  args=(spec,))
        _show_flash("import")
    left, mid, right = st.columns(3)
    loss_names = ("loss", *(LOSS_KEYS[k] for k in LOSSES[values["loss"]].params))
    columns = {left: ("preset", "network", "embedding_size"),
               mid: ("sample_rate", "amp", "batch_size", "optimizer", "lr", "num_epoch", "warmup_epoch",
                     "lr_schedule", "max_steps", "seed"),
               right: ("data.format", "data.root", "data.num_classes", "data.num_images", "val_targets")}
    for column, names in columns.items():
        _draw(spec, values, names, column)
    controls(PAGE, spec, loss_names, left, low_dim=False, defaults_for={"loss": L.loss_values})
    schedule = ("log_every", "checkpoint_every", "val_every", "num_workers", "pin_memory")
    with st.expander("Schedule of logs, checkpoints and verification; data loading"):
        _draw(spec, values, schedule, st.container())
    torchrun = tuple(p.name for p in L.LAUNCH_SPEC)
    placed = {*(n for names in columns.values() for n in names), *schedule, *torchrun, "loss", *LOSS_KEYS.values()}
    with st.expander("More settings (every other key of the run config)"):
        _draw(spec, values, [p.name for p in spec if p.name not in placed], st.container())
    st.markdown("**Where it runs** (torchrun)")
    c1, c2, c3, c4, c5 = st.columns(5)
    controls(PAGE, spec, ("nproc_per_node",), c1)
    controls(PAGE, spec, ("nnodes",), c2)
    controls(PAGE, spec, ("node_rank",), c3)
    addr = L.LAUNCH_SPEC["master_addr"]
    master_addr = c4.text_input(addr.title, value=addr.default, key=f"{PAGE}:master_addr", help=addr.help)
    controls(PAGE, spec, ("master_port",), c5)
    if values["nnodes"] > 1 and master_addr.strip() in ("127.0.0.1", "localhost", "::1"):
        st.warning("With several nodes, the master address must be node 0's address as the other machines "
                   "see it, not the loopback address.", icon=":material/lan:")
    st.text_input("run name (optional)", key=f"{PAGE}:name", max_chars=100)
    sync_url(spec, values)
    try:
        config, problem = L.config_from_values(spec.validate(values), _base(values)), None
    except ValueError as exc:
        config, problem = None, str(exc)
    with st.expander("The config.json that will be written"):
        st.json(config or {})
    if problem:
        st.warning(problem, icon=":material/error:")
    st.button("Launch", type="primary", disabled=config is None, key=f"{PAGE}:launch",
              icon=":material/rocket_launch:", on_click=_launch, args=(spec,))
    _show_flash("launch")
    with st.expander("Launch a grid: one run per pair of values (a sweep map of full-scale runs)"):
        st.caption("The config above, with two of its numbers changed from run to run. Each cell is a run of its "
                   "own; at most N train at once here (the others wait in the queue), or a Slurm array job trains "
                   "them. The Runs tab shows their verification accuracy as a map.")
        g = f"{PAGE}:grid"
        keys = G.axis_keys()
        c1, c2, c3, c4 = st.columns(4)
        c1.selectbox("x key (columns)", keys, index=keys.index("lr"), key=g + "_x")
        c2.text_input("x values", "0.05,0.1", key=g + "_x_values")
        c3.selectbox("y key (rows)", keys, index=keys.index("s"), key=g + "_y")
        c4.text_input("y values", "32,64", key=g + "_y_values")
        c1, c2 = st.columns(2)
        c1.number_input("at most N at once", 1, 64, 1, key=g + "_slots")
        c2.radio("where", G.MODES, key=g + "_mode", horizontal=True,
                 format_func={"local": "here (queue)", "slurm": "Slurm array job"}.get)
        st.button("Launch the grid", disabled=config is None, key=g + "_launch", icon=":material/grid_view:",
                  on_click=_launch_grid, args=(spec,))
        _show_flash("grid")

# ---------------------------------------------------------------------------------------------
# data preparation

with tab_data:
    first_root = settings.data_roots()[0]
    st.markdown(f"Paths are relative to `{first_root}` (or absolute inside the data roots); anything outside "
                "the data roots is refused.")
    with st.expander("Synthetic face set (RecordIO + image folder + val.bin)", expanded=True):
        c1, c2, c3, c4 = st.columns(4)
        c1.text_input("output folder", "synthetic_faces", key=f"{PAGE}:syn_out")
        c2.number_input("identities", 2, 100_000, 20, key=f"{PAGE}:syn_ids")
        c3.number_input("images per identity", 1, 1000, 10, key=f"{PAGE}:syn_per")
        c4.number_input("seed", 0, 2**31 - 1, 0, key=f"{PAGE}:syn_seed")
        st.button("Generate", key=f"{PAGE}:syn_go", on_click=_data_action,
                  args=("syn", "Synthetic faces", prepare_synthetic, "syn_out", "syn_ids", "syn_per", "syn_seed"),
                  kwargs={"ints": ("syn_ids", "syn_per", "syn_seed")})
        _show_flash("syn")
    with st.expander("RecordIO from an image folder (one sub-folder per identity)"):
        c1, c2 = st.columns(2)
        c1.text_input("image folder", key=f"{PAGE}:rec_in")
        c2.text_input("output folder", key=f"{PAGE}:rec_out")
        st.button("Build RecordIO", key=f"{PAGE}:rec_go", on_click=_data_action,
                  args=("rec", "RecordIO", prepare_rec, "rec_in", "rec_out"))
        _show_flash("rec")
    with st.expander("Verification .bin from a pairs file ('path_a path_b 1|0' per line)"):
        c1, c2 = st.columns(2)
        c1.text_input("pairs file", key=f"{PAGE}:bin_in")
        c2.text_input("output .bin", key=f"{PAGE}:bin_out")
        st.button("Build .bin", key=f"{PAGE}:bin_go", on_click=_data_action,
                  args=("bin", "Verification set", prepare_bin, "bin_in", "bin_out"))
        _show_flash("bin")

# ---------------------------------------------------------------------------------------------
# runs


def _details(run_id: int) -> None:
    """One run, redrawn every 2 s while it runs (a fragment): status, metrics, curves, Stop/Resume, log."""
    registry.reconcile()
    run = registry.get(run_id)
    if (run.status in ("running", "queued")) != (st.session_state.get(f"{PAGE}:live") == run_id):
        st.rerun()  # it ended, or was resumed: redraw the whole page, which starts or stops the timer
    color, icon = STATUS_BADGE.get(run.status, ("gray", None))
    st.subheader(f"Run {run.id}: {run.name}")
    st.badge(run.status, icon=icon, color=color)
    st.caption(f"{run.status}" + (f" — {run.message}" if run.message else "") + f" · `{run.run_dir}`")
    m = run.last_metrics
    cols = st.columns(5)
    cols[0].metric("step", m.get("step", "–"))
    cols[1].metric("loss", _fmt(m.get("loss"), ".4f") or "–")
    cols[2].metric("samples/s", _fmt(m.get("samples_per_sec"), ".1f") or "–")
    cols[3].metric("lr", _fmt(m.get("lr"), ".3g") or "–")
    eta = m.get("eta_s") if run.status == "running" else None
    cols[4].metric("time left", f"{eta / 60:.1f} min" if isinstance(eta, int | float) else "–")
    records = registry.metrics(run.id)
    if records:
        st.plotly_chart(metrics_figure(records), key=f"{PAGE}:curves")
    else:
        st.info("No metrics yet: the trainer writes metrics.jsonl after its first logged step.")
    b1, b2, _ = st.columns([1, 1, 4])
    b1.button("Stop", key=f"{PAGE}:stop", disabled=run.status not in ("running", "queued"), on_click=_stop,
              args=(run.id,), help="SIGTERM to every rank, SIGKILL to what is left after 10 s.")
    b2.button("Resume", key=f"{PAGE}:resume", disabled=run.status in ("running", "queued"), on_click=_resume,
              args=(run.id,), help="Start again from the latest checkpoint, in the same run directory.")
    _show_flash("run")
    st.markdown("**Log** (last 40 lines)")
    st.code(registry.log_tail(run.id, 40) or "(empty)", language="text", wrap_lines=True, height=320)


def _grids() -> None:
    """The grids of runs as maps of their verification accuracy; a click on a cell selects its run below."""
    all_grids = G.grids(registry)
    if not all_grids:
        return
    by_id = {g.id: g for g in all_grids}
    if st.session_state.get(f"{PAGE}:grid_id") not in by_id:
        st.session_state[f"{PAGE}:grid_id"] = all_grids[0].id
    c1, c2 = st.columns(2)
    grid_id = c1.selectbox("Grid", list(by_id), key=f"{PAGE}:grid_id",
                           format_func=lambda i: f"{i}: {by_id[i].name} ({by_id[i].mode})")
    targets = G.grid_map(registry, grid_id)["targets"]
    target = c2.selectbox("Verification set", targets or ["(none yet)"], key=f"{PAGE}:grid_target")
    m = G.grid_map(registry, grid_id, target if targets else None)
    g = m["grid"]
    chart(grid_map_figure(m["z"], g.x_values, g.y_values, x_label=g.x_key, y_label=g.y_key,
                          colour_label=f"verification accuracy ({m['target'] or 'none yet'})", hover=m["hover"],
                          cell_text=m["text"], trained=m["trained"], zrange=(0.5, 1.0),
                          title=f"Grid {g.id}: {g.name}", height=420),
          key=f"{PAGE}-grid-map", on_click=lambda: _select_run(m))
    if not targets:
        st.caption("No verification accuracy yet: a cell is coloured once its run verifies on a set of its "
                   "config's val_targets; until then it shows its status. Grey ✗: failed or stopped.")
    if g.mode == "slurm":
        script = G.slurm_array_script(registry, grid_id)
        st.download_button("Download the Slurm array job (grid.sbatch)", script, file_name=f"grid{grid_id}.sbatch",
                           key=f"{PAGE}:grid_sbatch", icon=":material/download:")
        with st.expander("Slurm array script"):
            st.code(script, language="bash")


with tab_runs:
    G.reconcile(registry)  # a grid's queue moves on (its watcher does it too, with nobody watching)
    _grids()
    all_runs = registry.list()
    if not all_runs:
        st.info("No runs yet. Launch one on the *Launch a run* tab, or from the command line: "
                "`python -m arcface_viz runs launch --config PRESET`.")
    else:
        table = []
        for r in all_runs:
            m = r.last_metrics
            val = ", ".join(f"{t} {100 * v['acc']:.1f}%" for t, v in (m.get("val") or {}).items()
                            if isinstance(v.get("acc"), int | float))
            table.append({"id": r.id, "status": r.status, "name": r.name, "ranks": r.world_size,
                          "step": m.get("step", ""), "loss": _fmt(m.get("loss"), ".4f"),
                          "samples/s": _fmt(m.get("samples_per_sec"), ".1f"), "verification": val,
                          "started": time.strftime("%Y-%m-%d %H:%M", time.localtime(r.started or r.created))})
        st.dataframe(table, hide_index=True, width="stretch")
        ids = [r.id for r in all_runs]
        if st.session_state.get(f"{PAGE}:run") not in ids:
            st.session_state[f"{PAGE}:run"] = ids[0]
        by_id = {r.id: r for r in all_runs}
        run_id = st.selectbox("Run", ids, key=f"{PAGE}:run", format_func=lambda i: f"{i}: {by_id[i].name}")
        run = by_id[run_id]
        live = run.status in ("running", "queued")
        if live:
            st.session_state[f"{PAGE}:live"] = run_id
        else:
            st.session_state.pop(f"{PAGE}:live", None)
        st.fragment(_details, run_every=2.0 if live else None)(run_id)

        st.markdown("**Command lines** (argument lists shell-quoted for copying)")
        st.code(registry.command_line(run_id), language="bash", wrap_lines=True)
        st.caption("Resume from the latest checkpoint:")
        st.code(registry.command_line(run_id, resume=True), language="bash", wrap_lines=True)
        if run.nnodes > 1:
            st.caption(f"Start the other nodes (the config path must be reachable there, e.g. a shared disk; "
                       f"node 0 listens on {run.master_addr}:{run.master_port}):")
            st.code("\n".join(registry.command_line(run_id, node_rank=k) for k in range(run.nnodes)
                              if k != run.node_rank), language="bash", wrap_lines=True)
        with st.expander("Slurm script"):
            c1, c2 = st.columns(2)
            partition = c1.text_input("partition (optional)", key=f"{PAGE}:partition")
            time_limit = c2.text_input("time limit", "24:00:00", key=f"{PAGE}:time_limit")
            try:
                script = registry.slurm_script(run_id, partition=partition.strip() or None,
                                               time_limit=time_limit.strip())
            except ValueError as exc:
                st.warning(str(exc))
            else:
                st.code(script, language="bash")
                st.download_button("Download run.sbatch", script, file_name=f"run{run_id}.sbatch",
                                   key=f"{PAGE}:sbatch")

        emb = run.path / "embeddings.npz"
        if emb.is_file():
            if _stats_page():
                st.button("Open the embeddings in the hypersphere and Table 3 views", key=f"{PAGE}:open_emb",
                          icon=":material/public:", on_click=_open_embeddings, args=(str(emb),))
            st.caption("Table 3 statistics from the command line:")
            st.code(f"python -m arcface_viz stats --embeddings {emb}", language="bash", wrap_lines=True)
        with st.expander("Registry row (JSON)"):
            st.code(json.dumps(run.to_dict(), indent=2, default=str), language="json")
