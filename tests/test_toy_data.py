"""Toy data generators: shapes, dtypes, determinism per seed, class counts, stratified splits."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toy_data import FIG3_PAPER_SAMPLES, TOY_DATASETS, ToyData, fig3, imbalanced, imbalanced_sizes, make_dataset


@pytest.mark.parametrize("name", list(TOY_DATASETS))
def test_shapes_dtypes_and_labels(name):
    d = make_dataset(name)
    assert d.X.dtype == np.float32 and d.y.dtype == np.int64
    assert d.X.ndim == 2 and d.X.shape[0] == len(d.y) == len(d)
    assert d.input_dim == d.X.shape[1]
    assert np.isfinite(d.X).all()
    assert set(np.unique(d.y)) == set(range(d.num_classes))


@pytest.mark.parametrize("name", list(TOY_DATASETS))
def test_same_seed_same_data_other_seed_other_data(name):
    a, b, c = make_dataset(name, seed=3), make_dataset(name, seed=3), make_dataset(name, seed=4)
    assert np.array_equal(a.X, b.X) and np.array_equal(a.y, b.y)
    assert not np.array_equal(a.X, c.X)


@pytest.mark.parametrize("name", ["fig3", "sphere", "spirals", "moons"])
def test_balanced_generators_give_samples_per_class_each(name):
    d = make_dataset(name, num_classes=5, samples_per_class=37)
    assert np.array_equal(d.class_counts(), np.full(5, 37))


def test_blobs_label_noise_flips_about_the_asked_fraction():
    clean = make_dataset("blobs", label_noise=0.0, samples_per_class=500)
    noisy = make_dataset("blobs", label_noise=0.2, samples_per_class=500)
    assert np.array_equal(clean.class_counts(), np.full(clean.num_classes, 500))
    flipped = np.mean(noisy.y != np.repeat(np.arange(noisy.num_classes), 500))
    assert 0.15 < flipped < 0.25


def _ring_coordinates(d):
    """(radius, angle in degrees) of each fig3 sample, read from its first harmonic (x0, x1) = r(cos a, sin a)."""
    return np.hypot(d.X[:, 0], d.X[:, 1]), np.degrees(np.arctan2(d.X[:, 1], d.X[:, 0])) % 360


def _arcs(d):
    """Each class's occupied arc as (start, width) in degrees: the complement of its largest empty arc."""
    _, a = _ring_coordinates(d)
    out = []
    for c in range(d.num_classes):
        ac = np.sort(a[d.y == c])
        holes = np.diff(np.concatenate([ac, [ac[0] + 360]]))
        i = int(np.argmax(holes))
        out.append(((ac[(i + 1) % len(ac)]) % 360, 360 - holes[i]))
    return out


def test_fig3_paper_size_and_ring_geometry():
    """Identities fill arcs of a ring: different widths (ratio 2), neighbours touching across a 7° empty
    band, radii in [0.5, 1.5]; higher coordinates are the harmonics (r cos ka, r sin ka)/k²."""
    d = fig3(samples_per_class=FIG3_PAPER_SAMPLES)
    assert d.X.shape == (8 * 1500, 8) and d.num_classes == 8
    r, a = _ring_coordinates(d)
    assert r.min() >= 0.5 - 1e-5 and r.max() <= 1.5 + 1e-5
    k = np.arange(1, 5)
    rad = np.radians(a)[:, None] * k
    assert np.allclose(d.X[:, 0::2], r[:, None] * np.cos(rad) / k ** 2, atol=1e-5)
    assert np.allclose(d.X[:, 1::2], r[:, None] * np.sin(rad) / k ** 2, atol=1e-5)
    arcs = sorted(_arcs(d))
    widths = np.array([w for _, w in arcs])
    assert widths.max() / widths.min() == pytest.approx(2.0, rel=0.02)  # classes differ in spread
    bands = [(arcs[(i + 1) % 8][0] - (s + w)) % 360 for i, (s, w) in enumerate(arcs)]
    assert min(bands) >= 7.0 - 1e-3 and max(bands) < 7.5  # disjoint (Bayes error 0), but touching
    assert widths.sum() + sum(bands) == pytest.approx(360, abs=1e-3)


def test_fig3_neighbours_touch_in_input_space_and_noise_blurs_the_band():
    d = fig3(samples_per_class=400)
    arcs = _arcs(d)
    starts = np.array([s for s, _ in arcs])
    for c in range(8):  # the class whose arc starts just after c's ends is its neighbour
        nxt = int(np.argmin((starts - (arcs[c][0] + arcs[c][1])) % 360))
        across = np.linalg.norm(d.X[d.y == c][:, None] - d.X[d.y == nxt][None], axis=-1).min()
        within = np.linalg.norm(d.X[d.y == c][:, None] - d.X[d.y == c][None], axis=-1).max()
        assert across < 0.2 < 0.5 < within  # much closer to the neighbour than to the far end of itself
    noisy = fig3(samples_per_class=400, noise=0.05)
    assert np.array_equal(noisy.y, d.y) and 0.03 < np.std(noisy.X - d.X) < 0.07
    assert fig3(input_dim=2).X.shape == (1600, 2) and fig3(num_classes=3, samples_per_class=5).num_classes == 3


def test_sphere_points_lie_on_the_unit_sphere():
    d = make_dataset("sphere")
    assert d.input_dim == 3
    assert np.allclose(np.linalg.norm(d.X, axis=1), 1.0, atol=1e-5)


def test_imbalanced_class_sizes_decay_to_the_ratio():
    d = imbalanced(num_classes=6, samples_per_class=400, ratio=0.1)
    counts = d.class_counts()
    assert np.array_equal(counts, imbalanced_sizes(6, 400, 0.1))
    assert counts[0] == 400 and counts[-1] == 40
    assert (np.diff(counts) < 0).all()


def test_split_is_stratified_disjoint_and_seeded():
    d = make_dataset("imbalanced")
    Xtr, ytr, Xte, yte = d.train_test_split(0.25, seed=1)
    assert len(ytr) + len(yte) == len(d)
    assert set(np.unique(ytr)) == set(np.unique(yte)) == set(range(d.num_classes))
    both = np.concatenate([Xtr, Xte])
    assert np.array_equal(np.unique(both, axis=0), np.unique(d.X, axis=0))  # a partition, no duplicates
    again = d.train_test_split(0.25, seed=1)
    assert np.array_equal(again[0], Xtr) and np.array_equal(again[3], yte)
    assert not np.array_equal(d.train_test_split(0.25, seed=2)[1], ytr)
    assert len(d.train_test_split(0.0)[3]) == 0


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(1, 30), min_size=2, max_size=6), st.floats(0.05, 0.9))
def test_split_keeps_every_class_with_two_samples_on_both_sides(sizes, fraction):
    y = np.repeat(np.arange(len(sizes)), sizes)
    d = ToyData(np.arange(len(y), dtype=np.float32)[:, None], y, len(sizes))
    _, ytr, _, yte = d.train_test_split(fraction, seed=0)
    for c, n in enumerate(sizes):
        if n >= 2:
            assert (ytr == c).sum() >= 1 and (yte == c).sum() >= 1
        assert (ytr == c).sum() + (yte == c).sum() == n


def test_bad_names_and_arguments_raise_value_error():
    with pytest.raises(ValueError, match="unknown dataset"):
        make_dataset("nope")
    with pytest.raises(ValueError, match="no parameter"):
        make_dataset("fig3", turns=2)
    with pytest.raises(ValueError):
        fig3(num_classes=1)
    with pytest.raises(ValueError):
        fig3(noise=-1)
    for bad in ({"input_dim": 7}, {"band_deg": 45.0}, {"width_ratio": 0.5}):
        with pytest.raises(ValueError):
            fig3(**bad)


def test_toy_lesson_opens_on_fig3_with_the_data_sets_own_defaults():
    from arcface_viz.params import TOY_SPEC
    from arcface_viz.training import ToyConfig

    assert TOY_SPEC["dataset"].default == "fig3"
    for name, value in ToyConfig.dataset_defaults("fig3").items():
        assert TOY_SPEC[name].default == value, name
