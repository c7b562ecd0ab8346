"""Table 3 at small scale: train NS, ArcFace, IntraL, InterL and TripletL alike and compare their angle statistics.

The paper's Table 3 trains five ResNet50s on CASIA, differing only in the loss, and reports in degrees

- W-EC ↓ (class weight W_j vs its embedding-feature centre), W-Inter ↑ (nearest other W_k),
- Intra1 ↓ / Inter1 ↑ on the training set ("1", CASIA) and Intra2 ↓ / Inter2 ↑ on a test set ("2", LFW),

see :func:`arcface_viz.stats.angle_statistics`.  :func:`run_table3` repeats the experiment on a toy data set
or on digits / Fashion-MNIST / MNIST: the same data, the same seed, the same initial network and W (drawn
under ``torch.manual_seed(seed)``), the same mini-batches and the same number of optimizer steps for all five
losses; only the loss differs.  Besides the six statistics it measures, on the test set, the positive and
negative pair angles (Fig. 6/7), LFW-protocol verification accuracy on balanced pairs (section 4) and
TAR@FAR.  :func:`reading` says, comparison by comparison, where our numbers go the paper's way.

**Budget → steps.**  The budget is seconds per model (on average), but the models train for a *step count*
derived from it with fixed reference throughputs (:data:`REFERENCE_STEPS_PER_SECOND`, measured on two shared
CPU cores): the five models together take about 5 × budget seconds there.  Equal steps rather than equal wall
time keep the comparison fair (the batch-hard triplet loss is several times slower per step than the
softmax heads) and make the result reproducible: the same configuration gives the same numbers run after run
whatever the machine's load, and on another CPU only the time differs (up to floating-point details of its
vector units) (:func:`steps_for`).

**Differences from the paper, by design.**  "2" is held-out samples of the *training classes* (the paper's
LFW has other identities).  Embeddings have 2, 3, 8 or 16 dimensions instead of 512: in 2-D, 8 classes can be
at most 45° apart, so Inter and W-Inter are capped by geometry.  d dimensions hold at most d mutually
orthogonal directions: 16-D fits the 8 toy identities and the 10 digits, 8-D only the 8 toy identities (10
classes in 8-D can still be 90° or more apart, like ±e_1 … ±e_5, but not all orthogonal).  From 8-D on the
angles are no longer capped the way 2-D caps them.  Loss parameters are the low-dimensional
defaults in 2-D/3-D and :data:`HIGH_DIM_PARAMS` from 8-D on (see :func:`loss_params_for`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import numpy as np

from . import stats as S
from .image_training import ImageConfig, ImageTrainer
from .losses import LOSSES, loss_defaults
from .params import Param, ParamError, Spec
from .training import ToyConfig, Trainer

# ---------------------------------------------------------------------------------------------------
# The five models and the settings
# ---------------------------------------------------------------------------------------------------

#: Table 3's columns and the registry's losses that train them (IntraL / InterL = Norm-Softmax + L5 / L6).
TABLE3_LOSSES: dict[str, str] = {
    "NS": "norm_softmax", "ArcFace": "arcface", "IntraL": "intra", "InterL": "inter", "TripletL": "triplet",
}
#: Table 2's rows that correspond to our five models (the paper's CASIA / ResNet50 verification accuracies).
TABLE2_EQUIVALENT: dict[str, str] = {
    "NS": "Norm-Softmax (s=64)", "ArcFace": "ArcFace (0.5)", "IntraL": "NS+Intra", "InterL": "NS+Inter",
    "TripletL": "Triplet (0.35)",
}

TOY_CHOICES: tuple[str, ...] = ("fig3", "blobs", "sphere", "spirals", "moons", "imbalanced")
IMAGE_CHOICES: tuple[str, ...] = ("digits", "fashion-mnist", "mnist")
DATASET_CHOICES: tuple[str, ...] = TOY_CHOICES + IMAGE_CHOICES
DATASET_LABELS: dict[str, str] = {
    "fig3": "Fig. 3 toy (8 identities)", "blobs": "Gaussian blobs (toy)", "sphere": "Classes on a sphere (toy)",
    "spirals": "Spirals (toy)", "moons": "Moons (toy)", "imbalanced": "Imbalanced (toy)",
    "digits": "Digits 8×8 (small CNN)", "fashion-mnist": "Fashion-MNIST (small CNN)", "mnist": "MNIST (small CNN)",
}
DIMS: tuple[int, ...] = (2, 3, 8, 16)
DIM_LABELS: dict[int, str] = {2: "2 (circle)", 3: "3 (sphere)", 8: "8", 16: "16"}

#: The budget each data set starts with (seconds per model, on average; see steps_for).
DEFAULT_BUDGET: dict[str, float] = {**dict.fromkeys(TOY_CHOICES, 3.0), "digits": 6.0, "fashion-mnist": 20.0,
                                    "mnist": 20.0}

#: Optimizer steps per second of one model on the reference machine (2 shared CPU cores, one thread per
#: model), for the four softmax-head losses ("softmax") and the batch-hard triplet loss ("triplet").
#: Measured with ``run_table3``'s settings; only used to turn a budget into a step count.
REFERENCE_STEPS_PER_SECOND: dict[str, dict[str, float]] = {
    "toy": {"softmax": 850.0, "triplet": 105.0},  # ToyMLP (64,), batch 256
    "toy-deep": {"softmax": 400.0, "triplet": 100.0},  # spirals (64, 64, 64) and moons (64, 64)
    "digits": {"softmax": 75.0, "triplet": 65.0},  # SmallCNN on 8×8, batch 128
    "28x28": {"softmax": 18.0, "triplet": 16.0},  # SmallCNN on 28×28, batch 128
}
MAX_STEPS = 200_000

#: Loss parameters from 8-D embeddings on: the paper's margins (ArcFace m = 0.5, triplet 0.35) with s = 30.
#: The paper's s = 64 serves ~10k identities; for C ≤ 10 classes a target posterior of 0.99 needs only
#: s ≥ (C−1)/C · ln((C−1)·0.99/0.01) ≈ 6 (the CosFace/NormFace bound), and s = 30 trains stably in seconds.
#: In 2-D/3-D the registry's low-dimensional defaults are used (s = 16, ArcFace m = 0.2, triplet margin 0.2):
#: a large margin cannot fit between 8 classes on a circle.
HIGH_DIM_PARAMS: dict[str, dict[str, Any]] = {
    "norm_softmax": {"s": 30.0}, "arcface": {"s": 30.0, "m2": 0.5, "easy_margin": False},
    "intra": {"s": 30.0}, "inter": {"s": 30.0}, "triplet": {"margin": 0.35},
}

FARS: tuple[float, ...] = (1e-2, 1e-3)
VERIFICATION_PAIRS = 6000  # balanced pairs from the test set, as LFW's 6,000
HISTOGRAM_PAIRS = 3000  # at most this many positive and this many negative pairs for Fig. 6/7
HISTOGRAM_BINS = 90  # 2° bins over 0–180° for the overlap
MAX_TRAIN_EMBED = 5000  # image sets: training images embedded for Intra1 / Inter1
MAX_TEST_IMAGES = 5000  # image sets: test images (a seeded random subset) for "2", pairs and verification

TABLE3_SPEC = Spec((
    Param("dataset", "choice", "fig3", "Data set",
          "Toy sets train a small MLP (seconds); digits, Fashion-MNIST and MNIST train a small CNN (minutes). "
          "All five models see the same data, seed, initial weights and mini-batches.",
          choices=DATASET_CHOICES, labels=DATASET_LABELS),
    Param("budget", "float", 3.0, "budget (seconds per model)",
          "Training time per model on average, turned into one step count for all five models (equal steps, so "
          "results are reproducible; the triplet loss takes longer per step). About 3 s suits the toy sets, "
          "20 s or more the 28×28 images.", min=0.5, max=120.0, step=0.5, format="%.1f"),
    Param("seed", "int", 0, "seed", "Same seed, same data, initial weights and batches: the same table.",
          min=0, max=99999, step=1, widget="number"),
    Param("dim", "choice", 16, "embedding dimension",
          "2 or 3: the pictures of Fig. 3, but 8 classes can be at most 45° (2-D) apart, which caps Inter and "
          "W-Inter. 8 or 16: closer to the paper's 512-D. d dimensions hold at most d mutually orthogonal "
          "classes: 16-D fits the 8 toy identities and the 10 digits, 8-D only the 8 toy identities.",
          choices=DIMS, labels=DIM_LABELS, widget="radio"),
))


def dataset_defaults(name: str) -> dict[str, Any]:
    """Settings to load when the data-set picker changes: its budget."""
    return {"budget": DEFAULT_BUDGET.get(name, 3.0)}


def _rate_kind(dataset: str) -> str:
    if dataset in ("spirals", "moons"):
        return "toy-deep"
    if dataset in TOY_CHOICES:
        return "toy"
    return "digits" if dataset == "digits" else "28x28"


def steps_for(dataset: str, budget_s: float) -> int:
    """The step count every model trains for: the five models together take about 5 × ``budget_s`` seconds
    at :data:`REFERENCE_STEPS_PER_SECOND` (steps = 5·budget / Σ_losses 1/rate), at least 1."""
    if dataset not in DATASET_CHOICES:
        raise ParamError(f"unknown data set {dataset!r}; choose one of {', '.join(DATASET_CHOICES)}")
    if isinstance(budget_s, bool) or not isinstance(budget_s, (int, float)) or not math.isfinite(budget_s) \
            or budget_s <= 0:
        raise ParamError(f"budget must be a positive number of seconds, got {budget_s!r}")
    rate = REFERENCE_STEPS_PER_SECOND[_rate_kind(dataset)]
    per_step = sum(1.0 / rate["triplet" if name == "triplet" else "softmax"] for name in TABLE3_LOSSES.values())
    return int(min(MAX_STEPS, max(1, round(5.0 * budget_s / per_step))))


def loss_params_for(loss: str, dim: int) -> dict[str, Any]:
    """The loss's parameters for an embedding dimension: low-dimensional defaults in 2-D/3-D, else
    :data:`HIGH_DIM_PARAMS` on top of the paper's defaults."""
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}")
    if dim <= 3:
        return loss_defaults(loss, low_dim=True)
    out = loss_defaults(loss, low_dim=False)
    out.update({k: v for k, v in HIGH_DIM_PARAMS.get(loss, {}).items() if k in LOSSES[loss].params})
    return out


# ---------------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------------


@dataclass
class Table3Row:
    """One model: its Table-3 column, the six statistics (degrees; W-EC / W-Inter None for the triplet
    loss, which has no classifier), and the test-set pair angles and verification numbers.

    ``verification``: {"n_pairs", "accuracy_mean", "accuracy_std" (fractions), "tar_at_far": {"0.01": …}}
    (a FAR is left out when the test set has fewer than 1/FAR negative pairs); ``pairs``: {"n_positive",
    "n_negative", "mean_positive_deg", "mean_negative_deg", "overlap", "pos_deg", "neg_deg"} (the angle lists,
    rounded to 0.01°, feed the Fig. 6/7 histograms).  ``test_acc``: nearest-centre accuracy on the test set
    (W_j; the triplet loss's running class means).
    """

    column: str
    loss: str
    label: str = ""
    loss_params: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, float | None] = field(default_factory=dict)
    skipped_classes: list[int] = field(default_factory=list)
    test_acc: float | None = None
    verification: dict[str, Any] | None = None
    pairs: dict[str, Any] | None = None
    steps: int = 0
    seconds: float = 0.0
    final_loss: float | None = None

    def to_dict(self, angles: bool = True) -> dict[str, Any]:
        """JSON-ready; ``angles=False`` leaves out the per-pair angle lists."""
        d = asdict(self)
        if not angles and d["pairs"] is not None:
            d["pairs"] = {k: v for k, v in d["pairs"].items() if k not in ("pos_deg", "neg_deg")}
        return d


@dataclass
class Table3Result:
    """The five rows in Table 3's order plus the settings that made them (JSON-ready via :meth:`to_dict`)."""

    config: dict[str, Any]
    rows: list[Table3Row]
    n_train: int = 0
    n_test: int = 0
    n_classes: int = 0
    seconds: float = 0.0

    def row(self, column: str) -> Table3Row | None:
        return next((r for r in self.rows if r.column == column), None)

    def values(self) -> dict[str, dict[str, float | None]]:
        """``{column: {statistic: degrees}}`` like :data:`arcface_viz.stats.PAPER_TABLE3` (transposed)."""
        return {r.column: dict(r.stats) for r in self.rows}

    def to_dict(self, angles: bool = True) -> dict[str, Any]:
        return {"config": dict(self.config), "rows": [r.to_dict(angles) for r in self.rows], "n_train": self.n_train,
                "n_test": self.n_test, "n_classes": self.n_classes, "seconds": self.seconds}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Table3Result:
        names = {f.name for f in fields(Table3Row)}
        rows = [Table3Row(**{k: v for k, v in r.items() if k in names}) for r in d["rows"]]
        return cls(config=dict(d["config"]), rows=rows, n_train=d.get("n_train", 0), n_test=d.get("n_test", 0),
                   n_classes=d.get("n_classes", 0), seconds=d.get("seconds", 0.0))


# ---------------------------------------------------------------------------------------------------
# Measuring one model
# ---------------------------------------------------------------------------------------------------


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def evaluate_embeddings(weight: np.ndarray | None, emb_train: np.ndarray, y_train: np.ndarray,
                        emb_test: np.ndarray, y_test: np.ndarray, seed: int = 0,
                        fars: Sequence[float] = FARS) -> dict[str, Any]:
    """Everything a Table-3 row reports for one model's embeddings: ``stats`` (angle_statistics),
    ``skipped_classes``, ``pairs`` (Fig. 6/7 angles of the test set), ``verification`` (LFW protocol on
    balanced test pairs, TAR@FAR with cos θ as the score) and ``test_acc`` (nearest centre)."""
    st = S.angle_statistics(weight, emb_train, y_train, emb_test, y_test)
    out: dict[str, Any] = {"stats": {k: st[k] for k in S.TABLE3_ROWS},
                           "skipped_classes": [int(c) for c in st["skipped_classes"]]}
    xt, yt = _unit(emb_test), np.asarray(y_test)
    pos, neg = S.pair_angles(xt, yt, max_pairs=HISTOGRAM_PAIRS, seed=seed)
    out["pairs"] = {
        "n_positive": int(pos.size), "n_negative": int(neg.size), "mean_positive_deg": float(pos.mean()),
        "mean_negative_deg": float(neg.mean()), "overlap": S.histogram_overlap(pos, neg, bins=HISTOGRAM_BINS),
        "pos_deg": np.round(pos, 2).tolist(), "neg_deg": np.round(neg, 2).tolist(),
    }
    ia, ib, same = S.verification_pairs(yt, n_pairs=VERIFICATION_PAIRS, seed=seed)
    if same.size >= 10:
        res = S.verification_folds(xt[ia], xt[ib], same, folds=10)
        scores = np.sum(xt[ia] * xt[ib], axis=1)
        n_neg = int((~same).sum())
        out["verification"] = {
            "n_pairs": int(same.size), "accuracy_mean": res.mean, "accuracy_std": res.std,
            "tar_at_far": {f"{far:g}": S.tar_at_far(scores, same, far) for far in fars if n_neg * far >= 1.0},
        }
    else:
        out["verification"] = None
    centres = _unit(weight) if weight is not None else None
    out["test_acc"] = float(np.mean(np.argmax(xt @ centres.T, axis=1) == yt)) if centres is not None else None
    return out


ProgressFn = Callable[[float, str], None]


def _train(trainer, steps: int, report: Callable[[float], None], chunks: int = 10):
    """``steps`` optimizer steps in up to ``chunks`` pieces (the batches do not depend on the chunking);
    returns the last snapshot."""
    done, snap = 0, None
    size = max(1, math.ceil(steps / chunks))
    while done < steps:
        k = min(size, steps - done)
        snap = trainer.advance(k)
        done += k
        report(done / steps)
    return snap


@dataclass
class Table3Setup:
    """What the five models share: the data, the step-count-independent training settings, and how to build
    and embed one model.  ``build(loss, params)`` returns a fresh Trainer whose network and W_j are drawn under
    ``torch.manual_seed(seed)`` (identical for every loss; the triplet loss has no trainable W);
    ``embed(trainer)`` returns (train embeddings, train labels, test embeddings, test labels)."""

    dataset: str
    seed: int
    dim: int
    n_classes: int
    n_train: int
    n_test: int
    training: dict[str, Any]
    build: Callable[[str, dict[str, Any]], Any]
    embed: Callable[[Any], tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]

    def trainer(self, column: str):
        """The Trainer of one Table-3 column ("NS", "ArcFace", …) with its :func:`loss_params_for`."""
        loss = TABLE3_LOSSES[column]
        return self.build(loss, loss_params_for(loss, self.dim))


def _toy_setup(dataset: str, seed: int, dim: int, device: str | None) -> Table3Setup:
    base = ToyConfig(dataset=dataset, dim=dim, seed=seed, device=device).resolved()
    data = base.load_data()
    X_tr, y_tr, X_te, y_te = data.train_test_split(base.test_fraction, seed=seed)

    def build(loss: str, params: dict[str, Any]) -> Trainer:  # the same network and W_j for every loss
        return replace(base, loss=loss, loss_params=dict(params)).build(data=data, dims=DIMS)

    def embed(trainer: Trainer) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        e_tr, l_tr = trainer.embeddings("train")
        e_te, l_te = trainer.embeddings("test")
        return e_tr, l_tr, e_te, l_te

    training = {k: v for k, v in base.to_dict().items() if k in ("hidden", "lr", "optimizer", "batch_size",
                                                                 "warmup_steps", "test_fraction")}
    return Table3Setup(dataset, seed, dim, data.num_classes, len(y_tr), len(y_te), {"model": "ToyMLP", **training},
                       build, embed)


def _image_setup(dataset: str, seed: int, dim: int, device: str | None, data_dir: str | None,
                 max_train: int | None) -> Table3Setup:
    base = ImageConfig(dataset=dataset, data_dir=data_dir, dim=dim, seed=seed, device=device, max_train=max_train,
                       max_test=MAX_TEST_IMAGES).resolved()
    data = base.load_data()
    rng = np.random.default_rng(seed)
    train_ids = np.sort(rng.permutation(len(data.y_train))[:MAX_TRAIN_EMBED])

    def build(loss: str, params: dict[str, Any]) -> ImageTrainer:  # the same CNN and W_j for every loss
        return replace(base, loss=loss, loss_params=dict(params)).build(data=data, dims=DIMS)

    def embed(trainer: ImageTrainer) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        e_tr = trainer.embed_images(np.ascontiguousarray(data.x_train[train_ids])).float().cpu().numpy()
        e_te, _ = trainer.test_predictions()
        return e_tr, data.y_train[train_ids], e_te, np.asarray(data.y_test)

    training = {"model": "SmallCNN", "channels": list(base.channels), "lr": base.lr, "optimizer": base.optimizer,
                "batch_size": base.batch_size, "max_train": max_train, "max_test": MAX_TEST_IMAGES,
                "train_embedded": int(len(train_ids))}
    return Table3Setup(dataset, seed, dim, data.n_classes, len(data.y_train), len(data.y_test), training, build,
                       embed)


def prepare(dataset: str, seed: int = 0, dim: int = 16, *, device: str | None = "cpu", data_dir: str | None = None,
            max_train: int | None = None) -> Table3Setup:
    """Load or generate the data set and return the :class:`Table3Setup` the five models share."""
    if dataset in TOY_CHOICES:
        return _toy_setup(dataset, seed, dim, device)
    if dataset in IMAGE_CHOICES:
        return _image_setup(dataset, seed, dim, device, data_dir, max_train)
    raise ParamError(f"unknown data set {dataset!r}; choose one of {', '.join(DATASET_CHOICES)}")


def checked_settings(dataset: str, budget_s: float, seed: int, dim: int) -> dict[str, Any]:
    """The four settings of TABLE3_SPEC, validated (ParamError, a ValueError, on any problem) and coerced."""
    values = TABLE3_SPEC.validate({"dataset": dataset, "budget": budget_s, "seed": seed, "dim": dim})
    steps_for(values["dataset"], values["budget"])
    return values


def run_table3(dataset: str = "fig3", budget_s: float = 3.0, seed: int = 0, dim: int = 16, *,
               progress: ProgressFn | None = None, steps: int | None = None, data_dir: str | None = None,
               max_train: int | None = None, device: str | None = "cpu") -> Table3Result:
    """Train the five models of Table 3 and measure them (see the module docstring).

    ``steps`` overrides the step count derived from ``budget_s`` (:func:`steps_for`).  ``progress(fraction,
    text)`` is called as training goes (fraction in [0, 1]).  ``device`` defaults to the CPU so that results
    match the CLI and other machines; None picks CUDA/MPS when present.  Image data sets read ``data_dir``
    (else the cache and system folders) and raise toy_data.DatasetMissing, a ValueError, when absent.
    """
    v = checked_settings(dataset, budget_s, seed, dim)
    dataset, seed, dim = v["dataset"], v["seed"], v["dim"]
    n_steps = steps_for(dataset, v["budget"]) if steps is None else int(steps)
    if n_steps < 1 or n_steps > MAX_STEPS:
        raise ParamError(f"steps must be 1–{MAX_STEPS}, got {steps}")
    report = progress or (lambda f, t: None)
    t_start = time.perf_counter()
    report(0.0, "Preparing the data…")
    setup = prepare(dataset, seed, dim, device=device, data_dir=data_dir, max_train=max_train)
    rows: list[Table3Row] = []
    n = len(TABLE3_LOSSES)
    for i, (column, loss) in enumerate(TABLE3_LOSSES.items()):
        params = loss_params_for(loss, dim)
        report(i / n, f"Training {column} ({i + 1} of {n}, {n_steps} steps)…")
        trainer = setup.build(loss, params)
        snap = _train(trainer, n_steps, lambda f, i=i, c=column: report((i + 0.9 * f) / n,
                                                                 f"Training {c} ({i + 1} of {n}): {f:.0%}"))
        report((i + 0.9) / n, f"Measuring {column}…")
        e_tr, y_tr, e_te, y_te = setup.embed(trainer)
        weight = trainer.loss_fn.weight.detach().float().cpu().numpy() if LOSSES[loss].has_centres else None
        ev = evaluate_embeddings(weight, e_tr, y_tr, e_te, y_te, seed=seed)
        rows.append(Table3Row(column=column, loss=loss, label=LOSSES[loss].label, loss_params=params,
                              stats=ev["stats"], skipped_classes=ev["skipped_classes"], test_acc=ev["test_acc"],
                              verification=ev["verification"], pairs=ev["pairs"], steps=trainer.step,
                              seconds=trainer.seconds, final_loss=float(snap.loss)))
    report(1.0, "Done.")
    config = {"dataset": dataset, "budget_s": v["budget"], "seed": seed, "dim": dim, "steps": n_steps,
              "device": device, "data_dir": data_dir, **setup.training}
    return Table3Result(config=config, rows=rows, n_train=setup.n_train, n_test=setup.n_test,
                        n_classes=setup.n_classes, seconds=time.perf_counter() - t_start)


# ---------------------------------------------------------------------------------------------------
# Reading the table against the paper
# ---------------------------------------------------------------------------------------------------

#: The comparisons the reading makes: (column, baseline column, statistics).  Every loss against NS on every
#: statistic it has, then ArcFace against the triplet loss on the test set (Fig. 6/7's pairing).
COMPARISONS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("ArcFace", "NS", S.TABLE3_ROWS),
    ("IntraL", "NS", S.TABLE3_ROWS),
    ("InterL", "NS", S.TABLE3_ROWS),
    ("TripletL", "NS", ("Intra1", "Inter1", "Intra2", "Inter2")),
    ("ArcFace", "TripletL", ("Intra2", "Inter2")),
)
TIE_DEG = 0.05  # differences smaller than this (degrees) count as equal


@dataclass(frozen=True)
class Comparison:
    """One statistic of two columns, ours and the paper's: which is larger, and whether the signs agree."""

    column: str
    baseline: str
    statistic: str
    ours: float
    ours_baseline: float
    paper: float
    paper_baseline: float

    @staticmethod
    def _direction(a: float, b: float) -> str:
        return "equal" if abs(a - b) < TIE_DEG else ("higher" if a > b else "lower")

    @property
    def ours_direction(self) -> str:
        return self._direction(self.ours, self.ours_baseline)

    @property
    def paper_direction(self) -> str:
        return self._direction(self.paper, self.paper_baseline)

    @property
    def matches(self) -> bool:
        return self.ours_direction == self.paper_direction

    def sentence(self) -> str:
        stat = f"{self.statistic} {S.TABLE3_ARROW[self.statistic]}"
        ours = f"{self.ours:.1f}° vs {self.ours_baseline:.1f}°"
        paper = f"{self.paper:.1f}° vs {self.paper_baseline:.1f}°"
        d = self.ours_direction
        said = f"{self.column} and {self.baseline} have the same {stat}" if d == "equal" else \
            f"{self.column} has {d} {stat} than {self.baseline}"
        if self.matches:
            return f"{said}, as in the paper (ours {ours}; paper {paper})."
        return f"Does not match: {said} ({ours}), but in the paper it is {self.paper_direction} ({paper})."


def compare_with_paper(values: Mapping[str, Mapping[str, float | None]]) -> list[Comparison]:
    """The :data:`COMPARISONS` for which both of our values are known (``values[column][statistic]``)."""
    out = []
    for column, baseline, rows in COMPARISONS:
        if column not in values or baseline not in values:
            continue
        for stat in rows:
            a, b = values[column].get(stat), values[baseline].get(stat)
            pa, pb = S.PAPER_TABLE3[stat][column], S.PAPER_TABLE3[stat][baseline]
            if a is None or b is None or pa is None or pb is None:
                continue
            if not (math.isfinite(a) and math.isfinite(b)):
                continue
            out.append(Comparison(column, baseline, stat, float(a), float(b), float(pa), float(pb)))
    return out


def reading(result: Table3Result | Mapping[str, Mapping[str, float | None]]) -> list[str]:
    """Plain sentences comparing our table with the paper's, direction by direction: first a count, then a
    warning for any model whose classes collapsed, the comparisons that match, then those that do not (each
    "Does not match: …")."""
    values = result.values() if isinstance(result, Table3Result) else result
    comps = compare_with_paper(values)
    if not comps:
        return ["Nothing to compare yet: the table needs NS and at least one other loss."]
    hits = [c for c in comps if c.matches]
    misses = [c for c in comps if not c.matches]
    head = f"{len(hits)} of {len(comps)} comparisons go the same way as in the paper."
    return [head, *collapse_notes(values), *(c.sentence() for c in hits), *(c.sentence() for c in misses)]


COLLAPSE_DEG = 5.0  # Inter below this on both sets: the classes are no longer told apart


def collapse_notes(values: Mapping[str, Mapping[str, float | None]]) -> list[str]:
    """A sentence for every column whose classes collapsed onto one direction (Inter1 and Inter2 both below
    :data:`COLLAPSE_DEG`): its other comparisons say little.  Batch-hard triplet mining does this on noisy
    labels (e.g. the blobs, which flip 2 % of labels): the hardest "positive" is then another class."""
    out = []
    for column, stats in values.items():
        inter = [stats.get("Inter1"), stats.get("Inter2")]
        if all(v is not None and math.isfinite(v) and v < COLLAPSE_DEG for v in inter):
            why = " (batch-hard mining on noisy or overlapping classes is a known cause)" \
                if column == "TripletL" else ""
            out.append(f"{column} collapsed: all its classes point almost the same way (Inter1 {inter[0]:.1f}°, "
                       f"Inter2 {inter[1]:.1f}°){why}, so its comparisons say little; try another seed or data set.")
    return out


# ---------------------------------------------------------------------------------------------------
# Tables for the page and the CLI
# ---------------------------------------------------------------------------------------------------


def comparison_table(result: Table3Result) -> list[dict[str, Any]]:
    """One record per statistic (with its ↑/↓ arrow): our value and the paper's for every column."""
    out = []
    for stat in S.TABLE3_ROWS:
        rec: dict[str, Any] = {"statistic": f"{stat} {S.TABLE3_ARROW[stat]}"}
        for column in TABLE3_LOSSES:
            row = result.row(column)
            rec[column] = None if row is None else row.stats.get(stat)
            rec[f"{column} (paper)"] = S.PAPER_TABLE3[stat][column]
        out.append(rec)
    return out


def table2_rows(result: Table3Result | None = None) -> list[dict[str, Any]]:
    """The paper's Table 2 (verification accuracy, %) with our small-scale equivalent beside the five rows we
    train: verification accuracy (%) on balanced test pairs, LFW protocol."""
    ours = {}
    if result is not None:
        for row in result.rows:
            if row.verification:
                ours[TABLE2_EQUIVALENT[row.column]] = 100.0 * row.verification["accuracy_mean"]
    out = []
    for name, accs in S.PAPER_TABLE2.items():
        out.append({"loss": name, **accs, "ours (verification %)": ours.get(name)})
    return out


def summary_rows(result: Table3Result) -> list[dict[str, Any]]:
    """The five rows as flat JSON objects: loss, the six statistics and the verification numbers (the CLI)."""
    out = []
    for r in result.rows:
        ver = r.verification or {}
        rec: dict[str, Any] = {"column": r.column, "loss": r.loss, **{k: r.stats.get(k) for k in S.TABLE3_ROWS},
                               "verification_accuracy": ver.get("accuracy_mean"),
                               "verification_std": ver.get("accuracy_std"),
                               "verification_pairs": ver.get("n_pairs"),
                               "tar_at_far": dict(ver.get("tar_at_far", {})),
                               "pair_overlap": (r.pairs or {}).get("overlap"), "test_acc": r.test_acc,
                               "steps": r.steps, "loss_params": r.loss_params}
        out.append(rec)
    return out


def embeddings_report(data: Mapping[str, Any], max_pairs: int = 10_000, seed: int = 0, bins: int = 90,
                      far: float = 1e-3) -> dict[str, Any]:
    """Table-3 statistics of saved embeddings (stats.load_embeddings_npz's dict): the six angles, the Fig. 6/7
    pair angles and LFW-protocol verification with TAR@FAR on balanced pairs (test set if present, else
    training set), as plain JSON-ready values; what ``arcface-viz stats`` prints."""
    if max_pairs < 1 or bins < 1 or seed < 0:
        raise ValueError(f"--max-pairs and --bins must be at least 1 and --seed at least 0, "
                         f"got {max_pairs}, {bins}, {seed}")
    if not 0.0 <= far <= 1.0:
        raise ValueError(f"--far must be in [0, 1], got {far}")
    x, y = data["embeddings"], data["labels"]
    out: dict[str, Any] = {
        "n_train": int(len(y)), "n_classes_train": int(np.unique(y).size), "dim": int(x.shape[1]),
        "has_weight": data["weight"] is not None, "n_test": None,
    }
    out["angle_statistics"] = S.angle_statistics(data["weight"], x, y, data["test_embeddings"],
                                                 data["test_labels"])
    pair_set = "train"
    if data["test_embeddings"] is not None:
        out["n_test"] = int(len(data["test_labels"]))
        x, y, pair_set = data["test_embeddings"], data["test_labels"], "test"
    try:
        pos, neg = S.pair_angles(x, y, max_pairs=max_pairs, seed=seed)
    except ValueError as exc:  # e.g. every class has one sample: no positive pairs
        out["pairs"] = {"set": pair_set, "skipped": str(exc)}
        out["verification"] = None
        return out
    out["pairs"] = {
        "set": pair_set, "n_positive": int(pos.size), "n_negative": int(neg.size),
        "mean_positive_deg": float(pos.mean()), "mean_negative_deg": float(neg.mean()),
        "overlap": S.histogram_overlap(pos, neg, bins=bins), "bins": bins, "seed": seed,
    }
    ia, ib, same = S.verification_pairs(y, n_pairs=2 * max_pairs, seed=seed)
    if same.size < 10:
        out["verification"] = {"set": pair_set, "skipped": f"only {same.size} balanced pairs, 10 folds need 10"}
        return out
    xs = np.asarray(x, dtype=np.float64)
    xs = xs / np.linalg.norm(xs, axis=1, keepdims=True)
    res = S.verification_folds(xs[ia], xs[ib], same, folds=10)
    out["verification"] = {
        "set": pair_set, "n_pairs": int(same.size), "accuracy_mean": res.mean, "accuracy_std": res.std,
        "thresholds": [float(t) for t in res.thresholds], "far": far,
        "tar_at_far": S.tar_at_far(np.sum(xs[ia] * xs[ib], axis=1), same, far),
    }
    return out


def embeddings_file_report(path: str, seed: int = 0, max_pairs: int = HISTOGRAM_PAIRS) -> dict[str, Any]:
    """Table-3 statistics of embeddings saved by any run (``np.savez`` with embeddings, labels [, weight,
    test_embeddings, test_labels]; see stats.load_embeddings_npz): :func:`embeddings_report` plus the pair
    angles for a Fig. 6/7 histogram (``pos_deg`` / ``neg_deg``, test set if present, else training set; empty
    lists when there are no positive pairs).
    Raises FileNotFoundError or ValueError with a short message for a bad file."""
    data = S.load_embeddings_npz(path)
    out = embeddings_report(data, max_pairs=max_pairs, seed=seed, far=FARS[-1])
    x, y = (data["test_embeddings"], data["test_labels"]) if data["test_embeddings"] is not None else \
        (data["embeddings"], data["labels"])
    try:
        pos, neg = S.pair_angles(x, y, max_pairs=max_pairs, seed=seed)
    except ValueError:
        pos = neg = np.zeros(0)
    out["pos_deg"], out["neg_deg"] = np.round(pos, 2).tolist(), np.round(neg, 2).tolist()
    return out


def sphere_view(path: str, max_classes: int = 12, max_points: int = 1500, seed: int = 0) -> dict[str, Any]:
    """A run's embeddings on the unit sphere for display: ``embeddings_3d`` / ``weight_3d`` from the file when
    the trainer saved them (PCA of the 512-D embeddings), else a PCA to 3-D here. Only the ``max_classes``
    largest classes and at most ``max_points`` points, so a run with thousands of identities stays readable.
    Returns embeddings (k, 3) and labels (k,) renumbered 0..c−1, centres (c, 3) or None, and class names."""
    raw = np.load(path, allow_pickle=False)
    data = S.load_embeddings_npz(path)
    x, y = np.asarray(data["embeddings"], dtype=np.float64), np.asarray(data["labels"])
    w = None if data["weight"] is None else np.asarray(data["weight"], dtype=np.float64)
    if "embeddings_3d" in raw.files and len(raw["embeddings_3d"]) == len(x):
        x3 = np.asarray(raw["embeddings_3d"], dtype=np.float64)
        w3 = np.asarray(raw["weight_3d"], dtype=np.float64) if "weight_3d" in raw.files else None
    else:
        mean = x.mean(axis=0)
        _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
        basis = vt[:3].T
        x3 = (x - mean) @ basis
        w3 = None if w is None else w @ basis
    classes, counts = np.unique(y, return_counts=True)
    keep = classes[np.argsort(-counts, kind="stable")[:max_classes]]
    idx = np.flatnonzero(np.isin(y, keep))
    rng = np.random.default_rng(seed)
    if len(idx) > max_points:
        idx = np.sort(rng.choice(idx, max_points, replace=False))
    remap = {int(c): i for i, c in enumerate(keep)}
    unit = lambda a: a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)  # noqa: E731
    centres = None
    if w3 is not None and len(w3) > int(keep.max()):
        centres = unit(w3[keep])
    return {"embeddings": unit(x3[idx]), "labels": np.array([remap[int(c)] for c in y[idx]]),
            "centres": centres, "class_names": [str(int(c)) for c in keep]}
