"""Many toy models trained as one: G trainers, each with its own seed, data, loss parameters, learning rate and
warm-up, advanced by one batched computation per optimizer step.

A toy step costs little arithmetic and many small tensor operations, each with a fixed overhead; G models stacked
along a new first axis cost those operations once.  Thirty visitors of the hosted app training thirty seeds
(issue 11), or a sweep over a grid of margins (issue 15), train in about the time of a few single runs.

API
---
:func:`batchable(trainer) <batchable>`
    whether a trainer can be advanced with others: a toy run (:class:`~arcface_viz.models.ToyMLP`, in-memory
    batches) on the CPU with Adam or SGD and a loss of the combined-margin family (Norm-Softmax, SphereFace,
    CosFace, ArcFace, combined margin: :func:`~arcface_viz.losses.combined_margin`, no regulariser).
:func:`compatible(trainers) <compatible>`
    whether they can be advanced *together*: all batchable, with the same network widths, embedding dimension,
    number of classes, training-set size, batch size and optimizer.  Seeds, data, s, m1, m2, m3, easy_margin, the
    learning rate, the warm-up and the step each trainer has reached may all differ.
:func:`advance_grid(trainers, k) <advance_grid>`
    a sweep map's advance: each group of compatible trainers together (``exact=False``), the rest one by one.
:func:`advance_together(trainers, k, exact=True) <advance_together>`
    ``k`` optimizer steps of every trainer, as :meth:`Trainer.advance(k) <arcface_viz.training.Trainer.advance>`
    of each would do them, and each trainer's :class:`~arcface_viz.training.Snapshot` afterwards.  Each trainer's
    state (network, class centres W_j, optimizer moments, its own batch stream, step, warm-up, pending setting
    changes) moves on in place, so a trainer can go on alone, or with other trainers, afterwards.  Trainers that
    are not compatible are advanced one by one.  Build the trainers with
    :func:`~arcface_viz.training.build_toy_trainer`; for example a sweep over m2::

        trainers = [build_toy_trainer({"loss": "arcface", "m2": m2, "seed": 0}) for m2 in np.linspace(0, 0.5, 11)]
        for _ in range(10):
            snaps = advance_together(trainers, 100, exact=False)   # 11 runs, 1,000 steps each, as one
        accuracy = [s.test_acc for s in snaps]

How close to a run alone
------------------------
``exact=True`` (the app): bit-identical.  Members whose margins are the same at every step of the chunk (same
s, m1, m2, m3, easy margin and warm-up position; seeds, data and learning rates may differ) are one batch, whose
margin is the members' own loss module (floats, as alone).  Every member draws the same mini-batches as alone
(its own generator), applies the same schedules and formulas, and takes the same Adam step (aten's fused kernel
on its slice of each stacked tensor, as :class:`~arcface_viz.optim.Adam` calls it alone).  The matrix products are
batched (``bmm``) where a run alone uses ``mm``: torch's CPU kernels round them the same way at these sizes, which
tests/test_batched.py checks weight for weight after hundreds of steps.

``exact=False`` (sweeps): compatible members are one batch per margin formula (with or without the arccos: easy
margin or not, m1 = 1 and m2 = 0 or not), their margins one tensor per parameter (shape (G, 1, 1), which
:mod:`arcface_viz.margin` reads per model).  The margin's constants and the warm-up ramp are then computed in
float32 per model instead of in double per run: a run starts equal to its run alone to float32 rounding, and
training amplifies the difference as it amplifies any (tests/test_batched.py states the tolerance).  One trainer
alone goes through its own ``advance``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .losses import combined_margin
from .margin import LOSSES, Margin, margin_cross_entropy
from .models import ToyMLP
from .optim import SGD, Adam
from .training import RNG_LOCK, Snapshot, Trainer, _NumThreads

_BETAS, _ADAM_EPS = Adam.betas, Adam.eps
_MARGIN = ("s", "m1", "m2", "m3", "easy_margin")  # what combined_margin reads
_BLOCK = 25  # steps whose mini-batches are copied out at once


def batchable(trainer: Any) -> bool:
    """A toy run on the CPU with Adam or SGD, batches drawn from memory, a combined-margin loss alone."""
    if not isinstance(trainer, Trainer) or not isinstance(trainer.model, ToyMLP):
        return False
    info = trainer.loss_fn.info
    return (info.head == "cosine" and info.margin is combined_margin and info.fused and not info.regularisers
            and not info.state and info.norms is None and not info.subcentres
            and trainer.batches.source is None and trainer.device.type == "cpu"
            and isinstance(trainer.optimizer, (Adam, SGD)))


def _shape(trainer: Trainer) -> tuple:
    m = trainer.model
    return (m.input_dim, m.hidden, m.embedding_dim, trainer.loss_fn.num_classes, len(trainer.batches.y),
            trainer.batch_size, type(trainer.optimizer).__name__, getattr(trainer.optimizer, "momentum", None),
            getattr(trainer.optimizer, "weight_decay", None))


def compatible(trainers: Sequence[Any]) -> bool:
    """All batchable and alike in everything but seed, data values, loss parameters, lr, warm-up and step."""
    return bool(trainers) and all(batchable(t) for t in trainers) and len({_shape(t) for t in trainers}) == 1


def _params(trainer: Trainer) -> list[nn.Parameter]:
    """The network's weights and biases, layer by layer, then W_j: the order stacked below."""
    out: list[nn.Parameter] = []
    for layer in trainer.model._linears:
        out += [layer.weight, layer.bias]
    return [*out, trainer.loss_fn.weight]


def _margin_key(trainer: Trainer, k: int) -> tuple:
    """What decides a member's margin at each of its next k steps: its parameters and its warm-up position."""
    f, w, step = trainer.loss_fn, trainer.warmup_steps, trainer.step
    ramp = None if w <= 0 or step >= w else (w, step)  # past the warm-up every step has margin_scale 1
    return (*(getattr(f, name) for name in _MARGIN), ramp)


def advance_together(trainers: Sequence[Trainer], k: int, exact: bool = True,
                     snapshot: bool = True, threads: int | None = None) -> list[Snapshot | None]:
    """``k`` steps of each trainer (see the module docstring), batched when they are :func:`compatible`:
    ``exact`` in batches of members with the same margins (bit-identical to alone), else one batch.  Each
    trainer's snapshot afterwards (None each with ``snapshot=False``).  ``threads``: torch's intra-op threads
    for the batched steps (default: the trainers' own, one for toy models; more help a sweep's large batched
    matrix products, and split them by model, so the bits stay those of a run alone)."""
    trainers = list(trainers)
    if len(trainers) < 2 or not compatible(trainers) or k <= 0:
        return [t.advance(k, snapshot) for t in trainers]
    with RNG_LOCK, _NumThreads(threads) if threads else trainers[0]._threads():
        for t in trainers:
            t._apply_pending()
        groups: dict[tuple, list[Trainer]] = {}
        for t in trainers:
            f = t.loss_fn
            if exact:
                key = _margin_key(t, k)
            elif t.warmup_steps > 0 and t.step == 0:  # its first step has no margin yet: the other formula
                key = ("alone", id(t))
            else:
                key = (f.easy_margin, f.m1 == 1.0 and f.m2 == 0.0)  # one margin formula per batch
            groups.setdefault(key, []).append(t)
        for members in groups.values():
            if len(members) == 1:
                members[0]._train(int(k))
            else:
                _train_together(members, int(k), exact)
    return [t.snapshot() if snapshot else None for t in trainers]


def advance_grid(trainers: Sequence[Any], k: int, snapshot: bool = True, threads: int | None = None) -> list[Any]:
    """``k`` steps of every trainer of a sweep map, in order: the trainers alike in shape (:func:`compatible`)
    advanced together with ``exact=False`` (per-member margins as tensors), the others one by one; each
    trainer's snapshot afterwards (None with ``snapshot=False``).  The advance :func:`arcface_viz.sweep.default_advance`
    uses."""
    trainers = list(trainers)
    out: list[Any] = [None] * len(trainers)
    groups: dict[tuple, list[int]] = {}
    for i, t in enumerate(trainers):
        if batchable(t):
            groups.setdefault(_shape(t), []).append(i)
        else:
            out[i] = t.advance(k, snapshot)
    for members in groups.values():
        snaps = advance_together([trainers[i] for i in members], k, exact=False, snapshot=snapshot, threads=threads)
        for i, snap in zip(members, snaps, strict=True):
            out[i] = snap
    return out


class _BatchMargin(Margin):
    """The members' margins as one :class:`~arcface_viz.margin.Margin` of the combined-margin family, each
    parameter a (G, 1, 1) tensor (exact=False)."""

    def __init__(self, trainers: list[Trainer]) -> None:
        super().__init__(LOSSES["combined"], batch_shape=(len(trainers),))
        self.easy_margin = bool(trainers[0].loss_fn.easy_margin)
        self.train()

    def at(self, trainers: list[Trainer], steps: list[int]) -> _BatchMargin:
        """Every member's margins at its step: the warm-up ramp applied per member in double precision, as a
        run alone applies it (its Margin reads them with margin_scale 1)."""
        rows = []
        for t, step in zip(trainers, steps, strict=True):
            f, w = t.loss_fn, t.warmup_steps
            a = min(1.0, step / w) if w > 0 else 1.0
            rows.append((f.s, 1.0 + a * (f.m1 - 1.0), a * f.m2, a * f.m3))
        for name, column in zip(("s", "m1", "m2", "m3"), zip(*rows, strict=True), strict=True):
            setattr(self, name, torch.tensor(column, dtype=torch.float32).view(-1, 1, 1))
        self.margin_scale = 1.0
        return self


class _Adam:
    """Adam for every member: aten's fused kernel on each member's slice of each stacked tensor, as
    optim.Adam calls it for a model alone (so the update is the same to the last bit), one call per learning
    rate; the written-out update where there is no fused kernel or a member's optimizer does not use it
    (``fused=False``).  ``done``: steps each member has taken."""

    def __init__(self, params: list[torch.Tensor], m: list[torch.Tensor], v: list[torch.Tensor], lr: list[float],
                 done: list[float], fused: bool = True) -> None:
        self.groups: dict[float, list[int]] = {}
        for g, r in enumerate(lr):
            self.groups.setdefault(r, []).append(g)
        self.params, self.m, self.v = params, m, v
        # one step counter per member (optim.Adam keeps one per tensor, all equal); the slices are views, made once
        self.counts = [torch.tensor(float(n)) for n in done]
        # param-major lists (each tensor's members together), so a step's gradients are each stacked gradient's
        # unbind(0) in a row; the fused kernel runs on each member's own slice, never on a whole stacked tensor
        # (its vector and tail loops would then split the elements differently and round some differently)
        self.slices = {r: ([p[g] for p in params for g in members], [x[g] for x in m for g in members],
                           [x[g] for x in v for g in members], [self.counts[g] for _ in params for g in members])
                       for r, members in self.groups.items()}
        self.everyone = len(self.groups) == 1
        self.fused = fused

    def step(self, grads: list[torch.Tensor]) -> None:
        b1, b2 = _BETAS
        torch._foreach_add_(self.counts, 1)
        for r, members in self.groups.items():
            ps, ms, vs, ts = self.slices[r]
            if self.everyone:
                gs = [x for gr in grads for x in gr.unbind(0)]
            else:
                gs = [gr[g] for gr in grads for g in members]
            if self.fused:
                try:
                    torch._fused_adam_(ps, gs, ms, vs, [], ts, lr=r, beta1=b1, beta2=b2, weight_decay=0.0,
                                       eps=_ADAM_EPS, amsgrad=False, maximize=False)
                    continue
                except (RuntimeError, NotImplementedError, AttributeError):
                    self.fused = False
            for p, g, m_, v_, t in zip(ps, gs, ms, vs, ts, strict=True):  # written out
                n = float(t)
                m_.lerp_(g, 1 - b1)
                v_.mul_(b2).addcmul_(g, g, value=1 - b2)
                denom = (v_.sqrt() / math.sqrt(1 - b2 ** n)).add_(_ADAM_EPS)
                p.addcdiv_(m_, denom, value=-r / (1 - b1 ** n))

    def done(self, g: int) -> float:
        """Steps member g has taken."""
        return float(self.counts[g])


def _train_together(trainers: list[Trainer], k: int, exact: bool) -> None:
    """The batched counterpart of Trainer._train for every member (state written back in place); ``exact``:
    the members' margins are equal at every step (their own loss module computes it), else per-member tensors."""
    t0 = time.perf_counter()
    G = len(trainers)
    per_member = [_params(t) for t in trainers]
    stacked = [torch.stack([p[j].detach() for p in per_member]).requires_grad_(True)
               for j in range(len(per_member[0]))]
    adam = isinstance(trainers[0].optimizer, Adam)
    if adam:
        states = [[t.optimizer._state(p) for p in ps] for t, ps in zip(trainers, per_member, strict=True)]
        m = [torch.stack([s[j][0] for s in states]) for j in range(len(stacked))]
        v = [torch.stack([s[j][1] for s in states]) for j in range(len(stacked))]
        optimizer = _Adam(stacked, m, v, [t.lr for t in trainers], [float(s[0][2]) for s in states],
                          fused=all(t.optimizer.fused is not False for t in trainers))
    else:
        sgd = trainers[0].optimizer
        bufs = [[t.optimizer.state.get(p) for p in ps] for t, ps in zip(trainers, per_member, strict=True)]
        fresh = torch.tensor([b[0] is None for b in bufs])
        buf = [torch.stack([b[j] if b[j] is not None else torch.zeros_like(per_member[i][j])
                            for i, b in enumerate(bufs)]) for j in range(len(stacked))]
        neg_lr = torch.tensor([-t.lr for t in trainers])
    X = torch.cat([t.batches.X for t in trainers])  # (G·N, in): member g's rows from g·N
    y = torch.cat([t.batches.y for t in trainers])
    N, n_in = len(trainers[0].batches.y), X.shape[1]
    idx = torch.stack([torch.stack(list(t.batches._indices(k))) for t in trainers])  # (G, k, B): each its own stream
    rows = (idx + (torch.arange(G) * N)[:, None, None]).transpose(0, 1)  # (k, G, B) rows of X
    steps = [t.step for t in trainers]
    lead = trainers[0]
    margin = lead.loss_fn if exact else _BatchMargin(trainers)
    ramp = max(t.warmup_steps - s for t, s in zip(trainers, steps, strict=True))  # steps left with a moving margin
    total = torch.zeros(G)
    *layers, W = stacked
    for i in range(k):
        if exact:
            if lead.warmup_steps > 0:  # the same position for every member (see _margin_key)
                margin.margin_scale = min(1.0, steps[0] / lead.warmup_steps)
        elif i == 0 or i <= ramp:  # past every member's warm-up the margins stay as they are
            margin.at(trainers, steps)
        if i % _BLOCK == 0:  # the next _BLOCK steps' batches in one copy each (one gather per step costs more)
            block = rows[i:i + _BLOCK]
            xs = X.index_select(0, block.flatten()).view(*block.shape, n_in)
            ys = y.index_select(0, block.flatten()).view(block.shape)
        h = xs[i % _BLOCK]
        for j in range(0, len(layers) - 2, 2):
            h = torch.relu(torch.baddbmm(layers[j + 1][:, None, :], h, layers[j].transpose(1, 2)))
        emb = torch.baddbmm(layers[-1][:, None, :], h, layers[-2].transpose(1, 2))
        loss = margin_cross_entropy(margin, emb, W, ys[i % _BLOCK])  # (G,)
        grads = [g.contiguous() for g in torch.autograd.grad(loss.sum(), stacked)]  # the fused kernel needs it
        with torch.no_grad():
            if adam:
                optimizer.step(grads)
            else:
                for p, g, b in zip(stacked, grads, buf, strict=True):
                    shape = (G,) + (1,) * (p.dim() - 1)
                    d = g.add(p, alpha=sgd.weight_decay) if sgd.weight_decay else g
                    if sgd.momentum:
                        b.copy_(torch.where(fresh.view(shape), d, b * sgd.momentum + d))
                        d = b
                    p.addcmul_(d, neg_lr.view(shape))
                fresh = torch.zeros_like(fresh)
        total += loss.detach()
        steps = [s + 1 for s in steps]
    seconds = (time.perf_counter() - t0) / G
    with torch.no_grad():
        for g, (t, ps) in enumerate(zip(trainers, per_member, strict=True)):
            for j, p in enumerate(ps):
                p.copy_(stacked[j][g])
                if adam:
                    st = t.optimizer._state(p)
                    st[0].copy_(m[j][g])
                    st[1].copy_(v[j][g])
                    st[2].fill_(optimizer.done(g))
                elif sgd.momentum:
                    t.optimizer.state[p] = buf[j][g].clone()
            t.step = steps[g]
            t._last_loss = float(total[g]) / k
            t.seconds += seconds
            t._apply_schedules()
