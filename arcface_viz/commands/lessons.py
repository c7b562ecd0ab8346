"""What the commands share (``toy``, ``mnist``, ``table3``, ``stats``): number and loss flags, the figure file,
the text report."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from typing import Any

from ..losses import LOSSES
from ..params import LOSS_SPEC, ParamError


def number(text: str, flag: str, lo: float, hi: float, whole: bool = False) -> float:
    """``text`` as a number in [lo, hi] (a whole number if ``whole``); ParamError naming the flag if not."""
    try:
        v = float(text)
        if whole and v != int(v):
            raise ValueError
    except (TypeError, ValueError, OverflowError):
        raise ParamError(f"{flag}: expected {'a whole number' if whole else 'a number'}, got {text!r}") from None
    if not lo <= v <= hi:  # also rejects NaN
        limits = f"{lo}–{hi}" if whole else f"{lo:g}–{hi:g}"
        raise ParamError(f"{flag}: {text} is outside {limits}")
    return int(v) if whole else v


def widths(text: str, flag: str, hi: int, allow_empty: bool = False) -> tuple[int, ...]:
    """Comma-separated layer widths, each 1–hi (``--hidden 64,64``, ``--channels 16,32``)."""
    try:
        out = tuple(int(w) for w in text.split(",") if w.strip())
    except ValueError:
        raise ParamError(f"{flag}: expected comma-separated whole numbers, got {text!r}") from None
    if not (out or allow_empty) or any(not 1 <= w <= hi for w in out):
        raise ParamError(f"{flag}: widths must be 1–{hi}, got {text!r}")
    return out


def loss_from_args(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """The chosen loss (``--loss``, default LOSS_SPEC's) and the parameters given as flags (``--s``, ``--m2``, …),
    range-checked; a flag the loss does not use is an error that lists the ones it takes."""
    loss = args.loss or LOSS_SPEC["loss"].default
    given, errors = {}, []
    for p in LOSS_SPEC:
        text = getattr(args, p.name)
        if p.name == "loss" or text is None:
            continue
        try:
            given[p.name] = p.coerce(text)
        except ParamError as exc:
            errors.append(f"--{p.name.replace('_', '-')}: {exc}")
    if errors:
        raise ParamError("; ".join(errors))
    unused = [k for k in given if k not in LOSSES[loss].params]
    if unused:
        takes = ", ".join("--" + k.replace("_", "-") for k in LOSSES[loss].params) or "no parameters"
        raise ParamError(f"{loss} does not use {', '.join('--' + k.replace('_', '-') for k in unused)}; "
                         f"it takes {takes}")
    return loss, given


def check_out(path: str | None) -> None:
    """Before training: the folder of ``--out`` exists (UsageError if not)."""
    from ..cli import UsageError

    if path:
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise UsageError(f"cannot write {path}: folder {folder} does not exist")


def write_figure(fig: Any, path: str) -> None:
    """A plotly figure as a standalone HTML file (UsageError if it cannot be written)."""
    from ..cli import UsageError

    try:
        fig.write_html(path, include_plotlyjs=True)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None


def finish(report: dict[str, Any], args: argparse.Namespace, figure: Callable[[], Any],
           print_table: Callable[[dict[str, Any]], None]) -> int:
    """The end of a training command: ``figure()`` written to ``--out`` if given, then the report as one JSON
    object (``--json``) or as text (``print_table``)."""
    if args.out:
        write_figure(figure(), args.out)
        report["out"] = args.out
    if args.json:
        sys.stdout.write(json.dumps(report, indent=1, ensure_ascii=False, default=jsonable) + "\n")
    else:
        print_table(report)
    return 0


def jsonable(v: Any) -> Any:
    """json.dumps's fallback for numpy scalars and the like."""
    try:
        return float(v)
    except (TypeError, ValueError):
        return str(v)


def fmt(v: Any, spec: str = ".2f") -> str:
    """A number for the text report, or an en dash where there is none."""
    return "–" if v is None else format(v, spec)


def print_report(r: dict[str, Any], setting: str, body: list[str]) -> None:
    """The text report of a training command: what was trained, ``body``, then the Table-3 angles."""
    params = ", ".join(f"{k}={v}" for k, v in r["loss_params"].items()) or "no parameters"
    lines = [f"{r['loss_label']} ({params}) on {r['dataset']}, {r['dim']}-D embeddings, {r['device']}, {setting}",
             *body, "Table-3 angles (degrees):"]
    lines += [f"  {key:8s} {fmt(r[key])}" for key in ("W-EC", "W-Inter", "Intra1", "Inter1", "Intra2", "Inter2")]
    if "out" in r:
        lines.append(f"figure written to {r['out']}")
    print("\n".join(lines))
