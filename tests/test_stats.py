"""Table-3 statistics, pair angles and verification metrics on cases worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from arcface_viz import stats as S


def unit2(deg) -> np.ndarray:
    """Points on the unit circle at the given angles in degrees."""
    r = np.radians(np.asarray(deg, dtype=float))
    return np.stack([np.cos(r), np.sin(r)], axis=-1)


# ---- a constructed 2-D geometry ------------------------------------------------------------------
# centres at 0°, 60°, 150°, 270°: min angle to another centre 60, 60, 90, 90 -> Inter = 75
# samples at centre ± offset with unequal norms (1 and 5): offsets 10 (2 samples), 20 (4), 5 (2), 30 (2)
#   Intra (mean over samples) = (2·10 + 4·20 + 2·5 + 2·30) / 10 = 17   (mean over classes would be 16.25)
# W at 4°, 52°, 150°, 282°: W-EC = (4 + 8 + 0 + 12) / 4 = 6
#   W-Inter: min angles 48, 48, 98, 82 -> 69
CENTRES = [0.0, 60.0, 150.0, 270.0]
W_DEG = [4.0, 52.0, 150.0, 282.0]


def geometry():
    angles, labels, norms = [], [], []
    for cls, (c, offs) in enumerate(zip(CENTRES, [[10], [20, 20], [5], [30]], strict=True)):
        for o in offs:
            angles += [c + o, c - o]
            norms += [1.0, 5.0]
            labels += [cls, cls]
    x = unit2(angles) * np.asarray(norms)[:, None]
    w = unit2(W_DEG) * np.array([[0.5], [2.0], [3.0], [1.0]])
    return w, x, np.asarray(labels)


def test_table3_statistics_on_constructed_geometry():
    w, x, y = geometry()
    out = S.angle_statistics(w, x, y)
    assert out["W-EC"] == pytest.approx(6.0, abs=1e-9)
    assert out["W-Inter"] == pytest.approx(69.0, abs=1e-9)
    assert out["Intra1"] == pytest.approx(17.0, abs=1e-9)
    assert out["Inter1"] == pytest.approx(75.0, abs=1e-9)
    assert out["Intra2"] is None and out["Inter2"] is None
    assert out["skipped_classes"] == []


def test_class_without_samples_is_skipped_for_w_ec_but_counts_in_w_inter():
    w, x, y = geometry()
    w5 = np.vstack([w, unit2([200.0])])  # class 4 has no samples
    out = S.angle_statistics(w5, x, y)
    assert out["skipped_classes"] == [4]
    assert out["W-EC"] == pytest.approx(6.0, abs=1e-9)
    # W at 4, 52, 150, 282, 200: min angles 48, 48, 50, 82, 50
    assert out["W-Inter"] == pytest.approx(55.6, abs=1e-9)
    assert out["Inter1"] == pytest.approx(75.0, abs=1e-9)


def test_test_set_statistics_in_3d_with_identities_unknown_to_w():
    # centres e1, e2, e3 (Inter2 = 90); three samples per class 20° off its axis, 120° apart around it
    delta, phis = np.radians(20.0), np.radians([0.0, 120.0, 240.0])
    ring = np.stack([np.full(3, np.cos(delta)), np.sin(delta) * np.cos(phis), np.sin(delta) * np.sin(phis)], 1)
    xt = np.vstack([np.roll(ring, k, axis=1) for k in range(3)])
    yt = np.repeat([100, 200, 300], 3)  # not rows of W: the test identities differ from training
    x = np.eye(3)[[0, 0, 1, 1]] + np.array([[0, 0.1, 0], [0, -0.1, 0], [0.1, 0, 0], [-0.1, 0, 0]])
    out = S.angle_statistics(np.eye(3), x, [0, 0, 1, 1], xt, yt)
    assert out["Intra2"] == pytest.approx(20.0, abs=1e-9)
    assert out["Inter2"] == pytest.approx(90.0, abs=1e-9)
    assert out["Intra1"] == pytest.approx(np.degrees(np.arctan(0.1)), abs=1e-9)
    assert out["W-EC"] == pytest.approx(0.0, abs=1e-9)
    assert out["W-Inter"] == pytest.approx(90.0, abs=1e-9)
    assert out["skipped_classes"] == [2]


def test_without_weight_w_statistics_are_none():
    _, x, y = geometry()
    out = S.angle_statistics(None, x, y, x, y)
    assert out["W-EC"] is None and out["W-Inter"] is None
    assert out["Intra1"] == pytest.approx(17.0) and out["Intra2"] == pytest.approx(17.0)
    assert out["Inter2"] == pytest.approx(75.0)


def test_torch_tensors_give_the_same_numbers():
    w, x, y = geometry()
    a = S.angle_statistics(w, x, y)
    b = S.angle_statistics(torch.tensor(w, dtype=torch.float32), torch.tensor(x), torch.tensor(y))
    for k in S.TABLE3_ROWS[:4]:
        assert b[k] == pytest.approx(a[k], abs=1e-4)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_scaling_permuting_classes_and_rotating_change_nothing(seed):
    rng = np.random.default_rng(seed)
    c, d = 5, 4
    w = rng.normal(size=(c + 1, d))  # the last class gets no samples
    y = np.concatenate([np.arange(c), rng.integers(0, c, 25)])
    x = w[y] + 0.4 * rng.normal(size=(y.size, d))
    xt, yt = x[:12] + 0.1, y[:12]
    base = S.angle_statistics(w, x, y, xt, yt)

    perm = rng.permutation(c + 1)  # class j becomes perm[j]
    w_p = np.empty_like(w)
    w_p[perm] = w * rng.uniform(0.1, 10, size=(c + 1, 1))
    order = rng.permutation(y.size)  # and shuffle the samples too
    x_s = x[order] * rng.uniform(0.1, 10, size=(y.size, 1))
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))  # a rotation (or reflection) of the whole space
    moved = S.angle_statistics(w_p @ q, x_s @ q, perm[y[order]], (xt * 3) @ q, perm[yt])
    for k in S.TABLE3_ROWS:
        assert moved[k] == pytest.approx(base[k], abs=1e-6)
    assert moved["skipped_classes"] == [int(perm[c])]


def test_centre_helpers():
    u = unit2([0.0, 90.0, 100.0]) * [[1.0], [2.0], [0.3]]
    assert S.nearest_centre_angles_deg(u) == pytest.approx([90.0, 10.0, 10.0])
    m = S.centre_angles(u)
    assert m == pytest.approx(np.array([[0, 90, 100], [90, 0, 10], [100, 10, 0]]), abs=1e-6)
    classes, centres = S.class_centres(unit2([10.0, -10.0, 80.0]) * [[1.0], [9.0], [2.0]], [3, 3, 7])
    assert classes.tolist() == [3, 7]
    assert centres == pytest.approx(unit2([0.0, 80.0]))
    assert S.angles_deg(unit2([0.0, 45.0]), unit2([180.0, 44.0])) == pytest.approx([180.0, 1.0])


def test_min_centre_angle_in_blocks_matches_the_full_matrix():
    rng = np.random.default_rng(3)
    u = rng.normal(size=(2500, 3))  # more rows than one block holds
    full = S.centre_angles(u)
    np.fill_diagonal(full, np.inf)
    assert S.nearest_centre_angles_deg(u) == pytest.approx(full.min(axis=1), abs=1e-6)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"embeddings": np.array([[1.0, np.nan], [0, 1]])}, "NaN or inf"),
        ({"embeddings": np.array([[1.0, 0], [0, 0]])}, "zero-norm"),
        ({"embeddings": np.ones((2, 2, 2))}, "2-D"),
        ({"embeddings": np.array([["a", "b"], ["c", "d"]])}, "real numbers"),
        ({"labels": [0, 1, 1]}, "3 entries but there are 2"),
        ({"labels": [0.5, 1]}, "whole numbers"),
        ({"labels": [True, False]}, "integer class ids"),
        ({"labels": [0, 0]}, "at least two classes"),
        ({"weight": np.eye(3)}, "expected \\(n_classes, 2\\)"),
        ({"weight": np.ones((1, 2))}, "at least two classes in weight"),
        ({"labels": [0, 5]}, "class indices 0..1"),
        ({"test_embeddings": np.eye(2)}, "both test_embeddings and test_labels"),
        ({"test_embeddings": np.eye(3), "test_labels": [0, 1, 2]}, "dim 3"),
        ({"test_embeddings": np.eye(2), "test_labels": [4, 4]}, "at least two classes"),
    ],
)
def test_angle_statistics_rejects_bad_input(kwargs, match):
    args = {"weight": np.eye(2), "embeddings": np.eye(2), "labels": [0, 1]} | kwargs
    with pytest.raises(ValueError, match=match):
        S.angle_statistics(**args)


def test_weight_in_pytorch_metric_learning_layout_gets_a_hint():
    x = np.random.default_rng(0).normal(size=(6, 3))
    with pytest.raises(ValueError, match="weight.T"):
        S.angle_statistics(np.ones((3, 5)), x, [0, 1, 2, 3, 4, 0])


def test_class_whose_embeddings_cancel_has_no_centre():
    with pytest.raises(ValueError, match="class 1 sum to zero"):
        S.angle_statistics(None, unit2([0.0, 90.0, 270.0]), [0, 1, 1])


# ---- pair angles (Fig. 6/7) ----------------------------------------------------------------------


# ---- the gap between neighbouring identities (Fig. 3) -------------------------------------------
# classes at 0..20°, 50..70°, 150..160°, 250..270° (norms 1 and 3 alternate): centres 10°, 60°, 155°, 260°.
# Neighbours around the circle and their empty arcs: (0,1) 20→50 = 30°, (1,2) 70→150 = 80°,
# (2,3) 160→250 = 90°, (3,0) 270→360 = 90°.  Smallest: 30° between classes 0 and 1.
ARCS = {0: [0, 10, 20], 1: [50, 60, 70], 2: [150, 160], 3: [250, 260, 270]}


def arcs(spec=ARCS):
    deg = [a for c in spec for a in spec[c]]
    labels = [c for c in spec for _ in spec[c]]
    return unit2(deg) * np.resize([1.0, 3.0], len(deg))[:, None], np.asarray(labels)


def test_neighbour_gaps_by_hand_in_2d():
    x, y = arcs()
    g = S.neighbour_gaps(x, y, outliers=0.0)
    assert g.pairs.tolist() == [[0, 1], [0, 3], [1, 2], [2, 3]]
    assert g.gaps_deg == pytest.approx([30.0, 90.0, 80.0, 90.0])
    assert g.smallest == pytest.approx(30.0) and g.closest_pair == (0, 1)
    assert S.gap_deg(x, y, outliers=0.0) == pytest.approx(30.0)
    assert S.gap_deg(torch.as_tensor(x), torch.as_tensor(y), outliers=0.0) == pytest.approx(30.0)


def test_a_stray_sample_is_an_outlier_and_overlap_is_negative():
    # class 1 gets a stray sample at 25°: without outliers set aside the band is 20→25 = 5°; with the
    # nearest 25 % of each class set aside (quantile 0.25 of 4 samples: between the 1st and 2nd nearest)
    # the stray no longer decides the gap, which stays well above 5°.
    x, y = arcs({**ARCS, 1: [25, 50, 60, 70]})
    assert S.neighbour_gaps(x, y, outliers=0.0).gaps_deg[0] == pytest.approx(5.0)
    assert S.neighbour_gaps(x, y, outliers=0.25).gaps_deg[0] > 15.0
    # interleaved classes: class 1 reaches 10° into class 0's arc -> gap −10°
    x, y = arcs({0: [0, 10, 20], 1: [10, 40, 50], 2: [180]})
    assert S.neighbour_gaps(x, y, outliers=0.0).gaps_deg[0] == pytest.approx(-10.0, abs=1e-6)
    # classes whose centres coincide overlap completely
    x, y = arcs({0: [0, 20], 1: [10], 2: [180]})
    x, y = np.vstack([x, unit2([10])]), np.append(y, 0)
    assert S.neighbour_gaps(x, y, outliers=0.0).smallest == -180.0


@settings(max_examples=40, deadline=None)
@given(st.integers(3, 9), st.integers(0, 10_000))
def test_2d_gap_is_the_empty_arc_between_neighbours(n, seed):
    """Independent check: sort every sample's angle and measure the empty arcs between classes directly."""
    rng = np.random.default_rng(seed)
    cuts = np.sort(rng.uniform(0, 360, 2 * n))  # class c fills [cuts[2c], cuts[2c+1]], holes in between
    deg, labels = [], []
    for c in range(n):
        lo, hi = cuts[2 * c], cuts[2 * c + 1]
        deg += [lo, hi, *rng.uniform(lo, hi, 5)]
        labels += [c] * 7
    holes = [(cuts[(2 * c + 2) % (2 * n)] - cuts[2 * c + 1]) % 360 for c in range(n)]
    # the band is measured from the bisector of the two centres: the arc and the measured band agree while
    # every sample of the pair lies within 90° of it (asin reaches no further; such pairs are far apart)
    centres = np.degrees(np.angle([np.exp(1j * np.radians(deg[7 * c:7 * c + 7])).mean() for c in range(n)]))
    for c in range(n):
        mid = centres[c] + ((centres[(c + 1) % n] - centres[c]) % 360) / 2
        pair = deg[7 * c:7 * c + 7] + deg[7 * ((c + 1) % n):7 * ((c + 1) % n) + 7]
        assume(max(abs((d - mid + 180) % 360 - 180) for d in pair) < 90)
    g = S.neighbour_gaps(unit2(deg), labels, outliers=0.0)
    assert sorted(g.gaps_deg) == pytest.approx(sorted(holes), abs=1e-6)


def test_gap_in_3d_is_measured_across_the_bisecting_great_circle():
    # two classes mirrored across the equator (latitudes ±10..±30°), a third far away: the bisecting
    # plane of the first two is the equator, so their gap is 10° + 10°.
    def at(lat, lon):
        la, lo = np.radians(lat), np.radians(lon)
        return np.array([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)])

    pts = [at(s * lat, lon) for s in (1, -1) for lat in (10, 20, 30) for lon in (-5, 0, 5)]
    x = np.array(pts + [at(0, 180)])
    y = np.array([0] * 9 + [1] * 9 + [2])
    g = S.neighbour_gaps(x, y, outliers=0.0)
    assert g.closest_pair == (0, 1) and g.smallest == pytest.approx(20.0)


def test_gap_errors():
    x, y = arcs()
    with pytest.raises(ValueError, match="two classes"):
        S.neighbour_gaps(x[:3], y[:3])
    with pytest.raises(ValueError, match="outliers"):
        S.neighbour_gaps(x, y, outliers=0.5)
    with pytest.raises(ValueError, match="NaN"):
        S.neighbour_gaps(np.full_like(x, np.nan), y)
    with pytest.raises(ValueError, match="entries"):
        S.neighbour_gaps(x, y[:-1])


def test_pair_angles_enumerate_small_sets_exactly():
    x = unit2([0.0, 30.0, 90.0, 100.0, 120.0]) * [[1], [2], [3], [4], [5]]
    pos, neg = S.pair_angles(x, [0, 0, 1, 1, 1], max_pairs=6)
    assert np.sort(pos) == pytest.approx([10, 20, 30, 30])
    assert np.sort(neg) == pytest.approx([60, 70, 90, 90, 100, 120])


@pytest.mark.parametrize("n, max_pairs", [(60, 100), (2000, 100)])  # subsampled, then drawn
def test_sampled_pairs_are_bounded_valid_and_deterministic(n, max_pairs):
    y = np.random.default_rng(1).integers(0, 3 if n == 60 else 10, n)
    pos, neg = S.sample_pairs(y, max_pairs=max_pairs, seed=5)
    assert pos.shape == (max_pairs, 2) and neg.shape == (max_pairs, 2)
    assert (pos[:, 0] != pos[:, 1]).all()
    assert (y[pos[:, 0]] == y[pos[:, 1]]).all() and (y[neg[:, 0]] != y[neg[:, 1]]).all()
    assert pos.min() >= 0 and max(pos.max(), neg.max()) < n
    again = S.sample_pairs(y, max_pairs=max_pairs, seed=5)
    assert np.array_equal(pos, again[0]) and np.array_equal(neg, again[1])
    other = S.sample_pairs(y, max_pairs=max_pairs, seed=6)
    assert not np.array_equal(pos, other[0])
    if n == 60:  # 570 positive pairs ≤ 50 × 100: a subsample without replacement
        assert len({tuple(p) for p in pos}) == max_pairs


def test_drawn_positive_pairs_are_uniform_over_pairs_not_over_classes():
    # class 0 has 1 pair, class 1 has 1225: a per-class draw would give ~half class-0 pairs
    y = np.array([0, 0] + [1] * 50)
    pos, _ = S.sample_pairs(y, max_pairs=20, seed=0)
    assert (y[pos[:, 0]] == 0).sum() <= 2


def test_drawn_pairs_never_pair_a_sample_with_itself():
    y = np.repeat(np.arange(1500), 2)  # 1500 positive pairs > 50 × 20: drawn with replacement
    pos, neg = S.sample_pairs(y, max_pairs=20, seed=0)
    assert (pos[:, 0] != pos[:, 1]).all() and (y[pos[:, 0]] == y[pos[:, 1]]).all()
    assert (y[neg[:, 0]] != y[neg[:, 1]]).all()


def test_pair_angle_errors():
    with pytest.raises(ValueError, match="two classes"):
        S.pair_angles(np.eye(3), [1, 1, 1])
    with pytest.raises(ValueError, match="no positive pairs"):
        S.pair_angles(np.eye(3), [0, 1, 2])
    with pytest.raises(ValueError, match="max_pairs"):
        S.pair_angles(np.eye(3), [0, 0, 1], max_pairs=0)


def test_histogram_overlap_by_hand():
    pos, neg = [10, 10, 30, 30], [30, 50, 50, 50]
    # bins [0,20) [20,40) [40,60]: p = (.5, .5, 0), q = (0, .25, .75) -> overlap .25
    assert S.histogram_overlap(pos, neg, bins=[0, 20, 40, 60]) == pytest.approx(0.25)
    assert S.histogram_overlap(neg, pos, bins=3, value_range=(0, 60)) == pytest.approx(0.25)
    assert S.histogram_overlap(pos, pos) == pytest.approx(1.0)
    assert S.histogram_overlap([10, 11], [170, 171]) == 0.0
    assert S.histogram_overlap([1.0, 2.0], [1.5, 2.0], bins=2, value_range=None) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="outside the bins"):
        S.histogram_overlap([10, 200], [30])
    with pytest.raises(ValueError, match="NaN"):
        S.histogram_overlap([10, np.nan], [30])


# ---- verification (section 4) --------------------------------------------------------------------


def pairs_2d(theta_deg):
    """Pairs (a_i, b_i) of 2-D unit vectors θ_i apart; squared L2 distance 2 − 2 cos θ_i."""
    return unit2(np.zeros(len(theta_deg))), unit2(theta_deg)


def test_perfectly_separable_pairs_score_one_with_the_smallest_best_threshold():
    same = np.tile([True, False], 10)
    a, b = pairs_2d(np.where(same, 10.0, 120.0))  # d = 0.0304 for same, 3.0 for different
    res = S.verification_folds(a * 3, b, same)
    assert res.mean == 1.0 and res.std == 0.0
    assert res.thresholds.tolist() == [0.04] * 10  # first grid value above 0.0304
    assert S.verification_accuracy(a, b, same) == (1.0, 0.0)


def test_one_inseparable_pair_costs_its_own_fold_only():
    # folds of 2 pairs (same, different); fold 0's same pair is 120° apart, like every different pair.
    # Training folds prefer t = 0.04 (17/18 right) to any t > 3 (9 wrong), so the held-out fold 0
    # scores 1/2 and every other fold 1: mean 0.95, std sqrt((0.45² + 9·0.05²)/10) = 0.15.
    same = np.tile([True, False], 10)
    theta = np.where(same, 10.0, 120.0)
    theta[0] = 120.0
    a, b = pairs_2d(theta)
    res = S.verification_folds(a, b, same)
    assert res.accuracies.tolist() == [0.5] + [1.0] * 9  # contiguous folds: no shuffle
    assert res.thresholds.tolist() == [0.04] * 10
    mean, std = S.verification_accuracy(a, b, same.astype(int))
    assert mean == pytest.approx(0.95) and std == pytest.approx(0.15)


def test_threshold_is_chosen_on_the_other_folds_only():
    # 2 folds of 4 pairs, d = 2 − 2 cos θ.  Fold 0: same at 10° (d 0.03), 70° (1.32); different at 120°
    # (3), 180° (4).  Fold 1: same at 10°, 100° (2.35); different at 90° (2), 180°.
    # Trained on fold 1 alone, 3/4 is the best, first reached at t = 0.04: fold 0 then misses 70°: 3/4.
    # Trained on fold 0 alone, 4/4 needs 1.316 < t ≤ 3, smallest 1.32: fold 1 then misses 100°: 3/4.
    same = np.array([True, True, False, False, True, True, False, False])
    a, b = pairs_2d([10, 70, 120, 180, 10, 100, 90, 180])
    res = S.verification_folds(a, b, same, folds=2)
    assert res.thresholds.tolist() == [0.04, 1.32]
    assert res.accuracies.tolist() == [0.75, 0.75]


@pytest.mark.parametrize("n, folds", [(20, 10), (23, 10), (7, 3), (101, 10)])
def test_folds_are_sklearns_kfold_without_shuffling(n, folds):
    """verification_folds writes KFold(shuffle=False) out (sklearn's import costs seconds): the same folds, so
    the same thresholds and accuracies as a fold-by-fold computation on KFold's splits."""
    from sklearn.model_selection import KFold

    rng = np.random.default_rng(n)
    same = np.arange(n) % 2 == 0
    a, b = pairs_2d(np.where(same, rng.uniform(0, 90, n), rng.uniform(40, 180, n)))
    res = S.verification_folds(a, b, same, folds=folds)
    dist = np.sum((a - b) ** 2, axis=1)
    for i, (train, test) in enumerate(KFold(n_splits=folds, shuffle=False).split(dist)):
        right = [np.sum((dist[train] < t) == same[train]) for t in S.LFW_THRESHOLDS]
        t = S.LFW_THRESHOLDS[int(np.argmax(right))]
        assert res.thresholds[i] == t
        assert res.accuracies[i] == np.mean((dist[test] < t) == same[test])


def test_verification_errors():
    a, b = pairs_2d([10.0] * 10)
    with pytest.raises(ValueError, match="both same"):
        S.verification_accuracy(a, b, [True] * 10)
    with pytest.raises(ValueError, match="at least 10 pairs"):
        S.verification_accuracy(a[:4], b[:4], [True, False] * 2)
    with pytest.raises(ValueError, match="same shape"):
        S.verification_accuracy(a, b[:9], [True, False] * 5)
    with pytest.raises(ValueError, match="booleans or 0/1"):
        S.verification_accuracy(a, b, [2, 0] * 5)
    with pytest.raises(ValueError, match="zero-norm"):
        S.verification_accuracy(a, np.zeros((10, 2)), [True, False] * 5)


def test_tar_at_far_by_hand():
    scores = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4]
    same = [1, 1, 0, 1, 0, 0]  # 3 genuine, 3 impostor pairs: FAR moves in steps of 1/3
    assert S.tar_at_far(scores, same, 0.0) == pytest.approx(2 / 3)
    assert S.tar_at_far(scores, same, 0.2) == pytest.approx(2 / 3)  # never above the FAR asked for
    assert S.tar_at_far(scores, same, 1 / 3) == pytest.approx(1.0)
    assert S.tar_at_far(np.array(scores) * 10 - 3, same, 1 / 3) == pytest.approx(1.0)
    # a tie between a genuine and an impostor score: the genuine one only comes with the impostor
    assert S.tar_at_far([0.5, 0.5, 0.1], [True, False, False], 0.0) == 0.0
    assert S.tar_at_far([0.5, 0.5, 0.1], [True, False, False], 0.5) == 1.0
    assert S.tar_at_far([0.5, 0.5, 0.1], [True, False, False], 0.25) == 0.0  # no interpolation to 0.5
    with pytest.raises(ValueError, match="far must be"):
        S.tar_at_far(scores, same, 1.5)
    with pytest.raises(ValueError, match="both same"):
        S.tar_at_far(scores, [0] * 6, 0.1)
    with pytest.raises(ValueError, match="5 entries, expected 6"):
        S.tar_at_far(scores, same[:5], 0.1)


def test_rank1_identification_by_hand():
    gallery, gy = unit2([0.0, 90.0, 180.0]) * [[1], [4], [2]], [0, 1, 2]
    # probes at 10° (nearest 0°: right), 50° labelled 0 (nearest 90°: wrong), 170° and 100° (right)
    probes, py = unit2([10.0, 50.0, 170.0, 100.0]), [0, 0, 2, 1]
    assert S.rank1_identification(gallery, gy, probes, py) == pytest.approx(0.75)
    assert S.rank1_identification(gallery, gy, probes * 9, py) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="not in the gallery"):
        S.rank1_identification(gallery, gy, probes, [0, 0, 2, 5])
    with pytest.raises(ValueError, match="dim"):
        S.rank1_identification(gallery, gy, np.eye(3), [0, 1, 2])


# ---- paper constants and the .npz loader ---------------------------------------------------------


def test_paper_tables_are_complete():
    assert set(S.PAPER_TABLE3) == set(S.TABLE3_ROWS)
    for row in S.TABLE3_ROWS:
        assert set(S.PAPER_TABLE3[row]) == set(S.TABLE3_COLUMNS)
    assert S.PAPER_TABLE3["W-EC"]["TripletL"] is None and S.PAPER_TABLE3["Intra1"]["TripletL"] == 41.19
    assert S.PAPER_TABLE3["W-EC"]["ArcFace"] == 14.29 and S.PAPER_TABLE3["Inter2"]["InterL"] == 67.90
    assert {r for r, b in S.TABLE3_BETTER.items() if b == "lower"} == {"W-EC", "Intra1", "Intra2"}
    assert S.TABLE3_ARROW["W-Inter"] == "↑" and S.TABLE3_ARROW["Intra2"] == "↓"
    assert len(S.PAPER_TABLE2) == 18
    assert S.PAPER_TABLE2["ArcFace (0.5)"] == {"LFW": 99.53, "CFP-FP": 95.56, "AgeDB-30": 95.15}
    assert S.PAPER_TABLE2["Norm-Softmax (s=64)"]["AgeDB-30"] == 88.72


def test_load_embeddings_npz_round_trip(tmp_path):
    w, x, y = geometry()
    path = tmp_path / "e.npz"
    np.savez(path, embeddings=x.astype(np.float32), labels=y, weight=w)
    data = S.load_embeddings_npz(path)
    assert data["test_embeddings"] is None and data["test_labels"] is None
    assert S.angle_statistics(data["weight"], data["embeddings"], data["labels"])["W-EC"] == pytest.approx(6, abs=1e-4)


@pytest.mark.parametrize(
    "arrays, match",
    [
        ({"embeddings": np.eye(2)}, "lacks the key\\(s\\) labels; it has embeddings"),
        ({"embeddings": np.eye(2), "labels": [0, 1, 2]}, "3 entries"),
        ({"embeddings": np.eye(2), "labels": [0, 1], "test_labels": [0]}, "both test_embeddings"),
        ({"embeddings": np.eye(2), "labels": [0, 1], "weight": np.eye(3)}, "weight has shape"),
        ({"embeddings": np.array([[np.inf, 0], [0, 1]]), "labels": [0, 1]}, "NaN or inf"),
    ],
)
def test_load_embeddings_npz_rejects_bad_contents(tmp_path, arrays, match):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=match):
        S.load_embeddings_npz(path)


def test_load_embeddings_npz_rejects_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        S.load_embeddings_npz(tmp_path / "missing.npz")
    with pytest.raises(ValueError, match="directory"):
        S.load_embeddings_npz(tmp_path)
    (tmp_path / "junk.npz").write_text("not an archive")
    with pytest.raises(ValueError, match="not a readable .npz"):
        S.load_embeddings_npz(tmp_path / "junk.npz")
    np.save(tmp_path / "one.npy", np.eye(2))
    with pytest.raises(ValueError, match="single array"):
        S.load_embeddings_npz(tmp_path / "one.npy")
    np.savez(tmp_path / "obj.npz", embeddings=np.array([object()]), labels=[0])
    with pytest.raises(ValueError, match="cannot be read"):
        S.load_embeddings_npz(tmp_path / "obj.npz")


def test_quantile_is_numpys_linear_quantile_to_the_bit():
    """stats.quantile (the gap's fast path) against np.quantile: sizes 1…200, ties, both ends, NaN."""
    rng = np.random.default_rng(7)
    for trial in range(3000):
        n = int(rng.integers(1, 200))
        v = rng.normal(size=n) * rng.choice([1e-3, 1.0, 90.0])
        if trial % 5 == 0:
            v = np.round(v, 1)  # ties
        q = float(rng.choice([0.0, 0.02, 0.5, 0.98, 1.0, rng.uniform()]))
        assert S.quantile(v, q) == float(np.quantile(v, q)), (n, q)
    assert np.isnan(S.quantile(np.array([1.0, np.nan]), 0.5))
