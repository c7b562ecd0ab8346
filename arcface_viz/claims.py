"""The lessons' comparative sentences, each tied to numbers computed from the figure drawn beside it.

A page never hard-codes a comparison between losses.  It asks this module for the numbers of what it draws
(a Fig. 3 toy run, the Fig. 5 margin widths, the paper's Table 3, one sample's loss curve) and renders a
:class:`Claim` with them, so the numbers in the text are always those of the figure.  Whether the *words*
still hold is checked by ``tests/test_claims.py`` on the very runs the pages use: when a data set, a
default or a seed changes and a sentence no longer describes its figure, that test fails and names it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import stats

# ---------------------------------------------------------------------------------------------------
# Claims
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    """One sentence of a page: markdown ``text`` with ``{fields}`` filled from the figure's numbers, and
    ``holds(numbers)``, the condition under which its words are true."""

    key: str
    text: str
    holds: Callable[[Mapping[str, Any]], bool]

    def render(self, numbers: Mapping[str, Any]) -> str:
        return self.text.format(**numbers)

    def failure(self, numbers: Mapping[str, Any]) -> str | None:
        """None when the claim holds, else a message that names the sentence and shows its numbers."""
        if self.holds(numbers):
            return None
        return f"claim {self.key!r} no longer holds for its figure: “{self.render(numbers)}”"


def _by_key(*claims: Claim) -> dict[str, Claim]:
    return {c.key: c for c in claims}


def apart_words(gap: float) -> str:
    """How far apart two classes are, for a sentence: "are only 8.0° apart" or "overlap by 33.2°"."""
    return f"are only {gap:.1f}° apart" if gap >= 0 else f"overlap by {-gap:.1f}°"


def gap_readout(snap: Any) -> str:
    """The line under an embedding figure: the gap between its closest identities (stats.gap_deg)."""
    try:
        gap = stats.gap_deg(snap.embeddings, snap.labels)
    except ValueError:  # fewer than two classes drawn, or a class whose embeddings cancel out
        return "Gap between the closest identities: —"
    return f"Gap between the closest identities: **{gap:.1f}°**" + (" (they overlap)" if gap < 0 else "")


# ---------------------------------------------------------------------------------------------------
# Fig. 3: Softmax against ArcFace on the fig3 toy, 2-D (explainer steps 1 and 6)
# ---------------------------------------------------------------------------------------------------

#: The explainer's Fig. 3 runs: the toy lesson's defaults on fig3 in 2-D, two losses from one start.
FIG3_CONFIG: dict[str, Any] = {"dataset": "fig3", "dim": 2}
FIG3_LOSSES: tuple[str, str] = ("softmax", "arcface")
FIG3_STEPS = 1000
FIG3_SEED = 0
EVIDENT_GAP_DEG = 10.0  # a gap the eye sees at once on the circle
NARROW_GAP_DEG = 15.0  # neighbours closer than this look like touching fans, not separate clusters


def fig3_runs(seed: int = FIG3_SEED, steps: int = FIG3_STEPS) -> tuple[Any, Any]:
    """Snapshots of Softmax and ArcFace after ``steps`` steps on fig3 (2-D), same data and initial weights."""
    from .training import build_compare_trainers

    pair = build_compare_trainers({**FIG3_CONFIG, "seed": seed}, losses=FIG3_LOSSES)
    return tuple(t.advance(steps) for t in pair)


def fig3_numbers(softmax: Any, arcface: Any) -> dict[str, Any]:
    """What the Fig. 3 sentences quote: each run's gap between the closest identities, its mean angle to
    the class's feature centre (Intra on the drawn sample) and its test accuracy."""
    out: dict[str, Any] = {"steps": int(arcface.step)}
    for name, snap in (("softmax", softmax), ("arcface", arcface)):
        gap = stats.gap_deg(snap.embeddings, snap.labels)
        intra = stats.angle_statistics(None, snap.embeddings, snap.labels)["Intra1"]
        out.update({f"gap_{name}": gap, f"apart_{name}": apart_words(gap), f"intra_{name}": intra,
                    f"acc_{name}": 100.0 * float(snap.test_acc)})
    sm, arc = out["gap_softmax"], out["gap_arcface"]
    out["arcface_vs_softmax"] = (f"{arc / sm:.1f} times Softmax's" if sm > 0
                                 else "where Softmax's closest identities overlap")
    return out


FIG3_CLAIMS: dict[str, Claim] = _by_key(
    Claim("softmax_touching",
          "The classes separate (test accuracy {acc_softmax:.1f} %), but nothing pulls them apart on the circle: "
          "the two closest neighbouring identities {apart_softmax}. A new face falling near such a boundary is "
          "ambiguous.",
          lambda n: n["acc_softmax"] >= 99.0 and n["gap_softmax"] < NARROW_GAP_DEG),
    Claim("arcface_gap",
          "Softmax leaves ambiguous boundaries: its two closest neighbouring identities {apart_softmax}. ArcFace "
          "leaves an evident gap between the closest classes, {gap_arcface:.1f}° ({arcface_vs_softmax}), and "
          "packs each identity more tightly (mean angle to its class centre {intra_arcface:.1f}° against "
          "{intra_softmax:.1f}°).",
          lambda n: (n["gap_arcface"] >= max(2.0 * n["gap_softmax"], EVIDENT_GAP_DEG)
                     and n["gap_softmax"] < NARROW_GAP_DEG and n["intra_arcface"] < n["intra_softmax"])),
)


# ---------------------------------------------------------------------------------------------------
# Fig. 5: the width of the margin (explainer step 5, decision-margins lesson)
# ---------------------------------------------------------------------------------------------------


def band_width_at_pole_deg(phi: float, m: float) -> float:
    """ArcFace's grey band on the sphere (3-D), measured through the point 90° from both centres W1, W2
    (φ apart): the band |θ1 − θ2| < m crosses that point's great circle at sin t = sin(m/2)/sin(φ/2), so
    it is 2t wide there, against m on the arc between the centres.  Radians in, degrees out."""
    return math.degrees(2.0 * math.asin(min(1.0, math.sin(m / 2) / math.sin(phi / 2))))


def width_numbers() -> dict[str, Any]:
    """Each Fig. 5 curve's width range on the circle (degrees), plus ArcFace's band on the sphere."""
    from .geometry import FIG5_WIDTH_CURVES, width_range

    out: dict[str, Any] = {}
    for c in FIG5_WIDTH_CURVES:
        r = width_range(0.0, math.pi, *c.margins)
        out.update({f"{c.key}_min": math.degrees(r.min), f"{c.key}_max": math.degrees(r.max),
                    f"{c.key}_constant": r.constant, f"{c.key}_swallow": math.degrees(r.swallow_angle)})
    out["pole_phi"], out["pole_m"] = 60.0, 0.5
    out["arc_width_3d"] = math.degrees(0.5)
    out["pole_width_3d"] = band_width_at_pole_deg(math.radians(60.0), 0.5)
    return out


WIDTH_CLAIMS: dict[str, Claim] = _by_key(
    Claim("arcface_constant_on_circle",
          "On the circle (2-D, the figures below), ArcFace's grey band is {arcface_min:.2f}° wide, its margin "
          "m₂, for every angle φ between the centres above {arcface_swallow:.2f}° (below that it swallows the "
          "whole arc). CosFace's band changes with φ ({cosface_min:.1f}°–{cosface_max:.1f}°), and so does "
          "SphereFace's ({sphereface_min:.1f}°–{sphereface_max:.1f}°).",
          lambda n: (n["arcface_constant"] and abs(n["arcface_min"] - math.degrees(0.5)) < 0.01
                     and not n["cosface_constant"] and not n["sphereface_constant"])),
    Claim("arcface_not_constant_in_3d",
          "That constant width is a 2-D fact. On the sphere, at φ = {pole_phi:.0f}° and m = {pole_m}, the band "
          "is {arc_width_3d:.2f}° wide on the arc between the centres but {pole_width_3d:.1f}° at the point "
          "90° from both.",
          lambda n: n["pole_width_3d"] > n["arc_width_3d"] + 1.0),
    Claim("constant_widths",
          "On the circle, ArcFace's margin is a constant angle, {arcface_min:.2f}° for every φ above "
          "{arcface_swallow:.2f}°, and Norm-Softmax's is a constant {norm_softmax_min:.0f}° (no margin); "
          "SphereFace's ({sphereface_min:.1f}°–{sphereface_max:.1f}°) and CosFace's "
          "({cosface_min:.1f}°–{cosface_max:.1f}°) depend on how far apart the centres are.",
          lambda n: (n["arcface_constant"] and n["norm_softmax_constant"] and abs(n["norm_softmax_max"]) < 1e-6
                     and not n["sphereface_constant"] and not n["cosface_constant"])),
)


# ---------------------------------------------------------------------------------------------------
# The paper's Table 3 (explainer step 7)
# ---------------------------------------------------------------------------------------------------


def table3_numbers() -> dict[str, Any]:
    """The paper's Table 3 as flat names: ``ns_wec``, ``arcface_winter``, ``intral_intra1``, …"""
    names = {"NS": "ns", "ArcFace": "arcface", "IntraL": "intral", "InterL": "interl"}
    return {f"{names[col]}_{row.lower().replace('-', '')}": stats.PAPER_TABLE3[row][col]
            for row in stats.TABLE3_ROWS for col in names}


TABLE3_CLAIMS: dict[str, Claim] = _by_key(
    Claim("table3",
          "ArcFace brings each class centre $W_j$ close to where its samples really are (W-EC {arcface_wec:.0f}° "
          "against {ns_wec:.0f}° for Norm-Softmax) while keeping centres at least as far apart (W-Inter "
          "{arcface_winter:.1f}° against {ns_winter:.1f}°). The Intra-loss squeezes classes (Intra1 "
          "{intral_intra1:.1f}° against Norm-Softmax's {ns_intra1:.1f}°) but collapses the centres together "
          "(W-Inter {intral_winter:.1f}°); the Inter-loss spreads centres (W-Inter {interl_winter:.1f}°) but "
          "leaves classes loose (Intra1 {interl_intra1:.1f}°).",
          lambda n: (n["arcface_wec"] < n["ns_wec"] and n["arcface_winter"] > n["ns_winter"]
                     and n["intral_intra1"] < n["ns_intra1"] and n["intral_winter"] < n["ns_winter"]
                     and n["interl_winter"] > n["ns_winter"] and n["interl_intra1"] > n["ns_intra1"])),
)


# ---------------------------------------------------------------------------------------------------
# One sample's loss: a margin keeps the push on (explainer step 8)
# ---------------------------------------------------------------------------------------------------

PUSH_CURVES = ("softmax", "arcface", "cosface")
PUSH_S, PUSH_CLASSES, PUSH_SLOPE = 64.0, 10575, 0.1


def push_numbers(s: float = PUSH_S, num_classes: int = PUSH_CLASSES, slope: float = PUSH_SLOPE) -> dict[str, Any]:
    """For each of :data:`PUSH_CURVES`: the angle θ (degrees) below which one sample's loss slope dL/dθ
    drops under ``slope`` per radian (the push toward its centre has stopped), at scale s with n classes."""
    from .geometry import FIG4B_BY_KEY

    theta = np.radians(np.linspace(0.0, 180.0, 3601))
    out: dict[str, Any] = {"s": s, "classes": num_classes, "slope": slope}
    for key in PUSH_CURVES:
        _, grad = FIG4B_BY_KEY[key].sample_loss(theta, s, num_classes)
        out[f"{key}_stops"] = float(np.degrees(theta[np.argmax(grad > slope)]))
    return out


PUSH_CLAIMS: dict[str, Claim] = _by_key(
    Claim("margin_keeps_pushing",
          "**A margin keeps the push on.** Below, one sample's loss and its slope $dL/d\\theta$ at $s = {s:.0f}$ "
          "with {classes:,} classes: without a margin the slope drops under {slope} per radian once θ is below "
          "{softmax_stops:.1f}°, and the push stops; with ArcFace's margin it goes on down to "
          "{arcface_stops:.1f}° (CosFace's: {cosface_stops:.1f}°).",
          lambda n: n["arcface_stops"] < n["softmax_stops"] and n["cosface_stops"] < n["softmax_stops"]),
)


# ---------------------------------------------------------------------------------------------------
# After ArcFace: the live readouts of the new pictures (toy and MNIST lessons) and the explainer's step
# ---------------------------------------------------------------------------------------------------


def norm_readout(snap: Any) -> str:
    """The line under the norm-as-radius figure: the mean feature norm of the quarter of drawn samples nearest
    their centre against the quarter farthest from it (θ_y quartiles), in the words the numbers allow."""
    from .plots.norms import own_angles_deg

    norms = np.asarray(getattr(snap, "norms", None) if getattr(snap, "norms", None) is not None else [], float)
    if len(norms) < 8:
        return "Too few samples drawn to compare norms."
    theta = own_angles_deg(snap.embeddings, snap.labels, snap.centres)
    lo, hi = np.percentile(theta, [25, 75])
    near, far = float(norms[theta <= lo].mean()), float(norms[theta >= hi].mean())
    words = "longer than" if near > 1.05 * far else "shorter than" if far > 1.05 * near else "about as long as"
    return (f"The quarter of samples nearest their centre (θ<sub>y</sub> ≤ {lo:.0f}°) have mean ‖x‖ = "
            f"**{near:.2f}**, {words} the quarter farthest from it (θ<sub>y</sub> ≥ {hi:.0f}°): **{far:.2f}**.")


def noisy_readout(noisy: Any) -> str:
    """The line under a Sub-center ArcFace figure on noisy data: where the flipped-label training samples sit,
    against the clean ones, and what the 75° cleaning step would drop (training.NoisyLabels)."""
    if noisy is None or not noisy.count:
        return "No training label is known to be flipped here (Gaussian blobs have label noise)."
    away = 100 * (1 - noisy.noisy_at_dominant)
    clean_away = 100 * (1 - noisy.clean_at_dominant)
    words = "more often than" if away > clean_away + 5 else "about as often as" if away > clean_away - 5 else \
        "less often than"
    return (f"Of the **{noisy.count}** training samples with flipped labels (✕), **{away:.0f}%** sit nearest a "
            f"non-dominant sub-centre of their (wrong) class, {words} the clean samples (**{clean_away:.0f}%**). "
            f"The cleaning step (drop samples > 75° from their dominant sub-centre) would drop "
            f"**{100 * noisy.noisy_dropped:.0f}%** of the flipped and **{100 * noisy.clean_dropped:.0f}%** of the "
            "clean ones.")


def state_readout(state: Mapping[str, Any]) -> str:
    """The loss's running state in a few words, e.g. ``μ = 3.41 · σ = 0.82`` (nothing for a loss without)."""
    symbols = {"batch_mean": "μ", "batch_std": "σ", "t": "t", "s": "s"}
    return " · ".join(f"{symbols.get(k, k)} = {v:.3g}" for k, v in state.items() if isinstance(v, (int, float)))


#: The explainer's "after ArcFace" run: Sub-center ArcFace on Gaussian blobs with 10 % flipped labels, 2-D.
NOISY_CONFIG: dict[str, Any] = {"dataset": "blobs", "dim": 2, "loss": "subcenter_arcface",
                                "data_params": {"label_noise": 0.1}}
NOISY_STEPS = 1500


def noisy_run(seed: int = 0, steps: int = NOISY_STEPS) -> Any:
    """The snapshot of the explainer's Sub-center ArcFace run on noisy blobs after ``steps`` steps."""
    from .training import ToyConfig

    return ToyConfig.of({**NOISY_CONFIG, "seed": seed}).build().advance(steps)


def noisy_numbers(snap: Any) -> dict[str, Any]:
    n = snap.noisy
    return {"count": n.count, "steps": snap.step, "noisy_away": 100 * (1 - n.noisy_at_dominant),
            "clean_away": 100 * (1 - n.clean_at_dominant), "noisy_dropped": 100 * n.noisy_dropped,
            "clean_dropped": 100 * n.clean_dropped}


NOISY_CLAIMS = _by_key(
    Claim("noisy_away",
          "After {steps:,} steps, **{noisy_away:.0f}%** of the {count} training samples with flipped labels sit "
          "nearest a *non-dominant* sub-centre of the class they were wrongly given, against **{clean_away:.0f}%** "
          "of the clean samples: the extra sub-centres collect the noise, and the dominant one stays with the "
          "clean data.",
          lambda n: n["noisy_away"] > 2 * n["clean_away"] and n["noisy_away"] >= 30),
    Claim("cleaning",
          "Dropping every sample more than 75° from its class's dominant sub-centre (the paper's cleaning step) "
          "removes **{noisy_dropped:.0f}%** of the flipped samples and only **{clean_dropped:.0f}%** of the clean "
          "ones.",
          lambda n: n["noisy_dropped"] > 5 * max(n["clean_dropped"], 1.0)),
)
