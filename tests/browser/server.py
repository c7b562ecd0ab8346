"""Serve a Streamlit script on a free local port for the browser tests (a real `streamlit run`)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVER_START_TIMEOUT_S = 60.0

# The log of the server the running test talks to; a failing test's report shows its tail.
current_log: Path | None = None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log_tail(path: Path | None, lines: int = 60) -> str:
    if path is None or not path.exists():
        return "(no server log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) or "(server log is empty)"


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200 and resp.read().strip() == b"ok"
    except (urllib.error.URLError, OSError):
        return False


@contextlib.contextmanager
def serve_app(log_path: Path, script: Path = REPO_ROOT / "app.py") -> Iterator[str]:
    """Run `streamlit run <script>` (from the script's folder) on a free local port until the block
    ends; yields the base URL.  Fails the test, with the server's log tail, if the server does not
    answer its health check."""
    global current_log
    if not script.exists():
        pytest.fail(f"{script} does not exist: nothing to serve", pytrace=False)
    port = _free_port()
    previous_log, current_log = current_log, log_path
    cmd = [
        sys.executable, "-m", "streamlit", "run", script.name,
        "--server.port", str(port), "--server.headless", "true", "--server.address", "127.0.0.1",
        "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=script.parent, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while not _healthy(f"{base}/_stcore/health"):
            if proc.poll() is not None:
                pytest.fail(f"streamlit exited with code {proc.returncode} before answering "
                            f"{base}/_stcore/health; its log:\n{log_tail(log_path)}", pytrace=False)
            if time.monotonic() > deadline:
                pytest.fail(f"streamlit did not answer {base}/_stcore/health within "
                            f"{SERVER_START_TIMEOUT_S:.0f} s; its log:\n{log_tail(log_path)}", pytrace=False)
            time.sleep(0.25)
        yield base
    finally:
        current_log = previous_log
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)
