"""Home: the margin family in formulas, Algorithm 1 of the ArcFace paper, and a guide to the lessons."""

import pandas as pd
import streamlit as st

from arcface_viz.losses import LOSSES
from pages._registry import PAGES

st.title("Margin-based softmax losses")
st.markdown(
    "Face recognition trains a classifier over identities, then throws the classifier away and keeps the "
    "**embedding**. What makes embeddings good is the *geometry* the loss leaves behind: samples of one "
    "identity packed tightly around their class centre $W_j$, centres far apart. The cosine losses below "
    "(Norm-Softmax, SphereFace, CosFace, ArcFace and the combined margin) differ only in the **target logit** — "
    "what the correct class's score is before the softmax; Softmax also keeps a bias and the feature norm, and "
    "A-Softmax keeps the norm $\\|x\\|$. Every lesson of this app lets you move the margins and watch what changes."
)

st.subheader("One family, one formula")
st.markdown("With $\\theta_j$ the angle between the feature $x_i$ and the class centre $W_j$, and $s$ the scale:")
st.latex(
    r"L = -\frac{1}{N}\sum_{i=1}^{N}\log\frac{e^{s\,(\cos(m_1\theta_{y_i}+m_2)-m_3)}}"
    r"{e^{s\,(\cos(m_1\theta_{y_i}+m_2)-m_3)}+\sum_{j\neq y_i} e^{s\cos\theta_j}}"
)
rows = [
    ("Softmax (L1)", r"W_{y}^\top x + b_{y}", "plain linear layer with bias"),
    ("Norm-Softmax (L2)", r"s\cos\theta_{y}", r"$(m_1,m_2,m_3) = (1, 0, 0)$, $\|W_j\| = 1$, $\|x\| = s$"),
    ("SphereFace", r"s\cos(m_1\theta_{y})", r"multiplicative angular margin, $m_1 = 1.35$"),
    ("A-Softmax", r"\|x\|\,\frac{\lambda\cos\theta_y + \psi(\theta_y)}{1+\lambda}",
     r"$\psi(\theta) = (-1)^k\cos(m\theta) - 2k$ on $[k\pi/m, (k+1)\pi/m]$, $m = 4$, λ annealed to 5"),
    ("CosFace (LMCL)", r"s(\cos\theta_{y} - m_3)", r"additive cosine margin, $m_3 = 0.35$"),
    ("ArcFace (L3)", r"s\cos(\theta_{y} + m_2)", r"additive angular margin, $m_2 = 0.5$ rad ≈ 28.6°"),
    ("Combined (L4)", r"s(\cos(m_1\theta_{y} + m_2) - m_3)", "CM1 = (1, 0.3, 0.2), CM2 = (0.9, 0.4, 0.15)"),
]
for name, formula, note in rows:
    c1, c2, c3 = st.columns([1.2, 2, 3], vertical_alignment="center")
    c1.markdown(f"**{name}**")
    c2.latex(formula)
    c3.markdown(note)

st.markdown("The regularised losses the paper compares against add a term to Norm-Softmax (or ArcFace):")
st.latex(r"L_5 = L_2 + \frac{1}{\pi N}\sum_{i=1}^{N}\theta_{y_i}\qquad\text{(Intra: pull samples to their centre)}")
st.latex(r"L_6 = L_2 - \frac{1}{\pi N (n-1)}\sum_{i=1}^{N}\sum_{j\neq y_i}\arccos(W_{y_i}^\top W_j)"
         r"\qquad\text{(Inter: push centres apart)}")
st.latex(r"\arccos(x_i^{pos}\cdot x_i) + m \le \arccos(x_i^{neg}\cdot x_i)\qquad\text{(angular Triplet, } m = 0.35)")

st.subheader("Algorithm 1: ArcFace in nine lines")
st.markdown(
    """
The paper's pseudo-code (MXNet), line by line. Input: the scale $s$, the margin $m$, the number of classes $n$
and the ground-truth ids $gt$.

1. **Normalise the feature**: $x \\leftarrow x / \\|x\\|$.
2. **Normalise the weights**: $W_j \\leftarrow W_j / \\|W_j\\|$.
3. **Cosine logits**: $fc7 = W^\\top x$, a fully connected layer without bias ($\\cos\\theta_j$).
4. **Pick the target cosine**: $\\cos\\theta_{gt}$, the original target logit.
5. **Angle**: $\\theta = \\arccos(\\cos\\theta_{gt})$.
6. **Add the margin**: the marginal target logit $\\cos(\\theta + m)$.
7. **One-hot** encode $gt$ over the $n$ classes.
8. **Replace the target logit**: $fc7 \\leftarrow fc7 + \\text{one\\_hot} \\cdot (\\cos(\\theta + m) - \\cos\\theta)$.
9. **Rescale**: $fc7 \\leftarrow s \\cdot fc7$.

Output: the class-wise scores $fc7$. Training feeds them to the softmax cross-entropy, which is not one of
the nine lines.
"""
)
st.info(
    "**Beyond π.** When $\\theta + m > \\pi$, $\\cos(\\theta + m)$ turns back up and would *reward* the worst "
    "samples. Past $\\theta^* = (\\pi - m_2)/m_1$ training here uses $\\cos\\theta - m_3 - c$ with "
    "$c = \\max(m_2\\sin m_2,\\ 1 + \\cos\\theta^*)$. For ArcFace ($m_1 = 1$, $m_3 = 0$) this is exactly the "
    "$\\cos\\theta - m\\sin m$ of insightface (2018–2022) and pytorch-metric-learning. insightface has this "
    "extension only for $m_1 = 1$, $m_3 = 0$ (its CosFace branch ignores $m_1$ and $m_2$, and other combinations "
    "raise an error): the general form, still decreasing for SphereFace's $m_1 = 1.35$ and the combined margins, "
    "is this app's own extension. *Easy margin* instead applies the margin only where $\\cos\\theta > 0$. See it "
    "on the *Target logit* lesson with the full 0–180° range.",
    icon=":material/info:",
)

st.subheader("The lessons")
for path, title, url_path, icon, _section in PAGES:
    if url_path:
        st.page_link(path, label=title, icon=icon)

with st.expander("Every loss in the library, with its defaults"):
    table = pd.DataFrame(
        [
            {
                "name": info.name,
                "loss": info.label,
                "parameters": ", ".join(info.params) or "—",
                "paper defaults": ", ".join(f"{k}={v}" for k, v in info.paper.items()) or "—",
                "2-D/3-D defaults": ", ".join(f"{k}={v}" for k, v in info.low_dim.items()) or "—",
                "what it does": info.summary,
            }
            for info in LOSSES.values()
        ]
    )
    st.dataframe(table, hide_index=True, width="stretch")
    st.caption("In 2-D or 3-D, s = 64 with m = 0.5 rarely trains: the low-dimensional defaults use a smaller "
               "scale and margins (public demos use s ≈ 10–30 and m ≈ 0.1–0.3).")
