"""``python -m arcface_viz data ...`` as a user runs it: real subprocesses, files on disk, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from arcface_viz.fullscale.recordio import FaceRecordDataset, ImageFolderFaces, load_bin

ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "arcface_viz", "data", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


def assert_usage_error(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("arcface-viz data: error: "), proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_make_synthetic_then_rec_then_bin(tmp_path):
    out = tmp_path / "set"
    proc = cli("make-synthetic", "--out", str(out), "--identities", "3", "--images-per-identity", "2",
               "--val-pairs", "4", "--val-identities", "3", "--seed", "7", "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["images"] == 6 and summary["identities"] == 3 and summary["val_pairs"] == 4
    ds = FaceRecordDataset(out, flip=False)
    assert len(ds) == 6 and ds.num_classes == 3 and ds.identity_ranges() == [(1, 3), (3, 5), (5, 7)]
    assert len(ImageFolderFaces(out / "images")) == 6
    images, issame = load_bin(out / "val.bin")
    assert images.shape == (8, 3, 112, 112) and issame.tolist() == [True, False, True, False]

    # the image folder packs back into the very same RecordIO set
    proc = cli("make-rec", "--folder", str(out / "images"), "--out", str(tmp_path / "rec"))
    assert proc.returncode == 0, proc.stderr
    assert "wrote 6 images of 3 identities" in proc.stdout
    assert (tmp_path / "rec" / "train.rec").read_bytes() == (out / "train.rec").read_bytes()

    pairs = tmp_path / "pairs.txt"
    pairs.write_text("set/images/id_00000/0000.jpg set/images/id_00000/0001.jpg 1\n"
                     "set/images/id_00000/0000.jpg set/images/id_00002/0001.jpg 0\n")
    proc = cli("make-bin", "--pairs", str(pairs), "--out", str(tmp_path / "mine.bin"))
    assert proc.returncode == 0, proc.stderr
    images, issame = load_bin(tmp_path / "mine.bin")
    assert issame.tolist() == [True, False]
    assert np.array_equal(images[0].numpy(), images[2].numpy())

    # running make-synthetic again does not silently replace the set
    assert_usage_error(cli("make-synthetic", "--out", str(out), "--identities", "2"), "already exists",
                       "--overwrite")


@pytest.mark.parametrize("args, fragments", [
    (("make-rec", "--folder", "{tmp}/no_such_folder", "--out", "{tmp}/o"), ("image folder not found",)),
    (("make-bin", "--pairs", "{tmp}/missing_pairs.txt", "--out", "{tmp}/x.bin"), ("pairs file not found",)),
    (("make-synthetic", "--out", "{tmp}/afile", "--identities", "2"), ("is a file",)),
    (("make-synthetic", "--out", "{tmp}/afile/sub", "--identities", "2"), ("Not a directory", "afile")),
    (("make-synthetic", "--out", "{tmp}/s", "--identities", "0"), ("num_identities must be",)),
])
def test_bad_input_exits_2_with_one_line(tmp_path, args, fragments):
    (tmp_path / "afile").write_text("x")
    assert_usage_error(cli(*(a.format(tmp=tmp_path) for a in args)), *fragments)
