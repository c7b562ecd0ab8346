"""Benchmark of the MNIST lesson: test accuracy within a training-time budget, 3-D embeddings.

Goals (issue 4), on 2 CPU cores:

- Fashion-MNIST, 3-D ArcFace: at least 88% test accuracy within 120 s of training;
- digits (scikit-learn 8×8), 3-D ArcFace: at least 97% within 15 s;
- MNIST, 3-D ArcFace: at least 98.5% within 60 s (skipped, with a message, where MNIST is not available).

Softmax and Norm-Softmax are trained with the same budget for comparison.  "Training time" counts optimizer
steps only (Trainer.seconds); snapshots and the whole-test evaluation at every epoch end are extra and shown
as wall time.  Each run is what ``arcface-viz mnist --dataset D --loss L --dim 3 --seconds S`` does.  The load
average is printed before and after each run: on shared cores the numbers move with it.

    python bench/bench_mnist.py                       # every goal, every loss
    python bench/bench_mnist.py --datasets digits --losses arcface
    python bench/bench_mnist.py --scale 0.25          # quick look: a quarter of every budget
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from arcface_viz.image_training import build_image_trainer, report, train_for  # noqa: E402
from toy_data import DatasetError, available_datasets, load_dataset  # noqa: E402

GOALS = {  # data set -> (training seconds, ArcFace test accuracy to reach)
    "fashion-mnist": (120.0, 0.88),
    "digits": (15.0, 0.97),
    "mnist": (60.0, 0.985),
}
LOSSES = ("arcface", "softmax", "norm_softmax")


def load() -> float:
    return os.getloadavg()[0]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default=",".join(GOALS), help="comma list of " + ", ".join(GOALS))
    ap.add_argument("--losses", default=",".join(LOSSES), help="comma list of losses (default: %(default)s)")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every budget (goals apply at 1.0)")
    ap.add_argument("--data-dir", default=None, help="folder with MNIST / Fashion-MNIST IDX files")
    ap.add_argument("--dim", type=int, default=3, help="embedding dimension (default 3)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default=None, help="cpu, cuda or mps (default: the best available)")
    ap.add_argument("--json", action="store_true", help="also print one JSON line per run")
    args = ap.parse_args(argv)

    print(f"cores: {os.cpu_count()}, load average (1 min): {load():.2f}")
    statuses = available_datasets(args.data_dir)
    failed = False
    for name in [d.strip() for d in args.datasets.split(",") if d.strip()]:
        seconds, goal = GOALS[name]
        seconds *= args.scale
        if not statuses[name].available:
            print(f"\n{name}: skipped, not available on this machine ({statuses[name].message.splitlines()[0]})")
            continue
        try:
            data = load_dataset(name, args.data_dir, seed=args.seed)
        except DatasetError as exc:
            print(f"\n{name}: skipped, cannot be read: {exc}")
            continue
        print(f"\n{name}: {len(data.y_train):,} train / {len(data.y_test):,} test images, budget {seconds:g} s "
              f"of training, {args.dim}-D")
        print(f"{'loss':14s} {'test acc':>9s} {'epochs':>7s} {'train s':>8s} {'wall s':>7s} {'images/s':>9s} "
              f"{'load':>10s}  {'first epoch end ≥ goal':24s} goal")
        for loss in [x.strip() for x in args.losses.split(",") if x.strip()]:
            before = load()
            t0 = time.perf_counter()
            trainer = build_image_trainer(dataset=name, data_dir=args.data_dir, loss=loss, dim=args.dim,
                                          seed=args.seed, device=args.device, data=data)
            train_for(trainer, seconds=seconds, lr_decay="cosine", chunk_seconds=10.0)
            rep = report(trainer)
            wall = time.perf_counter() - t0
            first = next((r for r in trainer.epoch_log if r.test_acc >= goal), None)
            reached = f"epoch {first.epoch} after {first.seconds:.1f} s" if first else "—"
            verdict = ""
            if loss == "arcface" and args.scale == 1.0 and args.dim == 3:
                ok = rep["test_acc"] >= goal
                failed |= not ok
                verdict = f"{'PASS' if ok else 'FAIL'} (≥ {100 * goal:.1f}%)"
            print(f"{loss:14s} {100 * rep['test_acc']:8.2f}% {rep['epochs']:7.2f} {rep['seconds']:8.1f} "
                  f"{wall:7.1f} {rep['images_per_second']:9,.0f} {before:4.1f}→{load():4.1f}  {reached:24s} {verdict}",
                  flush=True)
            if args.json:
                keep = ("dataset", "loss", "dim", "test_acc", "epochs", "steps", "seconds", "images_per_second",
                        "W-EC", "W-Inter", "Intra", "Inter", "device", "num_threads")
                print(json.dumps({**{k: rep[k] for k in keep}, "wall_seconds": wall, "budget_seconds": seconds,
                                  "load_before": before, "load_after": load(),
                                  "epochs_log": rep["epoch_test_acc"]}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
