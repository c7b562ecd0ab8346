"""Server time of one live-training redraw: the figures the page rebuilds every tick.

Per tick the page draws, from one snapshot (600 sampled points) and the run's history:
the embeddings on the circle / sphere with the decision ring (Fig. 3), the decision regions,
the θ_yi histogram (Fig. 4a: start, middle, now) and the loss / accuracy curves. Streamlit then
serialises each figure: ``plotly.io.to_json(fig.to_dict(), validate=False)``, timed separately, and
also plain ``fig.to_json()``. Synthetic snapshots: 8 and 10 classes, 2-D and 3-D.
Goal (issue 3): at most 100 ms per redraw, so the page can update 10 times a second.

    python bench/bench_redraw.py [--repeats 30] [--points 600] [--train 12000] [--history 300]
"""

from __future__ import annotations

import argparse
import statistics
import time
from types import SimpleNamespace

import numpy as np
import plotly.io as pio

from arcface_viz.plots import sphere as ps


def synthetic_run(dim: int, n_classes: int, points: int, n_train: int, history: int, seed: int = 0):
    """A run's history: snapshots whose classes tighten around fixed centres as the steps go by."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    labels = rng.integers(0, n_classes, points)
    snaps = []
    for i in range(history):
        spread = 1.5 * (1 - i / history) + 0.15
        emb = centres[labels] + spread * rng.normal(size=(points, dim))
        emb /= np.linalg.norm(emb, axis=1, keepdims=True)
        theta = np.clip(rng.normal(90 - 60 * i / history, 15, n_train), 0, 180)
        snaps.append(SimpleNamespace(
            step=10 * i, loss=3.0 * np.exp(-i / 50), train_acc=1 - np.exp(-i / 40),
            test_acc=(1 - np.exp(-i / 40)) if i % 10 == 0 else None, embeddings=emb, labels=labels,
            centres=centres, theta_deg=theta, min_centre_angle_deg=40.0, lr=0.1, margin_scale=1.0, lam=None))
    return snaps


def redraw(snaps, margin: dict) -> list:
    now = snaps[-1]
    return [
        ps.embedding_figure(now.embeddings, now.labels, now.centres, title="ArcFace", regions=margin),
        ps.decision_regions_figure(now.centres, mode="margin", **{k: v for k, v in margin.items() if k != "mode"}),
        ps.theta_histogram_figure(snaps),
        ps.curves_from_history(snaps),
    ]


def per_figure(snaps, margin: dict) -> list:
    now = snaps[-1]
    emb, lab, w = now.embeddings, now.labels, now.centres
    return [
        ("embedding_figure (no regions)", lambda: ps.embedding_figure(emb, lab, w)),
        ("embedding_figure + regions", lambda: ps.embedding_figure(emb, lab, w, regions=margin)),
        ("decision_regions_figure", lambda: ps.decision_regions_figure(w, m2=margin["m2"], mode="margin")),
        ("theta_histogram_figure", lambda: ps.theta_histogram_figure(snaps)),
        ("curves_from_history", lambda: ps.curves_from_history(snaps)),
    ]


def timed(fn, repeats: int, warmup: int = 3) -> tuple[list[float], list[float]]:
    """Wall-clock and process-CPU milliseconds per call (CPU time is steadier on a shared machine)."""
    for _ in range(warmup):
        fn()
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(1000 * (time.perf_counter() - t0))
        cpu.append(1000 * (time.process_time() - c0))
    return wall, cpu


def line(label: str, t: tuple[list[float], list[float]]) -> str:
    wall, cpu = t
    return (f"  {label:<32} wall mean {statistics.mean(wall):6.1f} ms, median {statistics.median(wall):6.1f} ms"
            f" | CPU median {statistics.median(cpu):6.1f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--points", type=int, default=600)
    ap.add_argument("--train", type=int, default=12_000, help="θ_yi values per snapshot (training samples)")
    ap.add_argument("--history", type=int, default=300, help="snapshots in the run so far")
    args = ap.parse_args()
    margin = dict(m1=1.0, m2=0.2, m3=0.0, mode="margin")
    print(f"redraw = embedding+ring, regions, θ histogram, curves; {args.points} points, "
          f"{args.train} θ values, {args.history} snapshots; {args.repeats} repeats")
    for dim in (2, 3):
        for n in (8, 10):
            snaps = synthetic_run(dim, n, args.points, args.train, args.history)
            print(f"d={dim}, {n} classes")
            build = timed(lambda s=snaps: redraw(s, margin), args.repeats)
            figs = redraw(snaps, margin)
            to_json = timed(lambda f=figs: [x.to_json() for x in f], args.repeats)
            st_json = timed(lambda f=figs: [pio.to_json(x.to_dict(), validate=False) for x in f], args.repeats)
            total = tuple([a + b for a, b in zip(x, y, strict=True)] for x, y in zip(build, st_json, strict=True))
            print(line("build 4 figures", build))
            print(line("fig.to_json() x4", to_json))
            print(line("Streamlit serialise x4", st_json))
            print(line("build + Streamlit serialise", total))
            sizes = [len(x.to_json()) // 1024 for x in figs]
            print(f"  JSON sizes (KiB): embedding {sizes[0]}, regions {sizes[1]}, histogram {sizes[2]}, "
                  f"curves {sizes[3]}")
    for dim, n in ((2, 8), (3, 10)):
        snaps = synthetic_run(dim, n, args.points, args.train, args.history)
        print(f"per figure, d={dim}, {n} classes (build only)")
        for label, fn in per_figure(snaps, margin):
            print(line(label, timed(fn, args.repeats)))

if __name__ == "__main__":
    main()
