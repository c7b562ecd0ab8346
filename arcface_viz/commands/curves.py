"""``arcface-viz curves``: the Fig. 4(b) target-logit curves as CSV or JSON.

Columns: ``theta_deg`` then one per curve (the paper's seven, optionally a custom (m1, m2, m3)), each
the target logit cos(m1·θ + m2) − m3 (or the A-Softmax blend), the raw formula unless ``--monotonic``.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import sys

from ..geometry import FIG4B_BY_KEY, FIG4B_CURVES, curve_params, curve_table, margin_curve, theta_grid_deg
from ..params import LOSS_SPEC, ParamError

MAX_POINTS = 100_000


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    keys = ", ".join(c.key for c in FIG4B_CURVES)
    p = sub.add_parser(
        "curves", help="write the Fig. 4(b) target-logit curves as CSV or JSON",
        description=__doc__.splitlines()[0].replace("``", ""),
        epilog="example: arcface-viz curves --full-range --m2 0.3 --format json --out curves.json",
    )
    p.add_argument("--format", choices=("csv", "json"), default="csv", help="output format (default: csv)")
    p.add_argument("--out", metavar="FILE", help="write to FILE instead of standard output")
    p.add_argument("--full-range", action="store_true", help="θ from 0° to 180° instead of the paper's 20°–100°")
    p.add_argument("--points", metavar="N", help="number of θ values (default: one every 0.5°)")
    p.add_argument("--monotonic", action="store_true",
                   help="the curve the loss trains with (monotonic past θ*) instead of the raw formula")
    p.add_argument("--curves", metavar="KEYS",
                   help=f"comma-separated paper curves to include, or 'none' (default: all of {keys})")
    for name in ("m1", "m2", "m3"):
        par = LOSS_SPEC[name]
        p.add_argument(f"--{name}", metavar="X",
                       help=f"custom curve: {par.help} Range {par.min:g}–{par.max:g}.")
    p.add_argument("--label", help="legend label of the custom curve")
    p.set_defaults(func=run)
    return p


def _points(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        n = float(text)
    except ValueError:
        raise ParamError(f"--points: expected a whole number, got {text!r}") from None
    if not math.isfinite(n) or n != int(n) or not 2 <= n <= MAX_POINTS:
        raise ParamError(f"--points: expected a whole number from 2 to {MAX_POINTS}, got {text!r}")
    return int(n)


def _selected(args: argparse.Namespace) -> list:
    if args.curves is None:
        curves = list(FIG4B_CURVES)
    elif args.curves.strip().lower() == "none":
        curves = []
    else:
        curves = []
        for key in (k.strip() for k in args.curves.split(",") if k.strip()):
            if key not in FIG4B_BY_KEY:
                raise ParamError(f"--curves: unknown curve {key!r}; choose from {', '.join(FIG4B_BY_KEY)} or none")
            curves.append(FIG4B_BY_KEY[key])
    given = {n: getattr(args, n) for n in ("m1", "m2", "m3") if getattr(args, n) is not None}
    if given:
        errors, vals = [], {"m1": 1.0, "m2": 0.0, "m3": 0.0}
        for name, text in given.items():
            try:
                vals[name] = LOSS_SPEC[name].coerce(text)
            except ParamError as exc:
                errors.append(f"--{exc}")
        if errors:
            raise ParamError("; ".join(errors))
        label = args.label or f"custom ({vals['m1']:g},{vals['m2']:g},{vals['m3']:g})"
        curves.append(margin_curve(label, vals["m1"], vals["m2"], vals["m3"], key="custom"))
    elif args.label is not None:
        raise ParamError("--label names the custom curve: give --m1, --m2 or --m3 too")
    if not curves:
        raise ParamError("no curves selected: use --curves or give a custom curve with --m1/--m2/--m3")
    return curves


def render(args: argparse.Namespace) -> str:
    """The output text for parsed arguments (CSV or JSON)."""
    curves = _selected(args)
    theta_deg = theta_grid_deg(args.full_range, _points(args.points))
    table = curve_table(curves, theta_deg, monotonic=args.monotonic)
    if args.format == "json":
        cols = list(table)[1:]
        doc = {
            "figure": "ArcFace Fig. 4(b): target logit against θ",
            "monotonic": bool(args.monotonic),
            "theta_deg": table["theta_deg"].tolist(),
            "curves": [
                {"key": key, "label": c.label, "kind": c.kind, "params": curve_params(c),
                 "theta_star_deg": None if c.theta_star is None else math.degrees(c.theta_star),
                 "values": table[key].tolist()}
                for key, c in zip(cols, curves, strict=True)
            ],
        }
        return json.dumps(doc, indent=1, ensure_ascii=False) + "\n"
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(list(table))
    for row in zip(*table.values(), strict=True):
        writer.writerow([repr(float(v)) for v in row])
    return buf.getvalue()


def run(args: argparse.Namespace) -> int:
    from ..cli import UsageError

    text = render(args)
    if args.out:
        try:
            with open(args.out, "w", encoding="utf-8", newline="") as fh:
                fh.write(text)
        except OSError as exc:
            raise UsageError(f"cannot write {args.out}: {exc.strerror or exc}") from None
    else:
        sys.stdout.write(text)
    return 0
