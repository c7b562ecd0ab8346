"""The losses after ArcFace in headless Chromium (issue 14): every lesson page opened with a new loss selected,
driven as a visitor would (Step, a slider, Train), its new picture drawn, no error; screenshots of each."""

from __future__ import annotations

import pytest

from arcface_viz.losses import AFTER_ARCFACE, LOSSES
from tests.browser.helpers import (
    assert_no_errors,
    button,
    main_text,
    open_app,
    plotly_count,
    plotly_data,
    plotly_titles,
    screenshot,
    set_slider,
    wait_for_plotly_change,
    wait_for_rerun,
)

pytestmark = pytest.mark.browser

TIMEOUT_MS = 180_000


def _names(page, index: int) -> list[str]:
    return [t.get("name") or "" for t in plotly_data(page, index, timeout=TIMEOUT_MS)]


def _step(page, key: str) -> None:
    button(page, key).click()
    wait_for_rerun(page, timeout=TIMEOUT_MS)


@pytest.mark.parametrize("loss", AFTER_ARCFACE)
def test_toy_lesson_with_each_new_loss(page, app_server, loss):
    open_app(page, app_server, "toy_training", {"loss": loss, "dataset": "blobs", "samples": "100",
                                                 "steps_per_frame": "100"}, timeout=TIMEOUT_MS)
    assert_no_errors(page)
    before = plotly_data(page, 0, timeout=TIMEOUT_MS)
    _step(page, "toy-training:step")
    _step(page, "toy-training:step")
    wait_for_plotly_change(page, 0, before, timeout=TIMEOUT_MS)
    assert_no_errors(page)
    text = main_text(page)  # the status line is the player's (an iframe)
    assert f"{LOSSES[loss].label} — step 200" in text
    titles = plotly_titles(page)
    info = LOSSES[loss]
    if info.norms is not None:
        assert any("radius = ‖x‖" in t for t in titles), titles
    if info.subcentres:
        assert "flipped labels (training)" in _names(page, 0)
    if info.state:
        assert any("Running state" in t for t in titles), titles
    screenshot(page, f"after-arcface-toy-{loss}")


def test_toy_compare_mode_new_against_new(page, app_server):
    open_app(page, app_server, "toy_training", {"loss": "adaface", "compare": "true", "loss_b": "elasticface_arc",
                                                 "steps_per_frame": "100"}, timeout=TIMEOUT_MS)
    _step(page, "toy-training:step")
    assert_no_errors(page)
    assert plotly_count(page) >= 5
    screenshot(page, "after-arcface-toy-compare")


def test_mnist_lesson_with_a_norm_aware_and_a_subcentre_loss(page, app_server):
    for loss in ("magface", "subcenter_arcface"):
        open_app(page, app_server, "mnist", {"dataset": "digits", "loss": loss, "dim": "2",
                                             "steps_per_frame": "20"}, timeout=TIMEOUT_MS)
        _step(page, "mnist:step")
        assert_no_errors(page)
        titles = plotly_titles(page)
        if loss == "magface":
            assert any("radius = ‖x‖" in t for t in titles), titles
        else:
            assert "non-dominant sub-centres" in _names(page, 0)
        screenshot(page, f"after-arcface-mnist-{loss}")


def test_target_logit_with_every_new_loss_and_the_norm_slider(page, app_server):
    open_app(page, app_server, "target_logit", {"after": ",".join(AFTER_ARCFACE), "full_range": "true"},
             timeout=TIMEOUT_MS)
    assert_no_errors(page)
    names = _names(page, 0)
    assert any(n.startswith("MagFace at ‖x‖ = 60") for n in names)
    before = plotly_data(page, 0, timeout=TIMEOUT_MS)
    set_slider(page, "MagFace: feature norm ‖x‖", 100, timeout=TIMEOUT_MS)
    after = wait_for_plotly_change(page, 0, before, timeout=TIMEOUT_MS)
    assert any((t.get("name") or "").startswith("MagFace at ‖x‖ = 100") for t in after)
    assert_no_errors(page)
    screenshot(page, "after-arcface-target-logit")


@pytest.mark.parametrize("loss", ["curricularface", "adaface"])
def test_decision_margins_with_a_new_loss(page, app_server, loss):
    open_app(page, app_server, "decision_margins", {"loss": loss, "phi": "90"}, timeout=TIMEOUT_MS)
    assert_no_errors(page)
    before = plotly_data(page, 0, timeout=TIMEOUT_MS)
    label = "CurricularFace: t" if loss == "curricularface" else "AdaFace: norm (‖x‖ − μ)/σ"
    set_slider(page, label, 0.05 if loss == "curricularface" else -2.0, timeout=TIMEOUT_MS)
    wait_for_plotly_change(page, 0, before, timeout=TIMEOUT_MS)  # the (θ1, θ2) plane
    assert_no_errors(page)
    screenshot(page, f"after-arcface-decision-margins-{loss}")


def test_table3_with_extra_columns(page, app_server):
    open_app(page, app_server, "table3", {"dataset": "fig3", "budget": "0.5", "dim": "2",
                                          "extra": "subcenter_arcface,elasticface_cos"}, timeout=TIMEOUT_MS)
    _step(page, "table3:train")
    assert_no_errors(page)
    text = page.locator('[data-testid="stMain"]').inner_text()
    assert "Sub-center ArcFace" in text and "ElasticFace-Cos" in text
    screenshot(page, "after-arcface-table3")


def test_explainer_after_arcface_step(page, app_server):
    open_app(page, app_server, "explainer", {"step": "9"}, timeout=TIMEOUT_MS)
    assert_no_errors(page)
    assert "flipped labels (training)" in _names(page, 0)
    screenshot(page, "after-arcface-explainer")
