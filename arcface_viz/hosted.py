"""Limits for a public, shared deployment (Streamlit Community Cloud: CPU only, 0.7–2.7 GB RAM).

When ``ARCFACE_VIZ_HOSTED=1`` (see :mod:`arcface_viz.settings`) every visitor's training is capped so
that one visitor cannot starve the others, and the backend stays locked.  Locally nothing is capped
beyond what keeps a session bounded.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .params import Spec
from .settings import hosted


@dataclass(frozen=True)
class Limits:
    """Per-visitor caps: optimizer steps of a live run, toy samples per class, training images, threads."""

    max_steps: int
    max_samples_per_class: int
    max_train_images: int | None
    torch_threads: int | None
    notice: str = ""


LOCAL = Limits(max_steps=50_000, max_samples_per_class=1500, max_train_images=None, torch_threads=None)
HOSTED = Limits(
    max_steps=3_000, max_samples_per_class=300, max_train_images=6_000, torch_threads=1,
    notice=("This is the shared online version: each live run stops after 3,000 steps, toy data sets have at "
            "most 300 samples per class, MNIST-style lessons use at most 6,000 training images, and the "
            "full-scale training backend is switched off. Install it on your own machine for the full app."),
)


def limits() -> Limits:
    """HOSTED when the app is served to the public, else LOCAL."""
    return HOSTED if hosted() else LOCAL


def capped(spec: Spec, lim: Limits | None = None) -> Spec:
    """``spec`` with its ranges cut to the limits (samples per class, training images), defaults kept inside."""
    lim = lim or limits()
    caps = {"samples": lim.max_samples_per_class, "max_train": lim.max_train_images}
    params = []
    for p in spec:
        cap = caps.get(p.name)
        if cap is not None and p.max is not None and p.max > cap:
            p = replace(p, max=cap, default=min(p.default, cap))
        params.append(p)
    return Spec(tuple(params))
