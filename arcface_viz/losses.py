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
from dataclasses import dataclass
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
    "MarginLoss", "SubcentreMarginLoss", "SubcentreCleaning", "AFTER_ARCFACE", "clean_subcentres", "adacos_margin",
    "adaface_margin", "curricularface_margin", "elastic_margins", "elasticface_arc_margin",
    "elasticface_cos_margin", "magface_margin", "a_softmax_lambda", "a_softmax_margin", "a_softmax_psi",
    "a_softmax_target", "combined_margin", "combined_margins", "curricular_negative", "declare_param",
    "extension_offset", "extension_threshold", "loss_defaults", "loss_margins", "loss_target_curve", "make_loss",
    "pair_logits", "make_margin", "margin_cross_entropy", "register_loss", "target_logit", "target_logit_slope",
    "triplet_term"
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
                  subcentres=info.subcentres, check=info.check, modifiers=())  # the base's modifiers: in its params


# The paper's own names: Intra-Loss (L5) and Inter-Loss (L6) are Norm-Softmax plus the term.
_register_regularised("norm_softmax", ("intra",), "Intra-Loss (NS + Intra)", "intra")
_register_regularised("norm_softmax", ("inter",), "Inter-Loss (NS + Inter)", "inter")
_register_regularised(None, ("triplet",), "Triplet (angular)", "triplet")
for _base in ("arcface", "norm_softmax"):
    for _regs in (("intra",), ("inter",), ("intra", "inter")):
        _register_regularised(_base, _regs)
_register_regularised("arcface", ("triplet",))


# ---------------------------------------------------------------------------------------------
# After ArcFace: the margin family people train with today (issue 14).  Each loss is a margin function and a
# registry entry; the docstrings say what the official code does and where this implementation differs.

for _param in (
    LossParam("k", "int", 3, "K sub-centres", "Sub-center ArcFace: centres per class; cos θ_j is the nearest one.",
              min=1, max=5, step=1, base=1, structural=True),
    LossParam("l_a", "float", 0.5, "l_a (lowest norm)", "MagFace: feature norms are clamped to [l_a, u_a].",
              min=0.5, max=100.0, step=0.5, format="%.1f", base=10.0),
    LossParam("u_a", "float", 5.0, "u_a (highest norm)", "MagFace: feature norms are clamped to [l_a, u_a].",
              min=1.0, max=200.0, step=0.5, format="%.1f", base=110.0),
    LossParam("l_m", "float", 0.1, "l_m (margin at l_a)", "MagFace: the angular margin at the lowest norm l_a.",
              min=0.0, max=1.0, step=0.01, format="%.2f", base=0.45),
    LossParam("u_m", "float", 0.3, "u_m (margin at u_a)", "MagFace: the angular margin at the highest norm u_a.",
              min=0.0, max=1.0, step=0.01, format="%.2f", base=0.8),
    LossParam("lambda_g", "float", 1.0, "λ_g (norm regulariser)",
              "MagFace: weight of g(a) = a/u_a² + 1/a, which rewards large norms.",
              min=0.0, max=100.0, step=0.5, format="%.1f", base=35.0),
    LossParam("h", "float", 0.333, "h (norm influence)", "AdaFace: how far the normalised feature norm moves "
              "the margin; 0 makes AdaFace CosFace.", min=0.0, max=1.0, step=0.01, format="%.3f", base=0.333),
    LossParam("t_alpha", "float", 0.01, "t_α (running-mean rate)", "AdaFace: rate of the running mean and std of "
              "the feature norms.", min=0.0, max=1.0, step=0.005, format="%.3f", base=0.01),
    LossParam("sigma", "float", 0.05, "σ (margin spread)", "ElasticFace: each sample's margin is drawn from "
              "N(m, σ²); 0 gives ArcFace or CosFace.", min=0.0, max=0.2, step=0.0025, format="%.4f", base=0.0,
              ramp=True),
    LossParam("plus", "bool", False, "ElasticFace+ (sorted margins)",
              "Give the larger margins to the samples closer to their centre.", base=False),
):
    declare_param(_param)

_ADA_EPS = 1e-3  # AdaFace's ε: the angle is kept in [ε, π − ε], the std gets + ε


def _maximum(a: Any, b: Any) -> Any:
    """max(a, b) for numbers, or elementwise for per-model tensors."""
    if torch.is_tensor(a) or torch.is_tensor(b):
        return torch.maximum(torch.as_tensor(a), torch.as_tensor(b))
    return max(a, b)


def _arc_curve(th: torch.Tensor, m: torch.Tensor, easy: bool, slope: bool, dm: bool
               ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """(target, ∂target/∂θ or None, ∂target/∂m or None) of ArcFace's target for a per-sample margin m:
    cos(θ + m), insightface's extension cos θ − c past π − m with c = :func:`extension_offset` (1, m) (or, with
    the easy margin, cos θ where cos θ ≤ 0).  ∂/∂m is −sin(θ + m), −(sin m + m·cos m) on the extension, 0 where
    the easy margin keeps cos θ.  :func:`target_logit`'s and :func:`target_logit_slope`'s formulas (m1 = 1,
    m3 = 0) with their sines and cosines shared: the same values in a third of the small operations."""
    angle = th + m
    cos_a, cos_t = torch.cos(angle), torch.cos(th)
    plain = cos_t > 0 if easy else th <= math.pi - m  # where the target is cos(θ + m)
    if easy:
        target = torch.where(plain, cos_a, cos_t)
    else:
        target = torch.where(plain, cos_a, cos_t - torch.maximum(m * torch.sin(m), 1.0 + torch.cos(math.pi - m)))
    sin_a = torch.sin(angle) if slope or dm else None
    d_theta = torch.where(plain, -sin_a, -torch.sin(th)) if slope else None
    d_m = None
    if dm:
        d_m = torch.where(plain, -sin_a, torch.zeros_like(th) if easy else -(torch.sin(m) + m * torch.cos(m)))
    return target, d_theta, d_m


def _arc(b: MarginInput, m: Any, easy: bool = False) -> MarginOut:
    """ArcFace's target cos(θ_y + m) with insightface's extension cos θ − m·sin m past π − m (or the easy
    margin), for a margin m that is a number or a per-sample tensor (…, B, 1); the slope when ``b.analytic``."""
    th = b.theta_y
    if torch.is_tensor(m):
        target, d_theta, _ = _arc_curve(th, m, easy, slope=b.analytic, dm=False)
        return MarginOut(target, d_theta * b.dtheta_y if b.analytic else None)
    target = target_logit(th, 1.0, m, 0.0, monotonic=True, easy_margin=easy)
    slope = target_logit_slope(th, 1.0, m, 0.0, easy_margin=easy) * b.dtheta_y if b.analytic else None
    return MarginOut(target, slope)


def adacos_margin(b: MarginInput) -> MarginOut:
    """AdaCos (Zhang et al. 2019): no margin; the scale adapts.  s starts at √2·ln(C − 1); on each training
    forward, before the loss,

        s ← ln(B_avg) / cos(min(π/4, θ_med)),   B_avg = mean_i Σ_{j≠y_i} e^{s_old·cos θ_ij},

    θ_med the batch median of θ_y (the lower median for an even batch, as torch.median).  There is no official
    code; the widely used 4uiiurz1/pytorch-adacos takes the median over *every* angle of the batch (all classes)
    and updates s in evaluation too: here θ_med is the median of the target angles (the paper's definition) and
    s moves in training mode only.  B_avg is a logsumexp per shard, summed across ranks in float64 after
    shifting by s_old (no overflow); s is kept ≥ 1, because at C = 2 the formula's fixed point is s = 0, where
    nothing trains.  In Partial FC the sum over the classes spans the ranks (as it would over one GPU's whole
    classifier); with sample_rate < 1 it runs over the sampled negatives only.
    """
    s_old = b.state["s"]
    if b.training:
        z = s_old * b.cos  # every logit at the old scale, the targets (of this shard's rows) left out of the sum
        z = z.scatter(-1, b.cols, torch.where(b.owned, float("-inf"), z.gather(-1, b.cols)))
        part = torch.logsumexp(z, dim=(-2, -1), keepdim=True)  # this shard's log Σ_i Σ_{j≠y_i} e^{s_old·cos θ_ij}
        rows = b.cos.shape[-2]
        total = b.reduce(torch.exp((part - s_old).double()))  # ≤ rows·classes: no overflow, summed over ranks
        log_b_avg = s_old + torch.log(total / rows)
        th_med = b.theta_y.median(dim=-2, keepdim=True).values.clamp(max=math.pi / 4)
        s_new = torch.nan_to_num(log_b_avg / torch.cos(th_med).double(), nan=1.0, neginf=1.0).clamp(min=1.0)
        b.update("s", s_new.float())
    return MarginOut(b.cos_y, 1.0, scale=b.state["s"])


def magface_margin(b: MarginInput) -> MarginOut:
    """MagFace (Meng et al. 2021): the margin grows with the feature norm a = ‖x‖ (not detached).

        a ← clamp(a, l_a, u_a),  m(a) = l_m + (u_m − l_m)(a − l_a)/(u_a − l_a),  target cos(θ_y + m(a)),
        loss = CE + λ_g·mean_i g(a_i),  g(a) = a/u_a² + 1/a.

    As the official MagLinear, ``easy_margin=True`` (the default) keeps cos θ where cos θ ≤ 0; without it the
    target follows insightface's extension cos θ − m·sin m past π − m.  The clamp passes no gradient outside
    [l_a, u_a] (as torch.clamp in the official code), so g(a) pushes only norms inside.  The paper's convexity
    condition is λ_g ≥ s·u_a²·l_a²·(u_m − l_m)/((u_a − l_a)(u_a² − l_a²)); the official trainer prints it.
    Building the loss requires 0 < l_a < u_a; a live change to u_a ≤ l_a holds the norm at l_a with the margin
    l_m (finite, but no norm signal).
    """
    p = b.p  # building the loss checks 0 < l_a < u_a; a trainer's later change is made safe here
    lo, hi = p.l_a, _maximum(p.u_a, p.l_a)
    raw = b.norms
    a = raw.clamp(lo, hi)
    inside = (raw >= lo) & (raw <= hi)  # where torch.clamp passes the gradient (ends included)
    k = (p.u_m - p.l_m) / _maximum(hi - lo, 1e-6)
    m = p.l_m + k * (a - lo)
    target, d_theta, d_m = _arc_curve(b.theta_y, m, bool(p.easy_margin), slope=b.analytic, dm=b.analytic)
    out = MarginOut(target, d_theta * b.dtheta_y if b.analytic else None)
    out.extra = (p.lambda_g * (a / hi ** 2 + 1.0 / a)).mean(dim=(-2, -1))  # (…): per model
    if b.analytic:
        out.norm_slope = d_m * (k * inside)
        out.extra_norm_slope = p.lambda_g * (1.0 / hi ** 2 - 1.0 / a ** 2) * inside / raw.shape[-2]
    return out


def adaface_margin(b: MarginInput) -> MarginOut:
    """AdaFace (Kim et al. 2022, official mk-minchul/AdaFace ``head.py``): the margin follows the feature norm,
    detached and clipped to [0.001, 100].  In training mode the running mean μ (starts 20) and std σ (starts
    100, the batch's unbiased std) are updated first: μ ← t_α·mean + (1 − t_α)·μ, likewise σ; then

        ẑ = clip(h·(a − μ)/(σ + ε), −1, 1),   target = cos(clip(θ_y − m·ẑ, ε, π − ε)) − (m + m·ẑ),   ε = 10⁻³.

    A batch of one sample has no std: σ then stays.  The official code also clamps every cosine to
    [−1 + ε, 1 − ε] before arccos; here only the target angle is clipped (other logits differ only where
    |cos θ_j| > 0.999).  In Partial FC μ and σ come from the whole gathered batch on every rank; the official
    code (a replicated head under DDP, which broadcasts buffers from rank 0 each step) uses rank 0's own batch.
    """
    p = b.p
    a = b.norms.clamp(0.001, 100.0)
    if b.training:
        alpha = p.t_alpha
        mean = b.mean(a)
        b.update("batch_mean", alpha * mean + (1.0 - alpha) * b.state["batch_mean"])
        n = a.shape[-2]
        if n > 1:
            std = (((a - mean) ** 2).sum(dim=-2, keepdim=True) / (n - 1)).sqrt()
            b.update("batch_std", alpha * std + (1.0 - alpha) * b.state["batch_std"])
    z = (p.h * (a - b.state["batch_mean"]) / (b.state["batch_std"] + _ADA_EPS)).clamp(-1.0, 1.0)
    m = p.m2
    shifted = b.theta_y - m * z
    angle = shifted.clamp(_ADA_EPS, math.pi - _ADA_EPS)
    out = MarginOut(torch.cos(angle) - (m + m * z))
    if b.analytic:
        out.slope = -torch.sin(angle) * b.dtheta_y * (angle == shifted)
    return out


def curricular_negative(cos: Any, t: Any) -> Any:
    """CurricularFace's logit of a hard negative, cos θ_j·(t + cos θ_j) (numpy or torch)."""
    return cos * (t + cos)


def curricularface_margin(b: MarginInput) -> MarginOut:
    """CurricularFace (Huang et al. 2020, official HuangYG123/CurricularFace ``head/metrics.py``).

    Target cos(θ_y + m) with the fallback cos θ − m·sin m past π − m.  The running t ← 0.01·mean(cos θ_y) +
    0.99·t (starting at 0) is updated *before* use, as in the official code, and every negative harder than the
    target, cos θ_j > cos(θ_y + m) (the formula without the fallback, as the official mask), becomes
    cos θ_j·(t + cos θ_j): early in training (t ≈ 0) hard negatives count less, later (t → 1) more.  The official
    code updates t in evaluation too; here only in training mode.  In Partial FC t is the mean over the whole
    gathered batch on every rank; the official head is replicated under DDP (t broadcast from rank 0, updated
    with each rank's own batch).
    """
    b.update("t", 0.01 * b.mean(b.cos_y) + 0.99 * b.state["t"])
    t = b.state["t"]
    m = b.p.m2
    out = _arc(b, m)
    cos = b.cos
    hard = cos > torch.cos(b.theta_y + m)
    shifted = cos + t
    out.others = torch.where(hard, cos * shifted, cos)  # curricular_negative, with t + cos kept for the slope
    if b.analytic:
        out.others_slope = torch.where(hard, shifted.add_(cos), 1.0)  # t + 2·cos θ_j
    return out


def elastic_margins(b: MarginInput, mean: Any) -> Any:
    """ElasticFace's per-sample margins m_i ~ N(mean, σ²) from torch's default generator (a seed fixes them).

    ``plus`` (ElasticFace+): the drawn margins are sorted and the k-th largest goes to the sample with the k-th
    largest cos θ_y, so samples closer to their centre get the larger margins, monotonically.  The official code
    (fdbtrs/ElasticFace ``utils/losses.py``) sorts the margins ascending and the cosines descending and then
    indexes ``margin[order]`` row by row: that applies the sorting permutation instead of its inverse, so its
    margins are *not* monotone in cos θ_y (tests/test_losses_after_arcface.py shows a batch where they are not).
    With σ = 0 (a number) nothing is drawn and the margin is ``mean``.  The margins are kept as ``last_margins``.
    """
    sigma = b.p.sigma
    if not torch.is_tensor(sigma) and sigma == 0:
        b.keep("last_margins", torch.full_like(b.cos_y, float(mean)) if not torch.is_tensor(mean) else
               mean.expand_as(b.cos_y))
        return mean
    m = mean + sigma * torch.randn(b.cos_y.shape, device=b.cos_y.device)
    if b.p.plus:
        ranks = b.cos_y.argsort(dim=-2).argsort(dim=-2)
        m = m.sort(dim=-2).values.gather(-2, ranks)
    b.keep("last_margins", m)
    return m


def elasticface_arc_margin(b: MarginInput) -> MarginOut:
    """ElasticFace-Arc: cos(θ_y + m_i), m_i ~ N(m2, σ²) per sample (:func:`elastic_margins`).  The official code
    has no extension past π − m_i (its cos(θ + m_i) turns back up); here insightface's cos θ − m_i·sin m_i, so
    that σ = 0 is exactly this repository's ArcFace."""
    return _arc(b, elastic_margins(b, b.p.m2))


def elasticface_cos_margin(b: MarginInput) -> MarginOut:
    """ElasticFace-Cos: cos θ_y − m_i, m_i ~ N(m3, σ²) per sample (:func:`elastic_margins`); σ = 0 is CosFace."""
    return MarginOut(b.cos_y - elastic_margins(b, b.p.m3), 1.0)


def _holds(condition: Any) -> bool:
    return bool(torch.as_tensor(condition).all())


def _magface_check(p: Any) -> str | None:
    if not _holds(p.l_a > 0):
        return f"l_a must be > 0 (g(a) has 1/a), got {p.l_a}"
    return None if _holds(p.u_a > p.l_a) else f"u_a must be above l_a, got l_a = {p.l_a}, u_a = {p.u_a}"


def _adaface_check(p: Any) -> str | None:
    if not _holds((p.t_alpha >= 0) & (p.t_alpha <= 1) if torch.is_tensor(p.t_alpha) else 0 <= p.t_alpha <= 1):
        return f"t_alpha must be in [0, 1], got {p.t_alpha}"
    return None if _holds(p.h >= 0) else f"h must be ≥ 0, got {p.h}"


def _sigma_check(p: Any) -> str | None:
    return None if _holds(p.sigma >= 0) else f"sigma must be ≥ 0, got {p.sigma}"


_LOW = {"s": 16.0}
register_loss("subcenter_arcface", **_COSINE, params=("s", "m2", "k"), subcentres="k",
              paper={"s": 64.0, "m2": 0.5, "k": 3}, low_dim={**_LOW, "m2": 0.2, "k": 3},
              label="Sub-center ArcFace",
              summary="K centres per class, cos θ_j = max_k cos(x, W_jk), then ArcFace: noisy samples settle at "
                      "non-dominant sub-centres (Deng et al. 2020).",
              presets={"Sub-center ArcFace (K = 3)": {"m2": 0.5, "k": 3}})
register_loss("adacos", margin=adacos_margin, state={"s": lambda c: math.sqrt(2.0) * math.log(c - 1)},
              modifiers=("interclass_filtering_threshold",),  # no margin to detach
              label="AdaCos", summary="No margin; the scale s adapts to the batch: s ← ln(B_avg)/cos(min(π/4, "
                                      "θ_med)), from √2·ln(C − 1) (Zhang et al. 2019).",
              presets={"AdaCos": {}})
register_loss("magface", margin=magface_margin, norms="grad", check=_magface_check,
              params=("s", "l_a", "u_a", "l_m", "u_m", "lambda_g", "easy_margin"),
              paper={"s": 64.0, "l_a": 10.0, "u_a": 110.0, "l_m": 0.45, "u_m": 0.8, "lambda_g": 35.0,
                     "easy_margin": True},
              low_dim={**_LOW, "l_a": 0.5, "u_a": 5.0, "l_m": 0.1, "u_m": 0.3, "lambda_g": 1.0, "easy_margin": True},
              label="MagFace",
              summary="Margin m(a) grows with the feature norm a, plus λ_g·g(a) rewarding large norms: easy samples "
                      "get long features, hard ones short (Meng et al. 2021).",
              presets={"MagFace (MS1MV2)": {"l_a": 10.0, "u_a": 110.0, "l_m": 0.45, "u_m": 0.8, "lambda_g": 35.0}})
register_loss("adaface", margin=adaface_margin, norms="detached", check=_adaface_check,
              state={"batch_mean": 20.0, "batch_std": 100.0},
              params=("s", "m2", "h", "t_alpha"),
              paper={"s": 64.0, "m2": 0.4, "h": 0.333, "t_alpha": 0.01},
              low_dim={**_LOW, "m2": 0.2, "h": 0.333, "t_alpha": 0.01},
              label="AdaFace",
              summary="The feature norm (a proxy for image quality) moves the margin between angular and "
                      "additive: hard, low-norm samples are pushed less (Kim et al. 2022).",
              presets={"AdaFace (MS1MV2)": {"m2": 0.4, "h": 0.333, "t_alpha": 0.01}})
register_loss("curricularface", margin=curricularface_margin, state={"t": 0.0}, params=("s", "m2"),
              paper={"s": 64.0, "m2": 0.5}, low_dim={**_LOW, "m2": 0.2},
              label="CurricularFace",
              summary="ArcFace's target; hard negatives cos θ_j > cos(θ_y + m) become cos θ_j·(t + cos θ_j) with t "
                      "a running mean of cos θ_y: easy samples first, hard ones later (Huang et al. 2020).",
              presets={"CurricularFace": {"m2": 0.5}})
_ELASTIC = (("arc", elasticface_arc_margin, "m2", 0.5, 0.2, 0.0175, "ArcFace"),  # (kind, margin, its parameter, paper
             ("cos", elasticface_cos_margin, "m3", 0.35, 0.15, 0.02, "CosFace"))  # and lesson mean, σ of the + preset)
for _kind, _fn, _m, _mean, _low, _plus_sigma, _base in _ELASTIC:
    _label = f"ElasticFace-{_kind.title()}"
    register_loss(f"elasticface_{_kind}", margin=_fn, check=_sigma_check, params=("s", _m, "sigma", "plus"),
                  paper={"s": 64.0, _m: _mean, "sigma": 0.05, "plus": False},
                  low_dim={**_LOW, _m: _low, "sigma": 0.05, "plus": False}, label=_label,
                  summary=f"{_base} with each sample's margin drawn from N({_m}, σ²) (Boutros et al. 2022).",
                  presets={_label: {_m: _mean, "sigma": 0.05, "plus": False},
                           f"{_label}+": {_m: _mean, "sigma": _plus_sigma, "plus": True}})

#: the losses after ArcFace (issue 14), in the order the lessons list them
AFTER_ARCFACE = ("subcenter_arcface", "adacos", "magface", "adaface", "curricularface", "elasticface_arc",
                 "elasticface_cos")


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
        labels = labels.long()
        self.__dict__["last_nearest"] = None  # a plain attribute (nn.Module's __setattr__ is slow per step)
        loss = super().forward(embeddings, labels)
        if self.training:
            self._count_hits(embeddings, labels)
        return loss

    @torch.no_grad()
    def _count_hits(self, embeddings: torch.Tensor, labels: torch.Tensor) -> None:
        """Add one to each sample's nearest sub-centre of its class: the fused node's (``last_nearest``), else
        computed here (the autograd path)."""
        nearest = self.last_nearest
        if nearest is None or nearest.shape != labels.shape:
            own = F.normalize(self.subcentres.detach().float(), dim=-1)[labels]  # (B, K, d)
            nearest = (own @ embeddings.detach().float().unsqueeze(-1)).squeeze(-1).argmax(dim=-1)
        self.subcentre_hits.index_put_((labels, nearest), torch.ones_like(nearest, dtype=self.subcentre_hits.dtype),
                                       accumulate=True)


@dataclass(frozen=True)
class SubcentreCleaning:
    """The result of :func:`clean_subcentres` (tensors on the loss's device).

    dominant (C,) each class's dominant sub-centre; nearest (N,) the own-class sub-centre nearest to each sample;
    at_dominant (N,) the nearest one is the dominant one; angle_deg (N,) each sample's angle to its class's
    dominant sub-centre; keep (N,) angle ≤ the threshold; centres (C, d) the normalised dominant sub-centres
    (what is left after dropping the others).
    """

    dominant: torch.Tensor
    nearest: torch.Tensor
    at_dominant: torch.Tensor
    angle_deg: torch.Tensor
    keep: torch.Tensor
    centres: torch.Tensor


@torch.no_grad()
def clean_subcentres(loss: MarginLoss, embeddings: torch.Tensor, labels: torch.Tensor,
                     threshold_deg: float = 75.0) -> SubcentreCleaning:
    """Sub-center ArcFace's cleaning step (Deng et al. 2020, §3.2): after training, keep each class's dominant
    sub-centre (the one nearest to the most of its samples, counted on ``embeddings``) and drop the others, and
    drop the samples further than ``threshold_deg`` (75° in the paper) from their class's dominant sub-centre.
    Classes without a sample here take the sub-centre that training counted most (``subcentre_hits``)."""
    if not loss.info.subcentres:
        raise ValueError(f"{loss.name!r} has one centre per class: cleaning needs sub-centres")
    labels = labels.long()
    sub = F.normalize(loss.subcentres.detach().float(), dim=-1)  # (C, K, d)
    x = F.normalize(embeddings.detach().float().to(sub.device), dim=-1)
    cos_own = (sub[labels] @ x.unsqueeze(-1)).squeeze(-1)  # (N, K)
    nearest = cos_own.argmax(dim=-1)
    counts = torch.zeros_like(loss.subcentre_hits, dtype=torch.float32)
    counts.index_put_((labels, nearest), torch.ones_like(nearest, dtype=torch.float32), accumulate=True)
    seen = counts.sum(dim=1) > 0
    dominant = torch.where(seen, counts.argmax(dim=1), loss.subcentre_hits.float().argmax(dim=1))
    cos_dom = cos_own.gather(1, dominant[labels][:, None])[:, 0]
    angle = torch.rad2deg(theta(cos_dom))
    rows = torch.arange(len(dominant), device=sub.device)
    return SubcentreCleaning(dominant, nearest, nearest == dominant[labels], angle, angle <= threshold_deg,
                             sub[rows, dominant])


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


def _lesson_margin(name: str, params: dict[str, Any] | None, state: dict[str, float] | None) -> Margin:
    """A loss's margin in evaluation mode with ``params`` and the running ``state`` given, for the lessons'
    curves: ElasticFace draws no margin (σ = 0), so its m2/m3 is the curve's margin."""
    params = dict(params or {})
    if "sigma" in LOSSES[name].params:
        params["sigma"] = 0.0
    margin = make_margin(name, num_classes=3, **params).eval()
    for key, value in (state or {}).items():
        getattr(margin, key).fill_(float(value))
    return margin


def loss_target_curve(name: str, theta: Any, params: dict[str, Any] | None = None, *, norm: float | None = None,
                      state: dict[str, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(f(θ), df/dθ) of loss ``name``'s target logit before the scale, from its own margin function: the curve the
    loss trains with, for the lessons' figures.  ``params`` override the paper's defaults (ElasticFace draws no
    margin here: σ is taken as 0, pass m2/m3 for the mean or a band's edge); ``norm`` is the feature norm a of a
    norm-aware loss; ``state`` sets running state (AdaFace's batch_mean, batch_std).  θ in radians (numpy)."""
    margin = _lesson_margin(name, params, state)
    with torch.enable_grad():
        th = torch.as_tensor(np.asarray(theta, dtype=np.float32)).reshape(-1).requires_grad_(True)
        cos = torch.cos(th).unsqueeze(-1)
        norms = None
        if margin.info.norms is not None:
            if norm is None:
                raise ValueError(f"{name} reads the feature norm: give norm=")
            norms = torch.full_like(cos, float(norm))
        target = margin.target_output(cos, norms).target.reshape(-1)
        (slope,) = torch.autograd.grad(target.sum(), th)
    shape = np.shape(theta)
    return target.detach().numpy().reshape(shape), slope.numpy().reshape(shape)


@torch.no_grad()
def pair_logits(name: str, theta_own: Any, theta_other: Any, params: dict[str, Any] | None = None, *,
                norm: float | None = None, state: dict[str, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Two classes (Fig. 5): for a sample θ_own from its class's centre and θ_other from the other's, the two
    logits before the scale as loss ``name`` computes them (target f, and the other class's logit, which
    CurricularFace changes), from its own margin function; arrays broadcast.  Arguments as
    :func:`loss_target_curve` (ElasticFace at its mean margin)."""
    margin = _lesson_margin(name, params, state)
    own, other = np.broadcast_arrays(np.asarray(theta_own, dtype=np.float32), np.asarray(theta_other, np.float32))
    cos = torch.cos(torch.as_tensor(np.stack([own.reshape(-1), other.reshape(-1)], axis=-1)))
    norms = None if margin.info.norms is None else torch.full((len(cos), 1), float(norm if norm is not None else 1))
    logits = margin.unscaled_logits(cos, torch.zeros(len(cos), dtype=torch.long), norms).numpy()
    return logits[:, 0].reshape(own.shape).astype(float), logits[:, 1].reshape(own.shape).astype(float)


def loss_defaults(name: str, low_dim: bool = False) -> dict[str, Any]:
    """The paper's defaults, or the ones that train in 2-D/3-D (smaller s and margins)."""
    return LOSSES[name].defaults(low_dim)


def combined_margins(margin: Margin) -> tuple[Any, Any, Any] | None:
    """(m1, m2, m3) after the warm-up ramp when ``margin``'s target is exactly the combined margin with plain
    negatives and one centre per class (its margin function is :func:`combined_margin`): what the lessons' margin
    rings draw.  None for every other loss (norm-aware, random, sub-centre or changed-negative margins)."""
    info = margin.info
    if info.margin is not combined_margin or info.subcentres:
        return None
    return margin.effective_margins()


#: the combined margin (m1, m2, m3) that a loss whose margin moves per sample amounts to, from its settings
_TYPICAL_MARGINS = {
    "adaface": lambda v: (1.0, 0.0, float(v["m2"])),  # at the running mean norm (ẑ = 0): cos θ − m
    "magface": lambda v: (1.0, float(v["l_m"]), 0.0),  # its smallest margin, at the norm l_a
}


def loss_margins(name: str, values: dict[str, Any]) -> tuple[float, float, float]:
    """(m1, m2, m3) of a cosine-family loss from a dict of settings; margins the loss does not use are neutral.

    ElasticFace's are its mean margin, CurricularFace's its target's; AdaFace gives its margin at the mean
    norm, cos θ − m2, and MagFace its smallest, cos(θ + l_m)."""
    if name in _TYPICAL_MARGINS:
        return _TYPICAL_MARGINS[name](values)
    used = LOSSES[name].params
    return tuple(float(values[k]) if k in used else d for k, d in (("m1", 1.0), ("m2", 0.0), ("m3", 0.0)))
