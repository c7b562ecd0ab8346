"""Sweep-map benchmark (issue 15 goals): how long a map takes, against its runs one by one, and whether every cell
is its run alone.

    python bench/bench_sweep.py [--repeats 2] [--digits-cells 36] [--skip-digits]

1. The 6 × 6 ArcFace map on fig3 (s = 2…64 × m2 = 0…0.5, 500 steps, seed 0) as ``arcface-viz sweep`` trains it
   (batched), and the same 36 runs of the ``toy`` command one after another (its ``train``), interleaved in this
   process so both see the same machine load.  Goals: the map in ≤ 4 s and ≤ ¼ of the 36 runs' time.
2. The 6 × 6 digits map (300 steps each) as the sweep trains it.  Goal: ≤ 60 s.

The match: each cell's test accuracy (points) and W-EC (degrees) against its run alone (the toy command's report;
the MNIST lesson's trainer for digits, ``--digits-cells`` of them), the largest difference and how many cells are
bit-identical.  Goals: within 1 point and 1°.  Wall-clock seconds; the load average is printed with them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from arcface_viz import sweep as S
from arcface_viz.commands.toy import train as toy_train
from arcface_viz.image_training import report as image_report


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def toy_alone(cfg: S.SweepConfig) -> list[dict]:
    """Every run of the map as the ``toy`` command trains and reports it."""
    out = []
    for c in range(len(cfg.x.values) * len(cfg.y.values)):
        iy, ix = divmod(c, len(cfg.x.values))
        report, _ = toy_train(cfg.lesson.config(cfg.cell_values(ix, iy)), cfg.steps)
        out.append(report)
    return out


def image_alone(cfg: S.SweepConfig, cells: int) -> list[dict]:
    """The first ``cells`` runs of an image map as the MNIST lesson trains them (``steps`` steps, no decay)."""
    out = []
    data = None
    for c in range(cells):
        iy, ix = divmod(c, len(cfg.x.values))
        values = cfg.cell_values(ix, iy)
        data = data if data is not None else cfg.lesson.load_data(values)
        trainer = cfg.lesson.build(values, data)
        trainer.advance(cfg.steps)
        out.append(image_report(trainer))
    return out


def match(result: S.SweepResult, alone: list[dict]) -> tuple[float, float, int, int]:
    """(largest |Δ test accuracy| in points, largest |Δ W-EC| in degrees, bit-identical cells, cells compared)."""
    d_acc = d_wec = 0.0
    same = 0
    for cell, rep in zip(result.cells, alone, strict=False):
        run = cell.runs[0]
        d_acc = max(d_acc, 100 * abs(run["test_acc"] - rep["test_acc"]))
        d_wec = max(d_wec, abs(run["W-EC"] - rep["W-EC"]))
        same += run["test_acc"] == rep["test_acc"] and run["W-EC"] == rep["W-EC"]
    return d_acc, d_wec, same, min(len(result.cells), len(alone))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=2, help="timed maps (the 36 runs alone are timed once between)")
    p.add_argument("--digits-cells", type=int, default=6, help="digits cells checked against their runs alone")
    p.add_argument("--skip-digits", action="store_true")
    a = p.parse_args()
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")

    cfg = S.make_config("fig3", "arcface", "s=2,4,8,16,32,64", "m2=0,0.1,0.2,0.3,0.4,0.5", 500)
    maps, alone_s = [], None
    alone = []
    for i in range(a.repeats):  # map, runs alone, map, …: the same load for both
        result, seconds = timed(lambda: S.run_sweep(cfg))
        maps.append(seconds)
        print(f"fig3 6×6 ArcFace map, 500 steps: {seconds:.2f} s (batched, repeat {i + 1})")
        if alone_s is None:
            alone, alone_s = timed(lambda: toy_alone(cfg))
            print(f"the same 36 runs of the toy command one after another: {alone_s:.2f} s")
    best = min(maps)
    d_acc, d_wec, same, n = match(result, alone)
    print(f"fig3 map: best {best:.2f} s (goal ≤ 4 s), median {statistics.median(maps):.2f} s; "
          f"36 toy runs {alone_s:.2f} s; ratio {best / alone_s:.3f} (goal ≤ 0.25)")
    print(f"fig3 match: |Δ test acc| ≤ {d_acc:.2f} points, |Δ W-EC| ≤ {d_wec:.3f}° (goals 1 point, 1°); "
          f"{same} of {n} cells bit-identical")

    if a.skip_digits:
        return
    dcfg = S.make_config("digits", "arcface", "s=2,4,8,16,32,64", "m2=0,0.1,0.2,0.3,0.4,0.5", 300)
    dres, dsec = timed(lambda: S.run_sweep(dcfg))
    print(f"digits 6×6 map, 300 steps: {dsec:.1f} s with {S.default_workers(dcfg)} worker process(es) "
          f"(goal ≤ 60 s), load average {os.getloadavg()[0]:.1f}")
    dalone, dalone_s = timed(lambda: image_alone(dcfg, a.digits_cells))
    d_acc, d_wec, same, n = match(dres, dalone)
    print(f"digits: {n} runs alone took {dalone_s:.1f} s ({36 * dalone_s / max(n, 1):.0f} s for 36 at that rate); "
          f"|Δ test acc| ≤ {d_acc:.2f} points, |Δ W-EC| ≤ {d_wec:.3f}°; {same} of {n} bit-identical")


if __name__ == "__main__":
    main()
