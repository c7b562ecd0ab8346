"""AppTest runs of the 'Which s and m?' page: train a map, read it, open a cell's run in its lesson."""

from app_helpers import button, charts, open_page, player_status, widget

from arcface_viz import sweep as S

PAGE = "pages/sweep.py"
SMALL = {"x_values": "4,64", "y_values": "0,0.8", "steps": "50"}


def _text(at) -> str:
    return "\n".join(m.value for m in at.markdown)


def test_defaults_offer_the_preset_map_before_training():
    at = open_page(PAGE)
    assert not charts(at) and not at.error
    assert any("36 models" in i.value for i in at.info)
    assert widget(at, "Preset").value == "s_m2" and widget(at, "x axis (columns)").value == "s"
    assert at.text_input[0].value == S.AXIS_VALUES["s"]


def test_train_a_small_map_then_open_a_cell_in_the_toy_lesson():
    at = open_page(PAGE, SMALL)
    button(at, "Train the map").click().run()
    assert not at.exception and not at.error
    (fig,) = charts(at)
    (heat,) = [t for t in fig["data"] if t.get("name") == "values"]
    assert heat["type"] == "heatmap" and len(heat["z"]) == 2 and len(heat["z"][0]) == 2
    assert any(t.get("name", "").startswith("theory") for t in fig["data"])  # m2 = 0.8 does not fit 8 centres
    text = _text(at)
    assert "cells trained" in text or "did not train" in text
    assert "45.0° apart in 2-D" in text
    widget(at, "Open a cell's run in its lesson").set_value((1, 1)).run()  # s = 64, m2 = 0.8
    button(at, "Open in the toy lesson").click().run()
    assert not at.exception
    q = {k: at.query_params[k] for k in ("dataset", "loss", "s", "m2", "seed", "classes")}
    assert q == {"dataset": "fig3", "loss": "arcface", "s": "64.0", "m2": "0.8", "seed": "0", "classes": "8"}, q
    assert widget(at, "scale s").value == 64.0 and widget(at, "m2 (additive angle, rad)").value == 0.8
    assert any(m.startswith("**ArcFace** — step 0") for m in player_status(at))


def test_a_map_someone_trained_is_shown_at_once_to_the_next_visitor():
    first = open_page(PAGE, {**SMALL, "steps": "60"})
    button(first, "Train the map").click().run()
    before = S.SHARED.trainings
    second = open_page(PAGE, {**SMALL, "steps": "60"})  # a new session, the same link
    assert len(charts(second)) == 1 and S.SHARED.trainings == before
    assert charts(second)[0]["data"] == charts(first)[0]["data"]


def test_a_preset_loads_its_axes_loss_and_settings():
    at = open_page(PAGE)
    widget(at, "Preset").set_value("s_classes").run()
    assert widget(at, "Loss").value == "norm_softmax"
    assert widget(at, "x axis (columns)").value == "classes" and widget(at, "y axis (rows)").value == "s"
    assert [t.value for t in at.text_input][:2] == ["3,4,6,8,10,12", "1,2,4,8,16,32"]
    assert "AdaCos" in _text(at)


def test_the_preset_text_shows_only_while_its_map_is_drawn():
    at = open_page(PAGE)
    assert "eight identities" in _text(at)
    at = open_page(PAGE, {"loss": "cosface", "y": "m3", "y_values": "0,0.2"})
    assert "eight identities" not in _text(at)


def test_bad_values_give_a_message_not_a_traceback():
    at = open_page(PAGE, {"x_values": "4,banana"})
    assert not at.exception
    assert any("cannot be trained" in e.value and "banana" in e.value for e in at.error)


def test_hosted_app_caps_the_map(monkeypatch):
    monkeypatch.setenv("ARCFACE_VIZ_HOSTED", "1")
    at = open_page(PAGE, {"steps": "900", "x_values": "1,2,3,4,5,6,7"})
    assert widget(at, "steps per model").max == 500 and widget(at, "seeds per cell").max == 2
    assert any("900" in w.value for w in at.warning)  # the link's value could not be used
    assert any("at most 6 values" in e.value for e in at.error)
    assert any("shared online app" in i.value for i in at.sidebar.info)
