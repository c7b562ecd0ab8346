"""AppTest runs of the live MNIST page, on scikit-learn's digits (always available, small)."""

import struct

import numpy as np
import pytest
from app_helpers import button, charts, open_page, widget

PAGE = "pages/mnist.py"
DIGITS = {"dataset": "digits"}


@pytest.fixture(autouse=True)
def empty_cache(tmp_path, monkeypatch):
    """No downloaded data sets: the user cache is an empty folder."""
    monkeypatch.setenv("ARCFACE_VIZ_DATA", str(tmp_path / "cache"))


def header(at):
    return [m.value for m in at.markdown if "step" in m.value and "images/s" in m.value]


def types(fig):
    return {t["type"] for t in fig["data"]}


def test_defaults_render_sphere_map_curves_and_confusion():
    at = open_page(PAGE, DIGITS)
    heads = header(at)
    assert len(heads) == 1 and heads[0].startswith("**ArcFace** — step 0 · epoch 0.00")
    figs = charts(at)
    assert "scatter3d" in types(figs[0])  # the sphere
    flat = figs[1]  # the clickable flat map: 10 digit traces carrying their sample positions
    digit_traces = [t for t in flat["data"] if t.get("legendgroup", "").startswith("class")]
    assert len(digit_traces) == 10 and all("customdata" in t for t in digit_traces)
    assert any("heatmap" in types(f) for f in figs)
    assert at.get("plotly_chart")[1].proto.selection_mode  # clicks on the flat map come back
    assert at.get("progress")[0].proto.value == 0
    assert widget(at, "Data set").value == "digits"


def test_step_trains_and_changes_the_figure():
    at = open_page(PAGE, DIGITS)
    before = charts(at)[0]["data"]
    button(at, "Step").click().run()
    assert not at.exception
    assert "step 10 " in header(at)[0]
    assert charts(at)[0]["data"] != before
    # digits: 1,437 training images in batches of 128 = 11 steps per epoch; 10 done
    assert 90 <= at.get("progress")[0].proto.value <= 91
    button(at, "Step").click().run()
    head = header(at)[0]
    assert "step 20 " in head and "epoch 1.82" in head and "last epoch end —" not in head  # epoch 1 evaluated


def test_two_d_embedding_is_clickable():
    at = open_page(PAGE, {**DIGITS, "dim": "2"})
    fig = charts(at)[0]
    assert "scatter3d" not in types(fig)
    assert at.get("plotly_chart")[0].proto.selection_mode
    assert any("Click a point" in c.value for c in at.caption)


def test_compare_mode_trains_two_losses_side_by_side():
    at = open_page(PAGE, {**DIGITS, "compare": "true"})
    heads = header(at)
    assert len(heads) == 2 and heads[0].startswith("**Softmax**") and heads[1].startswith("**ArcFace**")
    button(at, "Step").click().run()
    assert all("step 10 " in h for h in header(at))
    assert sum("heatmap" in types(f) for f in charts(at)) == 2


def test_missing_mnist_is_explained_and_what_is_there_is_offered():
    at = open_page(PAGE, {"dataset": "mnist"})
    assert any("MNIST (28×28)** is not available" in w.value for w in at.warning)
    options = widget(at, "Data set").options
    assert "MNIST (28×28)" not in options and "Digits (8×8)" in options
    assert widget(at, "Data set").value != "mnist"
    assert any(b.label.startswith("Download MNIST") for b in at.button)
    assert any("To get it" in c.value for c in at.code)
    assert any("dataset-fashion-mnist" in c.value for c in at.caption)
    assert header(at)  # it trains on what is there


def _write_idx(path, a):
    a = np.ascontiguousarray(a, dtype=np.uint8)
    path.write_bytes(bytes([0, 0, 8, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape) + a.tobytes())


def test_a_typed_data_directory_makes_mnist_available(tmp_path):
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 60), ("t10k", 20)):
        _write_idx(tmp_path / f"{prefix}-images-idx3-ubyte", rng.integers(0, 255, (n, 28, 28)))
        _write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10)
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in tmp_path.glob("*-ubyte"):
        (broken / f.name).write_bytes(f.read_bytes()[:-7] if "t10k-images" in f.name else f.read_bytes())
    at = open_page(PAGE, DIGITS)
    assert "MNIST (28×28)" not in widget(at, "Data set").options
    at.text_input(key="mnist:data_dir").set_value(str(broken)).run()  # a truncated file: explained, not offered
    assert not at.exception and "MNIST (28×28)" not in widget(at, "Data set").options
    assert any("truncated" in c.value and "t10k-images" in c.value for c in at.code)
    at.text_input(key="mnist:data_dir").set_value(str(tmp_path)).run()
    assert "MNIST (28×28)" in widget(at, "Data set").options
    widget(at, "Data set").set_value("mnist").run()
    assert not at.exception
    assert any("60 train" in c.value or str(tmp_path) in c.value for c in at.caption)


def test_hosted_mode_caps_images_and_batch_size(monkeypatch):
    """The shared app keeps a visitor under its memory budget: at most 6,000 training images and batches of
    at most 128, whatever the link asks for; the page says so."""
    monkeypatch.setenv("ARCFACE_VIZ_HOSTED", "1")
    at = open_page(PAGE, {**DIGITS, "batch_size": "512", "max_train": "60000"})
    assert not at.exception
    assert any("shared online version" in i.value for i in at.sidebar.info)
    assert widget(at, "training images").max == 6000
    assert max(widget(at, "batch size").options, key=int) == "128"
    warned = " ".join(w.value for w in at.warning)
    assert "512" in warned and "60000" in warned  # the link asked for more than allowed
    trainer = at.session_state["_live:mnist"].trainers[0]
    assert trainer.batch_size <= 128 and len(trainer.data.y_train) <= 6000
