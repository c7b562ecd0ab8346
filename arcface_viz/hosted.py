"""Limits for a public, shared deployment (Streamlit Community Cloud: CPU only, 0.7–2.7 GB RAM).

When ``ARCFACE_VIZ_HOSTED=1`` (see :mod:`arcface_viz.settings`) every visitor's training is capped so
that one visitor cannot starve the others, and the backend stays locked.  Locally nothing is capped
beyond what keeps a session bounded.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import time
from dataclasses import dataclass, replace

from .params import Spec
from .settings import hosted


@dataclass(frozen=True)
class Limits:
    """Per-visitor caps: optimizer steps of a live run, toy samples per class, training images, image batch
    size (a CNN step's activations are most of a run's memory), threads."""

    max_steps: int
    max_samples_per_class: int
    max_train_images: int | None
    torch_threads: int | None
    max_batch_size: int | None = None
    notice: str = ""


LOCAL = Limits(max_steps=50_000, max_samples_per_class=1500, max_train_images=None, torch_threads=None)
HOSTED = Limits(
    max_steps=3_000, max_samples_per_class=300, max_train_images=6_000, torch_threads=1, max_batch_size=128,
    notice=("This is the shared online version: each live run stops after 3,000 steps, toy data sets have at "
            "most 300 samples per class, MNIST-style lessons use at most 6,000 training images in batches of "
            "at most 128, and the full-scale training backend is switched off. Install it on your own machine "
            "for the full app."),
)


def limits() -> Limits:
    """HOSTED when the app is served to the public, else LOCAL."""
    return HOSTED if hosted() else LOCAL


def capped(spec: Spec, lim: Limits | None = None) -> Spec:
    """``spec`` with its ranges cut to the limits (samples per class, training images, and the batch-size
    choices), defaults kept inside."""
    lim = lim or limits()
    caps = {"samples": lim.max_samples_per_class, "max_train": lim.max_train_images,
            "batch_size": lim.max_batch_size}
    params = []
    for p in spec:
        cap = caps.get(p.name)
        if cap is not None and p.max is not None and p.max > cap:
            p = replace(p, max=cap, default=min(p.default, cap))
        elif cap is not None and p.kind == "choice" and any(c > cap for c in p.choices):
            kept = tuple(c for c in p.choices if c <= cap)
            p = replace(p, choices=kept, default=p.default if p.default in kept else kept[-1])
        params.append(p)
    return Spec(tuple(params))


#: Modules that libraries import lazily, from whichever thread needs them first.  Streamlit runs each visitor's
#: script in a thread of its own, and a module that one thread is still importing is already in sys.modules,
#: where plotly's validators find it half-initialised from another visitor's thread ("partially initialized
#: module 'pandas' has no attribute 'Series'").
LAZY_IMPORTS = ("pandas", "pyarrow", "plotly.graph_objects")


def import_lazy_modules() -> list[str]:
    """Import :data:`LAZY_IMPORTS` now (once per server, before visitors' threads race to); the names imported."""
    import importlib

    return [importlib.import_module(name).__name__ for name in LAZY_IMPORTS]


@functools.cache
def _libc():
    """glibc through ctypes, or None (macOS, Windows, musl: the calls below then do nothing)."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        return libc if libc is not None and hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


def limit_malloc_arenas(n: int = 2) -> bool:
    """Cap glibc's per-thread malloc arenas (M_ARENA_MAX).  Streamlit runs each visitor's script in its own
    thread, and memory freed in one arena is not reused by another, so many arenas hold many idle copies
    of a training step's buffers.  Returns whether the cap was set (glibc only)."""
    libc = _libc()
    return bool(libc and libc.mallopt(-8, int(n)))  # M_ARENA_MAX = -8 in <malloc.h>


_released = [0.0]  # when release_memory last trimmed (monotonic seconds)


def release_memory(min_interval: float = 0.0) -> None:
    """Hand freed heap memory back to the operating system (glibc's malloc_trim); a no-op elsewhere.
    Called after live-training frames so a run's resident memory stays near what it uses; with
    ``min_interval`` at most that often server-wide (a trim walks the whole heap: with a class of visitors
    drawing frames, once per frame was a cost of its own)."""
    libc = _libc()
    now = time.monotonic()
    if libc is not None and now - _released[0] >= min_interval:
        _released[0] = now
        libc.malloc_trim(0)
