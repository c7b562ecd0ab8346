"""One prepared check of the backend on a GPU (issue 16): everything a short GPU loan should tell us, in one go.

    python bench/gpu_check.py --json-out gpu.json     # one GPU, within 8 minutes
    python bench/gpu_check.py --dry-run               # every section on the CPU at toy size (tests/ runs it)
    python bench/gpu_check.py --only throughput,tests # a subset, e.g. to rerun what failed

Sections, each in its own try/except (a failure is recorded in the table and the JSON, then the next runs):

1. environment: device, driver, torch, CUDA, cuDNN and NCCL versions;
2. roofline: dense bf16 and fp16 GEMM TFLOP/s (large square matmuls), the reference for what follows;
3. throughput: iresnet50 and iresnet100 training samples/s on synthetic 112×112 data (batch 128 and 256,
   fp16 with the gradient scaler and bf16, channels_last, ArcFace with Partial FC over 100k classes at
   sample rate 0.2 and 1.0), and the fraction of the GEMM roofline it reaches: model FLOPs per sample
   (counted with torch.utils.flop_counter: backbone forward + backward, plus the head's 6·d·C_sampled) ×
   samples/s ÷ the roofline of the same dtype;
4. torchrun: a 1-GPU ``torchrun`` run of the ``tiny_cpu`` preset on a generated RecordIO set with verification
   on a generated ``.bin``, then resumed once from its checkpoint: both must finish, the loss must fall and
   metrics.jsonl must hold every step, every verification and one ``done`` line;
5. lessons: the toy and MNIST lessons' trainers, steps/s and images/s on CUDA and on the CPU;
6. tests: ``pytest -m cuda`` over the test files that use the marker (the dry run sets
   ARCFACE_VIZ_CUDA_TESTS_ON_CPU=1 so they run on the CPU).

Goals on any NVIDIA GPU, reported PASS / MISS (not fatal): iresnet50 fp16 training at ≥ 30 % of the measured
fp16 GEMM roofline, and ≥ 740 samples/s per GPU (insightface: about 5,900 samples/s on 8 GPUs, r50, Partial
FC 0.2).  Exit status: 0 when every section ran and every check held, 1 otherwise, 2 for a usage error.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's arcface_viz, also when run as a plain script

GOAL_ROOFLINE_FRACTION = 0.30
GOAL_SAMPLES_PER_S = 740  # insightface, r50, Partial FC 0.2: about 5,900 samples/s on 8 GPUs
GPU_GOAL_S, GPU_BUDGET_S = 480.0, 460.0  # the whole check within 8 minutes on one GPU
DRY_RUN_GOAL_S, DRY_RUN_BUDGET_S = 120.0, 240.0  # a loaded CI machine may take longer than the goal: not cut short
CLASSES = 100_000
EMBEDDING = 512


@dataclass
class Row:
    section: str
    item: str
    value: str
    ref: str = ""
    status: str = "ok"  # ok | FAIL (a check failed) | PASS / MISS (a goal) | ERROR | skipped | info


@dataclass
class Check:
    """What the sections share: the device, the size (GPU or dry run), the clock and the results."""

    dry_run: bool
    device: torch.device
    budget_s: float
    t0: float = field(default_factory=time.perf_counter)
    rows: list[Row] = field(default_factory=list)
    roofline: dict[str, float] = field(default_factory=dict)  # dtype name -> TFLOP/s
    section_end: float = math.inf

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def left(self) -> float:
        """Seconds left for the current section."""
        return self.section_end - time.perf_counter()

    def add(self, section: str, item: str, value: Any, ref: str = "", status: str = "ok") -> Row:
        row = Row(section, item, value if isinstance(value, str) else _fmt(value), ref, status)
        self.rows.append(row)
        return row

    def check(self, section: str, item: str, ok: bool, value: Any, ref: str = "") -> bool:
        self.add(section, item, value, ref, "ok" if ok else "FAIL")
        return ok

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:,.3g}" if abs(v) < 100 else f"{v:,.0f}"
    return str(v)


# ------------------------------------------------------------------------------------------- 1. environment


def section_environment(ck: Check) -> dict[str, Any]:
    info: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                            "cuda_runtime": torch.version.cuda, "cpu_count": os.cpu_count(),
                            "torch_threads": torch.get_num_threads()}
    if ck.cuda:
        props = torch.cuda.get_device_properties(ck.device)
        info.update(device=props.name, capability=f"{props.major}.{props.minor}",
                    memory_gib=round(props.total_memory / 2**30, 1), gpu_count=torch.cuda.device_count(),
                    cudnn=torch.backends.cudnn.version(), driver=_nvidia_driver(), nccl=_nccl_version())
    else:
        info.update(device=f"CPU ({platform.processor() or platform.machine()})", driver=None)
    for key in ("device", "capability", "memory_gib", "gpu_count", "driver", "torch", "cuda_runtime", "cudnn",
                "nccl", "python", "cpu_count", "torch_threads"):
        if key in info:
            ck.add("environment", key, str(info[key]), status="info")
    return info


def _nccl_version() -> str | None:
    try:
        v = torch.cuda.nccl.version()  # a tuple in torch 2, an int (e.g. 2708) before
    except Exception:  # noqa: BLE001 - a build without NCCL
        return None
    return ".".join(map(str, v)) if isinstance(v, tuple) else str(v)


def _nvidia_driver() -> str | None:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None
    except (OSError, subprocess.SubprocessError):
        return None


# --------------------------------------------------------------------------------------------- 2. roofline


def gemm_tflops(n: int, dtype: torch.dtype, ck: Check, reps: int) -> float:
    """Dense (n × n) @ (n × n) in ``dtype``: 2n³ FLOPs per product, best of 3 timed batches of ``reps``."""
    a = torch.randn(n, n, device=ck.device).to(dtype)
    b = torch.randn(n, n, device=ck.device).to(dtype)
    c = torch.empty(n, n, device=ck.device, dtype=dtype)
    for _ in range(2):
        torch.mm(a, b, out=c)
    ck.sync()
    best = math.inf
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(reps):
            torch.mm(a, b, out=c)
        ck.sync()
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 * reps / best / 1e12


def section_roofline(ck: Check) -> dict[str, Any]:
    sizes = {128: 3, 256: 3} if ck.dry_run else {4096: 100, 8192: 20, 16384: 4}
    out: dict[str, Any] = {}
    for name, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
        per_size = {n: gemm_tflops(n, dtype, ck, reps) for n, reps in sizes.items()}
        ck.roofline[name] = max(per_size.values())
        out[name] = {"tflops": ck.roofline[name], "per_size": per_size}
        detail = ", ".join(f"{n}: {v:.4g}" for n, v in per_size.items())
        ck.add("roofline", f"{name} GEMM TFLOP/s (max over n)", ck.roofline[name], f"n = {detail}")
    if ck.cuda:
        torch.cuda.empty_cache()
    return out


# ------------------------------------------------------------------------------------------- 3. throughput


def backbone_train_flops(network: str, device: torch.device) -> float:
    """FLOPs of one sample's forward + backward through ``network`` (torch.utils.flop_counter, batch 2)."""
    from torch.utils.flop_counter import FlopCounterMode

    from arcface_viz.fullscale.backbones import get_backbone

    model = get_backbone(network, EMBEDDING).to(device).train()
    x = torch.randn(2, 3, 112, 112, device=device)
    counter = FlopCounterMode(display=False)
    with counter:
        model(x).sum().backward()
    del model
    return counter.get_total_flops() / 2


def head_train_flops(num_classes: int, sample_rate: float, d: int = EMBEDDING) -> float:
    """Per sample: cos = x̂·Ŵᵀ over the sampled centres (2·d·C_s), and its two gradient products (4·d·C_s)."""
    return 6 * d * int(sample_rate * num_classes)


def time_training(ck: Check, network: str, batch: int, amp: str, sample_rate: float, num_classes: int,
                  warmup: int, min_steps: int, min_seconds: float) -> dict[str, Any]:
    """samples/s of the trainer's step (Partial FC ArcFace, SGD, fp16 scaler or bf16, clip 5, channels_last)
    on one fixed synthetic batch, as insightface's speed test; the steps run in chunks until ``min_steps``
    and ``min_seconds`` are both reached (or the section's time is nearly out)."""
    from arcface_viz.fullscale.backbones import get_backbone
    from arcface_viz.fullscale.partial_fc import PartialFC

    dev = ck.device
    # amp "none": float32; the CPU has no fast fp16 convolutions, so there fp16 runs its *path* (the scaler on)
    # with bf16 numbers
    dtype = None if amp == "none" else torch.bfloat16 if amp == "bf16" or not ck.cuda else torch.float16
    torch.manual_seed(0)
    backbone = get_backbone(network, EMBEDDING, amp_dtype=dtype).to(dev).to(memory_format=torch.channels_last)
    head = PartialFC("arcface", num_classes, EMBEDDING, sample_rate, seed=0, amp_dtype=dtype, s=64.0,
                     m2=0.5).to(dev)
    opt = torch.optim.SGD([{"params": [p for p in backbone.parameters() if p.requires_grad]},
                           {"params": list(head.parameters())}], lr=0.1, momentum=0.9, weight_decay=5e-4)
    scaler = torch.amp.GradScaler(dev.type, growth_interval=100, enabled=amp == "fp16")
    x = (torch.rand(batch, 3, 112, 112, device=dev) * 2 - 1).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, num_classes, (batch,), device=dev)

    def step() -> torch.Tensor:
        loss = head(backbone(x), y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(backbone.parameters(), 5.0)
        scaler.step(opt)
        scaler.update()
        return loss.detach()

    if ck.cuda:
        torch.cuda.reset_peak_memory_stats(dev)
    for _ in range(warmup):
        loss = step()
    ck.sync()
    steps, t = 0, time.perf_counter()
    chunk = 1 if ck.dry_run else min(5, max(1, min_steps))
    while True:
        for _ in range(chunk):
            loss = step()
        ck.sync()
        steps += chunk
        elapsed = time.perf_counter() - t
        if steps >= min_steps and elapsed >= min_seconds or ck.left() < 3 * elapsed / steps * chunk + 5:
            break
    out = {"samples_per_s": batch * steps / elapsed, "steps": steps, "seconds": elapsed, "loss": float(loss),
           "amp_dtype": str(dtype or torch.float32).replace("torch.", "")}
    if ck.cuda:
        out["peak_memory_gib"] = torch.cuda.max_memory_allocated(dev) / 2**30
    return out


def section_throughput(ck: Check) -> dict[str, Any]:
    if ck.dry_run:
        nets, batches, combos, classes = ("mobilefacenet",), (2,), (("fp16", 0.2), ("bf16", 1.0)), 1000
        warmup, min_steps, min_s = 1, 2, 0.0
    else:
        nets, batches, classes = ("iresnet50", "iresnet100"), (128, 256), CLASSES
        combos = tuple((amp, r) for amp in ("fp16", "bf16") for r in (0.2, 1.0))
        warmup, min_steps, min_s = 6, 10, 2.0
    torch.backends.cudnn.benchmark = True  # as the trainer
    results: list[dict[str, Any]] = []
    for net in nets:
        flops = backbone_train_flops(net, ck.device)
        ck.add("throughput", f"{net} training GFLOPs/sample", flops / 1e9, "forward + backward, flop_counter",
               "info")
        for batch in batches:
            for amp, rate in combos:
                label = f"{net} b{batch} {amp} pfc{rate:g}"
                if ck.left() < 15:
                    ck.add("throughput", label, "not run", "section time used up", "skipped")
                    continue
                if ck.cuda:  # what the last configuration (or its exception) held goes back first
                    gc.collect()
                    torch.cuda.empty_cache()
                try:
                    r = time_training(ck, net, batch, amp, rate, classes, warmup, min_steps, min_s)
                except Exception as exc:  # noqa: BLE001 - one configuration (e.g. out of memory) must not end the rest
                    ck.add("throughput", label, f"{type(exc).__name__}: {exc}"[:160], status="ERROR")
                    results.append({"network": net, "batch": batch, "amp": amp, "sample_rate": rate,
                                    "error": f"{type(exc).__name__}: {exc}"})
                    continue
                model_flops = flops + head_train_flops(classes, rate)
                roof = ck.roofline.get(amp)
                frac = model_flops * r["samples_per_s"] / (roof * 1e12) if roof else None
                r.update(network=net, batch=batch, amp=amp, sample_rate=rate, flops_per_sample=model_flops,
                         roofline_fraction=frac)
                results.append(r)
                ref = (f"{100 * frac:.1f} % of {amp} roofline" if frac is not None else "no roofline") + \
                      (f", {r['peak_memory_gib']:.1f} GiB" if "peak_memory_gib" in r else "") + \
                      ("" if ck.cuda or amp == "bf16" else " (fp16 path, bf16 numbers on CPU)")
                ok = math.isfinite(r["loss"])
                ck.add("throughput", f"{label} samples/s", r["samples_per_s"], ref, "ok" if ok else "FAIL")
    goals = _throughput_goals(ck, results)
    return {"results": results, "goals": goals}


def _throughput_goals(ck: Check, results: list[dict[str, Any]]) -> dict[str, Any]:
    r50 = [r for r in results if r.get("network") == "iresnet50" and r.get("amp") == "fp16" and "error" not in r]
    if not r50:
        ck.add("throughput", "goal: iresnet50 fp16", "no iresnet50 fp16 result", "", "skipped" if ck.dry_run
               else "MISS")
        return {}
    best = max(r50, key=lambda r: r["samples_per_s"])
    where = f"best: batch {best['batch']}, pfc {best['sample_rate']:g}"
    frac_ok = best["roofline_fraction"] is not None and best["roofline_fraction"] >= GOAL_ROOFLINE_FRACTION
    rate_ok = best["samples_per_s"] >= GOAL_SAMPLES_PER_S
    ck.add("throughput", "goal: r50 fp16 fraction of fp16 roofline", f"{100 * (best['roofline_fraction'] or 0):.1f} %",
           f"≥ {100 * GOAL_ROOFLINE_FRACTION:.0f} % ({where})", "PASS" if frac_ok else "MISS")
    ck.add("throughput", "goal: r50 fp16 samples/s per GPU", best["samples_per_s"],
           f"≥ {GOAL_SAMPLES_PER_S} (insightface ≈ 5,900 / 8 GPUs)", "PASS" if rate_ok else "MISS")
    return {"best": best, "roofline_fraction_ok": frac_ok, "samples_per_s_ok": rate_ok}


# --------------------------------------------------------------------------------------------- 4. torchrun


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _subprocess_env(ck: Check, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    if ck.dry_run:
        env["OMP_NUM_THREADS"] = "1"
    env.update(extra)
    return env


def _torchrun(ck: Check, config: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "1", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), "-m", "arcface_viz.train", "--config", str(config), *extra]
    return subprocess.run(cmd, cwd=REPO, env=_subprocess_env(ck), capture_output=True, text=True,
                          timeout=max(10.0, ck.left()))


def section_torchrun(ck: Check) -> dict[str, Any]:
    from toy_data.faces import make_synthetic_faces, make_verification_bin

    if ck.dry_run:
        n_id, per_id, held, batch, steps, every, pairs, workers = 4, 9, 4, 8, 5, 5, 10, 0
    else:
        n_id, per_id, held, batch, steps, every, pairs, workers = 32, 16, 32, 32, 40, 20, 40, 2
    work = Path(tempfile.mkdtemp(prefix="gpu_check_"))
    root, out = work / "faces", work / "run"
    make_synthetic_faces(root, num_identities=n_id, images_per_identity=per_id, seed=0, formats=("rec",))
    make_verification_bin(root / "check.bin", num_identities=6, pairs=pairs, seed=0)
    cfg = json.loads((REPO / "arcface_viz" / "configs" / "tiny_cpu.json").read_text(encoding="utf-8"))
    per_epoch = (n_id * per_id - held) // batch
    cfg.update(data={"format": "rec", "root": str(root)}, val_targets=[str(root / "check.bin")], val_every=every,
               checkpoint_every=every, log_every=1, batch_size=batch, max_steps=steps, flip=True,
               num_epoch=math.ceil(2 * steps / per_epoch) + 1, embeddings_sample=held, output=str(out),
               amp="fp16" if ck.cuda else "none", channels_last=True, num_workers=workers, pin_memory=ck.cuda)
    first_cfg, second_cfg = work / "first.json", work / "resume.json"
    first_cfg.write_text(json.dumps(cfg), encoding="utf-8")
    second_cfg.write_text(json.dumps({**cfg, "max_steps": 2 * steps}), encoding="utf-8")
    data: dict[str, Any] = {"config": cfg, "work_dir": str(work)}
    label = f"{cfg['network']} {cfg['amp']}, {n_id} ids × {per_id}, batch {batch}"

    t = time.perf_counter()
    first = _torchrun(ck, first_cfg)
    data["first"] = {"returncode": first.returncode, "seconds": time.perf_counter() - t,
                     "stderr_tail": first.stderr[-2000:]}
    if not ck.check("torchrun", f"run to step {steps} ({label})", first.returncode == 0,
                    f"exit {first.returncode}" + _last_line(first), "exit 0"):
        return data
    t = time.perf_counter()
    second = _torchrun(ck, second_cfg, "--resume")
    data["resume"] = {"returncode": second.returncode, "seconds": time.perf_counter() - t,
                      "stderr_tail": second.stderr[-2000:]}
    if not ck.check("torchrun", f"--resume to step {2 * steps}", second.returncode == 0,
                    f"exit {second.returncode}" + _last_line(second), "exit 0"):
        return data

    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    train = [m for m in metrics if m["kind"] == "train"]
    val = [m for m in metrics if m["kind"] == "val"]
    done = [m for m in metrics if m["kind"] == "done"]
    want_steps = list(range(1, 2 * steps + 1))
    want_val = list(range(every, 2 * steps + 1, every))
    ck.check("torchrun", "metrics: every step once", [m["step"] for m in train] == want_steps,
             f"{len(train)} train lines", f"steps 1..{2 * steps}")
    ck.check("torchrun", "metrics: verifications", [m["step"] for m in val] == want_val,
             f"at {[m['step'] for m in val]}", f"at {want_val}")
    ck.check("torchrun", "metrics: one done line at the end", [m["step"] for m in done] == [2 * steps],
             f"{[m['step'] for m in done]}", f"[{2 * steps}]")
    losses = [m["loss"] for m in train]
    k = max(1, len(losses) // 5)
    head_loss, tail_loss = statistics.mean(losses[:k]), statistics.mean(losses[-k:])
    ck.check("torchrun", "loss falls (first vs last fifth)",
             all(map(math.isfinite, losses)) and tail_loss < head_loss, f"{head_loss:.3f} → {tail_loss:.3f}")
    log = (out / "train.log").read_text(encoding="utf-8", errors="replace")
    resumed = f"resumed from {out / 'checkpoints'} at step {steps}" in log
    ck.check("torchrun", "resumed from the checkpoint", resumed,
             f"train.log: resumed at step {steps}" if resumed else "train.log has no 'resumed from … at step'")
    speed = statistics.median(m["samples_per_sec"] for m in train[steps + 1:] or train)
    ck.add("torchrun", "trainer samples/s (resumed run, median)", speed, "data loader + JPEG decode included",
           "info")
    if val:
        ck.add("torchrun", "verification accuracy at the end", val[-1]["acc"], f"{pairs} pairs", "info")
    ck.check("torchrun", "model.pt and embeddings.npz written",
             (out / "model.pt").is_file() and (out / "embeddings.npz").is_file(),
             "both" if (out / "embeddings.npz").is_file() else "missing")
    data.update(train_losses=losses, val=val, samples_per_s=speed)
    return data


def _last_line(proc: subprocess.CompletedProcess) -> str:
    lines = [ln for ln in (proc.stderr or "").splitlines() if ln.strip()]
    return "" if proc.returncode == 0 or not lines else f": {lines[-1][:120]}"


# ---------------------------------------------------------------------------------------------- 5. lessons


def _time_trainer(trainer, warmup: int, steps: int, ck: Check, max_s: float = 15.0) -> tuple[float, float, float]:
    """(steps/s, images/s, last loss) over ``steps`` optimizer steps, or fewer when ``max_s`` of wall time or
    the section's time runs out (trainer.seconds counts the optimizer steps only)."""
    trainer.advance(warmup)
    s0, n0, t0 = trainer.seconds, trainer.step, time.perf_counter()
    chunk = max(10, steps // 5)
    snap = trainer.advance(chunk)  # at least one chunk, then as many as the time allows
    while trainer.step - n0 < steps and ck.left() > 10 and time.perf_counter() - t0 < max_s:
        snap = trainer.advance(min(steps - (trainer.step - n0), chunk))
    rate = (trainer.step - n0) / max(trainer.seconds - s0, 1e-9)
    return rate, rate * trainer.batch_size, float(snap.loss)


def section_lessons(ck: Check) -> dict[str, Any]:
    from arcface_viz.image_training import build_image_trainer
    from arcface_viz.training import build_toy_trainer
    from toy_data import available_datasets

    devices = ["cpu", "cuda"] if ck.cuda else ["cpu"]
    if ck.dry_run:
        image_set, toy_steps, image_steps = "digits", 60, 20
    else:
        status = available_datasets(None)
        image_set = next(n for n in ("mnist", "fashion-mnist", "digits") if status[n].available)
        toy_steps, image_steps = 1500, 300
    out: dict[str, Any] = {"image_dataset": image_set}
    for lesson, build, warm, steps in (
            ("toy fig3 arcface", lambda d: build_toy_trainer(loss="arcface", seed=0, device=d), 20, toy_steps),
            (f"MNIST lesson ({image_set}) arcface 3-D",
             lambda d: build_image_trainer(dataset=image_set, loss="arcface", dim=3, seed=0, device=d), 5,
             image_steps)):
        rates = {}
        for dev in devices:
            tr = build(dev)
            sps, ips, loss = _time_trainer(tr, warm, steps, ck)
            rates[dev] = sps
            out[f"{lesson} {dev}"] = {"steps_per_s": sps, "images_per_s": ips, "loss": loss,
                                       "batch_size": tr.batch_size}
            ck.add("lessons", f"{lesson} on {dev}: steps/s", sps, f"{ips:,.0f} images/s, batch {tr.batch_size}",
                   "ok" if math.isfinite(loss) else "FAIL")
        if "cuda" in rates:
            ck.add("lessons", f"{lesson}: CUDA / CPU", f"{rates['cuda'] / rates['cpu']:.2f}×", "same run", "info")
        else:
            ck.add("lessons", f"{lesson}: CUDA / CPU", "no CUDA here", "", "info")
    return out


# ------------------------------------------------------------------------------------------------ 6. tests


def cuda_test_files() -> list[Path]:
    """Test files that use the ``cuda`` marker."""
    return sorted(p for p in (REPO / "tests").rglob("test_*.py") if "mark.cuda" in p.read_text(encoding="utf-8"))


def section_tests(ck: Check) -> dict[str, Any]:
    files = cuda_test_files()
    xml_path = Path(tempfile.mkdtemp(prefix="gpu_check_tests_")) / "junit.xml"
    cmd = [sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider", f"--junitxml={xml_path}",
           *map(str, files)]
    env = _subprocess_env(ck, **({"ARCFACE_VIZ_CUDA_TESTS_ON_CPU": "1"} if ck.dry_run else {}))
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=max(10.0, ck.left()))
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    failed: list[str] = []
    if xml_path.is_file():
        root = ET.parse(xml_path).getroot()
        suite = root if root.tag == "testsuite" else root.find("testsuite")
        for key in counts:
            counts[key] = int(suite.get(key, 0)) if suite is not None else 0
        for case in root.iter("testcase"):
            if case.find("failure") is not None or case.find("error") is not None:
                failed.append(f"{case.get('classname')}::{case.get('name')}")
    deselected = re.search(r"(\d+) deselected", proc.stdout)
    passed = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    where = "on the CPU (dry run)" if ck.dry_run else "on CUDA"
    ck.check("tests", f"pytest -m cuda {where}, {len(files)} file(s)",
             proc.returncode == 0 and passed > 0 and not counts["skipped"],
             f"{passed} passed, {counts['failures'] + counts['errors']} failed, {counts['skipped']} skipped",
             f"exit {proc.returncode}; {deselected.group(1) if deselected else 0} deselected")
    for name in failed[:8]:
        ck.add("tests", "failed", name, status="FAIL")
    return {"command": " ".join(cmd[1:]), "returncode": proc.returncode, "files": [str(f.relative_to(REPO))
            for f in files], **counts, "passed": passed, "failed_tests": failed, "stdout_tail": proc.stdout[-3000:]}


# ---------------------------------------------------------------------------------------------------- main

SECTIONS: list[tuple[str, Callable[[Check], dict[str, Any]], float]] = [
    # name, function, share of the budget (a cap; unused time passes on)
    ("environment", section_environment, 0.03),
    ("roofline", section_roofline, 0.07),
    ("throughput", section_throughput, 0.40),
    ("torchrun", section_torchrun, 0.25),
    ("lessons", section_lessons, 0.12),
    ("tests", section_tests, 0.25),
]


def run(ck: Check, only: set[str] | None = None) -> dict[str, Any]:
    sections: dict[str, Any] = {}
    names = [name for name, _, _ in SECTIONS if only is None or name in only]
    for i, (name, fn, share) in enumerate(s for s in SECTIONS if s[0] in names):
        now = time.perf_counter()
        remaining = ck.t0 + ck.budget_s - now
        reserve = ck.budget_s * sum(sh for n, _, sh in SECTIONS if n in names[i + 1:])  # promised to later ones
        # its share, or more when earlier sections left time over; never past the whole budget
        ck.section_end = now + min(remaining, max(share * ck.budget_s, remaining - reserve))
        first_row = len(ck.rows)
        if ck.left() < 3:
            ck.add(name, "section", "not run: time budget used up", status="skipped")
            sections[name] = {"status": "skipped", "seconds": 0.0}
            continue
        try:
            data = fn(ck)
            statuses = {r.status for r in ck.rows[first_row:]}
            status = "error" if "ERROR" in statuses else "fail" if "FAIL" in statuses else "ok"
        except Exception as exc:  # noqa: BLE001 - record, then run the next section
            data = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
            ck.add(name, "section failed", f"{type(exc).__name__}: {exc}"[:200], status="ERROR")
            status = "error"
            if ck.cuda:
                torch.cuda.empty_cache()
        sections[name] = {"status": status, "seconds": round(time.perf_counter() - now, 2),
                          "rows": [asdict(r) for r in ck.rows[first_row:]], **data}
    return sections


def print_table(rows: list[Row]) -> None:
    heads = ("section", "item", "value", "reference / goal", "status")
    cols = [[r.section, r.item, r.value, r.ref, r.status] for r in rows]
    widths = [min(60, max(len(h), *(len(c[i]) for c in cols))) if cols else len(h) for i, h in enumerate(heads)]
    line = "  ".join(h.ljust(w) for h, w in zip(heads, widths, strict=True))
    print(line)
    print("-" * len(line))
    last = None
    for c in cols:
        if last is not None and c[0] != last:
            print()
        last = c[0]
        print("  ".join(v[:60].ljust(w) if i < 4 else v for i, (v, w) in enumerate(zip(c, widths, strict=True))))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json-out", type=Path, help="write every number and status to this JSON file")
    ap.add_argument("--dry-run", action="store_true", help="every section on the CPU at toy size (CI)")
    ap.add_argument("--budget", type=float, default=None, help="seconds for the whole check; sections share "
                    "it and a subprocess past its share is stopped (default 460 on a GPU, 240 for --dry-run)")
    ap.add_argument("--only", default=None, help="comma list of sections: " + ", ".join(n for n, _, _ in SECTIONS))
    args = ap.parse_args(argv)
    only = None
    if args.only:
        only = {s.strip() for s in args.only.split(",") if s.strip()}
        unknown = only - {n for n, _, _ in SECTIONS}
        if unknown:
            print(f"gpu_check: error: unknown section(s) {', '.join(sorted(unknown))}", file=sys.stderr)
            return 2
    if not args.dry_run and not torch.cuda.is_available():
        print("gpu_check: error: no CUDA device here; use --dry-run to run every section on the CPU",
              file=sys.stderr)
        return 2
    if args.dry_run:
        torch.set_num_threads(1)  # shared CI cores: one thread avoids oversubscription
    device = torch.device("cuda", 0) if not args.dry_run else torch.device("cpu")
    budget = args.budget if args.budget is not None else (DRY_RUN_BUDGET_S if args.dry_run else GPU_BUDGET_S)
    ck = Check(dry_run=args.dry_run, device=device, budget_s=budget)
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    sections = run(ck, only)
    wall = time.perf_counter() - ck.t0
    print_table(ck.rows)
    ok = all(s["status"] in ("ok",) for s in sections.values())
    goal = DRY_RUN_GOAL_S if args.dry_run else GPU_GOAL_S
    print(f"\n{'dry run (CPU)' if args.dry_run else 'GPU check'}: {len(sections)} section(s) in {wall:.1f} s "
          f"(goal < {goal:.0f} s, budget {budget:.0f} s); "
          + ", ".join(f"{name} {sec['status']}" for name, sec in sections.items()))
    if args.json_out:
        report = {"version": 1, "dry_run": args.dry_run, "device": str(device), "started": started,
                  "wall_s": round(wall, 2), "goal_s": goal, "budget_s": budget, "ok": ok,
                  "roofline_tflops": ck.roofline,
                  "goals": {"roofline_fraction": GOAL_ROOFLINE_FRACTION, "samples_per_s": GOAL_SAMPLES_PER_S},
                  "sections": sections}
        args.json_out.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
        print(f"wrote {args.json_out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
