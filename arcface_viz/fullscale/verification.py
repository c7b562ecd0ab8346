"""Evaluation of a backbone, as insightface's ``eval/verification.py``: embeddings with flip test, LFW-protocol
verification on a ``.bin`` set, and the held-out embeddings of ``embeddings.npz``.

Verification (LFW protocol): pair i is images 2i and 2i+1; each image's embedding is emb(img) + emb(flip(img)),
L2-normalised; 10-fold cross-validation picks the squared-L2 threshold on 9 folds and measures accuracy on the
10th (:func:`arcface_viz.stats.verification_folds`).  Reported: mean accuracy, its std and the mean threshold.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from .config import ConfigError
from .datasets import to_input


class VerificationSet:
    """A ``.bin`` verification set in memory: ``images`` (2N uint8 images) and ``issame`` (N booleans)."""

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
            x = to_input(images[start:start + batch_size], device, channels_last)
            e = backbone(x).float()
            if flip_test:
                e = e + backbone(x.flip(-1)).float()
            out.append(e.cpu())
    finally:
        backbone.train(was_training)
    return torch.cat(out).numpy() if out else np.zeros((0, 0), dtype=np.float32)


def verify(backbone: nn.Module, vset: VerificationSet, device: torch.device, batch_size: int,
           channels_last: bool = False) -> tuple[float, float, float]:
    """LFW protocol with flip test on one .bin: (accuracy, std, mean threshold on squared L2)."""
    from ..stats import verification_folds

    emb = embed_images(backbone, vset.images, device, batch_size, True, channels_last)
    emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    r = verification_folds(emb[0::2], emb[1::2], vset.issame, folds=10)
    return r.mean, r.std, float(np.mean(r.thresholds))


# ------------------------------------------------------------------------------- held-out embeddings


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


def held_out_arrays(backbone: nn.Module, ds: Dataset, indices: np.ndarray, weight: np.ndarray | None,
                    device: torch.device, batch_size: int, channels_last: bool = False) -> dict[str, np.ndarray]:
    """The arrays of ``embeddings.npz``: raw ``embeddings`` and ``labels`` of the images ``indices`` of ``ds``
    (no flip test), the class centres ``weight`` if given, and their ``*_3d`` projections (:func:`pca_3d`)."""
    chunks, labels = [], []
    for start in range(0, indices.size, 256):
        items = [ds[int(i)] for i in indices[start:start + 256]]
        labels += [int(y) for _, y in items]
        chunks.append(embed_images(backbone, torch.stack([x for x, _ in items]), device, batch_size,
                                   flip_test=False, channels_last=channels_last))
    emb = np.concatenate(chunks).astype(np.float32)
    arrays: dict[str, np.ndarray] = {"embeddings": emb, "labels": np.asarray(labels, dtype=np.int64)}
    if weight is not None:
        arrays["weight"] = weight.astype(np.float32)
        arrays["embeddings_3d"], arrays["weight_3d"] = pca_3d(emb, weight)
    else:
        (arrays["embeddings_3d"],) = pca_3d(emb)
    return arrays
