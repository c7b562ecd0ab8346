"""The training set of a run: the data set a config names, the held-out sample and the model's input tensors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .config import ConfigError, TrainConfig


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


def class_count(cfg: TrainConfig, ds: Dataset) -> int:
    """The identities of ``ds``, checked against ``data.num_classes`` when the config gives it."""
    n = int(getattr(ds, "num_classes", cfg.data.num_classes or 0))
    if cfg.data.num_classes is not None and cfg.data.num_classes != n:
        raise ConfigError(f"data.num_classes is {cfg.data.num_classes} but the data set has {n} identities")
    if n < 2:
        raise ConfigError(f"the data set has {n} identities; training needs at least 2")
    return n


def to_input(images: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    """A batch on ``device`` as the backbone takes it (uint8 images are normalised (x/255 − 0.5)/0.5)."""
    images = images.to(device, non_blocking=True)
    if images.dtype == torch.uint8:
        images = images.float().div_(255).sub_(0.5).div_(0.5)
    return images.contiguous(memory_format=torch.channels_last) if channels_last else images
