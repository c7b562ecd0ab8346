"""A/B of the toy training loop: this tree's arcface_viz against another revision's, interleaved in one process.

    python bench/ab_toy.py [--base main] [--rounds 150] [--steps 400]

The base revision's ``arcface_viz`` is copied out of git (``git archive``) as the package ``arcface_viz_base``
and imported beside this tree's, so both trainers run in the same process, on the same core, taking turns
(A B, B A, ...).  Each turn is ``--steps`` optimizer steps of the toy lesson's default run (fig3, ArcFace or
Norm-Softmax, batch 256, one thread), timed in CPU time of the training thread (steady while other processes
load the machine), without the snapshot that follows.  It prints both medians and the median of the paired
ratios this/base with its quartiles: a ratio whose quartiles straddle 1 is no measurable difference.
"""

from __future__ import annotations

import argparse
import io
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def export_base(rev: str, into: Path) -> None:
    """``arcface_viz`` at ``rev`` as the package ``into/arcface_viz_base`` (absolute imports renamed)."""
    tar = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", rev, "arcface_viz"],
                         check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(tar)) as t:
        t.extractall(into, filter="data")
    (into / "arcface_viz").rename(into / "arcface_viz_base")
    for py in (into / "arcface_viz_base").rglob("*.py"):
        py.write_text(re.sub(r"\barcface_viz\b", "arcface_viz_base", py.read_text(encoding="utf-8")),
                      encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default="main", help="git revision to compare against (default: main)")
    ap.add_argument("--rounds", type=int, default=150, help="turns per side (default: 150)")
    ap.add_argument("--steps", type=int, default=400, help="optimizer steps per turn (default: 400)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        export_base(args.base, Path(tmp))
        sys.path[:0] = [tmp, str(ROOT)]
        from arcface_viz_base.training import build_toy_trainer as build_base

        from arcface_viz.training import build_toy_trainer as build_this

        print(f"base: {sys.modules['arcface_viz_base'].__file__} ({args.base}); "
              f"this tree: {sys.modules['arcface_viz'].__file__}")
        for loss in ("arcface", "norm_softmax"):
            trainers = {"base": build_base(loss=loss, seed=0, device="cpu"),
                        "this": build_this(loss=loss, seed=0, device="cpu")}
            for t in trainers.values():
                t.advance(50)  # warm-up
            rates: dict[str, list[float]] = {"base": [], "this": []}
            for r in range(args.rounds):
                for side in ("base", "this") if r % 2 == 0 else ("this", "base"):
                    t = trainers[side]
                    with t._threads():
                        c0 = time.thread_time()
                        t._train(args.steps)
                        rates[side].append(args.steps / (time.thread_time() - c0))
            ratios = [b / a for a, b in zip(rates["base"], rates["this"], strict=True)]
            q1, _, q3 = statistics.quantiles(ratios, n=4)
            print(f"{loss:13s} base ({args.base}) {statistics.median(rates['base']):.0f} steps/s, this tree "
                  f"{statistics.median(rates['this']):.0f} steps/s (medians, CPU time); ratio this/base median "
                  f"{statistics.median(ratios):.3f}, quartiles {q1:.3f}–{q3:.3f} ({args.rounds} rounds of "
                  f"{args.steps} steps each)")


if __name__ == "__main__":
    main()
