"""``python -m arcface_viz curves`` in a real subprocess: CSV/JSON output and exit status 2 on bad input."""

from __future__ import annotations

import csv
import io
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from arcface_viz.geometry import FIG4B_CURVES
from arcface_viz.losses import a_softmax_target, target_logit

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "arcface_viz", "curves", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def expected(key: str, theta_deg: np.ndarray, monotonic: bool) -> np.ndarray:
    """Straight from arcface_viz.losses, independently of geometry's table."""
    th = np.radians(theta_deg)
    paper = {"softmax": (1, 0, 0), "sphereface": (1.35, 0, 0), "arcface": (1, 0.5, 0), "cosface": (1, 0, 0.35),
             "cm1": (1, 0.3, 0.2), "cm2": (0.9, 0.4, 0.15)}
    if key == "sphereface_a":
        return a_softmax_target(th, 4, 5.0)
    return target_logit(th, *paper[key], monotonic=monotonic)


def test_default_csv_is_fig4b():
    rows = list(csv.reader(io.StringIO(run_cli().stdout)))
    header, body = rows[0], np.array(rows[1:], dtype=float)
    assert header == ["theta_deg"] + [c.key for c in FIG4B_CURVES]
    assert body.shape == (161, 8)
    assert body[0, 0] == 20.0 and body[-1, 0] == 100.0
    for j, key in enumerate(header[1:], start=1):
        np.testing.assert_allclose(body[:, j], expected(key, body[:, 0], False), rtol=0, atol=1e-15)


def test_full_range_monotonic_json_with_custom_curve(tmp_path):
    out = tmp_path / "curves.json"
    proc = run_cli("--format", "json", "--full-range", "--points", "13", "--monotonic", "--curves",
                   "arcface,sphereface_a", "--m1", "1.2", "--m2", "0.25", "--m3", "0.1", "--label", "mine",
                   "--out", str(out))
    assert proc.stdout == ""
    doc = json.loads(out.read_text(encoding="utf-8"))
    theta = np.array(doc["theta_deg"])
    np.testing.assert_allclose(theta, np.linspace(0, 180, 13))
    assert doc["monotonic"] is True
    assert [c["key"] for c in doc["curves"]] == ["arcface", "sphereface_a", "custom"]
    arc, _, custom = doc["curves"]
    np.testing.assert_allclose(arc["values"], expected("arcface", theta, True), atol=1e-15)
    assert arc["theta_star_deg"] == pytest.approx(math.degrees(math.pi - 0.5))
    assert custom["label"] == "mine" and custom["params"] == {"m1": 1.2, "m2": 0.25, "m3": 0.1}
    np.testing.assert_allclose(custom["values"], target_logit(np.radians(theta), 1.2, 0.25, 0.1, monotonic=True),
                               atol=1e-15)
    # the raw formula differs past θ* (ArcFace turns back up at 180°)
    assert arc["values"][-1] == pytest.approx(-1 - 0.5 * math.sin(0.5))


def test_custom_only_csv_to_stdout():
    rows = list(csv.reader(io.StringIO(run_cli("--curves", "none", "--m3", "0.6", "--points", "3").stdout)))
    assert rows[0] == ["theta_deg", "custom"]
    body = np.array(rows[1:], dtype=float)
    np.testing.assert_allclose(body[:, 1], np.cos(np.radians([20, 60, 100])) - 0.6, atol=1e-15)


@pytest.mark.parametrize("args,words", [
    (["--m1", "5"], ["m1", "range"]),
    (["--m2", "abc", "--points", "1"], ["m2"]),
    (["--points", "2.5"], ["--points"]),
    (["--format", "xml"], ["--format", "invalid choice"]),
    (["--curves", "arcfaec"], ["is not one of", "arcfaec", "cosface"]),
    (["--out", "/nonexistent-dir/x.csv"], ["cannot write"]),
])
def test_bad_values_exit_2_without_traceback(args, words):
    proc = run_cli(*args, check=False)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    for w in words:
        assert w in proc.stderr
