"""Live training that a whole class can watch: runs computed once and read by every visitor.

A :class:`Run` is trainers (one, or two in compare mode) advanced together one *frame* at a time: frame i holds
each trainer's :class:`~arcface_viz.training.Snapshot` after the frame's optimizer steps, and what the page
reads from the trainers at that moment (``extras``: the margins in force, a confusion matrix, …).  A frame, once
made, never changes.  Training is deterministic (same settings ⇒ same frames, bit for bit), so visitors whose
settings are identical share one Run (:func:`shared_run`): the first visitor to need frame i trains it, the
others read it, and whatever a page builds from a frame (its figures) can be kept with the run
(:meth:`Run.memo`) and sent to everyone who shows that frame.

A :class:`LiveSession` is one visitor's view of a Run: a cursor (the frame on screen) and the visitor's own
Train/Pause.  Each frame of a running session, and Step, move the cursor on, training the next frame only if
nobody has yet.  A visitor who changes a setting mid-run gets a run of their own, forked at the frame on screen
(:meth:`LiveSession.own`), so nobody else's run changes.  Streamlit-free: pages keep a LiveSession in their
session state, and the tests drive it directly.

Memory: a frame's snapshots are dropped once no viewer can show them again (behind every viewer's cursor and
outside every viewer's thinned history, :func:`thin`); the scalars behind the curves are kept for every frame.
"""

from __future__ import annotations

import itertools
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

Extras = Callable[[Sequence[Any], Sequence[Any]], Any]  # (trainers, snapshots) -> what the page reads at a frame


def thin(kept: list[int], new: int, max_snapshots: int) -> list[int]:
    """The frames a history shows after one more frame ``new``: appended, then, past ``max_snapshots``, the
    middle halved (every other frame dropped; the first and the newest kept).  So the history of a run at
    frame n is the same whoever watches it and however they got there."""
    kept = [*kept, new]
    if len(kept) > max_snapshots:
        kept = [kept[0], *kept[1:-1:2], kept[-1]]
    return kept


@dataclass(frozen=True)
class Frame:
    """One frame of a run: ``snaps`` (a Snapshot per trainer; None once no viewer can show it again), their
    scalar ``summaries`` (kept for the curves), and the page's ``extras`` (dropped with the snapshots)."""

    snaps: tuple[Any, ...] | None
    summaries: tuple[dict[str, Any], ...]
    extras: Any = None

    @property
    def step(self) -> int:
        return int(self.summaries[0]["step"])


_TOKENS = itertools.count(1)


class Run:
    """Trainers advanced together one frame at a time; every frame kept for whoever views the run.

    ``max_steps``: the run pauses its viewers there.  ``extras(trainers, snapshots)``: what the page reads from
    the trainers at each frame (stored with it).  ``factory()``: new trainers equal to this run's at step 0 (its
    settings, its seed), from which :meth:`LiveSession.own` re-trains a fork.  ``frames``: the frames so far,
    for trainers that are already past step 0 (a fork).  ``batch``: runs of other seeds that train in the same
    batched steps as this one (:class:`Batch`).  Thread-safe: frames are made
    under the run's lock, one visitor at a time; reading a frame that exists needs no lock.
    """

    MEMO_SIZE = 48  # figures kept per run: frames that visitors a few seconds apart still show

    def __init__(self, trainers: Sequence[Any], *, max_steps: int | None = None, extras: Extras | None = None,
                 factory: Callable[[], Sequence[Any]] | None = None, frames: Sequence[Frame] | None = None,
                 batch: Batch | None = None) -> None:
        self.trainers = list(trainers)
        self.max_steps = max_steps
        self.extras = extras
        self.factory = factory
        self.key: Hashable | None = None  # set while the run is shared under its settings (see shared_run)
        self.token = next(_TOKENS)  # no other run of this process has it (an id() can be reused)
        self.lock = threading.RLock()
        self.viewers: weakref.WeakSet[LiveSession] = weakref.WeakSet()
        self.complete = True  # every frame from 0 still has its snapshots: a new viewer can start at 0
        self.joined = 0  # viewers that ever watched
        self._memo: OrderedDict[Hashable, Any] = OrderedDict()
        self._drawn: dict[Hashable, int] = {}  # memo key -> the frame it draws
        # frames: the ones so far when the trainers are already past step 0 (a fork)
        self.frames: list[Frame] = list(frames) if frames else [self._frame([t.snapshot() for t in self.trainers])]
        self.batch = batch if batch is not None and batch.admits(self) else None
        if self.batch is not None:
            self.batch.runs.add(self)

    def _frame(self, snaps: list[Any]) -> Frame:
        return Frame(tuple(snaps), tuple(s.summary() for s in snaps),
                     self.extras(self.trainers, snaps) if self.extras else None)

    @property
    def head(self) -> int:
        """Index of the newest frame."""
        return len(self.frames) - 1

    @property
    def done(self) -> bool:
        return self.max_steps is not None and self.frames[-1].step >= self.max_steps

    def produce(self, i: int, steps: int) -> int:
        """Make frames up to frame i, ``steps`` optimizer steps each (fewer at the step limit), unless someone
        has already; the index of the newest frame ≤ i that exists (the step limit can stop short of i)."""
        while self.head < i and not self.done:
            k = steps if self.max_steps is None else min(steps, self.max_steps - self.frames[-1].step)
            if self.batch is not None and k == steps:
                self.batch.produce(self, k)  # this run's next frame, and the next frame of others waiting for one
            else:
                with self.lock:
                    if self.head < i and not self.done:
                        self.append([t.advance(k) for t in self.trainers])
        return min(i, self.head)

    def append(self, snaps: list[Any]) -> None:
        """Add the frame the trainers are at now, ``snaps`` their snapshots (under the lock)."""
        with self.lock:
            self.frames.append(self._frame(snaps))
            if self.head % 8 == 0:
                self._drop_unseen()

    @property
    def waited_on(self) -> bool:
        """A running viewer shows this run's newest frame or the one before: it will soon ask for the next one
        (so a batch trains each run a frame ahead of its viewer, and more runs share each batched step)."""
        with self.lock:
            return not self.done and any(v.running and v.cursor >= self.head - 1 for v in list(self.viewers))

    def join(self, viewer: LiveSession) -> bool:
        """Add a viewer at frame 0; False if this run can no longer show frame 1 onwards."""
        with self.lock:
            if not self.complete:
                return False
            self.viewers.add(viewer)
            self.joined += 1
            return True

    def _drop_unseen(self) -> None:
        """Drop the snapshots of frames that no viewer can show again (under the lock)."""
        viewers = list(self.viewers)
        if not viewers:
            return
        low = min(v.cursor for v in viewers)
        needed = set().union(*(v.kept for v in viewers))
        for i in range(1, low):
            if i not in needed and self.frames[i].snaps is not None:
                self.frames[i] = replace(self.frames[i], snaps=None, extras=None)
                self.complete = False

    def memo(self, key: Hashable, build: Callable[[], Any], frame: int | None = None) -> Any:
        """``build()`` once per key (e.g. a frame's figures), kept for the next :attr:`MEMO_SIZE` keys asked;
        ``frame``: the frame it draws, which :meth:`drawn` then lists."""
        with self.lock:
            if key in self._memo:
                self._memo.move_to_end(key)
                return self._memo[key]
        value = build()
        with self.lock:
            self._memo[key] = value
            if frame is not None:
                self._drawn[key] = frame
            while len(self._memo) > self.MEMO_SIZE:
                old, _ = self._memo.popitem(last=False)
                self._drawn.pop(old, None)
        return value

    def drawn(self, first: int, last: int) -> list[int]:
        """Frames from ``first`` to ``last`` whose figures are kept (:meth:`memo` with ``frame``)."""
        with self.lock:
            return sorted({f for f in self._drawn.values() if first <= f <= last})


# ---------------------------------------------------------------------------------------------
# Runs of different seeds trained together


class Batch:
    """Runs that differ only in what :mod:`arcface_viz.batched` lets differ (seed, …), trained in the same
    batched steps: when one of them needs its next frame, every other one that a running viewer is waiting on
    gets its next frame from the same computation (30 seeds cost about as much as a few).  A run alone in its
    batch trains through its trainer's own ``advance``: bit-identical to a run alone.  Runs of one trainer
    (not compare mode) whose trainer is :func:`~arcface_viz.batched.batchable` only."""

    def __init__(self) -> None:
        self.runs: weakref.WeakSet[Run] = weakref.WeakSet()
        self.lock = threading.Lock()

    @staticmethod
    def admits(run: Run) -> bool:
        from .batched import batchable

        return len(run.trainers) == 1 and batchable(run.trainers[0])

    def produce(self, run: Run, k: int) -> None:
        """The next frame of ``run`` and of the other runs waited on, ``k`` steps each."""
        from .batched import advance_together, compatible

        with self.lock:
            others = [r for r in list(self.runs) if r is not run and r.batch is self and r.waited_on
                      and (r.max_steps is None or r.max_steps - r.frames[-1].step >= k)]
            members = [run, *(r for r in others if compatible([run.trainers[0], r.trainers[0]]))]
            with ExitStack() as locks:
                for r in members:
                    locks.enter_context(r.lock)
                snaps = advance_together([r.trainers[0] for r in members], k)
                for r, snap in zip(members, snaps, strict=True):
                    r.append([snap])

    def leave(self, run: Run) -> None:
        self.runs.discard(run)
        run.batch = None


_BATCHES: weakref.WeakValueDictionary[Hashable, Batch] = weakref.WeakValueDictionary()
_BATCHES_LOCK = threading.Lock()


def batch_for(key: Hashable) -> Batch:
    """The batch of runs whose settings match ``key`` (all but the ones a batch lets differ)."""
    with _BATCHES_LOCK:
        batch = _BATCHES.get(key)
        if batch is None:
            batch = _BATCHES[key] = Batch()
        return batch


# ---------------------------------------------------------------------------------------------
# Runs shared by visitors with the same settings


class RunGone(RuntimeError):
    """The run dropped its early frames: a new viewer cannot start it from frame 0."""


_SHARED: weakref.WeakValueDictionary[Hashable, Run] = weakref.WeakValueDictionary()
_SHARED_LOCK = threading.Lock()


def shared_run(key: Hashable, make: Callable[[], Run]) -> Run:
    """The run every visitor with settings ``key`` watches: the one shared under ``key`` if it can still show
    frame 1 onwards, else ``make()`` (then shared).  A run lives as long as a viewer's session holds it."""
    with _SHARED_LOCK:
        run = _SHARED.get(key)
        if run is None or not run.complete:
            run = make()
            run.key = key
            _SHARED[key] = run
        return run


def watch(key: Hashable, make: Callable[[], Run], structure: Mapping[str, Any], **kwargs: Any) -> LiveSession:
    """A new visitor's session on the run shared under ``key`` (see :func:`shared_run`), at frame 0."""
    while True:
        try:
            return LiveSession(shared_run(key, make), structure, **kwargs)
        except RunGone:  # its early frames were dropped between the look-up and the join: the next look-up
            continue     # makes a new run


def unshare(run: Run) -> None:
    """Stop handing ``run`` to new visitors (its frames are about to differ from its settings')."""
    with _SHARED_LOCK:
        if run.key is not None and _SHARED.get(run.key) is run:
            del _SHARED[run.key]
        run.key = None


# ---------------------------------------------------------------------------------------------
# One visitor's view


class LiveSession:
    """One visitor's view of a :class:`Run`: the frame on screen (``cursor``), Train/Pause (``running``), and
    the thinned history the figures draw.  ``structure`` is the part of the settings that can only change by
    building new trainers (data, dimension, loss, seed, …).

    Pass a Run (shared or not), or trainers for a run of this session's own.
    """

    def __init__(self, run: Run | Sequence[Any], structure: Mapping[str, Any], max_snapshots: int = 120,
                 max_steps: int | None = None) -> None:
        if max_snapshots < 3:
            raise ValueError("max_snapshots must be at least 3 (start, middle, now)")
        self.structure = dict(structure)
        self.max_snapshots = max_snapshots
        self.running = False
        self.cursor = 0
        self.kept = [0]  # the frames the history shows (see thin)
        self.settings: dict[str, Any] = {}  # every setting the run was built or last reconfigured with
        self.shown_at: float | None = None  # when the last frame of a running session was shown (monotonic s)
        self.run = run if isinstance(run, Run) else Run(run, max_steps=max_steps)
        if not self.run.join(self):
            raise RunGone("this run can no longer be shown from its first frame")

    # --- what is on screen ---------------------------------------------------------------------

    @property
    def trainers(self) -> list[Any]:
        """The run's trainers, at the run's newest frame: read their settings, not their state (the frame on
        screen is :attr:`frame`)."""
        return self.run.trainers

    @property
    def max_steps(self) -> int | None:
        return self.run.max_steps

    @property
    def frame(self) -> Frame:
        return self.run.frames[self.cursor]

    @property
    def step(self) -> int:
        return self.frame.step

    @property
    def finished(self) -> bool:
        return self.max_steps is not None and self.step >= self.max_steps

    @property
    def history(self) -> list[list[Any]]:
        """Per trainer, the snapshots of the thinned history (the first, evenly spread ones, the frame on
        screen)."""
        frames = [self.run.frames[j].snaps for j in self.kept]
        return [[snaps[i] for snaps in frames] for i in range(len(self.trainers))]

    @property
    def scalars(self) -> list[list[dict[str, Any]]]:
        frames = self.run.frames[:self.cursor + 1]
        return [[f.summaries[i] for f in frames] for i in range(len(self.trainers))]

    def curves(self, i: int = 0) -> dict[str, np.ndarray]:
        """Full scalar history of trainer i up to the frame on screen: steps, loss, train_acc, test_acc (NaN
        where there is none)."""
        rows = self.scalars[i]
        pick = lambda key: np.array([np.nan if r[key] is None else r[key] for r in rows], dtype=float)  # noqa: E731
        return {"steps": pick("step"), "loss": pick("loss"), "train_acc": pick("train_acc"),
                "test_acc": pick("test_acc")}

    @property
    def others(self) -> int:
        """How many other visitors watch this run (0 for a run of one's own)."""
        with self.run.lock:
            return max(0, len(self.run.viewers) - 1) if self.run.key is not None else 0

    @property
    def behind(self) -> int:
        """Frames between the one on screen and the run's newest (frames already computed for someone)."""
        return self.run.head - self.cursor

    def note(self) -> str | None:
        """One short line for a run that is shared or replayed (None for a run of one's own), so no visitor
        wonders why their Pause did not pause anyone else."""
        if self.others:
            who = "1 other visitor" if self.others == 1 else f"{self.others} other visitors"
            return (f"Shared run: {who} with these settings watch this run, trained once; your Train, Pause and "
                    "Step move only your view, and a setting you change gives you a run of your own.")
        if self.behind and self.run.joined > 1:
            return "Replayed run: these frames were trained earlier for a visitor with the same settings."
        return None

    # --- moving on ----------------------------------------------------------------------------

    def advance(self, k: int, frames: int = 1, train: int | None = None, share: bool = False,
                visit: Callable[[LiveSession, int], None] | None = None) -> None:
        """Show ``frames`` frames later, training them (``k`` optimizer steps each) only where nobody has yet,
        and at most ``train`` of them (all by default); stops at the step limit (and pauses).  ``visit(self,
        left)``: called at each frame the session moves through (``left``: at most that many moves still to come),
        while the frame's snapshots are certainly kept (a player shows the frames in between too).

        Skipping several frames lands on a multiple of the largest power of two ≤ ``frames``, so visitors who
        skip show the same frames, whose figures are then built once (:meth:`Run.memo`).  ``share`` (a live
        view of a run others watch too): a visitor behind the run's newest frame moves on instead to the
        furthest frame up to 2 × ``frames`` ahead whose figures someone has drawn already, so visitors who
        pressed Train at different moments catch up with each other and then share every frame's figures."""
        train = frames if train is None else train
        due = frames
        if frames > 1:
            grid = 1 << (frames.bit_length() - 1)
            target = self.cursor + frames
            frames = max(1, target - target % grid - self.cursor)
        if share and self.cursor < self.run.head:
            drawn = self.run.drawn(self.cursor + 1, min(self.run.head, self.cursor + 2 * due))
            if drawn:
                frames = drawn[-1] - self.cursor
        for moved in range(frames):
            if self.finished:
                break
            if self.cursor == self.run.head:
                if train <= 0:
                    break
                train -= 1
                nxt = self.run.produce(self.cursor + 1, k)
            else:
                nxt = self.cursor + 1
            if nxt == self.cursor:
                break
            self.cursor = nxt
            self.kept = thin(self.kept, nxt, self.max_snapshots)
            if visit is not None:
                visit(self, frames - moved - 1)
        if self.finished:
            self.running = False

    def changed(self, structure: Mapping[str, Any]) -> list[str]:
        """Names of structural settings that differ from the ones the trainers were built with."""
        return [k for k in structure if structure[k] != self.structure.get(k)]

    def state_curves(self, i: int = 0) -> dict[str, np.ndarray]:
        """The loss's running state over the steps of trainer i (``steps`` and one array per quantity; none for a
        loss without state)."""
        rows = [r for r in self.scalars[i] if r.get("state")]
        if not rows:
            return {}
        out = {"steps": np.array([r["step"] for r in rows], dtype=float)}
        for key in rows[-1]["state"]:
            out[key] = np.array([r["state"].get(key, np.nan) for r in rows], dtype=float)
        return out

    def own(self) -> list[Any]:
        """Make the run this session's own before changing its settings, and return its trainers.

        Alone on the run and at its newest frame: the run itself (no longer shared).  Otherwise a fork: new
        trainers from the run's factory, re-trained through the same frames to the one on screen (same
        settings and seed ⇒ the same weights, optimizer state and random streams), holding this session's
        frames so far; the run and its other viewers go on unchanged.
        """
        run = self.run
        with run.lock:
            alone = set(run.viewers) == {self} and self.cursor == run.head
        if alone:
            unshare(run)
            if run.batch is not None:  # its settings are about to differ from its batch's
                run.batch.leave(run)
            return run.trainers
        if run.factory is None:
            raise RuntimeError("this run has no factory to fork from")
        trainers = list(run.factory())
        steps = [f.step for f in run.frames[:self.cursor + 1]]
        for before, after in zip(steps, steps[1:], strict=False):
            for t in trainers:
                t.advance(after - before)
        fork = Run(trainers, max_steps=run.max_steps, extras=run.extras, frames=run.frames[:self.cursor + 1])
        with run.lock:
            run.viewers.discard(self)
        self.run = fork
        fork.join(self)
        return trainers


# ---------------------------------------------------------------------------------------------
# Pacing a busy server


class Pacer:
    """Live frames of all visitors of one server, one at a time in the order they asked, and how far each
    visitor's next frame should move on (:data:`PACER` is the server's).

    Every visitor's browser asks for a frame every interval whether or not the server kept up.  Drawn
    all at once, the frames of a class starve the thread that sends them (Streamlit then sends only the newest
    of those it still holds, so most were drawn for nothing) and page loads.  Taking turns leaves that thread
    and page loads their share.  A visitor whose turn came late moves on by as many frames as intervals passed
    (at most ``catch_up``), so a run goes on at its pace while the figure updates less often; frames that still
    have to be trained count for that only while the server was idle most of the last second (``busy``).
    """

    def __init__(self, catch_up: int = 8, window: float = 2.0) -> None:
        self.catch_up, self.window = catch_up, window
        self._lock = threading.Lock()
        self._queue: list[threading.Event] = []
        self._busy: list[tuple[float, float]] = []  # (start, end) of recent turns
        self._asked: tuple[float, float] | None = None  # (when, busy) of the last busy() answer

    @contextmanager
    def turn(self) -> Iterator[None]:
        """Wait for this visitor's turn (first come, first served), then hold it for the block."""
        me = threading.Event()
        with self._lock:
            self._queue.append(me)
            if len(self._queue) == 1:
                me.set()
        me.wait()
        start = time.monotonic()
        try:
            yield
        finally:
            end = time.monotonic()
            with self._lock:
                self._queue.pop(0)
                if self._queue:
                    self._queue[0].set()
                self._busy.append((start, end))
                while self._busy and self._busy[0][1] < end - self.window:
                    self._busy.pop(0)

    @property
    def waiting(self) -> int:
        """Visitors holding or waiting for a turn."""
        return len(self._queue)

    def busy(self, now: float | None = None) -> float:
        """Share of the last ``window`` seconds spent drawing frames (0 … 1); asked within 50 ms of the last
        time, the same answer (a busy server asks once per frame of every visitor)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            if self._asked is not None and 0 <= now - self._asked[0] < 0.05:
                return self._asked[1]
            spent = sum(min(e, now) - max(s, now - self.window) for s, e in self._busy if e > now - self.window)
            share = max(0.0, min(1.0, spent / self.window))
            self._asked = (now, share)
        return share

    def frames(self, since: float | None, interval: float, now: float | None = None) -> tuple[int, int]:
        """(frames to move on, of which at most this many may be trained) for a visitor who asks for a frame
        every ``interval`` seconds and was last shown one at ``since`` (monotonic seconds; None: never)."""
        now = time.monotonic() if now is None else now
        due = 1 if since is None else max(1, min(self.catch_up, int((now - since) / interval)))
        return due, (due if self.busy(now) < 0.5 else 1)


PACER = Pacer()  # the server's: one process serves all its visitors
