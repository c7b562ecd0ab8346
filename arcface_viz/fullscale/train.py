"""Full-scale face-recognition training: ``python -m arcface_viz.train --config FILE [--resume]``.

The same command runs one process, N GPUs (``torchrun --nproc_per_node=N -m arcface_viz.train --config FILE``)
or several nodes (add ``--nnodes --node_rank --master_addr --master_port``), as insightface's arcface_torch:
DDP over NCCL on GPUs and gloo on CPUs, the class centres sharded by :class:`~.partial_fc.PartialFC`
for every cosine-head loss (a replicated head for softmax, A-Softmax and the pure triplet loss), SGD or
AdamW with linear warm-up and polynomial decay (arcface_torch's schedulers and step counts: ``lr_schedule``),
AMP (fp16 with a gradient scaler, or bf16), gradient clipping, channels_last on CUDA and seeds.

The config is :mod:`.config`'s :data:`~.config.RUN_SPEC`; data sets come from :mod:`.datasets`, verification and
the held-out embeddings from :mod:`.verification`, checkpoints from :mod:`.checkpoints`, ``metrics.jsonl`` from
:mod:`.metrics`.

Run directory (``output``), written by rank 0 unless said otherwise:

- ``config.json``: the resolved config (loss defaults, class count and absolute paths filled in);
- ``train.log``: speed, loss, lr, epoch, step, ETA and verification results, one line each;
- ``metrics.jsonl``: one JSON object per line, ``{"kind": "train", "time", "step", "epoch", "loss", "lr",
  "samples_per_sec", "eta_s"}`` every ``log_every`` steps, ``{"kind": "val", "time", "step", "target", "acc",
  "std", "threshold"}`` per verification set, ``{"kind": "done", "time", "step"}`` at the end;
- ``tensorboard/``: the same scalars, only if tensorboard is installed;
- ``checkpoints/rank_{r}.pt`` (every rank: backbone, its Partial FC shard, optimizer, scheduler, scaler,
  step, epoch, RNG states; tmp file + os.replace, the previous one kept as ``rank_{r}.prev.pt`` until all
  ranks are done) and ``checkpoints/latest.json`` ``{"step", "world_size"}`` once every rank has saved;
- ``model.pt``: the final backbone ``state_dict``;
- ``embeddings.npz``: raw embeddings and labels of a held-out sample (images never trained on), the full
  class-centre matrix ``weight`` when it fits (≤ 2 GiB), and ``embeddings_3d`` / ``weight_3d`` (PCA to 3-D,
  L2-normalised, for display); readable by :func:`arcface_viz.stats.load_embeddings_npz`.

Exit status: 0 when finished, 2 for a config or resume problem the user can fix, 1 for any other failure.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import random
import sys
import time
import traceback
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Subset

from ..losses import make_loss
from . import checkpoints
from .backbones import get_backbone
from .config import (
    ConfigError,
    TrainConfig,
    list_presets,
    load_config,
    loss_kwargs,
    resolve_config,
    resolve_val_target,
    save_config,
)
from .datasets import build_dataset, class_count, held_out_indices, to_input
from .distributed import Dist, ResumableSampler, from_rank0, setup_distributed
from .files import atomic_write_bytes
from .metrics import MetricsWriter
from .partial_fc import PartialFC, allreduce_sum_hook, supports
from .verification import VerificationSet, held_out_arrays, verify

MAX_GATHERED_WEIGHT_BYTES = 2 << 30  # embeddings.npz holds the full W only up to this size
LOG = logging.getLogger("arcface_viz.train")


def lr_factor(step: int, total_steps: int, warmup_steps: float, schedule: str = "poly_scheduler") -> float:
    """lr / base_lr of optimizer step ``step`` (0-based), as arcface_torch's schedulers (``cfg.lr_schedule``).

    ``poly_scheduler`` (its ``PolyScheduler``, until April 2023): with j = max(step − 1, 0), j / warmup during
    the warm-up, then (1 − (j − warmup) / (total − warmup))².  The one-step lag is arcface_torch's (the scheduler
    sets step 0's lr while it is built, then restarts its count), so a warm-up starts with two steps at lr 0.

    ``polynomial_lr_warmup`` (its ``PolynomialLRWarmup``, since April 2023, power 1): step 0 runs at the base lr
    (its first ``get_lr`` keeps the optimizer's lr), then step / warmup up to the warm-up's end, then
    1 − (min(step, total) − warmup) / (total − warmup).
    """
    if schedule == "polynomial_lr_warmup":
        if step == 0:
            return 1.0
        if step <= warmup_steps:
            return step / warmup_steps
        span = max(1.0, total_steps - warmup_steps)
        return max(0.0, 1.0 - (min(total_steps, step) - warmup_steps) / span)
    if schedule != "poly_scheduler":
        raise ValueError(f"unknown lr_schedule {schedule!r}")
    j = max(step - 1, 0)
    if j < warmup_steps:
        return j / warmup_steps
    span = max(1.0, total_steps - warmup_steps)
    return max(0.0, 1.0 - (j - warmup_steps) / span) ** 2


def schedule_steps(cfg: TrainConfig, num_images: int, world_size: int) -> tuple[int, int, float]:
    """(steps per epoch, total steps, warm-up steps) of the lr schedule, as arcface_torch's train_v2.py:
    ``num_image // (batch_size · world_size)`` per epoch over every image of the data set (the held-out
    sample included, so the same config gives the same steps), times ``num_epoch`` (or ``max_steps``) and
    ``warmup_epoch``."""
    per_epoch = num_images // (cfg.batch_size * world_size)
    total = per_epoch * cfg.num_epoch
    return per_epoch, min(total, cfg.max_steps) if cfg.max_steps else total, per_epoch * cfg.warmup_epoch


def build_optimizer(cfg: TrainConfig, groups: list[dict], total_steps: int, warmup_steps: float
                    ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """The optimizer of arcface_torch's train_v2.py over ``groups`` (SGD with momentum and weight decay, or AdamW
    with its defaults and weight decay) and the lr schedule of ``cfg.lr_schedule`` (:func:`lr_factor`)."""
    if cfg.optimizer == "sgd":
        opt = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    schedule = cfg.lr_schedule
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: lr_factor(i, total_steps, warmup_steps, schedule))
    return opt, sched


class _Replicated(nn.Module):
    """Backbone + a loss head replicated on every rank (heads Partial FC cannot shard)."""

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(images), labels)


def _setup_logging(out: Path | None) -> None:
    LOG.handlers.clear()
    LOG.setLevel(logging.INFO if out is not None else logging.WARNING)
    LOG.propagate = False
    fmt = logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S")
    stream = logging.StreamHandler(sys.stdout)
    stream.setFormatter(fmt)
    LOG.addHandler(stream)
    if out is not None:
        fh = logging.FileHandler(out / "train.log", encoding="utf-8")
        fh.setFormatter(fmt)
        LOG.addHandler(fh)


def _fmt_time(seconds: float) -> str:
    seconds = int(max(0.0, seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


# ----------------------------------------------------------------------------------------------- trainer


class FaceTrainer:
    """One full-scale training run of ``cfg`` on this process; :meth:`run` trains to the end and writes the
    outputs.  (The lessons' small trainer is :class:`arcface_viz.training.Trainer`.)"""

    def __init__(self, cfg: TrainConfig, env: Dist, resume: bool = False) -> None:
        self.cfg, self.env = cfg, env
        self.out = Path(cfg.output).expanduser().resolve()
        self.ckpt_dir = self.out / "checkpoints"
        self.cuda = env.device.type == "cuda"
        self.channels_last = cfg.channels_last and self.cuda
        self.amp_dtype = {"none": None, "fp16": torch.float16, "bf16": torch.bfloat16}[cfg.amp]
        self._build_data()
        self._build_model()
        self._build_optimizer()
        torch.manual_seed(cfg.seed + env.rank)  # dropout, flips and sampling differ between ranks
        np.random.seed((cfg.seed + env.rank) % 2**32)
        random.seed(cfg.seed + env.rank)

        self.step = 0
        self.resume_step = None
        if resume:
            self._resume()
        self.val_sets: list[VerificationSet] = []
        self.metrics: MetricsWriter | None = None
        if env.main:
            self.val_sets = [VerificationSet(resolve_val_target(t, cfg.data.root).stem,
                                             resolve_val_target(t, cfg.data.root)) for t in cfg.val_targets]
            self.metrics = MetricsWriter(self.out, self.resume_step)
        self.best: dict[str, float] = {}

    def _build_data(self) -> None:
        """The training set without the held-out sample (every rank excludes the same images), sampler, loader."""
        cfg, env = self.cfg, self.env
        train_ds = build_dataset(cfg, flip=cfg.flip)
        self.num_classes = class_count(cfg, train_ds)
        self.held_out = held_out_indices(train_ds, cfg.embeddings_sample, cfg.seed)
        keep = np.setdiff1d(np.arange(len(train_ds)), self.held_out)
        self.train_set = Subset(train_ds, keep) if self.held_out.size else train_ds  # an array: no 5M-int list
        self.sampler = ResumableSampler(self.train_set, num_replicas=env.world_size, rank=env.rank, shuffle=True,
                                        seed=cfg.seed, drop_last=True)
        self.steps_per_epoch = len(self.sampler) // cfg.batch_size  # one pass of the loader
        if self.steps_per_epoch < 1:
            raise ConfigError(f"{len(self.train_set)} training images cannot fill one step of {cfg.batch_size} × "
                              f"{env.world_size} processes: lower batch_size or add data")
        self.loader = DataLoader(self.train_set, batch_size=cfg.batch_size, sampler=self.sampler,
                                 num_workers=cfg.num_workers, pin_memory=cfg.pin_memory and self.cuda,
                                 drop_last=True, persistent_workers=cfg.num_workers > 0)
        num_images = len(train_ds) if cfg.data.format == "synthetic" or not cfg.data.num_images else \
            cfg.data.num_images  # arcface_torch's num_image
        _, self.total_steps, self.warmup_steps = schedule_steps(cfg, num_images, env.world_size)
        if self.total_steps < 1:
            raise ConfigError(f"{num_images} images cannot fill one step of {cfg.batch_size} × {env.world_size} "
                              "processes: lower batch_size or add data")

    def _build_model(self) -> None:
        """The same backbone on every rank (DDP also broadcasts rank 0's) and the loss head: Partial FC for the
        cosine-head losses (each rank holds a shard of the class centres), else a replicated head."""
        cfg, env, dev = self.cfg, self.env, self.env.device
        torch.manual_seed(cfg.seed)
        self.backbone = get_backbone(cfg.network, cfg.embedding_size, cfg.dropout, amp_dtype=self.amp_dtype).to(dev)
        if self.channels_last:
            self.backbone = self.backbone.to(memory_format=torch.channels_last)
        params = loss_kwargs(cfg)
        self.sharded = supports(cfg.loss)
        device_ids = [env.local_rank] if self.cuda else None
        if self.sharded:
            self.head: nn.Module = PartialFC(cfg.loss, self.num_classes, cfg.embedding_size, cfg.sample_rate,
                                             seed=cfg.seed, amp_dtype=self.amp_dtype if self.cuda else None,
                                             **params).to(dev)
            self.model: nn.Module = self.backbone
            if env.on:
                self.model = nn.parallel.DistributedDataParallel(self.backbone, device_ids=device_ids,
                                                                 broadcast_buffers=False, bucket_cap_mb=16)
                self.model.register_comm_hook(None, allreduce_sum_hook)  # each rank holds a share of the sum
        else:
            self.head = make_loss(cfg.loss, self.num_classes, cfg.embedding_size, **params).to(dev)
            self.model = _Replicated(self.backbone, self.head)
            if env.on:
                self.model = nn.parallel.DistributedDataParallel(self.model, device_ids=device_ids)

    def _build_optimizer(self) -> None:
        """SGD or AdamW over backbone and head, the warm-up + polynomial schedule (:func:`build_optimizer`) and
        the fp16 gradient scaler."""
        cfg = self.cfg
        groups = [{"params": [p for p in self.backbone.parameters() if p.requires_grad]},
                  {"params": [p for p in self.head.parameters() if p.requires_grad]}]
        groups = [g for g in groups if g["params"]]
        self.opt, self.sched = build_optimizer(cfg, groups, self.total_steps, self.warmup_steps)
        self.scaler = torch.amp.GradScaler(self.env.device.type, growth_interval=100, enabled=cfg.amp == "fp16")
        # a step the scaler skips (inf gradients) still advances the schedule, as in insightface
        warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step()` before")

    # --- checkpoints ----------------------------------------------------------------------------

    def _resume(self) -> None:
        latest = from_rank0(self.env, checkpoints.read_latest(self.out) if self.env.main else None)
        if latest is None:
            if self.env.main:
                LOG.info("--resume: no checkpoint in %s yet, starting from step 0", self.ckpt_dir)
            return
        if int(latest.get("world_size", -1)) != self.env.world_size:
            raise ConfigError(f"the checkpoint at step {latest.get('step')} was written by {latest.get('world_size')} "
                              f"processes but this run has {self.env.world_size}: resume with the same total number "
                              "of processes (nnodes × nproc_per_node), since each holds its own Partial FC shard")
        step = int(latest["step"])
        state = checkpoints.load_rank_checkpoint(self.ckpt_dir, self.env.rank, step)
        self._check_resumable(state)
        self.backbone.load_state_dict(state["backbone"])
        self.head.load_state_dict(state["head"])
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        checkpoints.set_rng_state(state["rng"], self.env.device)
        self.step = self.resume_step = step
        if self.env.main:
            LOG.info("resumed from %s at step %d (epoch %d)", self.ckpt_dir, step, step // self.steps_per_epoch)

    def _check_resumable(self, state: dict) -> None:
        """The checkpoint must come from the same model and the same data (a config written by an earlier
        version has the same keys, so it resumes)."""
        saved = state.get("config", {})
        for key in ("network", "embedding_size", "loss", "batch_size"):
            if key in saved and saved[key] != getattr(self.cfg, key):
                raise ConfigError(f"cannot resume: the checkpoint was trained with {key}={saved[key]!r}, the config "
                                  f"now says {getattr(self.cfg, key)!r}")
        if state.get("num_classes") != self.num_classes or state.get("steps_per_epoch") != self.steps_per_epoch:
            raise ConfigError(f"cannot resume: the data changed (classes {state.get('num_classes')} -> "
                              f"{self.num_classes}, steps per epoch {state.get('steps_per_epoch')} -> "
                              f"{self.steps_per_epoch})")

    def save_checkpoint(self) -> None:
        """Every rank writes its full state; rank 0 then points latest.json at it (collective)."""
        state = {
            "step": self.step, "epoch": self.step // self.steps_per_epoch, "world_size": self.env.world_size,
            "rank": self.env.rank, "num_classes": self.num_classes, "steps_per_epoch": self.steps_per_epoch,
            "backbone": self.backbone.state_dict(), "head": self.head.state_dict(),
            "optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict(),
            "scaler": self.scaler.state_dict(), "rng": checkpoints.rng_state(self.env.device),
            "config": self.cfg.to_dict(),
        }
        checkpoints.save_rank(self.ckpt_dir, self.env.rank, state)
        self.env.barrier()
        if self.env.main:
            checkpoints.commit(self.ckpt_dir, self.step, self.env.world_size)
            LOG.info("checkpoint step %d -> %s", self.step, self.ckpt_dir)
        self.env.barrier()
        checkpoints.drop_previous(self.ckpt_dir, self.env.rank)

    # --- one step -------------------------------------------------------------------------------

    def _train_step(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        dev = self.env.device
        x = to_input(images, dev, self.channels_last)
        y = labels.to(dev, non_blocking=True)
        if self.sharded:
            loss = self.head(self.model(x), y)
        else:
            loss = self.model(x, y)
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.scaler.is_enabled() or self.cfg.grad_clip > 0:
            self.scaler.unscale_(self.opt)
        if self.scaler.is_enabled() and self.env.on:
            self._agree_on_overflow()
        if self.cfg.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.backbone.parameters(), self.cfg.grad_clip)
        self.scaler.step(self.opt)
        self.scaler.update()
        self.sched.step()
        return loss.detach()

    def _agree_on_overflow(self) -> None:
        """An inf in one rank's Partial FC shard must make every rank skip the step (or backbones drift)."""
        state = self.scaler._per_optimizer_states.get(id(self.opt), {})  # noqa: SLF001 - no public API for this
        found = state.get("found_inf_per_device", {})
        if not found:
            return
        flag = torch.stack([t.to(self.env.device).float() for t in found.values()]).max()
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        for t in found.values():
            t.copy_(flag.to(t.device))

    # --- logging and verification ---------------------------------------------------------------

    def _log_train(self, loss_sum: torch.Tensor, n: int, seconds: float) -> None:
        loss = loss_sum / max(n, 1)
        if not torch.isfinite(loss):  # checked here, not every step: no GPU sync per step
            raise FloatingPointError(f"loss is {float(loss)} around step {self.step}: lower lr, check the data, or "
                                     "use amp 'bf16' / 'none' instead of 'fp16'")
        if self.env.on and not self.sharded:  # a replicated head's loss is the local batch's
            loss = loss.clone()
            dist.all_reduce(loss)
            loss /= self.env.world_size
        if not self.env.main:
            return
        loss_v = float(loss)
        speed = n * self.cfg.batch_size * self.env.world_size / max(seconds, 1e-9)
        eta = (self.total_steps - self.step) * seconds / max(n, 1)
        lr = self.opt.param_groups[0]["lr"]
        epoch = (self.step - 1) // self.steps_per_epoch
        LOG.info("step %d/%d  epoch %d  loss %.4f  lr %.6f  speed %.1f samples/s  eta %s", self.step,
                 self.total_steps, epoch, loss_v, lr, speed, _fmt_time(eta))
        self.metrics.write("train", self.step, epoch=epoch, loss=loss_v, lr=lr, samples_per_sec=speed, eta_s=eta)

    def _verify(self) -> None:
        if not self.env.main:
            return
        for v in self.val_sets:
            acc, std, thr = verify(self.backbone, v, self.env.device, max(2, self.cfg.batch_size), self.channels_last)
            self.best[v.name] = max(self.best.get(v.name, 0.0), acc)
            LOG.info("[%s][%d] accuracy-flip %.5f +- %.5f  threshold %.2f  highest %.5f", v.name, self.step, acc, std,
                     thr, self.best[v.name])
            self.metrics.write("val", self.step, target=v.name, acc=acc, std=std, threshold=thr)

    # --- the loop -------------------------------------------------------------------------------

    def run(self) -> None:
        cfg, env = self.cfg, self.env
        if env.main:
            LOG.info("training %s + %s on %d process(es) (%s), %d classes, %d images (%d held out), %d steps/epoch, "
                     "%d steps, global batch %d", cfg.network, cfg.loss, env.world_size, env.device, self.num_classes,
                     len(self.train_set), self.held_out.size, self.steps_per_epoch, self.total_steps,
                     cfg.batch_size * env.world_size)
        last_val = last_ckpt = self.step
        loss_sum, n_logged = torch.zeros((), device=env.device), 0
        window_start, excluded = time.perf_counter(), 0.0
        self.model.train()
        while self.step < self.total_steps:
            epoch = self.step // self.steps_per_epoch
            self.sampler.set_epoch(epoch)
            self.sampler.start = (self.step % self.steps_per_epoch) * cfg.batch_size
            for images, labels in self.loader:
                loss = self._train_step(images, labels)
                self.step += 1
                loss_sum += loss
                n_logged += 1
                if self.step % cfg.log_every == 0 or self.step == self.total_steps:
                    self._log_train(loss_sum, n_logged, time.perf_counter() - window_start - excluded)
                    loss_sum, n_logged = torch.zeros((), device=env.device), 0
                    window_start, excluded = time.perf_counter(), 0.0
                t0 = time.perf_counter()
                if self.step % cfg.val_every == 0:
                    self._verify()
                    last_val = self.step
                if self.step % cfg.checkpoint_every == 0:
                    self.save_checkpoint()
                    last_ckpt = self.step
                excluded += time.perf_counter() - t0
                if self.step >= self.total_steps:
                    break
            self.sampler.start = 0
        if last_val != self.step:
            self._verify()
        if last_ckpt != self.step or not (self.ckpt_dir / "latest.json").is_file():
            self.save_checkpoint()
        self._finish()

    def _finish(self) -> None:
        weight = self._full_weight()
        if self.env.main:
            buf = io.BytesIO()
            torch.save(self.backbone.state_dict(), buf)
            atomic_write_bytes(self.out / "model.pt", buf.getvalue())
            self._write_embeddings(weight)
            self.metrics.write("done", self.step)
            self.metrics.close()
            LOG.info("finished at step %d: %s", self.step, self.out)
        self.env.barrier()

    def _full_weight(self) -> np.ndarray | None:
        if self.num_classes * self.cfg.embedding_size * 4 > MAX_GATHERED_WEIGHT_BYTES:
            return None
        if self.sharded:
            w = self.head.gather_weight(dst=0)
        else:
            w = self.head.weight.detach()
        return None if w is None else w.float().cpu().numpy()

    def _write_embeddings(self, weight: np.ndarray | None) -> None:
        if self.held_out.size < 2:
            LOG.info("embeddings_sample is %d: no embeddings.npz", self.held_out.size)
            return
        arrays = held_out_arrays(self.backbone, build_dataset(self.cfg, flip=False), self.held_out, weight,
                                 self.env.device, max(2, self.cfg.batch_size), self.channels_last)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        atomic_write_bytes(self.out / "embeddings.npz", buf.getvalue())
        LOG.info("embeddings.npz: %d held-out embeddings%s", arrays["embeddings"].shape[0],
                 f", weight {weight.shape}" if weight is not None else " (weight too large to gather)")


# -------------------------------------------------------------------------------------------------- main


def train(cfg: TrainConfig, resume: bool = False) -> None:
    """Train ``cfg`` on this process (under torchrun: this rank); raises on failure."""
    env = setup_distributed()
    try:
        cfg = resolve_config(cfg)
        out = Path(cfg.output)
        problem = None
        if env.main:
            out.mkdir(parents=True, exist_ok=True)
            if not resume and checkpoints.read_latest(out) is not None:
                problem = (f"{out} already holds a run with checkpoints: pass --resume to continue it, or choose "
                           "another output folder")
        problem = from_rank0(env, problem)
        if problem:
            raise ConfigError(problem)
        _setup_logging(out if env.main else None)
        if env.main:
            save_config(cfg, out / "config.json")
            LOG.info("config: %s", json.dumps(cfg.to_dict()))
        if env.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        FaceTrainer(cfg, env, resume=resume).run()
    finally:
        if env.on and dist.is_initialized():
            dist.destroy_process_group()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m arcface_viz.train", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help=f"JSON config file or preset ({', '.join(list_presets())})")
    parser.add_argument("--resume", action="store_true", help="continue from checkpoints/latest.json of the output")
    parser.add_argument("--check", action="store_true", help="validate the config (and its data paths) and exit")
    args = parser.parse_args(argv)
    rank = int(os.environ.get("RANK", "0"))
    try:
        cfg = load_config(args.config, check_paths=True)
    except ConfigError as exc:
        print(f"arcface_viz.train: error: {exc}", file=sys.stderr)
        return 2
    if args.check:
        print(f"{args.config}: OK")
        return 0
    try:
        train(cfg, resume=args.resume)
    except ConfigError as exc:
        _report(f"arcface_viz.train: error: {exc}", rank)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - the message goes to train.log and stderr, then exit 1
        _report(f"arcface_viz.train: rank {rank} failed: {type(exc).__name__}: {exc}\n{traceback.format_exc()}", rank)
        return 1
    return 0


def _report(message: str, rank: int) -> None:
    print(message, file=sys.stderr, flush=True)
    for h in LOG.handlers:  # train.log too
        if isinstance(h, logging.FileHandler):
            h.emit(logging.LogRecord(LOG.name, logging.ERROR, __file__, 0, message, None, None))


if __name__ == "__main__":
    sys.exit(main())
