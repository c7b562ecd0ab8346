"""Forward + backward time of ArcFace at batch 512, d = 512, 10,000 classes on the CPU.

Compares arcface_viz's ArcFace with pytorch-metric-learning's ArcFaceLoss in the same process
(same data, same s and margin). PML is optional: `pip install pytorch-metric-learning`.
``--losses`` times other losses of the registry (paper defaults) in the same run, each as a ratio of the
first one's speed; ``--batch 256 --dim 2 --classes 8`` is the toy lesson's size.

    python bench/bench_losses.py [--batch 512] [--dim 512] [--classes 10000] [--repeats 20]
                                 [--losses arcface,cosface,sphereface]
"""

import argparse
import math
import statistics
import time

import torch

from arcface_viz.losses import LOSSES, make_loss


def time_fn(fn, repeats: int, warmup: int = 3) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def contenders(names: list[str], classes: int, dim: int, s: float, m: float) -> dict[str, torch.nn.Module]:
    """The losses to time, all with the same centres; with ArcFace alone, PML's ArcFaceLoss too if installed."""
    out = {}
    ours = make_loss("arcface", classes, dim, s=s, m2=m)
    for name in names:
        loss = ours if name == "arcface" else make_loss(name, classes, dim)
        if loss is not ours and loss.info.has_centres and loss.info.head != "linear":
            with torch.no_grad():  # the same centres (the first sub-centre of each class where there are several)
                loss.centre_matrix().view(classes, -1, dim)[:, 0].copy_(ours.weight)
        out[f"arcface_viz {name}"] = loss
    if names == ["arcface"]:
        try:
            from pytorch_metric_learning.losses import ArcFaceLoss

            pml = ArcFaceLoss(classes, dim, margin=math.degrees(m), scale=s)
            with torch.no_grad():  # same centres: PML stores W as (d, n)
                pml.W.copy_(ours.weight.t())
            out["pytorch-metric-learning ArcFaceLoss"] = pml
        except ImportError:
            print("pytorch-metric-learning is not installed; measuring arcface_viz only")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--classes", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--losses", default="arcface", help="comma-separated registry names; the first is the reference")
    args = ap.parse_args()
    names = [n.strip() for n in args.losses.split(",") if n.strip()]
    unknown = [n for n in names if n not in LOSSES]
    if unknown:
        raise SystemExit(f"unknown loss(es) {', '.join(unknown)}; choose from {', '.join(LOSSES)}")
    torch.manual_seed(0)
    x = torch.randn(args.batch, args.dim, requires_grad=True)
    y = torch.randint(0, args.classes, (args.batch,))
    s, m = 64.0, 0.5
    losses = contenders(names, args.classes, args.dim, s, m)

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, d {args.dim}, "
          f"{args.classes} classes, s={s}, m={m}")
    # Interleave the contenders repeat by repeat, so background load hits both alike.
    steps = {}
    for name, loss in losses.items():
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
    first = next(iter(times))
    for name, t in times.items():
        ratio = statistics.median(times[first]) / statistics.median(t)
        print(f"{name:40s} median {1000 * statistics.median(t):7.1f} ms   min {1000 * min(t):7.1f} ms   "
              f"speed {ratio:.2f}x of {first}")
    if names == ["arcface"] and len(losses) == 2:
        with torch.no_grad():
            a, b = (float(loss(x, y)) for loss in losses.values())
        print(f"loss values: arcface_viz {a:.4f}, pml {b:.4f}")


if __name__ == "__main__":
    main()
