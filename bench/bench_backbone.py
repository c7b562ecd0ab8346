"""Training throughput (samples/s) of a face backbone on synthetic 112×112 data, on the CPU (or any device).

One step = forward + ArcFace with Partial FC (one process) + backward + SGD, the trainer's step, timed by
``bench/gpu_check.py``'s ``time_training`` (which measures r50/r100 on a GPU against the GEMM roofline).

    python bench/bench_backbone.py [--network iresnet18] [--batch 32] [--steps 5] [--classes 1000]
                                   [--amp none|bf16|fp16] [--sample-rate 1.0] [--device cpu] [--threads N]
"""

import argparse
import math

import torch
from gpu_check import GOAL_SAMPLES_PER_S, Check, backbone_train_flops, head_train_flops, time_training

from arcface_viz.fullscale.backbones import count_parameters, get_backbone


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--network", default="iresnet18")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=5, help="timed steps (after one warm-up step)")
    ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--amp", default="none", choices=("none", "bf16", "fp16"))
    ap.add_argument("--sample-rate", type=float, default=1.0, help="Partial FC sample rate")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    ck = Check(dry_run=False, device=torch.device(args.device), budget_s=math.inf)
    n_params = count_parameters(get_backbone(args.network))
    print(f"torch {torch.__version__}, {args.device}, {torch.get_num_threads()} CPU threads; {args.network} "
          f"({n_params / 1e6:.2f}M parameters), batch {args.batch}, 112×112, ArcFace over {args.classes} classes "
          f"(Partial FC {args.sample_rate:g}), amp {args.amp}, SGD")
    r = time_training(ck, args.network, args.batch, args.amp, args.sample_rate, args.classes, warmup=1,
                      min_steps=args.steps, min_seconds=0.0)
    flops = backbone_train_flops(args.network, ck.device) + head_train_flops(args.classes, args.sample_rate)
    print(f"{r['samples_per_s']:.1f} samples/s ({r['steps']} steps in {r['seconds']:.2f} s); "
          f"{flops / 1e9:.1f} GFLOPs per sample -> {flops * r['samples_per_s'] / 1e12:.3f} TFLOP/s")
    print(f"\nOn a GPU: python bench/gpu_check.py --json-out gpu.json  (r50/r100, fp16/bf16, Partial FC 0.2/1.0, "
          f"against the GEMM roofline; goal ≥ {GOAL_SAMPLES_PER_S} samples/s per GPU for r50 fp16)")


if __name__ == "__main__":
    main()
