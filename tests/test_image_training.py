"""The MNIST lesson's core: streaming image trainer, every loss, determinism, confusion, thumbnails, figures."""

import io
import math
import struct
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from arcface_viz.image_training import (
    ImageConfig,
    ImageSnapshot,
    Normalise,
    build_image_trainer,
    centre_angles_deg,
    confused_examples,
    confusion,
    confusion_matrix,
    hover_texts,
    most_confused_pairs,
    pick_available,
    pixel_stats,
    report,
    train_for,
)
from arcface_viz.losses import LOSSES
from arcface_viz.plots.images import (
    attach_sample_ids,
    png_bytes,
    png_data_uri,
    selected_samples,
    sphere_map_figure,
    thumbnails,
)
from arcface_viz.plots.sphere import embedding_figure
from arcface_viz.training import build_compare_trainers, reconfigure
from toy_data import DatasetMissing, load_dataset


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", seed=0)


def _write_idx(path, array):
    """An IDX file: magic 00 00 08 <ndim>, big-endian uint32 dimensions, then unsigned bytes."""
    a = np.ascontiguousarray(array, dtype=np.uint8)
    with open(path, "wb") as f:
        f.write(bytes([0, 0, 0x08, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape) + a.tobytes())


@pytest.fixture(scope="module")
def idx_dir(tmp_path_factory):
    """Generated 28×28 IDX files: class c is a bright bar at row 2c + 4, plus noise (learnable, tiny)."""
    folder = tmp_path_factory.mktemp("idx")
    rng = np.random.default_rng(1)
    for prefix, n in (("train", 160), ("t10k", 40)):
        y = np.arange(n) % 10
        x = rng.integers(0, 60, (n, 28, 28))
        for i, c in enumerate(y):
            x[i, 2 * c + 4:2 * c + 6, 4:24] = 250
        _write_idx(folder / f"{prefix}-images-idx3-ubyte", x)
        _write_idx(folder / f"{prefix}-labels-idx1-ubyte", y)
    return folder


def _finite(snap):
    return (math.isfinite(snap.loss) and np.isfinite(snap.embeddings).all() and np.isfinite(snap.centres).all()
            and np.isfinite(snap.theta_deg).all())


@pytest.mark.parametrize("loss", list(LOSSES))
def test_one_short_epoch_for_every_loss_without_nan(loss, digits, idx_dir):
    # digits (8×8): one epoch of 256-image batches; the generated IDX set (28×28, read from files): one epoch
    tr = build_image_trainer(dataset="digits", loss=loss, dim=3, batch_size=256, sample_size=100, eval_size=100,
                             device="cpu", data=digits)
    snap = tr.advance(tr.steps_per_epoch)
    assert isinstance(snap, ImageSnapshot) and snap.epoch == 1.0 and _finite(snap), loss
    assert len(tr.epoch_log) == 1 and 0.0 <= tr.epoch_log[0].test_acc <= 1.0
    assert snap.epoch_test_acc == tr.epoch_log[0].test_acc and snap.images_per_second > 0

    tr = build_image_trainer(dataset="mnist", data_dir=str(idx_dir), loss=loss, dim=2, batch_size=64,
                             device="cpu")
    assert tr.data.image_shape == (28, 28) and tr.steps_per_epoch == 2
    snap = tr.advance(2)
    assert _finite(snap) and snap.embeddings.shape == (40, 2), loss
    assert len(tr.epoch_log) == 1


def test_training_learns_the_generated_bars(idx_dir):
    tr = build_image_trainer(dataset="mnist", data_dir=str(idx_dir), loss="arcface", dim=3, batch_size=32,
                             lr=0.02, device="cpu")
    train_for(tr, epochs=8)
    assert tr.full_test()[0] >= 0.9
    assert [r.epoch for r in tr.epoch_log] == list(range(1, 9))  # the whole test set once per epoch
    assert [r.step for r in tr.epoch_log] == [5 * e for e in range(1, 9)]  # 160 images, batches of 32
    assert all(a.seconds < b.seconds for a, b in zip(tr.epoch_log, tr.epoch_log[1:], strict=False))


def test_same_seed_same_run_other_seed_other_run(digits):
    def run(seed):
        tr = build_image_trainer(dataset="digits", seed=seed, dim=3, loss="arcface", device="cpu", data=digits)
        torch.manual_seed(123 + seed)  # the global RNG must not matter
        tr.advance(7)
        return tr.advance(8)

    a, b, c = run(0), run(0), run(1)
    assert a.loss == b.loss and np.array_equal(a.embeddings, b.embeddings) and np.array_equal(a.centres, b.centres)
    assert not np.allclose(a.centres, c.centres)


def test_stream_keeps_uint8_and_each_epoch_is_a_permutation(digits):
    tr = build_image_trainer(dataset="digits", batch_size=100, device="cpu", data=digits)
    assert tr.stream.images.dtype == torch.uint8
    batches = list(tr.stream)
    assert len(batches) == tr.steps_per_epoch == len(digits.y_train) // 100
    x = torch.cat([b[0] for b in batches])
    assert x.dtype == torch.float32 and x.shape[1:] == (1, 8, 8)
    assert abs(float(x.mean())) < 0.05 and abs(float(x.std()) - 1.0) < 0.05  # normalised per batch
    # no image twice in one epoch: no class shows up more often than it has training images
    seen = np.bincount(torch.cat([b[1] for b in batches]).numpy(), minlength=10)
    assert (seen <= np.bincount(digits.y_train, minlength=10)).all() and seen.sum() == len(x)
    second = torch.cat([b[0] for b in tr.stream])
    assert not torch.equal(second, x)  # a fresh shuffle every epoch


def test_pixel_stats_and_normalise():
    img = np.array([[[0, 255], [0, 255]]], dtype=np.uint8)
    mean, std = pixel_stats(img)
    assert mean == pytest.approx(0.5) and std == pytest.approx(0.5)
    out = Normalise(mean, std)(torch.from_numpy(img))
    assert out.shape == (1, 1, 2, 2) and out.flatten().tolist() == pytest.approx([-1, 1, -1, 1])


def test_confusion_matrix_and_pairs_by_hand():
    m = confusion_matrix([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 0, 0], 3)
    assert m.tolist() == [[1, 1, 0], [0, 1, 0], [2, 0, 1]]
    w = np.array([[1.0, 0.0], [0.0, 2.0], [-3.0, 0.0]])  # 0–1: 90°, 0–2: 180°, 1–2: 90° (any norm)
    assert centre_angles_deg(w)[0, 2] == pytest.approx(180.0)
    pairs = most_confused_pairs(m, w)
    assert [(p.a, p.b, p.a_as_b, p.b_as_a, p.count) for p in pairs] == [(0, 2, 0, 2, 2), (0, 1, 1, 0, 1)]
    assert pairs[0].angle_deg == pytest.approx(180.0) and pairs[1].angle_deg == pytest.approx(90.0)
    assert math.isnan(most_confused_pairs(m, None)[0].angle_deg)
    with pytest.raises(ValueError):
        confusion_matrix([0, 3], [0, 1], 3)


def test_confusion_of_a_trained_model_matches_its_accuracy(digits):
    tr = build_image_trainer(dataset="digits", device="cpu", data=digits)
    tr.advance(30)
    conf = confusion(tr)
    assert conf.matrix.sum() == len(digits.y_test) and conf.step == 30
    assert conf.accuracy == pytest.approx(tr.full_test()[0])
    assert conf.matrix.sum(axis=1).tolist() == np.bincount(digits.y_test, minlength=10).tolist()
    if conf.pairs:
        p = conf.pairs[0]
        a, b = (p.a, p.b) if p.a_as_b else (p.b, p.a)
        ids = confused_examples(tr, a, b)
        assert len(ids) and (digits.y_test[ids] == a).all()
    tr.advance(2)  # 32: no epoch end (11 steps each) on the way
    assert confusion(tr, fresh=False).step == 30 and confusion(tr).step == 32  # stale until asked fresh


def test_png_thumbnails_decode_to_the_image():
    from PIL import Image

    img = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    png = Image.open(io.BytesIO(png_bytes(img, scale=2)))
    assert png.size == (8, 6) and png.mode == "L"
    assert np.array_equal(np.asarray(png)[::2, ::2], img)
    assert png_data_uri(img).startswith("data:image/png;base64,")
    uris = thumbnails(np.zeros((2, 8, 8), np.uint8), size=56)
    assert len(uris) == 2 and Image.open(io.BytesIO(png_bytes(np.zeros((8, 8), np.uint8), 7))).size == (56, 56)


def test_sample_ids_survive_the_figure_and_a_selection(digits):
    tr = build_image_trainer(dataset="digits", dim=3, device="cpu", data=digits)
    snap = tr.advance(5)
    assert np.array_equal(snap.labels, digits.y_test[tr.sample_ids])  # the drawn images, in order
    hover = hover_texts(tr, snap)
    assert len(hover) == len(snap.labels) and f"#{tr.sample_ids[0]}" in hover[0]
    fig = attach_sample_ids(embedding_figure(snap.embeddings, snap.labels, snap.centres, hover_text=hover,
                                             all_classes=True), snap.labels, 10)
    for t in fig.data:
        if (t.legendgroup or "").startswith("class"):
            ids = np.asarray(t.customdata)
            assert (snap.labels[ids] == int(t.legendgroup[5:])).all()
            assert np.allclose(np.asarray(t.x), snap.embeddings[ids, 0], atol=1e-6)
    flat = sphere_map_figure(snap.embeddings, snap.labels, snap.centres, digits.classes, hover)
    t = next(t for t in flat.data if t.legendgroup == "class3")
    i = int(t.customdata[0])
    e = snap.embeddings[i] / np.linalg.norm(snap.embeddings[i])
    assert t.x[0] == pytest.approx(math.degrees(math.atan2(e[1], e[0])), abs=1e-3)
    assert t.y[0] == pytest.approx(math.degrees(math.asin(e[2])), abs=1e-3)
    sel = {"points": [{"curve_number": 1, "customdata": [7]}, {"customdata": 3}, {"customdata": 7}, {"x": 1}]}
    assert selected_samples(sel) == [7, 3] and selected_samples(None) == []


def test_live_changes_apply_and_structural_ones_are_named(digits):
    values = {"dataset": "digits", "max_train": 60000, "seed": 0, "dim": 3, "loss": "arcface", "s": 16.0,
              "m2": 0.2, "easy_margin": False, "optimizer": "adam", "lr": 0.01, "batch_size": 128, "warmup": 0}
    def cfg(**changes):
        return ImageConfig.from_values({**values, **changes}, device="cpu")

    tr = build_image_trainer(cfg(), data=digits)
    assert reconfigure(tr, cfg(m2=0.3, lr=0.002)) == []
    tr.advance(1)
    assert tr.loss_fn.m2 == pytest.approx(0.3) and tr.lr == pytest.approx(0.002)
    assert reconfigure(tr, cfg(dim=2, seed=4)) == ["dim", "seed"]


def test_compare_trainers_share_start_and_batches(digits):
    a, b = build_compare_trainers(ImageConfig(dataset="digits", device="cpu"), losses=("softmax", "arcface"),
                                  data=digits)
    pa, pb = dict(a.model.named_parameters()), dict(b.model.named_parameters())
    assert all(torch.equal(pa[k], pb[k]) for k in pa)
    assert a.loss_fn.name == "softmax" and b.loss_fn.name == "arcface"
    assert all(torch.equal(x[0], y[0]) for x, y in zip(a.stream, b.stream, strict=True))


def test_config_defaults_and_errors():
    cfg = ImageConfig.from_dict({"loss": "cosface", "m3": 0.1}).resolved()
    assert cfg.resolved_loss_params()["m3"] == 0.1 and cfg.lr is not None and cfg.channels
    assert ImageConfig.default_loss_params("arcface")["m2"] > 0
    with pytest.raises(ValueError, match="unknown setting"):
        ImageConfig.from_dict({"nope": 1})
    with pytest.raises(ValueError, match="dimension"):
        build_image_trainer(dataset="digits", dim=4)


def test_missing_dataset_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("ARCFACE_VIZ_DATA", str(tmp_path))
    with pytest.raises(DatasetMissing, match="download"):
        build_image_trainer(dataset="mnist", data_dir=str(tmp_path))


def test_pick_available_prefers_mnist_then_fashion_then_digits():
    def st(**avail):
        return {n: SimpleNamespace(available=avail.get(n.replace("-", "_"), False))
                for n in ("mnist", "fashion-mnist", "digits")}

    assert pick_available(st(digits=True, fashion_mnist=True)) == "fashion-mnist"
    assert pick_available(st(digits=True, fashion_mnist=True), "digits") == "digits"
    assert pick_available(st(digits=True), "mnist") == "digits"
    assert pick_available(st(mnist=True, digits=True)) == "mnist"


def test_report_has_accuracy_speed_and_table3_angles(digits):
    tr = build_image_trainer(dataset="digits", device="cpu", data=digits)
    train_for(tr, epochs=2)
    rep = report(tr)
    assert rep["epochs"] == 2.0 and rep["steps"] == 2 * tr.steps_per_epoch
    assert rep["test_acc"] == tr.full_test()[0] and rep["images_per_second"] > 0
    for key in ("W-EC", "W-Inter", "Intra", "Inter", "Intra2", "Inter2"):
        assert 0.0 <= rep[key] <= 180.0, key
    assert [e["epoch"] for e in rep["epoch_test_acc"]] == [1, 2]
