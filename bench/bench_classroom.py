"""A classroom on one link (issue 11): N visitors open a hosted app and press Train; what each one sees.

Starts a hosted server (``ARCFACE_VIZ_HOSTED=1 streamlit run app.py``, or K of them behind nginx with
``--processes K``, see scripts/serve-classroom.sh) and drives N visitors that speak Streamlit's own websocket
protocol as the browser does: fetch the page, open ``/_stcore/stream``, ask for the first run with the link's
query string, click Train (a trigger value for the button's widget id), and from then on send the fragment
reruns that the ``run_every`` timer sends: every interval, whether or not the last one is still running, with
the hashes of the messages it holds (the server answers a cached message with its hash).  The live area is one
player component (pages/_player.py): each rerun brings the frames the visitor has not seen, and the browser
shows them one interval apart by the rules :class:`Playback` applies here, so a frame counts as an update at the
moment the player would put it on screen; its status line (``<Loss> — step N · loss … · train …% · test …%``)
is what the visitor sees.  Each visitor also fetches the player's files once, as its iframe does.

Per visitor it prints the page load (request to the first full run finished), the time from Train to the first
frame that moved, updates/s and steps/s while its run trains, the time from Train to 99 % test accuracy, and
errors (an exception or error box on the page, a closed socket); and the server's peak memory (VmHWM) and the
CPU it used during the class (cores, and milliseconds per update; the teacher's visit before it is not counted).
``--validate`` drives one real browser (Debian's Chromium through Playwright) and one protocol visitor, each alone
on a fresh server, and prints both, so the client can be trusted.

    python bench/bench_classroom.py --visitors 30                       # goal 1: same link
    python bench/bench_classroom.py --visitors 30 --seeds               # goal 2: seed=i for visitor i
    python bench/bench_classroom.py --link 'mnist?dataset=digits&dim=2' --visitors 10 --reference  # goal 3
    python bench/bench_classroom.py --visitors 30 --seeds --processes 2 # goal 4: behind nginx
    python bench/bench_classroom.py --validate                          # protocol client against Chromium

Linux only (/proc).  The load client runs in this process: its CPU time is printed too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from bench_memory import free_port, wait_healthy  # bench/, beside this script
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

ROOT = Path(__file__).resolve().parents[1]
TOY_LINK = "toy_training?dataset=fig3&dim=2&loss=arcface"
# The status line the live pages draw above their figures (toy: "… · test 99.2% · …", MNIST: "… · test 97.0% on …").
STATUS = re.compile(r"^\*\*(?P<loss>[^*]+)\*\* — step (?P<step>[\d,]+) · .*?· test (?P<test>[\d.]+)%")
STATUS_TEXT = re.compile(STATUS.pattern.replace(r"\*\*(?P<loss>[^*]+)\*\*", "(?P<loss>.+?)"))  # as rendered
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
FINISHED, EARLY, FRAGMENT_DONE = 0, 2, 3  # ForwardMsg.ScriptFinishedStatus


@dataclass
class Frame:
    t: float  # seconds since the visitor's Train click
    step: int
    test: float  # percent


@dataclass
class Result:
    """What one visitor saw."""

    name: str
    load_s: float = float("nan")
    clicked: float | None = None  # monotonic time of the Train click
    frames: list[Frame] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    runs: int = 0  # script runs finished (full and fragment)
    sent: int = 0  # rerun requests sent

    def first_frame_s(self) -> float:
        return next((f.t for f in self.frames if f.step > 0), float("nan"))

    def to_99_s(self) -> float:
        return next((f.t for f in self.frames if f.test >= 99.0), float("nan"))

    def rates(self, window: float, max_steps: int) -> tuple[float, float, float]:
        """(updates/s, steps/s, longest wait between frames) from Train until ``window`` seconds later, or until
        the frame at the run's step limit if that came first."""
        moved = [f for f in self.frames if f.t <= window]
        if not moved:
            return 0.0, 0.0, window
        span = moved[-1].t if moved[-1].step >= max_steps else window
        times = [0.0, *(f.t for f in moved), span]
        return len(moved) / span, moved[-1].step / span, max(b - a for a, b in zip(times, times[1:], strict=False))


def status_of(frame: dict) -> re.Match | None:
    """The status line of a player frame (pages/_player.py): its first markdown item."""
    for row in frame.get("rows", []):
        for col in row:
            for item in col:
                if "md" in item:
                    return STATUS.match(item["md"])
    return None


class Playback:
    """When the live frames player (pages/player/index.html) shows each frame it gets, by the same rules: frames
    of another run start afresh; paused, the last frame at once; playing, new frames (higher ``n``) join the queue
    (the oldest dropped past ``max_queue``) and one is shown every ``interval``, the first at once when none is
    playing.  ``show(frame)`` is called at each."""

    def __init__(self, show) -> None:  # noqa: ANN001
        self.show = show
        self.run: str | None = None
        self.last = float("-inf")
        self.queue: list[dict] = []
        self.timer: asyncio.TimerHandle | None = None
        self.interval = 0.15

    def render(self, args: dict) -> None:
        frames = json.loads(args.get("frames") or "[]")
        self.interval = args.get("interval") or 0.15
        if args.get("run") != self.run:
            self.run, self.last, self.queue = args.get("run"), float("-inf"), []
        if not args.get("playing"):
            self.queue = []
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None
            if frames:
                self.last = max(self.last, frames[-1]["n"])
                self.show(frames[-1])
            return
        for frame in frames:
            if frame["n"] > self.last:
                self.queue.append(frame)
                self.last = frame["n"]
        cap = max(1, args.get("max_queue") or 12)
        del self.queue[:max(0, len(self.queue) - cap)]
        if self.timer is None:
            self._tick()

    def _tick(self) -> None:
        if not self.queue:
            self.timer = None
            return
        self.show(self.queue.pop(0))
        self.timer = asyncio.get_running_loop().call_later(self.interval, self._tick)

    def stop(self) -> None:
        if self.timer is not None:
            self.timer.cancel()


class Visitor:
    """One browser tab, as Streamlit's frontend behaves (see the module docstring)."""

    def __init__(self, base: str, link: str, name: str) -> None:
        self.base, self.name = base.rstrip("/"), name
        path, _, self.query = link.partition("?")
        self.page = path.strip("/")
        self.result = Result(name)
        self.cookie = ""
        self.page_hash = ""
        self.cache: dict[str, ForwardMsg] = {}  # message hash -> message, as the frontend's ForwardMsgCache
        self.buttons: dict[str, str] = {}  # widget key suffix (train, step, reset) -> widget id
        self.timers: dict[str, asyncio.Task] = {}  # fragment id -> its run_every timer
        self.finished = asyncio.Event()
        self.ws = None
        self.closing = False
        self.last_step: int | None = None
        self.players: dict[str, Playback] = {}  # component id -> its player's schedule
        self.assets: set[str] = set()  # component folders fetched (as the iframe loads them, once per tab)

    # --- the page and its socket -------------------------------------------------------------

    def _get(self) -> None:
        req = urllib.request.Request(f"{self.base}/{self.page}?{self.query}")
        with urllib.request.urlopen(req, timeout=60) as resp:
            resp.read()
            cookies = [c.split(";")[0] for c in resp.headers.get_all("Set-Cookie") or []]
        self.cookie = "; ".join(cookies)

    async def open(self) -> None:
        """Load the page: the HTML, the socket, the first full run with the link's query string."""
        t0 = time.monotonic()
        try:
            await asyncio.get_running_loop().run_in_executor(None, self._get)
            ws_url = "ws" + self.base[4:] + "/_stcore/stream"
            headers = {"Cookie": self.cookie} if self.cookie else {}
            self.ws = await connect(ws_url, subprotocols=["streamlit", "PLACEHOLDER_AUTH_TOKEN"],
                                    additional_headers=headers, max_size=None, open_timeout=120,
                                    ping_interval=None, compression=None)
        except Exception as exc:  # noqa: BLE001 - a visitor that cannot load is an error in the table
            self.result.errors.append(f"load: {exc}")
            return
        asyncio.get_running_loop().create_task(self._receive())
        self.finished.clear()
        await self._send()
        while not (self.buttons.get("train") and self.finished.is_set()):
            self.finished.clear()
            try:
                await asyncio.wait_for(self.finished.wait(), 120)
            except TimeoutError:
                self.result.errors.append("load: no finished run within 120 s")
                return
        self.result.load_s = time.monotonic() - t0

    async def _send(self, trigger: str | None = None, fragment: str | None = None) -> None:
        msg = BackMsg()
        cs = msg.rerun_script
        cs.query_string, cs.page_name, cs.page_script_hash = self.query, self.page, self.page_hash
        cs.widget_states.SetInParent()  # other widgets keep their values on the server, as they would
        if trigger:
            w = cs.widget_states.widgets.add()
            w.id, w.trigger_value = trigger, True
        if fragment:
            cs.fragment_id, cs.is_auto_rerun = fragment, True
        cs.cached_message_hashes.extend(self.cache)
        cs.context_info.timezone, cs.context_info.locale = "UTC", "en-US"
        cs.context_info.url = f"{self.base}/{self.page}"
        try:
            await self.ws.send(msg.SerializeToString())
            self.result.sent += 1
        except ConnectionClosed as exc:
            self._error(f"socket closed: {exc}")

    async def _receive(self) -> None:
        try:
            async for data in self.ws:
                msg = ForwardMsg()
                msg.ParseFromString(data)
                self._handle(msg)
        except ConnectionClosed as exc:
            if not self.closing:
                self._error(f"socket closed: {exc}")

    def _error(self, text: str) -> None:
        if len(self.result.errors) < 5:
            self.result.errors.append(text)

    def _handle(self, msg: ForwardMsg) -> None:
        kind = msg.WhichOneof("type")
        if kind == "ref_hash":  # a message we said we hold
            cached = self.cache.get(msg.ref_hash)
            if cached is None:
                self._error(f"unknown cached message {msg.ref_hash}")
                return
            meta = msg.metadata
            msg = ForwardMsg()
            msg.CopyFrom(cached)
            msg.metadata.CopyFrom(meta)
            kind = msg.WhichOneof("type")
        elif msg.metadata.cacheable:
            self.cache[msg.hash] = msg
            if len(self.cache) > 64:  # the frontend drops messages unused for a few runs
                self.cache.pop(next(iter(self.cache)))
        if kind == "new_session":
            self.page_hash = msg.new_session.page_script_hash or self.page_hash
            if not msg.metadata.run.fragment_ids:  # a full run: the frontend clears every run_every timer
                for task in self.timers.values():
                    task.cancel()
                self.timers.clear()
        elif kind == "navigation":
            self.page_hash = msg.navigation.page_script_hash or self.page_hash
        elif kind == "page_info_changed":
            self.query = msg.page_info_changed.query_string
        elif kind == "auto_rerun":
            frag, interval = msg.auto_rerun.fragment_id, msg.auto_rerun.interval
            old = self.timers.get(frag)
            if old is None or old.get_name() != f"{interval}":
                if old:
                    old.cancel()
                self.timers[frag] = asyncio.get_running_loop().create_task(self._tick(frag, interval),
                                                                          name=f"{interval}")
        elif kind == "stop_auto_rerun":
            for frag in msg.stop_auto_rerun.fragment_ids:
                task = self.timers.pop(frag, None)
                if task:
                    task.cancel()
        elif kind == "script_finished":
            self.result.runs += 1
            if msg.script_finished in (FINISHED, FRAGMENT_DONE):
                self.finished.set()
        elif kind == "delta" and msg.delta.HasField("new_element"):
            self._element(msg.delta.new_element)

    def _element(self, el) -> None:
        kind = el.WhichOneof("type")
        if kind == "markdown":
            m = STATUS.match(el.markdown.body)
            if m:
                self._frame(int(m["step"].replace(",", "")), float(m["test"]))
        elif kind == "component_instance":
            comp = el.component_instance
            if comp.component_name not in self.assets:
                self.assets.add(comp.component_name)
                asyncio.get_running_loop().run_in_executor(None, self._fetch_assets, comp.component_name)
            player = self.players.setdefault(comp.id, Playback(self._shown))
            player.render(json.loads(comp.json_args))
        elif kind == "button":
            self.buttons[el.button.id.rsplit(":", 1)[-1]] = el.button.id
        elif kind == "exception":
            ours = [line.strip().split("\n")[0] for line in el.exception.stack_trace if str(ROOT) in line]
            self._error(f"{el.exception.type}: {el.exception.message[:120]} ({ours[-1] if ours else '?'})")
        elif kind == "alert" and el.alert.format == 1:  # Alert.ERROR
            self._error(f"error box: {el.alert.body[:200]}")

    def _shown(self, frame: dict) -> None:
        m = status_of(frame)
        if m:
            self._frame(int(m["step"].replace(",", "")), float(m["test"]))

    def _fetch_assets(self, name: str) -> None:
        """What the player's iframe loads from the server (the browser caches it for the rest of the visit)."""
        for file in ("index.html", "plotly.min.js.gz", "template.json"):
            req = urllib.request.Request(f"{self.base}/component/{name}/{file}", headers={"Accept-Encoding": "gzip"})
            try:
                with urllib.request.urlopen(req, timeout=60) as resp:
                    resp.read()
            except Exception as exc:  # noqa: BLE001 - a file the browser cannot load is an error in the table
                self._error(f"component file {file}: {exc}")

    def _frame(self, step: int, test: float) -> None:
        if self.result.clicked is None or step == self.last_step:
            return
        self.last_step = step
        self.result.frames.append(Frame(time.monotonic() - self.result.clicked, step, test))

    async def _tick(self, fragment: str, interval: float) -> None:
        """The browser's setInterval: a fragment rerun every interval, never caught up in a burst."""
        due = time.monotonic()
        while True:
            due += interval
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            due = max(due, time.monotonic() - interval)
            await self._send(fragment=fragment)

    async def train(self) -> None:
        self.result.clicked = time.monotonic()
        await self._send(trigger=self.buttons["train"])

    async def close(self) -> None:
        self.closing = True
        for player in self.players.values():
            player.stop()
        for task in self.timers.values():
            task.cancel()
        if self.ws is not None:
            await self.ws.close()


# ---------------------------------------------------------------------------------------------
# Servers


class Servers:
    """K hosted app processes: one served directly, or K behind nginx (scripts/serve-classroom.sh)."""

    def __init__(self, processes: int, app_dir: Path = ROOT, log: Path | None = None) -> None:
        self.k = processes
        self.log = log or Path(os.environ.get("TMPDIR", "/tmp")) / f"bench_classroom-{os.getpid()}.log"
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        env = {**os.environ, "ARCFACE_VIZ_HOSTED": "1", "PYTHONUNBUFFERED": "1"}
        if processes == 1:
            cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
                   "--server.address", "127.0.0.1"]
        else:
            cmd = ["bash", "scripts/serve-classroom.sh", str(processes), "--port", str(port)]
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(cmd, cwd=app_dir, env=env, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        wait_healthy(self.base)
        # each app process directly (serve-classroom.sh puts them on the ports after nginx's)
        self.backends = [self.base] if processes == 1 else [f"http://127.0.0.1:{port + i}"
                                                             for i in range(1, processes + 1)]
        self.pids = [self.proc.pid] if processes == 1 else self._app_pids()
        self.cpu0 = self.cpu_seconds()

    def _app_pids(self) -> list[int]:
        """The streamlit processes the serving script started (its children running app.py)."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            out = subprocess.run(["pgrep", "-s", str(os.getpgid(self.proc.pid)), "-f", "streamlit run app.py"],
                                 capture_output=True, text=True).stdout.split()
            if len(out) >= self.k:
                return [int(p) for p in out]
            time.sleep(0.5)
        raise SystemExit(f"expected {self.k} app processes")

    def cpu_seconds(self) -> float:
        total = 0.0
        for pid in self.pids:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
        return total

    def peak_mb(self) -> list[float]:
        out = []
        for pid in self.pids:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    out.append(int(line.split()[1]) * 1024 / 1e6)
        return out

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)


# ---------------------------------------------------------------------------------------------
# A class


async def teacher_visit(base: str, link: str) -> None:
    """The teacher opens the link before the lesson (a fresh server's first visit imports the libraries)."""
    first = Visitor(base, link, "teacher")
    await first.open()
    await first.close()
    if first.result.errors:
        raise SystemExit(f"the teacher's page did not load: {first.result.errors}")


async def classroom(base: str, links: list[str], spread: float, train_seconds: float,
                    teacher: Sequence[str] = ()) -> list[Result]:
    """Visitor i opens links[i] at i·spread/N seconds, presses Train once loaded, watches ``train_seconds``.

    ``teacher``: addresses of app processes the teacher opens the first link on before the lesson (without
    training): a process's first visit imports torch and the rest, a few seconds."""
    for address in teacher:
        await teacher_visit(address, links[0])
    visitors = [Visitor(base, link, f"v{i:02d}") for i, link in enumerate(links)]
    t0 = time.monotonic()

    async def one(i: int, v: Visitor) -> None:
        await asyncio.sleep(i * spread / max(1, len(visitors)))
        await v.open()
        if not v.result.errors:
            await v.train()
        await asyncio.sleep(max(0.0, t0 + spread + train_seconds + 1.0 - time.monotonic()))

    await asyncio.gather(*(one(i, v) for i, v in enumerate(visitors)))
    await asyncio.gather(*(v.close() for v in visitors))
    return [v.result for v in visitors]


def report(title: str, results: list[Result], servers: Servers, wall: float, train_seconds: float,
           max_steps: int, client_cpu: float) -> dict[str, float]:
    print(f"\n## {title}")
    print(f"{'visitor':8s} {'load s':>7s} {'1st frame s':>11s} {'updates/s':>9s} {'max gap s':>9s} {'steps/s':>8s} "
          f"{'to 99% s':>8s} {'last step':>9s}  errors")
    ups, sps, gaps = [], [], []
    for r in results:
        u, s, gap = r.rates(train_seconds, max_steps)
        ups.append(u)
        sps.append(s)
        gaps.append(gap)
        last = r.frames[-1].step if r.frames else 0
        print(f"{r.name:8s} {r.load_s:7.2f} {r.first_frame_s():11.2f} {u:9.2f} {gap:9.2f} {s:8.1f} {r.to_99_s():8.2f} "
              f"{last:9d}  {'; '.join(r.errors) or '-'}")
    cpu_s = servers.cpu_seconds() - servers.cpu0
    cpu = cpu_s / wall
    updates = sum(len(r.frames) for r in results)
    peaks = servers.peak_mb()
    to99 = [r.to_99_s() for r in results]
    summary = {
        "slowest load s": max(r.load_s for r in results),
        "slowest first frame s": max(r.first_frame_s() for r in results),
        "min updates/s": min(ups), "median updates/s": statistics.median(ups), "longest gap s": max(gaps),
        "min steps/s": min(sps), "median steps/s": statistics.median(sps),
        "slowest to 99% s": max(to99),
        "never 99%": sum(t != t for t in to99),
        "errors": sum(len(r.errors) for r in results),
        "server peak MB": max(peaks), "server CPU cores": cpu,
        "server CPU ms per update": 1000 * cpu_s / max(1, updates), "load client CPU cores": client_cpu / wall,
    }
    print("summary: " + " · ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in summary.items())
          + (f" · peaks per process {', '.join(f'{p:.0f}' for p in peaks)} MB" if len(peaks) > 1 else ""))
    return summary


def run_class(args, n: int, processes: int, title: str) -> dict[str, float]:
    links = []
    for i in range(n):
        sep = "&" if "?" in args.link else "?"
        links.append(f"{args.link}{sep}seed={i + args.seed0}" if args.seeds else args.link)
    servers = Servers(processes, args.app_dir)
    try:
        if not args.cold:  # before the lesson: not counted in the server's CPU below
            for address in servers.backends:
                asyncio.run(teacher_visit(address, links[0]))
        servers.cpu0 = servers.cpu_seconds()
        ru0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.monotonic()
        results = asyncio.run(classroom(servers.base, links, args.spread, args.train_seconds))
        wall = time.monotonic() - t0
        ru1 = resource.getrusage(resource.RUSAGE_SELF)
        client = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
        return report(title, results, servers, wall, args.train_seconds, args.max_steps, client)
    finally:
        servers.stop()


# ---------------------------------------------------------------------------------------------
# The client against a real browser


def browser_visitor(base: str, link: str, train_seconds: float) -> tuple[Result, int]:
    """One Chromium tab: load, click Train; the frames its player showed (``window.playerLog`` in the player's
    iframe: frame, time, status line) and how many distinct status lines were on screen when read every 50 ms."""
    from playwright.sync_api import sync_playwright

    res, shown = Result("chromium"), set()

    def sent(payload: bytes | str) -> None:
        msg = BackMsg()
        msg.ParseFromString(payload if isinstance(payload, bytes) else payload.encode("latin-1"))
        if msg.WhichOneof("type") == "rerun_script":
            res.sent += 1

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.on("websocket", lambda ws: ws.on("framesent", sent))
        t0 = time.monotonic()
        page.goto(f"{base}/{link}")
        key = link.partition("?")[0].strip("/").replace("_", "-")  # the page's widget-key prefix (toy-training)
        train = page.locator(f".st-key-{key}-train button")
        train.wait_for(timeout=120_000)
        page.wait_for_function("() => document.querySelector('[data-testid=\"stApp\"]')"
                               ".getAttribute('data-test-script-state') === 'notRunning'", timeout=120_000)
        res.load_s = time.monotonic() - t0
        player = next(f for f in page.frames if "/component/" in f.url)
        player.wait_for_function("() => window.playerLog && window.playerLog.length > 0", timeout=120_000)
        res.sent = 0
        res.clicked = time.monotonic()
        p0 = player.evaluate("performance.now()")
        train.click()
        while time.monotonic() - res.clicked < train_seconds + 0.5:
            m = STATUS_TEXT.match(player.evaluate("(document.querySelector('.md') || {}).textContent || ''"))
            if m:
                shown.add(int(m["step"].replace(",", "")))
            page.wait_for_timeout(50)
        for _n, t, text in player.evaluate("window.playerLog"):
            m = STATUS_TEXT.match(text)
            step = int(m["step"].replace(",", "")) if m else None
            if m and t >= p0 and (not res.frames or res.frames[-1].step != step):
                res.frames.append(Frame((t - p0) / 1000, step, float(m["test"])))
        browser.close()
    return res, len(shown)


def validate(args) -> None:
    """One protocol visitor and one Chromium tab, each alone on a fresh server, on the same link."""
    rows = []
    for kind in ("protocol", "chromium", "protocol", "chromium"):  # interleaved A/B
        servers = Servers(1, args.app_dir)
        try:
            if not args.cold:
                asyncio.run(teacher_visit(servers.base, args.link))
            cpu0 = servers.cpu_seconds()
            if kind == "chromium":
                res, shown = browser_visitor(servers.base, args.link, args.train_seconds)
            else:
                res, shown = asyncio.run(classroom(servers.base, [args.link], 0.0, args.train_seconds))[0], None
            cpu = servers.cpu_seconds() - cpu0
        finally:
            servers.stop()
        u, s, _ = res.rates(args.train_seconds, args.max_steps)
        rows.append((kind, res.load_s, res.sent / args.train_seconds, u,
                      "—" if shown is None else f"{shown / args.train_seconds:.2f}", s, res.to_99_s(),
                      1000 * cpu / max(1, len(res.frames))))
    print(f"\n## protocol client against Chromium, one visitor alone on {args.link}")
    print(f"{'client':9s} {'load s':>7s} {'reruns asked/s':>14s} {'updates/s':>9s} {'shown/s':>8s} {'steps/s':>8s} "
          f"{'to 99% s':>8s} {'server CPU ms/update':>20s}")
    for r in rows:
        print(f"{r[0]:9s} {r[1]:7.2f} {r[2]:14.2f} {r[3]:9.2f} {r[4]:>8s} {r[5]:8.1f} {r[6]:8.2f} {r[7]:20.1f}")
    print("updates/s: frames the player showed (Chromium: its own log; the protocol client: the player's rules\n"
          "applied to the frames received); shown/s: status lines seen on screen when read every 50 ms.\n"
          "Chromium's load includes the app's JavaScript, which the protocol client does not fetch; on a machine\n"
          "it shares with the server, its drawing also takes CPU from the server.")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--link", default=TOY_LINK, help="page and query string every visitor opens")
    ap.add_argument("--visitors", type=int, default=30)
    ap.add_argument("--seeds", action="store_true", help="visitor i adds &seed=<seed0 + i> to the link")
    ap.add_argument("--seed0", type=int, default=0)
    ap.add_argument("--spread", type=float, default=10.0, help="seconds over which the visitors arrive")
    ap.add_argument("--train-seconds", type=float, default=20.0, help="how long each visitor watches after Train")
    ap.add_argument("--max-steps", type=int, default=3000, help="a hosted run's step limit (its last frame)")
    ap.add_argument("--processes", type=int, default=1, help="app processes (more than 1: behind nginx)")
    ap.add_argument("--cold", action="store_true", help="no teacher's visit to each process before the class arrives")
    ap.add_argument("--app-dir", type=Path, default=ROOT, help="the checkout to serve (A/B against another branch)")
    ap.add_argument("--reference", action="store_true",
                    help="also one visitor alone on a fresh server, before and after (goal 3's reference)")
    ap.add_argument("--validate", action="store_true", help="compare the protocol client with Chromium")
    args = ap.parse_args()
    if urlsplit(args.link).scheme:
        raise SystemExit("--link is a page and query, e.g. toy_training?dataset=fig3")
    print(f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.2f} before the run")
    if args.validate:
        validate(args)
        return
    runs = []
    if args.reference:
        runs.append(run_class(args, 1, args.processes, f"reference: 1 visitor alone on {args.link}"))
    runs.append(run_class(args, args.visitors, args.processes,
                          f"{args.visitors} visitors on {args.link}{' with seed=i' if args.seeds else ''}, "
                          f"{args.processes} process(es), arriving over {args.spread:.0f} s"))
    if args.reference:
        runs.append(run_class(args, 1, args.processes, f"reference again: 1 visitor alone on {args.link}"))
        lone = statistics.mean([runs[0]["median steps/s"], runs[2]["median steps/s"]])
        crowd = runs[1]["min steps/s"]
        print(f"\nslowest of {args.visitors} visitors: {crowd:.1f} steps/s; lone visitor (mean of before and after): "
              f"{lone:.1f} steps/s; ratio {crowd / lone:.2f} (goal 3: at least 0.40)")


if __name__ == "__main__":
    main()
