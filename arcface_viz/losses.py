"""The margin-based softmax family as one parametrised module.

Every cosine-head loss of the ArcFace paper is the combined margin (paper eq. L4)

    L = -log  e^{s·f(θ_y)} / (e^{s·f(θ_y)} + Σ_{j≠y} e^{s·cos θ_j}),   f(θ) = cos(m1·θ + m2) − m3

with Norm-Softmax (1, 0, 0), SphereFace (m1, 0, 0), ArcFace (1, m2, 0) and CosFace (1, 0, m3) as
special cases. Softmax keeps a plain linear layer with bias, A-Softmax (original SphereFace) keeps the
feature norm and its piecewise ψ(θ), and the Intra-, Inter- and Triplet-losses (L5, L6, triplet) are
regularisers that can be added to any head: ``"arcface+intra"``, ``"norm_softmax+intra+inter"``, …

Beyond π: when m1·θ + m2 > π, cos(m1·θ + m2) turns back up.  For training we follow insightface
(2018–2022) and pytorch-metric-learning and switch to the monotonic extension

    f(θ) = cos θ − m3 − c,   c = max(m2·sin m2, 1 + cos θ*),   θ* = (π − m2) / m1

for θ > θ*.  With m1 = 1 this is exactly insightface's ``cos θ − m·sin m`` (because m·sin m ≥ 1 − cos m);
the ``1 + cos θ*`` term keeps the curve non-increasing for m1 ≠ 1 too (SphereFace's 1.35 and CM2's 0.9).
``easy_margin=True`` instead applies the margin only where cos θ > 0.

All margin arithmetic runs in float32 whatever the input dtype, and cosines are clamped to
[−1 + ε, 1 − ε] before arccos, so the loss and its gradients stay finite at θ = 0 and θ = π.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

PARAM_NAMES = ("s", "m1", "m2", "m3", "m", "lam", "margin", "easy_margin")
_EPS = 1e-6  # clamp for arccos; acos' stays below 1/sqrt(2e-6) ≈ 707


@dataclass(frozen=True)
class LossInfo:
    """One registry entry: which head, which regularisers, which parameters and their defaults."""

    name: str
    label: str
    head: str  # "linear" | "cosine" | "a_softmax" | "centroid"
    regularisers: tuple[str, ...]
    params: tuple[str, ...]
    paper: dict[str, Any]
    low_dim: dict[str, Any]
    summary: str
    presets: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def has_centres(self) -> bool:
        """False for the pure triplet loss, whose 'centres' are only running class means."""
        return self.head != "centroid"

    def defaults(self, low_dim: bool = False) -> dict[str, Any]:
        return dict(self.low_dim if low_dim else self.paper)


_HEADS: dict[str, dict[str, Any]] = {
    # head, params, paper defaults, 2-D/3-D defaults, label, summary
    "softmax": dict(
        head="linear", params=(), paper={}, low_dim={}, label="Softmax",
        summary="Linear layer with bias, W_y·x + b_y; no normalisation, no margin (L1).",
    ),
    "norm_softmax": dict(
        head="cosine", params=("s",), paper={"s": 64.0}, low_dim={"s": 16.0}, label="Norm-Softmax",
        summary="‖W_j‖ = 1, ‖x‖ = s, no bias: logits s·cos θ_j (L2).",
    ),
    "sphereface": dict(
        head="cosine", params=("s", "m1"), paper={"s": 64.0, "m1": 1.35}, low_dim={"s": 16.0, "m1": 1.2},
        label="SphereFace", summary="Multiplicative angular margin s·cos(m1·θ_y), the paper's arccos form.",
    ),
    "a_softmax": dict(
        head="a_softmax", params=("m", "lam"), paper={"m": 4, "lam": 5.0}, low_dim={"m": 2, "lam": 5.0},
        label="A-Softmax",
        summary="Original SphereFace: ‖x‖·(λ cos θ_y + ψ(θ_y))/(1+λ), integer m, feature norm kept.",
    ),
    "cosface": dict(
        head="cosine", params=("s", "m3"), paper={"s": 64.0, "m3": 0.35}, low_dim={"s": 16.0, "m3": 0.15},
        label="CosFace", summary="Additive cosine margin s·(cos θ_y − m3).",
    ),
    "arcface": dict(
        head="cosine", params=("s", "m2", "easy_margin"), paper={"s": 64.0, "m2": 0.5, "easy_margin": False},
        low_dim={"s": 16.0, "m2": 0.2, "easy_margin": False}, label="ArcFace",
        summary="Additive angular margin s·cos(θ_y + m2) (L3).",
    ),
    "combined": dict(
        head="cosine", params=("s", "m1", "m2", "m3", "easy_margin"),
        paper={"s": 64.0, "m1": 1.0, "m2": 0.3, "m3": 0.2, "easy_margin": False},
        low_dim={"s": 16.0, "m1": 1.0, "m2": 0.1, "m3": 0.05, "easy_margin": False}, label="Combined",
        summary="Combined margin s·(cos(m1·θ_y + m2) − m3) (L4).",
        presets={"CM1": {"m1": 1.0, "m2": 0.3, "m3": 0.2}, "CM2": {"m1": 0.9, "m2": 0.4, "m3": 0.15}},
    ),
}
_REG_LABEL = {"intra": "Intra", "inter": "Inter", "triplet": "Triplet"}
_REG_SUMMARY = {
    "intra": "+ (1/πN) Σ θ_yi pulls samples to their centre (L5)",
    "inter": "− mean angle between W_yi and the other centres / π pushes centres apart (L6)",
    "triplet": "+ angular triplet: arccos(x_p·x_a) + m ≤ arccos(x_n·x_a), batch-hard, on normalised features",
}


def _build_registry() -> dict[str, LossInfo]:
    reg: dict[str, LossInfo] = {}

    def add(name: str, base: str | None, regs: tuple[str, ...], label: str | None = None) -> None:
        if base is None:  # pure triplet: no classifier, running class means stand in for centres
            head = dict(head="centroid", params=(), paper={}, low_dim={}, label="", summary="")
        else:
            head = _HEADS[base]
        params = tuple(head["params"])
        paper, low = dict(head["paper"]), dict(head["low_dim"])
        if "triplet" in regs:
            params += ("margin",)
            paper["margin"], low["margin"] = 0.35, 0.2
        summary = "; ".join([head["summary"]] * bool(head["summary"]) + [_REG_SUMMARY[r] for r in regs])
        default_label = " + ".join(([head["label"]] if head["label"] else []) + [_REG_LABEL[r] for r in regs])
        reg[name] = LossInfo(
            name=name, label=label or default_label, head=head["head"], regularisers=regs, params=params,
            paper=paper, low_dim=low, summary=summary, presets=dict(head.get("presets", {})),
        )

    for base in _HEADS:
        add(base, base, ())
    # The paper's own names: Intra-Loss (L5) and Inter-Loss (L6) are Norm-Softmax plus the term.
    add("intra", "norm_softmax", ("intra",), "Intra-Loss (NS + Intra)")
    add("inter", "norm_softmax", ("inter",), "Inter-Loss (NS + Inter)")
    add("triplet", None, ("triplet",), "Triplet (angular)")
    for base in ("arcface", "norm_softmax"):
        for regs in (("intra",), ("inter",), ("intra", "inter")):
            add("+".join((base, *regs)), base, regs)
    add("arcface+triplet", "arcface", ("triplet",))
    return reg


LOSSES: dict[str, LossInfo] = _build_registry()


# ---------------------------------------------------------------------------------------------
# Target-logit curves (numpy or torch, elementwise)


def _xp(x):
    return torch if torch.is_tensor(x) else np


def extension_threshold(m1: float, m2: float) -> float:
    """θ* = (π − m2)/m1: the angle where m1·θ + m2 reaches π and cos(m1·θ + m2) turns back."""
    return (math.pi - m2) / m1


def extension_offset(m1: float, m2: float) -> float:
    """c in the monotonic extension cos θ − m3 − c (c = m·sin m for ArcFace, as in insightface)."""
    return max(m2 * math.sin(m2), 1.0 + math.cos(extension_threshold(m1, m2)))


def target_logit(theta, m1: float = 1.0, m2: float = 0.0, m3: float = 0.0, *, monotonic: bool = False,
                 easy_margin: bool = False):
    """Fig. 4(b): the target logit cos(m1·θ + m2) − m3 (before the scale s), elementwise.

    ``monotonic=True`` gives the curve the loss actually trains with: past θ* = (π − m2)/m1 it follows
    cos θ − m3 − c (see the module docstring).  ``easy_margin=True`` applies the margin only where
    cos θ > 0 and leaves cos θ elsewhere.  Works on numpy arrays and on torch tensors.
    """
    xp = _xp(theta)
    raw = xp.cos(m1 * theta + m2) - m3
    if easy_margin:
        return xp.where(xp.cos(theta) > 0, raw, xp.cos(theta))
    if not monotonic:
        return raw
    t_star = extension_threshold(m1, m2)
    if t_star >= math.pi:
        return raw
    return xp.where(theta <= t_star, raw, xp.cos(theta) - m3 - extension_offset(m1, m2))


def target_logit_slope(theta, m1: float = 1.0, m2: float = 0.0, m3: float = 0.0, *, monotonic: bool = True,
                       easy_margin: bool = False):
    """df/dθ of :func:`target_logit` (piecewise, numpy or torch)."""
    xp = _xp(theta)
    raw = -m1 * xp.sin(m1 * theta + m2)
    if easy_margin:
        return xp.where(xp.cos(theta) > 0, raw, -xp.sin(theta))
    if not monotonic or extension_threshold(m1, m2) >= math.pi:
        return raw
    return xp.where(theta <= extension_threshold(m1, m2), raw, -xp.sin(theta))


def a_softmax_psi(theta, m: int = 4):
    """A-Softmax ψ(θ) = (−1)^k cos(mθ) − 2k for θ ∈ [kπ/m, (k+1)π/m]: monotonic from 1 down to 1 − 2m."""
    xp = _xp(theta)
    k = xp.clip(xp.floor(theta * m / math.pi), 0, m - 1)
    sign = 1 - 2 * (k % 2)
    return sign * xp.cos(m * theta) - 2 * k


def a_softmax_target(theta, m: int = 4, lam: float = 5.0):
    """Fig. 4(b) 'SphereFace (m=4, λ=5)': the annealed target (λ cos θ + ψ(θ)) / (1 + λ) at ‖x‖ = 1."""
    xp = _xp(theta)
    return (lam * xp.cos(theta) + a_softmax_psi(theta, m)) / (1.0 + lam)


def a_softmax_lambda(iteration: int, lam_min: float = 5.0, base: float = 1000.0, gamma: float = 0.12,
                     power: float = 1.0) -> float:
    """SphereFace's annealing schedule λ = max(λ_min, base·(1 + γ·iter)^−power)."""
    return max(lam_min, base * (1.0 + gamma * iteration) ** (-power))


def _theta(cos):
    return torch.acos(cos.clamp(-1.0 + _EPS, 1.0 - _EPS))


class _CosineMarginCE(torch.autograd.Function):
    """Cosine head + combined margin + cross entropy as one autograd node (the training hot path).

    Forward: cos θ_j = x̂·Ŵ_j, target f(θ_y) = cos(m1·θ_y + m2) − m3 (training extension / easy margin as in
    :func:`target_logit`), loss = mean CE of s·logits.  Backward is analytic:

        G = s·(softmax − onehot)/B,   G_y ← G_y · df/dcos θ_y,   df/dcos θ = −f'(θ)/sin θ (target_logit_slope)
        dx̂ = G Ŵ,  dŴ = Gᵀ x̂,  dx = (dx̂ − x̂ (x̂·dx̂))/‖x‖  (the same for W)

    It gives the gradients of the op-by-op autograd graph of :meth:`MarginLoss.logits` + ``F.cross_entropy``
    (tests check both) with one graph node instead of about twenty, which is most of a toy step's cost.
    """

    @staticmethod
    def forward(ctx, emb, weight, labels, s, m1, m2, m3, easy_margin):
        xn = emb.norm(dim=1, keepdim=True).clamp_min(1e-12)
        wn = weight.norm(dim=1, keepdim=True).clamp_min(1e-12)
        x, w = emb / xn, weight / wn
        cos = x @ w.t()
        rows = labels[:, None]
        ct = cos.gather(1, rows)
        if m1 != 1.0 or m2 != 0.0 or easy_margin:  # the margin acts on the angle: target_logit's curve
            cc = ct.clamp(-1.0 + _EPS, 1.0 - _EPS)
            th = torch.acos(cc)
            target = target_logit(th, m1, m2, m3, monotonic=True, easy_margin=easy_margin)
            # df/dcos θ = −f'(θ)/sin θ; the clamp passes no gradient at its ends, as in autograd
            ctx.slope = -target_logit_slope(th, m1, m2, m3, easy_margin=easy_margin) / torch.sin(th) * (cc == ct)
        else:  # Norm-Softmax, CosFace: f = cos θ − m3, slope 1
            target = ct - m3
            ctx.slope = None
        logits = cos.scatter(1, rows, target).mul_(s)
        log_p = torch.log_softmax(logits, dim=1)
        ctx.save_for_backward(x, xn, w, wn, log_p, rows)
        ctx.s = s
        return -log_p.gather(1, rows).mean()

    @staticmethod
    def backward(ctx, grad):
        x, xn, w, wn, log_p, rows = ctx.saved_tensors
        g = log_p.exp()
        g.scatter_add_(1, rows, torch.full_like(rows, -1, dtype=g.dtype))
        g.mul_(grad * (ctx.s / len(x)))
        if ctx.slope is not None:
            g.scatter_(1, rows, g.gather(1, rows) * ctx.slope)
        dx, dw = g @ w, g.t() @ x
        dx = (dx - x * (dx * x).sum(1, keepdim=True)) / xn
        dw = (dw - w * (dw * w).sum(1, keepdim=True)) / wn
        return dx, dw, None, None, None, None, None, None


# ---------------------------------------------------------------------------------------------
# The module


class MarginLoss(nn.Module):
    """One module for the whole registry; see :data:`LOSSES` and :func:`make_loss`.

    Attributes ``s, m1, m2, m3, m, lam, margin, easy_margin`` are plain floats that a trainer may change
    between steps; ``margin_scale`` in [0, 1] ramps the margins from zero (warm-up).
    """

    def __init__(self, name: str, num_classes: int, embedding_dim: int, **params: Any) -> None:
        super().__init__()
        if name not in LOSSES:
            raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")
        unknown = set(params) - set(PARAM_NAMES)
        if unknown:
            raise ValueError(f"unknown loss parameter(s) {sorted(unknown)}; known: {', '.join(PARAM_NAMES)}")
        if num_classes < 2:
            raise ValueError("a margin loss needs at least 2 classes")
        self.info = LOSSES[name]
        self.name, self.num_classes, self.embedding_dim = name, num_classes, embedding_dim
        values = {"s": 64.0, "m1": 1.0, "m2": 0.0, "m3": 0.0, "m": 4, "lam": 5.0, "margin": 0.35,
                  "easy_margin": False}
        values.update(self.info.paper)
        values.update({k: v for k, v in params.items() if v is not None})
        self.s, self.m1, self.m2, self.m3 = (float(values[k]) for k in ("s", "m1", "m2", "m3"))
        self.m, self.lam, self.margin = int(values["m"]), float(values["lam"]), float(values["margin"])
        self.easy_margin = bool(values["easy_margin"])
        self.margin_scale = 1.0
        head = self.info.head
        if head == "linear":
            layer = nn.Linear(embedding_dim, num_classes)
            self.weight, self.bias = layer.weight, layer.bias
        elif head == "centroid":
            self.register_buffer("weight", torch.zeros(num_classes, embedding_dim))
            self.bias = None
        else:
            self.weight = nn.Parameter(torch.empty(num_classes, embedding_dim).normal_(0.0, 0.01))
            self.bias = None

    # --- pieces ---------------------------------------------------------------------------

    def effective_margins(self) -> tuple[float, float, float]:
        """(m1, m2, m3) after the warm-up ramp: (1 + a(m1 − 1), a·m2, a·m3)."""
        a = self.margin_scale
        return 1.0 + a * (self.m1 - 1.0), a * self.m2, a * self.m3

    def cosine(self, embeddings: torch.Tensor) -> torch.Tensor:
        """cos θ_j between each embedding and each class centre, float32, shape (B, n)."""
        x = F.normalize(embeddings.float(), dim=1)
        w = F.normalize(self.weight.float(), dim=1)
        return x @ w.t()

    def logits(self, embeddings: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """The logits that feed the cross entropy, with the margin on the target class when labels are given."""
        head = self.info.head
        if head == "linear":
            return F.linear(embeddings.float(), self.weight.float(), self.bias.float())
        cos = self.cosine(embeddings)
        if head == "a_softmax":
            norm = embeddings.float().norm(dim=1, keepdim=True)
            if labels is not None:
                ct = cos.gather(1, labels[:, None])
                th = _theta(ct)
                target = (self.lam * ct + a_softmax_psi(th, self.m)) / (1.0 + self.lam)
                cos = cos.scatter(1, labels[:, None], target)
            return norm * cos
        if labels is not None and head == "cosine":
            m1, m2, m3 = self.effective_margins()
            if (m1, m2) != (1.0, 0.0) or self.easy_margin:
                ct = cos.gather(1, labels[:, None])
                target = target_logit(_theta(ct), m1, m2, m3, monotonic=True, easy_margin=self.easy_margin)
                cos = cos.scatter(1, labels[:, None], target)
            elif m3:
                cos = cos - m3 * F.one_hot(labels, self.num_classes).to(cos.dtype)
        return self.s * cos

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean loss over the batch: cross entropy of :meth:`logits` plus the regularisers."""
        labels = labels.long()
        if self.info.head == "centroid":
            self._update_centroids(embeddings, labels)
            loss = embeddings.float().sum() * 0.0
        elif self.info.head == "cosine":
            loss = _CosineMarginCE.apply(embeddings.float(), self.weight.float(), labels, self.s,
                                         *self.effective_margins(), self.easy_margin)
        else:
            loss = F.cross_entropy(self.logits(embeddings, labels), labels)
        for reg in self.info.regularisers:
            loss = loss + getattr(self, f"_{reg}")(embeddings, labels)
        return loss

    # --- regularisers -----------------------------------------------------------------------

    def _intra(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """L5 term: (1/(πN)) Σ_i θ_yi."""
        return _theta(self.cosine(embeddings).gather(1, labels[:, None])).mean() / math.pi

    def _inter(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """L6 term: −(1/(πN(n−1))) Σ_i Σ_{j≠y_i} arccos(W_yi·W_j)."""
        w = F.normalize(self.weight.float(), dim=1)
        angles = _theta(w @ w.t())
        off = ~torch.eye(self.num_classes, dtype=torch.bool, device=angles.device)
        mean_other = (angles * off).sum(dim=1) / (self.num_classes - 1)
        return -mean_other[labels].mean() / math.pi

    def _triplet(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Angular batch-hard triplet: mean over anchors of max(0, θ_ap(hardest) + margin − θ_an(hardest))."""
        x = F.normalize(embeddings.float(), dim=1)
        angles = _theta(x @ x.t())
        same = labels[:, None] == labels[None, :]
        eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
        pos = torch.where(same & ~eye, angles, torch.zeros_like(angles)).amax(dim=1)
        neg = torch.where(~same, angles, torch.full_like(angles, 4.0)).amin(dim=1)
        valid = (same & ~eye).any(dim=1) & (~same).any(dim=1)
        if not bool(valid.any()):
            return x.sum() * 0.0
        return F.relu(pos + self.margin - neg)[valid].mean()

    @torch.no_grad()
    def _update_centroids(self, embeddings: torch.Tensor, labels: torch.Tensor, momentum: float = 0.9) -> None:
        """Triplet has no classifier: keep a running mean direction per class for accuracy and plots."""
        if not self.training:
            return
        x = F.normalize(embeddings.detach().float(), dim=1)
        old = self.weight.float()
        sums = torch.zeros_like(old).index_add_(0, labels, x)
        present = torch.bincount(labels, minlength=self.num_classes) > 0
        fresh = old.norm(dim=1) == 0
        new = torch.where(fresh[:, None], sums, momentum * old + (1 - momentum) * F.normalize(sums, dim=1))
        self.weight[present] = F.normalize(new[present], dim=1).to(self.weight.dtype)


def make_loss(name: str, num_classes: int, embedding_dim: int, **params: Any) -> MarginLoss:
    """Build any loss of :data:`LOSSES`; unspecified parameters take the paper's defaults."""
    return MarginLoss(name, num_classes, embedding_dim, **params)


def loss_defaults(name: str, low_dim: bool = False) -> dict[str, Any]:
    """The paper's defaults, or the ones that train in 2-D/3-D (smaller s and margins)."""
    return LOSSES[name].defaults(low_dim)


def loss_margins(name: str, values: dict[str, Any]) -> tuple[float, float, float]:
    """(m1, m2, m3) of a cosine-family loss from a dict of settings; margins the loss does not use are neutral."""
    used = LOSSES[name].params
    return tuple(float(values[k]) if k in used else d for k, d in (("m1", 1.0), ("m2", 0.0), ("m3", 0.0)))
