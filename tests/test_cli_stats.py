"""``python -m arcface_viz stats`` in a real subprocess on generated .npz files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "arcface_viz", "stats", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


def unit2(deg) -> np.ndarray:
    r = np.radians(np.asarray(deg, dtype=float))
    return np.stack([np.cos(r), np.sin(r)], axis=-1)


@pytest.fixture
def npz(tmp_path) -> Path:
    """Train set: W at 0°/90°/180°/270°, samples at W ± 10° -> W-EC 0, W-Inter 90, Intra1 10, Inter1 90.
    Test set: 4 other identities at 45° + k·90°, samples at ± 20° (x3) -> Intra2 20, Inter2 90;
    positive pairs are 0° or 40° apart, negative ones at least 50°: verification is perfect."""
    c = np.arange(4) * 90.0
    x = unit2(np.concatenate([c + 10, c - 10])) * 3.0
    y = np.tile(np.arange(4), 2)
    ct = 45.0 + np.arange(4) * 90.0
    xt = unit2(np.concatenate([ct + 20, ct - 20] * 3))
    yt = np.tile(np.arange(10, 14), 6)
    path = tmp_path / "emb.npz"
    np.savez(path, embeddings=x.astype(np.float32), labels=y, weight=unit2(c) * 0.1, test_embeddings=xt,
             test_labels=yt)
    return path


def test_json_output_has_the_hand_worked_statistics(npz):
    proc = run_cli("--embeddings", str(npz), "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    stats = doc["angle_statistics"]
    expected = {"W-EC": 0.0, "W-Inter": 90.0, "Intra1": 10.0, "Inter1": 90.0, "Intra2": 20.0, "Inter2": 90.0}
    for key, value in expected.items():
        assert stats[key] == pytest.approx(value, abs=1e-4), key
    assert stats["skipped_classes"] == []
    pairs = doc["pairs"]
    # 4 classes × C(6, 2) = 60 positive pairs; (24² − 4·6²) / 2 = 216 negative pairs, all enumerated
    assert pairs["set"] == "test" and pairs["n_positive"] == 60 and pairs["n_negative"] == 216
    assert pairs["overlap"] == 0.0
    ver = doc["verification"]
    assert ver["n_pairs"] == 120 and ver["accuracy_mean"] == 1.0 and ver["tar_at_far"] == 1.0


def test_text_output_lists_table3_rows_with_arrows(npz):
    proc = run_cli("--embeddings", str(npz), "--seed", "3")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "W-EC    ↓     0.00" in out and "Intra2  ↓    20.00" in out and "Inter2  ↑    90.00" in out
    assert "100.00 ± 0.00 %" in out


def test_without_weight_or_positive_pairs_it_reports_what_it_skipped(tmp_path):
    path = tmp_path / "one_each.npz"
    np.savez(path, embeddings=unit2([0.0, 90.0, 200.0]), labels=[0, 1, 2])
    proc = run_cli("--embeddings", str(path), "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["angle_statistics"]["W-EC"] is None and doc["angle_statistics"]["Intra2"] is None
    assert doc["angle_statistics"]["Inter1"] == pytest.approx((90 + 90 + 110) / 3)
    assert "no positive pairs" in doc["pairs"]["skipped"] and doc["verification"] is None


@pytest.mark.parametrize(
    "make, args, message",
    [
        (None, [], "no such file"),
        (lambda p: p.write_text("junk"), [], "not a readable .npz"),
        (lambda p: np.savez(p, embeddings=np.eye(2)), [], "lacks the key(s) labels"),
        (lambda p: np.savez(p, embeddings=np.eye(2), labels=[0, 0]), [], "at least two classes"),
        (lambda p: np.savez(p, embeddings=np.eye(2), labels=[0, 1]), ["--max-pairs", "0"], "--max-pairs"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_no_traceback(tmp_path, make, args, message):
    path = tmp_path / "in.npz"
    if make is not None:
        make(path)
    proc = run_cli("--embeddings", str(path), *args)
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert lines[0].startswith("arcface-viz stats: error:") and message in lines[0]
