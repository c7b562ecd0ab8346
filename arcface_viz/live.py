"""A live training session: trainers advanced together, with the history the pictures need.

Streamlit-free, so a page keeps one of these in its session state and the tests drive it directly.
The history of snapshots is bounded (thinned evenly, the first kept) so a long run never grows without
limit; the scalar curves (loss, accuracy) are kept in full.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


class LiveSession:
    """Trainers (one, or two in compare mode) that advance together; ``structure`` is the part of the
    settings that can only change by building new trainers (data, dimension, loss, seed, …)."""

    def __init__(self, trainers: Sequence, structure: Mapping[str, Any], max_snapshots: int = 120,
                 max_steps: int | None = None) -> None:
        if max_snapshots < 3:
            raise ValueError("max_snapshots must be at least 3 (start, middle, now)")
        self.trainers = list(trainers)
        self.structure = dict(structure)
        self.max_snapshots = max_snapshots
        self.max_steps = max_steps
        self.running = False
        first = [t.snapshot() for t in self.trainers]
        self.history = [[s] for s in first]
        self.scalars = [[s.summary()] for s in first]

    @property
    def step(self) -> int:
        return self.history[0][-1].step

    @property
    def finished(self) -> bool:
        return self.max_steps is not None and self.step >= self.max_steps

    def advance(self, k: int) -> None:
        """Train every trainer k more steps (fewer at the step limit) and record the snapshots."""
        if self.max_steps is not None:
            k = min(k, self.max_steps - self.step)
        if k <= 0:
            self.running = False
            return
        for i, trainer in enumerate(self.trainers):
            snap = trainer.advance(k)
            self.history[i].append(snap)
            self.scalars[i].append(snap.summary())
            if len(self.history[i]) > self.max_snapshots:
                h = self.history[i]
                self.history[i] = [h[0], *h[1:-1:2], h[-1]]  # halve the middle, keep the start and now
        if self.finished:
            self.running = False

    def changed(self, structure: Mapping[str, Any]) -> list[str]:
        """Names of structural settings that differ from the ones the trainers were built with."""
        return [k for k in structure if structure[k] != self.structure.get(k)]

    def state_curves(self, i: int = 0) -> dict[str, np.ndarray]:
        """The loss's running state over the steps of trainer i (``steps`` and one array per quantity; none for a
        loss without state)."""
        rows = [r for r in self.scalars[i] if r.get("state")]
        if not rows:
            return {}
        out = {"steps": np.array([r["step"] for r in rows], dtype=float)}
        for key in rows[-1]["state"]:
            out[key] = np.array([r["state"].get(key, np.nan) for r in rows], dtype=float)
        return out

    def curves(self, i: int = 0) -> dict[str, np.ndarray]:
        """Full scalar history of trainer i: steps, loss, train_acc, test_acc (NaN where there is none)."""
        rows = self.scalars[i]
        pick = lambda key: np.array([np.nan if r[key] is None else r[key] for r in rows], dtype=float)  # noqa: E731
        return {"steps": pick("step"), "loss": pick("loss"), "train_acc": pick("train_acc"),
                "test_acc": pick("test_acc")}
