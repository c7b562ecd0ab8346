"""The margin-based softmax family: every loss's parameters, margin function and registry entry.

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

Adding a loss (the machinery is :mod:`arcface_viz.margin`)
----------------------------------------------------------
1. Write its margin function ``def my_margin(b: MarginInput) -> MarginOut``: from ``b.cos_y`` or
   ``b.theta_y`` (…, B, 1) and the parameters ``b.p`` return the target logit f before the scale, and, when
   ``b.analytic``, its derivative ``slope`` = ∂f/∂cos θ_y (chain rule: ``f'(θ)·b.dtheta_y``).  A loss with
   running state reads ``b.state[name]`` and calls ``b.update(name, value)`` (it writes in training mode
   only), with batch statistics from ``b.mean(v)``; sums over the classes go through ``b.reduce`` (Partial FC
   sums them across ranks; see :class:`~arcface_viz.margin.MarginInput`).
   Norm-aware losses read ``b.norms`` (and return ``norm_slope``); ``others`` changes the non-target cosines;
   ``extra`` adds a loss term; ``scale`` replaces s; ``b.keep(name, value)`` shows a per-batch value on the
   loss (ElasticFace's ``last_margins``).  Draw random numbers from torch's default generator.
   Write it elementwise with broadcasting so that cosines (G, B, C) and parameters (G, 1, 1) work.
2. Declare any new parameter once with :func:`declare_param` (``LossParam``: type, range, help text; ``base``
   and ``ramp`` for the warm-up): it becomes an attribute of every loss, a slider, a URL key and a CLI flag.
3. Register it: ``register_loss("name", margin=my_margin, params=(...), paper={...}, low_dim={...},
   label=..., summary=..., state={...}, norms=..., subcentres=...)``; ``fused=False`` if the function returns no
   derivatives (it then trains with autograd).  The general modifiers come free (``modifiers=`` narrows
   them): ``detach_margin`` gives the margined values with the gradient of s·cos θ, and
   ``interclass_filtering_threshold`` τ zeroes the non-target cosines above τ, in every path.

The lessons, the CLI, ``make_loss`` and Partial FC then have it; tests/test_losses.py checks every registered
loss's fused path against autograd, and tests/test_margin_api.py shows a test-only loss end to end.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .margin import (
    EPS,
    LOSS_PARAMS,
    LOSSES,
    LossInfo,
    LossParam,
    Margin,
    MarginInput,
    MarginOut,
    autocast_on,
    cosines,
    declare_param,
    margin_cross_entropy,
    no_autocast,
    register_loss,
    theta,
)

__all__ = [
    "LOSSES", "LOSS_PARAMS", "PARAM_NAMES", "LossInfo", "LossParam", "Margin", "MarginInput", "MarginOut",
    "MarginLoss", "SubcentreMarginLoss", "a_softmax_lambda", "a_softmax_margin", "a_softmax_psi",
    "a_softmax_target", "combined_margin", "declare_param", "extension_offset", "extension_threshold",
    "loss_defaults", "loss_margins", "make_loss", "make_margin", "margin_cross_entropy", "register_loss",
    "target_logit", "target_logit_slope", "triplet_term"
]

_EPS = EPS

# ---------------------------------------------------------------------------------------------
# Parameters: declared once; params.LOSS_SPEC turns them into controls.  Defaults are the lessons' values.

for _param in (
    LossParam("s", "float", 16.0, "scale s", "Feature scale after L2 normalisation: logits are s·cos θ.",
              min=1.0, max=64.0, step=0.5, format="%.1f", base=64.0),
    LossParam("m1", "float", 1.0, "m1 (multiplicative angle)", "SphereFace margin: cos(m1·θ). 1 = none.",
              min=0.8, max=2.0, step=0.05, format="%.2f", base=1.0, ramp=True),
    LossParam("m2", "float", 0.2, "m2 (additive angle, rad)", "ArcFace margin: cos(θ + m2). 0 = none.",
              min=0.0, max=1.0, step=0.01, format="%.2f", base=0.0, ramp=True),
    LossParam("m3", "float", 0.0, "m3 (additive cosine)", "CosFace margin: cos θ − m3. 0 = none.",
              min=0.0, max=0.6, step=0.01, format="%.2f", base=0.0, ramp=True),
    LossParam("m", "int", 4, "m (A-Softmax)", "Integer angular multiplier of the original SphereFace ψ(θ).",
              min=1, max=6, step=1, base=4),
    LossParam("lam", "float", 5.0, "λ (A-Softmax)", "Blend (λ cos θ + ψ(θ))/(1+λ); the floor of the annealing.",
              min=0.0, max=100.0, step=0.5, format="%.1f", base=5.0),
    LossParam("margin", "float", 0.2, "triplet margin (rad)", "Angular triplet margin m: θ_ap + m ≤ θ_an.",
              min=0.0, max=1.0, step=0.01, format="%.2f", base=0.35),
    LossParam("easy_margin", "bool", False, "easy margin", "Apply the margin only where cos θ > 0.", base=False),
):
    declare_param(_param)

# General modifiers of the margin runner (arcface_viz.margin.Margin): every loss with a margin function gets them.
declare_param(LossParam(
    "detach_margin", "bool", False, "margin without gradient",
    "Keep the margined logit's value but give it the gradient of s·cos θ (insightface's arcface_torch since "
    "Dec 2022): the margin moves the loss, not the gradient's direction.", base=False, modifier=True))
declare_param(LossParam(
    "interclass_filtering_threshold", "float", 0.0, "inter-class filter τ (0 = off)",
    "Set every non-target cosine above τ to 0, without gradient (arcface_torch's configs for noisy data use "
    "0.4): a sample very close to another class's centre is likely mislabelled.", min=0.0, max=1.0, step=0.05,
    format="%.2f", base=0.0, modifier=True))

PARAM_NAMES = LOSS_PARAMS.keys()  # a live view: parameters declared later appear in it too


# ---------------------------------------------------------------------------------------------
# Target-logit curves (numpy or torch, elementwise)


def _xp(x):
    return torch if torch.is_tensor(x) else np


def extension_threshold(m1: Any, m2: Any) -> Any:
    """θ* = (π − m2)/m1: the angle where m1·θ + m2 reaches π and cos(m1·θ + m2) turns back."""
    return (math.pi - m2) / m1


def extension_offset(m1: Any, m2: Any) -> Any:
    """c in the monotonic extension cos θ − m3 − c (c = m·sin m for ArcFace, as in insightface).

    Numbers give a number; tensors (one value per model of a batched step) give a tensor."""
    if torch.is_tensor(m1) or torch.is_tensor(m2):
        m1, m2 = torch.as_tensor(m1), torch.as_tensor(m2)
        return torch.maximum(m2 * torch.sin(m2), 1.0 + torch.cos(extension_threshold(m1, m2)))
    return max(m2 * math.sin(m2), 1.0 + math.cos(extension_threshold(m1, m2)))


def _past_pi(t_star: Any) -> bool:
    """True when θ* ≥ π for certain (a number), so that no θ in [0, π] needs the extension."""
    return not torch.is_tensor(t_star) and t_star >= math.pi


def target_logit(theta, m1: Any = 1.0, m2: Any = 0.0, m3: Any = 0.0, *, monotonic: bool = False,
                 easy_margin: bool = False):
    """Fig. 4(b): the target logit cos(m1·θ + m2) − m3 (before the scale s), elementwise.

    ``monotonic=True`` gives the curve the loss actually trains with: past θ* = (π − m2)/m1 it follows
    cos θ − m3 − c (see the module docstring).  ``easy_margin=True`` applies the margin only where
    cos θ > 0 and leaves cos θ elsewhere.  Works on numpy arrays and on torch tensors; with torch, the margins
may be tensors broadcastable to θ (one per model of a batched step).
    """
    xp = _xp(theta)
    raw = xp.cos(m1 * theta + m2) - m3
    if easy_margin:
        return xp.where(xp.cos(theta) > 0, raw, xp.cos(theta))
    if not monotonic:
        return raw
    t_star = extension_threshold(m1, m2)
    if _past_pi(t_star):
        return raw
    return xp.where(theta <= t_star, raw, xp.cos(theta) - m3 - extension_offset(m1, m2))


def target_logit_slope(theta, m1: Any = 1.0, m2: Any = 0.0, m3: Any = 0.0, *, monotonic: bool = True,
                       easy_margin: bool = False):
    """df/dθ of :func:`target_logit` (piecewise, numpy or torch)."""
    xp = _xp(theta)
    raw = -m1 * xp.sin(m1 * theta + m2)
    if easy_margin:
        return xp.where(xp.cos(theta) > 0, raw, -xp.sin(theta))
    t_star = extension_threshold(m1, m2)
    if not monotonic or _past_pi(t_star):
        return raw
    return xp.where(theta <= t_star, raw, -xp.sin(theta))


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


# ---------------------------------------------------------------------------------------------
# Margin functions (the contract is arcface_viz.margin.MarginInput / MarginOut)


def _equals(value: Any, const: float) -> bool:
    return value == const if isinstance(value, float) else bool((torch.as_tensor(value) == const).all())


def combined_margin(b: MarginInput) -> MarginOut:
    """Paper eq. L4: f(θ_y) = cos(m1·θ_y + m2) − m3, the training extension past θ* (or the easy margin).

    Norm-Softmax, SphereFace, CosFace and ArcFace are its special cases; with m1 = 1 and m2 = 0 (Norm-Softmax,
    CosFace) f = cos θ_y − m3 needs no arccos and has slope 1.
    """
    p = b.p
    m1, m2, m3, easy = p.m1, p.m2, p.m3, p.easy_margin
    if not easy and _equals(m1, 1.0) and _equals(m2, 0.0):
        return MarginOut(b.cos_y - m3)
    th = b.theta_y
    target = target_logit(th, m1, m2, m3, monotonic=True, easy_margin=easy)
    slope = target_logit_slope(th, m1, m2, m3, easy_margin=easy) * b.dtheta_y if b.analytic else None
    return MarginOut(target, slope)


def a_softmax_margin(b: MarginInput) -> MarginOut:
    """Original SphereFace: logits ‖x‖·cos θ_j, target ‖x‖·(λ cos θ_y + ψ(θ_y))/(1 + λ) (the norm is kept)."""
    lam = b.p.lam
    return MarginOut((lam * b.cos_y + a_softmax_psi(b.theta_y, b.p.m)) / (1.0 + lam), scale=b.norms)


# ---------------------------------------------------------------------------------------------
# The registry: heads first, then the regularised combinations

_COSINE = dict(head="cosine", margin=combined_margin)
register_loss("softmax", head="linear", label="Softmax",
              summary="Linear layer with bias, W_y·x + b_y; no normalisation, no margin (L1).")
register_loss("norm_softmax", **_COSINE, params=("s",), paper={"s": 64.0}, low_dim={"s": 16.0}, label="Norm-Softmax",
              summary="‖W_j‖ = 1, ‖x‖ = s, no bias: logits s·cos θ_j (L2).",
              modifiers=("interclass_filtering_threshold",))  # no margin to detach
register_loss("sphereface", **_COSINE, params=("s", "m1"), paper={"s": 64.0, "m1": 1.35},
              low_dim={"s": 16.0, "m1": 1.2}, label="SphereFace",
              summary="Multiplicative angular margin s·cos(m1·θ_y), the paper's arccos form.")
register_loss("a_softmax", head="a_softmax", margin=a_softmax_margin, norms="grad", fused=False, params=("m", "lam"),
              paper={"m": 4, "lam": 5.0}, low_dim={"m": 2, "lam": 5.0}, label="A-Softmax",
              summary="Original SphereFace: ‖x‖·(λ cos θ_y + ψ(θ_y))/(1+λ), integer m, feature norm kept.")
register_loss("cosface", **_COSINE, params=("s", "m3"), paper={"s": 64.0, "m3": 0.35}, low_dim={"s": 16.0, "m3": 0.15},
              label="CosFace", summary="Additive cosine margin s·(cos θ_y − m3).")
register_loss("arcface", **_COSINE, params=("s", "m2", "easy_margin"),
              paper={"s": 64.0, "m2": 0.5, "easy_margin": False},
              low_dim={"s": 16.0, "m2": 0.2, "easy_margin": False}, label="ArcFace",
              summary="Additive angular margin s·cos(θ_y + m2) (L3).")
register_loss("combined", **_COSINE, params=("s", "m1", "m2", "m3", "easy_margin"),
              paper={"s": 64.0, "m1": 1.0, "m2": 0.3, "m3": 0.2, "easy_margin": False},
              low_dim={"s": 16.0, "m1": 1.0, "m2": 0.1, "m3": 0.05, "easy_margin": False}, label="Combined",
              summary="Combined margin s·(cos(m1·θ_y + m2) − m3) (L4).",
              presets={"CM1": {"m1": 1.0, "m2": 0.3, "m3": 0.2}, "CM2": {"m1": 0.9, "m2": 0.4, "m3": 0.15}})

_REG_LABEL = {"intra": "Intra", "inter": "Inter", "triplet": "Triplet"}
_REG_SUMMARY = {
    "intra": "+ (1/πN) Σ θ_yi pulls samples to their centre (L5)",
    "inter": "− mean angle between W_yi and the other centres / π pushes centres apart (L6)",
    "triplet": "+ angular triplet: arccos(x_p·x_a) + m ≤ arccos(x_n·x_a), batch-hard, on normalised features",
}


def _register_regularised(base: str | None, regs: tuple[str, ...], label: str | None = None,
                          name: str | None = None) -> None:
    """Register ``base`` plus regularisers, named ``base+reg+…`` unless ``name`` is given; base None: pure triplet."""
    info = LOSSES[base] if base else LossInfo(name="", label="", head="centroid", regularisers=(), params=(),
                                              paper={}, low_dim={}, summary="")
    params, paper, low_dim = info.params, dict(info.paper), dict(info.low_dim)
    if "triplet" in regs:
        params += ("margin",)
        paper["margin"], low_dim["margin"] = 0.35, 0.2
    name = name or "+".join((base, *regs))
    summary = "; ".join([info.summary] * bool(info.summary) + [_REG_SUMMARY[r] for r in regs])
    register_loss(name, label=label or " + ".join([info.label] * bool(info.label) + [_REG_LABEL[r] for r in regs]),
                  summary=summary, head=info.head, margin=info.margin, params=params, paper=paper, low_dim=low_dim,
                  regularisers=regs, presets=info.presets, state=info.state, norms=info.norms, fused=info.fused,
                  subcentres=info.subcentres, modifiers=())  # the base's modifiers are in its params


# The paper's own names: Intra-Loss (L5) and Inter-Loss (L6) are Norm-Softmax plus the term.
_register_regularised("norm_softmax", ("intra",), "Intra-Loss (NS + Intra)", "intra")
_register_regularised("norm_softmax", ("inter",), "Inter-Loss (NS + Inter)", "inter")
_register_regularised(None, ("triplet",), "Triplet (angular)", "triplet")
for _base in ("arcface", "norm_softmax"):
    for _regs in (("intra",), ("inter",), ("intra", "inter")):
        _register_regularised(_base, _regs)
_register_regularised("arcface", ("triplet",))


# ---------------------------------------------------------------------------------------------
# Regularisers


def triplet_term(embeddings: torch.Tensor, labels: torch.Tensor, margin: float) -> torch.Tensor:
    """Angular batch-hard triplet: mean over anchors of max(0, θ_ap(hardest) + margin − θ_an(hardest))."""
    if autocast_on(embeddings):
        with no_autocast(embeddings):
            return triplet_term(embeddings, labels, margin)
    x = F.normalize(embeddings.float(), dim=1)
    angles = theta(x @ x.t())
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    pos = torch.where(same & ~eye, angles, torch.zeros_like(angles)).amax(dim=1)
    neg = torch.where(~same, angles, torch.full_like(angles, 4.0)).amin(dim=1)
    valid = (same & ~eye).any(dim=1) & (~same).any(dim=1)
    if not bool(valid.any()):
        return x.sum() * 0.0
    return F.relu(pos + margin - neg)[valid].mean()


# ---------------------------------------------------------------------------------------------
# The module


class MarginLoss(Margin):
    """One module for the whole registry: a :class:`~arcface_viz.margin.Margin` with class centres.

    ``forward`` is the mean cross entropy of the margin logits plus the regularisers; cosine heads train with
    the fused node of :func:`~arcface_viz.margin.margin_cross_entropy`.  Every parameter (``s, m1, m2, m3, m,
    lam, margin, easy_margin`` and any declared later) is a plain attribute that a trainer may change between
    steps; ``margin_scale`` in [0, 1] ramps the margins from zero (warm-up).  The centres are ``weight``
    (C, d); a loss with sub-centres is a :class:`SubcentreMarginLoss` (build either with :func:`make_loss`).
    """

    def __init__(self, name: str, num_classes: int, embedding_dim: int, **params: Any) -> None:
        if name not in LOSSES:
            raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")
        if num_classes < 2:
            raise ValueError("a margin loss needs at least 2 classes")
        super().__init__(LOSSES[name], num_classes=num_classes, **params)
        self.num_classes, self.embedding_dim = num_classes, embedding_dim
        head = self.info.head
        if head == "linear":
            layer = nn.Linear(embedding_dim, num_classes)
            self.weight, self.bias = layer.weight, layer.bias
        elif head == "centroid":
            self.register_buffer("weight", torch.zeros(num_classes, embedding_dim))
            self.bias = None
        else:
            if self.info.subcentres:  # see SubcentreMarginLoss
                self.subcentres = nn.Parameter(torch.empty(num_classes, self.centres, embedding_dim).normal_(0.0, 0.01))
            else:
                self.weight = nn.Parameter(torch.empty(num_classes, embedding_dim).normal_(0.0, 0.01))
            self.bias = None

    # --- pieces ---------------------------------------------------------------------------

    def centre_matrix(self) -> torch.Tensor:
        """The class centres as rows, (C·K, d): ``weight``, or the sub-centres class by class."""
        return self.subcentres.flatten(0, 1) if self.info.subcentres else self.weight

    def cosine(self, embeddings: torch.Tensor) -> torch.Tensor:
        """cos θ_j between each embedding and each class centre (max over sub-centres), float32, shape (B, n)."""
        return cosines(embeddings, self.centre_matrix(), self.centres)

    def logits(self, embeddings: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """The logits that feed the cross entropy, with the margin on the target class when labels are given.

        Reads the margin's state but never updates it (only a training ``forward`` does)."""
        if autocast_on(embeddings):  # float32: see arcface_viz.margin.autocast_on
            with no_autocast(embeddings):
                return self.logits(embeddings, labels)
        head = self.info.head
        if head == "linear":
            return F.linear(embeddings.float(), self.weight.float(), self.bias.float())
        cos = self.cosine(embeddings)
        if labels is None or head == "centroid":
            scale = embeddings.float().norm(dim=-1, keepdim=True) if head == "a_softmax" else self.s
            return scale * cos
        return self.margin_logits(cos, labels.long(), norms=self.feature_norms(embeddings))[0]

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean loss over the batch: cross entropy of :meth:`logits` plus the regularisers (float32, also under
        autocast)."""
        if autocast_on(embeddings):  # float32: see arcface_viz.margin.autocast_on
            with no_autocast(embeddings):
                return self.forward(embeddings.float(), labels)
        labels = labels.long()
        head = self.info.head
        if head == "centroid":
            self._update_centroids(embeddings, labels)
            loss = embeddings.float().sum() * 0.0
        elif head == "linear":
            loss = F.cross_entropy(self.logits(embeddings, labels), labels)
        else:
            loss = margin_cross_entropy(self, embeddings.float(), self.centre_matrix().float(), labels)
        for reg in self.info.regularisers:
            loss = loss + getattr(self, f"_{reg}")(embeddings, labels)
        return loss

    # --- regularisers -----------------------------------------------------------------------

    def _intra(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """L5 term: (1/(πN)) Σ_i θ_yi."""
        return theta(self.cosine(embeddings).gather(1, labels[:, None])).mean() / math.pi

    def _inter(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """L6 term: −(1/(πN(n−1))) Σ_i Σ_{j≠y_i} arccos(W_yi·W_j)."""
        w = F.normalize(self.weight.float(), dim=1)
        angles = theta(w @ w.t())
        off = ~torch.eye(self.num_classes, dtype=torch.bool, device=angles.device)
        mean_other = (angles * off).sum(dim=1) / (self.num_classes - 1)
        return -mean_other[labels].mean() / math.pi

    def _triplet(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The angular batch-hard triplet term with this loss's ``margin``: :func:`triplet_term`."""
        return triplet_term(embeddings, labels, self.margin)

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


class SubcentreMarginLoss(MarginLoss):
    """A loss with K sub-centres per class: ``subcentres`` (C, K, d) is learnt, cos θ_j = max_k cos(x, W_jk).

    ``weight`` (C, d) is each class's dominant sub-centre, the one that was nearest to the most of the class's
    training samples (``subcentre_hits`` (C, K) counts them, in training mode), so the lessons draw, score and
    plot it like any loss's centres.
    """

    def __init__(self, name: str, num_classes: int, embedding_dim: int, **params: Any) -> None:
        super().__init__(name, num_classes, embedding_dim, **params)
        self.register_buffer("subcentre_hits", torch.zeros(num_classes, self.centres))

    @property
    def weight(self) -> torch.Tensor:
        rows = torch.arange(self.num_classes, device=self.subcentres.device)
        return self.subcentres[rows, self.subcentre_hits.argmax(dim=1)]

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.training:
            self._count_hits(embeddings, labels.long())
        return super().forward(embeddings, labels)

    @torch.no_grad()
    def _count_hits(self, embeddings: torch.Tensor, labels: torch.Tensor) -> None:
        x = F.normalize(embeddings.float(), dim=-1)
        own = F.normalize(self.subcentres[labels].float(), dim=-1)  # (B, K, d)
        nearest = (own @ x.unsqueeze(-1)).squeeze(-1).argmax(dim=-1)
        self.subcentre_hits.index_put_((labels, nearest), torch.ones_like(nearest, dtype=torch.float32),
                                       accumulate=True)


def make_loss(name: str, num_classes: int, embedding_dim: int, **params: Any) -> MarginLoss:
    """Build any loss of :data:`LOSSES`; unspecified parameters take the paper's defaults."""
    cls = SubcentreMarginLoss if name in LOSSES and LOSSES[name].subcentres else MarginLoss
    return cls(name, num_classes, embedding_dim, **params)


def make_margin(name: str, *, num_classes: int | None = None, batch_shape: tuple[int, ...] = (),
                **params: Any) -> Margin:
    """The margin of loss ``name`` without class centres (for Partial FC, or G models trained as one batch).

    ``num_classes`` is needed by a loss whose state starts from it (AdaCos); ``batch_shape=(G,)`` gives the
    state one value per model; parameters may be tensors of shape (G, 1, 1)."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")
    return Margin(LOSSES[name], num_classes=num_classes, batch_shape=batch_shape, **params)


def loss_defaults(name: str, low_dim: bool = False) -> dict[str, Any]:
    """The paper's defaults, or the ones that train in 2-D/3-D (smaller s and margins)."""
    return LOSSES[name].defaults(low_dim)


def loss_margins(name: str, values: dict[str, Any]) -> tuple[float, float, float]:
    """(m1, m2, m3) of a cosine-family loss from a dict of settings; margins the loss does not use are neutral."""
    used = LOSSES[name].params
    return tuple(float(values[k]) if k in used else d for k, d in (("m1", 1.0), ("m2", 0.0), ("m3", 0.0)))
