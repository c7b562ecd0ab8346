"""Streamlit glue shared by the pages: widgets, URL state and messages from one parameter Spec.

The core (arcface_viz/) never imports Streamlit; this module is the only place that turns a
:class:`arcface_viz.params.Spec` into widgets.  Every lesson's state round-trips through
``st.query_params`` so that a copied link reopens the page exactly as it was.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import streamlit as st

from arcface_viz.losses import LOSSES, loss_defaults
from arcface_viz.params import Param, Spec

HIDE_KEY = "hide"  # ?hide=m1,lr hides those controls (a teacher's link shows only what the lesson is about)


def _wkey(page: str, name: str) -> str:
    return f"{page}:{name}"


def _store(page: str) -> dict[str, Any]:
    return st.session_state[f"_values:{page}"]


def hidden_names() -> set[str]:
    raw = st.query_params.get(HIDE_KEY, "")
    return {n.strip() for n in raw.split(",") if n.strip()}


def load_state(page: str, spec: Spec) -> dict[str, Any]:
    """The page's values: from the URL on the first visit of this session, then from session state.

    Invalid or out-of-range URL values fall back to their default and leave a visible notice.
    """
    key = f"_values:{page}"
    if key not in st.session_state:
        values, notices = spec.from_query(st.query_params.to_dict())
        st.session_state[key] = values
        st.session_state[f"_notices:{page}"] = notices
    store = st.session_state[key]
    for p in spec:
        store.setdefault(p.name, p.default)  # a spec that grew since the session started
        if _wkey(page, p.name) in st.session_state:  # a widget the user just moved: current before it redraws
            store[p.name] = st.session_state[_wkey(page, p.name)]
    return store


def show_notices(page: str) -> None:
    notices = st.session_state.get(f"_notices:{page}", [])
    if notices:
        with st.container():
            st.warning("Some values in the link could not be used:\n\n" + "\n".join(f"- {n}" for n in notices),
                       icon=":material/link_off:")
            if st.button("Dismiss", key=f"{page}:dismiss-notices"):
                st.session_state[f"_notices:{page}"] = []
                st.rerun()


def _on_loss_change(page: str, low_dim: bool) -> None:
    """Picking a loss loads its defaults into its sliders (CosFace → m3 = 0.35, …)."""
    name = st.session_state[_wkey(page, "loss")]
    for k, v in loss_defaults(name, low_dim=low_dim).items():
        st.session_state[_wkey(page, k)] = v


def widget(page: str, p: Param, container: Any = None, *, low_dim: bool = True, disabled: bool = False) -> Any:
    """Draw one control for ``p`` and return its value; the value is kept in the page's store."""
    c = container or st
    store = _store(page)
    key = _wkey(page, p.name)
    if key not in st.session_state:
        st.session_state[key] = store[p.name]
    common = dict(key=key, help=p.help or None, disabled=disabled)
    if p.kind in ("float", "int") and p.min is not None and p.max is not None:
        cast = float if p.kind == "float" else int
        value = c.slider(p.title, min_value=cast(p.min), max_value=cast(p.max), step=cast(p.step or 1),
                         format=p.format, **common)
    elif p.kind in ("float", "int"):
        value = c.number_input(p.title, step=p.step, **common)
    elif p.kind == "bool":
        value = c.toggle(p.title, **common)
    elif p.kind == "choice":
        extra = {}
        if p.name == "loss":
            extra = dict(on_change=_on_loss_change, args=(page, low_dim))
        value = c.selectbox(p.title, p.choices, format_func=p.display, **common, **extra)
    elif p.kind == "multi":
        value = tuple(c.multiselect(p.title, p.choices, format_func=p.display, **common))
    else:  # pragma: no cover - Spec rejects unknown kinds
        raise ValueError(p.kind)
    store[p.name] = value
    return value


def controls(page: str, spec: Spec, names: Iterable[str] | None = None, container: Any = None,
             *, low_dim: bool = True, disabled: bool = False) -> dict[str, Any]:
    """Draw the controls ``names`` of ``spec`` (all by default) except those hidden by ``?hide=``."""
    hide = hidden_names()
    for p in spec:
        if (names is None or p.name in names) and p.name not in hide:
            widget(page, p, container, low_dim=low_dim, disabled=disabled)
    return dict(_store(page))


def visible_loss_params(loss: str) -> tuple[str, ...]:
    return LOSSES[loss].params


def sync_url(spec: Spec, values: dict[str, Any]) -> None:
    """Write the whole state into the URL (plus ?hide=, kept as it was)."""
    query = spec.to_query(values)
    hide = st.query_params.get(HIDE_KEY)
    if hide:
        query[HIDE_KEY] = hide
    if st.query_params.to_dict() != query:
        st.query_params.from_dict(query)


def page_state(page: str, spec: Spec) -> dict[str, Any]:
    """load_state + show_notices: the first lines of every lesson."""
    values = load_state(page, spec)
    show_notices(page)
    return values


def messages(warnings: Iterable[str]) -> None:
    for w in warnings:
        st.warning(w, icon=":material/info:")
