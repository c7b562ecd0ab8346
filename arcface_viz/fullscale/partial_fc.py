"""Partial FC: the class-centre matrix W sharded across ranks, for identity counts that outgrow one GPU.

Rank r of W ranks holds the centres of classes [start_r, end_r) (sizes differ by at most one).  Every step:

1. the embeddings and labels of all ranks are all-gathered (N = Σ_r B_r rows; the gather sends each rank
   the summed gradient of its own rows back);
2. each rank computes cos θ_j = x̂·Ŵ_j for its own columns (the max over the K sub-centres of a class, where
   the loss has them) and hands them to the loss's margin (:class:`~arcface_viz.margin.Margin`, as
   insightface's ``PartialFC_V2`` takes its ``margin_loss``).  Each row's target cosine comes from the rank
   that holds its class (one all-reduce of N numbers), so the margin function computes the same per-sample
   values and batch statistics on every rank; sums over the classes go through the ``reduce`` hook it is
   given.  Only the rank that holds a row's class keeps its target logit;
3. the softmax max and denominator are all-reduced, so the loss is exactly the cross entropy over all n
   classes, mean over the N gathered samples, the same value on every rank.

With ``sample_rate`` < 1 (PFC-0.1 …, insightface's "Partial FC" proper) each rank keeps, per step, every
positive centre of the gathered batch plus a random subset of its negatives, ``int(sample_rate·n_local)`` in
all; the softmax runs over those only and the other centres get no gradient that step.

Gradients are exact: each rank's graph holds its own share of the global loss (its columns), and the
collective backward passes sum the shares, so ``x.grad`` and ``W_shard.grad`` equal those of the
single-process :class:`~arcface_viz.losses.MarginLoss` on the concatenated batch.  Under DDP, which
*averages* the backbone gradients of the ranks, the trainer therefore *sums* them instead
(:func:`allreduce_sum_hook`).  Works without ``torch.distributed`` (world size 1) too.

Every cosine-head loss of the registry works, with its regularisers: Intra (L5) and Inter (L6) are
reduced across ranks the same way; the angular triplet term and a margin's extra loss term are computed on
the gathered batch.  Non-cosine heads (softmax, a_softmax, triplet) raise ``ValueError``: train those with a
replicated head.  This file holds no margin maths: a new loss of the registry works here unchanged.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from ..losses import LOSSES, Margin, make_margin, triplet_term
from ..margin import subcentre_max, theta

__all__ = ["PartialFC", "shard_range", "supports", "allreduce_sum_hook"]


def supports(loss: str) -> bool:
    """True for the losses Partial FC can shard: the cosine head (with any regularisers)."""
    return loss in LOSSES and LOSSES[loss].head == "cosine"


def shard_range(num_classes: int, world_size: int, rank: int) -> tuple[int, int]:
    """[start, end) of the classes rank ``rank`` holds: the first n mod W ranks hold one more."""
    base, extra = divmod(num_classes, world_size)
    start = base * rank + min(rank, extra)
    return start, start + base + int(rank < extra)


def _dist_on(group: Any) -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size(group) > 1


# ------------------------------------------------------------------------------ collectives with autograd


class _GatherRows(torch.autograd.Function):
    """all_gather along dim 0; backward: the sum over ranks of the gradient of this rank's rows."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, group: Any, world: int, rank: int) -> torch.Tensor:
        x = x.contiguous()
        parts = [torch.empty_like(x) for _ in range(world)]
        dist.all_gather(parts, x, group=group)
        ctx.group, ctx.rank, ctx.rows = group, rank, x.shape[0]
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad = grad.contiguous()
        if dist.get_backend(ctx.group) == "nccl":
            out = torch.empty((ctx.rows, *grad.shape[1:]), dtype=grad.dtype, device=grad.device)
            dist.reduce_scatter_tensor(out, grad, group=ctx.group)
        else:  # gloo has no reduce_scatter: sum everything, keep our slice
            grad = grad.clone()
            dist.all_reduce(grad, group=ctx.group)
            out = grad[ctx.rank * ctx.rows:(ctx.rank + 1) * ctx.rows]
        return out, None, None, None


class _AllReduceSum(torch.autograd.Function):
    """all_reduce(SUM); backward: all_reduce(SUM) of the gradient (every rank's share reaches the owner)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, group: Any) -> torch.Tensor:
        out = x.clone()
        dist.all_reduce(out, group=group)
        ctx.group = group
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad = grad.clone()
        dist.all_reduce(grad, group=ctx.group)
        return grad, None


class _ShardedCrossEntropy(torch.autograd.Function):
    """Mean softmax cross entropy over logits split by columns across ranks.

    ``target`` holds the local column of each row's class, or −1 where the class lives on another rank.
    Forward all-reduces the row max, the denominator Σ e^{z − max} and the target logit; backward returns
    this rank's columns of (softmax − one_hot)/N.
    """

    @staticmethod
    def forward(ctx, logits: torch.Tensor, target: torch.Tensor, group: Any, distributed: bool) -> torch.Tensor:
        n = logits.shape[0]
        row_max = logits.detach().max(dim=1).values if logits.shape[1] else logits.new_full((n,), -math.inf)
        if distributed:
            dist.all_reduce(row_max, op=dist.ReduceOp.MAX, group=group)
        exp = torch.exp(logits.detach() - row_max[:, None])
        denom = exp.sum(dim=1)
        rows = torch.nonzero(target >= 0).squeeze(1)
        cols = target[rows]
        target_logit_ = torch.zeros(n, dtype=logits.dtype, device=logits.device)
        target_logit_[rows] = logits.detach()[rows, cols] - row_max[rows]
        if distributed:
            both = torch.stack([denom, target_logit_])
            dist.all_reduce(both, group=group)
            denom, target_logit_ = both[0], both[1]
        ctx.save_for_backward(exp.div_(denom[:, None]), rows, cols)
        return (denom.log() - target_logit_).mean()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        prob, rows, cols = ctx.saved_tensors
        g = prob.clone()
        g[rows, cols] -= 1.0
        return g.mul_(grad / prob.shape[0]), None, None, None


def _value_with_local_grad(local: torch.Tensor, total: torch.Tensor) -> torch.Tensor:
    """``total``'s value with ``local``'s gradient (the rank's share of a sum reduced across ranks)."""
    return local + (total - local).detach()


def allreduce_sum_hook(state, bucket):  # noqa: ANN001 - DDP checks these annotations, so there are none
    """DDP communication hook: sum the ranks' gradients instead of averaging them.

    With Partial FC every rank's embedding gradient is already a share of the gradient of the *global*
    mean loss, so the backbone's true gradient is the sum over ranks.
    """
    group = state if state is not None else dist.group.WORLD
    fut = dist.all_reduce(bucket.buffer(), group=group, async_op=True).get_future()
    return fut.then(lambda f: f.value()[0])


# ---------------------------------------------------------------------------------------------- the module


class PartialFC(nn.Module):
    """Sharded class centres plus a margin loss (any cosine-head entry of the registry).

    ``loss`` is a registry name (its parameters in ``params``) or a ready :class:`~arcface_viz.margin.Margin`
    (``margin_loss``, whose parameters, warm-up ``margin_scale`` and state this module uses and saves).
    ``forward(local_embeddings, local_labels)`` returns the global mean loss (same value on all ranks).
    Batch sizes must be equal on all ranks.  ``weight`` is this rank's shard, rows = classes
    ``[class_start, class_end)`` (K rows per class, class-major, for a loss with K sub-centres);
    :meth:`gather_weight` assembles the full matrix.
    """

    def __init__(self, loss: str | Margin, num_classes: int, embedding_size: int, sample_rate: float = 1.0,
                 group: Any = None, seed: int = 0, amp_dtype: torch.dtype | None = None, **params: Any) -> None:
        super().__init__()
        name = loss.name if isinstance(loss, Margin) else loss
        if name not in LOSSES:
            raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")
        if not supports(name):
            cosine = ", ".join(k for k in LOSSES if supports(k))
            raise ValueError(f"Partial FC supports the cosine-head family ({cosine}); {name!r} has a "
                             f"{LOSSES[name].head!r} head: train it with a replicated (data-parallel) head")
        if not 0.0 < sample_rate <= 1.0:
            raise ValueError(f"sample_rate must be in (0, 1], got {sample_rate!r}")
        self.margin_loss = loss if isinstance(loss, Margin) else make_margin(name, num_classes=num_classes, **params)
        self.name, self.info = name, self.margin_loss.info
        self.group = group
        self.distributed = _dist_on(group)
        self.world_size = dist.get_world_size(group) if self.distributed else 1
        self.rank = dist.get_rank(group) if self.distributed else 0
        if num_classes < self.world_size:
            raise ValueError(f"{num_classes} classes cannot be sharded over {self.world_size} ranks")
        self.num_classes, self.embedding_size, self.sample_rate = int(num_classes), int(embedding_size), sample_rate
        self.class_start, self.class_end = shard_range(self.num_classes, self.world_size, self.rank)
        self.num_local = self.class_end - self.class_start
        self.num_sample = int(sample_rate * self.num_local)
        self.amp_dtype = amp_dtype
        init = torch.Generator().manual_seed(int(seed) * 7919 + self.rank)
        rows = self.num_local * self.margin_loss.centres
        self.weight = nn.Parameter(torch.empty(rows, self.embedding_size).normal_(0.0, 0.01, generator=init))
        self.sampler = torch.Generator().manual_seed(int(seed) * 104_729 + self.rank + 1)
        self.last_index: torch.Tensor | None = None  # local centres used in the last step (sample_rate < 1)

    @property
    def margin_scale(self) -> float:
        """The margin's warm-up ramp in [0, 1] (see :class:`~arcface_viz.margin.Margin`)."""
        return self.margin_loss.margin_scale

    @margin_scale.setter
    def margin_scale(self, value: float) -> None:
        self.margin_loss.margin_scale = value

    # --- state ----------------------------------------------------------------------------------

    def get_extra_state(self) -> dict[str, Any]:
        return {"sampler": self.sampler.get_state(), "num_classes": self.num_classes,
                "world_size": self.world_size, "rank": self.rank, "class_start": self.class_start}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        mine = (self.num_classes, self.world_size, self.rank)
        theirs = (state.get("num_classes"), state.get("world_size"), state.get("rank"))
        if mine != theirs:
            raise ValueError(f"this Partial FC shard was saved for (num_classes, world_size, rank) = {theirs}, "
                             f"not {mine}: resume with the same number of processes")
        self.sampler.set_state(state["sampler"])

    def extra_repr(self) -> str:
        params = ", ".join(f"{k}={getattr(self.margin_loss, k)}" for k in self.info.params)
        return (f"loss={self.name}({params}), classes [{self.class_start}, {self.class_end}) of "
                f"{self.num_classes}, sample_rate={self.sample_rate}")

    # --- pieces ---------------------------------------------------------------------------------

    def _gather(self, embeddings: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.distributed:
            return embeddings, labels
        emb = _GatherRows.apply(embeddings, self.group, self.world_size, self.rank)
        parts = [torch.empty_like(labels) for _ in range(self.world_size)]
        dist.all_gather(parts, labels.contiguous(), group=self.group)
        return emb, torch.cat(parts)

    @torch.no_grad()
    def _sample(self, local_target: torch.Tensor, owned: torch.Tensor) -> torch.Tensor:
        """Sorted local indices of the centres used this step: every positive + random negatives."""
        positive = torch.unique(local_target[owned].cpu(), sorted=True)
        if self.num_sample <= positive.numel():
            return positive.to(local_target.device)
        score = torch.rand(self.num_local, generator=self.sampler)
        score[positive] = 2.0  # positives first
        return torch.topk(score, self.num_sample).indices.sort().values.to(local_target.device)

    def _reduce(self, x: torch.Tensor) -> torch.Tensor:
        if self.distributed:
            x = x.detach().clone()
            dist.all_reduce(x, group=self.group)
        return x

    def _cosines(self, emb: torch.Tensor, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(normalised centre rows, cos θ_j of every gathered row and local class: max over sub-centres)."""
        x = F.normalize(emb.float(), dim=1)
        w = F.normalize(weight.float(), dim=1)
        if self.amp_dtype is not None:
            with torch.autocast(x.device.type, dtype=self.amp_dtype):
                cos = F.linear(x, w).float()
        else:
            cos = x @ w.t()
        return w, subcentre_max(cos, self.margin_loss.centres)[0]

    # --- forward --------------------------------------------------------------------------------

    def forward(self, local_embeddings: torch.Tensor, local_labels: torch.Tensor) -> torch.Tensor:
        labels_local = local_labels.reshape(-1).long()
        if local_embeddings.dim() != 2 or local_embeddings.shape[0] != labels_local.shape[0]:
            raise ValueError(f"expected embeddings (B, {self.embedding_size}) and B labels, got "
                             f"{tuple(local_embeddings.shape)} and {tuple(local_labels.shape)}")
        emb, labels = self._gather(local_embeddings, labels_local)
        n = emb.shape[0]
        t = labels - self.class_start
        owned = (t >= 0) & (t < self.num_local)
        weight = self.weight
        self.last_index = None
        if self.sample_rate < 1.0 and self.training:
            index = self._sample(t, owned)
            self.last_index = index
            k = self.margin_loss.centres
            weight = self.weight.view(self.num_local, k, -1)[index].flatten(0, 1)
            t = torch.where(owned, torch.searchsorted(index, t.clamp(0, self.num_local - 1)), t)
        t = torch.where(owned, t, torch.full_like(t, -1))

        w, cos = self._cosines(emb, weight)
        margin = self.margin_loss
        logits, extra = margin.margin_logits(cos, t, owned=owned, norms=margin.feature_norms(emb),
                                             reduce=self._reduce, update=self.training)
        loss = _ShardedCrossEntropy.apply(logits, t, self.group, self.distributed)

        terms = [] if extra is None else [extra / self.world_size]  # computed on the gathered batch by every rank
        for reg in self.info.regularisers:
            if reg == "intra":  # L5: (1/πN) Σ_i θ_yi, each term on the rank that owns y_i
                rows = torch.nonzero(owned).squeeze(1)
                terms.append(theta(cos[rows, t[rows]]).sum() / (math.pi * n))
            elif reg == "inter":  # L6: −(1/(πN(n_active − 1))) Σ_i Σ_{j≠y_i} arccos(Ŵ_yi·Ŵ_j)
                terms.append(self._inter(w, t, owned, labels, n))
            else:  # angular batch-hard triplet on the gathered batch, the same on every rank
                terms.append(triplet_term(emb, labels, margin.margin) / self.world_size)
        for local in terms:
            loss = loss + _value_with_local_grad(local, self._reduce(local))
        return loss

    def _inter(self, w_active: torch.Tensor, t: torch.Tensor, owned: torch.Tensor, labels: torch.Tensor,
               n: int) -> torch.Tensor:
        full_t = (labels - self.class_start).clamp(0, self.num_local - 1)
        w_own = F.normalize(self.weight.float(), dim=1)[full_t] * owned[:, None]
        w_y = _AllReduceSum.apply(w_own, self.group) if self.distributed else w_own
        angles = theta(w_y @ w_active.t())
        self_col = torch.zeros_like(angles, dtype=torch.bool)
        rows = torch.nonzero(owned).squeeze(1)
        self_col[rows, t[rows]] = True
        n_active = self._reduce(torch.tensor(float(w_active.shape[0]), device=angles.device))
        return -torch.where(self_col, torch.zeros_like(angles), angles).sum() / (math.pi * n * (n_active - 1))

    # --- the full matrix ------------------------------------------------------------------------

    @torch.no_grad()
    def gather_weight(self, dst: int = 0) -> torch.Tensor | None:
        """The full (num_classes·K, d) centre matrix on rank ``dst`` (None elsewhere); collective."""
        w = self.weight.detach()
        if not self.distributed:
            return w.clone()
        k = self.margin_loss.centres
        padded = torch.zeros((self.num_classes // self.world_size + 1) * k, self.embedding_size, dtype=w.dtype,
                             device=w.device)
        padded[:w.shape[0]] = w
        parts = [torch.empty_like(padded) for _ in range(self.world_size)] if self.rank == dst else None
        dist.gather(padded, parts, dst=dst, group=self.group)
        if self.rank != dst:
            return None
        sizes = [shard_range(self.num_classes, self.world_size, r) for r in range(self.world_size)]
        return torch.cat([p[:(end - start) * k] for p, (start, end) in zip(parts, sizes, strict=True)])
