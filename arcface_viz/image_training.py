"""MNIST lessons: a small CNN trained live to a 2-D or 3-D hypersphere embedding (Fig. 3 on real images).

The classic picture of the margin literature: a CNN on MNIST with a 2-D/3-D embedding, drawn normalised on the
circle or sphere.  A margin loss has to leave an angular gap between classes; Softmax and Norm-Softmax only
have to classify (the paper's Table 3 even finds Norm-Softmax's W_j 44° from its class's feature centre, against
14° for ArcFace).  This module holds what the page (``pages/mnist.py``), the CLI (``arcface-viz mnist``) and
the benchmark share:

- :data:`MNIST_SPEC`, the lesson's parameters (widgets, URL, CLI flags) and :func:`image_config`;
- :class:`ImageConfig` and :func:`build_image_trainer` / :func:`build_image_compare_trainers`: the step-wise
  :class:`~arcface_viz.training.Trainer` fed with *streaming* mini-batches.  The training set stays a uint8
  tensor (on the GPU when there is one) and each batch is normalised on the fly, ``x = (u/255 − μ)/σ``;
  one epoch is one shuffled pass.  Every snapshot measures the accuracy on a fixed, bounded subset of the
  test images (the ones drawn on the sphere); the *full* test set is evaluated at every epoch end;
- :func:`confusion`: the test confusion matrix and the most confused pairs with the angle between their
  class centres W_j (a small angle between two centres is why those two classes get confused);
- :func:`png_data_uri` / :func:`thumbnails`: test images as small PNG data URIs for the page's gallery;
- :func:`train_for` and :func:`report`: a run to an epoch or time budget, and its numbers (test accuracy,
  images/second, the Table-3 angles W-EC, W-Inter, Intra, Inter in degrees).

Same seed ⇒ same run (on the CPU): the data subset, the network and W_j, the batch order (the stream's own
``torch.Generator``) and dropout (the Trainer's own RNG stream) all derive from ``seed``.
"""

from __future__ import annotations

import base64
import copy
import math
import struct
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, NamedTuple

import numpy as np
import plotly.graph_objects as go
import torch
from torch import nn

from .device import pick_device
from .losses import LOSSES, PARAM_NAMES, loss_defaults, make_loss
from .models import SmallCNN
from .params import LIVE_LOSS_PARAMS, LOSS_SPEC, Param, Spec, loss_params
from .training import Snapshot, Trainer, seeded

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

#: Training settings per data set, used where an ImageConfig leaves them as None.
DATASET_TRAINING: dict[str, dict[str, Any]] = {
    "mnist": {},
    "fashion-mnist": {},
    "digits": {},
}
#: Images per forward pass when evaluating: 256 keeps a 28×28 CNN's activations near 13 MB per layer (1024
#: needed ~50 MB each, which set the peak memory of a hosted app) at the same speed.
EVAL_CHUNK = 256
TRAINING_DEFAULTS: dict[str, Any] = {"lr": 0.01, "warmup_steps": 0, "channels": (16, 32), "batch_size": 128}


def image_loss_defaults(name: str) -> dict[str, Any]:
    """The loss parameters the MNIST lesson starts from: low-dimensional defaults + image presets."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")
    out = loss_defaults(name, low_dim=True)
    out.update({k: v for k, v in IMAGE_LOSS_PRESETS.get(name, {}).items() if k in LOSSES[name].params})
    return out


def image_dataset_defaults(name: str) -> dict[str, Any]:
    """The training settings that suit a data set, in MNIST_SPEC names (loaded when the picker changes)."""
    rec = {**TRAINING_DEFAULTS, **DATASET_TRAINING.get(name, {})}
    return {"lr": rec["lr"], "warmup": rec["warmup_steps"], "batch_size": rec["batch_size"]}


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
# The lesson's parameters.  data_dir is not here: it is free text (a page text input / --data-dir).

_LOSS_CHOICES = tuple(LOSSES)
_LOSS_LABELS = {k: v.label for k, v in LOSSES.items()}
BATCH_SIZES = (32, 64, 128, 256, 512)

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
    *LOSS_SPEC.with_defaults(**image_loss_defaults("arcface")),
    Param("optimizer", "choice", "adam", "optimizer", choices=("adam", "sgd"), widget="radio"),
    Param("lr", "float", TRAINING_DEFAULTS["lr"], "learning rate",
          "Step size of the optimizer; applies at the next step.", min=0.0005, max=0.5, step=0.0005,
          format="%.4f"),
    Param("batch_size", "choice", TRAINING_DEFAULTS["batch_size"], "batch size", "Images per optimizer step.",
          choices=BATCH_SIZES),
    Param("warmup", "int", TRAINING_DEFAULTS["warmup_steps"], "margin warm-up (steps)",
          "Ramp the margin from 0 over this many steps.", min=0, max=5000, step=50),
    Param("steps_per_frame", "int", 10, "steps per frame", "Optimizer steps between two redraws.",
          min=1, max=200, step=1),
    Param("compare", "bool", False, "Compare two losses",
          "Train a second loss side by side: same images, seed, batches and initial weights."),
    Param("loss_b", "choice", "softmax", "second loss", "The loss drawn on the left in compare mode.",
          choices=_LOSS_CHOICES, labels=_LOSS_LABELS),
))

#: settings a running trainer takes between steps; any other change needs a Reset
MNIST_LIVE = (*LIVE_LOSS_PARAMS, "lr", "warmup", "steps_per_frame")


def image_config(values: Mapping[str, Any], loss: str | None = None, data_dir: str | None = None) -> dict[str, Any]:
    """MNIST_SPEC values -> the settings of :class:`ImageConfig` (for ``loss`` if given: its own defaults)."""
    name = loss or values["loss"]
    return {
        "dataset": values["dataset"], "data_dir": data_dir or None, "max_train": values["max_train"],
        "seed": values["seed"], "dim": values["dim"], "loss": name,
        "loss_params": {} if loss else loss_params(values), "optimizer": values["optimizer"], "lr": values["lr"],
        "batch_size": values["batch_size"], "warmup_steps": values["warmup"],
    }


# ---------------------------------------------------------------------------------------------
# Config


@dataclass
class ImageConfig:
    """Everything that defines an image run.  ``loss_params`` left out take :func:`image_loss_defaults`;
    ``lr``, ``warmup_steps``, ``channels`` and ``batch_size`` left as None take DATASET_TRAINING[dataset],
    then TRAINING_DEFAULTS.

    ``sample_size``: test images evaluated at every snapshot and drawn on the sphere (a fixed random subset);
    ``eval_size``: training images for the per-snapshot train accuracy and θ_yi histogram.
    """

    dataset: str = "digits"
    data_dir: str | None = None
    dim: int = 3
    loss: str = "arcface"
    loss_params: dict[str, Any] = field(default_factory=dict)
    optimizer: str = "adam"
    lr: float | None = None
    batch_size: int | None = None
    warmup_steps: int | None = None
    anneal: bool = True
    channels: tuple[int, ...] | None = None
    dropout: float = 0.2
    max_train: int | None = None
    max_test: int | None = None
    seed: int = 0
    device: str | None = None
    num_threads: int | None = None
    sample_size: int = 1000
    eval_size: int = 1000

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> ImageConfig:
        """Fields by name; loss parameters (s, m2, …) may also sit at the top level.  Unknown keys raise."""
        names = {f.name for f in fields(cls)}
        unknown = set(values) - names - set(PARAM_NAMES)
        if unknown:
            raise ValueError(f"unknown setting(s) {sorted(unknown)}")
        kw = {k: v for k, v in values.items() if k in names}
        lp = dict(kw.pop("loss_params", None) or {})
        lp.update({k: v for k, v in values.items() if k in PARAM_NAMES and v is not None})
        if kw.get("channels") is not None:
            kw["channels"] = tuple(int(c) for c in kw["channels"])
        return cls(**kw, loss_params=lp)

    def resolved(self) -> ImageConfig:
        """A copy with lr, warmup_steps, channels and batch_size filled in."""
        rec = {**TRAINING_DEFAULTS, **DATASET_TRAINING.get(self.dataset, {})}
        keys = ("lr", "warmup_steps", "channels", "batch_size")
        return replace(self, **{k: rec[k] for k in keys if getattr(self, k) is None})

    def resolved_loss_params(self) -> dict[str, Any]:
        """image_loss_defaults(loss) updated with the given values the loss actually uses (range-checked)."""
        out = image_loss_defaults(self.loss)
        used = LOSSES[self.loss].params
        out.update({k: LOSS_SPEC[k].coerce(v) for k, v in self.loss_params.items() if k in used and v is not None})
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, every default filled in."""
        cfg = self.resolved()
        d = asdict(cfg)
        d["channels"] = list(cfg.channels)
        d["loss_params"] = cfg.resolved_loss_params()
        return d

    def load_data(self):
        """The data set (toy_data.ImageDataset); raises toy_data.DatasetMissing with how to get it."""
        from toy_data import load_dataset

        if self.dataset not in IMAGE_DATASETS:
            raise ValueError(f"unknown data set {self.dataset!r}; choose one of {', '.join(IMAGE_DATASETS)}")
        return load_dataset(self.dataset, self.data_dir, max_train=self.max_train, max_test=self.max_test,
                            seed=self.seed)


def _config(config, overrides: Mapping[str, Any]) -> ImageConfig:
    if config is None:
        base: dict[str, Any] = {}
    elif isinstance(config, ImageConfig):
        base = {f.name: getattr(config, f.name) for f in fields(config)}
    else:
        base = dict(config)
    return ImageConfig.from_dict({**base, **overrides})


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

    def advance(self, k: int = 1) -> ImageSnapshot:
        """Train k steps; crossing an epoch end evaluates the full test set (once, at the end of the chunk)."""
        before = self.step // self.steps_per_epoch
        base = super().advance(k)
        done = self.step // self.steps_per_epoch
        if done > before:
            self.epoch_log.append(EpochResult(done, self.step, self.full_test()[0], self.seconds))
        return self._with_epochs(base)

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


def _make_model(cfg: ImageConfig, data) -> nn.Module:
    """models.SmallCNN for the image size; on the CPU its weights are stored channels-last, which makes
    oneDNN's convolutions, pooling and PReLU about 1.5× faster at this size (bench/bench_mnist.py)."""
    h, w = data.image_shape
    if h != w:
        raise ValueError(f"square images expected, got {h}×{w}")
    net = SmallCNN(cfg.dim, 1, h, channels=cfg.channels, dropout=cfg.dropout)
    if pick_device(cfg.device).type == "cpu":
        net = net.to(memory_format=torch.channels_last)
    return net


def build_image_trainer(config: ImageConfig | Mapping[str, Any] | None = None, *, data=None,
                        model: nn.Module | None = None, **overrides: Any) -> ImageTrainer:
    """An :class:`ImageTrainer` for ``config`` (an ImageConfig or a dict, see ImageConfig.from_dict) with
    ``overrides`` on top.  The CNN and then W_j are created under ``torch.manual_seed(seed)``; pass ``data``
    (an ImageDataset) to reuse loaded images and ``model`` to start from given weights (deep-copied).
    Raises ValueError (toy_data.DatasetMissing included) for settings that cannot be trained."""
    cfg = _config(config, overrides).resolved()
    if cfg.dim not in (2, 3):
        raise ValueError(f"embedding dimension must be 2 or 3, got {cfg.dim}")
    if cfg.loss not in LOSSES:
        raise ValueError(f"unknown loss {cfg.loss!r}; choose one of {', '.join(LOSSES)}")
    params = cfg.resolved_loss_params()
    data = data if data is not None else cfg.load_data()
    with seeded(cfg.seed):
        net = _make_model(cfg, data)  # always drawn, so W_j's initialisation does not depend on `model`
        if model is not None:
            net = copy.deepcopy(model)
        loss_fn = make_loss(cfg.loss, data.n_classes, cfg.dim, **params)
    return ImageTrainer(net, loss_fn, data, cfg)


def build_image_compare_trainers(config: ImageConfig | Mapping[str, Any] | None = None,
                                 losses: tuple[str, str] = ("softmax", "arcface"),
                                 loss_params: tuple[Mapping[str, Any] | None, Mapping[str, Any] | None] = (None, None),
                                 *, data=None, **overrides: Any) -> tuple[ImageTrainer, ImageTrainer]:
    """Compare mode: two trainers with the same images, seed, batches and initial CNN weights, differing only
    in the loss.  ``loss_params[i]`` overrides loss i's image defaults."""
    cfg = _config(config, overrides).resolved()
    data = data if data is not None else cfg.load_data()
    with seeded(cfg.seed):
        net = _make_model(cfg, data)
    out = [build_image_trainer(replace(cfg, loss=name, loss_params=dict(p or {})), data=data, model=net)
           for name, p in zip(losses, loss_params, strict=True)]
    return out[0], out[1]


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
    from . import stats
    from .device import describe

    acc, _ = trainer.full_test()
    emb_te, _ = trainer.test_predictions()
    y_te = trainer.y_test_all.cpu().numpy()
    data = trainer.data
    rng = np.random.default_rng(trainer.seed)
    n = len(data.y_train)
    ids = np.sort(rng.permutation(n)[:min(max_train_embed, n)])
    emb_tr = trainer.embed_images(np.ascontiguousarray(data.x_train[ids])).float().cpu().numpy()
    weight = trainer.loss_fn.weight.detach().float().cpu().numpy() if trainer.loss_fn.info.has_centres else None
    angles = stats.angle_statistics(weight, emb_tr, data.y_train[ids], emb_te, y_te)
    cfg = trainer.config
    return {
        "dataset": data.name, "source": data.source, "dim": cfg.dim, "loss": trainer.loss_fn.name,
        "loss_label": trainer.loss_fn.info.label, "loss_params": cfg.resolved_loss_params(),
        "test_acc": acc, "epochs": trainer.epoch, "steps": trainer.step, "seconds": trainer.seconds,
        "images_per_second": trainer.images_per_second,
        "epoch_test_acc": [r._asdict() for r in trainer.epoch_log],
        "W-EC": angles["W-EC"], "W-Inter": angles["W-Inter"], "Intra": angles["Intra1"], "Inter": angles["Inter1"],
        "Intra1": angles["Intra1"], "Inter1": angles["Inter1"], "Intra2": angles["Intra2"],
        "Inter2": angles["Inter2"],
        "n_train": n, "n_test": int(len(y_te)), "n_train_angles": int(len(ids)),
        "device": describe(trainer.device), "num_threads": trainer.num_threads or torch.get_num_threads(),
        "config": cfg.to_dict(),
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
# Thumbnails and hover text


def png_bytes(image: np.ndarray, scale: int = 1, invert: bool = False) -> bytes:
    """A grey uint8 image (H, W) as PNG bytes, each pixel a ``scale``×``scale`` block (no dependencies)."""
    img = np.asarray(image)
    if img.ndim != 2:
        raise ValueError(f"expected a grey image (H, W), got shape {img.shape}")
    img = img.astype(np.uint8)
    if invert:
        img = 255 - img
    if scale > 1:
        img = np.repeat(np.repeat(img, scale, axis=0), scale, axis=1)
    h, w = img.shape
    raw = np.concatenate([np.zeros((h, 1), np.uint8), img], axis=1).tobytes()  # filter byte 0 on each row

    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


def png_data_uri(image: np.ndarray, scale: int = 1, invert: bool = False) -> str:
    """``data:image/png;base64,…`` for an image (st.image and HTML <img> take it as a URL)."""
    return "data:image/png;base64," + base64.b64encode(png_bytes(image, scale, invert)).decode("ascii")


def thumbnails(images: np.ndarray, size: int = 56, invert: bool = False) -> list[str]:
    """Data URIs of uint8 images (N, H, W), scaled up by whole pixels to about ``size`` pixels wide."""
    imgs = np.asarray(images)
    scale = max(1, round(size / imgs.shape[-1])) if imgs.ndim == 3 and imgs.shape[-1] else 1
    return [png_data_uri(im, scale, invert) for im in imgs]


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


# ---------------------------------------------------------------------------------------------
# Figures for the page (pure: arrays in, plotly Figure out)


def attach_sample_ids(fig: go.Figure, labels: np.ndarray, n_classes: int) -> go.Figure:
    """Put each drawn sample's position (0..k−1) into ``customdata`` of the per-class traces that
    plots.sphere.embedding_figure builds (legendgroup "class<j>", points in sample order), so a selection
    event says which images were clicked.  Use with ``hover_text`` (customdata is then free)."""
    lab = np.asarray(labels)
    for tr in fig.data:
        group = getattr(tr, "legendgroup", None) or ""
        if group.startswith("class") and group[5:].isdigit() and tr.mode == "markers":
            j = int(group[5:])
            if 0 <= j < n_classes:
                tr.customdata = np.flatnonzero(lab == j)
    return fig


def selected_samples(selection: Any) -> list[int]:
    """Sample positions from a Streamlit plotly selection (``event.selection``), in click order, unique."""
    points = (selection or {}).get("points", []) if isinstance(selection, Mapping) else \
        getattr(selection, "points", []) or []
    out: list[int] = []
    for p in points:
        cd = p.get("customdata") if isinstance(p, Mapping) else None
        if isinstance(cd, (list, tuple)):
            cd = cd[0] if cd else None
        if isinstance(cd, (int, float)) and not isinstance(cd, bool) and float(cd).is_integer():
            if int(cd) not in out:
                out.append(int(cd))
    return out


def sphere_map_figure(embeddings: np.ndarray, labels: np.ndarray, centres: np.ndarray,
                      class_names: Sequence[str], hover_text: Sequence[str] | None = None,
                      title: str | None = None, height: int = 420, uirevision: str = "map") -> go.Figure:
    """The sphere unrolled (equirectangular): longitude atan2(y, x) and latitude asin(z), in degrees, so points
    can be clicked or box-selected (3-D scatter plots cannot be selected).  Centres W_j are diamonds;
    customdata holds each point's sample position."""
    from .plots.sphere import palette

    emb = np.asarray(embeddings, dtype=np.float64)
    emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    lab = np.asarray(labels)
    w = np.asarray(centres, dtype=np.float64)
    w = w / np.maximum(np.linalg.norm(w, axis=1, keepdims=True), 1e-12)

    def lonlat(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.degrees(np.arctan2(v[:, 1], v[:, 0])), np.degrees(np.arcsin(np.clip(v[:, 2], -1.0, 1.0)))

    colours = palette(len(w))
    lon, lat = lonlat(emb) if len(emb) else (np.zeros(0), np.zeros(0))
    hover = np.asarray(hover_text, dtype=object) if hover_text is not None else None
    traces = []
    for j in range(len(w)):
        m = lab == j
        if not m.any():
            continue
        kw: dict[str, Any] = {"hovertext": hover[m].tolist(), "hoverinfo": "text"} if hover is not None else {}
        traces.append(go.Scatter(x=lon[m].astype(np.float32), y=lat[m].astype(np.float32), mode="markers",
                                 name=str(class_names[j]), legendgroup=f"class{j}", customdata=np.flatnonzero(m),
                                 marker=dict(size=6, color=colours[j], opacity=0.8,
                                             line=dict(color="rgba(0,0,0,0.3)", width=0.5)), **kw))
    wl, wt = lonlat(w)
    traces.append(go.Scatter(x=wl, y=wt, mode="markers", name="class centres W_j", hoverinfo="text",
                             hovertext=[f"W<sub>{j}</sub> ({class_names[j]})" for j in range(len(w))],
                             marker=dict(size=14, symbol="diamond", color=colours,
                                         line=dict(color="#333333", width=1.5))))
    layout = dict(title=dict(text=title, x=0.5, xanchor="center") if title else None, height=height,
                  margin=dict(l=50, r=10, t=40 if title else 15, b=40), uirevision=uirevision,
                  xaxis=dict(range=[-180, 180], title=dict(text="longitude (°)"), dtick=45, zeroline=False),
                  yaxis=dict(range=[-90, 90], title=dict(text="latitude (°)"), dtick=30, zeroline=False),
                  legend=dict(itemsizing="constant"), hovermode="closest")
    return go.Figure(data=traces, layout=layout)


def curves_with_epochs(curves: Mapping[str, np.ndarray], epoch_log: Sequence[EpochResult],
                       title: str | None = None) -> go.Figure:
    """plots.sphere.curves_figure (loss; train and drawn-sample test accuracy per snapshot) plus one marker
    per epoch end: the accuracy on the whole test set."""
    from .plots.sphere import curves_figure

    fig = curves_figure(curves["steps"], curves["loss"], curves["train_acc"], curves["test_acc"], title=title)
    fig.add_trace(go.Scatter(x=[r.step for r in epoch_log], y=[r.test_acc for r in epoch_log], mode="markers",
                             name="test acc, whole set (epoch ends)", xaxis="x2", yaxis="y2",
                             marker=dict(size=10, symbol="star", color="#CC79A7",
                                         line=dict(color="#333333", width=1)),
                             hovertemplate="epoch end, step %{x}: %{y:.2%} on the whole test set<extra></extra>"))
    return fig


def confusion_figure(conf: Confusion, title: str | None = None, height: int = 430) -> go.Figure:
    """Heatmap of the confusion matrix, row-normalised colour (share of each true class), counts as text."""
    m = conf.matrix.astype(np.float64)
    share = m / np.maximum(m.sum(axis=1, keepdims=True), 1.0)
    names = [str(c) for c in conf.classes]
    fig = go.Figure(go.Heatmap(
        z=share, x=names, y=names, text=conf.matrix, texttemplate="%{text}", colorscale="Blues", zmin=0, zmax=1,
        hovertemplate="true %{y}, predicted %{x}: %{text} images (%{z:.1%} of %{y})<extra></extra>",
        colorbar=dict(title=dict(text="share"), tickformat=".0%")))
    fig.update_layout(title=dict(text=title, x=0.5, xanchor="center") if title else None, height=height,
                      margin=dict(l=10, r=10, t=40 if title else 10, b=10), uirevision="confusion",
                      xaxis=dict(title=dict(text="predicted"), type="category", side="bottom"),
                      yaxis=dict(title=dict(text="true"), type="category", autorange="reversed"))
    return fig

