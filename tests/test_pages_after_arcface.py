"""AppTest runs of the lessons with each loss after ArcFace selected (issue 14): they train, draw their new
pictures (norm as radius, every sub-centre, the flipped-label samples, the running state) and compare with any
other loss."""

from __future__ import annotations

import pytest
from app_helpers import button, charts, open_page, player_figures, player_texts

from arcface_viz.losses import AFTER_ARCFACE, LOSSES

TOY = "pages/toy_training.py"


def _names(fig) -> list[str]:
    return [t.get("name") or "" for t in fig["data"]]


def _text(at) -> str:
    return "\n".join(m.value for m in [*at.markdown, *at.caption])


def _toy_text(at) -> str:
    """The texts of the frame the toy page's player shows: status lines, headings, captions, readouts."""
    return "\n".join(player_texts(at))


@pytest.mark.parametrize("loss", AFTER_ARCFACE)
def test_toy_lesson_trains_every_new_loss(loss):
    at = open_page(TOY, {"loss": loss, "dataset": "blobs", "samples": "60"})
    button(at, "Step").click().run()
    assert not at.exception, at.exception
    text = _toy_text(at)
    assert f"**{LOSSES[loss].label}** — step 20 " in text
    figs = player_figures(at)
    info = LOSSES[loss]
    if info.norms is not None:  # MagFace, AdaFace: radius = ‖x‖
        norm = [f for f in figs if "radius = ‖x‖" in str(f["layout"].get("title", ""))]
        assert norm, "no norm-as-radius figure"
        assert "mean ‖x‖" in text
    if info.subcentres:  # every sub-centre drawn, the flipped-label samples of blobs marked
        names = _names(figs[0])
        assert "non-dominant sub-centres" in names and "flipped labels (training)" in names
        assert "training samples with flipped labels" in text
    if info.state:  # the state in the header and as a chart
        assert any(f"{sym} = " in text for sym in ("μ", "t", "s"))
        assert any("Running state" in str(f["layout"].get("title", "")) for f in figs)


def test_toy_compare_mode_with_two_new_losses():
    at = open_page(TOY, {"loss": "magface", "compare": "true", "loss_b": "subcenter_arcface", "samples": "60",
                         "dataset": "blobs"})
    button(at, "Step").click().run()
    assert not at.exception
    text = _toy_text(at)
    assert "**Sub-center ArcFace** — step 20 " in text and "**MagFace** — step 20 " in text
    titles = [str(f["layout"].get("title", "")) for f in player_figures(at)]
    assert sum("radius = ‖x‖" in t for t in titles) == 1  # only MagFace reads the norm


def test_toy_bad_magface_bounds_give_a_message_not_a_traceback():
    at = open_page(TOY, {"loss": "magface", "l_a": "20", "u_a": "10"})
    assert not at.exception
    assert any("u_a must be above l_a" in e.value for e in at.error)


MNIST = "pages/mnist.py"


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ARCFACE_VIZ_DATA", str(tmp_path / "cache"))


@pytest.mark.parametrize("loss", AFTER_ARCFACE)
def test_mnist_lesson_trains_every_new_loss(empty_cache, loss):
    at = open_page(MNIST, {"dataset": "digits", "loss": loss, "dim": "2", "steps_per_frame": "5"})
    button(at, "Step").click().run()
    assert not at.exception, at.exception
    text = _text(at)
    assert f"**{LOSSES[loss].label}** — step 5 " in text
    figs = charts(at)
    if LOSSES[loss].norms is not None:
        assert any("radius = ‖x‖" in str(f["layout"].get("title", "")) for f in figs)
    if LOSSES[loss].subcentres:
        assert "non-dominant sub-centres" in _names(figs[0])
    if LOSSES[loss].state:
        assert any("Running state" in str(f["layout"].get("title", "")) for f in figs)


def test_table3_page_trains_extra_columns():
    at = open_page("pages/table3.py", {"dataset": "fig3", "budget": "0.5", "dim": "2", "extra": "magface,adaface"})
    button(at, "Train the 7 models").click().run()
    assert not at.exception, at.exception
    ours, paper, _ = (d.value for d in at.dataframe)
    assert list(ours.columns) == ["NS", "ArcFace", "IntraL", "InterL", "TripletL", "MagFace", "AdaFace"]
    assert list(paper.columns) == ["NS", "ArcFace", "IntraL", "InterL", "TripletL"]
    assert all(float(v) >= 0 for v in ours["MagFace"])
    bars = [f for f in charts(at) if f["data"] and f["data"][0]["type"] == "bar"][0]
    assert {"MagFace", "AdaFace"} <= {t.get("name") for t in bars["data"]}


def test_explainer_after_arcface_step_draws_its_run_and_its_sentences_hold():
    from arcface_viz.claims import NOISY_CLAIMS, noisy_numbers, noisy_run

    numbers = noisy_numbers(noisy_run())
    for claim in NOISY_CLAIMS.values():
        assert claim.failure(numbers) is None, claim.failure(numbers)
    at = open_page("pages/explainer.py", {"step": "9"})
    assert at.header[0].value == "9. After ArcFace"
    text = _text(at)
    for claim in NOISY_CLAIMS.values():
        assert claim.render(numbers) in text
    names = _names(charts(at)[0])
    assert "flipped labels (training)" in names and "non-dominant sub-centres" in names
    for name in AFTER_ARCFACE:
        assert f"- **{LOSSES[name].label}**: {LOSSES[name].summary}" in text
