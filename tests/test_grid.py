"""Grids of full-scale runs (issue 15, backend half): held runs, at most N at once, a Slurm array job, the map.

Real SQLite, real torchrun processes of the tiny CPU preset on a small synthetic face set with a verification
.bin, a real watcher process, and the Slurm script's own command line run by bash (only ``srun`` is a shell
function that runs its arguments: there is no Slurm here)."""

import os
import subprocess

import numpy as np
import pytest
from app_helpers import APP, charts
from streamlit.testing.v1 import AppTest
from test_runs import env, wait_for  # noqa: F401 - the registry in temporary folders (test_runs' env), polling

from arcface_viz.fullscale import grid as G
from arcface_viz.fullscale import launch as L
from arcface_viz.fullscale import runs as R

TIMEOUT = 300  # seconds a grid of two tiny runs may take on two busy cores (a bound, never asserted)


@pytest.fixture
def tmp_env(env):  # noqa: F811 - test_runs' fixture, under a name of its own here
    return env


def faces_config(tmp_env):
    """The tiny preset on 6 synthetic identities with a verification set, verified every 2 of its 4 steps."""
    from toy_data.faces import make_synthetic_faces, make_verification_bin

    root = tmp_env / "data" / "faces"
    make_synthetic_faces(root, num_identities=6, images_per_identity=6, formats=("rec",))
    make_verification_bin(root / "val.bin", num_identities=4, pairs=10)
    cfg = L.load_launch_config("tiny_cpu")
    cfg.update(data={"format": "rec", "root": str(root), "num_classes": None, "num_images": None},
               val_targets=[str(root / "val.bin")], val_every=2, max_steps=4, checkpoint_every=1000,
               embeddings_sample=6, batch_size=4)
    return cfg


def test_axes_and_configs():
    assert "lr" in G.axis_keys() and "s" in G.axis_keys() and "data.num_classes" in G.axis_keys()
    assert G.parse_axis("lr=0.05, 0.1") == ("lr", [0.05, 0.1])
    for bad, words in (("network=a,b", "a number of the run config"), ("lr=", "at least one"),
                       ("lr=0.1,0.1", "repeated"), ("lr=-1", "axis lr: learning rate")):
        with pytest.raises(ValueError, match=words):
            G.parse_axis(bad)
    cells = G.grid_configs({"lr": 0.1, "data": {"format": "synthetic"}}, ("lr", [0.05, 0.1]), ("data.num_images", [8]))
    assert [(ix, iy, c["lr"], c["data"]) for ix, iy, c in cells] == [
        (0, 0, 0.05, {"format": "synthetic", "num_images": 8}), (1, 0, 0.1, {"format": "synthetic", "num_images": 8})]
    with pytest.raises(ValueError, match="both 'lr'"):
        G.grid_configs({}, ("lr", [1]), ("lr", [2]))


def test_a_bad_cell_stops_the_whole_grid_before_anything_exists(tmp_env):
    reg = R.Registry()
    base = L.load_launch_config("tiny_cpu")
    with pytest.raises(ValueError, match="batch_size"):
        G.launch_grid(reg, base, ("lr", [0.05]), ("batch_size", [4, 0]))
    assert reg.list() == [] and G.grids(reg) == []


def test_local_grid_runs_at_most_n_at_once_and_maps_verification_accuracy(tmp_env, monkeypatch):
    reg = R.Registry()
    grid_id = G.launch_grid(reg, faces_config(tmp_env), ("lr", [0.05, 0.1]), ("s", [32.0]), slots=1, name="lr × s")
    runs = reg.list(reconcile=False)
    assert sorted(r.status for r in runs) == ["queued", "running"]  # the first slot is taken at once
    held = [r for r in runs if r.status == "queued"][0]
    assert held.pid is None and held.message == R.HELD_MESSAGE and G.held_ids(reg) == {held.id}
    g = G.get_grid(reg, grid_id)
    assert G.watcher_alive(g.watcher)  # the watcher moves the queue on with nobody watching
    most = 0

    def done():
        nonlocal most
        statuses = [r.status for r in reg.list(reconcile=False)]  # only the watcher reconciles
        most = max(most, statuses.count("running"))
        return all(s in ("finished", "failed", "stopped") for s in statuses)

    wait_for(done, "both runs of the grid to end")
    assert most == 1
    assert [r.status for r in reg.list()] == ["finished", "finished"], reg.log_tail(held.id, 30)
    wait_for(lambda: not G.watcher_alive(g.watcher), "the watcher to leave once the grid is done", timeout=30)
    m = G.grid_map(reg, grid_id)
    z = np.array(m["z"])
    assert z.shape == (1, 2) and np.isfinite(z).all() and ((0 <= z) & (z <= 1)).all()
    assert m["target"] == m["targets"][0] and m["trained"] == [[True, True]]
    assert "lr = 0.05, s = 32.0" in m["hover"][0][0] and "%" in m["hover"][0][0]
    cells = G.cells(reg, grid_id)
    assert [(ix, iy, run.config["lr"], run.config["s"]) for ix, iy, run in cells] == [(0, 0, 0.05, 32.0),
                                                                                      (1, 0, 0.1, 32.0)]

    monkeypatch.setenv("ARCFACE_VIZ_BACKEND", "1")  # the runs list shows the grid as a map
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.switch_page("pages/backend.py").run()
    assert not at.exception
    maps = [c for c in charts(at) if (c["layout"].get("title") or {}).get("text", "").startswith("Grid")]
    heat = [t for t in maps[0]["data"] if t.get("name") == "values"] if len(maps) == 1 else []
    assert len(heat) == 1 and heat[0]["type"] == "heatmap"
    assert np.allclose(np.array(heat[0]["z"], dtype=float), z)


def test_a_held_run_can_be_taken_out_of_the_queue(tmp_env):
    reg = R.Registry()
    base = L.load_launch_config("tiny_cpu")
    grid_id = G.launch_grid(reg, base, ("lr", [0.05, 0.1]), ("s", [32.0]), slots=1, watch=False)
    (first, _, running), (_, _, held) = G.cells(reg, grid_id)
    assert running.status == "running" and held.status == "queued"
    assert reg.stop(held.id).status == "stopped" and reg.get(held.id).pid is None
    reg.wait(running.id, timeout=TIMEOUT)
    G.reconcile(reg)
    assert reg.get(held.id).status == "stopped"  # the queue never starts a run the user took out
    assert [r.status for r in reg.list()].count("finished") == 1


def test_slurm_grid_is_an_array_job_whose_tasks_train_each_cell(tmp_env):
    reg = R.Registry()
    grid_id = G.launch_grid(reg, faces_config(tmp_env), ("lr", [0.05, 0.1]), ("s", [32.0]), slots=1, mode="slurm",
                            name="on slurm")
    G.reconcile(reg)
    cells = G.cells(reg, grid_id)
    assert [run.status for _, _, run in cells] == ["queued", "queued"] and all(r.pid is None for _, _, r in cells)
    script = G.slurm_array_script(reg, grid_id, partition="gpu", time_limit="2:00:00")
    assert "#SBATCH --array=0-1%1" in script and "#SBATCH --partition=gpu" in script
    for _, _, run in cells:
        assert str(run.path / "config.json") in script
    path = tmp_env / "grid.sbatch"
    path.write_text(script)
    # task 0 of the array, as Slurm would start it (srun runs its arguments here)
    shim = 'srun() { "$@"; }; export -f srun; bash "$0"'
    done = subprocess.run(["bash", "-c", shim, str(path)], env={**os.environ, "SLURM_ARRAY_TASK_ID": "0"},
                          capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    G.reconcile(reg)
    first, second = (reg.get(run.id) for _, _, run in cells)
    assert first.status == "finished" and first.last_metrics["step"] == 4 and first.last_metrics["val"]
    assert second.status == "queued"  # task 1 has not run
    m = G.grid_map(reg, grid_id)
    assert np.isfinite(m["z"][0][0]) and np.isnan(m["z"][0][1])
    with pytest.raises(ValueError, match="time limit"):
        G.slurm_array_script(reg, grid_id, time_limit="soon")


def test_cli_registers_a_slurm_grid_and_prints_its_map(tmp_env):
    import json
    import sys

    sbatch = tmp_env / "grid.sbatch"
    cmd = [sys.executable, "-m", "arcface_viz", "runs", "grid", "--config", "tiny_cpu", "--x", "lr=0.05,0.1",
           "--y", "s=32,64", "--parallel", "2", "--slurm", str(sbatch), "--json"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT)
    assert out.returncode == 0, out.stderr
    grid = json.loads(out.stdout)
    assert grid["mode"] == "slurm" and len(grid["runs"]) == 4 and {r["status"] for r in grid["runs"]} == {"queued"}
    assert "#SBATCH --array=0-3%2" in sbatch.read_text()
    shown = subprocess.run([sys.executable, "-m", "arcface_viz", "runs", "grid-map", str(grid["grid"]), "--json"],
                           capture_output=True, text=True, timeout=TIMEOUT)
    m = json.loads(shown.stdout)
    assert m["x"] == {"key": "lr", "values": [0.05, 0.1]} and m["verification_accuracy"] == [[None, None]] * 2
    bad = subprocess.run([sys.executable, "-m", "arcface_viz", "runs", "grid", "--config", "tiny_cpu", "--x", "lr=-1",
                          "--y", "s=32"], capture_output=True, text=True, timeout=TIMEOUT)
    assert bad.returncode == 2 and "axis lr" in bad.stderr and "Traceback" not in bad.stderr
