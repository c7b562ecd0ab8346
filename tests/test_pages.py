"""AppTest runs of the lesson pages: defaults, edited widgets, URL round trip, bad links, ?hide=."""

import pytest
from app_helpers import charts, open_page, widget

from arcface_viz.params import CURVES_SPEC, MARGINS_SPEC
from pages._registry import PAGES


def test_every_registered_page_renders_at_defaults():
    for path, *_ in PAGES:
        at = open_page(path)
        assert not at.error
        assert at.title, path


def test_home_shows_formulas_and_algorithm():
    at = open_page("pages/home.py")
    assert len(at.latex) >= 8
    text = " ".join(m.value for m in at.markdown)
    # the paper's nine lines: one-hot is its own line, and the algorithm ends with the scaled logits
    steps = [line for line in text.splitlines() if line[:2] in {f"{i}." for i in range(1, 10)}]
    assert len(steps) == 9 and "Normalise the feature" in steps[0]
    assert "One-hot" in steps[6] and "Rescale" in steps[8] and "cross-entropy" not in " ".join(steps)


def test_target_logit_slider_changes_the_curve_and_url():
    at = open_page("pages/target_logit.py")
    before = charts(at)[0]["data"][-1]["y"]
    widget(at, "m2 (additive angle, rad)").set_value(0.6).run()
    after = charts(at)[0]["data"][-1]["y"]
    assert before != after
    assert at.query_params["m2"] in ("0.6", ["0.6"])
    assert "0.6" in charts(at)[0]["data"][-1]["name"]


def test_target_logit_full_range_and_no_curves():
    at = open_page("pages/target_logit.py")
    widget(at, "Full range 0°–180°").set_value(True).run()
    assert charts(at)[0]["layout"]["xaxis"]["range"] == [0.0, 180.0]
    widget(at, "Paper curves (Fig. 4b)").set_value([]).run()
    widget(at, "Your curve").set_value(False).run()
    assert not at.exception
    assert not charts(at)
    assert any("Pick at least one" in i.value for i in at.info)


def test_decision_margins_switch_loss_loads_its_defaults():
    at = open_page("pages/decision_margins.py")
    widths = {m.label: m.value for m in at.metric}
    widget(at, "Loss").set_value("cosface").run()
    assert widget(at, "m3 (additive cosine)").value == pytest.approx(0.35)  # paper default
    assert all(w.label != "m2 (additive angle, rad)" for w in at.slider)
    assert {m.label: m.value for m in at.metric} != widths
    assert any(m.value == "changes with φ" for m in at.metric)
    widget(at, "Loss").set_value("arcface").run()
    assert any(m.value == "constant" for m in at.metric)


def test_decision_margins_softmax_has_no_margin():
    at = open_page("pages/decision_margins.py", {"loss": "softmax"})
    assert any(m.value == "0°" for m in at.metric)
    assert len(charts(at)) == 1


@pytest.mark.parametrize("path,spec,query", [
    ("pages/target_logit.py", CURVES_SPEC,
     {"curves": "arcface,cosface", "m1": "1.2", "m2": "0.25", "m3": "0.05", "full_range": "true", "s": "30.0",
      "classes": "100", "custom": "true", "monotonic": "true"}),
    ("pages/decision_margins.py", MARGINS_SPEC,
     {"loss": "combined", "m1": "1.1", "m2": "0.2", "m3": "0.1", "phi": "120.0", "bias": "0.5", "norm_ratio": "2.0"}),
])
def test_url_round_trip(path, spec, query):
    at = open_page(path, query)
    assert not at.warning
    restored = spec.validate({k: v[-1] if isinstance(v, list) else v for k, v in at.query_params.items()})
    assert restored == spec.validate(query)
    # and the widgets really show the linked values
    for p in spec:
        if p.kind == "float" and p.name in query:
            shown = [w.value for w in at.slider if w.label == p.title]
            if shown:
                assert shown[0] == pytest.approx(float(query[p.name]))


def test_bad_link_values_fall_back_with_a_notice():
    at = open_page("pages/decision_margins.py", {"loss": "nonsense", "phi": "900", "m2": "abc"})
    notices = " ".join(w.value for w in at.warning)
    assert "nonsense" in notices and "900" in notices and "abc" in notices
    assert widget(at, "Loss").value == "arcface"
    assert widget(at, "angle between W1 and W2 (°)").value == 90.0


def test_hide_removes_controls_but_keeps_values():
    at = open_page("pages/target_logit.py", {"hide": "m1,m3", "m1": "1.3"})
    labels = {w.label for w in at.slider}
    assert "m1 (multiplicative angle)" not in labels and "m3 (additive cosine)" not in labels
    assert "m2 (additive angle, rad)" in labels
    assert "1.3" in charts(at)[0]["data"][-1]["name"]
    assert at.query_params["hide"] in ("m1,m3", ["m1,m3"])


def test_presenter_mode_from_link_enlarges_figures():
    plain = charts(open_page("pages/target_logit.py"))[0]
    at = open_page("pages/target_logit.py", {"present": "true"})
    big = charts(at)[0]
    assert widget(at, "Presenter mode").value is True
    assert big["layout"]["font"]["size"] > plain["layout"]["font"]["size"]
    assert big["data"][0]["line"]["width"] > plain["data"][0]["line"]["width"]
    assert at.query_params["present"] in ("true", ["true"])  # kept in the link


def test_share_link_and_exports():
    at = open_page("pages/decision_margins.py", {"phi": "60.0"})
    link = " ".join(c.value for c in at.code)
    assert "phi=60.0" in link and "loss=arcface" in link
    assert not at.get("download_button")
    widget(at, "Export buttons").set_value(True).run()
    downloads = at.get("download_button")
    assert len(downloads) == len(charts(at)) == 3


def test_explainer_walks_through_every_step_with_next():
    at = open_page("pages/explainer.py")
    seen = []
    for _ in range(9):
        assert not at.exception
        seen.append(at.header[0].value)
        nexts = [b for b in at.button if b.label == "Next"]
        if nexts[0].disabled:
            break
        nexts[0].click().run()
    assert len(seen) == 9 and seen[0].startswith("1.") and seen[-1] == "9. After ArcFace"
    assert at.query_params["step"] in ("9", ["9"])
