"""The explainer: the ArcFace paper's story in eight steps and what came after, each with a live figure."""

import math

import numpy as np
import pandas as pd
import streamlit as st

from arcface_viz.claims import (
    FIG3_CLAIMS,
    FIG3_SEED,
    FIG3_STEPS,
    NOISY_CLAIMS,
    NOISY_STEPS,
    PUSH_CLAIMS,
    PUSH_CURVES,
    TABLE3_CLAIMS,
    WIDTH_CLAIMS,
    fig3_numbers,
    fig3_runs,
    gap_readout,
    noisy_numbers,
    noisy_run,
    push_numbers,
    table3_numbers,
    width_numbers,
)
from arcface_viz.geometry import FIG4B_BY_KEY, FIG4B_CURVES, FIG5_WIDTH_CURVES, margin_curve
from arcface_viz.losses import AFTER_ARCFACE, LOSSES
from arcface_viz.params import Param, Spec
from arcface_viz.plots.curves import sample_loss_figure, target_logit_figure
from arcface_viz.plots.margins import (
    circle_margin_figure,
    margin_width_figure,
    softmax_plane_figure,
    theta_plane_figure,
)
from arcface_viz.plots.sphere import CENTRES_NAME, WEIGHTS_NAME, compare_figures, embedding_figure, snapshot_figure
from arcface_viz.stats import GAP_HELP, PAPER_TABLE2, PAPER_TABLE3, TABLE3_ARROW
from pages._ui import chart, page_state, sync_url

PAGE = "explainer"
TITLES = ("The problem", "Softmax", "Normalisation", "Three margins", "ArcFace", "Training", "Evidence",
          "Caveats", "After ArcFace")
SPEC = Spec((Param("step", "int", 1, "step", "Which step of the story.", min=1, max=len(TITLES), step=1),))


@st.cache_data(show_spinner="Training Sub-center ArcFace on noisy blobs…", max_entries=2)
def noisy(seed: int = 0, steps: int = NOISY_STEPS):
    """The "after ArcFace" step's run (Sub-center ArcFace on blobs with 10 % flipped labels, 2-D) and its numbers,
    cached for every visitor."""
    snap = noisy_run(seed, steps)
    return snap, noisy_numbers(snap)


@st.cache_data(show_spinner="Training Softmax and ArcFace on the Fig. 3 toy…", max_entries=4)
def fig3(seed: int = FIG3_SEED, steps: int = FIG3_STEPS):
    """The Fig. 3 runs (Softmax, ArcFace; 2-D) and the numbers the text quotes, cached for every visitor."""
    softmax, arcface = fig3_runs(seed, steps)
    return softmax, arcface, fig3_numbers(softmax, arcface)


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
    softmax, _, numbers = fig3()
    st.markdown(
        "Face recognition is **open-set**: the people we must recognise tomorrow are not in today's training "
        "set. So we train a classifier over the identities we have, throw the classifier away, and keep the "
        "**embedding**. Two faces are the same person when their embeddings point the same way. What we need "
        "from training is geometry: each identity's samples packed tightly together, identities far apart.\n\n"
        f"Below, a plain Softmax trained on eight identities for {numbers['steps']:,} steps, its 2-D features "
        "normalised onto the circle (only their directions count when we compare faces). "
        + FIG3_CLAIMS["softmax_touching"].render(numbers)
    )
    chart(embedding_figure(softmax.embeddings, softmax.labels, softmax.centres, centres_label=WEIGHTS_NAME,
                           title="Softmax: 8 identities in 2-D, features normalised"), key=f"{PAGE}-softmax-petals")
    st.caption(gap_readout(softmax), help=GAP_HELP)
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
    widths = width_numbers()
    st.markdown(
        "ArcFace's margin lives in the angle itself. What holds in any dimension is the paper's claim: in the "
        "$(\\theta_1, \\theta_2)$ plane its decision boundaries are the parallel lines "
        "$\\theta_2 - \\theta_1 = \\pm m$. " + WIDTH_CLAIMS["arcface_constant_on_circle"].render(widths) + " "
        + WIDTH_CLAIMS["arcface_not_constant_in_3d"].render(widths)
    )
    left, right = st.columns(2)
    with left:
        chart(circle_margin_figure(math.radians(60), 1, 0.5, 0, label="ArcFace (m = 0.5)"), key=f"{PAGE}-circle")
    with right:
        chart(margin_width_figure(FIG5_WIDTH_CURVES), key=f"{PAGE}-widths")
    st.page_link("pages/decision_margins.py", label="Compare the margins in the Decision-margins lesson",
                 icon=":material/arrow_outward:", query_params={"loss": "arcface", "m2": "0.5", "phi": "60.0"})
elif step == 6:
    softmax, arcface, numbers = fig3()
    st.markdown(
        "The paper's Fig. 3: eight identities, 2-D features, the same data and the same initial weights, two "
        f"losses, {numbers['steps']:,} steps each. " + FIG3_CLAIMS["arcface_gap"].render(numbers)
    )
    figs = compare_figures(softmax, arcface, titles=("Softmax", "ArcFace"), centres_labels=(WEIGHTS_NAME, None))
    for col, fig, snap, i in zip(st.columns(2), figs, (softmax, arcface), range(2), strict=True):
        with col:
            chart(fig, key=f"{PAGE}-fig3-{i}")
            st.caption(gap_readout(snap), help=GAP_HELP)
    st.page_link("pages/toy_training.py", label="Train them live in the toy lesson", icon=":material/arrow_outward:",
                 query_params={"compare": "true", "dim": "2", "loss_b": "softmax"})
    st.page_link("pages/toy_training.py", label="Norm-Softmax against ArcFace instead",
                 icon=":material/arrow_outward:",
                 query_params={"compare": "true", "dim": "2", "loss_b": "norm_softmax"})
elif step == 7:
    st.markdown("The paper measures the geometry directly (Table 3, CASIA/ResNet50, degrees). "
                + TABLE3_CLAIMS["table3"].render(table3_numbers()))
    table = pd.DataFrame(PAPER_TABLE3).T
    table.index = [f"{k} {TABLE3_ARROW[k]}" for k in table.index]
    st.dataframe(table, width="stretch")
    st.markdown("And in verification accuracy (Table 2, %, a selection):")
    keep = ["Softmax", "Norm-Softmax (s=64)", "SphereFace (1.35)", "CosFace (0.35)", "ArcFace (0.5)",
            "CM1 (1, 0.3, 0.2)"]
    st.dataframe(pd.DataFrame({k: PAPER_TABLE2[k] for k in keep if k in PAPER_TABLE2}).T, width="stretch")
elif step == 9:
    snap, numbers = noisy()
    st.markdown(
        "ArcFace (2018) became the default; the losses people train face models with today refine it. Each is one "
        "margin function in this app, and every lesson has them:\n\n"
        + "\n".join(f"- **{LOSSES[n].label}**: {LOSSES[n].summary}" for n in AFTER_ARCFACE)
    )
    st.markdown(
        "The caveat of step 8, noisy labels, is the first one a later loss answered. **Sub-center ArcFace** gives "
        "each identity K centres and lets a sample use its nearest: below, K = 3 on Gaussian blobs where 10 % of "
        "the labels were flipped to a wrong class (✕: those training samples, in the colour of their wrong "
        "label; dotted rays: the non-dominant sub-centres). " + NOISY_CLAIMS["noisy_away"].render(numbers) + " "
        + NOISY_CLAIMS["cleaning"].render(numbers)
    )
    chart(snapshot_figure(snap, title="Sub-center ArcFace (K = 3) on blobs with 10 % flipped labels, 2-D",
                          centres_label=CENTRES_NAME), key=f"{PAGE}-subcentres")
    st.page_link("pages/toy_training.py", label="Train it live (and MagFace's norms, AdaFace, …) in the toy lesson",
                 icon=":material/arrow_outward:", query_params={"loss": "subcenter_arcface", "dataset": "blobs",
                                                                "dim": "2"})
    st.page_link("pages/target_logit.py", label="Their target logits in the Target-logit lesson",
                 icon=":material/arrow_outward:", query_params={"after": ",".join(AFTER_ARCFACE), "curves": "arcface",
                                                                "custom": "false", "full_range": "true"})
else:
    push = push_numbers()
    st.markdown(
        "- **Low dimension.** With 2-D or 3-D embeddings, $s = 64$ and $m = 0.5$ rarely train; the lessons use "
        "smaller scales and margins. Eight classes on a circle leave only 45° between neighbours.\n"
        "- **Beyond π.** $\\cos(\\theta + m)$ rises again past $\\theta = \\pi - m$; training switches to a "
        "decreasing extension (or *easy margin*).\n"
        "- " + PUSH_CLAIMS["margin_keeps_pushing"].render(push) + " The scale $s$ sets how steep these curves "
        "are: move it in the Target-logit lesson.\n"
        "- **Noisy labels** get pushed as hard as clean ones; later work (sub-centre ArcFace) relaxes this."
    )
    chart(sample_loss_figure([FIG4B_BY_KEY[k] for k in PUSH_CURVES], s=push["s"], num_classes=push["classes"]),
          key=f"{PAGE}-push")
    st.page_link("pages/target_logit.py", label="Change s in the Target-logit lesson", icon=":material/arrow_outward:",
                 query_params={"s": "16.0"})
