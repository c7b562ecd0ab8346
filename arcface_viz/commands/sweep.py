"""``arcface-viz sweep``: train a grid of small models at once and map what came out (which s and m?).

Every cell of the map is a run of the toy lesson (toy data sets) or of the MNIST lesson (image data sets) with
the cell's two parameter values, trained for ``--steps`` optimizer steps; the runs that can be stacked train as
one batched model.  Prints, per cell, the test accuracy, the verification accuracy on pairs of test samples, the
Table-3 angles W-EC, Intra1, Inter1 (degrees), the final loss (mean of the last 100 steps) and whether it trained
(``trained`` false: NaN, the loss did not fall, or accuracy at chance; ``reason`` says which), plus whether the
margin fits between neighbouring centres (geometry).  Settings left out take the lesson's defaults.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from ..params import LOSS_SPEC, ParamError

EXAMPLE = ("example: arcface-viz sweep --dataset fig3 --loss arcface --x s=2,4,8,16,32,64 "
           "--y m2=0,0.1,0.2,0.3,0.4,0.5 --steps 500 --seed 0 --json")


def add_parser(sub: argparse._SubParsersAction) -> None:
    from ..sweep import DATASETS, METRICS, PRESETS

    p = sub.add_parser("sweep", help="train a grid of models at once; a map of accuracy, angles and failures",
                       description=__doc__.splitlines()[0].replace("``", ""),
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLE)
    p.add_argument("--preset", choices=tuple(PRESETS), default=None,
                   help="start from a preset map (flags given override it): "
                        + "; ".join(f"{k}: {v.label}" for k, v in PRESETS.items()))
    p.add_argument("--dataset", default=None, help=f"data set: {', '.join(DATASETS)} (default: fig3)")
    p.add_argument("--x", default=None, metavar="NAME=V1,V2,…",
                   help="the columns: a loss parameter, dim, classes (toy data) or lr, and its values "
                        "(default: s=2,4,8,16,32,64)")
    p.add_argument("--y", default=None, metavar="NAME=V1,V2,…", help="the rows (default: m2=0,0.1,0.2,0.3,0.4,0.5)")
    p.add_argument("--steps", default=None, help="optimizer steps of every model (default: 500)")
    p.add_argument("--seed", default=None, metavar="S[,S2,…]",
                   help="one seed, or several (the map shows their mean and spread) (default: 0)")
    p.add_argument("--dim", default=None, help="embedding dimension, 2 or 3 (default: 2 for toy data, 3 for images)")
    p.add_argument("--classes", default=None, help="number of classes of a toy data set (default: the data set's)")
    p.add_argument("--lr", default=None, help="learning rate (default: the lesson's for the data set)")
    LOSS_SPEC.add_arguments(p)
    p.add_argument("--one-by-one", action="store_true",
                   help="train the models one after another instead of as one batched model (same numbers, slower)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--out", metavar="FILE.html", help="write the map as an interactive HTML figure")
    p.add_argument("--metric", choices=tuple(METRICS), default="test_acc",
                   help="what colours the map of --out and the text table (default: test_acc)")
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace):
    """The SweepConfig for parsed flags (preset first, flags on top); ParamError names what is wrong."""
    from ..sweep import PRESETS, make_config

    preset = PRESETS[args.preset] if args.preset else None
    dataset = args.dataset or (preset.dataset if preset else "fig3")
    loss = args.loss or (preset.loss if preset else "arcface")
    x = args.x or (preset.x if preset else "s=2,4,8,16,32,64")
    y = args.y or (preset.y if preset else "m2=0,0.1,0.2,0.3,0.4,0.5")
    steps_text = args.steps if args.steps is not None else str(preset.steps if preset else 500)
    try:
        steps = float(steps_text)
        if steps != int(steps):
            raise ValueError
    except (TypeError, ValueError, OverflowError):
        raise ParamError(f"--steps: expected a whole number, got {steps_text!r}") from None
    steps = int(steps)
    seeds = [s.strip() for s in (args.seed or "0").split(",") if s.strip()]
    fixed: dict[str, Any] = dict(preset.fixed) if preset else {}
    for name in ("dim", "classes", "lr", *(p.name for p in LOSS_SPEC if p.name != "loss")):
        value = getattr(args, name, None)
        if value is not None:
            fixed[name] = value
    from ..losses import LOSSES

    if loss in LOSSES:
        unused = [k for k in fixed if k not in ("dim", "classes", "lr") and k not in LOSSES[loss].params]
        if unused:
            raise ParamError(f"{loss} does not use {', '.join('--' + k.replace('_', '-') for k in unused)}")
    return make_config(dataset, loss, x, y, steps, seeds, fixed)


def run(args: argparse.Namespace) -> int:
    from ..cli import UsageError
    from ..sweep import one_by_one, run_sweep

    cfg = config_from_args(args)
    if args.out:
        folder = os.path.dirname(os.path.abspath(args.out))
        if not os.path.isdir(folder):
            raise UsageError(f"cannot write {args.out}: folder {folder} does not exist")
    result = run_sweep(cfg, advance=one_by_one if args.one_by_one else None)
    report = result.to_json()
    if args.out:
        from ..plots.style import standalone_html
        from ..plots.sweep import sweep_map_figure

        fig = sweep_map_figure(result, args.metric, title=title(result, args.metric))
        try:
            with open(args.out, "w", encoding="utf-8") as fh:
                fh.write(standalone_html(fig, "arcface-viz sweep"))
        except OSError as exc:
            raise UsageError(f"cannot write {args.out}: {exc.strerror or exc}") from None
        report["out"] = args.out
    if args.json:
        sys.stdout.write(json.dumps(report, indent=1, ensure_ascii=False) + "\n")
    else:
        print_table(result, args.metric, report.get("out"))
    return 0


def title(result, metric: str) -> str:
    """The map's title: what was trained, and what colours it."""
    from ..losses import LOSSES
    from ..sweep import METRICS

    cfg = result.config
    seeds = f"seed {cfg.seeds[0]}" if len(cfg.seeds) == 1 else f"mean of {len(cfg.seeds)} seeds"
    return (f"{METRICS[metric][0]}: {LOSSES[cfg.loss].label} on {cfg.dataset}, {cfg.steps:,} steps, {seeds}"
            f"<br><sup>{len(result.cells) * len(cfg.seeds)} models trained in {result.seconds:.1f} s</sup>")


def print_table(result, metric: str, out: str | None = None) -> None:
    """The map as text: rows = y values, columns = x values; ✗ where the cell did not train, * where the margin
    cannot fit."""
    from ..sweep import METRICS

    cfg = result.config
    label, fmt, _ = METRICS[metric]
    short = ".1%" if fmt.endswith("%") else fmt
    head = f"{cfg.y.name} \\ {cfg.x.name}"
    width = max(9, *(len(format(v, "g") if isinstance(v, float) else str(v)) + 1 for v in cfg.x.values))
    lines = [f"{label} of {len(result.cells)} cells × {len(cfg.seeds)} seed(s), {cfg.steps:,} steps, "
             f"{result.seconds:.1f} s", f"{head:>12}" + "".join(f"{_v(v):>{width}}" for v in cfg.x.values)]
    for iy, yv in enumerate(cfg.y.values):
        row = []
        for ix in range(len(cfg.x.values)):
            c = result.cell(ix, iy)
            value = c.mean(metric)
            text = "–" if value is None else format(value, short)
            text = ("✗" if not c.trained else "") + text + ("*" if c.margin_fits is False else "")
            row.append(f"{text:>{width}}")
        lines.append(f"{_v(yv):>12}" + "".join(row))
    lines.append("✗ did not train (see --json for why); * the margin cannot fit between neighbouring centres")
    if out:
        lines.append(f"map written to {out}")
    print("\n".join(lines))


def _v(v: Any) -> str:
    return format(v, "g") if isinstance(v, float) else str(v)
