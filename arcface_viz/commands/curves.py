"""``arcface-viz curves``: the Fig. 4(b) target-logit curves as CSV or JSON.

Columns: ``theta_deg`` then one per curve (the paper's seven, optionally a custom (m1, m2, m3)), each
the target logit cos(m1·θ + m2) − m3 (or the A-Softmax blend), the raw formula unless ``--monotonic``;
``--after`` adds the losses after ArcFace with their paper presets, from their own margin functions (the curve
they train with; MagFace at ``--mag-norm``, AdaFace at ``--ada-units``; ElasticFace adds its band's edges).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import sys

from ..geometry import FIG4B_BY_KEY, after_arcface_curve, curve_params, curve_table, margin_curve, theta_grid_deg
from ..params import CURVES_SPEC, ParamError

MAX_POINTS = 100_000
# the lesson's own spec drives the flags; the CLI draws a custom curve only when asked (or given --m1/2/3)
SPEC = CURVES_SPEC.subset(("curves", "custom", "m1", "m2", "m3", "full_range", "monotonic", "after", "mag_norm",
                           "ada_units")).with_defaults(custom=False, m2=0.0, m3=0.0)


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "curves", help="write the Fig. 4(b) target-logit curves as CSV or JSON",
        description=__doc__.splitlines()[0].replace("``", ""),
        epilog="examples: arcface-viz curves --full-range --m2 0.3 --format json --out curves.json\n"
               "          arcface-viz curves --curves arcface --after magface,elasticface_arc --mag-norm 30",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--format", choices=("csv", "json"), default="csv", help="output format (default: csv)")
    p.add_argument("--out", metavar="FILE", help="write to FILE instead of standard output")
    p.add_argument("--points", metavar="N", help="number of θ values (default: one every 0.5°)")
    SPEC.add_arguments(p)
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


def _selected(args: argparse.Namespace) -> tuple[list, dict]:
    """The curves to write and the validated settings (the spec's values)."""
    values = SPEC.from_namespace(args)
    curves = [FIG4B_BY_KEY[k] for k in values["curves"]]
    curves += [after_arcface_curve(k, mag_norm=values["mag_norm"], ada_units=values["ada_units"])
               for k in values["after"]]
    custom = values["custom"] or any(getattr(args, n) is not None for n in ("m1", "m2", "m3"))
    if custom:
        m1, m2, m3 = values["m1"], values["m2"], values["m3"]
        curves.append(margin_curve(args.label or f"custom ({m1:g},{m2:g},{m3:g})", m1, m2, m3, key="custom"))
    elif args.label is not None:
        raise ParamError("--label names the custom curve: give --m1, --m2 or --m3 too")
    if not curves:
        raise ParamError("no curves selected: use --curves or --after, or give a custom curve with --m1/--m2/--m3")
    return curves, values


def render(args: argparse.Namespace) -> str:
    """The output text for parsed arguments (CSV or JSON)."""
    curves, values = _selected(args)
    theta_deg = theta_grid_deg(values["full_range"], _points(args.points))
    table = curve_table(curves, theta_deg, monotonic=values["monotonic"])
    if args.format == "json":
        cols = iter(list(table)[1:])
        entries = []
        for c in curves:
            key = next(cols)
            entry = {"key": key, "label": c.label, "kind": c.kind, "params": curve_params(c),
                     "theta_star_deg": None if c.theta_star is None else math.degrees(c.theta_star),
                     "values": table[key].tolist()}
            if c.band is not None:
                entry["band"] = {"low": table[next(cols)].tolist(), "high": table[next(cols)].tolist()}
            entries.append(entry)
        doc = {
            "figure": "ArcFace Fig. 4(b): target logit against θ",
            "monotonic": values["monotonic"],
            "theta_deg": table["theta_deg"].tolist(),
            "curves": entries,
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
