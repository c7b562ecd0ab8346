"""The CLI with the losses after ArcFace, in real subprocesses: ``toy`` and ``mnist`` train every new name and
report its running state, ``table3 --extra`` adds columns, and bad values exit 2 with one line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from arcface_viz.losses import AFTER_ARCFACE, LOSS_PARAMS, LOSSES


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "arcface_viz", *args], capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("loss", AFTER_ARCFACE)
def test_toy_trains_every_new_loss(loss):
    r = _run("toy", "--loss", loss, "--steps", "60", "--json", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["loss"] == loss and rep["steps"] == 60
    assert set(rep["loss_state"]) == set(LOSSES[loss].state)
    own = {k for k in LOSSES[loss].params if not LOSS_PARAMS[k].modifier}  # the modifiers report only when set
    assert own <= set(rep["loss_params"]) <= set(LOSSES[loss].params)


def test_mnist_trains_a_new_loss_and_reports_its_state():
    r = _run("mnist", "--dataset", "digits", "--loss", "curricularface", "--epochs", "0.5", "--json", "--device",
             "cpu")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["loss"] == "curricularface" and rep["loss_state"]["t"] != 0.0


def test_table3_extra_columns():
    r = _run("table3", "--dataset", "fig3", "--steps", "30", "--dim", "8", "--extra", "elasticface_cos,adacos",
             "--json")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert [row["column"] for row in rows] == ["NS", "ArcFace", "IntraL", "InterL", "TripletL", "ElasticFace-Cos",
                                               "AdaCos"]
    assert rows[-1]["loss"] == "adacos" and rows[-2]["loss_params"]["s"] == 30.0


@pytest.mark.parametrize(("args", "message"), [
    (("toy", "--loss", "magface", "--l-a", "20", "--u-a", "10"), "u_a must be above l_a"),
    (("toy", "--loss", "subcenter_arcface", "--k", "0"), "--k"),
    (("toy", "--loss", "arcface", "--sigma", "0.1"), "does not use --sigma"),
    (("table3", "--extra", "arcface"), "extra"),
])
def test_bad_values_exit_2_with_one_line(args, message):
    r = _run(*args)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr
