"""The explainer: the ArcFace paper's story in eight steps, each with the live figure of its lesson."""

import math

import numpy as np
import pandas as pd
import streamlit as st

from arcface_viz.geometry import FIG4B_BY_KEY, FIG4B_CURVES, FIG5_WIDTH_CURVES, margin_curve
from arcface_viz.params import Param, Spec
from arcface_viz.plots.curves import sample_loss_figure, target_logit_figure
from arcface_viz.plots.margins import (
    circle_margin_figure,
    margin_width_figure,
    softmax_plane_figure,
    theta_plane_figure,
)
from arcface_viz.plots.sphere import compare_figures, embedding_figure
from arcface_viz.stats import PAPER_TABLE2, PAPER_TABLE3, TABLE3_ARROW
from arcface_viz.training import build_compare_trainers, build_toy_trainer
from pages._ui import chart, page_state, sync_url

PAGE = "explainer"
TITLES = ("The problem", "Softmax", "Normalisation", "Three margins", "ArcFace", "Training", "Evidence",
          "Caveats")
SPEC = Spec((Param("step", "int", 1, "step", "Which step of the story.", min=1, max=len(TITLES), step=1),))


@st.cache_data(show_spinner="Training a small model for this step…", max_entries=8)
def toy_runs(kind: str, steps: int, seed: int = 0):
    """Snapshots of short toy runs, cached for every visitor (same seed, same pictures)."""
    if kind == "softmax":
        return [build_toy_trainer({"dataset": "fig3", "dim": 2, "loss": "softmax", "seed": seed}).advance(steps)]
    pair = build_compare_trainers({"dataset": "fig3", "dim": 3, "seed": seed}, losses=("norm_softmax", "arcface"))
    return [t.advance(steps) for t in pair]


def go_to(step: int) -> None:
    st.session_state[f"{PAGE}:step"] = step
    st.session_state[f"_values:{PAGE}"]["step"] = step


values = page_state(PAGE, SPEC)
step = values["step"]
sync_url(SPEC, values)

st.title("ArcFace, step by step")
st.progress(step / len(TITLES), text=f"Step {step} of {len(TITLES)}: **{TITLES[step - 1]}**")
nav = st.container(horizontal=True)  # buttons as wide as their labels: fixed columns cut "Previous" on a projector
nav.button("Previous", on_click=go_to, args=(max(1, step - 1),), disabled=step == 1, icon=":material/arrow_back:",
           width="content", key=f"{PAGE}:prev")
nav.button("Next", on_click=go_to, args=(min(len(TITLES), step + 1),), disabled=step == len(TITLES),
           type="primary", icon=":material/arrow_forward:", width="content", key=f"{PAGE}:next")
st.header(f"{step}. {TITLES[step - 1]}")

if step == 1:
    st.markdown(
        "Face recognition is **open-set**: the people we must recognise tomorrow are not in today's training "
        "set. So we train a classifier over the identities we have, throw the classifier away, and keep the "
        "**embedding**. Two faces are the same person when their embeddings point the same way. What we need "
        "from training is geometry: each identity's samples packed tightly together, identities far apart.\n\n"
        "Below, a plain Softmax trained on eight identities. The classes separate, but as radial *petals* whose "
        "angular width is large — a new face falling between two petals is ambiguous."
    )
    snap = toy_runs("softmax", 400)[0]
    chart(embedding_figure(snap.embeddings, snap.labels, snap.centres, title="Softmax: 8 identities in 2-D"),
          key=f"{PAGE}-softmax-petals")
elif step == 2:
    st.markdown(
        "Softmax scores class *j* with $W_j^\\top x + b_j$. Between two classes the decision boundary is the line "
        "$(W_1 - W_2)x + b_1 - b_2 = 0$: it depends on the feature norm and the biases, and the two classes "
        "touch along it — there is **no margin**."
    )
    chart(softmax_plane_figure(np.array([1.0, 0.0]), np.array([0.0, 1.3]), 0.3, 0.0), key=f"{PAGE}-softmax-plane")
    st.page_link("pages/decision_margins.py", label="Move the bias and the norms in the Decision-margins lesson",
                 icon=":material/arrow_outward:", query_params={"loss": "softmax", "bias": "0.3", "norm_ratio": "1.3"})
elif step == 3:
    st.markdown(
        "Norm-Softmax fixes $\\|W_j\\| = 1$, $b_j = 0$ and rescales the feature to $\\|x\\| = s$. The logit becomes "
        "$s\\cos\\theta_j$: **only the angle matters**, and the boundary is $\\theta_1 = \\theta_2$ — the "
        "diagonal of the $(\\theta_1, \\theta_2)$ plane. Still no margin."
    )
    chart(theta_plane_figure(margin_curve("Norm-Softmax (1, 0, 0)", 1, 0, 0)), key=f"{PAGE}-ns-plane")
elif step == 4:
    st.markdown(
        "A margin makes the correct class work harder: its logit $\\cos\\theta$ is replaced by something smaller. "
        "SphereFace multiplies the angle ($\\cos m_1\\theta$), ArcFace adds to the angle ($\\cos(\\theta + m_2)$), "
        "CosFace subtracts from the cosine ($\\cos\\theta - m_3$). The paper's Fig. 4(b):"
    )
    chart(target_logit_figure(FIG4B_CURVES), key=f"{PAGE}-fig4b")
    st.page_link("pages/target_logit.py", label="Add your own curve in the Target-logit lesson",
                 icon=":material/arrow_outward:", query_params={"m2": "0.5", "m1": "1.0", "m3": "0.0"})
elif step == 5:
    st.markdown(
        "ArcFace's margin lives in the angle itself, so the grey band between two classes has the **same "
        "angular width $m_2$ everywhere** — a geodesic distance on the hypersphere. CosFace's and SphereFace's "
        "bands are wider in some places than in others."
    )
    left, right = st.columns(2)
    with left:
        chart(circle_margin_figure(math.radians(60), 1, 0.5, 0, label="ArcFace (m = 0.5)"), key=f"{PAGE}-circle")
    with right:
        chart(margin_width_figure(FIG5_WIDTH_CURVES), key=f"{PAGE}-widths")
    st.page_link("pages/decision_margins.py", label="Compare the margins in the Decision-margins lesson",
                 icon=":material/arrow_outward:", query_params={"loss": "arcface", "m2": "0.5", "phi": "60.0"})
elif step == 6:
    st.markdown(
        "The paper's Fig. 3: the same data, the same initial weights, two losses. Norm-Softmax leaves classes "
        "spread and touching; ArcFace packs each identity tightly around its centre with clear gaps between "
        "them. (3-D embeddings, 600 steps.)"
    )
    ns, arc = toy_runs("compare", 600)
    figs = compare_figures(ns, arc, titles=("Norm-Softmax", "ArcFace"))
    for col, fig, i in zip(st.columns(2), figs, range(2), strict=True):
        with col:
            chart(fig, key=f"{PAGE}-fig3-{i}")
    st.page_link("pages/toy_training.py", label="Train them live in the toy lesson", icon=":material/arrow_outward:",
                 query_params={"compare": "true", "dim": "3"})
elif step == 7:
    st.markdown(
        "The paper measures the geometry directly (Table 3, CASIA/ResNet50, degrees). ArcFace brings each class "
        "centre $W_j$ close to where its samples really are (W-EC 14° against 44° for Norm-Softmax) while "
        "keeping centres apart. The Intra-loss squeezes classes but collapses the centres together; the "
        "Inter-loss spreads centres but leaves classes loose."
    )
    table = pd.DataFrame(PAPER_TABLE3).T
    table.index = [f"{k} {TABLE3_ARROW[k]}" for k in table.index]
    st.dataframe(table, width="stretch")
    st.markdown("And in verification accuracy (Table 2, %, a selection):")
    keep = ["Softmax", "Norm-Softmax (s=64)", "SphereFace (1.35)", "CosFace (0.35)", "ArcFace (0.5)",
            "CM1 (1, 0.3, 0.2)"]
    st.dataframe(pd.DataFrame({k: PAPER_TABLE2[k] for k in keep if k in PAPER_TABLE2}).T, width="stretch")
else:
    st.markdown(
        "- **Low dimension.** With 2-D or 3-D embeddings, $s = 64$ and $m = 0.5$ rarely train; the lessons use "
        "smaller scales and margins. Eight classes on a circle leave only 45° between neighbours.\n"
        "- **Beyond π.** $\\cos(\\theta + m)$ rises again past $\\theta = \\pi - m$; training switches to a "
        "decreasing extension (or *easy margin*).\n"
        "- **The scale s decides how hard the loss pushes.** Below, one sample's loss and its slope at $s = 64$ "
        "with 10,575 classes: without a margin the push stops early; with a margin it continues.\n"
        "- **Noisy labels** get pushed as hard as clean ones; later work (sub-centre ArcFace) relaxes this."
    )
    chart(sample_loss_figure([FIG4B_BY_KEY["softmax"], FIG4B_BY_KEY["arcface"], FIG4B_BY_KEY["cosface"]], s=64.0,
                             num_classes=10575), key=f"{PAGE}-push")
