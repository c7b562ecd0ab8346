"""Lesson: target logit against angle (the paper's Fig. 4b), the losses after ArcFace, and one sample's loss."""

import math

import streamlit as st

from arcface_viz.geometry import (
    ADAFACE_UNITS,
    FIG4B_BY_KEY,
    MAGFACE_NORMS,
    adaface_family,
    after_arcface_curve,
    magface_family,
    margin_curve,
)
from arcface_viz.params import CURVES_SPEC
from arcface_viz.plots.curves import curricular_figure, norm_family_figure, sample_loss_figure, target_logit_figure
from pages._ui import chart, controls, page_state, sync_url

PAGE = "target-logit"

st.title("Target logit vs angle")
st.caption("The ArcFace paper's Fig. 4(b): each loss replaces the target logit cos θ by its own curve. The losses "
           "that came after ArcFace can be added, each drawn from its own margin function.")
values = page_state(PAGE, CURVES_SPEC)
after = values["after"]

with st.sidebar:
    st.header("Curves")
    controls(PAGE, CURVES_SPEC, ("curves", "custom", "m1", "m2", "m3", "full_range", "monotonic"))
    st.header("After ArcFace")
    controls(PAGE, CURVES_SPEC, ("after", *(("mag_norm",) if "magface" in after else ()),
                                 *(("ada_units",) if "adaface" in after else ())))
    st.header("One sample's loss")
    controls(PAGE, CURVES_SPEC, ("s", "classes", "detached"))
sync_url(CURVES_SPEC, values)

m1, m2, m3 = values["m1"], values["m2"], values["m3"]
curves = [FIG4B_BY_KEY[k] for k in values["curves"]]
if values["custom"]:
    curves.append(margin_curve(f"Your curve ({m1:g}, {m2:g}, {m3:g})", m1, m2, m3, key="custom"))
newer = [after_arcface_curve(name, mag_norm=values["mag_norm"], ada_units=values["ada_units"]) for name in after]

if not curves and not newer:
    st.info("Pick at least one paper curve, a loss after ArcFace, or switch on *Your curve* in the sidebar.",
            icon=":material/info:")
    st.stop()

chart(target_logit_figure([*curves, *newer], full_range=values["full_range"], monotonic=values["monotonic"]),
      key="fig4b")

if values["custom"]:
    custom = curves[-1]
    c1, c2, c3 = st.columns(3)
    at90 = float(custom.evaluate(math.pi / 2))
    c1.metric("your target logit at 90°", f"{at90:.3f}", f"{at90 - 0.0:+.3f} vs cos 90°", delta_color="off")
    t_star = custom.theta_star
    c2.metric("turns back at θ*", "never" if t_star is None else f"{math.degrees(t_star):.1f}°",
              help="θ* = (π − m2)/m1: beyond it cos(m1·θ + m2) rises again.")
    c3.metric("margin at θ = 60°", f"{math.cos(math.pi / 3) - float(custom.evaluate(math.pi / 3)):.3f}",
              help="cos 60° minus your target logit at 60°: how much harder the correct class must work.")
    if m1 < 1 and m2 == 0 and m3 == 0:
        st.warning("m1 < 1 with no other margin makes the target logit *larger* than cos θ: a negative margin "
                   "that makes classes overlap instead of separating them.", icon=":material/warning:")
    if t_star is not None and t_star < math.pi:
        st.info(
            f"cos(m1·θ + m2) turns back up at θ* = {math.degrees(t_star):.1f}°: the loss would push samples "
            "beyond it *further away*. Training switches to the monotonic extension cos θ − m3 − c there"
            + ("." if values["monotonic"] and values["full_range"]
               else " (switch on *Training curve* and *Full range* to see it)."),
            icon=":material/trending_up:",
        )

if "magface" in after or "adaface" in after:
    st.subheader("MagFace and AdaFace: a family of curves over the feature norm")
    st.markdown(
        "Both read the feature norm ‖x‖ before normalising. MagFace gives a **longer** feature a **larger** angular "
        "margin (and rewards long features with its regulariser g), so an easy sample ends far out; AdaFace reads "
        "a high norm (relative to the batch) as a good image and gives it an angular margin, a low norm a "
        "smaller, additive one. Thick: the norm on the sliders."
    )
    mag_at = min(range(len(MAGFACE_NORMS)), key=lambda i: abs(MAGFACE_NORMS[i] - values["mag_norm"]))
    ada_at = min(range(len(ADAFACE_UNITS)), key=lambda i: abs(ADAFACE_UNITS[i] - values["ada_units"]))
    chart(norm_family_figure(magface_family(), adaface_family(), (mag_at, ada_at), full_range=values["full_range"]),
          key="norm-families")
if "curricularface" in after:
    st.subheader("CurricularFace: the negatives change too")
    st.markdown("CurricularFace keeps ArcFace's target, and rescales every negative harder than the target, "
                "cos θ_j > cos(θ_y + m), to cos θ_j·(t + cos θ_j). While t (the running mean of cos θ_y) is near "
                "0 those hard negatives count less than cos θ_j — easy samples first; as t grows they count more.")
    chart(curricular_figure(full_range=values["full_range"]), key="curricular")

st.subheader("What the curve does to one sample")
st.markdown(
    f"Loss $L(\\theta)$ of one sample whose target angle is θ, with the other {values['classes'] - 1:,} logits at "
    f"$s\\cos 90° = 0$ (random initialisation in high dimension), at $s = {values['s']:g}$, and its slope "
    "$dL/d\\theta$: the push the sample gets toward its centre. A margin keeps the push on for samples that "
    "are already classified correctly."
    + (" A-Softmax (the original SphereFace) keeps the feature norm $\\|x\\|$ instead of a scale: its curve is "
       "drawn at $\\|x\\| = s$." if any(c.kind == "a_softmax" for c in curves) else "")
    + (" Dotted: the slope with the margin computed without gradient (insightface's arcface_torch since 2022, "
       "`detach_margin` in this app's trainers): the loss is the same, but the push is that of $s\\cos\\theta$ "
       "under the margined softmax." if values["detached"] else "")
)
chart(sample_loss_figure([*curves, *newer], s=values["s"], num_classes=values["classes"],
                         full_range=values["full_range"], detached=values["detached"]), key="sample-loss")
