"""The run registry and launcher (issue 6): real SQLite, real torchrun processes, real process groups and signals.

Every test points ARCFACE_VIZ_RUNS / ARCFACE_VIZ_DATA_ROOTS / ARCFACE_VIZ_REGISTRY at a temporary folder, so
nothing touches ./runs.  Trainer runs use the tiny CPU preset (MobileFaceNet, a few steps, gloo).
"""

import json
import os
import shlex
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from app_helpers import APP
from streamlit.testing.v1 import AppTest

from arcface_viz import settings
from arcface_viz.fullscale import launch as L
from arcface_viz.fullscale import metrics as M
from arcface_viz.fullscale import processes as P
from arcface_viz.fullscale import runs as R
from arcface_viz.params import ParamError
from arcface_viz.plots.runs import metrics_figure

TIMEOUT = 240  # seconds a run may take on two busy cores before a test gives up (never asserted)


@pytest.fixture
def env(tmp_path, monkeypatch):
    for k in ("ARCFACE_VIZ_HOSTED", "ARCFACE_VIZ_BACKEND"):
        monkeypatch.delenv(k, raising=False)
    data = tmp_path / "data"
    data.mkdir()
    monkeypatch.setenv("ARCFACE_VIZ_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("ARCFACE_VIZ_DATA_ROOTS", str(data))
    monkeypatch.setenv("ARCFACE_VIZ_REGISTRY", str(tmp_path / "registry.sqlite3"))
    return tmp_path


def tiny(**overrides):
    cfg = L.load_launch_config("tiny_cpu")
    cfg.update(overrides)
    return cfg


def _stat(pid):
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rfind(")") + 2:].split()


def alive(pid):
    st = _stat(pid)
    return st is not None and st[0] not in ("Z", "X")


def descendants(pid):
    """Live processes below ``pid`` (torchrun's ranks, which sit in sessions of their own)."""
    children = {}
    for name in os.listdir("/proc"):
        if name.isdigit() and (st := _stat(int(name))):
            children.setdefault(int(st[1]), []).append(int(name))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return [p for p in out if alive(p)]


def group_members(pgid):
    return [int(n) for n in os.listdir("/proc") if n.isdigit() and (st := _stat(int(n))) and st[2] == str(pgid)
            and st[0] not in ("Z", "X")]


def wait_for(predicate, what, timeout=TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def train_steps(records):
    return [r["step"] for r in records if r.get("kind") == "train"]


# ---------------------------------------------------------------------------------------------- settings


def test_confine_accepts_paths_inside_the_roots(tmp_path):
    root = tmp_path / "data"
    (root / "faces").mkdir(parents=True)
    assert settings.confine(root / "faces", [root]) == (root / "faces").resolve()
    assert settings.confine("faces/new/train", [root], base=root) == (root / "faces/new/train").resolve()
    assert settings.confine(root / "faces" / ".." / "other", [tmp_path / "x", root]) == (root / "other").resolve()


@pytest.mark.parametrize("make,reason", [
    (lambda root: "../../etc/passwd", "'..'"),
    (lambda root: str(root / ".." / "elsewhere"), "'..'"),
    (lambda root: "/etc", "outside the allowed folders"),
    (lambda root: str(root) + "-sibling/x", "outside the allowed folders"),
    (lambda root: str(root / "link" / "secret"), "symlink"),
])
def test_confine_refuses_escapes_with_a_message(tmp_path, make, reason):
    root = tmp_path / "data"
    root.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "link").symlink_to(outside)  # a symlink inside the root that leads out of it
    with pytest.raises(ValueError, match="outside the allowed folders") as err:
        settings.confine(make(root), [root], base=root)
    assert reason in str(err.value)


def test_settings_read_the_environment(env, monkeypatch):
    assert settings.runs_root() == (env / "runs").resolve()
    assert settings.registry_path() == (env / "registry.sqlite3").resolve()
    monkeypatch.setenv("ARCFACE_VIZ_DATA_ROOTS", os.pathsep.join([str(env / "a"), str(env / "b")]))
    assert settings.data_roots() == [(env / "a").resolve(), (env / "b").resolve()]
    monkeypatch.delenv("ARCFACE_VIZ_REGISTRY")
    assert settings.registry_path() == settings.runs_root() / "registry.sqlite3"
    assert not settings.backend_enabled() and not settings.hosted()
    assert settings.backend_enabled(True) and settings.backend_enabled("true") and not settings.backend_enabled(0)
    monkeypatch.setenv("ARCFACE_VIZ_BACKEND", "1")
    assert settings.backend_enabled()
    assert R.reconcile_existing(env / "none.sqlite3") == [] and not (env / "none.sqlite3").exists()


# ---------------------------------------------------------------------------------------------- validation


def test_launch_validation_fails_before_anything_starts(env):
    reg = R.Registry()
    outside = env / "outside"
    outside.mkdir()
    (env / "data" / "escape").symlink_to(outside)
    bad = [
        (dict(config=tiny(batch_size=1)), "batch_size"),
        (dict(config=tiny(learning_rate=0.1)), "unknown config key"),
        (dict(config=tiny(loss="nope")), "loss 'nope' is unknown"),
        (dict(config=tiny(data={"format": "rec", "root": "/etc"})), "data.root '/etc' is outside"),
        (dict(config=tiny(data={"format": "rec", "root": str(env / "data" / ".." / "outside")})), "'..'"),
        (dict(config=tiny(data={"format": "rec", "root": str(env / "data" / "escape")})), "symlink"),
        (dict(config=tiny(data={"format": "rec", "root": str(env / "data" / "missing")})), "lacks train.rec"),
        (dict(config=tiny(val_targets=["/etc/lfw.bin"])), "outside"),
        (dict(config=tiny(), nproc_per_node=0), "nproc_per_node"),
        (dict(config=tiny(), nnodes=2, node_rank=2), "node_rank"),
        (dict(config=tiny(), master_addr="--help"), "master_addr"),
        (dict(config=tiny(), master_addr="a b"), "master_addr"),
        (dict(config=tiny(), master_port=70000), "master_port"),
    ]
    for kwargs, message in bad:
        with pytest.raises(ValueError, match=None) as err:
            reg.launch(**kwargs)
        assert message in str(err.value), (kwargs, str(err.value))
    assert reg.list() == []  # no row, no run directory, no process
    assert not any(p.is_dir() for p in (env / "runs").glob("*"))


def test_launch_form_values_round_trip_to_a_config():
    spec = L.launch_spec()
    values = spec.defaults()
    cfg = L.config_from_values(values)
    assert cfg["network"] == "mobilefacenet" and cfg["max_steps"] == 6 and cfg["data"]["format"] == "synthetic"
    values.update(loss="cosface", m3=0.35, max_steps=0, lr=0.0005, optimizer="adamw")
    cfg = L.config_from_values(spec.validate(values))
    assert cfg["loss"] == "cosface" and cfg["m3"] == 0.35 and cfg["m2"] is None  # only the loss's own margins
    assert cfg["max_steps"] is None and cfg["lr"] == 0.0005 and cfg["optimizer"] == "adamw"
    assert L.values_from_config(cfg)["m3"] == 0.35
    with pytest.raises(ParamError, match="batch size"):
        spec.validate({**values, "batch_size": 1})


def test_metrics_reader_tolerates_a_partial_last_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    lines = [{"kind": "train", "time": 1.0, "step": s, "epoch": 0, "loss": 10.0 / s, "lr": 0.1,
              "samples_per_sec": 5.0, "eta_s": 3} for s in (1, 2, 3)]
    lines.insert(2, {"kind": "val", "time": 1.5, "step": 2, "target": "lfw", "acc": 0.75, "std": 0.1,
                     "threshold": 0.3})
    path.write_text("".join(json.dumps(x) + "\n" for x in lines) + '{"kind": "train", "step": 4, "lo')
    records = M.read_metrics(path)
    assert train_steps(records) == [1, 2, 3]
    summary = M.summarize_metrics(records)
    assert summary["step"] == 3 and summary["val"]["lfw"]["acc"] == 0.75 and "done" not in summary
    series = M.metric_series(records)
    assert series["train"]["step"] == [1, 2, 3] and series["val:lfw"]["acc"] == [0.75]
    assert len(metrics_figure(records).data) == 4


# ---------------------------------------------------------------------------------------------- real runs


def test_a_tiny_run_finishes_and_the_registry_survives_a_restart(env, monkeypatch):
    reg = R.Registry()
    rid = reg.launch(tiny(), name="tiny")
    run = reg.get(rid)
    assert run.status == "running" and run.pid and run.pgid == run.pid  # torchrun leads its own process group
    assert os.getpgid(run.pid) == run.pid != os.getpgid(0)
    run = reg.wait(rid, timeout=TIMEOUT)
    assert run.status == "finished", reg.log_tail(rid, 40)
    assert run.exit_code == 0 and run.last_metrics["done"] and run.last_metrics["step"] == 6
    assert train_steps(reg.metrics(rid)) == [1, 2, 3, 4, 5, 6]
    assert (run.path / "model.pt").is_file() and json.loads((run.path / "config.json").read_text())["output"] == \
        run.run_dir
    with np.load(run.path / "embeddings.npz") as npz:
        assert npz["embeddings"].shape[0] == npz["labels"].shape[0] > 0
    assert "finished at step 6" in reg.log_tail(rid, 5)
    assert not descendants(run.pid) and not group_members(run.pgid)

    reopened = R.Registry(settings.registry_path())  # the app restarted: a new process would open the same file
    again = reopened.get(rid)
    assert (again.status, again.name, again.config, again.last_metrics) == \
        ("finished", "tiny", run.config, run.last_metrics)
    assert [r.id for r in reopened.list()] == [rid] and R.reconcile_existing() == []
    assert reopened.command_line(rid).endswith(shlex.join(run.command))

    monkeypatch.setenv("ARCFACE_VIZ_BACKEND", "1")  # the page offers the embeddings to the stats views
    at = _backend_page()
    codes = [c.value for c in at.code]
    assert f"python -m arcface_viz stats --embeddings {run.path / 'embeddings.npz'}" in codes
    assert any(c.value.startswith("finished") for c in at.caption) and len(at.get("plotly_chart")) == 1


def test_kill9_then_reconcile_fails_and_resume_continues_from_the_checkpoint(env, monkeypatch):
    from toy_data.faces import make_synthetic_faces, make_verification_bin

    data = env / "data" / "faces"
    make_synthetic_faces(data, num_identities=6, images_per_identity=6, formats=("rec",))
    make_verification_bin(data / "val.bin", num_identities=4, pairs=10)
    every = 2
    cfg = tiny(data={"format": "rec", "root": "faces", "num_classes": None, "num_images": None},
               val_targets=["val"], val_every=2, checkpoint_every=every, num_epoch=200, max_steps=300,
               embeddings_sample=6, batch_size=4)
    monkeypatch.chdir(env / "data")  # a relative data.root is read from the working directory, as the trainer does
    reg = R.Registry()
    rid = reg.launch(cfg, nproc_per_node=2)
    run = reg.get(rid)
    assert run.config["data"]["root"] == str(data.resolve())

    def progressed():
        latest = json.loads((run.path / "checkpoints" / "latest.json").read_text()) \
            if (run.path / "checkpoints" / "latest.json").is_file() else None
        steps = train_steps(M.read_metrics(run.path / "metrics.jsonl"))
        assert reg.get(rid).status == "running", reg.log_tail(rid, 40)
        return latest and steps and max(steps) > latest["step"]

    wait_for(progressed, "a checkpoint and a step after it")
    ranks = descendants(run.pid)
    assert len([p for p in ranks if "arcface_viz.train" in Path(f"/proc/{p}/cmdline").read_bytes().decode()]) == 2

    os.killpg(run.pgid, signal.SIGKILL)  # kill -9 of the whole process group (the ranks have sessions of their own)
    wait_for(lambda: reg.reconcile() == [rid], "reconcile to notice the dead run", timeout=30)  # SIGKILL lands async
    run = reg.get(rid)
    assert run.status == "failed" and "ended without finishing" in run.message
    assert not any(alive(p) for p in [run.pid, *ranks]), [(p, _stat(p), Path(f"/proc/{p}/cmdline").read_bytes())
                                                          for p in [run.pid, *ranks] if alive(p)]
    assert P.run_processes(run) == []
    assert (run.path / "train.log").is_file() and (run.path / "launcher.log").is_file()  # the logs are kept
    checkpoint = json.loads((run.path / "checkpoints" / "latest.json").read_text())
    assert checkpoint["world_size"] == 2
    before = train_steps(reg.metrics(rid))
    assert 0 <= max(before) - checkpoint["step"] <= every  # at most one checkpoint interval is lost

    resumed_at = time.time()
    run = reg.resume(rid)
    assert run.status == "running" and run.launches == 2 and run.command[-1] == "--resume"

    def new_steps():
        assert reg.get(rid).status == "running", reg.log_tail(rid, 40)
        recs = [r for r in M.read_metrics(run.path / "metrics.jsonl") if r.get("time", 0) >= resumed_at]
        return [r["step"] for r in recs if r["kind"] == "train"][:1]

    first = wait_for(new_steps, "the first step after resume")[0]
    assert first == checkpoint["step"] + 1
    steps = train_steps(reg.metrics(rid))
    assert steps == sorted(set(steps)) and steps[:checkpoint["step"]] == list(range(1, checkpoint["step"] + 1))
    series = wait_for(lambda: (s := M.metric_series(reg.metrics(rid))) and "val:val" in s and s, "a verification")
    assert all(0.0 <= a <= 1.0 for a in series["val:val"]["acc"]) and series["val:val"]["step"][0] % 2 == 0

    ranks = descendants(run.pid)
    stopped = reg.stop(rid, grace=15)
    assert stopped.status == "stopped" and stopped.ended is not None
    assert not any(alive(p) for p in [run.pid, *ranks]), "a rank survived stop"
    assert not group_members(run.pgid) and P.run_processes(stopped) == []
    with pytest.raises(ValueError, match="not running"):
        reg.stop(rid)


def test_multinode_command_lines_slurm_script_and_stop_while_waiting_for_peers(env):
    reg = R.Registry()
    port = P.free_port()
    rid = reg.launch(tiny(), nproc_per_node=2, nnodes=2, node_rank=0, master_addr="127.0.0.1", master_port=port)
    run = reg.get(rid)
    cfg_path = str(run.path / "config.json")
    expected = {"--nproc_per_node": "2", "--nnodes": "2", "--master_addr": "127.0.0.1", "--master_port": str(port),
                "--config": cfg_path}
    for rank in (0, 1):
        line = reg.command_line(rid, node_rank=rank)
        argv = shlex.split(line.split(" && ", 1)[1])
        assert argv[1:3] == ["-m", "torch.distributed.run"]
        assert argv[argv.index("--node_rank") + 1] == str(rank)
        for flag, value in expected.items():
            assert argv[argv.index(flag) + 1] == value
        assert argv[argv.index("-m", 3) + 1] == "arcface_viz.train"
    assert shlex.split(reg.command_line(rid, resume=True))[-1] == "--resume"
    with pytest.raises(ValueError, match="node_rank"):
        reg.command_line(rid, node_rank=2)

    script = reg.slurm_script(rid, partition="gpu", time_limit="2:00:00")
    assert script.startswith("#!/bin/bash")
    for line in ("#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=1", "#SBATCH --gpus-per-node=2",
                 "#SBATCH --partition=gpu", "#SBATCH --time=2:00:00"):
        assert line in script
    assert "head_node=$(scontrol show hostnames \"$SLURM_JOB_NODELIST\" | head -n 1)" in script
    assert "srun " in script and "-m torch.distributed.run" in script
    assert "--nnodes 2 --nproc_per_node 2" in script and '--rdzv_endpoint "$head_node:29500"' in script
    assert f"-m arcface_viz.train --config {shlex.quote(cfg_path)}" in script
    with pytest.raises(ValueError, match="partition"):
        reg.slurm_script(rid, partition="gpu; rm -rf /")

    # node 0 waits for node 1, which never comes: Stop must end torchrun anyway
    def listening():
        import socket

        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", port)) == 0

    wait_for(listening, "node 0's rendezvous store to listen")
    stopped = reg.stop(rid, grace=10)
    assert stopped.status == "stopped" and not group_members(run.pgid) and P.run_processes(stopped) == []
    (run.path / "checkpoints").mkdir(exist_ok=True)
    (run.path / "checkpoints" / "latest.json").write_text(json.dumps({"step": 3, "world_size": 3}))
    with pytest.raises(ValueError, match="saved by 3 ranks"):
        reg.resume(rid)


# ---------------------------------------------------------------------------------------------- the page


def _backend_page(secrets=None):
    at = AppTest.from_file(APP, default_timeout=120)
    for k, v in (secrets or {}).items():
        at.secrets[k] = v
    at.run()
    at.switch_page("pages/backend.py").run()
    assert not at.exception, at.exception
    return at


def test_hosted_page_is_locked_until_the_operator_enables_it(env, monkeypatch):
    monkeypatch.setenv("ARCFACE_VIZ_HOSTED", "1")
    at = _backend_page()
    notice = " ".join(w.value for w in at.warning) + " ".join(m.value for m in at.markdown)
    assert "locked" in notice and "hosted for the public" in notice and "ARCFACE_VIZ_BACKEND=1" in notice
    assert not at.button and not at.tabs and not at.error
    assert not (env / "registry.sqlite3").exists()  # a locked page does not even open the registry

    monkeypatch.setenv("ARCFACE_VIZ_BACKEND", "1")
    at = _backend_page()
    assert not at.warning and any(b.label == "Launch" for b in at.button)


def test_secrets_enable_the_page_behind_a_password(env):
    at = _backend_page({"backend": {"enabled": True, "password": "s3cret"}})
    assert not at.button and at.text_input[0].label == "Backend password"
    at.text_input[0].input("wrong").run()
    assert any("Wrong password" in w.value for w in at.warning) and not at.tabs
    at.text_input[0].input("s3cret").run()
    assert not at.exception and any(b.label == "Launch" for b in at.button)


def test_page_prepares_data_in_the_roots_and_refuses_escapes(env, monkeypatch):
    monkeypatch.setenv("ARCFACE_VIZ_BACKEND", "1")
    at = _backend_page()
    at.text_input(key="backend:syn_out").input("synth")
    at.number_input(key="backend:syn_ids").set_value(3)
    at.number_input(key="backend:syn_per").set_value(2)
    next(b for b in at.button if b.label == "Generate").click().run()
    assert not at.exception and any("Synthetic faces: done" in s.value for s in at.success)
    assert (env / "data" / "synth" / "train.rec").is_file() and (env / "data" / "synth" / "val.bin").is_file()
    at.run()  # the new set is offered in the launch form
    options = next(s for s in at.selectbox if s.label == "data set").options
    synth = (env / "data" / "synth").resolve()
    assert f"RecordIO: {synth}" in options and f"image folder: {synth / 'images'}" in options
    assert str(synth / "val.bin") in next(m for m in at.multiselect if m.label == "verification sets").options

    at.text_input(key="backend:rec_in").input("synth/images")
    at.text_input(key="backend:rec_out").input("../../escaped").run()
    next(b for b in at.button if b.label == "Build RecordIO").click().run()
    assert any("outside the allowed folders" in e.value for e in at.error)
    assert not (env.parent / "escaped").exists()


def test_page_launches_follows_and_stops_a_run(env, monkeypatch):
    monkeypatch.setenv("ARCFACE_VIZ_BACKEND", "1")
    at = _backend_page()
    next(n for n in at.number_input if n.label == "max steps (0 = all epochs)").set_value(200)
    next(b for b in at.button if b.label == "Launch").click().run()
    assert not at.exception and any("Run 1 started" in s.value for s in at.success), [e.value for e in at.error]
    reg = R.Registry()
    assert reg.get(1).config["max_steps"] == 200 and reg.get(1).status == "running"
    at.run()
    assert any(c.value.startswith("running") for c in at.caption)
    codes = " ".join(c.value for c in at.code)
    assert "-m torch.distributed.run" in codes and "--resume" in codes
    next(b for b in at.button if b.label == "Stop").click().run()
    assert not at.exception and reg.get(1).status == "stopped" and P.run_processes(reg.get(1)) == []
    assert next(b for b in at.button if b.label == "Resume").disabled is False


def test_launch_form_shows_every_key_of_the_run_config_and_a_loss_loads_its_values(env, monkeypatch):
    from arcface_viz.fullscale.config import LOSS_KEYS
    from arcface_viz.losses import LOSSES

    monkeypatch.setenv("ARCFACE_VIZ_BACKEND", "1")
    at = _backend_page()
    shown = {w.label for kind in ("slider", "number_input", "selectbox", "toggle", "multiselect", "text_input")
             for w in at.get(kind)}
    hidden = set(LOSS_KEYS.values()) - {LOSS_KEYS[k] for k in LOSSES["arcface"].params}  # other losses' own
    for p in L.launch_spec():
        if p.name not in hidden:
            assert p.title in shown, p.name
    at.selectbox(key="backend:loss").select("cosface").run()
    assert not at.exception and at.slider(key="backend:m3").value == 0.35 and at.slider(key="backend:s").value == 64
    config = json.loads(at.json[0].value)
    assert (config["loss"], config["m3"], config["m2"], config["loss_params"]["easy_margin"]) == \
        ("cosface", 0.35, None, None)


def test_page_imports_an_arcface_torch_config_into_the_launch_form(env, monkeypatch):
    """A pasted arcface_torch config (its wf12m_conflict_r50_pfc03_filter04.py) fills the form; one we cannot
    train is refused with the key named, and the form keeps what it had."""
    from arcface_torch_configs import CONFIGS

    monkeypatch.setenv("ARCFACE_VIZ_BACKEND", "1")
    at = _backend_page()
    at.text_area(key="backend:import_text").input(CONFIGS["wf12m_conflict_r50_pfc03_filter04"])
    next(b for b in at.button if b.label == "Import into the form").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    message = next(s.value for s in at.success if "Imported" in s.value)
    assert "iresnet50 + cosface" in message and "/train_tmp/WebFace12M_Conflict is not among the data sets" in message
    assert at.selectbox(key="backend:loss").value == "cosface"
    assert at.slider(key="backend:m3").value == 0.4
    assert at.slider(key="backend:interclass_filtering_threshold").value == 0.4
    assert at.slider(key="backend:sample_rate").value == 0.3
    assert at.selectbox(key="backend:lr_schedule").value == "polynomial_lr_warmup"
    config = json.loads(at.json[0].value)
    assert (config["loss"], config["m3"], config["interclass_filtering_threshold"], config["warmup_epoch"]) == \
        ("cosface", 0.4, 0.4, 2.0)
    assert config["description"] == "Converted from arcface_torch's pasted_config.py"
    assert config["data"] == {"format": "rec", "root": None, "num_classes": 1017970, "num_images": 12720066}

    at.text_area(key="backend:import_text").input(CONFIGS["wf42m_pfc03_40epoch_8gpu_vit_t"])
    next(b for b in at.button if b.label == "Import into the form").click().run()
    assert not at.exception
    assert any("Not imported" in e.value and "network 'vit_t_dp005_mask0'" in e.value for e in at.error)
    assert at.slider(key="backend:m3").value == 0.4  # the form kept the first import
