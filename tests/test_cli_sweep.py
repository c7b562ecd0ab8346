"""``python -m arcface_viz sweep`` in a real subprocess: the JSON object of the issue, the HTML map, clean errors."""

import json
import subprocess
import sys

import pytest


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "arcface_viz", "sweep", *args], capture_output=True, text=True,
                          timeout=600)


def test_json_object_and_html_map(tmp_path):
    out = tmp_path / "map.html"
    r = _run("--dataset", "fig3", "--loss", "arcface", "--x", "s=2,64", "--y", "m2=0,0.8", "--steps", "80",
             "--seed", "0", "--json", "--out", str(out))
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["seconds"] > 0 and rep["out"] == str(out)
    settings = rep["settings"]
    assert (settings["dataset"], settings["loss"], settings["steps"], settings["seeds"]) == ("fig3", "arcface", 80, [0])
    assert settings["x"] == {"name": "s", "values": [2.0, 64.0]} and settings["y"]["name"] == "m2"
    assert len(rep["cells"]) == 4
    for cell in rep["cells"]:
        for key in ("s", "m2", "test_acc", "verification_accuracy", "W-EC", "Intra1", "Inter1", "final_loss",
                    "trained"):
            assert key in cell, key
        assert isinstance(cell["trained"], bool) and 0 <= cell["test_acc"] <= 1
    assert [c["margin_fits"] for c in rep["cells"]] == [True, True, False, False]
    html = out.read_text(encoding="utf-8")
    assert "plotly" in html.lower() and "heatmap" in html and "margin cannot fit" in html


def test_text_table_and_preset():
    r = _run("--preset", "m2_dim", "--x", "m2=0,0.8", "--steps", "30")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("test accuracy of 4 cells")
    assert lines[1].split()[:3] == ["dim", "\\", "m2"] and [ln.split()[0] for ln in lines[2:4]] == ["2", "3"]
    assert "*" in lines[2] and "*" not in lines[3]  # 12 centres: 0.8 rad fits on the sphere, not on the circle


@pytest.mark.parametrize(("args", "message"), [
    (("--x", "q=1,2"), "'q' cannot be an axis"),
    (("--x", "s=2,500"), "outside the allowed range"),
    (("--dataset", "nope"), "unknown data set 'nope'"),
    (("--steps", "1.5"), "--steps: expected a whole number"),
    (("--seed", "0,x"), "seed"),
    (("--m3", "0.1"), "does not use --m3"),
    (("--dataset", "digits", "--classes", "4"), "no setting 'classes'"),
])
def test_bad_input_exits_2_with_a_message(args, message):
    r = _run("--x", "s=2,4", "--y", "m2=0", "--steps", "5", *args)  # the last of a repeated flag counts
    assert r.returncode == 2, r.stdout
    assert message in r.stderr and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert r.stdout == ""
