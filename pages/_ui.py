"""Streamlit glue shared by the pages: widgets, URL state and messages from one parameter Spec.

The core (arcface_viz/) never imports Streamlit; this module is the only place that turns a
:class:`arcface_viz.params.Spec` into widgets.  Every lesson's state round-trips through
``st.query_params`` so that a copied link reopens the page exactly as it was.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import plotly.graph_objects as go
import streamlit as st

from arcface_viz.losses import loss_defaults
from arcface_viz.params import Param, Spec

HIDE_KEY = "hide"  # ?hide=m1,lr hides those controls (a teacher's link shows only what the lesson is about)
PRESENT_KEY = "present"  # ?present=true: projector mode (large fonts, thick lines, controls collapsed)
PASS_THROUGH = (HIDE_KEY, PRESENT_KEY)  # URL keys that belong to the app, not to a lesson's spec


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


def _load_defaults(page: str, name: str, defaults_for: Callable[[Any], dict[str, Any]]) -> None:
    """A choice that has defaults of its own (a loss, a data set) loads them into the other controls."""
    for k, v in defaults_for(st.session_state[_wkey(page, name)]).items():
        st.session_state[_wkey(page, k)] = v
        _store(page)[k] = v


def widget(page: str, p: Param, container: Any = None, *, low_dim: bool = True, disabled: bool = False,
           defaults_for: Callable[[Any], dict[str, Any]] | None = None) -> Any:
    """Draw one control for ``p`` and return its value; the value is kept in the page's store.

    ``defaults_for(value)``: settings to load into other controls when this one changes (a loss's
    defaults are loaded that way automatically, low-dimensional ones when ``low_dim``).
    """
    c = container or st
    store = _store(page)
    key = _wkey(page, p.name)
    if key not in st.session_state:
        st.session_state[key] = store[p.name]
    common = dict(key=key, help=p.help or None, disabled=disabled)
    if p.name == "loss" and defaults_for is None:
        defaults_for = lambda name: loss_defaults(name, low_dim=low_dim)  # noqa: E731
    if defaults_for is not None:
        common.update(on_change=_load_defaults, args=(page, p.name, defaults_for))
    if p.kind in ("float", "int") and p.min is not None and p.max is not None and p.widget != "number":
        cast = float if p.kind == "float" else int
        value = c.slider(p.title, min_value=cast(p.min), max_value=cast(p.max), step=cast(p.step or 1),
                         format=p.format, **common)
    elif p.kind == "bool":
        value = c.toggle(p.title, **common)
    elif p.kind in ("float", "int"):
        value = c.number_input(p.title, min_value=p.min, max_value=p.max, step=p.step, **common)
    elif p.kind == "choice" and p.widget == "radio":
        value = c.radio(p.title, p.choices, format_func=p.display, horizontal=True, **common)
    elif p.kind == "choice":
        value = c.selectbox(p.title, p.choices, format_func=p.display, **common)
    elif p.kind == "multi":
        value = tuple(c.multiselect(p.title, p.choices, format_func=p.display, **common))
    else:  # pragma: no cover - Spec rejects unknown kinds
        raise ValueError(p.kind)
    store[p.name] = value
    return value


def controls(page: str, spec: Spec, names: Iterable[str] | None = None, container: Any = None,
             *, low_dim: bool = True, disabled: bool = False,
             defaults_for: dict[str, Callable[[Any], dict[str, Any]]] | None = None) -> dict[str, Any]:
    """Draw the controls ``names`` of ``spec`` (all by default) except those hidden by ``?hide=``."""
    hide = hidden_names()
    for p in spec:
        if (names is None or p.name in names) and p.name not in hide:
            widget(page, p, container, low_dim=low_dim, disabled=disabled,
                   defaults_for=(defaults_for or {}).get(p.name))
    return dict(_store(page))


def sync_url(spec: Spec, values: dict[str, Any]) -> None:
    """Write the whole state into the URL (plus ?hide= and ?present=) and offer it as a link to copy."""
    query = spec.to_query(values)
    for key in PASS_THROUGH:
        if st.query_params.get(key):
            query[key] = st.query_params[key]
    if st.query_params.to_dict() != query:
        st.query_params.from_dict(query)
    with st.sidebar.expander("Share this view", icon=":material/link:"):
        st.caption("This link reopens the page exactly as it is now. Add `&hide=m1,m3` to hide controls.")
        st.code(share_link(query), language=None, wrap_lines=True)


def share_link(query: dict[str, str]) -> str:
    """The page's address with ``query``: what a visitor pastes to see the same picture."""
    from urllib.parse import urlencode

    try:
        base = (st.context.url or "").split("?")[0]
    except Exception:  # noqa: BLE001 - no request context (AppTest): a relative link still works
        base = ""
    return f"{base}?{urlencode(query)}"


def presenter_on() -> bool:
    """Projector mode: ?present=true in the link, or the sidebar switch."""
    return bool(st.session_state.get("presenter"))


class _Here:
    """The current place on the page, used like a column (see :func:`columns`)."""

    def __enter__(self) -> _Here:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def __getattr__(self, name: str) -> Any:
        return getattr(st, name)


def columns(n: int) -> list[Any]:
    """``st.columns(n)``, except that one column is the current place itself: a live page redraws its columns
    every frame, and each layout block is a message of its own to every visitor."""
    return [_Here()] if n == 1 else st.columns(n)


class _Plain(go.Figure):
    """A figure already in the browser's form (a dict from :func:`arcface_viz.plots.style.wire`).
    st.plotly_chart asks a plotly Figure for ``to_dict()``; this one hands the dict back as it is, where a
    Figure would validate every property of every trace again, on every frame of every visitor."""

    def __init__(self, spec: dict[str, Any]) -> None:  # no go.Figure.__init__: there is nothing to validate
        self._spec = spec

    def to_dict(self) -> dict[str, Any]:
        return self._spec


def chart(fig: go.Figure | dict[str, Any], key: str, *, file_name: str | None = None,
          on_click: Callable[[], None] | None = None, **kwargs: Any) -> Any:
    """Draw a plotly figure (a Figure, or a dict in the browser's form): projector styling when presenting, PNG
    from the toolbar's camera button, and an interactive HTML download when exports are switched on.
    ``on_click``: called (as a callback) when the visitor clicks a point; the selection is in
    ``st.session_state[key]``.  ``kwargs`` go to st.plotly_chart (on_select, selection_mode, …); its return
    value is returned."""
    from arcface_viz.plots.style import presenter_spec, presenter_style, standalone_html

    plain = isinstance(fig, dict)
    if presenter_on():
        fig = presenter_spec(fig) if plain else presenter_style(fig)
    name = file_name or key
    select = {"on_select": on_click, "selection_mode": "points"} if on_click is not None else {}
    config = {"displaylogo": False, "toImageButtonOptions": {"format": "png", "filename": name, "scale": 2}}
    out = st.plotly_chart(_Plain(fig) if plain else fig, key=key, config=config, **select, **kwargs)
    if st.session_state.get("exports"):
        st.download_button("Download as interactive HTML", standalone_html(go.Figure(fig) if plain else fig, name),
                           file_name=f"{name}.html", mime="text/html", key=f"{key}:html",
                           icon=":material/download:", on_click="ignore")
    return out


_frame = threading.local()  # .active: app.py is running a page on this thread (see app_frame)


@contextmanager
def framed() -> Iterator[None]:
    """app.py runs the page inside this block, so the page can tell that it is inside the app's frame."""
    _frame.active = True
    try:
        yield
    finally:
        _frame.active = False


def app_frame() -> None:
    """Make sure the page runs inside app.py's navigation and sidebar.

    Until some session has run app.py, Streamlit serves a request through its legacy ``pages/`` folder
    mode and runs the page file on its own. Leave that mode and rerun: app.py then routes the same URL.
    Whether this run is inside app.py is asked of this thread (:func:`framed`), not of Streamlit's
    process-wide PagesManager flag: when several visitors open a fresh server at once, the first one to get
    here clears that flag while the others are already running their page on its own, and those then went
    on without app.py's frame (its sidebar, its once-per-server set-up).  Under AppTest the flag is reset on
    every run, so each page run passes through here once: use on_click callbacks, whose effect survives the
    rerun, rather than ``if st.button(...)``.
    """
    from streamlit.runtime.pages_manager import PagesManager

    if not getattr(_frame, "active", False):
        PagesManager.uses_pages_directory = False  # as st.navigation itself sets it
        st.rerun()


def page_state(page: str, spec: Spec) -> dict[str, Any]:
    """app_frame + load_state + show_notices: the first lines of every lesson."""
    app_frame()
    values = load_state(page, spec)
    show_notices(page)
    return values


def open_lesson(page: str, path: str, query: dict[str, str]) -> None:
    """Go to lesson ``path`` with exactly the settings of ``query``: the lesson's state in this session (its
    values, widgets and live run, keyed by ``page``) is dropped first, so it reads them from the URL."""
    for key in [k for k in st.session_state if isinstance(k, str) and k.startswith(f"{page}:")]:
        del st.session_state[key]
    for key in (f"_values:{page}", f"_notices:{page}", f"_live:{page}"):
        st.session_state.pop(key, None)
    st.switch_page(path, query_params=query)


def messages(warnings: Iterable[str]) -> None:
    for w in warnings:
        st.warning(w, icon=":material/info:")


def serve_many() -> list[str]:
    """Once per hosted server: two per-frame costs of a busy classroom server made smaller (py-spy on
    bench/bench_classroom.py, 30 visitors).  What was changed, by name.

    - plotly's JSON engine: orjson where it is installed (requirements.txt), about 3× faster than the json
      module with plotly's encoder; the same JSON text up to float formatting.
    - Streamlit builds its theme message at the start of every run, each ``run_every`` fragment rerun included,
      by scanning every config option once per theme section: about 5 % of the server's time.  Theme options
      cannot be set while the server runs (they are not scriptable, and the config file is not watched), so
      the theme sections are read once.
    """
    changed = []
    try:
        import orjson  # noqa: F401
        import plotly.io as pio

        pio.json.config.default_engine = "orjson"
        changed.append("plotly json engine: orjson")
    except ImportError:
        pass
    from streamlit import config

    read = config.get_options_for_section
    if not getattr(read, "theme_cached", False):
        sections: dict[str, dict[str, Any]] = {}

        def cached(section: str) -> dict[str, Any]:
            if not section.startswith("theme"):
                return read(section)
            if section not in sections:
                sections[section] = read(section)
            return dict(sections[section])

        cached.theme_cached = True  # type: ignore[attr-defined]
        config.get_options_for_section = cached
        changed.append("theme config read once")
    return changed

