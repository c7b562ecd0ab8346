"""Checkpoints of a run, ``RUN_DIR/checkpoints/``: every rank saves its own state, rank 0 then commits the step.

- ``rank_{r}.pt``: rank r's full state (backbone, its Partial FC shard, optimizer, scheduler, scaler, step,
  epoch, RNG states, config), written to a temporary file and moved into place; the previous one is kept as
  ``rank_{r}.prev.pt`` until every rank has its new one;
- ``latest.json``: ``{"step", "world_size"}``, written once every rank has saved: the step a resume starts from.

A run killed between a rank's new file and ``latest.json`` resumes from ``rank_{r}.prev.pt`` of the committed
step (:func:`load_rank_checkpoint`).
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .config import ConfigError
from .files import atomic_write, atomic_write_text


def rng_state(device: torch.device) -> dict[str, Any]:
    """torch, numpy, Python (and this GPU's) random states."""
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def read_latest(out: str | os.PathLike) -> dict[str, Any] | None:
    """``checkpoints/latest.json`` of a run directory ({"step", "world_size"}), or None if there is none."""
    p = Path(out) / "checkpoints" / "latest.json"
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def save_rank(ckpt_dir: Path, rank: int, state: dict[str, Any]) -> None:
    """Write rank ``rank``'s state; its last complete checkpoint becomes ``rank_{r}.prev.pt`` meanwhile."""
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    cur = ckpt_dir / f"rank_{rank}.pt"
    if cur.is_file():  # keep the last complete one until every rank has its new one
        os.replace(cur, ckpt_dir / f"rank_{rank}.prev.pt")
    atomic_write(cur, lambda f: torch.save(state, f))


def commit(ckpt_dir: Path, step: int, world_size: int) -> None:
    """Point ``latest.json`` at ``step`` (rank 0, once every rank has saved it)."""
    atomic_write_text(ckpt_dir / "latest.json", json.dumps({"step": step, "world_size": world_size}) + "\n")


def drop_previous(ckpt_dir: Path, rank: int) -> None:
    """Remove ``rank_{r}.prev.pt`` (after the commit: latest.json is past it)."""
    (ckpt_dir / f"rank_{rank}.prev.pt").unlink(missing_ok=True)


def load_rank_checkpoint(ckpt_dir: Path, rank: int, step: int) -> dict[str, Any]:
    """This rank's checkpoint of ``step``: rank_{r}.pt, or rank_{r}.prev.pt if a save was cut short."""
    for name in (f"rank_{rank}.pt", f"rank_{rank}.prev.pt"):
        p = ckpt_dir / name
        if p.is_file():
            state = torch.load(p, map_location="cpu", weights_only=False)
            if state.get("step") == step:
                return state
    raise ConfigError(f"{ckpt_dir}: latest.json names step {step} but rank {rank} has no checkpoint of that step")
