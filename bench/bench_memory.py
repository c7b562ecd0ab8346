"""Peak memory of a hosted app (issue 7 goal: under 690 MB with the MNIST lesson running).

Starts a real ``streamlit run app.py`` with ``ARCFACE_VIZ_HOSTED=1`` on a free port, drives it with headless
Chromium (Debian's /usr/bin/chromium through Playwright) and reads the server's resident memory from
/proc/PID/status after each stage: VmRSS (now) and VmHWM (the peak so far).

    python bench/bench_memory.py [--dataset fashion-mnist] [--train-seconds 30] [--visitors 1]

Stages: server started; home page; the MNIST lesson opened; MNIST training for ``--train-seconds``; a toy run
beside it; every other page opened.  ``--visitors N`` opens the MNIST lesson in N browser tabs (N sessions).
Linux only (/proc).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def memory_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of ``pid`` in MB (10^6 bytes)."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) * 1024 / 1e6
    return fields["VmRSS"], fields["VmHWM"]


def anonymous_mb(pid: int) -> float:
    """Anonymous (heap) memory of ``pid`` in MB; the rest of VmRSS is mapped files (the libraries)."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Anonymous:"):
            return int(line.split()[1]) * 1024 / 1e6
    return float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(base: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise SystemExit(f"streamlit did not start within {timeout:.0f} s")


def settle(page, seconds: float = 1.0) -> None:
    """Wait until the app shows no running indicator, then a little longer."""
    page.wait_for_selector('[data-testid="stApp"]', timeout=120_000)
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=180_000)
    page.wait_for_timeout(int(seconds * 1000))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="fashion-mnist")
    ap.add_argument("--train-seconds", type=float, default=30.0)
    ap.add_argument("--visitors", type=int, default=1)
    ap.add_argument("--query", default="", help="more URL settings for the MNIST lesson, e.g. batch_size=64")
    args = ap.parse_args()

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "ARCFACE_VIZ_HOSTED": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port), "--server.headless",
           "true", "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    rows: list[tuple[str, float, float]] = []

    def record(stage: str) -> None:
        rss, hwm = memory_mb(proc.pid)
        rows.append((stage, rss, hwm))
        print(f"{stage:45s} RSS {rss:5.0f} MB (heap {anonymous_mb(proc.pid):4.0f})   peak {hwm:5.0f} MB", flush=True)

    try:
        wait_healthy(base)
        record("server started")
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            home = browser.new_page()
            home.goto(base)
            settle(home)
            record("home page")
            tabs = []
            for _ in range(args.visitors):
                tab = browser.new_page(viewport={"width": 1400, "height": 1000})
                tab.goto(f"{base}/mnist?dataset={args.dataset}&dim=3" + (f"&{args.query}" if args.query else ""))
                settle(tab, 2.0)
                tabs.append(tab)
            record(f"MNIST lesson open ({args.dataset}, {args.visitors} tab(s))")
            for tab in tabs:
                tab.locator(".st-key-mnist-train button").click()
            time.sleep(args.train_seconds)
            record(f"MNIST training {args.train_seconds:.0f} s")
            toy = browser.new_page(viewport={"width": 1400, "height": 1000})
            toy.goto(f"{base}/toy_training?dim=3")
            settle(toy)
            toy.locator(".st-key-toy-training-train button").click()
            time.sleep(10)
            record("+ a toy run for 10 s")
            for path in ("explainer", "target_logit", "decision_margins", "table3", "backend"):
                other = browser.new_page()
                other.goto(f"{base}/{path}")
                settle(other)
                other.close()
            record("+ every other page opened")
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    peak = max(h for _, _, h in rows)
    print(f"peak resident memory of the server: {peak:.0f} MB (goal: under 690 MB)")


if __name__ == "__main__":
    main()
