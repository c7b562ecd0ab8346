"""Streamlit glue for live training pages: one LiveSession per page in session state, and its buttons."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import streamlit as st

from arcface_viz.claims import norm_readout
from arcface_viz.hosted import limits, release_memory
from arcface_viz.live import PACER, Extras, LiveSession, Run, batch_for, watch
from arcface_viz.plots.norms import loss_rings, norm_figure, state_figure


def _key(page: str) -> str:
    return f"_live:{page}"


def get_or_build(page: str, values: dict[str, Any], build: Callable[[dict[str, Any]], list],
                 live_keys: Iterable[str], apply_live: Callable[[LiveSession, dict[str, Any]], None],
                 max_steps: int | None = None, extras: Extras | None = None,
                 batch_by: Iterable[str] = ("seed",)) -> LiveSession | None:
    """The page's session: a view of the run that every visitor with exactly these settings watches (built by
    the first of them), or of a run of its own once the visitor changed a setting mid-run.

    Before Train, any change picks the run for the new settings.  A structural change (data, dimension, loss,
    seed) after training started does not throw the run away: the page says Reset applies it.  Other settings
    apply at the next step, to a run of the visitor's own (forked at the frame on screen if others share it).
    A setting that cannot be built shows its message and returns None.  ``extras(trainers, snapshots)``: what
    the page reads from the trainers at each frame (see arcface_viz.live.Run).  Runs whose settings differ only
    in ``batch_by`` train in the same batched steps where their trainers allow it (arcface_viz.live.Batch).
    """
    max_steps = max_steps or limits().max_steps  # a run pauses itself there; Reset starts over
    live = set(live_keys)
    structure = {k: v for k, v in values.items() if k not in live}
    sess: LiveSession | None = st.session_state.get(_key(page))
    if sess is None or (sess.step == 0 and not sess.running and sess.settings != values):
        settings = dict(values)
        key = (page, max_steps, *sorted((k, repr(v)) for k, v in settings.items()))
        batch_key = tuple(item for item in key[2:] if item[0] not in set(batch_by))

        def make() -> Run:
            return Run(build(settings), max_steps=max_steps, extras=extras, factory=lambda: build(settings),
                       batch=batch_for((page, max_steps, batch_key)))

        try:
            sess = watch(key, make, structure)
        except ValueError as exc:  # includes data-set errors: a message, never a traceback
            st.error(f"These settings cannot be trained: {exc}", icon=":material/error:")
            st.session_state.pop(_key(page), None)
            return None
        sess.settings = settings
        st.session_state[_key(page)] = sess
        release_memory()  # the data loading and first evaluation's temporaries
        return sess
    changed = sess.changed(structure)
    if changed:
        st.info(f"You changed **{', '.join(changed)}**: press **Reset** to train with it. The current run "
                "goes on with the previous setting.", icon=":material/restart_alt:")
    elif values != sess.settings:
        sess.own()  # others watching this run keep theirs
        apply_live(sess, values)
        sess.settings = dict(values)
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


def shown_frame(sess: LiveSession, build: Callable[[LiveSession], Any]) -> Any:
    """What the page draws of the frame on screen, ``build(sess)``, made once per frame of the run for every
    visitor who shows it; first the line that says when the run is shared or replayed."""
    note = sess.note()
    if note:
        st.caption(note)
    return sess.run.memo((sess.cursor, sess.max_snapshots), lambda: build(sess), frame=sess.cursor)


def live_frame(sess: LiveSession, steps: int, interval: float, draw: Callable[[LiveSession], None]) -> None:
    """One frame of the live fragment: a running session moves on and draws in its turn (see
    arcface_viz.live.Pacer: the frames of all visitors take turns, and a visitor whose turn came late skips
    frames); a paused one (a page load, a moved slider) draws at once.  When the run reaches its step limit the
    whole page reruns once (its buttons change)."""
    if not sess.running:
        draw(sess)
        return
    with PACER.turn():
        due, train = PACER.frames(sess.shown_at, interval)
        sess.advance(steps, frames=due, train=train, share=True)
        sess.shown_at = time.monotonic()
        release_memory(min_interval=1.0)
        draw(sess)
    if not sess.running:
        st.rerun()


NORMS_HEADING = "Feature norms: what the loss treats as easy or hard"
NORMS_CAPTION = ("Each sample in its direction at radius ‖x‖, its feature norm before normalising: the norm MagFace "
                 "and AdaFace read. Rings: the norms the loss refers to.")


def norm_panels(run: LiveSession, titles: list[str], class_names: list[str]) -> list[tuple[Any, str] | None]:
    """For the norm-aware losses (MagFace, AdaFace) of a run, per trainer: each drawn sample at radius ‖x‖ with the
    loss's reference norms as rings, and the easy/hard readout (None for a trainer whose loss reads no norm; an
    empty list when none does)."""
    aware = [t.loss_fn.info.norms is not None for t in run.trainers]
    if not any(aware):
        return []
    snaps = run.frame.snaps

    def build(i: int) -> tuple[Any, str]:
        loss_fn, snap = run.trainers[i].loss_fn, snaps[i]
        rings = loss_rings(loss_fn.name, {k: getattr(loss_fn, k) for k in loss_fn.info.params}, snap.state)
        return (norm_figure(snap, rings, title=f"{titles[i]}: radius = ‖x‖", class_names=class_names),
                norm_readout(snap))

    settings = tuple(sorted((k, repr(v)) for k, v in run.settings.items()))  # the rings follow l_a, u_a
    return [run.run.memo((run.cursor, "norms", i, settings), lambda i=i: build(i)) if aware[i] else None
            for i in range(len(snaps))]  # built once per frame of the run, for every visitor who shows it


def norm_views(page: str, run: LiveSession, titles: list[str], class_names: list[str]) -> None:
    """:func:`norm_panels` drawn with Streamlit's elements, one column per trainer."""
    from pages._ui import chart, columns

    panels = norm_panels(run, titles, class_names)
    if not panels:
        return
    st.subheader(NORMS_HEADING)
    st.caption(NORMS_CAPTION)
    for i, (col, panel) in enumerate(zip(columns(len(panels)), panels, strict=True)):
        if panel is not None:
            with col:
                chart(panel[0], key=f"{page}-norms-{i}")
                st.caption(panel[1], unsafe_allow_html=True)


def norm_rows(run: LiveSession, titles: list[str], class_names: list[str]) -> list:
    """:func:`norm_panels` as the player's rows (pages/_player.py): the heading, then one column per trainer;
    none when no loss of the run reads norms."""
    from arcface_viz.plots.style import wire

    panels = norm_panels(run, titles, class_names)
    if not panels:
        return []
    return [[[{"heading": NORMS_HEADING}, {"caption": NORMS_CAPTION}]],
            [[{"fig": wire(p[0].to_dict()), "key": f"norms-{i}"}, {"html": p[1]}] if p else []
             for i, p in enumerate(panels)]]


def state_fig(run: LiveSession, i: int, title: str) -> Any:
    """Trainer i's running loss state over the steps (AdaFace's μ and σ, CurricularFace's t, AdaCos's s); None
    for a loss without state.  Built once per frame of the run, for every visitor."""

    def build() -> Any:
        state = run.state_curves(i)
        return state_figure(state.pop("steps"), state, title=f"Running state — {title}") if state else None

    return run.run.memo((run.cursor, "state", i), build)


def state_chart(page: str, run: LiveSession, i: int, title: str) -> None:
    """:func:`state_fig` drawn with st.plotly_chart."""
    from pages._ui import chart

    fig = state_fig(run, i, title)
    if fig is not None:
        chart(fig, key=f"{page}-state-{i}")


Rows = list[list[list[dict[str, Any]]]]  # rows of columns of player items (pages/_player.py)


def play(page: str, sess: LiveSession, steps: int, interval: float, rows: Callable[[LiveSession], Rows],
         max_play: int = 8, still: Callable[[LiveSession], None] | None = None) -> None:
    """One frame of the live fragment through the player (pages/_player.py): a running session moves on in its
    turn (see :func:`live_frame`) and sends every frame it moved through (the last ``max_play`` of them), which
    the browser plays one ``interval`` apart; a paused one sends the frame on screen.  ``rows(view)``: the
    player's rows for the frame a view of the run shows, built once per frame of the run for every visitor who
    shows it.  ``still(sess)``: how a paused session draws itself instead (with Streamlit's own elements: charts
    that take clicks, for instance); by default the player shows the frame on screen."""
    if still is not None and not sess.running:
        live_frame(sess, steps, interval, still)
        return
    from arcface_viz.plots.style import presenter_spec
    from pages._player import delivered, encode, player, track_delivery, wait_delivered
    from pages._ui import presenter_on

    big = presenter_on()

    def payload(view: LiveSession) -> str:
        def build() -> str:
            made = rows(view)
            if big:
                made = [[[{**i, "fig": presenter_spec(i["fig"])} if "fig" in i else i for i in col] for col in row]
                        for row in made]
            return encode(view.cursor, made)

        return view.run.memo((view.cursor, view.max_snapshots, "player", big), build, frame=view.cursor)

    track_delivery()
    running = sess.running
    recent: list[tuple[int, str]] = st.session_state.setdefault(f"_recent:{page}", [])  # (frame, payload)
    if running:
        with PACER.turn():
            due, train = PACER.frames(sess.shown_at, interval)
            sess.advance(steps, frames=due, train=train, share=True,
                         visit=lambda view, left: recent.append((view.cursor, payload(view)))
                         if left < max_play else None)
            sess.shown_at = time.monotonic()
            release_memory(min_interval=1.0)
    note = sess.note()
    if note:
        st.caption(note)
    # every frame moved through after the newest one this browser got (see track_delivery), the last max_play
    run = f"{sess.run.token:x}"
    got = delivered(run)
    recent[:] = [(n, p) for n, p in recent[-max_play:] if got is None or n > got]
    if running and recent:
        upto, frames = recent[-1][0], [p for _, p in recent]
    else:
        upto, frames = sess.cursor, [payload(sess)]
    player(frames, key=f"{page}-player", run=run, upto=upto, playing=sess.running, interval=interval, present=big)
    wait_delivered(run, upto)
    if got is None:  # no server to tell what was delivered: what is sent counts as delivered
        recent.clear()
    if not sess.running and st.session_state.get("exports"):
        export_buttons(page, frames[-1])
    if running and not sess.running:
        st.rerun()


def export_buttons(page: str, frame: str) -> None:
    """With the export buttons switched on: each figure of the player's frame on screen (``frame``, encoded) as a
    self-contained interactive HTML file, as pages/_ui.chart offers under a chart."""
    import json
    import re

    import plotly.graph_objects as go

    from arcface_viz.plots.style import standalone_html
    from pages._player import player_template

    figs = [item for row in json.loads(frame)["rows"] for col in row for item in col if "fig" in item]
    cols = st.columns(max(1, len(figs)))
    for col, item in zip(cols, figs, strict=False):
        spec = item["fig"]
        layout = {"template": player_template(), **spec.get("layout", {})}
        name = f"{page}-{item['key']}"
        title = layout.get("title")
        title = re.sub(r"<[^>]+>", "", (title.get("text") if isinstance(title, dict) else title) or item["key"])
        col.download_button(f"{title} (HTML)", standalone_html(go.Figure(
            {"data": spec.get("data", []), "layout": layout}), name), file_name=f"{name}.html", mime="text/html",
            key=f"{page}:html:{item['key']}", icon=":material/download:", on_click="ignore")
