"""Training throughput (samples/s) of a face backbone on synthetic 112×112 data on the CPU.

One step = forward + ArcFace (Partial FC, one process) + backward + SGD step, as in the trainer.  Prints the
median over the timed steps, then the command that measures IResNet-50 on a GPU with the real trainer and
insightface's published throughput for comparison.

    python bench/bench_backbone.py [--network iresnet18] [--batch 32] [--steps 5] [--classes 1000] [--threads N]
"""

import argparse
import statistics
import time

import torch

from arcface_viz.fullscale.backbones import count_parameters, get_backbone
from arcface_viz.fullscale.partial_fc import PartialFC

# docs/paper_reference.md §5: r50 on MS1MV3 ≈ 5,500 samples/s on 8 GPUs
INSIGHTFACE_R50_8GPU = 5500
GPU_COMMAND = ("torchrun --nproc_per_node=1 -m arcface_viz.train "
               "--config arcface_viz/configs/synthetic_r50_speed.json")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--network", default="iresnet18")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=5, help="timed steps (after one warm-up step)")
    ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    backbone = get_backbone(args.network)
    head = PartialFC("arcface", args.classes, 512)
    opt = torch.optim.SGD([*backbone.parameters(), *head.parameters()], lr=0.1, momentum=0.9, weight_decay=5e-4)
    images = torch.rand(args.batch, 3, 112, 112) * 2 - 1
    labels = torch.randint(0, args.classes, (args.batch,))

    def step() -> None:
        loss = head(backbone(images), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads; {args.network} "
          f"({count_parameters(backbone) / 1e6:.2f}M parameters), batch {args.batch}, 112×112, "
          f"ArcFace over {args.classes} classes, SGD")
    step()  # warm-up
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    print(f"CPU: {args.batch / med:.1f} samples/s (median step {med:.2f} s over {args.steps} steps, "
          f"min {min(times):.2f} s, max {max(times):.2f} s)")
    print()
    print("GPU: measure IResNet-50 (fp16, batch 128 per GPU, 100k classes, synthetic data) with the trainer:")
    print(f"    {GPU_COMMAND}")
    print("  then read samples_per_sec in runs/synthetic_r50_speed/metrics.jsonl (skip the first line: warm-up).")
    print(f"  insightface publishes ≈ {INSIGHTFACE_R50_8GPU:,} samples/s for r50 on MS1MV3 with 8 GPUs, "
          f"≈ {INSIGHTFACE_R50_8GPU / 8:,.0f} samples/s per GPU: the goal per GPU.")


if __name__ == "__main__":
    main()
