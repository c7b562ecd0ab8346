"""Target-logit curves and decision-margin geometry (numpy only; the maths behind Fig. 4(b) and Fig. 5).

Every cosine-head loss turns the target cosine into f(θ) = cos(m1·θ + m2) − m3 (paper eq. L4).  This
module draws f (Fig. 4b), follows the cross entropy of one sample as its target angle moves, and works
out where two classes' decision regions end on the (θ1, θ2) plane and on the unit circle (Fig. 5).

For the geometry we use the curve the loss trains with (``monotonic=True`` in
:func:`arcface_viz.losses.target_logit`): it is strictly decreasing on [0, π], so every boundary below
is a single crossing found by bisection.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .losses import (
    LOSSES,
    a_softmax_target,
    extension_threshold,
    loss_target_curve,
    pair_logits,
    target_logit,
    target_logit_slope,
)

# Fig. 4(b): x from 20° to 100°, y from −1.2 to 1.
FIG4B_RANGE_DEG: tuple[float, float] = (20.0, 100.0)
FULL_RANGE_DEG: tuple[float, float] = (0.0, 180.0)
FIG4B_Y_RANGE: tuple[float, float] = (-1.2, 1.0)

# Fig. 5 region labels
NEITHER, CLASS1, CLASS2, BOTH = 0, 1, 2, 3
REGION_NAMES = {NEITHER: "margin (neither wins)", CLASS1: "class 1 wins", CLASS2: "class 2 wins",
                BOTH: "overlap (both win: negative margin)"}


def _check_margins(m1: float, m2: float, m3: float) -> None:
    for name, v in (("m1", m1), ("m2", m2), ("m3", m3)):
        if not math.isfinite(v):
            raise ValueError(f"{name} must be a finite number, got {v}")
    if m1 <= 0:
        raise ValueError(f"m1 must be > 0, got {m1}")


def _check_ce(s: float, num_classes: int, other_cos: float) -> None:
    if not (math.isfinite(s) and s > 0):
        raise ValueError(f"the scale s must be > 0, got {s}")
    if int(num_classes) != num_classes or num_classes < 2:
        raise ValueError(f"num_classes must be a whole number ≥ 2, got {num_classes}")
    if not (math.isfinite(other_cos) and -1.0 <= other_cos <= 1.0):
        raise ValueError(f"other_cos must lie in [−1, 1], got {other_cos}")



# ---------------------------------------------------------------------------------------------
# Fig. 4(b) curves


@dataclass(frozen=True)
class Fig4bCurve:
    """One target-logit curve of Fig. 4(b).

    kind ``"margin"``: f(θ) = cos(m1·θ + m2) − m3 with params m1, m2, m3;
    kind ``"a_softmax"``: the original SphereFace (λ cos θ + ψ(θ)) / (1 + λ) with params m, lam;
    kind ``"loss"``: any loss of the registry, ``loss``, from its own margin function
    (:func:`arcface_viz.losses.loss_target_curve`) with ``params``, at feature norm ``norm`` and with the running
    ``state`` given (the losses after ArcFace).  ``band`` (two such curves) is a range drawn around the curve
    (ElasticFace's mean ± 2σ).
    """

    key: str
    label: str
    kind: str
    params: Mapping[str, Any] = field(default_factory=dict)
    loss: str = ""
    norm: float | None = None
    state: Mapping[str, float] = field(default_factory=dict)
    band: tuple[Fig4bCurve, Fig4bCurve] | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("margin", "a_softmax", "loss"):
            raise ValueError(f"curve kind must be 'margin', 'a_softmax' or 'loss', got {self.kind!r}")
        if self.kind == "margin":
            _check_margins(*self.margins)
        elif self.kind == "loss":
            if self.loss not in LOSSES:
                raise ValueError(f"unknown loss {self.loss!r}")
        else:
            m, lam = self.params.get("m", 4), self.params.get("lam", 5.0)
            if int(m) != m or m < 1:
                raise ValueError(f"A-Softmax m must be a whole number ≥ 1, got {m}")
            if not (math.isfinite(lam) and lam >= 0):
                raise ValueError(f"A-Softmax λ must be ≥ 0, got {lam}")

    @property
    def margins(self) -> tuple[float, float, float]:
        """(m1, m2, m3) of a margin curve (defaults 1, 0, 0)."""
        p = self.params
        return float(p.get("m1", 1.0)), float(p.get("m2", 0.0)), float(p.get("m3", 0.0))

    @property
    def theta_star(self) -> float | None:
        """θ* = (π − m2)/m1 where cos(m1·θ + m2) turns back up, or None when it stays below π (or A-Softmax)."""
        if self.kind != "margin":
            return None
        m1, m2, _ = self.margins
        t = extension_threshold(m1, m2)
        return t if t < math.pi else None

    def _loss_curve(self, theta) -> tuple[np.ndarray, np.ndarray]:
        f, df = loss_target_curve(self.loss, theta, dict(self.params), norm=self.norm, state=dict(self.state))
        return f.astype(float), df.astype(float)

    def pair(self, theta_own, theta_other) -> tuple[np.ndarray, np.ndarray]:
        """Two classes: the target logit f(θ_own) and the other class's logit at θ_other, before the scale
        (cos θ_other, except for a loss that changes its negatives, as CurricularFace)."""
        if self.kind == "loss":
            return pair_logits(self.loss, theta_own, theta_other, dict(self.params), norm=self.norm,
                               state=dict(self.state))
        return self.evaluate(theta_own, monotonic=True), np.cos(np.asarray(theta_other, dtype=float))

    def evaluate(self, theta, monotonic: bool = False, easy_margin: bool = False) -> np.ndarray:
        """The target logit at θ (radians): the raw formula, or with ``monotonic`` the training curve (a loss
        curve is always its training curve)."""
        theta = np.asarray(theta, dtype=float)
        if self.kind == "loss":
            return self._loss_curve(theta)[0]
        if self.kind == "a_softmax":
            return a_softmax_target(theta, int(self.params.get("m", 4)), float(self.params.get("lam", 5.0)))
        m1, m2, m3 = self.margins
        return target_logit(theta, m1, m2, m3, monotonic=monotonic, easy_margin=easy_margin)

    def slope(self, theta, easy_margin: bool = False) -> np.ndarray:
        """df/dθ of the training curve."""
        theta = np.asarray(theta, dtype=float)
        if self.kind == "loss":
            return self._loss_curve(theta)[1]
        if self.kind == "a_softmax":
            m, lam = int(self.params.get("m", 4)), float(self.params.get("lam", 5.0))
            return (-lam * np.sin(theta) + a_softmax_psi_slope(theta, m)) / (1.0 + lam)
        m1, m2, m3 = self.margins
        return target_logit_slope(theta, m1, m2, m3, monotonic=True, easy_margin=easy_margin)

    def sample_loss(self, theta, s: float, num_classes: int, other_cos: float = 0.0,
                    easy_margin: bool = False, detached: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """:func:`sample_loss` (or :func:`a_softmax_sample_loss` with ‖x‖ = s) for this curve.

        ``detached``: dL/dθ with the margin's gradient detached (insightface since 2022): the loss is the same,
        the slope is that of s·cos θ under the margined softmax, −σ(z)·s·(−sin θ)."""
        if self.kind == "a_softmax":
            loss, grad = a_softmax_sample_loss(theta, s, num_classes, int(self.params.get("m", 4)),
                                               float(self.params.get("lam", 5.0)), other_cos)
        elif self.kind == "loss":
            _check_ce(s, num_classes, other_cos)
            theta = np.asarray(theta, dtype=float)
            f, df = self._loss_curve(theta)
            loss, grad = _cross_entropy(s * f, s * df, s * other_cos, int(num_classes))
        else:
            loss, grad = sample_loss(theta, s, num_classes, *self.margins, other_cos=other_cos,
                                     easy_margin=easy_margin)
        if detached:
            theta = np.asarray(theta, dtype=float)
            grad = _cross_entropy(s * self.evaluate(theta, monotonic=True, easy_margin=easy_margin),
                                  -s * np.sin(theta), s * other_cos, int(num_classes))[1]
        return loss, grad


def margin_curve(label: str, m1: float = 1.0, m2: float = 0.0, m3: float = 0.0, key: str | None = None
                 ) -> Fig4bCurve:
    """A margin curve cos(m1·θ + m2) − m3 with a label (key defaults to ``"custom"``)."""
    return Fig4bCurve(key or "custom", label, "margin", {"m1": float(m1), "m2": float(m2), "m3": float(m3)})


FIG4B_CURVES: tuple[Fig4bCurve, ...] = (
    margin_curve("Softmax (1,0,0)", 1.0, 0.0, 0.0, key="softmax"),
    Fig4bCurve("sphereface_a", "SphereFace (m=4, λ=5)", "a_softmax", {"m": 4, "lam": 5.0}),
    margin_curve("SphereFace (1.35,0,0)", 1.35, 0.0, 0.0, key="sphereface"),
    margin_curve("ArcFace (1,0.5,0)", 1.0, 0.5, 0.0, key="arcface"),
    margin_curve("CosFace (1,0,0.35)", 1.0, 0.0, 0.35, key="cosface"),
    margin_curve("CM1 (1,0.3,0.2)", 1.0, 0.3, 0.2, key="cm1"),
    margin_curve("CM2 (0.9,0.4,0.15)", 0.9, 0.4, 0.15, key="cm2"),
)
"""The seven curves of Fig. 4(b), in the paper's legend order."""

FIG4B_BY_KEY: dict[str, Fig4bCurve] = {c.key: c for c in FIG4B_CURVES}

# Fig. 5's four cosine-head panels (paper defaults) plus the two combined margins.
FIG5_CURVES: tuple[Fig4bCurve, ...] = (
    margin_curve("Norm-Softmax", 1.0, 0.0, 0.0, key="norm_softmax"),
    margin_curve("SphereFace (m1=1.35)", 1.35, 0.0, 0.0, key="sphereface"),
    margin_curve("CosFace (m3=0.35)", 1.0, 0.0, 0.35, key="cosface"),
    margin_curve("ArcFace (m2=0.5)", 1.0, 0.5, 0.0, key="arcface"),
)
FIG5_WIDTH_CURVES: tuple[Fig4bCurve, ...] = FIG5_CURVES + (FIG4B_BY_KEY["cm1"], FIG4B_BY_KEY["cm2"])

# ---------------------------------------------------------------------------------------------
# After ArcFace: each loss's target logit from its own margin function, with its paper's preset

#: AdaFace's curves are drawn with this running state, so that a norm u batch-stds from the mean is 50 + 10·u and
#: ẑ = h·u exactly (the + ε of the std cancelled)
ADAFACE_STATE = {"batch_mean": 50.0, "batch_std": 10.0 - 1e-3}
MAGFACE_NORMS = (10.0, 30.0, 50.0, 70.0, 90.0, 110.0)  # MagFace's family: its paper range [l_a, u_a] = [10, 110]
ADAFACE_UNITS = (-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0)  # AdaFace's family: (‖x‖ − μ)/σ
ELASTIC_BAND = 2.0  # ElasticFace's band: mean ± this many σ


def adaface_norm(units: float) -> float:
    """The feature norm ``units`` batch-stds from the running mean under :data:`ADAFACE_STATE`."""
    return ADAFACE_STATE["batch_mean"] + 10.0 * units


def after_arcface_curve(name: str, *, mag_norm: float = 60.0, ada_units: float = 1.0, t: float = 0.5,
                        params: Mapping[str, Any] | None = None, key: str | None = None) -> Fig4bCurve:
    """The target-logit curve of a loss after ArcFace with its paper's defaults (``params`` on top): MagFace at
    feature norm ``mag_norm``, AdaFace at ``ada_units`` batch-stds from the mean norm, CurricularFace with running
    t = ``t`` (for its negatives in Fig. 5), ElasticFace at its mean margin with a band of ± 2σ."""
    p = {**LOSSES[name].paper, **(params or {})}
    p.pop("detach_margin", None)
    kw: dict[str, Any] = {}
    if name == "subcenter_arcface":
        label = f"Sub-center ArcFace (m = {p['m2']:g}): ArcFace's, to the nearest of K sub-centres"
    elif name == "adacos":
        label = "AdaCos: cos θ, no margin (s adapts)"
    elif name == "magface":
        lo, hi = p["l_a"], p["u_a"]
        a = min(max(mag_norm, lo), hi)
        m = p["l_m"] + (p["u_m"] - p["l_m"]) * (a - lo) / (hi - lo)
        label, kw = f"MagFace at ‖x‖ = {mag_norm:g} (m = {m:.2f})", {"norm": float(mag_norm)}
    elif name == "adaface":
        sign = "+" if ada_units >= 0 else "−"
        label = f"AdaFace at ‖x‖ = μ {sign} {abs(ada_units):g}σ (m = {p['m2']:g}, h = {p['h']:g})"
        kw = {"norm": adaface_norm(ada_units), "state": dict(ADAFACE_STATE)}
    elif name == "curricularface":
        label, kw = f"CurricularFace (m = {p['m2']:g}): ArcFace's target", {"state": {"t": float(t)}}
    elif name in ("elasticface_arc", "elasticface_cos"):
        m = "m2" if name == "elasticface_arc" else "m3"
        width = ELASTIC_BAND * p["sigma"]
        label = f"{LOSSES[name].label} (m = {p[m]:g} ± {width:.2g}, {ELASTIC_BAND:g}σ)"
        kw["band"] = tuple(Fig4bCurve(f"{name}_{side}", f"{label}: {side}", "loss", {**p, m: p[m] + d}, loss=name)
                           for side, d in (("low", -width), ("high", width)))
    else:
        raise ValueError(f"{name!r} is not one of the losses after ArcFace")
    return Fig4bCurve(key or name, label, "loss", p, loss=name, **kw)


def magface_family(norms: Sequence[float] = MAGFACE_NORMS, params: Mapping[str, Any] | None = None
                   ) -> list[Fig4bCurve]:
    """MagFace's target logit at several feature norms (paper preset): a larger norm, a larger margin."""
    return [after_arcface_curve("magface", mag_norm=a, params=params, key=f"magface_{a:g}") for a in norms]


def adaface_family(units: Sequence[float] = ADAFACE_UNITS, params: Mapping[str, Any] | None = None
                   ) -> list[Fig4bCurve]:
    """AdaFace's target logit at norms ``units`` batch-stds from the running mean (paper preset)."""
    return [after_arcface_curve("adaface", ada_units=u, params=params, key=f"adaface_{u:g}") for u in units]


CurveLike = Fig4bCurve | tuple[str, float, float, float]


def as_curve(obj: CurveLike) -> Fig4bCurve:
    """A :class:`Fig4bCurve`, or a (label, m1, m2, m3) tuple turned into one."""
    if isinstance(obj, Fig4bCurve):
        return obj
    if isinstance(obj, Sequence) and len(obj) == 4 and isinstance(obj[0], str):
        label, m1, m2, m3 = obj
        return margin_curve(label, m1, m2, m3)
    raise ValueError(f"expected a Fig4bCurve or (label, m1, m2, m3), got {obj!r}")


def theta_grid_deg(full_range: bool = False, points: int | None = None) -> np.ndarray:
    """θ in degrees: Fig. 4(b)'s 20°–100° or the full 0°–180°; default step 0.5°."""
    lo, hi = FULL_RANGE_DEG if full_range else FIG4B_RANGE_DEG
    if points is None:
        points = int(round((hi - lo) / 0.5)) + 1
    if int(points) != points or points < 2:
        raise ValueError(f"points must be a whole number ≥ 2, got {points}")
    return np.linspace(lo, hi, int(points))


def curve_table(curves: Iterable[CurveLike] = FIG4B_CURVES, theta_deg=None, monotonic: bool = False
                ) -> dict[str, np.ndarray]:
    """Fig. 4(b) as columns: ``theta_deg`` then one target-logit column per curve (keyed by curve key), and for a
    curve with a band its two edges (``<key>_low``, ``<key>_high``).

    Duplicate keys get a numeric suffix so that no column is lost.
    """
    theta_deg = theta_grid_deg() if theta_deg is None else np.asarray(theta_deg, dtype=float)
    table: dict[str, np.ndarray] = {"theta_deg": theta_deg}
    for c in map(as_curve, curves):
        for item in (c, *(c.band or ())):
            key, i = item.key, 2
            while key in table:
                key, i = f"{item.key}_{i}", i + 1
            table[key] = item.evaluate(np.radians(theta_deg), monotonic=monotonic)
    return table


def a_softmax_psi_slope(theta, m: int = 4) -> np.ndarray:
    """dψ/dθ = −(−1)^k · m·sin(mθ) on [kπ/m, (k+1)π/m] (A-Softmax, SphereFace eq. 7)."""
    theta = np.asarray(theta, dtype=float)
    k = np.clip(np.floor(theta * m / math.pi), 0, m - 1)
    sign = 1 - 2 * (k % 2)
    return -sign * m * np.sin(m * theta)


# ---------------------------------------------------------------------------------------------
# One sample's loss against its target angle


def _cross_entropy(target, dtarget, other: float, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """L = log(1 + (n−1)·e^{other − target}) = softplus(z), z = other − target + log(n−1); dL = −σ(z)·dtarget."""
    z = other - target + math.log(num_classes - 1)
    loss = np.logaddexp(0.0, z)
    sigma = np.exp(z - loss)  # σ(z) without overflow
    return loss, -sigma * dtarget


def sample_loss(theta, s: float, num_classes: int, m1: float = 1.0, m2: float = 0.0, m3: float = 0.0,
                other_cos: float = 0.0, easy_margin: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Cross entropy of one sample whose target angle is θ and whose n−1 other logits are s·other_cos.

    L(θ) = −log e^{s·f(θ)} / (e^{s·f(θ)} + (n−1)·e^{s·other_cos}), f the training curve
    (monotonic; ``easy_margin`` as in the loss).  Returns (L, dL/dθ) with
    dL/dθ = −s·f'(θ)·σ(s·(other_cos − f(θ)) + log(n−1)).  other_cos = 0 is the random-init case of
    Fig. 4(a): in high dimension every centre is nearly orthogonal to the feature.
    """
    _check_ce(s, num_classes, other_cos)
    _check_margins(m1, m2, m3)
    theta = np.asarray(theta, dtype=float)
    f = target_logit(theta, m1, m2, m3, monotonic=True, easy_margin=easy_margin)
    df = target_logit_slope(theta, m1, m2, m3, monotonic=True, easy_margin=easy_margin)
    return _cross_entropy(s * f, s * df, s * other_cos, int(num_classes))


def a_softmax_sample_loss(theta, norm: float, num_classes: int, m: int = 4, lam: float = 5.0,
                          other_cos: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """:func:`sample_loss` for A-Softmax at feature norm ‖x‖: target ‖x‖·(λ cos θ + ψ(θ))/(1 + λ)."""
    _check_ce(norm, num_classes, other_cos)
    curve = Fig4bCurve("a_softmax", "A-Softmax", "a_softmax", {"m": m, "lam": lam})
    theta = np.asarray(theta, dtype=float)
    return _cross_entropy(norm * curve.evaluate(theta), norm * curve.slope(theta), norm * other_cos,
                          int(num_classes))


# ---------------------------------------------------------------------------------------------
# Fig. 5: binary decision margins


def _train_curve(m1: float, m2: float, m3: float) -> Callable[[np.ndarray], np.ndarray]:
    _check_margins(m1, m2, m3)
    return lambda t: target_logit(t, m1, m2, m3, monotonic=True)


def boundary_theta2(theta1, m1: float = 1.0, m2: float = 0.0, m3: float = 0.0) -> np.ndarray:
    """Class 1's boundary on the (θ1, θ2) plane: f(θ1) = cos θ2 ⇒ θ2 = arccos(clip(f(θ1), −1, 1)) (Fig. 5).

    Class 1 wins above it (θ2 larger); class 2's boundary is the mirror image θ1 = boundary_theta2(θ2).
    ArcFace gives θ2 = θ1 + m2, CosFace cos θ1 − m3 = cos θ2, SphereFace cos(m1·θ1) = cos θ2.
    """
    f = _train_curve(m1, m2, m3)
    return np.arccos(np.clip(f(np.asarray(theta1, dtype=float)), -1.0, 1.0))


def _wins(theta_own, theta_other, m1: float, m2: float, m3: float, curve: Fig4bCurve | None) -> np.ndarray:
    """Does a sample θ_own from its centre and θ_other from the other's win its class?  f(θ_own) > cos θ_other for
    a margin (m1, m2, m3); for a loss curve, its own two logits (:meth:`Fig4bCurve.pair`)."""
    if curve is not None and curve.kind == "loss":
        own, other = curve.pair(theta_own, theta_other)
        return own > other
    f = _train_curve(*(curve.margins if curve is not None else (m1, m2, m3)))
    return f(np.asarray(theta_own, dtype=float)) > np.cos(theta_other)


def decide(theta1, theta2, m1: float = 1.0, m2: float = 0.0, m3: float = 0.0, *,
           curve: Fig4bCurve | None = None) -> np.ndarray:
    """Fig. 5's two-class rule: class k wins iff f(θ_k) > cos θ_other (for a loss ``curve``: iff its target logit
    beats the other class's logit as the loss computes both, e.g. CurricularFace's changed negatives).

    Returns CLASS1, CLASS2, NEITHER (the margin) or BOTH (only when the margin is negative, e.g. m1 < 1).
    """
    t1, t2 = np.broadcast_arrays(np.asarray(theta1, dtype=float), np.asarray(theta2, dtype=float))
    win1 = _wins(t1, t2, m1, m2, m3, curve)
    win2 = _wins(t2, t1, m1, m2, m3, curve)
    return np.where(win1 & win2, BOTH, np.where(win1, CLASS1, np.where(win2, CLASS2, NEITHER)))


def _check_phi(phi: np.ndarray) -> None:
    if not np.all(np.isfinite(phi)) or np.any(phi < 0) or np.any(phi > math.pi + 1e-12):
        raise ValueError("the angle φ between W1 and W2 must lie in [0, π]")


def margin_crossing(phi, m1: float = 1.0, m2: float = 0.0, m3: float = 0.0, iterations: int = 80, *,
                    curve: Fig4bCurve | None = None, grid: int = 1441) -> np.ndarray:
    """t* ∈ [0, φ] where class 1's region ends on the arc from W1 (angle 0) to W2 (angle φ).

    Solves f(t) = cos(φ − t) by vectorised bisection (the left side decreases, the right increases, so
    the crossing is unique); t* = 0 when class 1 wins nowhere on the arc, i.e. f(0) ≤ cos φ.  For a loss
    ``curve`` (whose curve may jump, as MagFace's easy margin): the end of the first run of wins over ``grid``
    points of [0, φ], refined by bisection within its grid cell.
    """
    phi = np.asarray(phi, dtype=float)
    _check_phi(phi)
    phi = np.minimum(phi, math.pi)
    if curve is not None and curve.kind == "loss":
        t = phi[..., None] * np.linspace(0.0, 1.0, grid)
        win = _wins(t, phi[..., None] - t, m1, m2, m3, curve)
        whole = win.all(axis=-1)
        first_loss = np.where(whole, grid - 1, np.argmin(win, axis=-1))
        lo = np.take_along_axis(t, np.maximum(first_loss - 1, 0)[..., None], axis=-1)[..., 0]
        hi = np.take_along_axis(t, first_loss[..., None], axis=-1)[..., 0]
        for _ in range(30):  # bisection inside the grid cell where the first run of wins ends
            mid = 0.5 * (lo + hi)
            above = _wins(mid, phi - mid, m1, m2, m3, curve)
            lo, hi = np.where(above, mid, lo), np.where(above, hi, mid)
        end = np.where(whole, phi, 0.5 * (lo + hi))
        return np.where(win[..., 0], end, 0.0)
    if curve is not None:
        m1, m2, m3 = curve.margins
    f = _train_curve(m1, m2, m3)
    lo, hi = np.zeros_like(phi), phi.copy()
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        above = f(mid) > np.cos(phi - mid)
        lo, hi = np.where(above, mid, lo), np.where(above, hi, mid)
    t = 0.5 * (lo + hi)
    return np.where(f(np.zeros_like(phi)) > np.cos(phi), t, 0.0)


def margin_width(phi, m1: float = 1.0, m2: float = 0.0, m3: float = 0.0, *,
                 curve: Fig4bCurve | None = None) -> np.ndarray:
    """Angular width of the grey band on the arc between W1 and W2 at angle φ apart (Fig. 5): φ − 2t*.

    = φ when the margin swallows the whole arc (φ ≤ :func:`swallow_angle`); negative when the classes
    overlap (a negative margin, e.g. m1 < 1 with m2 = m3 = 0).  ArcFace: exactly m2 for every φ > m2;
    CosFace and SphereFace: it changes with φ.
    """
    phi = np.asarray(phi, dtype=float)
    return phi - 2.0 * margin_crossing(phi, m1, m2, m3, curve=curve)  # the two-class rule is symmetric


def swallow_angle(m1: float = 1.0, m2: float = 0.0, m3: float = 0.0, *, curve: Fig4bCurve | None = None,
                  grid: int = 3601) -> float:
    """φ_c = arccos(f(0)) = arccos(cos m2 − m3): for φ ≤ φ_c neither class wins anywhere on the arc.

    ArcFace: φ_c = m2; CosFace: arccos(1 − m3); SphereFace and Norm-Softmax: 0.  For a loss ``curve``: the
    largest φ at which a sample on W1 itself does not win (π if it never does), on a grid of [0, π] refined by
    bisection.
    """
    if curve is not None and curve.kind == "loss":
        phi = np.linspace(0.0, math.pi, grid)
        win = _wins(np.zeros_like(phi), phi, 1.0, 0.0, 0.0, curve)
        lost = np.flatnonzero(~win)
        if not lost.size or lost[-1] == grid - 1:
            return 0.0 if not lost.size else math.pi
        lo, hi = float(phi[lost[-1]]), float(phi[lost[-1] + 1])
        for _ in range(30):  # refine within the grid cell
            mid = 0.5 * (lo + hi)
            lo, hi = (lo, mid) if bool(_wins(np.zeros(()), np.array(mid), 1.0, 0.0, 0.0, curve)) else (mid, hi)
        return 0.5 * (lo + hi)
    if curve is not None:
        m1, m2, m3 = curve.margins
    return float(np.arccos(np.clip(_train_curve(m1, m2, m3)(np.zeros(())), -1.0, 1.0)))


@dataclass(frozen=True)
class WidthRange:
    """The readout of :func:`width_range`: min/max width (radians) over the φ where the arc is not swallowed."""

    phi: np.ndarray
    width: np.ndarray
    min: float
    max: float
    constant: bool
    swallow_angle: float

    def describe(self) -> str:
        lo, hi, sw = (math.degrees(v) for v in (self.min, self.max, self.swallow_angle))
        where = f"φ > {sw:.2f}°" if sw > 0 else "φ"
        if self.constant:
            text = f"width {lo:.2f}° for every {where}"
        else:
            text = f"width varies from {lo:.2f}° to {hi:.2f}°" + (f" over {where}" if sw > 0 else "")
        return text + (f"; for φ ≤ {sw:.2f}° the margin swallows the whole arc (its width is φ)" if sw > 0 else "")


def width_range(phi_lo: float, phi_hi: float, m1: float = 1.0, m2: float = 0.0, m3: float = 0.0,
                n: int = 361, tol: float = 1e-7, *, curve: Fig4bCurve | None = None) -> WidthRange:
    """Is the margin width constant over φ ∈ [phi_lo, phi_hi] (radians)?  Min/max over φ > φ_c.

    φ at or below :func:`swallow_angle` (where the width is just φ) is left out of min/max; if the whole
    range is swallowed, min/max are taken over all of it.
    """
    if not (0.0 <= phi_lo <= phi_hi <= math.pi):
        raise ValueError("need 0 ≤ phi_lo ≤ phi_hi ≤ π")
    loss = curve is not None and curve.kind == "loss"
    sw = swallow_angle(m1, m2, m3, curve=curve)
    phi = np.linspace(phi_lo, phi_hi, n)
    width = margin_width(phi, m1, m2, m3, curve=curve)
    tol = max(tol, 1e-4) if loss else tol  # a loss curve's logits are float32
    open_arc = phi > sw + tol
    w = width[open_arc] if open_arc.any() else width
    lo, hi = float(w.min()), float(w.max())
    return WidthRange(phi, width, lo, hi, bool(hi - lo <= tol), sw)


def circle_regions(phi: float, m1: float = 1.0, m2: float = 0.0, m3: float = 0.0, n: int = 721,
                   alpha=None, *, curve: Fig4bCurve | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Directions α on the unit circle (W1 at angle 0, W2 at φ) and their labels under :func:`decide`.

    θ1, θ2 are the angular distances from α to W1 and W2 (in [0, π]).  Default α: n points over
    [0, 2π] (endpoint included, 0.5° apart for n = 721).  Returns (alpha, labels).
    """
    _check_phi(np.asarray(phi, dtype=float))
    alpha = np.linspace(0.0, 2 * math.pi, n) if alpha is None else np.asarray(alpha, dtype=float)
    theta1 = angular_distance(alpha, 0.0)
    theta2 = angular_distance(alpha, phi)
    return alpha, decide(theta1, theta2, m1, m2, m3, curve=curve)


def angular_distance(a, b) -> np.ndarray:
    """The angle in [0, π] between directions a and b (radians) on the circle."""
    d = np.mod(np.asarray(a, dtype=float) - np.asarray(b, dtype=float), 2 * math.pi)
    return np.minimum(d, 2 * math.pi - d)


# ---------------------------------------------------------------------------------------------
# Fig. 5, plain Softmax: a line in feature space, no margin


def softmax_boundary(w1, w2, b1: float = 0.0, b2: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """The Softmax boundary (W1 − W2)·x + b1 − b2 = 0 (Fig. 5, left) as (point, unit direction).

    The point is the one nearest the origin.  It has no margin, and a feature's class depends on its
    norm as well as its angle unless b1 = b2.  Raises ValueError when W1 = W2 (no line).
    """
    normal = np.asarray(w1, dtype=float) - np.asarray(w2, dtype=float)
    if normal.shape != (2,):
        raise ValueError("W1 and W2 must be 2-D vectors")
    nn2 = float(normal @ normal)
    if nn2 < 1e-18:
        raise ValueError("W1 = W2: the two logits differ only by the bias, so there is no boundary line")
    point = -(b1 - b2) * normal / nn2
    direction = np.array([-normal[1], normal[0]]) / math.sqrt(nn2)
    return point, direction


def clip_line(point, direction, box: tuple[float, float, float, float]) -> np.ndarray | None:
    """Endpoints (2×2) of the line point + t·direction inside box = (xmin, xmax, ymin, ymax), or None."""
    p, d = np.asarray(point, dtype=float), np.asarray(direction, dtype=float)
    t_lo, t_hi = -np.inf, np.inf
    for axis, (lo, hi) in enumerate(((box[0], box[1]), (box[2], box[3]))):
        if abs(d[axis]) < 1e-15:
            if not lo <= p[axis] <= hi:
                return None
            continue
        ta, tb = sorted(((lo - p[axis]) / d[axis], (hi - p[axis]) / d[axis]))
        t_lo, t_hi = max(t_lo, ta), min(t_hi, tb)
    if t_lo > t_hi:
        return None
    return np.stack([p + t_lo * d, p + t_hi * d])


def softmax_boundary_segment(w1, w2, b1: float = 0.0, b2: float = 0.0,
                             box: tuple[float, float, float, float] = (-2.0, 2.0, -2.0, 2.0)) -> np.ndarray | None:
    """:func:`softmax_boundary` clipped to a box: endpoints as a 2×2 array, or None if it misses the box."""
    return clip_line(*softmax_boundary(w1, w2, b1, b2), box)


def softmax_decide(x, w1, w2, b1: float = 0.0, b2: float = 0.0) -> np.ndarray:
    """Softmax's winner for features x (…, 2): CLASS1 if W1·x + b1 > W2·x + b2, CLASS2 if less, NEITHER on a tie."""
    x = np.asarray(x, dtype=float)
    diff = x @ (np.asarray(w1, dtype=float) - np.asarray(w2, dtype=float)) + (b1 - b2)
    return np.where(diff > 0, CLASS1, np.where(diff < 0, CLASS2, NEITHER))


def softmax_flip_radius(angle: float, w1, w2, b1: float = 0.0, b2: float = 0.0) -> float | None:
    """The norm r > 0 at which a feature r·(cos a, sin a) changes class under Softmax, or None.

    Solves (W1 − W2)·u·r + b1 − b2 = 0: with unequal biases the class of a direction depends on ‖x‖,
    which is what the normalised losses remove.
    """
    u = np.array([math.cos(angle), math.sin(angle)])
    slope = float(u @ (np.asarray(w1, dtype=float) - np.asarray(w2, dtype=float)))
    if abs(slope) < 1e-15:
        return None
    r = -(b1 - b2) / slope
    return r if r > 0 else None


def curve_params(curve: Fig4bCurve) -> dict[str, Any]:
    """The parameters of a curve as a plain dict (for JSON): a loss curve also gives its loss, norm and state."""
    def plain(k: str, v: Any) -> Any:
        return v if isinstance(v, bool) else int(v) if k in ("m", "k") else float(v)

    out = {k: plain(k, v) for k, v in curve.params.items()}
    if curve.kind == "loss":
        out = {"loss": curve.loss, **out, **({"norm": curve.norm} if curve.norm is not None else {}),
               **({"state": dict(curve.state)} if curve.state else {})}
    return out


# Best possible minimum angle between n unit vectors (degrees): 2-D is 360/n; 3-D is the Tammes problem.
_TAMMES_DEG = {2: 180.0, 3: 120.0, 4: 109.4712, 5: 90.0, 6: 90.0, 7: 77.8695, 8: 74.8585, 9: 70.5288,
               10: 66.1468, 11: 63.4349, 12: 63.4349}


def max_min_centre_angle(num_classes: int, dim: int) -> float | None:
    """The largest possible minimum angle (radians) between ``num_classes`` centres in ``dim`` dimensions.

    2-D: 2π/n (n ≥ 2); 3-D: the Tammes problem (tabulated up to 12); None where not known here.
    """
    if num_classes < 2:
        raise ValueError("need at least 2 classes")
    if dim == 2:
        return math.pi if num_classes == 2 else 2 * math.pi / num_classes
    if dim == 3 and num_classes in _TAMMES_DEG:
        return math.radians(_TAMMES_DEG[num_classes])
    if num_classes <= dim + 1:  # a regular simplex
        return math.acos(-1.0 / (num_classes - 1))
    return None


def margin_fit_warning(num_classes: int, dim: int, m1: float = 1.0, m2: float = 0.0, m3: float = 0.0) -> str | None:
    """A teaching message when the margin cannot be met between neighbouring centres, else None.

    Two centres φ apart leave no room for either class when φ ≤ swallow_angle(m1, m2, m3) (Fig. 5); with n
    centres in d dimensions the neighbours are at most :func:`max_min_centre_angle` apart. CosFace's own
    bound for 8 classes on a circle, m3 ≤ 1 − cos(π/4), is the same statement.
    """
    best = max_min_centre_angle(num_classes, dim)
    need = swallow_angle(m1, m2, m3)
    if best is None or need < best:
        return None
    return (f"With {num_classes} classes in {dim}-D, neighbouring centres can be at most {math.degrees(best):.1f}° "
            f"apart, but this margin needs more than {math.degrees(need):.1f}° between two centres before either "
            "class can win anywhere between them. Training still runs, but the loss cannot reach zero: use a "
            "smaller margin or fewer classes.")
