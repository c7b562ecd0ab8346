"""A step-wise trainer: advance k optimizer steps, hand back a :class:`Snapshot` (for pages and the CLI).

One step is the ArcFace recipe at toy scale: embed a mini-batch, feed the embeddings and labels to a
:class:`~arcface_viz.losses.MarginLoss`, back-propagate, update the network *and* the class centres W_j.
A snapshot holds what the figures need: the L2-normalised embeddings of a bounded sample on the circle or
sphere (Fig. 3), the normalised centres W_j, θ_yi for every training sample (the Fig. 4(a) histogram)
and the minimum angle between centres.

Schedules applied before every step: margin warm-up ``margin_scale = min(1, step / warmup_steps)``
(the margins ramp from 0), and for A-Softmax SphereFace's ``λ = max(λ_min, 1000·(1 + 0.12·step)^−1)``.

A lesson's run is described by a :class:`LessonConfig`: :class:`ToyConfig` here, and
:class:`~arcface_viz.image_training.ImageConfig` for images, each overriding only what differs.  The page,
compare mode (:func:`build_compare_trainers`), the CLI and Table 3 all build their trainers through
:meth:`LessonConfig.build`.

Same seed ⇒ same run: :meth:`LessonConfig.build` creates the model and W under ``torch.manual_seed(seed)``,
batches are drawn with the trainer's own ``torch.Generator`` and dropout uses the trainer's own saved
global RNG state, so other code (or other visitors of the app) drawing random numbers changes nothing.
"""

from __future__ import annotations

import copy
import math
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .device import pick_device
from .losses import (
    LOSS_PARAMS,
    LOSSES,
    PARAM_NAMES,
    MarginLoss,
    a_softmax_lambda,
    clean_subcentres,
    loss_defaults,
    make_loss,
)
from .models import ToyMLP
from .optim import SGD, Adam
from .params import LOSS_SPEC
from .stats import angle_statistics

if TYPE_CHECKING:
    from typing import Self  # Python 3.11+; annotations only

_DEG = 180.0 / math.pi
_SMALL_MODEL = 200_000  # parameters; below this one CPU thread beats two (per-op overhead dominates)


#: torch's default random generator (and its thread count) is one per process. Visitors of the app train in
#: threads of one server, so each takes its turn: a seed then gives the same run whoever else is training.
RNG_LOCK = threading.RLock()


@contextmanager
def seeded(seed: int):
    """Run a block under ``torch.manual_seed(seed)``, leaving the process's generator as it was and keeping
    other threads' seeded blocks and training steps out meanwhile."""
    with RNG_LOCK, torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


@dataclass
class Snapshot:
    """The state of a run after ``step`` optimizer steps (numpy arrays, picklable).

    embeddings: (k, d) L2-normalised sample (test set if there is one); labels: (k,);
    centres: (n, d) L2-normalised W_j; theta_deg: θ_yi in degrees for every training sample (Fig. 4a);
    loss: mean training loss over the last chunk of steps (at step 0: the loss on the training set).
    """

    step: int
    loss: float
    train_acc: float
    test_acc: float | None
    embeddings: np.ndarray
    labels: np.ndarray
    centres: np.ndarray
    theta_deg: np.ndarray
    min_centre_angle_deg: float
    lr: float
    margin_scale: float
    lam: float
    seconds: float = 0.0  # training time so far (optimizer steps only, no snapshots)
    state: dict[str, Any] = field(default_factory=dict)  # the loss's running state (AdaFace's μ, σ; t; AdaCos's s)
    norms: np.ndarray | None = None  # (k,) the sample's feature norms ‖x‖ before normalising
    subcentres: np.ndarray | None = None  # (n, K, d) L2-normalised sub-centres (a loss with sub-centres)
    dominant: np.ndarray | None = None  # (n,) each class's dominant sub-centre, counted on the training set
    noisy: NoisyLabels | None = None  # where the training samples with flipped labels sit (sub-centres only)

    _EXTRAS = ("norms", "subcentres", "dominant", "noisy")

    def summary(self) -> dict[str, Any]:
        """The scalar fields (and the state), for curves and JSON."""
        return {f.name: getattr(self, f.name) for f in fields(self)
                if f.name not in self._EXTRAS and not isinstance(getattr(self, f.name), np.ndarray)}


@dataclass
class NoisyLabels:
    """Sub-center ArcFace on noisy labels (Deng et al. 2020, Fig. 1): the training samples whose label was flipped
    and where they sit.  ``embeddings`` (m, d) L2-normalised, ``labels`` (m,) their (wrong) labels,
    ``at_dominant`` (m,) whether their nearest own-class sub-centre is the dominant one; the fractions compare the
    flipped samples with the clean ones: at the dominant sub-centre, and dropped by the cleaning step (> 75° from
    it)."""

    embeddings: np.ndarray
    labels: np.ndarray
    at_dominant: np.ndarray
    noisy_at_dominant: float
    clean_at_dominant: float
    noisy_dropped: float
    clean_dropped: float

    @property
    def count(self) -> int:
        return len(self.labels)


class _Batches:
    """Mini-batches from an in-memory tensor pair (uniform index sampling) or from any re-iterable source."""

    def __init__(self, X, y, batch_size: int, generator: torch.Generator, device: torch.device) -> None:
        self.device, self.batch_size, self.generator = device, batch_size, generator
        if isinstance(X, (torch.Tensor, np.ndarray)) and y is None:
            raise ValueError("y_train is missing (pass labels, or an iterable of (x, y) mini-batches as X_train)")
        if y is not None:
            self.X, self.y = _as_tensor(X, device), _as_tensor(y, device, torch.long)
            if len(self.X) != len(self.y):
                raise ValueError(f"X_train has {len(self.X)} rows but y_train has {len(self.y)}")
            if len(self.y) == 0:
                raise ValueError("empty training set")
            self.source = None
        else:  # an iterable of (x, y) mini-batches, e.g. a DataLoader
            self.X = self.y = None
            self.source: Iterable | None = X
            self._it: Iterator | None = None
        self.recent: list[tuple[torch.Tensor, torch.Tensor]] = []  # a stream's last ≤ 8 batches of the last take

    def take(self, k: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The next k mini-batches (x, y), on the device."""
        if self.source is None:  # the hot path: tensors already on the device, one index row per batch
            X, y = self.X, self.y
            for idx in self._indices(k):
                yield X.index_select(0, idx), y.index_select(0, idx)
            return
        self.recent = []
        for _ in range(k):
            batch = self._next_from_source()
            self.recent.append(batch)
            if len(self.recent) > 8:
                self.recent.pop(0)
            yield batch

    def _indices(self, k: int, block: int = 512) -> Iterator[torch.Tensor]:
        """Index rows for the next k in-memory batches, drawn ``block`` rows per call (on the CPU the same
        numbers as one call per batch, so a run does not depend on how it is chunked)."""
        for start in range(0, k, block):
            rows = min(block, k - start)
            yield from torch.randint(len(self.y), (rows, self.batch_size), generator=self.generator,
                                     device=self.device).unbind(0)

    def _next_from_source(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._it is None:
            self._it = iter(self.source)
        try:
            xb, yb = next(self._it)
        except StopIteration:
            self._it = iter(self.source)
            if self._it is self.source:
                raise ValueError("the mini-batch iterator is exhausted; "
                                 "pass a re-iterable (e.g. a DataLoader)") from None
            xb, yb = next(self._it)
        return _as_tensor(xb, self.device), _as_tensor(yb, self.device, torch.long)


def _as_tensor(a, device: torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.as_tensor(a).to(device=device, dtype=dtype)


def _make_optimizer(name: str, params: list[nn.Parameter], lr: float, device: torch.device):
    """SGD (momentum 0.9, weight decay 5e-4, as in the paper) or Adam (fused kernel where available), from
    :mod:`arcface_viz.optim`: the same updates as torch.optim without its ~70 MB import."""
    if name == "sgd":
        return SGD(params, lr=lr, momentum=0.9, weight_decay=5e-4)
    if name == "adam":
        return Adam(params, lr=lr)
    raise ValueError(f"unknown optimizer {name!r}; choose sgd or adam")


class Trainer:
    """Train ``model`` (inputs → embeddings) with ``loss_fn`` (a MarginLoss holding W_j), k steps at a time.

    ``X_train, y_train``: arrays or tensors (kept on the device, batches drawn by index), or ``X_train`` an
    iterable of (x, y) mini-batches with ``y_train=None`` (then ``train_eval=(X, y)`` gives the set used for
    train accuracy and θ_yi; without it they come from the last ≤ 8 batches of the last chunk).
    ``eval_limit`` caps the number of training samples evaluated per snapshot (None: all).
    """

    def __init__(self, model: nn.Module, loss_fn: MarginLoss, X_train, y_train=None, X_test=None, y_test=None, *,
                 optimizer: str = "adam", lr: float = 0.01, batch_size: int = 256, warmup_steps: int = 0,
                 anneal: bool = True, device: torch.device | str | None = None, seed: int = 0,
                 sample_size: int = 600, train_eval: tuple[Any, Any] | None = None, eval_limit: int | None = None,
                 eval_batch_size: int = 4096, num_threads: int | None = None, flipped=None) -> None:
        self.device = device if isinstance(device, torch.device) else pick_device(device)
        if batch_size < 1:
            raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
        self.model, self.loss_fn = model.to(self.device), loss_fn.to(self.device)
        self.optimizer_name, self.batch_size, self.seed = optimizer, int(batch_size), int(seed)
        self.warmup_steps, self.anneal = int(warmup_steps), bool(anneal)
        self.eval_batch_size, self.sample_size = int(eval_batch_size), int(sample_size)
        self.generator = torch.Generator(device=self.device).manual_seed(self.seed)
        self.batches = _Batches(X_train, y_train, self.batch_size, self.generator, self.device)
        params = [p for p in (*model.parameters(), *loss_fn.parameters()) if p.requires_grad]
        self.optimizer = _make_optimizer(optimizer, params, float(lr), self.device)
        self.step = 0
        self.seconds = 0.0
        self.config: LessonConfig | None = None  # set by LessonConfig.make_trainer
        self.data = None  # the lesson's data set, set by LessonConfig.make_trainer
        self.lam_min = float(loss_fn.lam)  # the user's λ is the floor of the annealing
        self._pending: dict[str, Any] = {}
        self._last_loss: float | None = None
        n_params = sum(p.numel() for p in params)
        self.num_threads = num_threads or (1 if self.device.type == "cpu" and n_params < _SMALL_MODEL else None)
        with seeded(self.seed):  # our own RNG stream for dropout, independent of others
            self._rng_state = torch.get_rng_state()
        self._cuda_rng = None

        rng = np.random.default_rng(self.seed)
        if train_eval is not None:
            self.X_eval, self.y_eval = _as_tensor(train_eval[0], self.device), _as_tensor(train_eval[1], self.device,
                                                                                          torch.long)
        elif self.batches.source is None:
            self.X_eval, self.y_eval = self.batches.X, self.batches.y
        else:
            self.X_eval = self.y_eval = None
        # flipped: which training labels are known to be noise (in-memory data only), aligned with X_eval
        self.flipped = None
        if flipped is not None and train_eval is None and self.X_eval is not None:
            self.flipped = torch.as_tensor(np.asarray(flipped, dtype=bool), device=self.device)
        if self.X_eval is not None and eval_limit is not None and len(self.y_eval) > eval_limit:
            keep = torch.as_tensor(np.sort(rng.choice(len(self.y_eval), eval_limit, replace=False)),
                                   device=self.device)
            self.X_eval, self.y_eval = self.X_eval[keep], self.y_eval[keep]
            self.flipped = None if self.flipped is None else self.flipped[keep]
        self.has_test = X_test is not None and y_test is not None and len(y_test) > 0
        if self.has_test:
            self.X_test, self.y_test = _as_tensor(X_test, self.device), _as_tensor(y_test, self.device, torch.long)
        else:
            self.X_test = self.y_test = None
        # the bounded sample drawn in snapshots: fixed once, from the test set if there is one
        pool = len(self.y_test) if self.has_test else (len(self.y_eval) if self.y_eval is not None else 0)
        self._sample_idx = torch.as_tensor(np.sort(rng.permutation(pool)[:sample_size]), device=self.device)
        self._apply_schedules()

    # --- controls ------------------------------------------------------------------------------

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def set_lr(self, lr: float) -> None:
        """New learning rate from the next step on."""
        if not lr > 0:
            raise ValueError(f"learning rate must be > 0, got {lr}")
        for group in self.optimizer.param_groups:
            group["lr"] = float(lr)

    def set_loss_params(self, **params: Any) -> None:
        """Change s, m1, m2, m3, m, lam, margin or easy_margin; they apply at the next step (W_j is kept).

        Values are checked against the ranges of :data:`~arcface_viz.params.LOSS_SPEC` (ParamError if not).
        For A-Softmax with annealing, ``lam`` sets the floor λ_min of the schedule.
        """
        unknown = set(params) - set(PARAM_NAMES)
        if unknown:
            raise ValueError(f"unknown loss parameter(s) {sorted(unknown)}; known: {', '.join(PARAM_NAMES)}")
        rebuild = [k for k, v in params.items() if LOSS_PARAMS[k].structural and v is not None
                   and LOSS_SPEC[k].coerce(v) != getattr(self.loss_fn, k)]
        if rebuild:
            raise ValueError(f"{', '.join(rebuild)} shape(s) the loss's centres: build a new trainer to change it")
        self._pending.update({k: LOSS_SPEC[k].coerce(v) for k, v in params.items() if v is not None})

    def set_warmup(self, warmup_steps: int) -> None:
        self.warmup_steps = int(warmup_steps)

    def current_loss_params(self) -> dict[str, Any]:
        """The current values of the loss's own parameters (after pending changes)."""
        out = {k: getattr(self.loss_fn, k) for k in self.loss_fn.info.params}
        if "lam" in out and self._annealing:
            out["lam"] = self.lam_min
        out.update({k: v for k, v in self._pending.items() if k in out})
        return out

    @property
    def _annealing(self) -> bool:
        return self.anneal and self.loss_fn.info.head == "a_softmax"

    def _apply_pending(self) -> None:
        for k, v in self._pending.items():
            if k == "lam" and self._annealing:
                self.lam_min = float(v)
            elif k in ("m",):
                setattr(self.loss_fn, k, int(v))
            elif k == "easy_margin":
                self.loss_fn.easy_margin = bool(v)
            else:
                setattr(self.loss_fn, k, float(v))
        self._pending.clear()
        self._apply_schedules()

    def _apply_schedules(self) -> None:
        """The schedules at the current step: margin warm-up min(1, step / warmup_steps), and for A-Softmax
        with annealing λ = max(λ_min, 1000·(1 + 0.12·step)^−1)."""
        loss_fn = self.loss_fn
        loss_fn.margin_scale = min(1.0, self.step / self.warmup_steps) if self.warmup_steps > 0 else 1.0
        if self._annealing:
            loss_fn.lam = a_softmax_lambda(self.step, self.lam_min)

    # --- training ------------------------------------------------------------------------------

    def advance(self, k: int = 1, snapshot: bool = True) -> Snapshot | None:
        """Train ``k`` optimizer steps, then return a :meth:`snapshot` (None with ``snapshot=False``: a caller
        that reads only :attr:`last_loss`, such as a sweep between its progress reports)."""
        with RNG_LOCK, self._threads(), torch.random.fork_rng(devices=self._rng_devices()):
            self._restore_rng()
            if k > 0:
                self._train(int(k))
            self._save_rng()
            return self._snapshot() if snapshot else None

    @property
    def last_loss(self) -> float | None:
        """The mean training loss of the last chunk of steps (None before the first step or snapshot)."""
        return self._last_loss

    def snapshot(self) -> Snapshot:
        """The current state without training."""
        with RNG_LOCK, self._threads(), torch.random.fork_rng(devices=self._rng_devices()):
            self._restore_rng()
            snap = self._snapshot()
            self._save_rng()
            return snap

    def _train(self, k: int) -> None:
        """k optimizer steps, each: the schedules for this step, forward, backward, update."""
        self._apply_pending()
        model, loss_fn, opt = self.model, self.loss_fn, self.optimizer
        model.train()
        loss_fn.train()
        total = torch.zeros((), device=self.device)
        scheduled = self.warmup_steps > 0 or self._annealing  # else the values stay as _apply_pending set them
        t0 = time.perf_counter()
        for xb, yb in self.batches.take(k):
            if scheduled:
                self._apply_schedules()
            loss = loss_fn(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach()
            self.step += 1
        self._last_loss = float(total) / k  # one sync per chunk
        self.seconds += time.perf_counter() - t0
        self._apply_schedules()

    # --- evaluation ----------------------------------------------------------------------------

    @torch.no_grad()
    def embed(self, X: torch.Tensor) -> torch.Tensor:
        """Raw embeddings (eval mode), in chunks of ``eval_batch_size``."""
        self.model.eval()
        try:
            return torch.cat([self.model(X[i:i + self.eval_batch_size])
                              for i in range(0, len(X), self.eval_batch_size)]) if len(X) else \
                torch.zeros(0, self.loss_fn.embedding_dim, device=self.device)
        finally:
            self.model.train()

    @torch.no_grad()
    def _snapshot(self) -> Snapshot:
        loss_fn = self.loss_fn
        loss_fn.eval()
        try:
            if self.X_eval is not None:
                X_tr, y_tr = self.X_eval, self.y_eval
            elif self.batches.recent:
                X_tr = torch.cat([b[0] for b in self.batches.recent])
                y_tr = torch.cat([b[1] for b in self.batches.recent])
            else:  # streaming, nothing trained yet: peek at a fresh pass, leaving the training stream alone
                X_tr, y_tr = self._peek()
            emb_tr = self.embed(X_tr)
            logits_tr = loss_fn.logits(emb_tr)
            train_acc = float((logits_tr.argmax(1) == y_tr).float().mean()) if len(y_tr) else float("nan")
            cos_y = loss_fn.cosine(emb_tr).gather(1, y_tr[:, None])[:, 0] if len(y_tr) else emb_tr[:0, 0]
            theta = torch.rad2deg(torch.acos(cos_y.clamp(-1.0, 1.0)))
            if self.has_test:
                emb_te = self.embed(self.X_test)
                test_acc = float((loss_fn.logits(emb_te).argmax(1) == self.y_test).float().mean())
                sample, sample_y = emb_te[self._sample_idx], self.y_test[self._sample_idx]
            else:
                test_acc = None
                idx = self._sample_idx if self.X_eval is not None else torch.arange(
                    min(len(y_tr), self.sample_size), device=self.device)
                sample, sample_y = emb_tr[idx], y_tr[idx]
            if self._last_loss is None:  # step 0: the loss on the training set, before any update
                n0 = min(len(y_tr), 1024)  # bounded: the triplet term is quadratic in the batch
                self._last_loss = float(loss_fn(emb_tr[:n0], y_tr[:n0])) if n0 else float("nan")
            centres = F.normalize(loss_fn.weight.detach().float(), dim=1)
            snap = Snapshot(
                step=self.step, loss=self._last_loss, train_acc=train_acc, test_acc=test_acc,
                embeddings=F.normalize(sample.float(), dim=1).cpu().numpy(), labels=sample_y.cpu().numpy(),
                centres=centres.cpu().numpy(), theta_deg=theta.float().cpu().numpy(),
                min_centre_angle_deg=min_centre_angle_deg(centres), lr=self.lr,
                margin_scale=float(loss_fn.margin_scale), lam=float(loss_fn.lam), seconds=self.seconds,
                state=loss_fn.state_values(), norms=sample.float().norm(dim=1).cpu().numpy(),
            )
            if loss_fn.info.subcentres and len(y_tr):
                self._subcentre_view(snap, emb_tr, y_tr)
            return snap
        finally:
            loss_fn.train()

    def _subcentre_view(self, snap: Snapshot, emb_tr: torch.Tensor, y_tr: torch.Tensor) -> None:
        """Every sub-centre, each class's dominant one (on the training set) and, where the training labels'
        noise is known, where the flipped samples sit (:class:`NoisyLabels`)."""
        clean = clean_subcentres(self.loss_fn, emb_tr, y_tr)
        snap.subcentres = F.normalize(self.loss_fn.subcentres.detach().float(), dim=-1).cpu().numpy()
        snap.dominant = clean.dominant.cpu().numpy()
        snap.centres = clean.centres.cpu().numpy()  # W_j: the dominant sub-centres, as counted just now
        snap.min_centre_angle_deg = min_centre_angle_deg(clean.centres)
        flipped = self.flipped if self.flipped is not None and len(self.flipped) == len(y_tr) else None
        if flipped is None or not bool(flipped.any()):
            return

        def share(flags: torch.Tensor, rows: torch.Tensor) -> float:
            return float(flags[rows].float().mean()) if bool(rows.any()) else float("nan")

        snap.noisy = NoisyLabels(
            embeddings=F.normalize(emb_tr[flipped].float(), dim=1).cpu().numpy(), labels=y_tr[flipped].cpu().numpy(),
            at_dominant=clean.at_dominant[flipped].cpu().numpy(),
            noisy_at_dominant=share(clean.at_dominant, flipped), clean_at_dominant=share(clean.at_dominant, ~flipped),
            noisy_dropped=share(~clean.keep, flipped), clean_dropped=share(~clean.keep, ~flipped))

    def _peek(self) -> tuple[torch.Tensor, torch.Tensor]:
        source = self.batches.source
        it = iter(source)
        if it is source:  # a one-shot iterator: do not consume it
            return torch.zeros(0, device=self.device), torch.zeros(0, dtype=torch.long, device=self.device)
        xb, yb = next(it)
        return _as_tensor(xb, self.device), _as_tensor(yb, self.device, torch.long)

    @torch.no_grad()
    def embeddings(self, which: str = "train") -> tuple[np.ndarray, np.ndarray]:
        """All raw (unnormalised) embeddings and labels of the train-evaluation set or the test set."""
        X, y = (self.X_eval, self.y_eval) if which == "train" else (self.X_test, self.y_test)
        if X is None:
            raise ValueError(f"no {which} set to embed")
        with self._threads():
            return self.embed(X).float().cpu().numpy(), y.cpu().numpy()

    def report(self, train: tuple[np.ndarray, np.ndarray],
               test: tuple[np.ndarray, np.ndarray] | None) -> dict[str, Any]:
        """What the lesson commands report about a run built from a :class:`LessonConfig`: the loss, its
        parameters and running state (AdaFace's μ and σ, CurricularFace's t, AdaCos's s), steps, training
        seconds, device and config, and the Table-3 angles of the given embeddings (stats.angle_statistics with
        this run's W_j; none for the triplet loss): W-EC, W-Inter,
        Intra = Intra1, Inter = Inter1 (``train``), Intra2, Inter2 (``test``), in degrees."""
        from .device import describe

        info = self.loss_fn.info
        weight = self.loss_fn.weight.detach().float().cpu().numpy() if info.has_centres else None
        angles = angle_statistics(weight, *train, *(test or (None, None)))
        cfg = self.config
        return {
            "dataset": cfg.dataset, "dim": cfg.dim, "loss": self.loss_fn.name, "loss_label": info.label,
            "loss_params": cfg.resolved_loss_params(), "loss_state": self.loss_fn.state_values(),
            "steps": self.step, "seconds": self.seconds,
            "W-EC": angles["W-EC"], "W-Inter": angles["W-Inter"], "Intra": angles["Intra1"],
            "Inter": angles["Inter1"], **{k: angles[k] for k in ("Intra1", "Inter1", "Intra2", "Inter2")},
            "device": describe(self.device), "num_threads": self.num_threads or torch.get_num_threads(),
            "config": cfg.to_dict(),
        }

    # --- threads and RNG -----------------------------------------------------------------------

    def _threads(self):
        return _NumThreads(self.num_threads)

    def _rng_devices(self) -> list:
        return [self.device] if self.device.type == "cuda" else []

    def _restore_rng(self) -> None:
        torch.set_rng_state(self._rng_state)
        if self.device.type == "cuda":
            if self._cuda_rng is None:
                torch.cuda.manual_seed(self.seed)
            else:
                torch.cuda.set_rng_state(self._cuda_rng, self.device)

    def _save_rng(self) -> None:
        self._rng_state = torch.get_rng_state()
        if self.device.type == "cuda":
            self._cuda_rng = torch.cuda.get_rng_state(self.device)


class _NumThreads:
    """Temporarily use n intra-op threads (tiny models run faster on one thread: per-op overhead dominates)."""

    def __init__(self, n: int | None) -> None:
        self.n, self.old = n, None

    def __enter__(self) -> None:
        if self.n:
            self.old = torch.get_num_threads()
            if self.old != self.n:
                torch.set_num_threads(self.n)

    def __exit__(self, *exc) -> None:
        if self.n and self.old and self.old != self.n:
            torch.set_num_threads(self.old)


def min_centre_angle_deg(centres: torch.Tensor | np.ndarray) -> float:
    """The smallest angle (degrees) between two class centres W_j, W_k (j ≠ k): one number, the minimum of
    stats.nearest_centre_angles_deg (which gives it per centre); NaN for a single class."""
    w = F.normalize(torch.as_tensor(centres).float(), dim=1)
    n = len(w)
    if n < 2:
        return float("nan")
    cos = (w @ w.t()).clamp(-1.0, 1.0)
    cos.fill_diagonal_(-1.0)
    return float(torch.rad2deg(torch.acos(cos.max())))


# ---------------------------------------------------------------------------------------------
# Lesson configs: one base, and per lesson a subclass that overrides only what differs


@dataclass
class LessonConfig:
    """Everything that defines a lesson's run.  :class:`ToyConfig` and
    :class:`~arcface_viz.image_training.ImageConfig` override only what differs: their own fields and
    defaults, the class attributes below, and the data, the network and the trainer (:meth:`load_data`,
    :meth:`build_model`, :meth:`make_trainer`).

    ``loss_params`` left out take :meth:`default_loss_params`; settings left as None take
    :meth:`recommended` (the data set's DATASET_TRAINING, then TRAINING_DEFAULTS, then DEFAULT_LR).
    """

    #: settings that suit a data set, by data set (config field names)
    DATASET_TRAINING: ClassVar[dict[str, dict[str, Any]]] = {}
    #: settings for what the data set does not say
    TRAINING_DEFAULTS: ClassVar[dict[str, Any]] = {"warmup_steps": 0}
    #: the learning rate per optimizer where neither of the two above gives one
    DEFAULT_LR: ClassVar[dict[str, float]] = {"adam": 0.01, "sgd": 0.1}
    #: loss parameters on top of the registry's low-dimensional defaults, by loss
    LOSS_PRESETS: ClassVar[dict[str, dict[str, Any]]] = {}
    #: the lesson spec's names of config fields (:meth:`from_values`, :meth:`dataset_defaults`)
    SPEC_FIELDS: ClassVar[dict[str, str]] = {}
    #: fields that hold a tuple of whole numbers (layer widths)
    INT_TUPLES: ClassVar[tuple[str, ...]] = ()

    dataset: str = ""
    dim: int = 2
    loss: str = "arcface"
    loss_params: dict[str, Any] = field(default_factory=dict)
    optimizer: str = "adam"
    lr: float | None = None
    batch_size: int | None = None
    warmup_steps: int | None = None
    anneal: bool = True
    seed: int = 0
    device: str | None = None
    sample_size: int = 600

    # --- reading and writing ---------------------------------------------------------------------

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Self:
        """Fields by name; loss parameters (s, m1, m2, …) may also sit at the top level, as in a lesson
        spec's values.  Parameters the chosen loss does not use are ignored; unknown keys raise."""
        names = {f.name for f in fields(cls)}
        unknown = set(values) - names - set(PARAM_NAMES)
        if unknown:
            raise ValueError(f"unknown setting(s) {sorted(unknown)}")
        kw = {k: v for k, v in values.items() if k in names}
        loss_params = dict(kw.pop("loss_params", None) or {})
        loss_params.update({k: v for k, v in values.items() if k in PARAM_NAMES and v is not None})
        for name in cls.INT_TUPLES:
            if kw.get(name) is not None:
                kw[name] = tuple(int(h) for h in kw[name])
        return cls(**kw, loss_params=loss_params)

    @classmethod
    def of(cls, config: LessonConfig | Mapping[str, Any] | None = None, /, **overrides: Any) -> Self:
        """A config from a config of this class, a dict (see :meth:`from_dict`) or None, ``overrides`` on top."""
        if config is None:
            base: dict[str, Any] = {}
        elif isinstance(config, LessonConfig):
            base = {f.name: getattr(config, f.name) for f in fields(config)}
        else:
            base = dict(config)
        return cls.from_dict({**base, **overrides})

    @classmethod
    def from_values(cls, values: Mapping[str, Any], loss: str | None = None, **extra: Any) -> Self:
        """A lesson spec's values (TOY_SPEC, MNIST_SPEC) as a config.  With ``loss`` (compare mode's other
        loss), that loss with its own default parameters; ``extra``: fields the spec does not hold."""
        name = loss or values["loss"]
        given = {} if loss else {k: values[k] for k in LOSSES[name].params if k in values}
        spec = {f: values[k] for k, f in cls.SPEC_FIELDS.items()}
        return cls.from_dict({**spec, "loss": name, "loss_params": given, **extra})

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, with every default filled in."""
        cfg = self.resolved()
        d = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()}
        d["loss_params"] = cfg.resolved_loss_params()
        return d

    # --- defaults --------------------------------------------------------------------------------

    @classmethod
    def recommended(cls, dataset: str, optimizer: str = "adam") -> dict[str, Any]:
        """The settings that suit a data set (config field names)."""
        return {"lr": cls.DEFAULT_LR.get(optimizer, 0.01), **cls.TRAINING_DEFAULTS,
                **cls.DATASET_TRAINING.get(dataset, {})}

    @classmethod
    def dataset_defaults(cls, dataset: str) -> dict[str, Any]:
        """What the data-set picker loads into the other controls: :meth:`recommended` in spec names."""
        rec = cls.recommended(dataset)
        return {k: rec[f] for k, f in cls.SPEC_FIELDS.items() if f in rec}

    @classmethod
    def default_loss_params(cls, loss: str) -> dict[str, Any]:
        """The loss parameters the lesson starts from: loss_defaults(loss, low_dim=True) and LOSS_PRESETS."""
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}; choose one of {', '.join(LOSSES)}")
        out = loss_defaults(loss, low_dim=True)
        out.update({k: v for k, v in cls.LOSS_PRESETS.get(loss, {}).items() if k in LOSSES[loss].params})
        return out

    def resolved(self) -> Self:
        """A copy with the settings left as None filled in from :meth:`recommended`."""
        rec = self.recommended(self.dataset, self.optimizer)
        return replace(self, **{k: v for k, v in rec.items() if getattr(self, k) is None})

    def resolved_loss_params(self) -> dict[str, Any]:
        """:meth:`default_loss_params` updated with the given values the loss uses (range-checked)."""
        out = self.default_loss_params(self.loss)
        used = LOSSES[self.loss].params
        out.update({k: LOSS_SPEC[k].coerce(v) for k, v in self.loss_params.items() if k in used and v is not None})
        return out

    # --- building ------------------------------------------------------------------------------

    def load_data(self):
        """The lesson's data set for this config (generated or loaded)."""
        raise NotImplementedError

    def build_model(self, data) -> nn.Module:
        """The network (inputs → embeddings) for ``data``; drawn from torch's global generator."""
        raise NotImplementedError

    @staticmethod
    def classes_in(data) -> int:
        """The number of classes of ``data`` (rows of W)."""
        raise NotImplementedError

    def make_trainer(self, model: nn.Module, loss_fn: MarginLoss, data) -> Trainer:
        """The trainer for this resolved config (it keeps ``config`` and ``data``)."""
        raise NotImplementedError

    def build(self, *, data=None, model: nn.Module | None = None, dims: tuple[int, ...] = (2, 3)) -> Trainer:
        """A trainer for this config.  The network and then W_j are drawn under ``torch.manual_seed(seed)``;
        pass ``data`` to reuse loaded data and ``model`` to start from given weights (deep-copied).  ``dims``:
        the embedding dimensions allowed (the lessons draw 2 or 3).  ValueError for settings that cannot be
        trained (toy_data.DatasetMissing included)."""
        cfg = self.resolved()
        if cfg.dim not in dims:
            raise ValueError(f"embedding dimension must be {' or '.join(map(str, dims))}, got {cfg.dim}")
        params = cfg.resolved_loss_params()
        data = data if data is not None else cfg.load_data()
        with seeded(cfg.seed):
            net = cfg.build_model(data)  # always drawn, so W_j's initialisation does not depend on `model`
            if model is not None:
                net = copy.deepcopy(model)
            loss_fn = make_loss(cfg.loss, cfg.classes_in(data), cfg.dim, **params)
        return cfg.make_trainer(net, loss_fn, data)


@dataclass
class ToyConfig(LessonConfig):
    """A toy run: a :class:`~arcface_viz.models.ToyMLP` on a generated data set (toy_data.make_dataset).
    ``num_classes``, ``samples_per_class`` and ``noise`` left as None take the data set's own;
    ``data_params``: other generator arguments (label_noise, …).  The spirals need a deeper MLP, a smaller
    step and a margin warm-up, or two arms often merge."""

    DATASET_TRAINING: ClassVar[dict[str, dict[str, Any]]] = {
        "spirals": {"hidden": (64, 64, 64), "lr": 0.003, "warmup_steps": 200},
        "moons": {"hidden": (64, 64)},
    }
    TRAINING_DEFAULTS: ClassVar[dict[str, Any]] = {"hidden": (64,), "warmup_steps": 0, "batch_size": 256}
    SPEC_FIELDS: ClassVar[dict[str, str]] = {
        "dataset": "dataset", "classes": "num_classes", "samples": "samples_per_class", "noise": "noise",
        "seed": "seed", "dim": "dim", "optimizer": "optimizer", "lr": "lr", "warmup": "warmup_steps",
    }
    INT_TUPLES: ClassVar[tuple[str, ...]] = ("hidden",)

    dataset: str = "fig3"
    num_classes: int | None = None
    samples_per_class: int | None = None
    noise: float | None = None
    data_params: dict[str, Any] = field(default_factory=dict)
    test_fraction: float = 0.2
    hidden: tuple[int, ...] | None = None

    @classmethod
    def dataset_defaults(cls, dataset: str) -> dict[str, Any]:
        """The data set's classroom defaults (classes, samples, noise) and the training settings that suit it."""
        from toy_data import TOY_DATASETS

        d = TOY_DATASETS[dataset].defaults
        return {"classes": d["num_classes"], "samples": d["samples_per_class"], "noise": d["noise"],
                **super().dataset_defaults(dataset)}

    def load_data(self):
        """The generated data set (toy_data.ToyData)."""
        from toy_data import make_dataset

        return make_dataset(self.dataset, num_classes=self.num_classes, samples_per_class=self.samples_per_class,
                            noise=self.noise, seed=self.seed, **self.data_params)

    def build_model(self, data) -> nn.Module:
        return ToyMLP(data.input_dim, self.dim, self.hidden)

    @staticmethod
    def classes_in(data) -> int:
        return data.num_classes

    def make_trainer(self, model: nn.Module, loss_fn: MarginLoss, data) -> Trainer:
        train, test = data.split_indices(self.test_fraction, seed=self.seed)
        has_test = len(test) > 0
        flipped = getattr(data, "flipped", None)
        trainer = Trainer(model, loss_fn, data.X[train], data.y[train], data.X[test] if has_test else None,
                          data.y[test] if has_test else None, optimizer=self.optimizer, lr=self.lr,
                          batch_size=self.batch_size, warmup_steps=self.warmup_steps, anneal=self.anneal,
                          device=self.device, seed=self.seed, sample_size=self.sample_size,
                          flipped=None if flipped is None else flipped[train])
        trainer.config, trainer.data = self, data
        return trainer


def build_toy_trainer(config: ToyConfig | Mapping[str, Any] | None = None, *, data=None,
                      model: nn.Module | None = None, **overrides: Any) -> Trainer:
    """:meth:`LessonConfig.build` for ``ToyConfig.of(config, **overrides)``; ``data`` a toy_data.ToyData."""
    return ToyConfig.of(config, **overrides).build(data=data, model=model)


def build_compare_trainers(config: LessonConfig | Mapping[str, Any] | None = None,
                           losses: tuple[str, str] = ("norm_softmax", "arcface"),
                           loss_params: tuple[Mapping[str, Any] | None, Mapping[str, Any] | None] = (None, None),
                           *, data=None, **overrides: Any) -> tuple[Trainer, Trainer]:
    """Compare mode (Fig. 3) of any lesson: two trainers with the same data, seed, batches and initial network
    weights, differing only in the loss.  ``config``: a ToyConfig or an ImageConfig (a dict or None: a toy
    run); ``loss_params[i]`` overrides loss i's defaults."""
    cls = type(config) if isinstance(config, LessonConfig) else ToyConfig
    cfg = cls.of(config, **overrides).resolved()
    data = data if data is not None else cfg.load_data()
    with seeded(cfg.seed):
        net = cfg.build_model(data)
    a, b = (replace(cfg, loss=name, loss_params=dict(params or {})).build(data=data, model=net)
            for name, params in zip(losses, loss_params, strict=True))
    return a, b


LIVE_SETTINGS = ("loss_params", "lr", "warmup_steps")  # what a running trainer can change between steps


def reconfigure(trainer: Trainer, config: LessonConfig | Mapping[str, Any]) -> list[str]:
    """Apply a changed config to a running trainer built from a :class:`LessonConfig` (of the same class).

    Loss parameters, learning rate and warm-up apply at the next step; the names of the other changed
    settings (data set, dimension, loss, seed, network, …) are returned: those need a new trainer (Reset).
    """
    old = trainer.config
    cls = type(old)
    new = (config if isinstance(config, cls) else cls.from_dict(dict(config))).resolved()
    reset = [f.name for f in fields(cls)
             if f.name not in LIVE_SETTINGS and getattr(new, f.name) != getattr(old, f.name)]
    if "loss" in reset:
        return reset
    params = new.resolved_loss_params()
    if params != old.resolved_loss_params():
        trainer.set_loss_params(**params)
    if new.lr != old.lr:
        trainer.set_lr(new.lr)
    if new.warmup_steps != old.warmup_steps:
        trainer.set_warmup(new.warmup_steps)
    trainer.config = replace(old, loss_params=params, lr=new.lr, warmup_steps=new.warmup_steps)
    return reset
