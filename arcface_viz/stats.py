"""Table-3 angle statistics, Fig. 6/7 pair-angle histograms and the verification protocols.

Everything works on the *directions* of embeddings: every function L2-normalises its inputs, so scaling
an embedding never changes a result.  Inputs may be numpy arrays or torch tensors; all arithmetic runs
in float64 numpy.  Bad input (wrong shape, mismatched lengths, NaN/inf, a zero vector, a single class
where two are needed) raises ``ValueError`` with a message meant for the person who made the file.

Conventions (see ``docs/paper_reference.md`` sections 3–4):

- a class's *embedding-feature centre* is the direction of the mean of its L2-normalised embeddings;
- the classifier weight ``W`` has shape ``(n_classes, dim)``, row j = class j (insightface layout;
  pass ``W.T`` for pytorch-metric-learning's ``(dim, n_classes)``);
- angles are reported in degrees.
"""

from __future__ import annotations

import math
import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# ---------------------------------------------------------------------------------------------------
# The paper's numbers
# ---------------------------------------------------------------------------------------------------

TABLE3_ROWS: tuple[str, ...] = ("W-EC", "W-Inter", "Intra1", "Inter1", "Intra2", "Inter2")
TABLE3_COLUMNS: tuple[str, ...] = ("NS", "ArcFace", "IntraL", "InterL", "TripletL")

#: Table 3 of the ArcFace paper, degrees, [CASIA, ResNet50]; "1" = CASIA train set, "2" = LFW test set.
#: ``PAPER_TABLE3[row][column]``; None where the paper prints a dash (the triplet loss has no W).
PAPER_TABLE3: dict[str, dict[str, float | None]] = {
    "W-EC": {"NS": 44.26, "ArcFace": 14.29, "IntraL": 8.83, "InterL": 46.85, "TripletL": None},
    "W-Inter": {"NS": 69.66, "ArcFace": 71.61, "IntraL": 31.34, "InterL": 75.66, "TripletL": None},
    "Intra1": {"NS": 50.50, "ArcFace": 38.45, "IntraL": 17.50, "InterL": 52.74, "TripletL": 41.19},
    "Inter1": {"NS": 59.23, "ArcFace": 65.83, "IntraL": 24.07, "InterL": 62.40, "TripletL": 50.23},
    "Intra2": {"NS": 33.97, "ArcFace": 28.05, "IntraL": 12.94, "InterL": 35.38, "TripletL": 27.42},
    "Inter2": {"NS": 65.60, "ArcFace": 66.55, "IntraL": 26.28, "InterL": 67.90, "TripletL": 55.94},
}

#: Which direction is better for each Table-3 row: small W-EC (each W_j lines up with its class's feature
#: centre) and Intra (compact classes); large W-Inter and Inter (centres spread apart).
TABLE3_BETTER: dict[str, str] = {
    "W-EC": "lower", "W-Inter": "higher", "Intra1": "lower", "Inter1": "higher", "Intra2": "lower",
    "Inter2": "higher",
}
TABLE3_ARROW: dict[str, str] = {row: "↓" if b == "lower" else "↑" for row, b in TABLE3_BETTER.items()}

TABLE2_COLUMNS: tuple[str, ...] = ("LFW", "CFP-FP", "AgeDB-30")


def _t2(lfw: float, cfp: float, agedb: float) -> dict[str, float]:
    return dict(zip(TABLE2_COLUMNS, (lfw, cfp, agedb), strict=True))


#: Table 2 of the ArcFace paper (CVPR 2019): verification accuracy (%), [CASIA, ResNet50, loss].
PAPER_TABLE2: dict[str, dict[str, float]] = {
    "ArcFace (0.4)": _t2(99.53, 95.41, 94.98),
    "ArcFace (0.45)": _t2(99.46, 95.47, 94.93),
    "ArcFace (0.5)": _t2(99.53, 95.56, 95.15),
    "ArcFace (0.55)": _t2(99.41, 95.32, 95.05),
    "SphereFace (1.35)": _t2(99.11, 94.38, 91.70),
    "CosFace (0.35)": _t2(99.51, 95.44, 94.56),
    "CM1 (1, 0.3, 0.2)": _t2(99.48, 95.12, 94.38),
    "CM2 (0.9, 0.4, 0.15)": _t2(99.50, 95.24, 94.86),
    "Softmax": _t2(99.08, 94.39, 92.33),
    "Norm-Softmax (s=64)": _t2(98.56, 89.79, 88.72),
    "NS+Intra": _t2(98.75, 93.81, 90.92),
    "NS+Inter": _t2(98.68, 90.67, 89.50),
    "NS+Intra+Inter": _t2(98.73, 94.00, 91.41),
    "Triplet (0.35)": _t2(98.98, 91.90, 89.98),
    "ArcFace+Intra": _t2(99.45, 95.37, 94.73),
    "ArcFace+Inter": _t2(99.43, 95.25, 94.55),
    "ArcFace+Intra+Inter": _t2(99.43, 95.42, 95.10),
    "ArcFace+Triplet": _t2(99.50, 95.51, 94.40),
}

#: The row the TPAMI extension (arXiv v4) adds to Table 2; kept apart so PAPER_TABLE2 is the CVPR table.
PAPER_TABLE2_TPAMI_EXTRA: dict[str, dict[str, float]] = {"Norm-Softmax (s=20)": _t2(99.20, 94.61, 92.65)}

# ---------------------------------------------------------------------------------------------------
# Input checks
# ---------------------------------------------------------------------------------------------------

_TINY = 1e-12  # a vector shorter than this has no direction


def _to_numpy(x: Any, name: str) -> np.ndarray:
    if x is None:
        raise ValueError(f"{name} is missing (got None)")
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # a torch tensor, without importing torch
        t = x.detach().cpu()
        if t.is_floating_point():
            t = t.double()  # bfloat16/float16 have no numpy equivalent
        x = t.numpy()
    try:
        return np.asarray(x)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} cannot be read as an array: {exc}") from None


def _float_matrix(x: Any, name: str) -> np.ndarray:
    """A finite (n, d) float64 matrix with n >= 1, d >= 1."""
    a = _to_numpy(x, name)
    if a.dtype.kind not in "fiu":
        raise ValueError(f"{name} must hold real numbers, got dtype {a.dtype}")
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (n, dim), got shape {a.shape}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {a.shape})")
    a = a.astype(np.float64)
    bad = ~np.isfinite(a).all(axis=1)
    if bad.any():
        raise ValueError(f"{name} contains NaN or inf ({int(bad.sum())} rows, first at row {int(np.argmax(bad))})")
    return a


def _unit_rows(x: Any, name: str) -> np.ndarray:
    """L2-normalise the rows of a checked matrix; a zero row has no direction and is an error."""
    a = _float_matrix(x, name)
    norms = np.linalg.norm(a, axis=1)
    zero = norms < _TINY
    if zero.any():
        raise ValueError(
            f"{name} has {int(zero.sum())} zero-norm rows (first at row {int(np.argmax(zero))}); "
            "a zero vector has no direction"
        )
    return a / norms[:, None]


def _int_labels(y: Any, name: str, n: int) -> np.ndarray:
    """A 1-D int64 label vector of length n (whole-number floats are accepted)."""
    a = _to_numpy(y, name)
    if a.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array, got shape {a.shape}")
    if a.shape[0] != n:
        raise ValueError(f"{name} has {a.shape[0]} entries but there are {n} embeddings")
    if a.dtype.kind in "iu":
        return a.astype(np.int64)
    if a.dtype.kind == "f":
        if not np.isfinite(a).all():
            raise ValueError(f"{name} contains NaN or inf")
        if not (a == np.round(a)).all():
            raise ValueError(f"{name} must be whole numbers (class ids)")
        return a.astype(np.int64)
    raise ValueError(f"{name} must be integer class ids, got dtype {a.dtype}")


def _bool_vector(v: Any, name: str, n: int) -> np.ndarray:
    """A 1-D boolean vector of length n from bools or 0/1 numbers."""
    a = _to_numpy(v, name)
    if a.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array, got shape {a.shape}")
    if a.shape[0] != n:
        raise ValueError(f"{name} has {a.shape[0]} entries, expected {n}")
    if a.dtype.kind == "b":
        return a.astype(bool)
    if a.dtype.kind in "fiu":
        if not np.isin(a, (0, 1)).all():
            raise ValueError(f"{name} must be booleans or 0/1")
        return a.astype(bool)
    raise ValueError(f"{name} must be booleans or 0/1, got dtype {a.dtype}")


def _scores(s: Any, name: str) -> np.ndarray:
    a = _to_numpy(s, name)
    if a.dtype.kind not in "fiu":
        raise ValueError(f"{name} must hold real numbers, got dtype {a.dtype}")
    if a.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array, got shape {a.shape}")
    if a.shape[0] == 0:
        raise ValueError(f"{name} is empty")
    a = a.astype(np.float64)
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or inf")
    return a


def _positive_int(v: Any, name: str, minimum: int = 1) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {v!r}")
    return int(v)


# ---------------------------------------------------------------------------------------------------
# Angles and centres
# ---------------------------------------------------------------------------------------------------


def _row_angles(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Angle in degrees between matching rows of two unit-row matrices.

    θ = 2·atan2(‖u − v‖, ‖u + v‖) is accurate near 0° and 180°, where arccos(u·v) is not.
    """
    return np.degrees(2.0 * np.arctan2(np.linalg.norm(u - v, axis=1), np.linalg.norm(u + v, axis=1)))


def angles_deg(a: Any, b: Any) -> np.ndarray:
    """Row-wise angle θ_i = ∠(a_i, b_i) in degrees between two (n, dim) arrays (directions only)."""
    ua, ub = _unit_rows(a, "a"), _unit_rows(b, "b")
    if ua.shape != ub.shape:
        raise ValueError(f"a and b must have the same shape, got {ua.shape} and {ub.shape}")
    return _row_angles(ua, ub)


def class_centres(embeddings: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    """Embedding-feature centres (Table 3): c_j = mean_i x̂_i / ‖mean_i x̂_i‖ over samples of class j.

    Returns ``(classes, centres)``: the sorted class ids present and one unit row per class.
    Raises ValueError when a class's normalised embeddings cancel out (a centre with no direction).
    """
    x = _unit_rows(embeddings, "embeddings")
    y = _int_labels(labels, "labels", x.shape[0])
    return _centres(x, y, "embeddings")


def _centres(x: np.ndarray, y: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    classes, inverse = np.unique(y, return_inverse=True)
    sums = np.zeros((classes.size, x.shape[1]))
    np.add.at(sums, inverse, x)
    norms = np.linalg.norm(sums, axis=1)
    bad = norms < 1e-9 * np.bincount(inverse)
    if bad.any():
        raise ValueError(
            f"the normalised {name} of class {int(classes[np.argmax(bad)])} sum to zero, "
            "so its embedding-feature centre has no direction"
        )
    return classes, sums / norms[:, None]


def centre_angles(centres: Any) -> np.ndarray:
    """Full (C, C) matrix of angles in degrees between the rows of ``centres`` (class weights W or
    embedding-feature centres).  Memory is C²; use :func:`nearest_centre_angles_deg` for many classes."""
    u = _unit_rows(centres, "centres")
    return np.degrees(np.arccos(np.clip(u @ u.T, -1.0, 1.0)))


def _min_other_angle(u: np.ndarray) -> np.ndarray:
    c = u.shape[0]
    chunk = max(1, (1 << 22) // c)  # bounded memory: about 4M cosines per block
    best = np.empty(c)
    for start in range(0, c, chunk):
        cos = u[start:start + chunk] @ u.T
        rows = np.arange(cos.shape[0])
        cos[rows, start + rows] = -np.inf
        best[start:start + chunk] = cos.max(axis=1)
    return np.degrees(np.arccos(np.clip(best, -1.0, 1.0)))


def nearest_centre_angles_deg(weight: Any) -> np.ndarray:
    """For each row j of ``weight`` (W or centres), min_{k≠j} ∠(W_j, W_k) in degrees.

    Its mean is W-Inter (Table 3) when given W, and Inter when given embedding-feature centres.
    Computed in blocks, so 100k classes fit in memory.  Needs at least two rows.
    """
    u = _unit_rows(weight, "weight")
    if u.shape[0] < 2:
        raise ValueError("the minimum angle to another centre needs at least two centres, got one")
    return _min_other_angle(u)


def _intra_inter(x: np.ndarray, y: np.ndarray, name: str) -> tuple[float, float, np.ndarray, np.ndarray]:
    classes, centres = _centres(x, y, name)
    if classes.size < 2:
        raise ValueError(f"Inter needs at least two classes, but {name} hold only class {int(classes[0])}")
    intra = float(_row_angles(x, centres[np.searchsorted(classes, y)]).mean())
    inter = float(_min_other_angle(centres).mean())
    return intra, inter, classes, centres


def angle_statistics(weight: Any, embeddings: Any, labels: Any, test_embeddings: Any = None,
                     test_labels: Any = None) -> dict[str, Any]:
    """The angle statistics of Table 3, in degrees.

    - W-EC = mean_j ∠(W_j, c_j) over classes j with samples (c_j = embedding-feature centre);
    - W-Inter = mean_j min_{k≠j} ∠(W_j, W_k) over all rows of W;
    - Intra = mean over samples i of ∠(x_i, c_{y_i}) (each sample counts once);
    - Inter = mean over classes j of min_{k≠j} ∠(c_j, c_k).

    "1" uses (embeddings, labels), the training set; "2" uses (test_embeddings, test_labels), whose
    identities may differ from the training set's (the paper's LFW) and are not matched against W.
    ``weight`` is W with shape (n_classes, dim), or None (the triplet loss has no classifier): then W-EC
    and W-Inter are None.  With W, labels must be row indices of W; classes with no training samples are
    left out of W-EC and listed under "skipped_classes".  Intra2/Inter2 are None without a test set.
    """
    x = _unit_rows(embeddings, "embeddings")
    y = _int_labels(labels, "labels", x.shape[0])
    out: dict[str, Any] = dict.fromkeys(TABLE3_ROWS)
    out["skipped_classes"] = []

    intra1, inter1, classes, centres = _intra_inter(x, y, "embeddings")
    out["Intra1"], out["Inter1"] = intra1, inter1

    if weight is not None:
        w = _unit_rows(weight, "weight")
        if w.shape[1] != x.shape[1]:
            hint = " (for W stored as (dim, n_classes), pass weight.T)" if w.shape[0] == x.shape[1] else ""
            raise ValueError(
                f"weight has shape {w.shape} but the embeddings have dim {x.shape[1]}: "
                f"expected (n_classes, {x.shape[1]}){hint}"
            )
        if w.shape[0] < 2:
            raise ValueError("W-Inter needs at least two classes in weight, got one")
        if classes[0] < 0 or classes[-1] >= w.shape[0]:
            raise ValueError(
                f"labels must be class indices 0..{w.shape[0] - 1} (rows of weight), "
                f"got labels from {int(classes[0])} to {int(classes[-1])}"
            )
        out["W-EC"] = float(_row_angles(w[classes], centres).mean())
        out["W-Inter"] = float(_min_other_angle(w).mean())
        out["skipped_classes"] = sorted(set(range(w.shape[0])) - set(classes.tolist()))

    if (test_embeddings is None) != (test_labels is None):
        raise ValueError("give both test_embeddings and test_labels, or neither")
    if test_embeddings is not None:
        xt = _unit_rows(test_embeddings, "test_embeddings")
        if xt.shape[1] != x.shape[1]:
            raise ValueError(f"test_embeddings have dim {xt.shape[1]} but embeddings have dim {x.shape[1]}")
        yt = _int_labels(test_labels, "test_labels", xt.shape[0])
        out["Intra2"], out["Inter2"], _, _ = _intra_inter(xt, yt, "test_embeddings")
    return out


# ---------------------------------------------------------------------------------------------------
# The gap between neighbouring identities (Fig. 3)
# ---------------------------------------------------------------------------------------------------

#: Fraction of each class's samples nearest the neighbour that :func:`neighbour_gaps` sets aside as outliers.
GAP_OUTLIERS = 0.02

#: The gap's definition in one paragraph, for help texts (pages and CLI say which gap they report).
GAP_HELP = (
    "Gap between two neighbouring identities: the angular width of the empty band between them. Each "
    "sample's angle to the line (in 3-D: the great circle) that bisects the two classes' feature centres "
    f"is measured; the {100 * GAP_OUTLIERS:.0f} % of each class nearest that line are set aside as outliers, "
    "and the nearest remaining sample of each side gives the band's edge. Neighbours are adjacent around "
    "the circle (2-D) or nearest centres (3-D). The number shown is the smallest gap, the one between the "
    "closest identities; a negative gap means the two classes overlap by that angle."
)


@dataclass(frozen=True)
class NeighbourGaps:
    """Gaps between neighbouring classes: ``pairs`` (k, 2) class ids, ``gaps_deg`` (k,) in degrees."""

    pairs: np.ndarray
    gaps_deg: np.ndarray

    @property
    def smallest(self) -> float:
        """The gap between the closest identities (the paper's "gap between the closest classes")."""
        return float(self.gaps_deg.min())

    @property
    def closest_pair(self) -> tuple[int, int]:
        a, b = self.pairs[int(np.argmin(self.gaps_deg))]
        return int(a), int(b)


def _neighbour_pairs(centres: np.ndarray) -> list[tuple[int, int]]:
    """Row pairs of neighbouring centres: adjacent around the circle in 2-D, each centre with its nearest
    other centre in higher dimensions (unordered, each pair once)."""
    k = centres.shape[0]
    if centres.shape[1] == 2:
        order = np.argsort(np.arctan2(centres[:, 1], centres[:, 0]))
        pairs = zip(order, np.roll(order, -1), strict=True)
    else:
        cos = centres @ centres.T
        np.fill_diagonal(cos, -np.inf)
        pairs = zip(range(k), cos.argmax(axis=1), strict=True)
    return sorted({(int(min(a, b)), int(max(a, b))) for a, b in pairs})


def quantile(values: np.ndarray, q: float) -> float:
    """``np.quantile(values, q)`` (its default, linear method), to the bit: the two order statistics around the
    virtual index (n − 1)·q from a partial sort, then numpy's lerp.  About 3× faster for the short arrays of a
    live frame, where np.quantile's generality costs most of the time."""
    v = np.asarray(values, dtype=np.float64).ravel()
    n = v.size
    if n == 0 or np.isnan(v).any():
        return float(np.quantile(v, q)) if n else float("nan")
    virtual = (n - 1) * q
    lo = int(np.clip(np.floor(virtual), 0, n - 1))
    hi = min(lo + 1, n - 1)
    part = np.partition(v, (lo, hi))
    a, b = part[lo], part[hi]
    t = virtual - np.floor(virtual) if virtual < n - 1 else 0.0  # past the last value: the last value
    d = b - a
    return float(b - d * (1.0 - t) if t >= 0.5 else a + d * t)


def neighbour_gaps(embeddings: Any, labels: Any, outliers: float = GAP_OUTLIERS) -> NeighbourGaps:
    """The empty band between each pair of neighbouring classes, in degrees (Fig. 3's visible gap).

    For neighbours a, b with embedding-feature centres c_a, c_b, n = (c_a − c_b)/‖c_a − c_b‖ is the normal
    of the hyperplane that bisects them; a sample's signed angle to it is asin(x̂·n) (positive on a's side).
    The gap is q_a + q_b, where q_a is the ``outliers`` quantile of class a's signed angles and q_b that of
    class b's (sign flipped): the band between the two classes' nearest samples, a few outliers set aside.
    In 2-D this is exactly the empty arc between them (while the pair's samples lie within 90° of the
    bisector, as neighbours' do); negative means the classes overlap.  Neighbours:
    adjacent centres around the circle in 2-D, nearest centres in more dimensions.  Classes whose centres
    coincide overlap completely: their gap is −180°.  Needs at least two classes.
    """
    x = _unit_rows(embeddings, "embeddings")
    y = _int_labels(labels, "labels", x.shape[0])
    if not 0.0 <= outliers < 0.5:
        raise ValueError(f"outliers must be in [0, 0.5), got {outliers}")
    classes, centres = _centres(x, y, "embeddings")
    if classes.size < 2:
        raise ValueError(f"a gap needs at least two classes, but the labels hold only class {int(classes[0])}")
    members = [x[y == c] for c in classes]
    pairs, gaps = [], []
    for a, b in _neighbour_pairs(centres):
        n = centres[a] - centres[b]
        norm = np.linalg.norm(n)
        if norm < 1e-9:
            gap = -180.0
        else:
            side_a = np.degrees(np.arcsin(np.clip(members[a] @ (n / norm), -1.0, 1.0)))
            side_b = np.degrees(np.arcsin(np.clip(members[b] @ (-n / norm), -1.0, 1.0)))
            gap = float(quantile(side_a, outliers) + quantile(side_b, outliers))
        pairs.append((int(classes[a]), int(classes[b])))
        gaps.append(gap)
    return NeighbourGaps(np.array(pairs, dtype=np.int64).reshape(-1, 2), np.array(gaps))


def gap_deg(embeddings: Any, labels: Any, outliers: float = GAP_OUTLIERS) -> float:
    """The gap between the closest neighbouring identities, degrees: ``neighbour_gaps(...).smallest``."""
    return neighbour_gaps(embeddings, labels, outliers).smallest


# ---------------------------------------------------------------------------------------------------
# Pair angles (Fig. 6/7)
# ---------------------------------------------------------------------------------------------------

_ENUMERATE_FACTOR = 50  # enumerate all pairs (then subsample without replacement) up to 50 × max_pairs


def _all_positive(order: np.ndarray, starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    parts = []
    for s, n in zip(starts, counts, strict=True):
        if n >= 2:
            a, b = np.triu_indices(n, 1)
            parts.append(np.stack([order[s + a], order[s + b]], axis=1))
    return np.concatenate(parts) if parts else np.empty((0, 2), dtype=np.int64)


def _all_negative(order: np.ndarray, starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    parts = []
    for s, n in zip(starts, counts, strict=True):
        left, right = order[s:s + n], order[s + n:]
        if right.size:
            parts.append(np.stack([np.repeat(left, right.size), np.tile(right, left.size)], axis=1))
    return np.concatenate(parts) if parts else np.empty((0, 2), dtype=np.int64)


def sample_pairs(labels: Any, max_pairs: int = 10_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (i, j), i ≠ j, of same-class (positive) and different-class (negative) samples.

    Returns ``(pos, neg)``, int arrays of shape (≤ max_pairs, 2).  When a kind has at most max_pairs
    pairs, all of them are returned in a fixed order; up to 50 × max_pairs they are subsampled without
    replacement; beyond that they are drawn uniformly with replacement (duplicates then ≤ 1 %).
    Deterministic for a given seed.  Needs two classes and one class with two samples.
    """
    raw = _to_numpy(labels, "labels")
    y = _int_labels(raw, "labels", raw.shape[0] if raw.ndim == 1 else -1)
    max_pairs = _positive_int(max_pairs, "max_pairs")
    seed = _positive_int(seed, "seed", 0)
    order = np.argsort(y, kind="stable")
    classes, starts, counts = np.unique(y[order], return_index=True, return_counts=True)
    if classes.size < 2:
        raise ValueError("pairs need at least two classes (for negative pairs), got one")
    n = y.size
    n_pos = int((counts * (counts - 1) // 2).sum())
    n_neg = int((n * n - int((counts * counts).sum())) // 2)
    if n_pos == 0:
        raise ValueError("no class has two samples, so there are no positive pairs")
    rng = np.random.default_rng(seed)

    def pick(total: int, enumerate_all, draw) -> np.ndarray:
        if total <= max_pairs:
            return enumerate_all()
        if total <= _ENUMERATE_FACTOR * max_pairs:
            pairs = enumerate_all()
            return pairs[np.sort(rng.choice(total, size=max_pairs, replace=False))]
        return draw()

    def draw_pos() -> np.ndarray:
        weights = counts * (counts - 1) / 2.0
        cls = rng.choice(classes.size, size=max_pairs, p=weights / weights.sum())
        a = rng.integers(0, counts[cls])
        b = rng.integers(0, counts[cls] - 1)
        b = b + (b >= a)  # a uniform second member, different from the first
        return np.stack([order[starts[cls] + a], order[starts[cls] + b]], axis=1)

    def draw_neg() -> np.ndarray:
        others = (n - counts).astype(float)  # sample i ∝ how many partners it has: uniform over pairs
        cls_of = np.searchsorted(classes, y)
        i = rng.choice(n, size=max_pairs, p=others[cls_of] / others[cls_of].sum())
        ci = cls_of[i]
        r = rng.integers(0, n - counts[ci])  # position among the sorted samples outside class ci
        r = r + counts[ci] * (r >= starts[ci])
        return np.stack([i, order[r]], axis=1)

    pos = pick(n_pos, lambda: _all_positive(order, starts, counts), draw_pos)
    neg = pick(n_neg, lambda: _all_negative(order, starts, counts), draw_neg)
    return pos.astype(np.int64), neg.astype(np.int64)


def pair_angles(embeddings: Any, labels: Any, max_pairs: int = 10_000,
                seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Angles ∠(x_i, x_j) in degrees of positive (same class) and negative pairs — Fig. 6/7.

    Pairs come from :func:`sample_pairs` (at most max_pairs of each kind, deterministic for a seed).
    """
    x = _unit_rows(embeddings, "embeddings")
    y = _int_labels(labels, "labels", x.shape[0])
    pos, neg = sample_pairs(y, max_pairs=max_pairs, seed=seed)
    return _row_angles(x[pos[:, 0]], x[pos[:, 1]]), _row_angles(x[neg[:, 0]], x[neg[:, 1]])


def verification_pairs(labels: Any, n_pairs: int = 6000,
                       seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Balanced LFW-style pairs from labelled embeddings: ``(idx_a, idx_b, issame)``.

    k = min(#positive, #negative, n_pairs // 2) pairs of each kind from :func:`sample_pairs`, shuffled
    and interleaved same/different, so every contiguous fold of :func:`verification_folds` holds both
    kinds (as LFW's 6,000 pairs = 10 folds × (300 same + 300 different) do).  Deterministic for a seed.
    """
    n_pairs = _positive_int(n_pairs, "n_pairs", 2)
    pos, neg = sample_pairs(labels, max_pairs=n_pairs // 2, seed=seed)
    rng = np.random.default_rng([_positive_int(seed, "seed", 0), 1])
    k = min(len(pos), len(neg))
    pos, neg = pos[rng.permutation(len(pos))[:k]], neg[rng.permutation(len(neg))[:k]]
    pairs = np.empty((2 * k, 2), dtype=np.int64)
    pairs[0::2], pairs[1::2] = pos, neg
    issame = np.zeros(2 * k, dtype=bool)
    issame[0::2] = True
    return pairs[:, 0], pairs[:, 1], issame


def histogram_overlap(pos: Any, neg: Any, bins: int | Sequence[float] = 90,
                      value_range: tuple[float, float] | None = (0.0, 180.0)) -> float:
    """Overlap Σ_k min(p_k, q_k) of two histograms each normalised to sum 1 (Fig. 6/7): 1 = identical,
    0 = no bin shared.  ``bins`` is a count over ``value_range`` (None: the joint min..max of the values)
    or the bin edges; every value must fall inside the bins."""
    p, q = _scores(pos, "pos"), _scores(neg, "neg")
    if isinstance(bins, (int, np.integer)) and not isinstance(bins, bool):
        nb = _positive_int(bins, "bins")
        if value_range is None:
            lo, hi = float(min(p.min(), q.min())), float(max(p.max(), q.max()))
            if hi <= lo:
                hi = lo + 1.0
        else:
            lo, hi = float(value_range[0]), float(value_range[1])
            if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
                raise ValueError(f"value_range must be (low, high) with low < high, got {value_range!r}")
        edges = np.linspace(lo, hi, nb + 1)
    else:
        edges = _scores(bins, "bins")
        if edges.size < 2 or not (np.diff(edges) > 0).all():
            raise ValueError("bins must be at least two strictly increasing edges")
    for name, v in (("pos", p), ("neg", q)):
        if v.min() < edges[0] or v.max() > edges[-1]:
            raise ValueError(
                f"{name} has values outside the bins [{edges[0]:g}, {edges[-1]:g}]: "
                f"min {v.min():g}, max {v.max():g}"
            )
    hp = np.histogram(p, bins=edges)[0] / p.size
    hq = np.histogram(q, bins=edges)[0] / q.size
    return float(np.clip(np.minimum(hp, hq).sum(), 0.0, 1.0))


# ---------------------------------------------------------------------------------------------------
# Verification and identification (section 4)
# ---------------------------------------------------------------------------------------------------

#: squared-L2 threshold grid of the LFW protocol (insightface verification.py): 0, 0.01, …, 4
LFW_THRESHOLDS: np.ndarray = np.round(np.arange(401) * 0.01, 2)


@dataclass(frozen=True)
class VerificationResult:
    """Per-fold outcome of the LFW protocol: held-out accuracy and the threshold chosen on the rest."""

    accuracies: np.ndarray  # (folds,)
    thresholds: np.ndarray  # (folds,) squared-L2 thresholds
    mean: float
    std: float


def _pair_inputs(emb_a: Any, emb_b: Any, issame: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    a, b = _unit_rows(emb_a, "emb_a"), _unit_rows(emb_b, "emb_b")
    if a.shape != b.shape:
        raise ValueError(f"emb_a and emb_b must have the same shape, got {a.shape} and {b.shape}")
    same = _bool_vector(issame, "issame", a.shape[0])
    if same.all() or not same.any():
        raise ValueError("issame must contain both same (True) and different (False) pairs")
    return a, b, same


def verification_folds(emb_a: Any, emb_b: Any, issame: Any, folds: int = 10) -> VerificationResult:
    """LFW verification protocol (section 4), fold by fold.

    Embeddings are L2-normalised; d = ‖â − b̂‖² ∈ [0, 4]; a pair is called "same" when d < t.  The pairs
    are split into ``folds`` contiguous folds (as sklearn's KFold without shuffling: the first n mod folds
    folds one pair larger; written out here, because importing sklearn costs seconds); for each fold t is the grid
    value (0..4 step 0.01) with the best accuracy on the other folds (the smallest such t on ties), and
    the accuracy is measured on the held-out fold.  std is the population std (ddof=0), as insightface.
    """
    a, b, same = _pair_inputs(emb_a, emb_b, issame)
    folds = _positive_int(folds, "folds", 2)
    if a.shape[0] < folds:
        raise ValueError(f"{folds} folds need at least {folds} pairs, got {a.shape[0]}")
    dist = np.sum((a - b) ** 2, axis=1)
    accs, thrs = [], []
    for test in np.array_split(np.arange(dist.size), folds):
        train = np.ones(dist.size, dtype=bool)
        train[test] = False
        d_same, d_diff = np.sort(dist[train][same[train]]), np.sort(dist[train][~same[train]])
        # right(t) = #same with d < t + #different with d >= t, for every grid t at once
        right = np.searchsorted(d_same, LFW_THRESHOLDS) + d_diff.size - np.searchsorted(d_diff, LFW_THRESHOLDS)
        t = LFW_THRESHOLDS[int(np.argmax(right))]
        thrs.append(t)
        accs.append(np.mean((dist[test] < t) == same[test]))
    accs_a = np.asarray(accs)
    return VerificationResult(accs_a, np.asarray(thrs), float(accs_a.mean()), float(accs_a.std()))


def verification_accuracy(emb_a: Any, emb_b: Any, issame: Any, folds: int = 10) -> tuple[float, float]:
    """LFW-protocol verification accuracy (mean, std) over folds, as fractions in [0, 1] (Table 2 uses %).

    See :func:`verification_folds` for the protocol and the chosen thresholds.
    """
    r = verification_folds(emb_a, emb_b, issame, folds=folds)
    return r.mean, r.std


def tar_at_far(scores: Any, issame: Any, far: float) -> float:
    """True-accept rate at a false-accept rate (section 4, IJB-C / MegaFace style).

    ``scores`` are similarities (higher = more likely the same identity, e.g. cos θ).  From sklearn's ROC
    curve, returns the TPR of the operating point with the largest FPR ≤ far — no interpolation, so the
    result is never computed at a FAR above the one asked for.  With n negative pairs FAR moves in steps
    of 1/n: below 1/n this is the TAR at FAR = 0.
    """
    from sklearn.metrics import roc_curve

    s = _scores(scores, "scores")
    same = _bool_vector(issame, "issame", s.size)
    if same.all() or not same.any():
        raise ValueError("issame must contain both same (True) and different (False) pairs")
    if isinstance(far, bool) or not isinstance(far, (int, float, np.floating)) or not 0.0 <= far <= 1.0:
        raise ValueError(f"far must be a number in [0, 1], got {far!r}")
    fpr, tpr, _ = roc_curve(same, s, drop_intermediate=False)
    return float(tpr[fpr <= far].max())  # the first point (fpr = 0) always qualifies


def rank1_identification(gallery_emb: Any, gallery_labels: Any, probe_emb: Any, probe_labels: Any) -> float:
    """Closed-set rank-1 identification rate (section 4): the fraction of probes whose nearest gallery
    item (largest cos θ; the first on ties) has the probe's identity.  Every probe identity must be in
    the gallery."""
    g = _unit_rows(gallery_emb, "gallery_emb")
    gy = _int_labels(gallery_labels, "gallery_labels", g.shape[0])
    p = _unit_rows(probe_emb, "probe_emb")
    py = _int_labels(probe_labels, "probe_labels", p.shape[0])
    if g.shape[1] != p.shape[1]:
        raise ValueError(f"gallery_emb has dim {g.shape[1]} but probe_emb has dim {p.shape[1]}")
    missing = np.setdiff1d(py, gy)
    if missing.size:
        raise ValueError(
            f"{missing.size} probe identities are not in the gallery (e.g. {int(missing[0])}); "
            "rank-1 identification is closed-set"
        )
    chunk = max(1, (1 << 22) // g.shape[0])
    nearest = np.concatenate([np.argmax(p[s:s + chunk] @ g.T, axis=1) for s in range(0, p.shape[0], chunk)])
    return float(np.mean(gy[nearest] == py))


# ---------------------------------------------------------------------------------------------------
# Saved embeddings
# ---------------------------------------------------------------------------------------------------

NPZ_REQUIRED = ("embeddings", "labels")
NPZ_OPTIONAL = ("weight", "test_embeddings", "test_labels")


def load_embeddings_npz(path: str | os.PathLike[str]) -> dict[str, np.ndarray | None]:
    """Read embeddings saved with ``np.savez(path, embeddings=..., labels=..., [weight=...,
    test_embeddings=..., test_labels=...])``.

    Returns a dict with all five keys (None for absent optional ones), checked for shapes and values.
    Raises FileNotFoundError for a missing file and ValueError for anything else wrong with it.
    """
    p = os.fspath(path)
    if not os.path.exists(p):
        raise FileNotFoundError(f"no such file: {p}")
    if os.path.isdir(p):
        raise ValueError(f"{p} is a directory, expected an .npz file")
    try:
        data = np.load(p, allow_pickle=False)
    except PermissionError as exc:
        raise ValueError(f"{p} cannot be read: {exc.strerror}") from None
    except (ValueError, OSError, EOFError, zipfile.BadZipFile):
        raise ValueError(f"{p} is not a readable .npz file (expected an archive written by np.savez)") from None
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise ValueError(f"{p} holds a single array (.npy), expected an .npz archive made with np.savez")
    try:
        arrays = {k: data[k] for k in data.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{p} has an array that cannot be read ({exc})") from None
    finally:
        data.close()
    missing = [k for k in NPZ_REQUIRED if k not in arrays]
    if missing:
        raise ValueError(
            f"{p} lacks the key(s) {', '.join(missing)}; it has {', '.join(sorted(arrays)) or 'no arrays'}"
        )
    out: dict[str, np.ndarray | None] = {k: arrays.get(k) for k in NPZ_REQUIRED + NPZ_OPTIONAL}
    x = _float_matrix(out["embeddings"], "embeddings")
    _int_labels(out["labels"], "labels", x.shape[0])
    if out["weight"] is not None:
        w = _float_matrix(out["weight"], "weight")
        if w.shape[1] != x.shape[1]:
            raise ValueError(f"weight has shape {w.shape}, expected (n_classes, {x.shape[1]})")
    if (out["test_embeddings"] is None) != (out["test_labels"] is None):
        raise ValueError(f"{p} must have both test_embeddings and test_labels, or neither")
    if out["test_embeddings"] is not None:
        xt = _float_matrix(out["test_embeddings"], "test_embeddings")
        if xt.shape[1] != x.shape[1]:
            raise ValueError(f"test_embeddings have dim {xt.shape[1]} but embeddings have dim {x.shape[1]}")
        _int_labels(out["test_labels"], "test_labels", xt.shape[0])
    return out
