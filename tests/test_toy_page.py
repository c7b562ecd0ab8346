"""AppTest runs of the live toy-training page and the LiveSession behind it."""

import pytest
from app_helpers import button, open_page, player_figures, player_keys, player_status, player_texts, widget

from arcface_viz.live import LiveSession
from arcface_viz.params import TOY_SPEC
from arcface_viz.training import ToyConfig

PAGE = "pages/toy_training.py"


def embedding_points(at, i=0):
    """All point coordinates of the i-th embedding figure (class traces only)."""
    fig = player_figures(at)[i]
    return [(t.get("x"), t.get("y")) for t in fig["data"] if t.get("mode") == "markers"]


def header(at):
    """The status lines of the frame the player shows."""
    return [m for m in player_status(at) if "step" in m and "loss" in m]


def test_defaults_render_three_figures():
    at = open_page(PAGE)
    assert len(player_figures(at)) == 3  # embeddings, θ histogram, curves
    assert player_keys(at) == ["emb-0", "theta-0", "curves-0"]
    assert header(at)[0].startswith("**ArcFace** — step 0")


def test_step_trains_and_changes_the_figure():
    at = open_page(PAGE)
    before = player_figures(at)[0]["data"]
    button(at, "Step").click().run()
    assert not at.exception
    assert "step 20 " in header(at)[0]
    assert player_figures(at)[0]["data"] != before
    # the θ histogram now has start and now
    names = [t.get("name", "") for t in player_figures(at)[1]["data"]]
    assert any("start" in n for n in names) and any("now" in n for n in names)


def test_train_button_toggles_to_pause():
    at = open_page(PAGE)
    button(at, "Train").click().run()
    assert any(b.label == "Pause" for b in at.button)
    button(at, "Pause").click().run()
    assert any(b.label == "Train" for b in at.button)


def test_each_step_press_trains_one_chunk():
    """Step trains steps_per_frame steps per press: its once-per-drawing guard (against a click Streamlit
    delivers twice) must not swallow a second, real press."""
    at = open_page(PAGE)
    button(at, "Step").click().run()
    assert "step 20 " in header(at)[0]
    button(at, "Step").click().run()
    assert "step 40 " in header(at)[0]


def test_loss_parameter_mid_run_applies_and_structural_change_asks_for_reset():
    at = open_page(PAGE)
    button(at, "Step").click().run()
    widget(at, "m2 (additive angle, rad)").set_value(0.35).run()
    assert not at.info  # applies at the next step, no reset needed
    widget(at, "Data set").set_value("blobs").run()
    assert any("Reset" in i.value and "dataset" in i.value for i in at.info)
    assert "step 20 " in header(at)[0]  # the run was kept
    button(at, "Reset").click().run()
    assert header(at)[0].startswith("**ArcFace** — step 0")
    assert not at.info


def test_compare_mode_draws_two_losses_side_by_side():
    """Compare mode is the paper's Fig. 3 by default: Softmax against ArcFace in 2-D, each figure with its gap."""
    at = open_page(PAGE, {"compare": "true"})
    heads = header(at)
    assert len(heads) == 2 and heads[0].startswith("**Softmax**") and heads[1].startswith("**ArcFace**")
    assert len(player_figures(at)) == 6
    assert player_figures(at)[0]["data"][0]["type"] == "scatter"  # 2-D
    button(at, "Step").click().run()
    assert all("step 20 " in h for h in header(at))
    gaps = [c for c in player_texts(at) if c.startswith("Gap between the closest identities")]
    assert len(gaps) == 2
    legend = {t.get("name") for t in player_figures(at)[0]["data"]}
    assert "class weights W<sub>j</sub> (with bias)" in legend  # Softmax's W_j work with a bias: not centres
    widget(at, "second loss").set_value("norm_softmax").run()  # Norm-Softmax one click away
    assert any("Reset" in i.value for i in at.info)


def test_three_d_and_link_state():
    at = open_page(PAGE, {"dim": "3", "loss": "cosface", "m3": "0.1", "dataset": "sphere", "classes": "5"})
    fig = player_figures(at)[0]
    assert any(t["type"] == "scatter3d" for t in fig["data"])
    assert widget(at, "m3 (additive cosine)").value == pytest.approx(0.1)


def test_a_margin_that_cannot_fit_is_explained():
    # CosFace's own bound: 8 classes on a circle allow m3 <= 1 - cos(pi/4) = 0.29
    at = open_page(PAGE, {"loss": "cosface", "m3": "0.35"})
    assert any("at most 45.0° apart" in w.value for w in at.warning)
    at = open_page(PAGE, {"loss": "cosface", "m3": "0.25"})
    assert not at.warning


def test_live_session_bounds_history_and_stops_at_limit():
    values = TOY_SPEC.defaults()
    sess = LiveSession([ToyConfig.from_values(values).build()], {"x": 1}, max_snapshots=5, max_steps=35)
    sess.running = True
    for _ in range(10):
        sess.advance(5)
    assert sess.step == 35 and not sess.running and sess.finished
    assert len(sess.history[0]) <= 5 and sess.history[0][0].step == 0 and sess.history[0][-1].step == 35
    curves = sess.curves(0)
    assert list(curves["steps"]) == [0, 5, 10, 15, 20, 25, 30, 35]
    assert sess.changed({"x": 2}) == ["x"] and sess.changed({"x": 1}) == []


def test_training_animation_export_after_a_few_steps():
    at = open_page(PAGE)
    button(at, "Step").click().run()
    widget(at, "Export buttons").set_value(True).run()
    labels = [d.proto.label for d in at.get("download_button")]
    assert any("Training animation" in lab for lab in labels)


def test_hosted_mode_caps_a_visitor_and_says_so(monkeypatch):
    monkeypatch.setenv("ARCFACE_VIZ_HOSTED", "1")
    at = open_page(PAGE, {"samples": "1500"})
    assert any("shared online version" in i.value for i in at.sidebar.info)
    assert widget(at, "samples per class").max == 300
    assert any("1500" in w.value for w in at.warning)  # the link asked for more than allowed
    sess = at.session_state["_live:toy-training"]
    assert sess.max_steps == 3000
