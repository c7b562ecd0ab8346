"""Forward + backward time of ArcFace at batch 512, d = 512, 10,000 classes on the CPU.

Compares arcface_viz's ArcFace with pytorch-metric-learning's ArcFaceLoss in the same process
(same data, same s and margin). PML is optional: `pip install pytorch-metric-learning`.

    python bench/bench_losses.py [--batch 512] [--dim 512] [--classes 10000] [--repeats 20]
"""

import argparse
import math
import statistics
import time

import torch

from arcface_viz.losses import make_loss


def time_fn(fn, repeats: int, warmup: int = 3) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--classes", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    torch.manual_seed(0)
    x = torch.randn(args.batch, args.dim, requires_grad=True)
    y = torch.randint(0, args.classes, (args.batch,))
    s, m = 64.0, 0.5

    contenders = {}
    ours = make_loss("arcface", args.classes, args.dim, s=s, m2=m)
    contenders["arcface_viz arcface"] = ours
    try:
        from pytorch_metric_learning.losses import ArcFaceLoss

        pml = ArcFaceLoss(args.classes, args.dim, margin=math.degrees(m), scale=s)
        with torch.no_grad():  # same centres: PML stores W as (d, n)
            pml.W.copy_(ours.weight.t())
        contenders["pytorch-metric-learning ArcFaceLoss"] = pml
    except ImportError:
        print("pytorch-metric-learning is not installed; measuring arcface_viz only")

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, d {args.dim}, "
          f"{args.classes} classes, s={s}, m={m}")
    # Interleave the contenders repeat by repeat, so background load hits both alike.
    steps = {}
    for name, loss in contenders.items():
        def step(loss=loss):
            loss.zero_grad()
            x.grad = None
            loss(x, y).backward()

        steps[name] = step
        for _ in range(3):  # warm-up
            step()
    times = {name: [] for name in steps}
    for _ in range(args.repeats):
        for name, step in steps.items():
            times[name] += time_fn(step, 1, warmup=0)
    for name, t in times.items():
        print(f"{name:40s} median {1000 * statistics.median(t):7.1f} ms   min {1000 * min(t):7.1f} ms")
    if len(contenders) == 2:
        with torch.no_grad():
            a, b = (float(loss(x, y)) for loss in contenders.values())
        print(f"loss values: arcface_viz {a:.4f}, pml {b:.4f}")


if __name__ == "__main__":
    main()
