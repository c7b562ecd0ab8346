"""arcface-viz: the Streamlit entry point.  `streamlit run app.py`

Builds the navigation from pages/_registry.py and the sidebar every page shares.
"""

import streamlit as st

from arcface_viz.device import describe
from pages._registry import PAGES

st.set_page_config(page_title="arcface-viz", page_icon=":material/radar:", layout="wide")

sections: dict[str, list] = {}
for path, title, url_path, icon, section in PAGES:
    sections.setdefault(section, []).append(st.Page(path, title=title, url_path=url_path, icon=icon,
                                                    default=not url_path))
page = st.navigation(sections)

with st.sidebar:
    st.caption(f"Device: **{describe()}**")

page.run()
