"""``python -m arcface_viz mnist`` in a real subprocess: JSON report on digits, clean errors for missing data."""

import json
import os
import subprocess
import sys


def _run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "arcface_viz", "mnist", *args], capture_output=True, text=True,
                          timeout=300, env={**os.environ, **(env or {})})


def test_json_report_on_digits(tmp_path):
    out = tmp_path / "emb.html"
    r = _run("--dataset", "digits", "--loss", "arcface", "--dim", "3", "--epochs", "3", "--json", "--device",
             "cpu", "--out", str(out))
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    for key in ("test_acc", "seconds", "images_per_second", "W-EC", "W-Inter", "Intra", "Inter", "Intra2",
                "Inter2", "epoch_test_acc", "loss_params", "config"):
        assert key in rep, key
    assert rep["dataset"] == "digits" and rep["dim"] == 3 and rep["n_test"] == 360
    assert rep["epochs"] == 3.0 and rep["steps"] == 3 * 11  # 1,437 images in batches of 128
    assert [e["epoch"] for e in rep["epoch_test_acc"]] == [1, 2, 3]
    assert 0.0 <= rep["test_acc"] <= 1.0 and rep["seconds"] > 0 and rep["images_per_second"] > 0
    assert all(0.0 <= rep[k] <= 180.0 for k in ("W-EC", "W-Inter", "Intra", "Inter"))
    assert rep["loss_params"]["m2"] > 0  # the lesson's ArcFace defaults
    assert "plotly" in out.read_text(encoding="utf-8").lower()


def test_text_output_and_loss_flags():
    r = _run("--dataset", "digits", "--loss", "cosface", "--m3", "0.1", "--epochs", "0.5", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    assert "CosFace (s=" in r.stdout and "m3=0.1" in r.stdout
    assert "test accuracy" in r.stdout and "W-Inter" in r.stdout and "images/s" in r.stdout


def test_missing_mnist_exits_2_and_says_how_to_get_it(tmp_path):
    r = _run("--dataset", "mnist", "--epochs", "1", env={"ARCFACE_VIZ_DATA": str(tmp_path)})
    assert r.returncode == 2
    assert "MNIST is not available" in r.stderr and "--download" in r.stderr and str(tmp_path) in r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""
    r = _run("--dataset", "digits", "--loss", "arcface", "--m3", "0.1")
    assert r.returncode == 2 and "does not use --m3" in r.stderr
