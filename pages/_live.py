"""Streamlit glue for live training pages: one LiveSession per page in session state, and its buttons."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import streamlit as st

from arcface_viz.claims import norm_readout
from arcface_viz.hosted import limits, release_memory
from arcface_viz.live import LiveSession
from arcface_viz.plots.norms import loss_rings, norm_figure, state_figure


def _key(page: str) -> str:
    return f"_live:{page}"


def get_or_build(page: str, values: dict[str, Any], build: Callable[[dict[str, Any]], list],
                 live_keys: Iterable[str], apply_live: Callable[[LiveSession, dict[str, Any]], None],
                 max_steps: int | None = None) -> LiveSession | None:
    """The page's session, built on first use or rebuilt while it has not started.

    A structural change (data, dimension, loss, seed) after training started does not throw the run
    away: the page says Reset applies it.  Other settings apply at the next step.  A setting that cannot
    be built shows its message and returns None.
    """
    max_steps = max_steps or limits().max_steps  # a run pauses itself there; Reset starts over
    live = set(live_keys)
    structure = {k: v for k, v in values.items() if k not in live}
    sess: LiveSession | None = st.session_state.get(_key(page))
    if sess is None or (sess.step == 0 and not sess.running and sess.changed(structure)):
        try:
            sess = LiveSession(build(values), structure, max_steps=max_steps)
        except ValueError as exc:  # includes data-set errors: a message, never a traceback
            st.error(f"These settings cannot be trained: {exc}", icon=":material/error:")
            st.session_state.pop(_key(page), None)
            return None
        st.session_state[_key(page)] = sess
        release_memory()  # the data loading and first evaluation's temporaries
        return sess
    changed = sess.changed(structure)
    if changed:
        st.info(f"You changed **{', '.join(changed)}**: press **Reset** to train with it. The current run "
                "goes on with the previous setting.", icon=":material/restart_alt:")
    else:
        apply_live(sess, values)
    return sess


def _set_running(page: str, on: bool) -> None:
    """Train (on) or Pause (off).  Sets, never toggles: Streamlit can deliver one click twice when it lands
    while a ``run_every`` fragment rerun is queued (once in that fragment run, once in the full rerun), and a
    toggle would then undo the Pause."""
    sess = st.session_state[_key(page)]
    sess.running = on and not sess.finished


def _step(page: str, k: int, drawn: int) -> None:
    """Pause and train k steps, once per drawing of the Step button (``drawn`` counts the full runs), so a
    click that Streamlit delivers twice (see :func:`_set_running`) still trains k steps, not 2k."""
    st.session_state[_key(page)].running = False
    if st.session_state.get(f"_stepped:{page}") != drawn:
        st.session_state[f"_stepped:{page}"] = drawn
        st.session_state[_key(page)].advance(k)


def _reset(page: str) -> None:
    st.session_state.pop(_key(page), None)


def live_buttons(page: str, sess: LiveSession, steps: int) -> None:
    """Train / Pause, Step and Reset, and what happens to a change made mid-run."""
    c1, c2, c3, c4 = st.columns([1, 1, 1, 5], vertical_alignment="center")
    drawn = st.session_state[f"_drawn:{page}"] = st.session_state.get(f"_drawn:{page}", 0) + 1
    c1.button("Pause" if sess.running else "Train", type="primary", on_click=_set_running,
              args=(page, not sess.running), disabled=sess.finished, key=f"{page}:train",
              icon=":material/pause:" if sess.running else ":material/play_arrow:", width="stretch")
    c2.button("Step", on_click=_step, args=(page, steps, drawn), key=f"{page}:step", icon=":material/skip_next:",
              width="stretch", disabled=sess.finished)
    c3.button("Reset", on_click=_reset, args=(page,), key=f"{page}:reset", icon=":material/restart_alt:",
              width="stretch")
    note = "Loss parameters, learning rate and warm-up apply at the next step; other changes need Reset."
    if sess.finished:
        note = f"Reached the limit of {sess.max_steps:,} steps: press Reset to start again."
    c4.caption(note)


def tick(sess: LiveSession, steps: int) -> None:
    """One frame of a running session; when it reaches its step limit the whole page reruns once."""
    if sess.running:
        sess.advance(steps)
        release_memory()
        if not sess.running:
            st.rerun()


def norm_views(page: str, run: LiveSession, titles: list[str], class_names: list[str]) -> None:
    """For the norm-aware losses (MagFace, AdaFace) of a run: each drawn sample at radius ‖x‖, one column per
    trainer, with the loss's reference norms as rings and the easy/hard readout."""
    from pages._ui import chart

    aware = [t.loss_fn.info.norms is not None for t in run.trainers]
    if not any(aware):
        return
    st.subheader("Feature norms: what the loss treats as easy or hard")
    st.caption("Each sample in its direction at radius ‖x‖, its feature norm before normalising: the norm MagFace "
               "and AdaFace read. Rings: the norms the loss refers to.")
    snaps = [h[-1] for h in run.history]
    for i, (col, trainer, snap, title) in enumerate(zip(st.columns(len(snaps)), run.trainers, snaps, titles,
                                                         strict=True)):
        if not aware[i]:
            continue
        with col:
            loss_fn = trainer.loss_fn
            rings = loss_rings(loss_fn.name, {k: getattr(loss_fn, k) for k in loss_fn.info.params}, snap.state)
            chart(norm_figure(snap, rings, title=f"{title}: radius = ‖x‖", class_names=class_names),
                  key=f"{page}-norms-{i}")
            st.caption(norm_readout(snap), unsafe_allow_html=True)


def state_chart(page: str, run: LiveSession, i: int, title: str) -> None:
    """Trainer i's running loss state over the steps (AdaFace's μ and σ, CurricularFace's t, AdaCos's s)."""
    from pages._ui import chart

    state = run.state_curves(i)
    if state:
        chart(state_figure(state.pop("steps"), state, title=f"Running state — {title}"), key=f"{page}-state-{i}")
