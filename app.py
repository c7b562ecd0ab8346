"""arcface-viz: the Streamlit entry point.  `streamlit run app.py`

Builds the navigation from pages/_registry.py and the sidebar every page shares.
"""

import streamlit as st
import torch

from arcface_viz.device import describe
from arcface_viz.fullscale.runs import reconcile_existing
from arcface_viz.hosted import import_lazy_modules, limit_malloc_arenas, limits
from arcface_viz.settings import hosted
from pages._registry import PAGES
from pages._ui import PRESENT_KEY, framed, serve_many

# Projector mode: everything larger, so the back row can read it.
PRESENTER_CSS = """
html, body, [data-testid="stAppViewContainer"] { font-size: 21px; }
[data-testid="stMarkdownContainer"] p, [data-testid="stMarkdownContainer"] li { font-size: 1.3rem; }
[data-testid="stMetricValue"] * { font-size: 2.4rem !important; }
h1 { font-size: 3.2rem !important; }
"""

st.cache_resource(import_lazy_modules)()  # once per server, the other visitors' threads waiting for it
if "presenter" not in st.session_state:  # a shared ?present=true link starts in projector mode
    st.session_state["presenter"] = st.query_params.get(PRESENT_KEY, "").lower() in ("1", "true", "yes")
st.set_page_config(page_title="arcface-viz", page_icon=":material/radar:", layout="wide",
                   initial_sidebar_state="collapsed" if st.session_state["presenter"] else "auto")
st.cache_resource(reconcile_existing)()  # once per server: runs whose process died are marked failed
if st.session_state["presenter"]:
    st.html(f"<style>{PRESENTER_CSS}</style>")

sections: dict[str, list] = {}
for path, title, url_path, icon, section in PAGES:
    sections.setdefault(section, []).append(st.Page(path, title=title, url_path=url_path, icon=icon,
                                                    default=not url_path))
page = st.navigation(sections)
if hosted():
    st.cache_resource(limit_malloc_arenas)()  # once per server: fewer idle copies of freed buffers
    st.cache_resource(serve_many)()  # once per server: cheaper JSON and theme messages on every frame
if limits().torch_threads:  # hosted: one thread per visitor's training, so visitors share the CPU fairly
    torch.set_num_threads(limits().torch_threads)

with st.sidebar:
    st.caption(f"Device: **{describe()}**")
    if limits().notice:
        st.info(limits().notice, icon=":material/public:")
    st.toggle("Presenter mode", key="presenter", help="Large fonts and thick lines for a projector.")
    st.toggle("Export buttons", key="exports", help="Every figure gets an interactive-HTML download; "
              "the camera icon in a figure's toolbar saves a PNG.")

with framed():
    page.run()
