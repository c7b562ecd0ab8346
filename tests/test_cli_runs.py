"""``python -m arcface_viz runs ...`` in real subprocesses, on a registry in a temporary folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from arcface_viz.fullscale import runs as R

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def cli_env(tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    env = {"ARCFACE_VIZ_RUNS": str(tmp_path / "runs"), "ARCFACE_VIZ_DATA_ROOTS": str(data),
           "ARCFACE_VIZ_REGISTRY": str(tmp_path / "registry.sqlite3")}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return tmp_path


def runs_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "arcface_viz", "runs", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=240, env=dict(os.environ))


def test_launch_list_show_json_and_a_run_this_process_did_not_start(cli_env):
    out = runs_cli("list", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == []

    # the CLI process launches and exits: torchrun outlives it, like a run launched before an app restart
    out = runs_cli("launch", "--config", "tiny_cpu", "--set", "max_steps=2", "--name", "cli run", "--json")
    assert out.returncode == 0, out.stderr
    launched = json.loads(out.stdout)
    assert launched["status"] == "running" and launched["config"]["max_steps"] == 2 and launched["name"] == "cli run"

    run = R.Registry().wait(launched["id"], timeout=240)  # this process is not its parent: the OS tells
    assert run.status == "finished" and run.exit_code is None and run.last_metrics["step"] == 2

    out = runs_cli("list", "--json")
    listed = json.loads(out.stdout)
    assert [(r["id"], r["status"], r["name"]) for r in listed] == [(launched["id"], "finished", "cli run")]

    out = runs_cli("show", str(launched["id"]), "--json")
    assert out.returncode == 0, out.stderr
    shown = json.loads(out.stdout)
    assert [m["step"] for m in shown["metrics"] if m["kind"] == "train"] == [1, 2]
    assert shown["metrics"][-1]["kind"] == "done"
    assert "-m torch.distributed.run" in shown["command_line"] and shown["resume_command_line"].endswith("--resume")
    assert shown["run_dir"] == launched["run_dir"] and Path(shown["run_dir"], "embeddings.npz").is_file()

    out = runs_cli("show", str(launched["id"]))
    assert out.returncode == 0 and "finished" in out.stdout and "finished at step 2" in out.stdout

    out = runs_cli("stop", str(launched["id"]))  # it already ended by itself
    assert out.returncode == 2 and "is not running (status finished)" in out.stderr


@pytest.mark.parametrize("args,message", [
    (["launch", "--config", "{bad}"], "neither a file nor a preset"),
    (["launch", "--config", "tiny_cpu", "--set", "batch_size=1"], "batch_size"),
    (["launch", "--config", "tiny_cpu", "--set", "data={\"format\": \"rec\", \"root\": \"/etc\"}"], "outside"),
    (["launch", "--config", "tiny_cpu", "--set", "oops"], "--set expects KEY=VALUE"),
    (["launch", "--config", "tiny_cpu", "--nproc-per-node", "0"], "nproc_per_node"),
    (["launch", "--config", "tiny_cpu", "--master-addr=-x"], "master_addr"),
    (["show", "42"], "no run with id 42"),
    (["resume", "42"], "no run with id 42"),
    (["stop", "42"], "no run with id 42"),
])
def test_bad_input_is_one_line_and_exit_2(cli_env, tmp_path, capsys, args, message):
    from arcface_viz.cli import main

    assert main(["runs", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not any(p.is_dir() for p in (tmp_path / "runs").glob("*"))


def test_bad_config_file_exits_2_in_a_subprocess(cli_env, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"network": "iresnet50", "loss": "arcface", "lr": -1}')
    out = runs_cli("launch", "--config", str(bad))
    assert out.returncode == 2 and "lr must be > 0" in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert json.loads(runs_cli("list", "--json").stdout) == []
