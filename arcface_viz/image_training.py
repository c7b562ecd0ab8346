"""MNIST lessons: a small CNN trained live to a 2-D or 3-D hypersphere embedding (Fig. 3 on real images).

The classic picture of the margin literature: a CNN on MNIST with a 2-D/3-D embedding, drawn normalised on the
circle or sphere.  A margin loss has to leave an angular gap between classes; Softmax and Norm-Softmax only
have to classify (the paper's Table 3 even finds Norm-Softmax's W_j 44° from its class's feature centre, against
14° for ArcFace).  This module holds what the page (``pages/mnist.py``), the CLI (``arcface-viz mnist``) and
the benchmark share:

- :data:`MNIST_SPEC`, the lesson's parameters (widgets, URL, CLI flags);
- :class:`ImageConfig` (a :class:`~arcface_viz.training.LessonConfig`) and :func:`build_image_trainer`: the
  step-wise :class:`~arcface_viz.training.Trainer` fed with *streaming* mini-batches.  The training set stays a uint8
  tensor (on the GPU when there is one) and each batch is normalised on the fly, ``x = (u/255 − μ)/σ``;
  one epoch is one shuffled pass.  Every snapshot measures the accuracy on a fixed, bounded subset of the
  test images (the ones drawn on the sphere); the *full* test set is evaluated at every epoch end;
- :func:`confusion`: the test confusion matrix and the most confused pairs with the angle between their
  class centres W_j (a small angle between two centres is why those two classes get confused);
- :func:`hover_texts`: the hover line of each drawn test image (its figures are in arcface_viz.plots.images);
- :func:`train_for` and :func:`report`: a run to an epoch or time budget, and its numbers (test accuracy,
  images/second, the Table-3 angles W-EC, W-Inter, Intra, Inter in degrees).

Same seed ⇒ same run (on the CPU): the data subset, the network and W_j, the batch order (the stream's own
``torch.Generator``) and dropout (the Trainer's own RNG stream) all derive from ``seed``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch
from torch import nn

from .device import pick_device
from .losses import LOSSES
from .models import SmallCNN
from .params import LOSS_SPEC, Param, Spec
from .training import LessonConfig, Snapshot, Trainer

# ---------------------------------------------------------------------------------------------
# Data sets and presets

IMAGE_DATASETS = ("mnist", "fashion-mnist", "digits")
DATASET_LABELS = {"mnist": "MNIST (28×28)", "fashion-mnist": "Fashion-MNIST (28×28)", "digits": "Digits (8×8)"}
#: the page's default is the first of these that is on this machine (digits always is)
DATASET_PREFERENCE = ("mnist", "fashion-mnist", "digits")

#: Loss parameters for 2-D/3-D image embeddings, on top of the registry's low-dimensional defaults
#: (loss_defaults(name, low_dim=True)): a smaller scale s = 12 for every loss that has one.  Measured on
#: Fashion-MNIST (4 epochs, 3-D ArcFace, whole test set: s = 8: 87.7%, 12: 87.5%, 16: 87.3%, 32: about the same)
#: and digits (s = 12 reaches 97% in fewer steps than 16); the margins keep their low-dimensional values
#: (ArcFace m2 = 0.35 fell to 84.9% on Fashion-MNIST, 0.1 gave 87.2%, 0.2 87.3%).
IMAGE_SCALE = 12.0
IMAGE_LOSS_PRESETS: dict[str, dict[str, Any]] = {name: {"s": IMAGE_SCALE} for name, info in LOSSES.items()
                                                 if "s" in info.params}

#: Images per forward pass when evaluating: 256 keeps a 28×28 CNN's activations near 13 MB per layer (1024
#: needed ~50 MB each, which set the peak memory of a hosted app) at the same speed.
EVAL_CHUNK = 256


def pick_available(statuses: Mapping[str, Any], wanted: str | None = None) -> str:
    """``wanted`` when it is available, else the first available of DATASET_PREFERENCE (digits as last resort).

    ``statuses``: toy_data.available_datasets()'s dict name -> DatasetStatus (``.available``).
    """
    if wanted is not None and wanted in statuses and statuses[wanted].available:
        return wanted
    for name in DATASET_PREFERENCE:
        if name in statuses and statuses[name].available:
            return name
    return "digits"


# ---------------------------------------------------------------------------------------------
# The lesson's config: training.LessonConfig with what differs for images


@dataclass
class ImageConfig(LessonConfig):
    """An image run: a :class:`~arcface_viz.models.SmallCNN` on MNIST, Fashion-MNIST or digits, fed by an
    :class:`ImageStream`.  ``loss_params`` left out take the image presets (:data:`IMAGE_LOSS_PRESETS`).

    ``sample_size``: test images evaluated at every snapshot and drawn on the sphere (a fixed random subset);
    ``eval_size``: training images for the per-snapshot train accuracy and θ_yi histogram;
    ``max_train`` / ``max_test``: a random subset of this size (None: the whole set).
    """

    TRAINING_DEFAULTS: ClassVar[dict[str, Any]] = {"lr": 0.01, "warmup_steps": 0, "channels": (16, 32),
                                                   "batch_size": 128}
    LOSS_PRESETS: ClassVar[dict[str, dict[str, Any]]] = IMAGE_LOSS_PRESETS
    SPEC_FIELDS: ClassVar[dict[str, str]] = {
        "dataset": "dataset", "max_train": "max_train", "seed": "seed", "dim": "dim", "optimizer": "optimizer",
        "lr": "lr", "batch_size": "batch_size", "warmup": "warmup_steps",
    }
    INT_TUPLES: ClassVar[tuple[str, ...]] = ("channels",)

    dataset: str = "digits"
    dim: int = 3
    sample_size: int = 1000
    data_dir: str | None = None
    channels: tuple[int, ...] | None = None
    dropout: float = 0.2
    max_train: int | None = None
    max_test: int | None = None
    num_threads: int | None = None
    eval_size: int = 1000

    def load_data(self):
        """The data set (toy_data.ImageDataset); raises toy_data.DatasetMissing with how to get it."""
        from toy_data import load_dataset

        if self.dataset not in IMAGE_DATASETS:
            raise ValueError(f"unknown data set {self.dataset!r}; choose one of {', '.join(IMAGE_DATASETS)}")
        return load_dataset(self.dataset, self.data_dir, max_train=self.max_train, max_test=self.max_test,
                            seed=self.seed)

    def build_model(self, data) -> nn.Module:
        """models.SmallCNN for the image size; on the CPU its weights are stored channels-last, which makes
        oneDNN's convolutions, pooling and PReLU about 1.5× faster at this size (bench/bench_mnist.py)."""
        h, w = data.image_shape
        if h != w:
            raise ValueError(f"square images expected, got {h}×{w}")
        net = SmallCNN(self.dim, 1, h, channels=self.channels, dropout=self.dropout)
        if pick_device(self.device).type == "cpu":
            net = net.to(memory_format=torch.channels_last)
        return net

    @staticmethod
    def classes_in(data) -> int:
        return data.n_classes

    def make_trainer(self, model: nn.Module, loss_fn, data) -> ImageTrainer:
        return ImageTrainer(model, loss_fn, data, self)


# ---------------------------------------------------------------------------------------------
# The lesson's parameters.  data_dir is not here: it is free text (a page text input / --data-dir).

_LOSS_CHOICES = tuple(LOSSES)
_LOSS_LABELS = {k: v.label for k, v in LOSSES.items()}
BATCH_SIZES = (32, 64, 128, 256, 512)
_TRAINING = ImageConfig.TRAINING_DEFAULTS

MNIST_SPEC = Spec((
    Param("dataset", "choice", "mnist", "Data set",
          "MNIST and Fashion-MNIST: 60,000 training and 10,000 test images of 28×28; scikit-learn's digits: "
          "1,797 images of 8×8 (always available).", choices=IMAGE_DATASETS, labels=DATASET_LABELS),
    Param("max_train", "int", 60000, "training images",
          "Train on a random subset of this size (the whole set when it is smaller).",
          min=500, max=60000, step=500),
    Param("seed", "int", 0, "seed", "Same seed, same subset, same initial weights, same batches, same run.",
          min=0, max=99999, step=1, widget="number"),
    Param("dim", "choice", 3, "embedding dimension", "2: the unit circle; 3: the sphere.", choices=(2, 3),
          widget="radio"),
    *LOSS_SPEC.with_defaults(**ImageConfig.default_loss_params("arcface")),
    Param("optimizer", "choice", "adam", "optimizer", choices=("adam", "sgd"), widget="radio"),
    Param("lr", "float", _TRAINING["lr"], "learning rate",
          "Step size of the optimizer; applies at the next step.", min=0.0005, max=0.5, step=0.0005,
          format="%.4f"),
    Param("batch_size", "choice", _TRAINING["batch_size"], "batch size", "Images per optimizer step.",
          choices=BATCH_SIZES),
    Param("warmup", "int", _TRAINING["warmup_steps"], "margin warm-up (steps)",
          "Ramp the margin from 0 over this many steps.", min=0, max=5000, step=50),
    Param("steps_per_frame", "int", 10, "steps per frame", "Optimizer steps between two redraws.",
          min=1, max=200, step=1),
    Param("compare", "bool", False, "Compare two losses",
          "Train a second loss side by side: same images, seed, batches and initial weights."),
    Param("loss_b", "choice", "softmax", "second loss", "The loss drawn on the left in compare mode.",
          choices=_LOSS_CHOICES, labels=_LOSS_LABELS),
))


# ---------------------------------------------------------------------------------------------
# Streaming mini-batches of normalised images


def pixel_stats(images: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation of the pixels of uint8 images, on the 0..1 scale."""
    flat = np.asarray(images).reshape(-1)
    n = flat.size
    if n == 0:
        return 0.0, 1.0
    total = sq = 0.0
    for i in range(0, n, 1 << 20):  # float64 squares (no uint8 overflow), a million pixels at a time
        part = flat[i:i + (1 << 20)].astype(np.float64)
        total += float(part.sum())
        sq += float(np.square(part).sum())
    mean = total / (255.0 * n)
    sq /= 255.0 ** 2 * n
    return mean, max(math.sqrt(max(sq - mean * mean, 0.0)), 1e-3)


class Normalise:
    """uint8 images (B, H, W) -> float32 (B, 1, H, W), x = (u/255 − mean)/std."""

    def __init__(self, mean: float, std: float) -> None:
        self.mean, self.std = float(mean), float(std)
        self._a, self._b = 1.0 / (255.0 * self.std), -self.mean / self.std

    def __call__(self, u8: torch.Tensor) -> torch.Tensor:
        return (u8.unsqueeze(1).float() * self._a + self._b).contiguous()


class ImageStream:
    """A re-iterable source of mini-batches: each iteration is one epoch, a fresh shuffle drawn from the
    stream's own generator, ``len(self)`` full batches (the remainder of the shuffle is dropped)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, normalise: Normalise,
                 seed: int) -> None:
        if len(images) == 0:
            raise ValueError("empty training set")
        self.images, self.labels, self.normalise = images, labels, normalise
        self.batch_size = max(1, min(int(batch_size), len(labels)))
        self.generator = torch.Generator(device=images.device).manual_seed(int(seed))

    def __len__(self) -> int:
        return len(self.labels) // self.batch_size

    def __iter__(self):
        perm = torch.randperm(len(self.labels), generator=self.generator, device=self.images.device)
        bs = self.batch_size
        for i in range(len(self)):
            idx = perm[i * bs:(i + 1) * bs]
            yield self.normalise(self.images.index_select(0, idx)), self.labels.index_select(0, idx)


# ---------------------------------------------------------------------------------------------
# The trainer


class EpochResult(NamedTuple):
    """The whole test set's accuracy at the end of an epoch, and the training time it took to get there."""

    epoch: int
    step: int
    test_acc: float
    seconds: float


@dataclass
class ImageSnapshot(Snapshot):
    """A :class:`~arcface_viz.training.Snapshot` plus the epoch view of an image run.

    ``test_acc`` is measured on the ``sample_size`` test images drawn on the sphere; ``epoch_test_acc`` is the
    full test set's accuracy at the last epoch end (None before the first); ``epoch`` counts passes
    (fractional); ``images_per_second`` is training throughput (optimizer steps only).
    """

    epoch: float = 0.0
    epoch_test_acc: float | None = None
    images_per_second: float | None = None


class ImageTrainer(Trainer):
    """:class:`~arcface_viz.training.Trainer` over an :class:`ImageStream`, with epochs and full-test checks.

    Attributes for the page: ``data`` (the ImageDataset), ``config`` (the resolved ImageConfig),
    ``sample_ids`` (indices into the test set of the images drawn, in snapshot order), ``sample_images``
    (their uint8 pixels), ``epoch_log`` (an :class:`EpochResult` per epoch end).
    """

    def __init__(self, model: nn.Module, loss_fn, data, config: ImageConfig) -> None:
        cfg = config
        device = pick_device(cfg.device)
        x_tr = torch.from_numpy(np.ascontiguousarray(data.x_train, dtype=np.uint8)).to(device)
        y_tr = torch.from_numpy(np.asarray(data.y_train, dtype=np.int64)).to(device)
        self.normalise = Normalise(*pixel_stats(data.x_train))
        stream = ImageStream(x_tr, y_tr, cfg.batch_size, self.normalise, cfg.seed)
        rng = np.random.default_rng(cfg.seed)
        n_te, n_tr = len(data.y_test), len(data.y_train)
        self.sample_ids = np.sort(rng.permutation(n_te)[:min(cfg.sample_size, n_te)])
        self.sample_images = np.asarray(data.x_test)[self.sample_ids]
        eval_ids = np.sort(rng.permutation(n_tr)[:min(cfg.eval_size, n_tr)])
        self.x_test = torch.from_numpy(np.ascontiguousarray(data.x_test, dtype=np.uint8)).to(device)
        self.y_test_all = torch.from_numpy(np.asarray(data.y_test, dtype=np.int64)).to(device)
        sample = torch.as_tensor(self.sample_ids, device=device)
        eval_rows = torch.as_tensor(eval_ids, device=device)
        super().__init__(
            model, loss_fn, stream, None, self.normalise(self.x_test[sample]) if len(sample) else None,
            self.y_test_all[sample] if len(sample) else None, optimizer=cfg.optimizer, lr=cfg.lr,
            batch_size=stream.batch_size, warmup_steps=cfg.warmup_steps, anneal=cfg.anneal, device=device,
            seed=cfg.seed, sample_size=len(self.sample_ids),  # the whole (already random) subset, in order
            train_eval=(self.normalise(x_tr[eval_rows]), y_tr[eval_rows]), eval_batch_size=EVAL_CHUNK,
            num_threads=cfg.num_threads,
        )
        self.stream = stream
        self.config = cfg
        self.data = data
        self.epoch_log: list[EpochResult] = []
        self._test_cache: tuple[int, np.ndarray, np.ndarray] | None = None  # (step, embeddings, predictions)

    @property
    def steps_per_epoch(self) -> int:
        return len(self.stream)

    @property
    def epoch(self) -> float:
        """Passes over the training set so far (fractional)."""
        return self.step / self.steps_per_epoch

    @property
    def images_per_second(self) -> float | None:
        return self.step * self.batch_size / self.seconds if self.seconds > 0 else None

    def advance(self, k: int = 1, snapshot: bool = True) -> ImageSnapshot | None:
        """Train k steps; crossing an epoch end evaluates the full test set (once, at the end of the chunk)."""
        before = self.step // self.steps_per_epoch
        base = super().advance(k, snapshot)
        done = self.step // self.steps_per_epoch
        if done > before:
            self.epoch_log.append(EpochResult(done, self.step, self.full_test()[0], self.seconds))
        return None if base is None else self._with_epochs(base)

    def snapshot(self) -> ImageSnapshot:
        return self._with_epochs(super().snapshot())

    def _with_epochs(self, base: Snapshot) -> ImageSnapshot:
        values = {f.name: getattr(base, f.name) for f in fields(Snapshot)}
        return ImageSnapshot(**values, epoch=self.epoch,
                             epoch_test_acc=self.epoch_log[-1].test_acc if self.epoch_log else None,
                             images_per_second=self.images_per_second)

    # --- evaluation on whole sets -------------------------------------------------------------

    @torch.no_grad()
    def embed_images(self, images: torch.Tensor | np.ndarray, chunk: int = EVAL_CHUNK) -> torch.Tensor:
        """Raw embeddings of uint8 images (eval mode), normalised and embedded ``chunk`` at a time."""
        u8 = torch.as_tensor(images).to(self.device)
        with self._threads():
            out = [self.embed(self.normalise(u8[i:i + chunk])) for i in range(0, len(u8), chunk)]
        return torch.cat(out) if out else torch.zeros(0, self.loss_fn.embedding_dim, device=self.device)

    @torch.no_grad()
    def predict(self, embeddings: torch.Tensor) -> torch.Tensor:
        """argmax_j of the logits without margin (what a classifier outputs at test time)."""
        return self.loss_fn.logits(embeddings).argmax(1)

    def test_predictions(self) -> tuple[np.ndarray, np.ndarray]:
        """(raw embeddings, predicted classes) of the whole test set at the current step (cached per step)."""
        if self._test_cache is None or self._test_cache[0] != self.step:
            emb = self.embed_images(self.x_test)
            self._test_cache = (self.step, emb.float().cpu().numpy(), self.predict(emb).cpu().numpy())
        return self._test_cache[1], self._test_cache[2]

    def full_test(self) -> tuple[float, int]:
        """(accuracy, evaluated step) on the whole test set, now."""
        _, pred = self.test_predictions()
        y = self.y_test_all.cpu().numpy()
        return (float((pred == y).mean()) if len(y) else float("nan")), self.step

    def sample_predictions(self, snap: Snapshot) -> np.ndarray:
        """Predicted classes of the drawn test images of ``snap``.  For every head but Softmax this is the
        nearest centre (argmax cos θ_j, exact: the scale s and A-Softmax's ‖x‖ do not change the argmax);
        Softmax's bias b_j does, so its sample is re-embedded."""
        if self.loss_fn.info.head != "linear":
            return np.argmax(snap.embeddings @ snap.centres.T, axis=1) if len(snap.embeddings) else \
                np.zeros(0, dtype=np.int64)
        sample = self.x_test[torch.as_tensor(self.sample_ids, device=self.device)]
        return self.predict(self.embed_images(sample)).cpu().numpy()


def build_image_trainer(config: ImageConfig | Mapping[str, Any] | None = None, *, data=None,
                        model: nn.Module | None = None, **overrides: Any) -> ImageTrainer:
    """:meth:`~arcface_viz.training.LessonConfig.build` for ``ImageConfig.of(config, **overrides)``; ``data``
    an ImageDataset.  Raises ValueError (toy_data.DatasetMissing included) for settings that cannot be trained."""
    return ImageConfig.of(config, **overrides).build(data=data, model=model)


# ---------------------------------------------------------------------------------------------
# Runs to a budget, and their numbers (CLI, benchmark)


def train_for(trainer: ImageTrainer, epochs: float | None = None, seconds: float | None = None,
              lr_decay: str = "none", chunk_seconds: float = 2.0,
              on_chunk: Callable[[ImageSnapshot], None] | None = None) -> ImageSnapshot:
    """Train until ``epochs`` passes or ``seconds`` of training time (optimizer steps only), whichever comes
    first.  ``lr_decay="cosine"`` lowers the rate as lr0·½(1 + cos πp), p the fraction of the budget used
    (of steps for epochs, of seconds for time), set between chunks; chunks end at epoch ends (so the full
    test set is evaluated every epoch) and last about ``chunk_seconds``."""
    if epochs is None and seconds is None:
        raise ValueError("give a budget: epochs, seconds or both")
    if lr_decay not in ("none", "cosine"):
        raise ValueError(f"lr_decay must be 'none' or 'cosine', got {lr_decay!r}")
    spe = trainer.steps_per_epoch
    max_steps = trainer.step + math.ceil(epochs * spe) if epochs is not None else None
    t_end = trainer.seconds + seconds if seconds is not None else None
    lr0, start_step, start_s = trainer.lr, trainer.step, trainer.seconds
    snap = trainer.snapshot()
    while True:
        if max_steps is not None and trainer.step >= max_steps or t_end is not None and trainer.seconds >= t_end:
            break
        if lr_decay == "cosine":
            fracs = []
            if max_steps is not None:
                fracs.append((trainer.step - start_step) / max(1, max_steps - start_step))
            if t_end is not None:
                fracs.append((trainer.seconds - start_s) / max(1e-9, seconds))
            trainer.set_lr(max(lr0 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, max(fracs)))), lr0 * 1e-3))
        rate = (trainer.step - start_step) / (trainer.seconds - start_s) if trainer.seconds > start_s else None
        k = max(1, int(rate * chunk_seconds)) if rate else 5
        k = min(k, spe - trainer.step % spe)  # stop at the epoch end
        if rate and t_end is not None:  # and do not run past the time budget
            k = max(1, min(k, math.ceil(rate * (t_end - trainer.seconds))))
        if max_steps is not None:
            k = min(k, max_steps - trainer.step)
        snap = trainer.advance(k)
        if on_chunk is not None:
            on_chunk(snap)
    return snap


def report(trainer: ImageTrainer, max_train_embed: int = 10_000) -> dict[str, Any]:
    """The numbers of a run: full test accuracy now, training time, images/second and the Table-3 angles
    (stats.angle_statistics: W-EC, W-Inter, Intra = Intra1, Inter = Inter1 on up to ``max_train_embed``
    training images; Intra2 / Inter2 on the test set), in degrees."""
    acc, _ = trainer.full_test()
    emb_te, _ = trainer.test_predictions()
    y_te = trainer.y_test_all.cpu().numpy()
    data = trainer.data
    rng = np.random.default_rng(trainer.seed)
    n = len(data.y_train)
    ids = np.sort(rng.permutation(n)[:min(max_train_embed, n)])
    emb_tr = trainer.embed_images(np.ascontiguousarray(data.x_train[ids])).float().cpu().numpy()
    return {
        **trainer.report((emb_tr, data.y_train[ids]), (emb_te, y_te)), "dataset": data.name, "source": data.source,
        "test_acc": acc, "epochs": trainer.epoch, "images_per_second": trainer.images_per_second,
        "epoch_test_acc": [r._asdict() for r in trainer.epoch_log],
        "n_train": n, "n_test": int(len(y_te)), "n_train_angles": int(len(ids)),
    }


# ---------------------------------------------------------------------------------------------
# Confusion


@dataclass
class ConfusedPair:
    """Two classes a and b: how often each was taken for the other on the test set, and ∠(W_a, W_b)."""

    a: int
    b: int
    a_as_b: int
    b_as_a: int
    angle_deg: float

    @property
    def count(self) -> int:
        return self.a_as_b + self.b_as_a


@dataclass
class Confusion:
    """matrix[i, j] = test images of class i predicted as j; ``pairs`` most confused first."""

    matrix: np.ndarray
    classes: tuple[str, ...]
    pairs: list[ConfusedPair]
    accuracy: float
    step: int


def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int], n_classes: int) -> np.ndarray:
    """(n, n) int64 counts: row = true class, column = predicted class."""
    t = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(y_pred, dtype=np.int64)
    if t.shape != p.shape:
        raise ValueError(f"{len(t)} labels but {len(p)} predictions")
    if len(t) and (min(t.min(), p.min()) < 0 or max(t.max(), p.max()) >= n_classes):
        raise ValueError(f"classes must be 0..{n_classes - 1}")
    return np.bincount(t * n_classes + p, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def centre_angles_deg(centres: np.ndarray) -> np.ndarray:
    """(n, n) angles ∠(W_i, W_j) in degrees between the class centres (rows of W, any norm)."""
    w = np.asarray(centres, dtype=np.float64)
    w = w / np.maximum(np.linalg.norm(w, axis=1, keepdims=True), 1e-12)
    return np.degrees(np.arccos(np.clip(w @ w.T, -1.0, 1.0)))


def most_confused_pairs(matrix: np.ndarray, centres: np.ndarray | None, k: int = 5) -> list[ConfusedPair]:
    """The k unordered pairs {a, b} with the most mistakes matrix[a, b] + matrix[b, a] (ties: smaller a, b
    first); pairs never confused are left out.  ``centres`` None (no classifier): angles are NaN."""
    m = np.asarray(matrix)
    n = len(m)
    ang = centre_angles_deg(centres) if centres is not None else np.full((n, n), np.nan)
    pairs = [ConfusedPair(a, b, int(m[a, b]), int(m[b, a]), float(ang[a, b]))
             for a in range(n) for b in range(a + 1, n) if m[a, b] + m[b, a] > 0]
    pairs.sort(key=lambda p: (-p.count, p.a, p.b))
    return pairs[:k]


def confusion(trainer: ImageTrainer, k: int = 5, fresh: bool = True) -> Confusion:
    """Confusion matrix on the whole test set and the k most confused pairs with the angle between their
    class centres W_j (degrees).  ``fresh=False`` reuses the last whole-test evaluation (every epoch end
    makes one) instead of evaluating now: cheap while a run is live.  ``Confusion.step`` says which step it
    describes.  For the triplet loss the centres are the running class means."""
    if fresh or trainer._test_cache is None:
        trainer.test_predictions()
    step, _, pred = trainer._test_cache
    y = trainer.y_test_all.cpu().numpy()
    n = trainer.loss_fn.num_classes
    m = confusion_matrix(y, pred, n)
    w = trainer.loss_fn.weight.detach().float().cpu().numpy()
    acc = float(np.trace(m) / m.sum()) if m.sum() else float("nan")
    return Confusion(m, tuple(trainer.data.classes), most_confused_pairs(m, w, k), acc, step)


def confused_examples(trainer: ImageTrainer, true: int, predicted: int, k: int = 8) -> np.ndarray:
    """Test-set indices (at most k, in test order) of images of class ``true`` taken for ``predicted`` at the
    last whole-test evaluation (see :func:`confusion`)."""
    if trainer._test_cache is None:
        trainer.test_predictions()
    pred = trainer._test_cache[2]
    y = trainer.y_test_all.cpu().numpy()
    return np.flatnonzero((y == true) & (pred == predicted))[:k]


# ---------------------------------------------------------------------------------------------
# Hover text


def hover_texts(trainer: ImageTrainer, snap: Snapshot, predictions: np.ndarray | None = None) -> list[str]:
    """One line per drawn test image: its class, the predicted class, θ to its own centre, its test index."""
    names = trainer.data.classes
    pred = trainer.sample_predictions(snap) if predictions is None else predictions
    w = snap.centres / np.maximum(np.linalg.norm(snap.centres, axis=1, keepdims=True), 1e-12)
    lab = snap.labels
    cos = np.einsum("kd,kd->k", snap.embeddings, w[lab]) if len(lab) else np.zeros(0)
    theta = np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))
    out = []
    for i, (y, p, t) in enumerate(zip(lab, pred, theta, strict=True)):
        verdict = "✓" if p == y else f"✗ predicted {names[p]}"
        out.append(f"{names[y]} {verdict}<br>θ<sub>y</sub> = {t:.1f}°<br>test image #{trainer.sample_ids[i]}"
                   "<br><i>click to see it</i>")
    return out
