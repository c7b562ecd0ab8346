"""A page for tests/browser/test_browser_player.py: each run sends one player frame (frame n = the run's number)
and writes what pages/_player.py knew of its delivery before and after (a real server's flushes)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo root: served from this folder

import streamlit as st  # noqa: E402

from pages._player import delivered, encode, player, track_delivery, wait_delivered  # noqa: E402

track_delivery()
n = st.session_state["runs"] = st.session_state.get("runs", -1) + 1
before = delivered("t")
player([encode(n, [[[{"md": f"**frame** {n}"}]]])], key="p", run="t", upto=n, playing=False, interval=0.15)
wait_delivered("t", n)
st.markdown(f"run {n} · delivered before {before} · after {delivered('t')}")
st.button("Again")
