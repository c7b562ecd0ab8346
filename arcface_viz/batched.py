"""Many toy models trained as one: G trainers, each with its own seed, data, loss parameters, learning rate and
warm-up, advanced by one batched computation per optimizer step.

A toy step costs little arithmetic and many small tensor operations, each with a fixed overhead; G models stacked
along a new first axis cost those operations once.  Thirty visitors of the hosted app training thirty seeds
(issue 11), or a sweep over a grid of margins (issue 15), train in about the time of a few single runs.

API
---
:func:`batchable(trainer) <batchable>`
    whether a trainer can be advanced with others: a toy run (:class:`~arcface_viz.models.ToyMLP`, in-memory
    batches) with a cosine head and no regulariser (Norm-Softmax, SphereFace, CosFace, ArcFace, combined margin),
    Adam or SGD, on the CPU.
:func:`compatible(trainers) <compatible>`
    whether they can be advanced *together*: all batchable, with the same network widths, embedding dimension,
    number of classes, training-set size, batch size and optimizer.  Seeds, data, s, m1, m2, m3, easy_margin, the
    learning rate, the warm-up and the step each trainer has reached may all differ.
:func:`advance_together(trainers, k) <advance_together>`
    ``k`` optimizer steps of every trainer, as :meth:`Trainer.advance(k) <arcface_viz.training.Trainer.advance>`
    of each would do them, and each trainer's :class:`~arcface_viz.training.Snapshot` afterwards.  Each trainer's
    state (network, class centres W_j, optimizer moments, its own batch stream, step, warm-up, pending setting
    changes) moves on in place, so a trainer can go on alone, or with other trainers, afterwards.  Trainers that
    are not compatible are advanced one by one.  Build the trainers with
    :func:`~arcface_viz.training.build_toy_trainer`; for example a sweep over m2::

        trainers = [build_toy_trainer({"loss": "arcface", "m2": m2, "seed": 0}) for m2 in np.linspace(0, 0.5, 11)]
        for _ in range(10):
            snaps = advance_together(trainers, 100)   # 11 runs, 1,000 steps each
        accuracy = [s.test_acc for s in snaps]

How close to a run alone
------------------------
Bit-identical.  Every member draws the same mini-batches as alone (its own generator), applies the same
schedules and the same formulas in the same order, and takes the same Adam step (aten's fused kernel on its slice
of each stacked tensor, as :class:`~arcface_viz.optim.Adam` calls it alone).  The matrix products are batched
(``bmm``, ``baddbmm``) where a run alone uses ``mm``/``addmm``: with torch's CPU kernels these round the same way
at these sizes, which tests/test_batched.py checks weight for weight after hundreds of steps.  (A BLAS build that
rounded batched products differently would give runs that agree to float32 noise instead; the tests would say
so.)  One trainer alone goes through its own ``advance``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .models import ToyMLP
from .optim import SGD, Adam
from .training import RNG_LOCK, Snapshot, Trainer

_EPS = 1e-6  # the arccos clamp of losses._CosineMarginCE
_BETAS, _ADAM_EPS = Adam.betas, Adam.eps


def batchable(trainer: Any) -> bool:
    """A toy run on the CPU with a cosine head, no regulariser, Adam or SGD, batches drawn from memory."""
    return (isinstance(trainer, Trainer) and isinstance(trainer.model, ToyMLP)
            and trainer.loss_fn.info.head == "cosine" and not trainer.loss_fn.info.regularisers
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


def advance_together(trainers: Sequence[Trainer], k: int) -> list[Snapshot]:
    """``k`` steps of each trainer (see the module docstring), batched when they are :func:`compatible`."""
    trainers = list(trainers)
    if len(trainers) < 2 or not compatible(trainers) or k <= 0:
        return [t.advance(k) for t in trainers]
    with RNG_LOCK, trainers[0]._threads():
        _train_together(trainers, int(k))
    return [t.snapshot() for t in trainers]


class _BatchedMarginCE(torch.autograd.Function):
    """losses._CosineMarginCE for G models at once: per-member s, margins and their curve constants.

    Shapes: emb (G, B, d), weight (G, n, d), labels (G, B); per-member values (G, 1, 1): s, m1, m2, m3, t_star
    (θ* = (π − m2)/m1), c (the extension's offset), s/B; boolean (G, 1, 1): arc (the margin acts on the angle:
    m1 ≠ 1, m2 ≠ 0 or easy margin), easy.  Returns each member's mean loss (G,).
    """

    @staticmethod
    def forward(ctx, emb, weight, labels, s, m1, m2, m3, t_star, c, arc, easy, s_over_b):
        xn = emb.norm(dim=2, keepdim=True).clamp_min(1e-12)
        wn = weight.norm(dim=2, keepdim=True).clamp_min(1e-12)
        x, w = emb / xn, weight / wn
        cos = torch.bmm(x, w.transpose(1, 2))
        rows = labels[:, :, None]
        ct = cos.gather(2, rows)
        cc = ct.clamp(-1.0 + _EPS, 1.0 - _EPS)
        th = torch.acos(cc)
        cos_th = torch.cos(th)
        raw = torch.cos(m1 * th + m2) - m3
        curve = torch.where(easy, torch.where(cos_th > 0, raw, cos_th),
                            torch.where(th <= t_star, raw, cos_th - m3 - c))
        raw_slope = -m1 * torch.sin(m1 * th + m2)
        slope = torch.where(easy, torch.where(cos_th > 0, raw_slope, -torch.sin(th)),
                            torch.where(th <= t_star, raw_slope, -torch.sin(th)))
        target = torch.where(arc, curve, ct - m3)
        ctx.slope = torch.where(arc, -slope / torch.sin(th) * (cc == ct), torch.ones_like(ct))
        logits = cos.scatter(2, rows, target).mul_(s)
        log_p = torch.log_softmax(logits, dim=2)
        ctx.save_for_backward(x, xn, w, wn, log_p, rows, s_over_b)
        return -log_p.gather(2, rows).mean(dim=(1, 2))

    @staticmethod
    def backward(ctx, grad):
        x, xn, w, wn, log_p, rows, s_over_b = ctx.saved_tensors
        g = log_p.exp()
        g.scatter_add_(2, rows, torch.full_like(rows, -1, dtype=g.dtype))
        g.mul_(grad[:, None, None] * s_over_b)
        g.scatter_(2, rows, g.gather(2, rows) * ctx.slope)
        dx, dw = torch.bmm(g, w), torch.bmm(g.transpose(1, 2), x)
        dx = (dx - x * (dx * x).sum(2, keepdim=True)) / xn
        dw = (dw - w * (dw * w).sum(2, keepdim=True)) / wn
        return dx, dw, *([None] * 10)


def _column(values: Sequence[float], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.tensor(values, dtype=dtype).view(-1, 1, 1)


def _margins(trainers: Sequence[Trainer], steps: Sequence[int], batch: int) -> tuple[torch.Tensor, ...]:
    """Per-member (s, m1, m2, m3, t_star, c, arc, easy, s/B) at the given steps (warm-up applied), for batches
    of ``batch`` samples."""
    rows = []
    for t, step in zip(trainers, steps, strict=True):
        f = t.loss_fn
        a = min(1.0, step / t.warmup_steps) if t.warmup_steps > 0 else 1.0
        m1, m2, m3 = 1.0 + a * (f.m1 - 1.0), a * f.m2, a * f.m3
        t_star = (math.pi - m2) / m1
        c = max(m2 * math.sin(m2), 1.0 + math.cos(t_star))
        rows.append((f.s, m1, m2, m3, t_star, c, (m1, m2) != (1.0, 0.0) or f.easy_margin, f.easy_margin,
                     f.s / batch))
    cols = list(zip(*rows, strict=True))
    floats = [_column(cols[i]) for i in (0, 1, 2, 3, 4, 5)]
    return (*floats, _column(cols[6], torch.bool), _column(cols[7], torch.bool), _column(cols[8]))


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
        self.slices = {r: ([p[g] for g in members for p in params], [x[g] for g in members for x in m],
                           [x[g] for g in members for x in v], [self.counts[g] for g in members for _ in params])
                       for r, members in self.groups.items()}
        self.fused = fused

    def step(self, grads: list[torch.Tensor]) -> None:
        b1, b2 = _BETAS
        torch._foreach_add_(self.counts, 1)
        for r, members in self.groups.items():
            ps, ms, vs, ts = self.slices[r]
            gs = [gr[g] for g in members for gr in grads]
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


def _train_together(trainers: list[Trainer], k: int) -> None:
    """The batched counterpart of Trainer._train for every member (state written back in place)."""
    t0 = time.perf_counter()
    for t in trainers:
        t._apply_pending()
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
        bufs = [[t.optimizer.state.get(p) for p in ps] for t, ps in zip(trainers, per_member, strict=True)]
        fresh = _column([b[0] is None for b in bufs], torch.bool)
        buf = [torch.stack([b[j] if b[j] is not None else torch.zeros_like(per_member[i][j])
                            for i, b in enumerate(bufs)]) for j in range(len(stacked))]
    lr = [t.lr for t in trainers]
    X = torch.stack([t.batches.X for t in trainers])  # (G, N, in)
    y = torch.stack([t.batches.y for t in trainers])  # (G, N)
    idx = torch.stack([torch.stack(list(t.batches.indices(k))) for t in trainers])  # (G, k, B): each its own stream
    n_in = X.shape[2]
    steps = [t.step for t in trainers]
    warm = any(t.warmup_steps > 0 for t in trainers)
    margins = _margins(trainers, steps, idx.shape[2])
    total = torch.zeros(G)
    *layers, W = stacked
    for i in range(k):
        if warm and i:
            margins = _margins(trainers, steps, idx.shape[2])
        rows = idx[:, i]
        xb = torch.gather(X, 1, rows[:, :, None].expand(-1, -1, n_in))
        yb = torch.gather(y, 1, rows)
        h = xb
        for j in range(0, len(layers) - 2, 2):
            h = torch.relu(torch.baddbmm(layers[j + 1][:, None, :], h, layers[j].transpose(1, 2)))
        emb = torch.baddbmm(layers[-1][:, None, :], h, layers[-2].transpose(1, 2))
        loss = _BatchedMarginCE.apply(emb, W, yb, *margins)
        grads = [g.contiguous() for g in torch.autograd.grad(loss.sum(), stacked)]  # the fused kernel needs it
        with torch.no_grad():
            if adam:
                optimizer.step(grads)
            else:
                opt = trainers[0].optimizer
                neg_lr = _column([-r for r in lr])
                for p, g, b in zip(stacked, grads, buf, strict=True):
                    shape = (G,) + (1,) * (p.dim() - 1)
                    d = g.add(p, alpha=opt.weight_decay) if opt.weight_decay else g
                    if opt.momentum:
                        b.copy_(torch.where(fresh.view(shape), d, b * opt.momentum + d))
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
                elif t.optimizer.momentum:
                    t.optimizer.state[p] = buf[j][g].clone()
            t.step = steps[g]
            t._last_loss = float(total[g]) / k
            t.seconds += seconds
            t._apply_schedules()
