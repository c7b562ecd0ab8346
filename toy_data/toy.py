"""Seeded toy data sets for live training in 2-D and 3-D (the paper's Fig. 3 and harder cousins).

Every generator takes ``(num_classes, samples_per_class, noise, seed, ...)`` and returns a
:class:`ToyData` with ``X`` (float32, (N, input_dim)) and ``y`` (int64, (N,)).  The same arguments give
the same arrays; :meth:`ToyData.train_test_split` splits per class, so every class is in both parts.

``fig3`` stands in for the paper's 8 face identities.  Like real identities, its classes touch and differ
in spread: each identity fills an arc of a ring (arcs of different widths, neighbours separated only by a
thin empty band, so the Bayes error is zero but there is no room to spare), drawn in an 8-D input space.
A loss without a margin is free to leave neighbouring identities touching on the circle (the paper's
ambiguous Softmax boundaries); ArcFace must open an angular gap between them (Fig. 3).
``blobs``, ``spirals``, ``moons`` and ``imbalanced`` overlap or curl so that margins matter.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "FIG3_PAPER_SAMPLES",
    "TOY_DATASETS",
    "ToyData",
    "ToyDataset",
    "blobs",
    "fig3",
    "imbalanced",
    "imbalanced_sizes",
    "make_dataset",
    "moons",
    "sphere",
    "spirals",
]

FIG3_PAPER_SAMPLES = 1500  # samples per identity in the paper's Fig. 3


@dataclass
class ToyData:
    """A generated data set: inputs ``X`` (float32, (N, input_dim)), labels ``y`` (int64, (N,))."""

    X: np.ndarray
    y: np.ndarray
    num_classes: int
    name: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    flipped: np.ndarray | None = None  # (N,) bool: the label was flipped to another class (label noise)

    @property
    def input_dim(self) -> int:
        return int(self.X.shape[1])

    def __len__(self) -> int:
        return len(self.y)

    def class_counts(self) -> np.ndarray:
        return np.bincount(self.y, minlength=self.num_classes)

    def train_test_split(self, test_fraction: float = 0.2, seed: int = 0
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Stratified split: (X_train, y_train, X_test, y_test); each class keeps ≥ 1 sample on each side
        when it has at least 2.  ``test_fraction = 0`` gives empty test arrays."""
        train, test = self.split_indices(test_fraction, seed)
        return self.X[train], self.y[train], self.X[test], self.y[test]

    def split_indices(self, test_fraction: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """The rows of :meth:`train_test_split`'s two parts, in its order (e.g. to pick ``flipped`` alike)."""
        if not 0.0 <= test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
        rng = np.random.default_rng(seed)
        test_idx = []
        for c in range(self.num_classes):
            idx = np.flatnonzero(self.y == c)
            if len(idx) == 0 or test_fraction == 0:
                continue
            k = int(round(test_fraction * len(idx)))
            k = min(max(k, 1), len(idx) - 1) if len(idx) >= 2 else 0
            test_idx.append(rng.choice(idx, size=k, replace=False))
        test = np.sort(np.concatenate(test_idx)) if test_idx else np.zeros(0, dtype=np.int64)
        mask = np.ones(len(self.y), dtype=bool)
        mask[test] = False
        return rng.permutation(np.flatnonzero(mask)), rng.permutation(test)


def _check(num_classes: int, samples_per_class: int, noise: float) -> None:
    if num_classes < 2:
        raise ValueError(f"need at least 2 classes, got {num_classes}")
    if samples_per_class < 1:
        raise ValueError(f"need at least 1 sample per class, got {samples_per_class}")
    if noise < 0:
        raise ValueError(f"noise must be ≥ 0, got {noise}")


def _pack(X: np.ndarray, y: np.ndarray, num_classes: int, name: str, **params: Any) -> ToyData:
    return ToyData(np.ascontiguousarray(X, dtype=np.float32), np.asarray(y, dtype=np.int64), num_classes,
                   name, params)


def _directions(num_classes: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    """Unit class directions: orthonormal (random rotation) when num_classes ≤ dim, else random unit vectors."""
    if num_classes <= dim:
        q, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
        return q[:, :num_classes].T.copy()
    v = rng.standard_normal((num_classes, dim))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _flip_labels(y: np.ndarray, num_classes: int, fraction: float, rng: np.random.Generator
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Label noise: a fraction of samples get a uniformly drawn *other* label; returns (labels, flipped)."""
    if fraction <= 0:
        return y, np.zeros(len(y), dtype=bool)
    y = y.copy()
    flip = rng.random(len(y)) < fraction
    y[flip] = (y[flip] + rng.integers(1, num_classes, size=int(flip.sum()))) % num_classes
    return y, flip


def fig3(num_classes: int = 8, samples_per_class: int = 200, noise: float = 0.0, seed: int = 0,
         input_dim: int = 8, band_deg: float = 7.0, width_ratio: float = 2.0) -> ToyData:
    """Fig. 3 toy: ``num_classes`` identities on a ring, neighbours touching, each with its own spread.

    Identity c fills the arc a ∈ [a_c, a_c + w_c] of the ring and radii r ∈ [0.5, 1.5] (uniform over that
    piece of the annulus).  The widths w_c are a shuffled geometric series from 1 to ``width_ratio`` scaled
    so that the arcs and ``num_classes`` empty bands of ``band_deg`` degrees fill 360°; a random rotation
    a_0 places the first.  A point (r, a) is drawn in ``input_dim`` dimensions as its first input_dim/2
    harmonics x = (r cos ka, r sin ka)/k², k = 1, 2, …: neighbouring arcs still touch across the band,
    while the higher harmonics let a small MLP tell the arcs apart in about a hundred steps.  ``noise``
    adds N(0, noise²) to every coordinate (0: none, and the classes are disjoint, Bayes error zero).
    The paper uses 8 identities × 1,500 samples (FIG3_PAPER_SAMPLES).
    """
    _check(num_classes, samples_per_class, noise)
    if input_dim < 2 or input_dim % 2:
        raise ValueError(f"input_dim must be an even number ≥ 2, got {input_dim}")
    if not 0 <= band_deg * num_classes < 360:
        raise ValueError(f"band_deg must be in [0, {360 / num_classes:g}) for {num_classes} classes, got {band_deg}")
    if width_ratio < 1:
        raise ValueError(f"width_ratio must be ≥ 1, got {width_ratio}")
    rng = np.random.default_rng(seed)
    band = math.radians(band_deg)
    widths = rng.permutation(width_ratio ** np.linspace(0.0, 1.0, num_classes))
    widths *= (2 * math.pi - num_classes * band) / widths.sum()
    starts = rng.uniform(0, 2 * math.pi) + np.concatenate([[0.0], np.cumsum(widths + band)[:-1]])
    y = np.repeat(np.arange(num_classes), samples_per_class)
    a = starts[y] + widths[y] * rng.random(len(y))
    r = np.sqrt(rng.uniform(0.25, 2.25, len(y)))  # uniform over the annulus 0.5 ≤ r ≤ 1.5
    k = np.arange(1, input_dim // 2 + 1)
    X = np.empty((len(y), input_dim))
    X[:, 0::2] = r[:, None] * np.cos(a[:, None] * k) / k ** 2
    X[:, 1::2] = r[:, None] * np.sin(a[:, None] * k) / k ** 2
    X += noise * rng.standard_normal(X.shape)
    return _pack(X, y, num_classes, "fig3", input_dim=input_dim, band_deg=band_deg, width_ratio=width_ratio)


def blobs(num_classes: int = 6, samples_per_class: int = 200, noise: float = 0.7, seed: int = 0,
          input_dim: int = 2, label_noise: float = 0.02, box: float = 4.0, min_distance: float = 2.5) -> ToyData:
    """Gaussian blobs in a 2-D (or input_dim) box [−box, box]: spread σ = noise, a fraction ``label_noise``
    of labels flipped to another class.  Means are random but at least ``min_distance`` apart (when the box
    has room), so neighbouring blobs touch without swallowing each other."""
    _check(num_classes, samples_per_class, noise)
    rng = np.random.default_rng(seed)
    mu = np.empty((0, input_dim))
    for attempt in range(1000 * num_classes):  # rejection sampling; relax the distance if the box is too full
        if len(mu) == num_classes:
            break
        cand = rng.uniform(-box, box, size=input_dim)
        need = min_distance * (0.999 ** (attempt // num_classes))
        if len(mu) == 0 or np.linalg.norm(mu - cand, axis=1).min() >= need:
            mu = np.vstack([mu, cand])
    y = np.repeat(np.arange(num_classes), samples_per_class)
    X = mu[y] + noise * rng.standard_normal((len(y), input_dim))
    y, flipped = _flip_labels(y, num_classes, label_noise, rng)
    data = _pack(X, y, num_classes, "blobs", input_dim=input_dim, label_noise=label_noise, box=box,
                 min_distance=min_distance)
    data.flipped = flipped
    return data


def _fibonacci_sphere(n: int) -> np.ndarray:
    """n nearly evenly spread unit vectors in 3-D (golden-angle spiral)."""
    i = np.arange(n) + 0.5
    z = 1.0 - 2.0 * i / n
    r = np.sqrt(1.0 - z * z)
    phi = i * math.pi * (3.0 - math.sqrt(5.0))
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)


def sphere(num_classes: int = 6, samples_per_class: int = 200, noise: float = 0.35, seed: int = 0) -> ToyData:
    """Classes on the unit sphere in 3-D: x = normalise(μ_c + noise·g), μ_c spread evenly (randomly rotated)."""
    _check(num_classes, samples_per_class, noise)
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    mu = _fibonacci_sphere(num_classes) @ q
    y = np.repeat(np.arange(num_classes), samples_per_class)
    X = mu[y] + noise * rng.standard_normal((len(y), 3))
    X /= np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
    return _pack(X, y, num_classes, "sphere")


def spirals(num_classes: int = 3, samples_per_class: int = 200, noise: float = 0.08, seed: int = 0,
            turns: float = 1.25) -> ToyData:
    """Interleaved 2-D spiral arms, one per class: r = t, angle = 2π(turns·t + c/num_classes), t ∈ (0, 1]."""
    _check(num_classes, samples_per_class, noise)
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(num_classes), samples_per_class)
    t = np.sqrt(rng.uniform(0.02, 1.0, size=len(y)))  # sqrt: even density along the arm
    a = 2 * math.pi * (turns * t + y / num_classes)
    X = np.stack([t * np.cos(a), t * np.sin(a)], axis=1) + noise * rng.standard_normal((len(y), 2))
    return _pack(X, y, num_classes, "spirals", turns=turns)


def moons(num_classes: int = 2, samples_per_class: int = 200, noise: float = 0.15, seed: int = 0) -> ToyData:
    """Interlocking half-circles: class c is an upper (even c) or lower (odd c) unit arc shifted by c along x,
    so neighbouring classes interlock like two moons."""
    _check(num_classes, samples_per_class, noise)
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(num_classes), samples_per_class)
    t = rng.uniform(0.0, math.pi, size=len(y))
    up = (y % 2 == 0)
    X = np.stack([np.where(up, np.cos(t), 1.0 - np.cos(t)) + (y // 2) * 2.0,
                  np.where(up, np.sin(t), 0.5 - np.sin(t))], axis=1)
    X = X + noise * rng.standard_normal(X.shape)
    X -= X.mean(axis=0)
    return _pack(X, y, num_classes, "moons")


def imbalanced(num_classes: int = 8, samples_per_class: int = 300, noise: float = 0.3, seed: int = 0,
               ratio: float = 0.05, input_dim: int = 8) -> ToyData:
    """Gaussian clusters N(μ_c, noise²I), unit means on orthonormal directions, with sizes decaying
    geometrically: class c has round(samples_per_class · ratio^(c/(n−1))) samples (at least 2), so the last
    class is ``ratio`` times the first."""
    _check(num_classes, samples_per_class, noise)
    if not 0 < ratio <= 1:
        raise ValueError(f"ratio must be in (0, 1], got {ratio}")
    rng = np.random.default_rng(seed)
    mu = _directions(num_classes, input_dim, rng)
    sizes = imbalanced_sizes(num_classes, samples_per_class, ratio)
    y = np.repeat(np.arange(num_classes), sizes)
    X = mu[y] + noise * rng.standard_normal((len(y), input_dim))
    return _pack(X, y, num_classes, "imbalanced", ratio=ratio, input_dim=input_dim)


def imbalanced_sizes(num_classes: int, samples_per_class: int, ratio: float) -> np.ndarray:
    """Class sizes of :func:`imbalanced`: samples_per_class · ratio^(c/(n−1)), rounded, at least 2."""
    c = np.arange(num_classes)
    return np.maximum(np.round(samples_per_class * ratio ** (c / max(num_classes - 1, 1))), 2).astype(int)


@dataclass(frozen=True)
class ToyDataset:
    """Registry entry: generator, its defaults (the classroom defaults) and a one-line description."""

    name: str
    label: str
    make: Callable[..., ToyData]
    defaults: dict[str, Any]
    summary: str

    def __call__(self, **overrides: Any) -> ToyData:
        return self.make(**{**self.defaults, **{k: v for k, v in overrides.items() if v is not None}})


def _entry(name: str, label: str, make: Callable[..., ToyData], summary: str) -> ToyDataset:
    import inspect

    defaults = {k: p.default for k, p in inspect.signature(make).parameters.items()}
    return ToyDataset(name, label, make, defaults, summary)


TOY_DATASETS: dict[str, ToyDataset] = {
    "fig3": _entry("fig3", "Fig. 3 (8 identities)", fig3,
                   "8 identities on a ring, neighbours touching, arcs of different widths (8-D input): the "
                   "paper's toy example, where a margin has to open the gaps."),
    "blobs": _entry("blobs", "Gaussian blobs", blobs,
                    "Random Gaussian blobs in 2-D with a little label noise; some blobs touch."),
    "sphere": _entry("sphere", "Classes on a sphere", sphere,
                     "Clusters spread over the unit sphere in 3-D input space."),
    "spirals": _entry("spirals", "Spirals", spirals, "Interleaved spiral arms: hard to separate."),
    "moons": _entry("moons", "Moons", moons, "Interlocking half-circles: not linearly separable."),
    "imbalanced": _entry("imbalanced", "Imbalanced", imbalanced,
                         "Gaussian clusters with class sizes decaying 20×; small classes get squeezed."),
}


def make_dataset(name: str, **overrides: Any) -> ToyData:
    """Generate a registered data set; arguments left out (or None) take the registry's defaults."""
    if name not in TOY_DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(TOY_DATASETS)}")
    entry = TOY_DATASETS[name]
    unknown = set(overrides) - set(entry.defaults)
    if unknown:
        raise ValueError(f"dataset {name!r} has no parameter(s) {sorted(unknown)}; "
                         f"it takes {', '.join(entry.defaults)}")
    return entry(**overrides)
