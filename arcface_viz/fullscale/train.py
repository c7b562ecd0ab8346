"""Full-scale face-recognition training: ``python -m arcface_viz.train --config FILE [--resume]``.

The same command runs one process, N GPUs (``torchrun --nproc_per_node=N -m arcface_viz.train --config FILE``)
or several nodes (add ``--nnodes --node_rank --master_addr --master_port``), as insightface's arcface_torch:
DDP over NCCL on GPUs and gloo on CPUs, the class centres sharded by :class:`~.partial_fc.PartialFC`
for every cosine-head loss (a replicated head for softmax, A-Softmax and the pure triplet loss), SGD or
AdamW with linear warm-up and polynomial decay (power 2), AMP (fp16 with a gradient scaler, or bf16),
gradient clipping, channels_last on CUDA and seeds.

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
import dataclasses
import datetime
import io
import json
import logging
import math
import os
import random
import sys
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from ..losses import LOSSES, PARAM_NAMES, make_loss
from .backbones import ALIASES, BACKBONES, get_backbone
from .partial_fc import PartialFC, allreduce_sum_hook, supports

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"  # arcface_viz/configs: old --config paths keep working
AMP_MODES = ("none", "fp16", "bf16")
OPTIMIZERS = ("sgd", "adamw")
DATA_FORMATS = ("rec", "folder", "synthetic")
MAX_GATHERED_WEIGHT_BYTES = 2 << 30  # embeddings.npz holds the full W only up to this size
LOG = logging.getLogger("arcface_viz.train")


class ConfigError(ValueError):
    """A config or resume problem the user can fix; the message says what and where."""


# ------------------------------------------------------------------------------------------------ config


@dataclass
class DataConfig:
    """``format``: "rec" (insightface train.rec/idx/property in ``root``), "folder" (one sub-folder per
    identity) or "synthetic" (random tensors, ``num_classes`` × ``num_images``, for speed tests)."""

    format: str = "synthetic"
    root: str | None = None
    num_classes: int | None = None
    num_images: int | None = None


@dataclass
class TrainConfig:
    """One training run; field names follow insightface's arcface_torch configs where they exist.

    ``s, m1, m2, m3`` (insightface's ``margin_list`` = (m1, m2, m3)) default to the loss's paper values;
    ``loss_params`` passes the rest (easy_margin, triplet margin, A-Softmax m / lam).  ``batch_size`` is per
    process.  ``max_steps`` caps the run (the lr schedule then decays over the capped length).
    """

    network: str = "iresnet50"
    embedding_size: int = 512
    dropout: float = 0.0
    loss: str = "arcface"
    s: float | None = None
    m1: float | None = None
    m2: float | None = None
    m3: float | None = None
    loss_params: dict[str, Any] = field(default_factory=dict)
    sample_rate: float = 1.0
    amp: str = "none"
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    num_epoch: int = 20
    warmup_epoch: float = 0.0
    max_steps: int | None = None
    data: DataConfig = field(default_factory=DataConfig)
    num_workers: int = 2
    pin_memory: bool = True
    flip: bool = True
    val_targets: list[str] = field(default_factory=list)
    val_every: int = 2000
    checkpoint_every: int = 2000
    log_every: int = 50
    seed: int = 2048
    grad_clip: float = 5.0
    channels_last: bool = True
    output: str = "runs/run"
    embeddings_sample: int = 2000
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Build from a JSON object; unknown keys are an error (a typo would otherwise be ignored)."""
        if not isinstance(d, dict):
            raise ConfigError(f"a config is a JSON object, got {type(d).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown config key(s) {', '.join(unknown)}; known keys: {', '.join(sorted(known))}")
        values = dict(d)
        data = values.get("data", {})
        if isinstance(data, DataConfig):
            data = dataclasses.asdict(data)
        if not isinstance(data, dict):
            raise ConfigError(f"data must be an object {{format, root, num_classes, num_images}}, got {data!r}")
        data_known = {f.name for f in dataclasses.fields(DataConfig)}
        if set(data) - data_known:
            raise ConfigError(f"unknown data key(s) {', '.join(sorted(set(data) - data_known))}; "
                              f"known: {', '.join(sorted(data_known))}")
        values["data"] = DataConfig(**data)
        return cls(**values)


def list_presets() -> list[str]:
    """Names of the configs shipped in ``arcface_viz/configs`` (``load_config(name)`` reads one)."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.json"))


def load_config(path_or_preset: str | os.PathLike, check_paths: bool = False) -> TrainConfig:
    """Read a JSON config file, or a preset by name; raise :class:`ConfigError` if it is not valid.

    Data files are checked only with ``check_paths`` (a preset names data this machine may not have).
    """
    text = os.fspath(path_or_preset)
    path = Path(text).expanduser()
    if not path.is_file():
        if text in list_presets():
            path = CONFIG_DIR / f"{text}.json"
        else:
            raise ConfigError(f"config {text!r} is neither a file nor a preset ({', '.join(list_presets())})")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"{path}: not a readable JSON file ({exc})") from None
    try:
        cfg = TrainConfig.from_dict(raw)
    except (TypeError, ConfigError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    check_config(cfg, check_paths=check_paths, where=str(path))
    return cfg


def save_config(cfg: TrainConfig, path: str | os.PathLike) -> None:
    """Write ``cfg`` as indented JSON, atomically."""
    _atomic_write_text(Path(path), json.dumps(cfg.to_dict(), indent=2) + "\n")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def config_errors(cfg: TrainConfig, check_paths: bool = True) -> list[str]:
    """Every problem of ``cfg``, one message each (empty when it can run)."""
    e: list[str] = []

    def need(ok: bool, msg: str) -> bool:
        if not ok:
            e.append(msg)
        return ok

    need(cfg.network in BACKBONES or cfg.network in ALIASES,
         f"network {cfg.network!r} is unknown; choose one of {', '.join(BACKBONES)}")
    need(_is_int(cfg.embedding_size) and cfg.embedding_size >= 2,
         f"embedding_size must be an integer >= 2, got {cfg.embedding_size!r}")
    need(_is_num(cfg.dropout) and 0 <= cfg.dropout < 1, f"dropout must be in [0, 1), got {cfg.dropout!r}")
    if need(isinstance(cfg.loss, str) and cfg.loss in LOSSES,
            f"loss {cfg.loss!r} is unknown; choose one of {', '.join(LOSSES)}"):
        for k in ("s", "m1", "m2", "m3"):
            v = getattr(cfg, k)
            need(v is None or _is_num(v), f"{k} must be a number or null (the loss's default), got {v!r}")
        need(cfg.s is None or not _is_num(cfg.s) or cfg.s > 0, f"s must be > 0, got {cfg.s!r}")
        need(cfg.m1 is None or not _is_num(cfg.m1) or cfg.m1 > 0, f"m1 must be > 0, got {cfg.m1!r}")
        if need(isinstance(cfg.loss_params, dict), f"loss_params must be an object, got {cfg.loss_params!r}"):
            bad = sorted(set(cfg.loss_params) - (set(PARAM_NAMES) - {"s", "m1", "m2", "m3"}))
            need(not bad, f"loss_params {bad} unknown; known: easy_margin, margin, m, lam (s, m1, m2, m3 are "
                          "top-level keys)")
            if not e:
                try:
                    make_loss(cfg.loss, 2, 2, **loss_params(cfg))
                except (ValueError, TypeError) as exc:
                    e.append(f"loss parameters: {exc}")
    if need(_is_num(cfg.sample_rate) and 0 < cfg.sample_rate <= 1,
            f"sample_rate must be in (0, 1], got {cfg.sample_rate!r}"):
        need(cfg.sample_rate == 1 or cfg.loss not in LOSSES or supports(cfg.loss),
             f"sample_rate < 1 needs Partial FC, which supports the cosine-head losses only; {cfg.loss!r} "
             "trains with a replicated head (set sample_rate to 1)")
    need(cfg.amp in AMP_MODES, f"amp must be one of {', '.join(AMP_MODES)}, got {cfg.amp!r}")
    need(_is_int(cfg.batch_size) and cfg.batch_size >= 2,
         f"batch_size (per process) must be an integer >= 2 (BatchNorm needs 2 samples), got {cfg.batch_size!r}")
    need(cfg.optimizer in OPTIMIZERS, f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {cfg.optimizer!r}")
    need(_is_num(cfg.lr) and cfg.lr > 0, f"lr must be > 0, got {cfg.lr!r}")
    need(_is_num(cfg.momentum) and 0 <= cfg.momentum < 1, f"momentum must be in [0, 1), got {cfg.momentum!r}")
    need(_is_num(cfg.weight_decay) and cfg.weight_decay >= 0, f"weight_decay must be >= 0, got {cfg.weight_decay!r}")
    if need(_is_int(cfg.num_epoch) and cfg.num_epoch >= 1, f"num_epoch must be an integer >= 1, got {cfg.num_epoch!r}"):
        need(_is_num(cfg.warmup_epoch) and 0 <= cfg.warmup_epoch < cfg.num_epoch,
             f"warmup_epoch must be in [0, num_epoch), got {cfg.warmup_epoch!r}")
    need(cfg.max_steps is None or (_is_int(cfg.max_steps) and cfg.max_steps >= 1),
         f"max_steps must be null or an integer >= 1, got {cfg.max_steps!r}")
    for k in ("num_workers", "embeddings_sample", "seed"):
        v = getattr(cfg, k)
        need(_is_int(v) and v >= 0, f"{k} must be an integer >= 0, got {v!r}")
    for k in ("val_every", "checkpoint_every", "log_every"):
        v = getattr(cfg, k)
        need(_is_int(v) and v >= 1, f"{k} must be an integer >= 1 (steps), got {v!r}")
    for k in ("pin_memory", "flip", "channels_last"):
        need(isinstance(getattr(cfg, k), bool), f"{k} must be true or false, got {getattr(cfg, k)!r}")
    need(_is_num(cfg.grad_clip) and cfg.grad_clip >= 0, f"grad_clip must be >= 0 (0 = off), got {cfg.grad_clip!r}")
    need(isinstance(cfg.output, str) and cfg.output.strip() != "", "output (the run directory) must be a path")
    need(isinstance(cfg.description, str), "description must be a string")
    d = cfg.data
    if need(d.format in DATA_FORMATS, f"data.format must be one of {', '.join(DATA_FORMATS)}, got {d.format!r}"):
        need(d.num_classes is None or (_is_int(d.num_classes) and d.num_classes >= 2),
             f"data.num_classes must be null or an integer >= 2, got {d.num_classes!r}")
        if d.format == "synthetic":
            need(d.num_classes is not None, "data.num_classes is required for synthetic data")
            need(_is_int(d.num_images) and d.num_images >= 1, f"data.num_images (synthetic) must be an integer >= 1, "
                                                               f"got {d.num_images!r}")
        else:
            need(isinstance(d.root, str) and d.root != "", f"data.root (the {d.format} data folder) is required")
    if need(isinstance(cfg.val_targets, list) and all(isinstance(v, str) and v for v in cfg.val_targets),
            f"val_targets must be a list of .bin paths or names, got {cfg.val_targets!r}"):
        if cfg.val_targets and not isinstance(d.root, str) and any(not _looks_like_file(v) for v in cfg.val_targets):
            e.append("val_targets given by name (e.g. 'lfw') need data.root to find <root>/<name>.bin")
    if check_paths and not e:
        e += _path_errors(cfg)
    return e


def _looks_like_file(target: str) -> bool:
    return target.endswith(".bin") or "/" in target or os.sep in target


def resolve_val_target(target: str, root: str | None) -> Path:
    """A .bin path as given, or a name such as ``lfw`` resolved to ``<data root>/lfw.bin``."""
    if _looks_like_file(target):
        return Path(target).expanduser()
    return Path(root or ".").expanduser() / f"{target}.bin"


def _path_errors(cfg: TrainConfig) -> list[str]:
    from .recordio import DataFormatError, read_property

    e: list[str] = []
    d = cfg.data
    if d.format == "rec":
        root = Path(d.root).expanduser()
        missing = [n for n in ("train.rec", "train.idx", "property") if not (root / n).is_file()]
        if missing:
            e.append(f"data.root {root} lacks {', '.join(missing)} (an insightface RecordIO set)")
        else:
            try:
                n = read_property(root / "property")[0]
                if d.num_classes is not None and d.num_classes != n:
                    e.append(f"data.num_classes is {d.num_classes} but {root / 'property'} says {n}")
            except (DataFormatError, OSError) as exc:
                e.append(str(exc))
    elif d.format == "folder" and not Path(d.root).expanduser().is_dir():
        e.append(f"data.root {d.root} is not a folder (one sub-folder of images per identity expected)")
    for t in cfg.val_targets:
        p = resolve_val_target(t, d.root)
        if not p.is_file():
            e.append(f"verification set {t!r} not found (looked for {p})")
    out = Path(cfg.output).expanduser()
    if out.exists() and not out.is_dir():
        e.append(f"output {out} is a file, not a run directory")
    return e


def check_config(cfg: TrainConfig, check_paths: bool = True, where: str = "config") -> None:
    """Raise :class:`ConfigError` listing every problem of ``cfg``."""
    errors = config_errors(cfg, check_paths=check_paths)
    if errors:
        raise ConfigError(f"{where}: " + "; ".join(errors))


def loss_params(cfg: TrainConfig) -> dict[str, Any]:
    """The keyword arguments of :func:`arcface_viz.losses.make_loss` (None = the loss's default)."""
    params = {k: getattr(cfg, k) for k in ("s", "m1", "m2", "m3") if getattr(cfg, k) is not None}
    params.update(cfg.loss_params)
    return params


# ------------------------------------------------------------------------------------------- small pieces


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write_bytes(path, text.encode("utf-8"))


def _atomic_torch_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save(obj, tmp)
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def lr_factor(step: int, total_steps: int, warmup_steps: int, power: float = 2.0) -> float:
    """lr / base_lr of optimizer step ``step`` (0-based), as arcface_torch's ``PolyScheduler``: with
    j = max(step − 1, 0), j / warmup_steps during the warm-up, then (1 − (j − warmup) / (total − warmup))^power.

    The one-step lag is arcface_torch's (its scheduler sets step 0's lr while it is built, then restarts its
    count), so a warm-up starts with two steps at lr 0; kept so that the same config trains the same way.
    """
    j = max(step - 1, 0)
    if j < warmup_steps:
        return j / warmup_steps
    span = max(1, total_steps - warmup_steps)
    return max(0.0, 1.0 - (j - warmup_steps) / span) ** power


def pca_3d(x: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Directions of ``x`` (and of ``others`` in the same basis) projected on the top-3 principal axes of
    the L2-normalised ``x``, then L2-normalised: points on the unit sphere for display."""
    u = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    mean = u.mean(axis=0)
    _, _, vt = np.linalg.svd(u - mean, full_matrices=False)
    basis = np.zeros((3, x.shape[1]))
    basis[:min(3, vt.shape[0])] = vt[:3]
    out = []
    for a in (x, *others):
        a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
        p = (a - mean) @ basis.T
        out.append((p / np.maximum(np.linalg.norm(p, axis=1, keepdims=True), 1e-12)).astype(np.float32))
    return out


class _ResumableSampler(DistributedSampler):
    """DistributedSampler that can start part-way into an epoch (``start`` samples of this rank skipped)."""

    start = 0

    def __iter__(self):
        it = super().__iter__()
        for _ in range(self.start):
            next(it, None)
        return it

    def __len__(self) -> int:
        return super().__len__() - self.start


class _Replicated(nn.Module):
    """Backbone + a loss head replicated on every rank (heads Partial FC cannot shard)."""

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(images), labels)


@dataclass
class _Dist:
    world_size: int = 1
    rank: int = 0
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def on(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.on:
            dist.barrier()


def _setup_distributed() -> _Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    if cuda:
        if local >= torch.cuda.device_count():
            raise ConfigError(f"local rank {local} has no GPU ({torch.cuda.device_count()} visible): start at "
                              "most one process per GPU (--nproc_per_node)")
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    else:
        device = torch.device("cpu")
    if world > 1:
        dist.init_process_group("nccl" if cuda else "gloo", timeout=datetime.timedelta(minutes=30),
                                **({"device_id": device} if cuda else {}))
    return _Dist(world, rank, local, device)


def _from_rank0(env: _Dist, obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (nodes need not share a disk: rank 0's run directory decides)."""
    if not env.on:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


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


class _Metrics:
    """Appends JSON lines to metrics.jsonl (and TensorBoard scalars when available); rank 0 only."""

    def __init__(self, out: Path, resume_step: int | None) -> None:
        self.path = out / "metrics.jsonl"
        kept: list[str] = []
        if resume_step is not None and self.path.is_file():  # drop what the lost interval logged
            for line in self.path.read_text(encoding="utf-8", errors="replace").splitlines():
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if isinstance(rec, dict) and rec.get("kind") != "done" and int(rec.get("step", 0)) <= resume_step:
                    kept.append(line + "\n")
        _atomic_write_text(self.path, "".join(kept))
        self.writer = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(out / "tensorboard"))
        except Exception:  # tensorboard is optional
            self.writer = None

    def write(self, kind: str, step: int, **values: Any) -> None:
        rec = {"kind": kind, "time": time.time(), "step": int(step), **values}
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(rec) + "\n")
        if self.writer is not None:
            if kind == "train":
                for k in ("loss", "lr", "samples_per_sec"):
                    self.writer.add_scalar(f"train/{k}", values[k], step)
            elif kind == "val":
                self.writer.add_scalar(f"val/{values['target']}", values["acc"], step)
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _fmt_time(seconds: float) -> str:
    seconds = int(max(0.0, seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


# ------------------------------------------------------------------------------------------------- data


def build_dataset(cfg: TrainConfig, flip: bool) -> Dataset:
    """The training set of ``cfg.data`` (images (3, 112, 112) normalised to [−1, 1], int labels)."""
    from .recordio import FaceRecordDataset, ImageFolderFaces, SyntheticFaces

    d = cfg.data
    if d.format == "rec":
        return FaceRecordDataset(Path(d.root).expanduser(), flip=flip)
    if d.format == "folder":
        return ImageFolderFaces(Path(d.root).expanduser(), flip=flip)
    return SyntheticFaces(int(d.num_classes), int(d.num_images), seed=cfg.seed)


def _class_groups(ds: Dataset) -> list[np.ndarray] | None:
    """Dataset indices grouped by identity when that is cheap to know (no image decoding), else None."""
    from .recordio import FaceRecordDataset, ImageFolderFaces

    if isinstance(ds, FaceRecordDataset) and ds.header0 is not None:  # image records 1 .. first − 1, sorted
        groups = []
        for a, b in ds.identity_ranges():
            keys = np.arange(a, b)
            idx = np.searchsorted(ds.imgidx, keys)
            ok = (idx < ds.imgidx.size) & (ds.imgidx[np.minimum(idx, ds.imgidx.size - 1)] == keys)
            groups.append(idx[ok])
        return groups
    if isinstance(ds, ImageFolderFaces):
        labels = np.array([label for _, label in ds.samples])
        return [np.flatnonzero(labels == c) for c in range(ds.num_classes)]
    return None


def held_out_indices(ds: Dataset, count: int, seed: int) -> np.ndarray:
    """``count`` indices kept out of training for embeddings.npz: a few images each of random identities
    (at most half of any identity, so every identity still trains), or random indices."""
    n = len(ds)
    if count <= 0 or n == 0:
        return np.zeros(0, dtype=np.int64)
    rng = np.random.default_rng([seed, 5])
    groups = _class_groups(ds)
    if groups is None:
        return np.sort(rng.choice(n, size=min(count, n // 2), replace=False)).astype(np.int64)
    per_class = max(2, count // 20)
    chosen: list[np.ndarray] = []
    total = 0
    for c in rng.permutation(len(groups)):
        g = groups[c]
        k = min(per_class, g.size // 2, count - total)
        if k >= 1:
            chosen.append(rng.choice(g, size=k, replace=False))
            total += k
        if total >= count:
            break
    return np.sort(np.concatenate(chosen)).astype(np.int64) if chosen else np.zeros(0, dtype=np.int64)


def _num_classes(cfg: TrainConfig, ds: Dataset) -> int:
    n = int(getattr(ds, "num_classes", cfg.data.num_classes or 0))
    if cfg.data.num_classes is not None and cfg.data.num_classes != n:
        raise ConfigError(f"data.num_classes is {cfg.data.num_classes} but the data set has {n} identities")
    if n < 2:
        raise ConfigError(f"the data set has {n} identities; training needs at least 2")
    return n


def _to_input(images: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    images = images.to(device, non_blocking=True)
    if images.dtype == torch.uint8:
        images = images.float().div_(255).sub_(0.5).div_(0.5)
    return images.contiguous(memory_format=torch.channels_last) if channels_last else images


# ---------------------------------------------------------------------------------------- verification


class _VerificationSet:
    def __init__(self, name: str, path: Path) -> None:
        from .recordio import load_bin

        self.name, self.path = name, path
        self.images, self.issame = load_bin(path)
        if len(self.issame) < 10 or self.issame.all() or not self.issame.any():
            raise ConfigError(f"verification set {path}: the 10-fold protocol needs >= 10 pairs with both same "
                              f"and different pairs (it has {len(self.issame)} pairs, {int(self.issame.sum())} same)")


@torch.no_grad()
def embed_images(backbone: nn.Module, images: torch.Tensor, device: torch.device, batch_size: int = 64,
                 flip_test: bool = True, channels_last: bool = False) -> np.ndarray:
    """Embeddings of uint8 or normalised images (eval mode); with ``flip_test`` emb(img) + emb(flip(img))."""
    was_training = backbone.training
    backbone.eval()
    out = []
    try:
        for start in range(0, images.shape[0], batch_size):
            x = _to_input(images[start:start + batch_size], device, channels_last)
            e = backbone(x).float()
            if flip_test:
                e = e + backbone(x.flip(-1)).float()
            out.append(e.cpu())
    finally:
        backbone.train(was_training)
    return torch.cat(out).numpy() if out else np.zeros((0, 0), dtype=np.float32)


def verify(backbone: nn.Module, vset: _VerificationSet, device: torch.device, batch_size: int,
           channels_last: bool = False) -> tuple[float, float, float]:
    """LFW protocol with flip test on one .bin: (accuracy, std, mean threshold on squared L2)."""
    from ..stats import verification_folds

    emb = embed_images(backbone, vset.images, device, batch_size, True, channels_last)
    emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    r = verification_folds(emb[0::2], emb[1::2], vset.issame, folds=10)
    return r.mean, r.std, float(np.mean(r.thresholds))


# -------------------------------------------------------------------------------------------- checkpoints


def _rng_state(device: torch.device) -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def read_latest(out: str | os.PathLike) -> dict[str, Any] | None:
    """``checkpoints/latest.json`` of a run directory ({"step", "world_size"}), or None if there is none."""
    p = Path(out) / "checkpoints" / "latest.json"
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _load_rank_checkpoint(ckpt_dir: Path, rank: int, step: int) -> dict[str, Any]:
    """This rank's checkpoint of ``step``: rank_{r}.pt, or rank_{r}.prev.pt if a save was cut short."""
    for name in (f"rank_{rank}.pt", f"rank_{rank}.prev.pt"):
        p = ckpt_dir / name
        if p.is_file():
            state = torch.load(p, map_location="cpu", weights_only=False)
            if state.get("step") == step:
                return state
    raise ConfigError(f"{ckpt_dir}: latest.json names step {step} but rank {rank} has no checkpoint of that step")


# ----------------------------------------------------------------------------------------------- trainer


class Trainer:
    """One training run of ``cfg`` on this process; :meth:`run` trains to the end and writes the outputs."""

    def __init__(self, cfg: TrainConfig, env: _Dist, resume: bool = False) -> None:
        self.cfg, self.env = cfg, env
        self.out = Path(cfg.output).expanduser().resolve()
        self.ckpt_dir = self.out / "checkpoints"
        dev = env.device
        self.cuda = dev.type == "cuda"
        self.channels_last = cfg.channels_last and self.cuda
        self.amp_dtype = {"none": None, "fp16": torch.float16, "bf16": torch.bfloat16}[cfg.amp]

        # data: held-out sample first, so every rank excludes the same images
        train_ds = build_dataset(cfg, flip=cfg.flip)
        self.num_classes = _num_classes(cfg, train_ds)
        self.held_out = held_out_indices(train_ds, cfg.embeddings_sample, cfg.seed)
        keep = np.setdiff1d(np.arange(len(train_ds)), self.held_out)
        self.train_set = Subset(train_ds, keep) if self.held_out.size else train_ds  # an array: no 5M-int list
        self.sampler = _ResumableSampler(self.train_set, num_replicas=env.world_size, rank=env.rank, shuffle=True,
                                         seed=cfg.seed, drop_last=True)
        self.steps_per_epoch = len(self.sampler) // cfg.batch_size
        if self.steps_per_epoch < 1:
            raise ConfigError(f"{len(self.train_set)} training images cannot fill one step of {cfg.batch_size} × "
                              f"{env.world_size} processes: lower batch_size or add data")
        self.loader = DataLoader(self.train_set, batch_size=cfg.batch_size, sampler=self.sampler,
                                 num_workers=cfg.num_workers, pin_memory=cfg.pin_memory and self.cuda,
                                 drop_last=True, persistent_workers=cfg.num_workers > 0)
        epoch_steps = cfg.num_epoch * self.steps_per_epoch
        self.total_steps = min(epoch_steps, cfg.max_steps) if cfg.max_steps else epoch_steps
        self.warmup_steps = int(cfg.warmup_epoch * self.steps_per_epoch)

        # model: the same backbone on every rank (DDP also broadcasts rank 0's)
        torch.manual_seed(cfg.seed)
        self.backbone = get_backbone(cfg.network, cfg.embedding_size, cfg.dropout, amp_dtype=self.amp_dtype).to(dev)
        if self.channels_last:
            self.backbone = self.backbone.to(memory_format=torch.channels_last)
        params = loss_params(cfg)
        self.sharded = supports(cfg.loss)
        if self.sharded:
            self.head: nn.Module = PartialFC(cfg.loss, self.num_classes, cfg.embedding_size, cfg.sample_rate,
                                             seed=cfg.seed, amp_dtype=self.amp_dtype if self.cuda else None,
                                             **params).to(dev)
            self.model: nn.Module = self.backbone
            if env.on:
                self.model = nn.parallel.DistributedDataParallel(
                    self.backbone, device_ids=[env.local_rank] if self.cuda else None, broadcast_buffers=False,
                    bucket_cap_mb=16)
                self.model.register_comm_hook(None, allreduce_sum_hook)  # each rank holds a share of the sum
        else:
            self.head = make_loss(cfg.loss, self.num_classes, cfg.embedding_size, **params).to(dev)
            self.model = _Replicated(self.backbone, self.head)
            if env.on:
                self.model = nn.parallel.DistributedDataParallel(
                    self.model, device_ids=[env.local_rank] if self.cuda else None)
        groups = [{"params": [p for p in self.backbone.parameters() if p.requires_grad]},
                  {"params": [p for p in self.head.parameters() if p.requires_grad]}]
        groups = [g for g in groups if g["params"]]
        if cfg.optimizer == "sgd":
            self.opt = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        else:
            self.opt = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, lambda i: lr_factor(i, self.total_steps, self.warmup_steps))
        self.scaler = torch.amp.GradScaler(dev.type, growth_interval=100, enabled=cfg.amp == "fp16")
        # a step the scaler skips (inf gradients) still advances the schedule, as in insightface
        warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step()` before")
        torch.manual_seed(cfg.seed + env.rank)  # dropout, flips and sampling differ between ranks
        np.random.seed((cfg.seed + env.rank) % 2**32)
        random.seed(cfg.seed + env.rank)

        self.step = 0
        self.resume_step = None
        if resume:
            self._resume()

        self.val_sets: list[_VerificationSet] = []
        self.metrics: _Metrics | None = None
        if env.main:
            self.val_sets = [_VerificationSet(Path(resolve_val_target(t, cfg.data.root)).stem,
                                              resolve_val_target(t, cfg.data.root)) for t in cfg.val_targets]
            self.metrics = _Metrics(self.out, self.resume_step)
        self.best: dict[str, float] = {}

    # --- resume ---------------------------------------------------------------------------------

    def _resume(self) -> None:
        latest = _from_rank0(self.env, read_latest(self.out) if self.env.main else None)
        if latest is None:
            if self.env.main:
                LOG.info("--resume: no checkpoint in %s yet, starting from step 0", self.ckpt_dir)
            return
        if int(latest.get("world_size", -1)) != self.env.world_size:
            raise ConfigError(f"the checkpoint at step {latest.get('step')} was written by {latest.get('world_size')} "
                              f"processes but this run has {self.env.world_size}: resume with the same total number "
                              "of processes (nnodes × nproc_per_node), since each holds its own Partial FC shard")
        step = int(latest["step"])
        state = _load_rank_checkpoint(self.ckpt_dir, self.env.rank, step)
        saved = state.get("config", {})
        for key in ("network", "embedding_size", "loss", "batch_size"):
            if key in saved and saved[key] != getattr(self.cfg, key):
                raise ConfigError(f"cannot resume: the checkpoint was trained with {key}={saved[key]!r}, the config "
                                  f"now says {getattr(self.cfg, key)!r}")
        if state.get("num_classes") != self.num_classes or state.get("steps_per_epoch") != self.steps_per_epoch:
            raise ConfigError(f"cannot resume: the data changed (classes {state.get('num_classes')} -> "
                              f"{self.num_classes}, steps per epoch {state.get('steps_per_epoch')} -> "
                              f"{self.steps_per_epoch})")
        self.backbone.load_state_dict(state["backbone"])
        self.head.load_state_dict(state["head"])
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        _set_rng_state(state["rng"], self.env.device)
        self.step = self.resume_step = step
        if self.env.main:
            LOG.info("resumed from %s at step %d (epoch %d)", self.ckpt_dir, step, step // self.steps_per_epoch)

    def save_checkpoint(self) -> None:
        """Every rank writes its full state; rank 0 then points latest.json at it (collective)."""
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        state = {
            "step": self.step, "epoch": self.step // self.steps_per_epoch, "world_size": self.env.world_size,
            "rank": self.env.rank, "num_classes": self.num_classes, "steps_per_epoch": self.steps_per_epoch,
            "backbone": self.backbone.state_dict(), "head": self.head.state_dict(),
            "optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict(),
            "scaler": self.scaler.state_dict(), "rng": _rng_state(self.env.device), "config": self.cfg.to_dict(),
        }
        cur = self.ckpt_dir / f"rank_{self.env.rank}.pt"
        if cur.is_file():  # keep the last complete one until every rank has its new one
            os.replace(cur, self.ckpt_dir / f"rank_{self.env.rank}.prev.pt")
        _atomic_torch_save(state, cur)
        self.env.barrier()
        if self.env.main:
            _atomic_write_text(self.ckpt_dir / "latest.json",
                               json.dumps({"step": self.step, "world_size": self.env.world_size}) + "\n")
            LOG.info("checkpoint step %d -> %s", self.step, self.ckpt_dir)
        self.env.barrier()
        (self.ckpt_dir / f"rank_{self.env.rank}.prev.pt").unlink(missing_ok=True)  # latest.json is past it

    # --- one step -------------------------------------------------------------------------------

    def _train_step(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        dev = self.env.device
        x = _to_input(images, dev, self.channels_last)
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
            _atomic_write_bytes(self.out / "model.pt", buf.getvalue())
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
        eval_ds = build_dataset(self.cfg, flip=False)
        chunks, labels = [], []
        for start in range(0, self.held_out.size, 256):
            items = [eval_ds[int(i)] for i in self.held_out[start:start + 256]]
            labels += [int(y) for _, y in items]
            chunks.append(embed_images(self.backbone, torch.stack([x for x, _ in items]), self.env.device,
                                       max(2, self.cfg.batch_size), flip_test=False, channels_last=self.channels_last))
        emb = np.concatenate(chunks).astype(np.float32)
        arrays: dict[str, np.ndarray] = {"embeddings": emb, "labels": np.asarray(labels, dtype=np.int64)}
        if weight is not None:
            arrays["weight"] = weight.astype(np.float32)
            arrays["embeddings_3d"], arrays["weight_3d"] = pca_3d(emb, weight)
        else:
            (arrays["embeddings_3d"],) = pca_3d(emb)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        _atomic_write_bytes(self.out / "embeddings.npz", buf.getvalue())
        LOG.info("embeddings.npz: %d held-out embeddings%s", emb.shape[0],
                 f", weight {weight.shape}" if weight is not None else " (weight too large to gather)")


# -------------------------------------------------------------------------------------------------- main


def resolve_config(cfg: TrainConfig) -> TrainConfig:
    """Fill the loss's defaults for s, m1, m2, m3 and make data, verification and output paths absolute."""
    ref = make_loss(cfg.loss, 2, 2, **loss_params(cfg))
    data = dataclasses.replace(cfg.data)
    if data.root:
        data.root = str(Path(data.root).expanduser().resolve())
    if data.format == "rec" and data.num_classes is None:
        from .recordio import read_property

        data.num_classes = read_property(Path(data.root) / "property")[0]
    return dataclasses.replace(
        cfg, s=ref.s, m1=ref.m1, m2=ref.m2, m3=ref.m3, data=data,
        val_targets=[str(resolve_val_target(t, data.root).resolve()) for t in cfg.val_targets],
        output=str(Path(cfg.output).expanduser().resolve()))


def train(cfg: TrainConfig, resume: bool = False) -> None:
    """Train ``cfg`` on this process (under torchrun: this rank); raises on failure."""
    env = _setup_distributed()
    try:
        cfg = resolve_config(cfg)
        out = Path(cfg.output)
        problem = None
        if env.main:
            out.mkdir(parents=True, exist_ok=True)
            if not resume and read_latest(out) is not None:
                problem = (f"{out} already holds a run with checkpoints: pass --resume to continue it, or choose "
                           "another output folder")
        problem = _from_rank0(env, problem)
        if problem:
            raise ConfigError(problem)
        _setup_logging(out if env.main else None)
        if env.main:
            save_config(cfg, out / "config.json")
            LOG.info("config: %s", json.dumps(cfg.to_dict()))
        if env.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        Trainer(cfg, env, resume=resume).run()
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
