"""The margin machinery: what a loss declares, what its margin function sees and returns, and who runs it.

Every cosine-head loss turns the cosines cos θ_j = x̂·Ŵ_j of a batch into the logits of a softmax cross
entropy: the target logit s·f(θ_y) gets the margin, the others stay s·cos θ_j (or, for a loss like
CurricularFace, change too).  A loss says how in ONE function, its *margin function*

    fn(b: MarginInput) -> MarginOut

which reads the target cosines ``b.cos_y`` (``b.theta_y``, the parameters ``b.p``, the running state
``b.state``, the feature norms ``b.norms``, …) and returns the target logit f before the scale s, plus, for the
fused training path, its derivative ∂f/∂cos θ_y.  :mod:`arcface_viz.losses` holds the family's margin
functions and registers them with :func:`register_loss`.  Three callers run a margin function, and none of
them holds any margin maths:

* :meth:`Margin.margin_logits` with autograd: ``MarginLoss.logits()`` (the lessons' pictures), the autograd
  training path, and Partial FC on its shard of the classes (with a ``reduce`` hook that sums across ranks);
* :func:`margin_cross_entropy`, the training hot path: one autograd node (:class:`_MarginCE`) whose backward
  is analytic and uses the derivatives the margin function returns (at the toy lesson's size, batch 256 in
  2-D, ArcFace's forward and backward took about 1/1.5 of the op-by-op autograd time on a CPU: pass
  ``fused=False`` to :func:`margin_cross_entropy` to compare).  A loss registered with ``fused=False`` trains
  with autograd instead.

Shapes.  ``cos`` is (…, B, C): B samples, C classes (of this shard), and optional leading dimensions, e.g.
G small models trained as one batched step.  Per-sample tensors are (…, B, 1).  Parameters are floats, or
tensors broadcastable to (…, B, C) such as s of shape (G, 1, 1), so one batched step can give every model
its own s and m.  State buffers have shape ``batch_shape + (1, 1)`` (a scalar for one model).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

EPS = 1e-6  # clamp for arccos; acos' stays below 1/sqrt(2e-6) ≈ 707
HEADS = ("linear", "cosine", "a_softmax", "centroid")
NORMS = (None, "detached", "grad")


# ------------------------------------------------------------------------------------------ declarations


@dataclass(frozen=True)
class LossParam:
    """One parameter of the loss family, declared once: its type, its control (range, step, text) and its base.

    :data:`arcface_viz.params.LOSS_SPEC` turns each into a slider, a URL key and a CLI flag.  ``base`` is the
    value a loss that does not use the parameter has; ``ramp=True`` marks a margin that the warm-up scales
    from ``base`` (no margin) to its value: v_eff = base + margin_scale·(v − base).  ``modifier=True`` marks a
    general modifier that :class:`Margin` applies around any margin function (``detach_margin``,
    ``interclass_filtering_threshold``): :func:`register_loss` adds it to every loss that has a margin function.
    ``structural=True`` marks a parameter that shapes the loss's tensors (the K of sub-centres): a running trainer
    cannot take a new value, the lessons rebuild it (Reset).
    """

    name: str
    kind: str  # "float" | "int" | "bool"
    default: Any  # the control's default (the lessons' 2-D/3-D value; a loss's own defaults are in LossInfo)
    label: str
    help: str
    min: float | None = None
    max: float | None = None
    step: float | None = None
    format: str | None = None
    base: Any = None
    ramp: bool = False
    modifier: bool = False  # a general modifier of the margin runner: every loss with a margin function gets it
    structural: bool = False  # shapes the loss's tensors (K sub-centres): a new value needs a new loss

    def cast(self, value: Any) -> Any:
        """The value as this parameter's Python type; tensors (per-model values) pass unchanged."""
        if torch.is_tensor(value):
            return value
        return {"float": float, "int": int, "bool": bool}[self.kind](value)


@dataclass(frozen=True)
class LossInfo:
    """One registry entry: the head, the margin function, the parameters and their defaults, the state."""

    name: str
    label: str
    head: str  # "linear" | "cosine" | "a_softmax" | "centroid"
    regularisers: tuple[str, ...]
    params: tuple[str, ...]
    paper: dict[str, Any]
    low_dim: dict[str, Any]
    summary: str
    presets: dict[str, dict[str, Any]] = field(default_factory=dict)
    margin: Callable[[MarginInput], MarginOut] | None = None
    state: dict[str, float | Callable[[int], float]] = field(default_factory=dict)  # name -> initial value, or a
    # function of the number of classes (AdaCos: √2·ln(C − 1)); kept in buffers
    norms: str | None = None  # the margin reads the feature norms: "detached" or "grad" (with their gradient)
    fused: bool = True  # the margin function returns its derivatives: train with the fused node
    subcentres: str | None = None  # the int parameter that gives K centres per class (cos θ_j = max over k)
    check: Callable[[Any], str | None] | None = None  # the parameters' condition: a message when they cannot work

    @property
    def has_centres(self) -> bool:
        """False for the pure triplet loss, whose 'centres' are only running class means."""
        return self.head != "centroid"

    def defaults(self, low_dim: bool = False) -> dict[str, Any]:
        return dict(self.low_dim if low_dim else self.paper)


LOSS_PARAMS: dict[str, LossParam] = {}
LOSSES: dict[str, LossInfo] = {}


def declare_param(param: LossParam) -> LossParam:
    """Add a parameter to the family (a new loss's ``h``, ``t_alpha``, …); every loss gets it as an attribute."""
    if param.kind not in ("float", "int", "bool"):
        raise ValueError(f"parameter {param.name!r}: kind must be float, int or bool, not {param.kind!r}")
    LOSS_PARAMS[param.name] = param
    return param


def register_loss(name: str, *, label: str, summary: str, head: str = "cosine",
                  margin: Callable[[MarginInput], MarginOut] | None = None, params: tuple[str, ...] = (),
                  paper: Mapping[str, Any] | None = None, low_dim: Mapping[str, Any] | None = None,
                  regularisers: tuple[str, ...] = (), presets: Mapping[str, dict] | None = None,
                  state: Mapping[str, float | Callable[[int], float]] | None = None, norms: str | None = None,
                  fused: bool = True, subcentres: str | None = None,
                  modifiers: tuple[str, ...] | None = None,
                  check: Callable[[Any], str | None] | None = None) -> LossInfo:
    """Add a loss to :data:`LOSSES`: the lessons, the CLI, ``make_loss`` and Partial FC pick it up from here.

    ``params`` are the parameters the loss uses (declared with :func:`declare_param`), ``paper`` and ``low_dim``
    their defaults at paper scale and in the 2-D/3-D lessons.  See :class:`LossInfo` for the other fields.
    A loss with a margin function also gets the general ``modifiers`` (None: every parameter declared with
    ``modifier=True``), appended to ``params``.  ``check(p)`` reads the parameters (``p.l_a``, …) and returns a
    message when they cannot work (e.g. a norm bound ≤ 0): building the loss then raises ValueError with it.
    """
    if margin is not None:
        mods = tuple(k for k, p in LOSS_PARAMS.items() if p.modifier) if modifiers is None else tuple(modifiers)
        params = tuple(params) + tuple(m for m in mods if m not in params)
    unknown = [p for p in params if p not in LOSS_PARAMS]
    if unknown:
        raise ValueError(f"loss {name!r}: undeclared parameter(s) {unknown}; declare them with declare_param")
    paper, low_dim = dict(paper or {}), dict(low_dim or {})
    for which, values in (("paper", paper), ("low_dim", low_dim)):
        if set(values) - set(params):
            raise ValueError(f"loss {name!r}: {which} defaults for parameters it does not use: "
                             f"{sorted(set(values) - set(params))}")
    if head not in HEADS or norms not in NORMS:
        raise ValueError(f"loss {name!r}: head must be one of {HEADS} and norms one of {NORMS}")
    if (margin is None) != (head in ("linear", "centroid")):
        raise ValueError(f"loss {name!r}: the {head!r} head {'takes no' if margin else 'needs a'} margin function")
    if subcentres is not None and (subcentres not in params or LOSS_PARAMS[subcentres].kind != "int"):
        raise ValueError(f"loss {name!r}: subcentres must name one of its int parameters")
    info = LossInfo(name=name, label=label, head=head, regularisers=tuple(regularisers), params=tuple(params),
                    paper=paper, low_dim=low_dim, summary=summary, presets=dict(presets or {}), margin=margin,
                    state=dict(state or {}), norms=norms, fused=fused, subcentres=subcentres, check=check)
    LOSSES[name] = info
    return info


# ------------------------------------------------------------------------------ the margin function's contract


def theta(cos: torch.Tensor) -> torch.Tensor:
    """θ = arccos(cos θ), the cosine clamped to [−1 + ε, 1 − ε] so that θ and its gradient stay finite."""
    return torch.acos(cos.clamp(-1.0 + EPS, 1.0 - EPS))


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


class _Params:
    """Attribute view of a margin's parameters after the warm-up ramp (``b.p.m2``); read on demand."""

    __slots__ = ("_margin", "_scale")

    def __init__(self, margin: Margin) -> None:
        self._margin, self._scale = margin, margin.margin_scale

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._margin, name)
        spec, a = LOSS_PARAMS.get(name), self._scale
        if spec is not None and spec.ramp and not (isinstance(a, (int, float)) and a == 1.0):
            value = spec.base + a * (value - spec.base)
        return value


class MarginInput:
    """What a margin function reads (all float32 unless the caller asked for another dtype).

    ``cos`` (…, B, C) every cosine of this shard; ``cos_y`` (…, B, 1) each sample's target cosine; ``cols``
    (…, B, 1) its column; ``p`` the parameters after the warm-up ramp (``b.p.s``, ``b.p.m2``, … floats or
    tensors broadcastable to ``cos``); ``state`` the running state (name -> buffer; change it with
    :meth:`update`); ``norms`` (…, B, 1) the feature norms a = ‖x‖ where the loss declared ``norms``;
    ``training`` whether :meth:`update` writes; ``analytic`` whether the fused path wants the derivatives.

    In Partial FC every rank sees every sample of the gathered batch, and ``cos_y`` and ``norms`` are the true
    values on every rank (a row whose class lives on another rank gets its target cosine from there, without
    gradient), so per-sample values and their batch :meth:`mean` are the same everywhere.  ``owned`` marks the
    rows whose target column is in this shard (only those keep the target logit); sums over the classes
    (AdaCos's Σ_j e^{s cos θ_j}) span the ranks through :meth:`reduce`.  ``others`` may depend on the target
    logit only through comparisons, since its gradient does not cross ranks.
    """

    __slots__ = ("cos", "cos_y", "cols", "p", "state", "norms", "training", "analytic", "_owned", "_reduce",
                 "_theta", "_clamped", "_margin")

    def __init__(self, cos: torch.Tensor, cos_y: torch.Tensor, cols: torch.Tensor, p: _Params,
                 state: dict[str, torch.Tensor], norms: torch.Tensor | None, training: bool, analytic: bool,
                 owned: torch.Tensor | None = None, reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 margin: Margin | None = None):
        self.cos, self.cos_y, self.cols, self.p, self.state, self.norms = cos, cos_y, cols, p, state, norms
        self.training, self.analytic, self._owned, self._reduce = training, analytic, owned, reduce
        self._margin = margin
        self._theta = self._clamped = None

    @property
    def theta_y(self) -> torch.Tensor:
        """θ_y = arccos(cos θ_y), clamped as :func:`theta` (computed once)."""
        if self._theta is None:
            self._clamped = self.cos_y.clamp(-1.0 + EPS, 1.0 - EPS)
            self._theta = torch.acos(self._clamped)
        return self._theta

    @property
    def dtheta_y(self) -> torch.Tensor:
        """∂θ_y/∂cos θ_y = −1/sin θ_y, and 0 where the clamp is active (as autograd has it): for the chain rule."""
        th = self.theta_y
        return (self._clamped == self.cos_y) / -torch.sin(th)

    @property
    def owned(self) -> torch.Tensor:
        """(…, B, 1) bool: the sample's class is in this shard (always True in one process)."""
        return self._owned if self._owned is not None else torch.ones_like(self.cos_y, dtype=torch.bool)

    def reduce(self, x: torch.Tensor) -> torch.Tensor:
        """Sum over the ranks of Partial FC (no gradient); the identity in one process."""
        return x if self._reduce is None else self._reduce(x)

    def mean(self, v: torch.Tensor) -> torch.Tensor:
        """The mean of a per-sample value (…, B, 1) over the batch, shape (…, 1, 1) (every rank's batch in PFC)."""
        return v.mean(dim=-2, keepdim=True)

    def keep(self, name: str, value: Any) -> None:
        """Keep a value of this batch as an attribute of the loss for the pages (not saved), e.g. ElasticFace's
        ``last_margins``; detached."""
        if self._margin is not None:
            setattr(self._margin, name, value.detach() if torch.is_tensor(value) else value)

    def update(self, name: str, value: torch.Tensor) -> None:
        """Set state ``name`` to ``value`` (no gradient) in training mode; in evaluation the state stays."""
        if self.training:
            buf = self.state[name]
            value = value.detach()
            buf.copy_(value.reshape(buf.shape) if value.numel() == buf.numel() else value)


@dataclass(slots=True)
class MarginOut:
    """What a margin function returns.  Only ``target`` is required; derivatives are read by the fused path.

    target          (…, B, 1)  f, the target logit before the scale
    slope           ∂f/∂cos θ_y (tensor or number; 1 for an additive cosine margin)
    scale           the logits' scale (None: the parameter ``s``); AdaCos returns its adapted s, A-Softmax ‖x‖
    norm_slope      (…, B, 1)  ∂f/∂a where f depends on an undetached feature norm a (MagFace)
    others          (…, B, C)  the non-target cosines after the loss changed them (CurricularFace); None: unchanged
    others_slope    (…, B, C)  ∂others/∂cos θ_j
    extra           (…)        a term added to the loss, e.g. λ_g·mean g(a); its gradient must come from autograd
                               or from ``extra_norm_slope``
    extra_norm_slope (…, B, 1) ∂extra/∂a_i (the 1/B of the mean included)
    """

    target: torch.Tensor
    slope: torch.Tensor | float | None = 1.0
    scale: torch.Tensor | float | None = None
    norm_slope: torch.Tensor | None = None
    others: torch.Tensor | None = None
    others_slope: torch.Tensor | None = None
    extra: torch.Tensor | None = None
    extra_norm_slope: torch.Tensor | None = None


def assemble_logits(cos: torch.Tensor, cols: torch.Tensor, out: MarginOut, scale: Any,
                    owned: torch.Tensor | None = None) -> torch.Tensor:
    """scale · (cos, or ``out.others``, with the target column set to ``out.target``); rows not owned keep theirs."""
    base = cos if out.others is None else out.others
    target = out.target
    if owned is not None:
        target = torch.where(owned, target, base.gather(-1, cols))
    logits = base.scatter(-1, cols, target if target.shape == cols.shape else target.expand(cols.shape))
    return logits.mul_(scale) if not torch.is_grad_enabled() else logits * scale


def _columns(labels: torch.Tensor, cos: torch.Tensor) -> torch.Tensor:
    """Labels (B) or (…, B) as target columns (…, B, 1) of ``cos``."""
    if labels.shape != cos.shape[:-1]:
        labels = labels.expand(cos.shape[:-1])
    return labels.unsqueeze(-1)


# ----------------------------------------------------------------------------------------- sub-centres


def subcentre_max(cos_all: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """cos θ_j = max over the K sub-centres of class j (rows of W ordered class-major), and the argmax."""
    if k == 1:
        return cos_all, None
    values, index = cos_all.unflatten(-1, (-1, k)).max(dim=-1)
    return values, index


def _subcentre_grad(grad: torch.Tensor, index: torch.Tensor | None, k: int) -> torch.Tensor:
    """Backward of :func:`subcentre_max`: each class's gradient goes to its nearest sub-centre."""
    if index is None:
        return grad
    out = grad.new_zeros(*grad.shape, k)
    return out.scatter_(-1, index.unsqueeze(-1), grad.unsqueeze(-1)).flatten(-2)


# ------------------------------------------------------------------------------------------ the module


class Margin(nn.Module):
    """A loss's margin: its parameters (plain attributes), its running state (buffers) and its margin function.

    Every parameter of :data:`LOSS_PARAMS` is an attribute (a loss's own ones from its defaults and ``params``,
    the others at their ``base``), so a trainer may change any between steps; ``margin_scale`` in [0, 1] ramps
    the margins (warm-up).  State buffers are saved in checkpoints and change only in training mode.
    :class:`~arcface_viz.losses.MarginLoss` is a Margin with class centres; Partial FC holds one, as
    insightface's ``PartialFC_V2`` holds its ``margin_loss``.  ``batch_shape=(G,)`` gives the state one value
    per model of a batched step.
    """

    def __init__(self, info: LossInfo, *, num_classes: int | None = None, batch_shape: tuple[int, ...] = (),
                 **params: Any) -> None:
        super().__init__()
        unknown = set(params) - set(LOSS_PARAMS)
        if unknown:
            raise ValueError(f"unknown loss parameter(s) {sorted(unknown)}; known: {', '.join(LOSS_PARAMS)}")
        self.info, self.name = info, info.name
        values = {k: p.base for k, p in LOSS_PARAMS.items() if k not in info.state}
        values.update(info.paper)
        values.update({k: v for k, v in params.items() if v is not None and k not in info.state})
        for k, v in values.items():
            setattr(self, k, v)
        self.margin_scale = 1.0
        if info.subcentres and not bool((torch.as_tensor(self.centres) >= 1).all()):
            raise ValueError(f"{info.subcentres} (sub-centres per class) must be ≥ 1, got {self.centres}")
        problem = info.check(self) if info.check else None
        if problem:
            raise ValueError(f"{info.label}: {problem}")
        shape = (*batch_shape, 1, 1) if batch_shape else ()
        for k, v in info.state.items():
            if params.get(k) is not None:  # a parameter named like a state (AdaCos's s) sets its initial value
                v = params[k]
            elif callable(v):
                if num_classes is None:
                    raise ValueError(f"the state {k!r} of {info.name!r} starts from the number of classes: "
                                     "give num_classes")
                v = v(num_classes)
            self.register_buffer(k, torch.full(shape, float(v)))

    def __setattr__(self, name: str, value: Any) -> None:
        spec = LOSS_PARAMS.get(name)
        if spec is not None and name not in self.__dict__.get("_buffers", {}):
            value = spec.cast(value)
        super().__setattr__(name, value)

    @property
    def centres(self) -> int:
        """K, the centres per class (1 unless the loss has sub-centres)."""
        return int(getattr(self, self.info.subcentres)) if self.info.subcentres else 1

    def state_values(self) -> dict[str, float | list[float]]:
        """The running state as plain numbers (one per model of a batched step): for logs and the live pages."""
        out: dict[str, float | list[float]] = {}
        for k in self.info.state:
            v = self._buffers[k].detach().float().cpu()
            out[k] = float(v) if v.numel() == 1 else v.flatten().tolist()
        return out

    def effective_margins(self) -> tuple[Any, Any, Any]:
        """(m1, m2, m3) after the warm-up ramp: (1 + a(m1 − 1), a·m2, a·m3)."""
        p = self._params()
        return p.m1, p.m2, p.m3

    def feature_norms(self, embeddings: torch.Tensor) -> torch.Tensor | None:
        """a = ‖x‖ (…, B, 1) where the margin reads it (detached if the loss says so), else None."""
        if self.info.norms is None:
            return None
        a = embeddings.float().norm(dim=-1, keepdim=True)
        return a.detach() if self.info.norms == "detached" else a

    def _params(self) -> Any:
        """The parameters as the margin function reads them: after the warm-up ramp (the module itself at 1)."""
        a = self.margin_scale
        return self if isinstance(a, (int, float)) and a == 1.0 else _Params(self)

    def _detached(self) -> bool:
        """``detach_margin`` is on (insightface's arcface_torch since Dec 2022, opensphere): the logits keep the
        margined values, but ∂logit/∂cos θ_j is the scale for the target as for every other class."""
        return "detach_margin" in self.info.params and bool(self.detach_margin)

    def _filter(self, cos: torch.Tensor, cols: torch.Tensor,
                owned: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """arcface_torch's inter-class filtering for noisy data: every non-target cosine above τ =
        ``interclass_filtering_threshold`` becomes 0, without gradient, before the margin (τ ≤ 0: off).

        Returns (cosines, kept mask or None).  A row whose class lives on another rank (``owned`` False) has no
        target column here, so all its cosines are candidates, as in arcface_torch's Partial FC."""
        if "interclass_filtering_threshold" not in self.info.params:
            return cos, None
        tau = self.interclass_filtering_threshold
        if not torch.is_tensor(tau) and tau <= 0:
            return cos, None
        with torch.no_grad():
            target = torch.zeros(cos.shape, dtype=torch.bool, device=cos.device)
            src = torch.ones_like(cols, dtype=torch.bool) if owned is None else owned.expand(cols.shape)
            target.scatter_(-1, cols.expand(*cos.shape[:-1], 1), src)
            dirty = (cos > tau) & ~target
            if torch.is_tensor(tau):  # one τ per model of a batched step: τ ≤ 0 is off for that model
                dirty &= tau > 0
        return cos.masked_fill(dirty, 0.0), ~dirty

    def _run(self, cos: torch.Tensor, cos_y: torch.Tensor, cols: torch.Tensor, owned: torch.Tensor | None,
             norms: torch.Tensor | None, reduce: Callable | None, update: bool,
             analytic: bool) -> tuple[MarginInput, MarginOut]:
        """Call the margin function on cosines (…, B, C), target cosines and columns (…, B, 1), ``owned``."""
        state = {k: self._buffers[k] for k in self.info.state} if self.info.state else {}
        b = MarginInput(cos, cos_y, cols, self._params(), state, norms, update, analytic, owned, reduce, self)
        return b, self.info.margin(b)

    def margin_logits(self, cos: torch.Tensor, labels: torch.Tensor, *, owned: torch.Tensor | None = None,
                      norms: torch.Tensor | None = None, reduce: Callable | None = None,
                      update: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(logits, extra loss term or None) from cosines (…, B, C) and labels (…, B), with autograd.

        ``labels`` are columns of ``cos``; where ``owned`` (…, B) is False the class lives elsewhere (Partial FC)
        and the row keeps its logits.  ``norms`` are :meth:`feature_norms`; ``reduce`` sums statistics across
        ranks; ``update`` lets the margin function update its state (training steps only).
        """
        cols = _columns(labels, cos)
        if owned is not None:  # Partial FC: the target cosine of every row, from the rank that holds its class
            owned = owned.expand(cos.shape[:-1]).unsqueeze(-1)
            cols = torch.where(owned, cols, torch.zeros_like(cols))
        cos = self._filter(cos, cols, owned)[0]
        if owned is None:
            cos_y = cos.gather(-1, cols)
        else:
            local = cos.gather(-1, cols)
            mine = torch.where(owned, local, torch.zeros_like(local)).detach()
            cos_y = torch.where(owned, local, mine if reduce is None else reduce(mine))
        b, out = self._run(cos, cos_y, cols, owned, norms, reduce, update, analytic=False)
        if self._detached():  # the margin's value without its gradient
            out.target = b.cos_y + (out.target - b.cos_y).detach()
            if out.others is not None:
                out.others = cos + (out.others - cos).detach()
        scale = out.scale if out.scale is not None else b.p.s
        return assemble_logits(cos, b.cols, out, scale, b._owned), out.extra

    def unscaled_logits(self, cos: torch.Tensor, labels: torch.Tensor, norms: torch.Tensor | None = None
                        ) -> torch.Tensor:
        """The logits before the scale s for cosines (…, B, C) and labels, without updating the state (the target
        logit f and, for a loss that changes them, the other classes' logits): the lessons' decision regions."""
        cols = _columns(labels, cos)
        b, out = self._run(cos, cos.gather(-1, cols), cols, None, norms, None, update=False, analytic=False)
        return assemble_logits(cos, b.cols, out, 1.0)

    def target_output(self, cos_y: torch.Tensor, norms: torch.Tensor | None = None) -> MarginOut:
        """The margin function's output for target cosines (…, N, 1) alone (one column), with autograd and without
        updating the state: the lessons' target-logit curves f(θ) at a given feature norm."""
        cols = torch.zeros_like(cos_y, dtype=torch.long)
        return self._run(cos_y, cos_y, cols, None, norms, None, update=False, analytic=False)[1]

    def margin_derivatives(self, cos: torch.Tensor, cols: torch.Tensor, norms: torch.Tensor | None,
                           update: bool) -> tuple[MarginOut, Any]:
        """(MarginOut with its derivatives, scale) for the fused node, from cosines (…, B, C) and columns (…, B, 1).

        No autograd: the fused node calls it inside its forward.  The modifiers act on the derivatives: a
        detached margin has slope 1 (and no norm or others slope), a filtered cosine has slope 0."""
        cos, kept = self._filter(cos, cols, None)
        b, out = self._run(cos, cos.gather(-1, cols), cols, None, norms, None, update, analytic=True)
        if out.slope is None:
            raise ValueError(f"the margin function of {self.name!r} gave no derivatives: register it with "
                             "fused=False to train it with autograd")
        if self._detached():
            out.slope, out.others_slope, out.norm_slope = 1.0, None, None
        elif self.info.norms == "detached":
            out.norm_slope = None
        if kept is not None:
            if out.others is None:
                out.others = cos
            out.others_slope = kept.to(cos.dtype) if out.others_slope is None else out.others_slope * kept
        return out, out.scale if out.scale is not None else b.p.s


# ------------------------------------------------------------------------------- cross entropy, two ways


def autocast_on(t: torch.Tensor) -> bool:
    """Whether ``torch.autocast`` is on for ``t``'s device.  Every loss entry point (:func:`cosines`, the fused
    node, ``MarginLoss.forward`` and ``logits``, :func:`~arcface_viz.losses.triplet_term`) then calls itself again
    inside :func:`no_autocast`: under fp16/bf16 autocast a matmul's cosines near ±1 round to exactly ±1, past the
    clamp to 1 − 1e-6, where arccos' is infinite.  (Partial FC's big matmul may use autocast: it clamps in float32
    afterwards.)  Checked, not entered, on the hot path: one C call when autocast is off."""
    return torch.is_autocast_enabled(t.device.type)


def no_autocast(t: torch.Tensor) -> torch.autocast:
    """The context that switches autocast off on ``t``'s device (see :func:`autocast_on`)."""
    return torch.autocast(t.device.type, enabled=False)


def _full(t: torch.Tensor) -> torch.Tensor:
    """``t`` in float32 if it is in a half-precision dtype (float64 stays, for gradcheck)."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def cosines(embeddings: torch.Tensor, centres: torch.Tensor, k: int = 1) -> torch.Tensor:
    """cos θ_j (…, B, C) between normalised embeddings (…, B, d) and centres (…, C·K, d), max over sub-centres."""
    if autocast_on(embeddings):
        with no_autocast(embeddings):
            return cosines(embeddings, centres, k)
    x = F.normalize(embeddings.float(), dim=-1)
    w = F.normalize(centres.float(), dim=-1)
    return subcentre_max(x @ w.transpose(-1, -2), k)[0]


def margin_cross_entropy(margin: Margin, embeddings: torch.Tensor, centres: torch.Tensor, labels: torch.Tensor,
                         *, fused: bool | None = None) -> torch.Tensor:
    """Mean softmax cross entropy of the margin logits over the batch (plus the margin's extra term), shape (…).

    embeddings (…, B, d), centres (…, C·K, d) (shared by the models if it has no leading dims), labels (B) or
    (…, B).  Runs the fused node when the loss allows it (``fused=None``: as registered; False: autograd), else
    autograd; both give the same values and gradients.  In training mode the margin's state is updated first.
    For G models, sum the (G,) result before ``backward``.
    """
    if labels.dtype != torch.long:
        labels = labels.long()
    if autocast_on(embeddings):
        with no_autocast(embeddings):
            return margin_cross_entropy(margin, embeddings, centres, labels, fused=fused)
    if margin.info.fused if fused is None else fused:
        return _MarginCE.apply(_full(embeddings), _full(centres), labels, margin)
    cos = cosines(embeddings, centres, margin.centres)
    logits, extra = margin.margin_logits(cos, labels, norms=margin.feature_norms(embeddings), update=margin.training)
    targets = labels.expand(cos.shape[:-1])
    loss = F.cross_entropy(logits.flatten(0, -2), targets.flatten(), reduction="none").view(targets.shape).mean(-1)
    return loss if extra is None else loss + extra


def _log_softmax(logits: torch.Tensor) -> torch.Tensor:
    """log softmax over the classes (last axis).  With fewer than 16 classes (the lessons') torch's CPU kernel is
    3–10× faster along a strided axis than along a short contiguous one, and gives the same bits there (its
    vector width is 16 floats; tests/test_margin_api.py checks the equality); more classes take the usual path."""
    if logits.shape[-1] >= 16:
        return torch.log_softmax(logits, dim=-1)
    return torch.log_softmax(logits.transpose(-1, -2), dim=-2).transpose(-1, -2).contiguous()


def _project(grad: torch.Tensor, unit: torch.Tensor, norm: torch.Tensor) -> torch.Tensor:
    """Backward of v ↦ v/‖v‖: (g − û(û·g))/‖v‖."""
    return (grad - unit * (grad * unit).sum(-1, keepdim=True)) / norm


class _MarginCE(torch.autograd.Function):
    """Cosine head + margin function + cross entropy as one autograd node (the training hot path).

    Forward: cos θ_j = x̂·Ŵ_j (max over sub-centres), the margin function's logits, loss = mean CE (+ extra).  In
    training mode with sub-centres it keeps each row's nearest sub-centre of its own class as ``last_nearest``.
    Backward is analytic, from the derivatives the margin function returned:

        G = s·(softmax − onehot)/B,   G_j ← G_j·∂others/∂cos θ_j,   G_y ← G_y·∂f/∂cos θ_y
        ∂L/∂a = G_y·∂f/∂a + ∂extra/∂a      (a = ‖x‖, for norm-aware margins)
        dx̂ = G Ŵ,  dŴ = Gᵀ x̂,  dx = (dx̂ − x̂ (x̂·dx̂))/‖x‖ + ∂L/∂a·x̂   (W likewise, without the norm term)

    It gives the gradients of the op-by-op autograd graph of ``margin_logits`` + cross entropy (tests check
    both) with one graph node instead of about twenty, which is most of a toy step's cost.
    """

    @staticmethod
    def forward(ctx, emb, centres, labels, margin):
        k = margin.centres
        xn = torch.linalg.vector_norm(emb, dim=-1, keepdim=True).clamp_min(1e-12)
        wn = torch.linalg.vector_norm(centres, dim=-1, keepdim=True).clamp_min(1e-12)
        x, w = emb / xn, centres / wn
        cos, index = x @ w.transpose(-1, -2), None
        if k > 1:
            cos, index = subcentre_max(cos, k)
        cols = _columns(labels, cos)
        if index is not None and margin.training:  # each row's nearest sub-centre of its own class (dominance count)
            # (straight into __dict__: nn.Module's __setattr__ costs more than the gather, every step)
            margin.__dict__["last_nearest"] = index.gather(-1, cols).squeeze(-1)
        out, scale = margin.margin_derivatives(cos, cols, xn if margin.info.norms else None, margin.training)
        log_p = _log_softmax(assemble_logits(cos, cols, out, scale))
        ctx.save_for_backward(x, xn, w, wn, log_p, cols)
        ctx.out, ctx.scale, ctx.index, ctx.k = out, scale, index, k
        ctx.shapes = emb.shape, centres.shape
        picked = log_p.gather(-1, cols)
        loss = -(picked.mean() if picked.dim() == 2 else picked.mean(dim=-2).squeeze(-1))
        return loss if out.extra is None else loss + out.extra

    @staticmethod
    def backward(ctx, grad):
        if autocast_on(grad):  # a backward called inside autocast: its matmuls stay float32 too
            with no_autocast(grad):
                return _MarginCE.backward(ctx, grad.float())
        x, xn, w, wn, log_p, cols = ctx.saved_tensors
        out, up = ctx.out, grad if grad.dim() == 0 else grad[..., None, None]
        g = log_p.exp()
        g.scatter_add_(-1, cols, torch.full_like(cols, -1, dtype=g.dtype))
        g.mul_(up * (ctx.scale / g.shape[-2]))
        rescale = out.others_slope is not None or not (isinstance(out.slope, (int, float)) and out.slope == 1.0)
        g_y = g.gather(-1, cols) if rescale or out.norm_slope is not None else None
        d_norm = None if out.norm_slope is None else g_y * out.norm_slope
        if out.extra_norm_slope is not None:
            d_norm = up * out.extra_norm_slope + (0.0 if d_norm is None else d_norm)
        if out.others_slope is not None:
            g.mul_(out.others_slope)
        if rescale:
            g.scatter_(-1, cols, g_y * out.slope)
        if ctx.index is not None:
            g = _subcentre_grad(g, ctx.index, ctx.k)
        dx = _project(g @ w, x, xn)
        if d_norm is not None:
            dx = dx + d_norm * x
        dw = _project(g.transpose(-1, -2) @ x, w, wn)
        emb_shape, centres_shape = ctx.shapes
        dx = dx if dx.shape == emb_shape else dx.sum_to_size(emb_shape)  # shared by the models: summed
        dw = dw if dw.shape == centres_shape else dw.sum_to_size(centres_shape)
        return dx, dw, None, None

