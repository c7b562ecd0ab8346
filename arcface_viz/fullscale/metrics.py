"""``metrics.jsonl`` of a run: the trainer appends one JSON object per line, the registry and the page read it.

Records: ``{"kind": "train", "time", "step", "epoch", "loss", "lr", "samples_per_sec", "eta_s"}`` every
``log_every`` steps, ``{"kind": "val", "time", "step", "target", "acc", "std", "threshold"}`` per verification
set, ``{"kind": "done", "time", "step"}`` at the end.  A reader may meet a half-written last line: it is skipped.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from .files import atomic_write_text, tail_bytes


class MetricsWriter:
    """Appends records to ``out/metrics.jsonl`` (and TensorBoard scalars when tensorboard is installed).

    On resume (``resume_step``) the records after that step are dropped: the interval the checkpoint lost is
    trained and logged again.
    """

    def __init__(self, out: Path, resume_step: int | None) -> None:
        self.path = out / "metrics.jsonl"
        kept: list[str] = []
        if resume_step is not None and self.path.is_file():
            for line in self.path.read_text(encoding="utf-8", errors="replace").splitlines():
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if isinstance(rec, dict) and rec.get("kind") != "done" and int(rec.get("step", 0)) <= resume_step:
                    kept.append(line + "\n")
        atomic_write_text(self.path, "".join(kept))
        self.writer = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(out / "tensorboard"))
        except Exception:  # tensorboard is optional
            self.writer = None

    def write(self, kind: str, step: int, **values: Any) -> None:
        rec = {"kind": kind, "time": time.time(), "step": int(step), **values}
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(rec) + "\n")
        if self.writer is not None:
            if kind == "train":
                for k in ("loss", "lr", "samples_per_sec"):
                    self.writer.add_scalar(f"train/{k}", values[k], step)
            elif kind == "val":
                self.writer.add_scalar(f"val/{values['target']}", values["acc"], step)
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _records(lines: list[bytes]) -> list[dict[str, Any]]:
    out = []
    for line in lines:
        try:
            rec = json.loads(line)
        except (ValueError, UnicodeDecodeError):
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Every complete JSON line of a ``metrics.jsonl``; a partial or corrupt line (being written) is skipped."""
    p = Path(path)
    if not p.is_file():
        return []
    with open(p, "rb") as fh:
        lines = fh.read().split(b"\n")
    return _records(lines[:-1])  # the last piece has no newline yet (or is empty)


def summarize_metrics(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The latest training values, the latest accuracy per verification target and whether "done" was seen."""
    out: dict[str, Any] = {}
    val: dict[str, Any] = {}
    for rec in records:
        kind = rec.get("kind")
        if kind == "train":
            out.update({k: rec[k] for k in ("step", "epoch", "loss", "lr", "samples_per_sec", "eta_s", "time")
                        if k in rec})
        elif kind == "val" and "target" in rec:
            val[str(rec["target"])] = {k: rec.get(k) for k in ("step", "acc", "std", "threshold")}
        elif kind == "done":
            out["done"] = True
            if "step" in rec:
                out["step"] = rec["step"]
    if val:
        out["val"] = val
    return out


def last_metrics(run_dir: Path) -> dict[str, Any]:
    """:func:`summarize_metrics` of the end of metrics.jsonl (the last 256 KiB: cheap on long runs)."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return {}
    data = tail_bytes(path, 256 * 1024)
    lines = data.split(b"\n")
    if path.stat().st_size > len(data):
        lines = lines[1:]  # the first one is cut
    return summarize_metrics(_records(lines[:-1]))


def metric_series(records: list[dict[str, Any]]) -> dict[str, dict[str, list[float]]]:
    """Columns for the curves: ``train`` (step, loss, lr, samples_per_sec, epoch) and one ``val:TARGET``
    (step, acc) per verification set.  Should a step appear twice, the later record wins."""
    train: dict[int, dict[str, Any]] = {}
    val: dict[str, dict[int, float]] = {}
    for rec in records:
        step = rec.get("step")
        if not isinstance(step, int | float):
            continue
        if rec.get("kind") == "train":
            train[int(step)] = rec
        elif rec.get("kind") == "val" and isinstance(rec.get("acc"), int | float):
            val.setdefault(str(rec.get("target")), {})[int(step)] = float(rec["acc"])
    steps = sorted(train)
    out: dict[str, dict[str, list[float]]] = {
        "train": {"step": steps, **{k: [_num(train[s].get(k)) for s in steps]
                                    for k in ("loss", "lr", "samples_per_sec", "epoch")}}}
    for target, by_step in sorted(val.items()):
        s = sorted(by_step)
        out[f"val:{target}"] = {"step": s, "acc": [by_step[k] for k in s]}
    return out


def _num(v: Any) -> float:
    return float(v) if isinstance(v, int | float) else float("nan")
