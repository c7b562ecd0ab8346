"""Lesson: train a small model live on toy data and watch the embeddings settle on the circle or sphere."""

import streamlit as st

from arcface_viz.claims import gap_readout, noisy_readout, state_readout
from arcface_viz.geometry import margin_fit_warning
from arcface_viz.hosted import capped
from arcface_viz.live import LiveSession
from arcface_viz.losses import LOSSES, combined_margins, loss_margins
from arcface_viz.params import LIVE_KEYS, TOY_SPEC
from arcface_viz.plots.sphere import (
    centres_name,
    compare_specs,
    curves_spec,
    snapshot_spec,
    theta_histogram_spec,
    training_animation,
)
from arcface_viz.plots.style import standalone_html, wire
from arcface_viz.stats import GAP_HELP
from arcface_viz.training import ToyConfig, build_compare_trainers, reconfigure
from pages._live import get_or_build, live_buttons, norm_rows, play, state_fig
from pages._ui import controls, page_state, sync_url

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


def margins(trainers: list, snaps: list) -> list:
    """Each trainer's combined margins in force (after warm-up), for the decision ring of the frame (None: no ring,
    e.g. a loss whose margin moves per sample)."""
    found = [combined_margins(t.loss_fn) for t in trainers]
    return [dict(zip(("m1", "m2", "m3"), m, strict=True), mode="margin") if m is not None else None for m in found]


run = get_or_build(PAGE, values, build, live_keys=LIVE_KEYS, apply_live=apply_live, extras=margins)
if run is None:
    st.stop()
live_buttons(PAGE, run, values["steps_per_frame"])


def rows(run: LiveSession) -> list:
    """The frame a view of the run shows, as the player's rows (pages/_player.py): status lines, then per trainer
    its embeddings with the gap readout, the feature norms for a norm-aware loss, and θ_yi, curves and loss
    state.  Built once per frame of a run, for every visitor who shows it."""
    snaps, regions = run.frame.snaps, run.frame.extras
    titles = [LOSSES[t.loss_fn.name].label for t in run.trainers]
    names = [str(c) for c in range(run.trainers[0].loss_fn.num_classes)]
    status = []
    for snap, title in zip(snaps, titles, strict=True):
        test = "—" if snap.test_acc is None else f"{100 * snap.test_acc:.1f}%"
        state = state_readout(snap.state)
        status.append(f"**{title}** — step {snap.step:,} · loss {snap.loss:.3f} · train {100 * snap.train_acc:.1f}% · "
                      f"test {test} · closest centres {snap.min_centre_angle_deg:.1f}°"
                      + (f" · {state}" if state else ""))
    regions = [r if snap.embeddings.shape[1] == 2 else None for r, snap in zip(regions, snaps, strict=True)]
    rays = [centres_name(t.loss_fn.info.head) for t in run.trainers]
    if len(snaps) == 2:
        emb = compare_specs(snaps[0], snaps[1], titles=tuple(titles), class_names=names, regions=tuple(regions),
                            centres_labels=tuple(rays))
    else:
        what = "class weights" if run.trainers[0].loss_fn.info.head == "linear" else "class centres"
        emb = [snapshot_spec(snaps[0], class_names=names, title=f"{titles[0]}: embeddings and {what} W_j",
                             regions=regions[0], centres_label=rays[0])]
    out = [[[{"md": line}] for line in status]]
    out.append([[{"fig": wire(fig), "key": f"emb-{i}"}, {"caption": gap_readout(snap), "help": GAP_HELP},
                 *([{"html": noisy_readout(snap.noisy)}] if snap.subcentres is not None else [])]
                for i, (fig, snap) in enumerate(zip(emb, snaps, strict=True))])
    out += norm_rows(run, titles, names)
    lower = []
    for i, (hist, title) in enumerate(zip(run.history, titles, strict=True)):
        col = [{"fig": wire(theta_histogram_spec(hist, title=f"θ_yi over training (Fig. 4a) — {title}")),
                "key": f"theta-{i}"},
               {"fig": wire(curves_spec(**run.curves(i))), "key": f"curves-{i}"}]
        state = state_fig(run, i, title)
        if state is not None:
            col.append({"fig": wire(state.to_dict()), "key": f"state-{i}"})
        lower.append(col)
    out.append(lower)
    return out


def export_animation(run: LiveSession) -> None:
    """The run so far as an animated, offline HTML file (plotly frames), one per loss — for slides."""
    if not st.session_state.get("exports") or run.running:
        return
    for i, (trainer, hist) in enumerate(zip(run.trainers, run.history, strict=True)):
        name = trainer.loss_fn.name.replace("+", "_")
        loss_fn = trainer.loss_fn  # the animation applies each frame's warm-up scale itself
        margins = (loss_fn.m1, loss_fn.m2, loss_fn.m3) if combined_margins(loss_fn) is not None else None
        fig = training_animation(hist, title=f"{LOSSES[trainer.loss_fn.name].label} on {values['dataset']}",
                                 margins=margins)
        st.download_button(f"Training animation: {LOSSES[trainer.loss_fn.name].label} (HTML)",
                           standalone_html(fig, f"{name} training"), file_name=f"toy-{name}-animation.html",
                           mime="text/html", key=f"{PAGE}:anim-{i}", icon=":material/movie:", on_click="ignore")


export_animation(run)


@st.fragment(run_every=TICK_SECONDS if run.running else None)
def live() -> None:
    play(PAGE, run, values["steps_per_frame"], TICK_SECONDS, rows)


live()
