"""Lesson: train a small model live on toy data and watch the embeddings settle on the circle or sphere."""

import streamlit as st

from arcface_viz.claims import gap_readout
from arcface_viz.geometry import margin_fit_warning
from arcface_viz.hosted import capped
from arcface_viz.live import LiveSession
from arcface_viz.losses import LOSSES, loss_margins
from arcface_viz.params import LIVE_KEYS, TOY_SPEC
from arcface_viz.plots.sphere import (
    centres_name,
    compare_figures,
    curves_figure,
    embedding_figure,
    theta_histogram_figure,
    training_animation,
)
from arcface_viz.plots.style import standalone_html
from arcface_viz.stats import GAP_HELP
from arcface_viz.training import ToyConfig, build_compare_trainers, reconfigure
from pages._live import get_or_build, live_buttons, tick
from pages._ui import chart, controls, page_state, sync_url

PAGE = "toy-training"
TICK_SECONDS = 0.15

st.title("Live training: toy data")
st.caption("A small MLP maps toy data to a 2-D or 3-D embedding, drawn normalised on the circle or the sphere. "
           "The paper's Fig. 3 is *compare mode* (Softmax against ArcFace) on the Fig. 3 data set in 2-D; under "
           "each figure, the gap between its closest identities.")
SPEC = capped(TOY_SPEC)
values = page_state(PAGE, SPEC)
loss = values["loss"]

with st.sidebar:
    st.header("Data")
    controls(PAGE, SPEC, ("dataset", "classes", "samples", "noise", "seed"),
             defaults_for={"dataset": ToyConfig.dataset_defaults})
    st.header("Loss")
    controls(PAGE, SPEC, ("loss", *LOSSES[loss].params))
    st.header("Training")
    controls(PAGE, SPEC, ("dim", "optimizer", "lr", "warmup", "steps_per_frame"))
    st.header("Compare")
    controls(PAGE, SPEC, ("compare", "loss_b") if values["compare"] else ("compare",))
sync_url(SPEC, values)
if LOSSES[loss].head == "cosine":
    fit = margin_fit_warning(values["classes"], values["dim"], *loss_margins(loss, values))
    if fit:
        st.warning(fit, icon=":material/warning:")


def build(v: dict) -> list:
    """One trainer, or two for compare mode (same data, seed and initial weights; second loss on the left)."""
    cfg = ToyConfig.from_values(v)
    if v["compare"]:
        return list(build_compare_trainers(cfg, losses=(v["loss_b"], v["loss"]), loss_params=(None, cfg.loss_params)))
    return [cfg.build()]


def apply_live(run: LiveSession, v: dict) -> None:
    """Loss parameters, learning rate and warm-up take effect at the next step of every trainer."""
    names = [v["loss_b"], v["loss"]] if v["compare"] else [v["loss"]]
    for trainer, name in zip(run.trainers, names, strict=True):
        reconfigure(trainer, ToyConfig.from_values(v, loss=name if name != v["loss"] else None))


run = get_or_build(PAGE, values, build, live_keys=LIVE_KEYS, apply_live=apply_live)
if run is None:
    st.stop()
live_buttons(PAGE, run, values["steps_per_frame"])


def draw(run: LiveSession) -> None:
    snaps = [h[-1] for h in run.history]
    titles = [LOSSES[t.loss_fn.name].label for t in run.trainers]
    names = [str(c) for c in range(run.trainers[0].loss_fn.num_classes)]
    cols = st.columns(len(snaps))
    for col, snap, title in zip(cols, snaps, titles, strict=True):
        test = "—" if snap.test_acc is None else f"{100 * snap.test_acc:.1f}%"
        col.markdown(f"**{title}** — step {snap.step:,} · loss {snap.loss:.3f} · train {100 * snap.train_acc:.1f}% · "
                     f"test {test} · closest centres {snap.min_centre_angle_deg:.1f}°")
    regions = [dict(zip(("m1", "m2", "m3"), t.loss_fn.effective_margins(), strict=True), mode="margin")
               if t.loss_fn.info.head == "cosine" and snap.embeddings.shape[1] == 2 else None
               for t, snap in zip(run.trainers, snaps, strict=True)]
    rays = [centres_name(t.loss_fn.info.head) for t in run.trainers]
    if len(snaps) == 2:
        figs = compare_figures(snaps[0], snaps[1], titles=tuple(titles), class_names=names, regions=tuple(regions),
                               centres_labels=tuple(rays))
    else:
        what = "class weights" if run.trainers[0].loss_fn.info.head == "linear" else "class centres"
        figs = [embedding_figure(snaps[0].embeddings, snaps[0].labels, snaps[0].centres, class_names=names,
                                 title=f"{titles[0]}: embeddings and {what} W_j", regions=regions[0],
                                 centres_label=rays[0])]
    for col, fig, snap, i in zip(st.columns(len(figs)), figs, snaps, range(len(figs)), strict=True):
        with col:
            chart(fig, key=f"{PAGE}-emb-{i}")
            st.caption(gap_readout(snap), help=GAP_HELP)
    for col, hist, title, i in zip(st.columns(len(snaps)), run.history, titles, range(len(snaps)), strict=True):
        with col:
            chart(theta_histogram_figure(hist, title=f"θ_yi over training (Fig. 4a) — {title}"),
                  key=f"{PAGE}-theta-{i}")
            chart(curves_figure(**run.curves(i)), key=f"{PAGE}-curves-{i}")


def export_animation(run: LiveSession) -> None:
    """The run so far as an animated, offline HTML file (plotly frames), one per loss — for slides."""
    if not st.session_state.get("exports") or run.running:
        return
    for i, (trainer, hist) in enumerate(zip(run.trainers, run.history, strict=True)):
        name = trainer.loss_fn.name.replace("+", "_")
        loss_fn = trainer.loss_fn  # the animation applies each frame's warm-up scale itself
        margins = (loss_fn.m1, loss_fn.m2, loss_fn.m3) if loss_fn.info.head == "cosine" else None
        fig = training_animation(hist, title=f"{LOSSES[trainer.loss_fn.name].label} on {values['dataset']}",
                                 margins=margins)
        st.download_button(f"Training animation: {LOSSES[trainer.loss_fn.name].label} (HTML)",
                           standalone_html(fig, f"{name} training"), file_name=f"toy-{name}-animation.html",
                           mime="text/html", key=f"{PAGE}:anim-{i}", icon=":material/movie:", on_click="ignore")


export_animation(run)


@st.fragment(run_every=TICK_SECONDS if run.running else None)
def live() -> None:
    tick(run, values["steps_per_frame"])
    draw(run)


live()
