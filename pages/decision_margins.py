"""Lesson: binary decision margins (the paper's Fig. 5), in the (θ1, θ2) plane and on the unit circle."""

import math

import numpy as np
import streamlit as st

from arcface_viz.claims import WIDTH_CLAIMS, width_numbers
from arcface_viz.geometry import (
    FIG5_WIDTH_CURVES,
    after_arcface_curve,
    margin_curve,
    margin_width,
    softmax_flip_radius,
    width_range,
)
from arcface_viz.losses import AFTER_ARCFACE, LOSSES, loss_margins
from arcface_viz.params import MARGINS_SPEC
from arcface_viz.plots.margins import (
    circle_margin_figure,
    margin_width_figure,
    softmax_plane_figure,
    theta_plane_figure,
)
from pages._ui import chart, controls, page_state, sync_url

PAGE = "decision-margins"

st.title("Decision margins")
st.caption("The ArcFace paper's Fig. 5: where class 1 wins, where class 2 wins, and the grey margin between.")
values = page_state(PAGE, MARGINS_SPEC)
loss = values["loss"]
margin_names = tuple(k for k in ("m1", "m2", "m3") if k in LOSSES[loss].params)

extra = {"magface": ("mag_norm",), "adaface": ("ada_units",), "curricularface": ("curr_t",)}.get(loss, ())
with st.sidebar:
    st.header("Two classes")
    controls(PAGE, MARGINS_SPEC, ("loss", *margin_names, *extra, "phi"), low_dim=False)
    if loss == "softmax":
        controls(PAGE, MARGINS_SPEC, ("bias", "norm_ratio"))
sync_url(MARGINS_SPEC, values)

phi = math.radians(values["phi"])
info = LOSSES[loss]

if loss == "softmax":
    w1 = np.array([1.0, 0.0])
    w2 = values["norm_ratio"] * np.array([math.cos(phi), math.sin(phi)])
    st.markdown(
        "Softmax decides with $(W_1 - W_2)\\,x + b_1 - b_2 = 0$: a straight line in feature space. "
        "There is **no margin** — the two classes touch along the line — and because the feature norm is not "
        "fixed, the class of a direction can flip as $\\|x\\|$ grows."
    )
    if np.allclose(w1, w2):
        st.warning("W1 and W2 coincide (φ = 0 and equal norms): Softmax cannot separate the classes.")
        st.stop()
    chart(softmax_plane_figure(w1, w2, values["bias"], 0.0), key="softmax-plane")
    bisector = phi / 2
    flip = softmax_flip_radius(bisector, w1, w2, values["bias"], 0.0)
    c1, c2 = st.columns(2)
    c1.metric("margin width", "0°", help="Softmax has a boundary, not a margin.")
    c2.metric("norm at which the bisector direction changes class", "never" if flip is None else f"{flip:.2f}")
    st.stop()

if loss in AFTER_ARCFACE:
    curve = after_arcface_curve(loss, mag_norm=values["mag_norm"], ada_units=values["ada_units"], t=values["curr_t"],
                                params={k: values[k] for k in margin_names}, key="current")
    st.markdown(
        f"**{info.label}**: {info.summary} Each class wins where its target logit beats the other class's logit, "
        "both as this loss computes them (from its own margin function, the curve it trains with"
        + (", at the feature norm on the slider" if loss in ("magface", "adaface") else "")
        + (", with the hard negative scaled by t" if loss == "curricularface" else "")
        + (", at its mean margin" if loss.startswith("elasticface") else "")
        + "). Where neither wins is the **margin** (grey)."
    )
else:
    m1, m2, m3 = loss_margins(loss, values)
    curve = margin_curve(f"{info.label} ({m1:g}, {m2:g}, {m3:g})", m1, m2, m3, key="current")
    st.markdown(
        "Each class wins where its margin-penalised target logit beats the other class's plain logit: "
        "class 1 wins where $f(\\theta_1) > \\cos\\theta_2$, class 2 where $f(\\theta_2) > \\cos\\theta_1$, "
        "with $f(\\theta) = \\cos(m_1\\theta + m_2) - m_3$. Where neither wins is the **margin** (grey)."
    )
left, right = st.columns(2)
with left:
    chart(theta_plane_figure(curve), key="theta-plane")
with right:
    chart(circle_margin_figure(phi, curve=curve, label=info.label), key="circle")

width = float(margin_width(np.array(phi), curve=curve))
rng = width_range(0.0, math.pi, curve=curve)
c1, c2, c3 = st.columns(3)
c1.metric(f"margin width at φ = {values['phi']:.0f}°", f"{math.degrees(width):.2f}°",
          help="Angular width of the grey arc between W1 and W2 on the unit circle.")
c2.metric(f"over φ > {math.degrees(rng.swallow_angle):.2f}°" if rng.swallow_angle > 0 else "over all φ",
          "constant" if rng.constant else "changes with φ",
          help="For smaller φ the margin swallows the whole arc between the centres." if rng.swallow_angle > 0
          else None)
c3.metric("range of widths", f"{math.degrees(rng.min):.1f}° – {math.degrees(rng.max):.1f}°")
st.caption(rng.describe().capitalize() + ".")
if width < 0:
    st.warning(("The margin is negative here" if loss in AFTER_ARCFACE else "With m1 < 1 the margin is negative")
               + ": both classes claim the purple band between the centres.", icon=":material/warning:")
elif width >= phi - 1e-9 and width > 0:
    st.warning(f"The margin swallows the whole arc: at φ = {values['phi']:.0f}° neither class can win anywhere "
               "between the centres. Move the centres apart or reduce the margin.", icon=":material/warning:")

st.subheader("Is the margin the same everywhere?")
st.markdown(WIDTH_CLAIMS["constant_widths"].render(width_numbers()) + " Your loss is drawn on top of the paper's "
            "settings. (On the sphere ArcFace's band is not equally wide everywhere: see step 5 of the Explainer.)")
chart(margin_width_figure([*FIG5_WIDTH_CURVES, curve]), key="widths")
