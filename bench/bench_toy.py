"""Toy-training benchmark (issue 3 goals): optimizer steps per second on fig3 (batch 256, MLP, ArcFace,
2-D embeddings) and the training time ArcFace and Norm-Softmax need to reach 99 % test accuracy; and the cost
of the gap readout drawn under every embedding figure (stats.gap_deg), against one frame's training steps.

    python bench/bench_toy.py [--seeds 3] [--steps 3000] [--chunk 25] [--device cpu]
    python bench/bench_toy.py --losses arcface,subcenter_arcface,adacos,magface,adaface,curricularface,\
        elasticface_arc,elasticface_cos  (one comma-separated argument)

``--losses`` instead measures the toy trainer's steps/s with each loss (lesson defaults, fig3, 2-D) against the
first one in the same run (also as the median of per-round ratios, each loss against the first's turn in the
same round, which the machine's drifting load disturbs least): rounds of ``--steps`` steps, the losses
interleaved round by round, the median per
loss and its ratio to the first (issue 14's goal: no loss after ArcFace below 0.8× ArcFace).

Times count optimizer steps only (``Trainer.seconds``), not the accuracy checks between chunks.  Other
processes on the machine slow it down: the load average is printed with the numbers.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from arcface_viz.device import describe
from arcface_viz.stats import gap_deg
from arcface_viz.training import build_toy_trainer


def steps_per_second(loss: str, steps: int, seed: int, device: str | None, repeats: int = 3) -> float:
    """Best of ``repeats`` timed runs of ``steps`` steps (after 100 warm-up steps)."""
    best = 0.0
    for _ in range(repeats):
        tr = build_toy_trainer(loss=loss, seed=seed, device=device)
        tr.advance(100)
        before = tr.seconds
        tr.advance(steps)
        best = max(best, steps / (tr.seconds - before))
    return best


def interleaved_speeds(losses: list[str], steps: int, seed: int, device: str | None,
                       rounds: int = 7) -> dict[str, list[float]]:
    """Steps per second of each loss's toy trainer over ``rounds`` rounds of ``steps`` steps, the losses taking
    turns within each round (so background load hits them alike), after 100 warm-up steps each."""
    trainers = {name: build_toy_trainer(loss=name, seed=seed, device=device) for name in losses}
    for tr in trainers.values():
        tr.advance(100)
    speeds: dict[str, list[float]] = {name: [] for name in losses}
    for _ in range(rounds):
        for name, tr in trainers.items():
            before = tr.seconds
            tr.advance(steps)
            speeds[name].append(steps / (tr.seconds - before))
    return speeds


def time_to_accuracy(loss: str, seed: int, device: str | None, target: float = 0.99, chunk: int = 25,
                     max_steps: int = 20_000) -> tuple[int | None, float | None]:
    """(steps, training seconds) until the test accuracy first reaches ``target``; (None, None) if never."""
    tr = build_toy_trainer(loss=loss, seed=seed, device=device)
    while tr.step < max_steps:
        snap = tr.advance(chunk)
        if snap.test_acc is not None and snap.test_acc >= target:
            return snap.step, snap.seconds
    return None, None


def gap_cost(device: str | None, frame_steps: int = 20, repeats: int = 50) -> tuple[float, float, int]:
    """(ms per gap_deg call on a trained snapshot's drawn sample, ms per frame of ``frame_steps`` training
    steps, sample size): medians of interleaved repeats, so both numbers see the same machine load."""
    tr = build_toy_trainer(device=device)
    snap = tr.advance(300)
    gap_ms, frame_ms = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        gap_deg(snap.embeddings, snap.labels)
        gap_ms.append(1e3 * (time.perf_counter() - t0))
        before = tr.seconds
        tr.advance(frame_steps)
        frame_ms.append(1e3 * (tr.seconds - before))
    return statistics.median(gap_ms), statistics.median(frame_ms), len(snap.labels)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=3000, help="steps per speed measurement")
    ap.add_argument("--chunk", type=int, default=25, help="steps between accuracy checks")
    ap.add_argument("--device", default=None)
    ap.add_argument("--losses", default=None, help="comma-separated losses: steps/s against the first, interleaved")
    ap.add_argument("--rounds", type=int, default=7, help="with --losses: interleaved rounds of --steps steps")
    args = ap.parse_args()
    if args.losses:
        names = [n.strip() for n in args.losses.split(",") if n.strip()]
        print(f"load average: {os.getloadavg()[0]:.2f}; fig3, 2-D, lesson defaults; {args.rounds} rounds of "
              f"{args.steps} steps, interleaved")
        speeds = interleaved_speeds(names, args.steps, 0, args.device, args.rounds)
        ref, ref_best = statistics.median(speeds[names[0]]), max(speeds[names[0]])
        for name, values in speeds.items():  # paired: each round against the reference's turn in that round
            med = statistics.median(values)
            paired = statistics.median(v / r for v, r in zip(values, speeds[names[0]], strict=True))
            print(f"{name:18s} steps/s median {med:7.0f} (min {min(values):6.0f}, max {max(values):6.0f})   "
                  f"{med / ref:.2f}x {names[0]}; paired by round {paired:.2f}x; best of rounds "
                  f"{max(values) / ref_best:.2f}x")
        print(f"load average after: {os.getloadavg()[0]:.2f}")
        return

    tr = build_toy_trainer(device=args.device)
    print(f"device: {describe(tr.device)}; training threads: {tr.num_threads or torch.get_num_threads()}; "
          f"load average: {os.getloadavg()[0]:.2f}")
    print(f"fig3: {len(tr.batches.y)} train / {len(tr.y_test)} test samples, input dim {tr.data.input_dim}, "
          f"MLP hidden {tr.config.hidden}, batch {tr.batch_size}, {tr.optimizer_name} lr {tr.lr}")
    for loss in ("arcface", "norm_softmax"):
        sps = steps_per_second(loss, args.steps, 0, args.device)
        print(f"{loss:13s} steps/s (best of 3 x {args.steps}): {sps:.0f}")
    for loss in ("arcface", "norm_softmax"):
        results = [time_to_accuracy(loss, seed, args.device, chunk=args.chunk) for seed in range(args.seeds)]
        secs = [s for _, s in results if s is not None]
        steps = [n for n, _ in results if n is not None]
        per_seed = ", ".join("never" if s is None else f"{n} steps {s:.3f} s" for n, s in results)
        median = f"{statistics.median(secs):.3f} s" if secs else "never"
        print(f"{loss:13s} to 99% test acc: median {median} (seeds 0-{args.seeds - 1}: {per_seed})"
              + (f"; median steps {statistics.median(steps):.0f}" if steps else ""))
    g, f, n = gap_cost(args.device)
    print(f"gap_deg on the drawn sample ({n} points): {g:.2f} ms per call; one frame of 20 training steps: "
          f"{f:.2f} ms (gap/frame = {g / f:.3f})")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
