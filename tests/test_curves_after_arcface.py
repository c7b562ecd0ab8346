"""The losses after ArcFace in the Target-logit lesson and ``arcface-viz curves``: each curve is the loss's own
margin function (checked against its formula written here, value and slope), the norm families, ElasticFace's
band, CurricularFace's negatives, the detached gradient, the page and the CLI."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from app_helpers import charts, open_page

from arcface_viz.geometry import (
    ADAFACE_UNITS,
    MAGFACE_NORMS,
    adaface_family,
    after_arcface_curve,
    curve_table,
    magface_family,
    margin_curve,
)
from arcface_viz.losses import AFTER_ARCFACE, curricular_negative

ROOT = Path(__file__).resolve().parents[1]
TH = np.radians(np.arange(1.25, 179.0, 0.5))  # not exactly 90°, where MagFace's easy margin switches


def arc(th, m):
    return np.where(th + m <= math.pi, np.cos(th + m), np.cos(th) - m * np.sin(m))


def test_each_curve_is_its_formula_at_the_paper_preset():
    mag = 0.45 + (0.8 - 0.45) * (60 - 10) / 100  # MagFace at ‖x‖ = 60
    z = min(max(0.333 * 1.0, -1), 1)  # AdaFace one batch-std above the mean
    want = {
        "subcenter_arcface": arc(TH, 0.5), "curricularface": arc(TH, 0.5), "elasticface_arc": arc(TH, 0.5),
        "adacos": np.cos(TH), "elasticface_cos": np.cos(TH) - 0.35,
        "magface": np.where(np.cos(TH) > 0, np.cos(TH + mag), np.cos(TH)),  # easy margin, as the official code
        "adaface": np.cos(np.clip(TH - 0.4 * z, 1e-3, math.pi - 1e-3)) - (0.4 + 0.4 * z),
    }
    for name in AFTER_ARCFACE:
        c = after_arcface_curve(name, mag_norm=60.0, ada_units=1.0)
        np.testing.assert_allclose(c.evaluate(TH), want[name], atol=2e-5, err_msg=name)


@pytest.mark.parametrize("name", AFTER_ARCFACE)
def test_slopes_match_finite_differences(name):
    c = after_arcface_curve(name, mag_norm=40.0, ada_units=-0.5)
    h = 1e-3
    fd = (c.evaluate(TH + h) - c.evaluate(TH - h)) / (2 * h)
    keep = np.abs(TH - math.pi / 2) > 0.01  # MagFace's easy margin jumps at 90°
    keep &= np.abs(TH - (math.pi - 0.5)) > 0.01  # the extension's kink
    np.testing.assert_allclose(c.slope(TH)[keep], fd[keep], atol=2e-3, err_msg=name)


def test_families_and_band():
    mags = magface_family()
    assert [c.norm for c in mags] == list(MAGFACE_NORMS)
    at60 = [float(c.evaluate(np.radians(60.0))) for c in mags]
    assert at60 == sorted(at60, reverse=True)  # a longer feature, a larger margin, a lower target logit
    adas = adaface_family()
    assert len(adas) == len(ADAFACE_UNITS)
    low, high = after_arcface_curve("elasticface_arc").band
    np.testing.assert_allclose(low.evaluate(TH), arc(TH, 0.4), atol=2e-5)  # m − 2σ = 0.5 − 0.1
    np.testing.assert_allclose(high.evaluate(TH), arc(TH, 0.6), atol=2e-5)
    table = curve_table([after_arcface_curve("elasticface_cos")], np.array([60.0]))
    assert list(table) == ["theta_deg", "elasticface_cos", "elasticface_cos_low", "elasticface_cos_high"]
    assert table["elasticface_cos_low"][0] == pytest.approx(0.5 - 0.25, abs=1e-6)


def test_curricular_negative():
    c = np.array([-0.5, 0.0, 0.5, 0.9])
    np.testing.assert_allclose(curricular_negative(c, 0.0), c * c)
    np.testing.assert_allclose(curricular_negative(c, 1.0), c * (1 + c))


@pytest.mark.parametrize("curve", [margin_curve("ArcFace", 1, 0.5, 0), after_arcface_curve("magface"),
                                   after_arcface_curve("adaface")])
def test_detached_gradient_same_loss_slope_of_s_cos(curve):
    """dL/dθ with the margin detached: −σ(z)·s·d(cos θ)/dθ, z the margined logit gap; the loss itself unchanged."""
    s, n = 16.0, 10
    loss, grad = curve.sample_loss(TH, s, n)
    loss_d, grad_d = curve.sample_loss(TH, s, n, detached=True)
    np.testing.assert_allclose(loss_d, loss)
    z = -s * curve.evaluate(TH, monotonic=True) + math.log(n - 1)
    sigma = 1 / (1 + np.exp(-z))
    np.testing.assert_allclose(grad_d, sigma * s * np.sin(TH), rtol=1e-5, atol=1e-9)
    assert np.abs(grad_d - grad).max() > 0.1  # the margin's own gradient is gone


TARGET = "pages/target_logit.py"


def test_target_logit_page_with_every_new_loss():
    at = open_page(TARGET, {"after": ",".join(AFTER_ARCFACE), "full_range": "true"})
    figs = charts(at)
    names = [t.get("name", "") for t in figs[0]["data"]]
    for name in AFTER_ARCFACE:
        assert any(after_arcface_curve(name).label.split(" (")[0].split(":")[0] in n for n in names), name
    assert any(n.endswith(": band") for n in names)  # ElasticFace's ±2σ
    titles = [str(f["layout"].get("title", {}).get("text", "")) for f in figs]
    assert any("feature norm" in t for t in titles) and any("CurricularFace" in t for t in titles)
    sample = figs[-1]
    assert any("margin detached" in t.get("name", "") for t in sample["data"])


def test_target_logit_page_norm_sliders_move_the_curves():
    at = open_page(TARGET, {"after": "magface", "mag_norm": "10"})
    low = [t for t in charts(at)[0]["data"] if "MagFace" in t.get("name", "")][0]
    at = open_page(TARGET, {"after": "magface", "mag_norm": "110"})
    high = [t for t in charts(at)[0]["data"] if "MagFace" in t.get("name", "")][0]
    assert "m = 0.45" in low["name"] and "m = 0.80" in high["name"]
    assert not at.exception


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "arcface_viz", "curves", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


def test_cli_curves_accepts_the_new_names():
    proc = run_cli("--curves", "none", "--after", "magface,elasticface_cos", "--mag-norm", "110", "--points", "3",
                   "--format", "json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    mag, ela = doc["curves"]
    assert mag["kind"] == "loss" and mag["params"]["loss"] == "magface" and mag["params"]["norm"] == 110.0
    assert mag["values"][0] == pytest.approx(math.cos(math.radians(20) + 0.8), abs=1e-5)
    assert ela["band"]["low"][0] == pytest.approx(math.cos(math.radians(20)) - 0.25, abs=1e-5)
    bad = run_cli("--after", "magfase")
    assert bad.returncode == 2 and "magfase" in bad.stderr and "Traceback" not in bad.stderr


# --- decision margins (Fig. 5) for the losses after ArcFace ----------------------------------------------

from arcface_viz.geometry import (  # noqa: E402
    CLASS1,
    CLASS2,
    NEITHER,
    decide,
    margin_crossing,
    margin_width,
    swallow_angle,
    width_range,
)

PHI = np.radians([20.0, 45.0, 90.0, 135.0, 180.0])


@pytest.mark.parametrize("name", ["subcenter_arcface", "elasticface_arc", "curricularface"])
def test_arc_targets_give_arcfaces_margin_where_the_negatives_are_plain(name):
    """Sub-center ArcFace and ElasticFace (at its mean margin) have ArcFace's two-class margin; CurricularFace has
    ArcFace's target but scales its hard negatives down (t = 0.5 < 1 − cos θ_j): a margin never wider."""
    c = after_arcface_curve(name)
    w = margin_width(PHI, curve=c)
    if name == "curricularface":
        assert (w <= margin_width(PHI, 1, 0.5, 0) + 1e-4).all()  # scaled hard negatives: a smaller margin
        return
    np.testing.assert_allclose(np.degrees(w), np.degrees(margin_width(PHI, 1, 0.5, 0)), atol=0.1)
    assert math.degrees(swallow_angle(curve=c)) == pytest.approx(math.degrees(0.5), abs=0.1)


def test_loss_decide_is_the_pairwise_rule():
    """decide() with a loss curve: class k wins iff its logit beats the other's, both from the loss (here
    CurricularFace's hard negative c·(t + c), written out)."""
    t, m = 0.3, 0.5
    c = after_arcface_curve("curricularface", t=t)
    g = np.radians(np.linspace(1.0, 179.0, 60))
    t1, t2 = np.meshgrid(g, g)

    def wins(own, other):
        f = arc(own, m)
        co = np.cos(other)
        neg = np.where(co > np.cos(own + m), co * (t + co), co)
        return f > neg

    w1, w2 = wins(t1, t2), wins(t2, t1)
    want = np.where(w1 & w2, 3, np.where(w1, CLASS1, np.where(w2, CLASS2, NEITHER)))
    got = decide(t1, t2, curve=c)
    assert (got == want).mean() > 0.999  # float32 ties on the boundary
    crossing = margin_crossing(np.radians(90.0), curve=c)
    on_arc = np.linspace(0, math.pi / 2, 2001)
    first_loss = on_arc[np.argmin(wins(on_arc, math.pi / 2 - on_arc))]
    assert float(crossing) == pytest.approx(first_loss, abs=1e-3)


def test_magface_width_follows_the_norm_and_adacos_has_none():
    small = width_range(0.0, math.pi, curve=after_arcface_curve("magface", mag_norm=10.0))
    large = width_range(0.0, math.pi, curve=after_arcface_curve("magface", mag_norm=110.0))
    assert math.degrees(small.min) == pytest.approx(math.degrees(0.45), abs=0.1)
    assert math.degrees(large.min) == pytest.approx(math.degrees(0.8), abs=0.1)
    none = width_range(0.0, math.pi, curve=after_arcface_curve("adacos"))
    assert abs(math.degrees(none.max)) < 0.2


@pytest.mark.parametrize("loss", AFTER_ARCFACE)
def test_decision_margins_page_with_every_new_loss(loss):
    at = open_page("pages/decision_margins.py", {"loss": loss, "phi": "90"})
    assert not at.exception
    figs = charts(at)
    assert any(t.get("type") == "heatmap" for t in figs[0]["data"])  # the (θ1, θ2) plane as a raster
    assert any(m.label.startswith("margin width at φ") for m in at.metric)
    widths = figs[-1]
    assert any(t.get("name", "").startswith(after_arcface_curve(loss).label.split(" (")[0].split(":")[0])
               for t in widths["data"])
