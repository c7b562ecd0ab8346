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


def test_fig3_paper_size_and_input_geometry():
    d = fig3(samples_per_class=FIG3_PAPER_SAMPLES)
    assert d.X.shape == (8 * 1500, 8) and d.num_classes == 8
    means = np.stack([d.X[d.y == c].mean(0) for c in range(8)])
    # unit means on orthonormal directions: pairwise distance √2
    dist = np.linalg.norm(means[:, None] - means[None], axis=-1)[~np.eye(8, dtype=bool)]
    assert np.allclose(dist, np.sqrt(2), atol=0.05)


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
