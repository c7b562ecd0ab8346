"""A test-only loss that uses every extension point of the margin API (import as ``from margin_probe import ...``).

``probe`` is no published loss: it exists to show that a loss written as "a margin function + a registry line
+ its parameters" reaches ``logits()``, the fused training node, Partial FC and a batched (G, B, C) call with
no other edits.  Its target logit, for a sample with feature norm a and per-sample margin m_i = m2 + σ·ε_i
(ε_i from torch's generator), is

    f = cos(θ_y + m_i) − g·a/(1 + a)                  (norm not detached: ∂f/∂a = −g/(1 + a)²)

every negative with cos θ_j > f becomes cos θ_j·(t + cos θ_j) (as CurricularFace's hard negatives), the scale
is s·(1 + t/10), and λ·mean (a − 1)² is added to the loss.  The running state t ← (mean cos θ_y + t)/2 is
updated in training mode only, before use; ``last_margins`` keeps the last batch's m_i.  ``probe_sub`` is
the same with K = ``probe_k`` sub-centres per class, ``probe_autograd`` the same without derivatives
(``fused=False``).
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from arcface_viz.losses import LOSS_PARAMS, LOSSES, LossParam, MarginInput, MarginOut, declare_param, register_loss

PROBE_PARAMS = (
    LossParam("probe_g", "float", 0.3, "g", "norm weight", min=0.0, max=1.0, base=0.0),
    LossParam("probe_sigma", "float", 0.0, "σ", "per-sample margin spread", min=0.0, max=0.5, base=0.0),
    LossParam("probe_lambda", "float", 0.1, "λ", "extra term weight", min=0.0, max=1.0, base=0.0),
    LossParam("probe_k", "int", 2, "K", "sub-centres per class", min=1, max=4, base=1),
)
PROBE_DEFAULTS = {"s": 8.0, "m2": 0.3, "probe_g": 0.3, "probe_sigma": 0.0, "probe_lambda": 0.1,
                  "detach_margin": False}


def probe_margin(b: MarginInput) -> MarginOut:
    p, a = b.p, b.norms
    b.update("t", 0.5 * b.mean(b.cos_y) + 0.5 * b.state["t"])
    t = b.state["t"]
    m = p.m2
    if p.probe_sigma > 0:
        m = m + p.probe_sigma * torch.randn(b.cos_y.shape, device=b.cos_y.device)
        b.keep("last_margins", m)
    angle = b.theta_y + m
    target = torch.cos(angle) - p.probe_g * a / (1.0 + a)
    hard = b.cos > target
    others = torch.where(hard, b.cos * (t + b.cos), b.cos)
    n = b.cos.shape[-2]
    out = MarginOut(target, scale=p.s * (1.0 + 0.1 * t), others=others,
                    extra=p.probe_lambda * ((a - 1.0) ** 2).mean(dim=(-2, -1)))
    if b.analytic:
        out.slope = -torch.sin(angle) * b.dtheta_y
        out.norm_slope = -p.probe_g / (1.0 + a) ** 2
        out.others_slope = torch.where(hard, t + 2.0 * b.cos, torch.ones_like(b.cos))
        out.extra_norm_slope = p.probe_lambda * 2.0 * (a - 1.0) / n
    return out


@contextlib.contextmanager
def probe_registered():
    """Register the probe losses and parameters for the duration of a test, then restore the registries."""
    saved_params, saved_losses = dict(LOSS_PARAMS), dict(LOSSES)
    try:
        for param in PROBE_PARAMS:
            declare_param(param)
        common = dict(margin=probe_margin, norms="grad", state={"t": 0.0}, label="Probe", summary="test only")
        own, sub = tuple(PROBE_DEFAULTS), {**PROBE_DEFAULTS, "probe_k": 2}
        register_loss("probe", params=own, paper=PROBE_DEFAULTS, low_dim=PROBE_DEFAULTS, **common)
        register_loss("probe_autograd", params=own, paper=PROBE_DEFAULTS, low_dim=PROBE_DEFAULTS, fused=False,
                      **common)
        register_loss("probe_sub", params=tuple(sub), paper=sub, low_dim=sub, subcentres="probe_k", **common)
        yield
    finally:
        LOSS_PARAMS.clear()
        LOSS_PARAMS.update(saved_params)
        LOSSES.clear()
        LOSSES.update(saved_losses)


def probe_reference(x, centres, y, *, k=1, t_old=0.0, eps=None, training=True, s=8.0, m2=0.3, probe_g=0.3,
                    probe_sigma=0.0, probe_lambda=0.1, detach_margin=False):
    """The probe loss written out op by op from the formula above, with autograd; returns (loss, new t)."""
    cos = F.normalize(x, dim=-1) @ F.normalize(centres, dim=-1).transpose(-1, -2)
    if k > 1:
        cos = cos.unflatten(-1, (-1, k)).amax(dim=-1)
    rows = torch.arange(cos.shape[-2])
    cos_y = cos[..., rows, y]
    t = 0.5 * cos_y.detach().mean(-1) + 0.5 * t_old if training else torch.as_tensor(t_old)
    t = t[..., None, None] if t.dim() else t
    a = x.norm(dim=-1)
    th = torch.acos(cos_y.clamp(-1 + 1e-6, 1 - 1e-6))
    m = m2 + (probe_sigma * eps if eps is not None else 0.0)
    f = torch.cos(th + m) - probe_g * a / (1 + a)
    others = torch.where(cos > f[..., None], cos * (t + cos), cos)
    if detach_margin:
        f = cos_y + (f - cos_y).detach()
        others = cos + (others - cos).detach()
    onehot = F.one_hot(y, cos.shape[-1]).bool()
    logits = torch.where(onehot, f[..., None], others) * (s * (1 + 0.1 * t))
    ce = -torch.log_softmax(logits, dim=-1)[..., rows, y].mean(-1)
    return ce + probe_lambda * ((a - 1) ** 2).mean(-1), t
