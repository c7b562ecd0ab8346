"""Runs that a class shares (arcface_viz.live, issue 11): every visitor sees exactly the run their settings
promise, however many watch it and however they move through it; a visitor who changes a setting gets a run of
their own without disturbing the others; frames are kept while someone can still show them."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from arcface_viz.live import Batch, LiveSession, Pacer, Run, RunGone, shared_run, thin, watch
from arcface_viz.training import build_toy_trainer, reconfigure

STEPS = 10  # optimizer steps per frame
SETTINGS = {"dataset": "fig3", "dim": 2, "loss": "arcface", "seed": 3, "samples_per_class": 60}


def build(settings=SETTINGS) -> list:
    return [build_toy_trainer(dict(settings))]


def make(settings=SETTINGS, max_steps: int | None = 200) -> Run:
    return Run(build(settings), max_steps=max_steps, factory=lambda: build(settings))


def lone(frames: int, settings=SETTINGS) -> list:
    """What one visitor alone sees: a run of their own, one frame at a time."""
    sess = LiveSession(build(settings), {}, max_steps=200)
    out = [sess.frame.snaps[0]]
    for _ in range(frames):
        sess.advance(STEPS)
        out.append(sess.frame.snaps[0])
    return out


def same(a, b) -> bool:
    """Two snapshots are the same frame, bit for bit."""
    return (a.step == b.step and a.loss == b.loss and a.train_acc == b.train_acc and a.test_acc == b.test_acc
            and all(np.array_equal(getattr(a, k), getattr(b, k)) for k in ("embeddings", "centres", "theta_deg")))


def test_thin_keeps_the_first_and_newest_and_stays_bounded():
    kept = [0]
    for i in range(1, 200):
        kept = thin(kept, i, 7)
        assert kept[0] == 0 and kept[-1] == i and len(kept) <= 7 and kept == sorted(set(kept))


def test_visitors_sharing_a_run_each_see_the_lone_run_bit_for_bit():
    key = ("test-share", 1)
    a, b = watch(key, make, {}), watch(key, make, {})
    assert a.run is b.run and a.others == 1 and "Shared run" in a.note()
    for _ in range(6):  # a runs ahead and trains 6 frames
        a.advance(STEPS)
    b.advance(STEPS)  # b replays frame 1, skips on by 3 to frame 4 (a late turn; frames 2 and 4 are on the
    b.advance(STEPS, frames=3)  # grid of 2), then trains past a to frame 8 (on the grid of 4)
    assert b.cursor == 4 and b.kept == [0, 1, 2, 3, 4]
    b.advance(STEPS, frames=5)
    assert (a.cursor, b.cursor, a.run.head) == (6, 8, 8) and "Replayed" not in (b.note() or "")
    want = lone(8)
    for sess in (a, b):
        for i in range(sess.cursor + 1):
            assert same(sess.run.frames[i].snaps[0], want[i]), i
        assert [s.step for s in sess.history[0]] == [want[i].step for i in sess.kept]
        np.testing.assert_array_equal(sess.curves()["loss"], [w.loss for w in want[:sess.cursor + 1]])


def test_a_follower_catches_up_onto_frames_whose_figures_are_drawn_and_still_sees_the_lone_run():
    """share=True: a visitor behind the run's newest frame moves on to the furthest frame up to 2 × frames
    ahead that someone has drawn (Run.memo with frame=), so late visitors converge on frames built once."""
    key = ("test-catch-up", 1)
    a, b = watch(key, make, {}), watch(key, make, {})
    for _ in range(9):  # a leads, drawing frames 1…9 as it shows them
        a.advance(STEPS, share=True)
        a.run.memo(("figs", a.cursor), lambda: a.cursor, frame=a.cursor)
    assert a.run.drawn(0, 99) == list(range(1, 10))
    b.advance(STEPS, frames=1, share=True)  # drawn frames 1 and 2 are within 2 × 1: the furthest
    assert b.cursor == 2 and b.kept == [0, 1, 2]
    b.advance(STEPS, frames=3, share=True)  # up to 2 × 3 = 6 frames on: frame 8
    assert b.cursor == 8 and b.kept == list(range(9))
    b.advance(STEPS, frames=1)  # without share: exactly one frame
    assert b.cursor == 9
    b.advance(STEPS, frames=1, share=True)  # at the newest frame: trains the next one, as before
    assert b.cursor == 10 and a.run.head == 10
    want = lone(10)
    for i in range(11):
        assert same(b.run.frames[i].snaps[0], want[i]), i
    for key_ in [("other", i) for i in range(Run.MEMO_SIZE)]:  # figures forgotten: no longer listed as drawn
        a.run.memo(key_, lambda: None)
    assert a.run.drawn(0, 99) == []


def test_a_visitor_who_changes_a_setting_gets_a_fork_and_the_others_keep_their_run():
    key = ("test-fork", 1)
    a, b = watch(key, make, {}), watch(key, make, {})
    a.advance(STEPS, frames=8)
    for _ in range(5):
        b.advance(STEPS)
    shared = a.run
    trainers = b.own()  # b is behind a: a fork at b's frame, re-trained to it
    assert b.run is not shared and b.step == 5 * STEPS and a.run is shared and b not in set(shared.viewers)
    assert b.others == 0 and a.others == 0  # a is alone now; b's run is b's own
    b.advance(STEPS)  # unchanged so far: the fork's next frame is the shared run's
    assert same(b.frame.snaps[0], shared.frames[6].snaps[0])
    reconfigure(trainers[0], {**SETTINGS, "lr": 0.05})
    b.advance(STEPS)
    assert not same(b.frame.snaps[0], shared.frames[7].snaps[0])  # b's change shows in b's run
    a.advance(STEPS, frames=2)  # a goes on exactly as alone
    want = lone(10)
    assert all(same(shared.frames[i].snaps[0], want[i]) for i in range(11))


def test_alone_at_the_newest_frame_a_change_applies_in_place_and_the_run_is_no_longer_handed_out():
    key = ("test-alone", 1)
    a = watch(key, make, {})
    a.advance(STEPS, frames=3)
    run = a.run
    assert a.own() is run.trainers and a.run is run and run.key is None
    newcomer = watch(key, make, {})
    assert newcomer.run is not run and newcomer.step == 0


def test_frames_nobody_can_show_again_are_dropped_and_a_latecomer_gets_a_new_run():
    key = ("test-drop", 1)
    a = LiveSession(shared_run(key, lambda: make(max_steps=None)), {}, max_snapshots=5)
    for _ in range(40):
        a.advance(2)
    run = a.run
    kept = [i for i, f in enumerate(run.frames) if f.snaps is not None]
    assert set(a.kept) <= set(kept) and len(kept) < 20  # only a's history (and what it has not passed)
    assert all(f.summaries for f in run.frames)  # the curves keep every frame
    np.testing.assert_array_equal(a.curves()["steps"], np.arange(0, 81, 2))
    with pytest.raises(RunGone):
        LiveSession(run, {})
    late = watch(key, lambda: make(max_steps=None), {})
    assert late.run is not run and late.run.frames[0].snaps is not None


def test_a_class_arriving_at_once_builds_one_run_and_sees_one_run():
    key, built = ("test-crowd", 1), []
    barrier = threading.Barrier(8)
    sessions: list[LiveSession] = [None] * 8  # type: ignore[list-item]

    def counted() -> Run:
        built.append(1)
        return make()

    def visitor(i: int) -> None:
        barrier.wait()
        sessions[i] = watch(key, counted, {})
        for _ in range(3 + i % 3):
            sessions[i].advance(STEPS)

    threads = [threading.Thread(target=visitor, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(built) == 1 and len({id(s.run) for s in sessions}) == 1
    want = lone(5)
    assert all(same(f.snaps[0], w) for f, w in zip(sessions[0].run.frames, want, strict=True))


def test_step_limit_pauses_every_viewer():
    run = make(max_steps=35)
    a, b = LiveSession(run, {}), LiveSession(run, {})
    a.running = b.running = True
    a.advance(STEPS, frames=10)
    b.advance(STEPS, frames=2)
    assert a.step == 35 and a.finished and not a.running and run.done
    assert b.step == 20 and b.running
    b.advance(STEPS, frames=5)
    assert b.step == 35 and not b.running


def test_memo_builds_once_per_key_and_forgets_the_oldest():
    run = make()
    calls = []
    for key in [1, 1, 2, 1]:
        run.memo(key, lambda k=key: calls.append(k) or k)
    assert calls == [1, 2]
    for key in range(3, 3 + Run.MEMO_SIZE):
        run.memo(key, lambda: None)
    run.memo(1, lambda: calls.append("again"))
    assert calls[-1] == "again"


def test_pacer_serves_turns_in_arrival_order():
    pacer, order, gate = Pacer(), [], threading.Event()

    def visitor(i: int) -> None:
        with pacer.turn():
            if i == 0:
                gate.wait(30)
            order.append(i)

    threads = []
    for i in range(6):  # each asks while the first holds the turn, one after the other
        threads.append(threading.Thread(target=visitor, args=(i,)))
        threads[-1].start()
        while pacer.waiting < i + 1:
            threading.Event().wait(0.001)
    gate.set()
    for t in threads:
        t.join(30)
    assert order == [0, 1, 2, 3, 4, 5] and pacer.waiting == 0


def test_pacer_catches_up_by_whole_intervals_and_trains_them_only_when_idle():
    pacer = Pacer(catch_up=8)
    assert pacer.frames(None, 0.15, now=100.0) == (1, 1)
    assert pacer.frames(100.0, 0.15, now=100.2) == (1, 1)
    assert pacer.frames(100.0, 0.15, now=100.61) == (4, 4)  # idle server: the missed frames are trained too
    assert pacer.frames(100.0, 0.15, now=110.0) == (8, 8)
    pacer._busy = [(99.0, 100.5)]  # busy 1.5 of the last 2 s
    assert pacer.busy(now=100.5) == pytest.approx(0.75)
    assert pacer.frames(100.0, 0.15, now=100.5) == (3, 1)  # a busy server: replayed frames only


def test_runs_of_other_seeds_train_in_one_batch_and_each_is_its_lone_run():
    batch = Batch()
    seeds = [dict(SETTINGS, seed=s) for s in (11, 12, 13)]
    runs = [Run(build(s), max_steps=200, batch=batch) for s in seeds]
    views = [LiveSession(r, {}) for r in runs]
    assert len(batch.runs) == 3
    views[0].running = views[1].running = True  # the third visitor has not pressed Train
    views[0].advance(STEPS)  # one batched step: the next frame of every run waited on
    assert [r.head for r in runs] == [1, 1, 0]
    views[1].advance(STEPS)  # already there: nothing trained
    views[2].running = True
    views[2].advance(STEPS)  # its next frame, and the next of the two others (their viewers wait for them)
    assert [r.head for r in runs] == [2, 2, 1]
    for _ in range(4):
        for v in views:
            v.advance(STEPS)
    for run, s in zip(runs, seeds, strict=True):
        want = lone(run.head, s)
        assert run.head >= 5 and all(same(f.snaps[0], w) for f, w in zip(run.frames, want, strict=True))
