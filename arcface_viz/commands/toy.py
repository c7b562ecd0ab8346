"""``arcface-viz toy``: train a toy model (2-D/3-D embeddings) with any loss and report Table-3 angles.

Trains the MLP of the live-training page on a toy data set (``fig3`` = the paper's Fig. 3 toy) for
``--steps`` optimizer steps and prints train/test accuracy, speed and the Table-3 angle statistics of the
final model: W-EC, W-Inter, Intra = Intra1 / Inter = Inter1 on the training set, Intra2 / Inter2 on the test
set (degrees), and ``gap_deg``, the gap between the closest neighbouring identities on the plotted sample
(:func:`arcface_viz.stats.gap_deg`, as under the live page's figures).  Loss parameters left out take the
low-dimensional defaults of the chosen loss.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
import time
from typing import Any

from ..losses import LOSSES
from ..params import LOSS_SPEC, ParamError

MAX_STEPS = 10_000_000


def add_parser(sub: argparse._SubParsersAction) -> None:
    from toy_data import TOY_DATASETS

    from ..stats import GAP_HELP

    p = sub.add_parser("toy", help="train a toy 2-D/3-D embedding with any loss; accuracy and Table-3 angles",
                       description=__doc__.splitlines()[0].replace("``", ""),
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog=textwrap.fill(f"gap_deg: {GAP_HELP}", 79) + "\n\n"
                              "example: arcface-viz toy --dataset fig3 --dim 2 --loss arcface --steps 2000 --json")
    p.add_argument("--dataset", default="fig3", help=f"toy data set: {', '.join(TOY_DATASETS)} (default: fig3)")
    p.add_argument("--dim", default="2", help="embedding dimension, 2 or 3 (default: 2)")
    p.add_argument("--steps", default="2000", help="optimizer steps (default: 2000)")
    p.add_argument("--seed", default="0", help="seed for data, initial weights and batches (default: 0)")
    p.add_argument("--optimizer", choices=("adam", "sgd"), default="adam", help="optimizer (default: adam)")
    p.add_argument("--lr", default=None,
                   help="learning rate (default: the data set's, else 0.01 for adam, 0.1 for sgd)")
    p.add_argument("--batch-size", default="256", help="mini-batch size (default: 256)")
    p.add_argument("--warmup-steps", default=None,
                   help="ramp the margins from 0 over this many steps (default: the data set's, else 0)")
    p.add_argument("--no-anneal", action="store_true", help="A-Softmax: keep λ fixed instead of annealing it")
    p.add_argument("--num-classes", default=None, help="number of classes (default: the data set's)")
    p.add_argument("--samples-per-class", default=None, help="samples per class (default: the data set's)")
    p.add_argument("--noise", default=None, help="the data set's noise (default: the data set's)")
    p.add_argument("--hidden", default=None,
                   help="comma-separated hidden widths of the MLP (default: the data set's, else 64)")
    p.add_argument("--device", choices=("cpu", "cuda", "mps"), default=None,
                   help="compute device (default: CUDA, then MPS, then CPU)")
    LOSS_SPEC.add_arguments(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--out", metavar="FILE.html", help="write the final embedding figure as HTML")
    p.set_defaults(func=run)


def _int(text: str, flag: str, lo: int, hi: int) -> int:
    try:
        v = float(text)
        if v != int(v):
            raise ValueError
    except (TypeError, ValueError, OverflowError):
        raise ParamError(f"{flag}: expected a whole number, got {text!r}") from None
    if not lo <= v <= hi:
        raise ParamError(f"{flag}: {text} is outside {lo}–{hi}")
    return int(v)


def _float(text: str, flag: str, lo: float, hi: float) -> float:
    try:
        v = float(text)
    except (TypeError, ValueError):
        raise ParamError(f"{flag}: expected a number, got {text!r}") from None
    if not lo <= v <= hi:  # also rejects NaN
        raise ParamError(f"{flag}: {text} is outside {lo:g}–{hi:g}")
    return v


def config_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The ToyConfig dict for parsed flags; every problem raises ParamError with the flag's name."""
    from toy_data import TOY_DATASETS

    if args.dataset not in TOY_DATASETS:
        raise ParamError(f"--dataset: unknown data set {args.dataset!r}; choose one of {', '.join(TOY_DATASETS)}")
    loss = args.loss or LOSS_SPEC["loss"].default
    given = {p.name: getattr(args, p.name) for p in LOSS_SPEC if p.name != "loss" and getattr(args, p.name) is not None}
    values, errors = {}, []
    for name, text in given.items():
        try:
            values[name] = LOSS_SPEC[name].coerce(text)
        except ParamError as exc:
            errors.append(f"--{name.replace('_', '-')}: {exc}")
    if errors:
        raise ParamError("; ".join(errors))
    unused = [k for k in values if k not in LOSSES[loss].params]
    if unused:
        takes = ", ".join("--" + k.replace("_", "-") for k in LOSSES[loss].params) or "no parameters"
        raise ParamError(f"{loss} does not use {', '.join('--' + k.replace('_', '-') for k in unused)}; "
                         f"it takes {takes}")
    hidden = None
    if args.hidden is not None:
        try:
            hidden = tuple(int(h) for h in args.hidden.split(",") if h.strip())
        except ValueError:
            raise ParamError(f"--hidden: expected comma-separated whole numbers, got {args.hidden!r}") from None
        if any(not 1 <= h <= 4096 for h in hidden):
            raise ParamError(f"--hidden: widths must be 1–4096, got {args.hidden!r}")
    cfg: dict[str, Any] = {
        "dataset": args.dataset, "dim": _int(args.dim, "--dim", 2, 3), "loss": loss, "loss_params": values,
        "optimizer": args.optimizer,
        "lr": _float(args.lr, "--lr", 1e-7, 10.0) if args.lr is not None else None,
        "batch_size": _int(args.batch_size, "--batch-size", 1, 1_000_000),
        "warmup_steps": None if args.warmup_steps is None else _int(args.warmup_steps, "--warmup-steps", 0,
                                                                     MAX_STEPS),
        "anneal": not args.no_anneal, "hidden": hidden, "seed": _int(args.seed, "--seed", 0, 2**31 - 1),
        "device": args.device,
    }
    if args.num_classes is not None:
        cfg["num_classes"] = _int(args.num_classes, "--num-classes", 2, 1000)
    if args.samples_per_class is not None:
        cfg["samples_per_class"] = _int(args.samples_per_class, "--samples-per-class", 2, 1_000_000)
    if args.noise is not None:
        cfg["noise"] = _float(args.noise, "--noise", 0.0, 100.0)
    return cfg


def train(cfg: dict[str, Any], steps: int) -> tuple[dict[str, Any], Any]:
    """Train and measure; returns (report dict, final Snapshot)."""
    import torch

    from .. import stats
    from ..device import describe
    from ..training import build_toy_trainer

    t0 = time.perf_counter()
    trainer = build_toy_trainer(cfg)
    last = min(100, steps)  # the reported loss is the mean over the last 100 steps
    if steps > last:
        trainer.advance(steps - last)
    snap = trainer.advance(last)
    emb_tr, y_tr = trainer.embeddings("train")
    test = trainer.embeddings("test") if trainer.has_test else (None, None)
    weight = trainer.loss_fn.weight.detach().float().cpu().numpy() if trainer.loss_fn.info.has_centres else None
    angles = stats.angle_statistics(weight, emb_tr, y_tr, test[0], test[1])
    try:
        gap = stats.gap_deg(snap.embeddings, snap.labels)
    except ValueError:  # a single class in the sample, or a class whose embeddings cancel out
        gap = None
    seconds = trainer.seconds
    report: dict[str, Any] = {
        "dataset": cfg["dataset"], "dim": trainer.config.dim, "loss": trainer.loss_fn.name,
        "loss_label": trainer.loss_fn.info.label, "loss_params": trainer.config.resolved_loss_params(),
        "steps": snap.step, "seconds": seconds, "steps_per_second": snap.step / seconds if seconds > 0 else None,
        "wall_seconds": time.perf_counter() - t0,
        "train_acc": snap.train_acc, "test_acc": snap.test_acc, "final_loss": snap.loss,
        "min_centre_angle_deg": snap.min_centre_angle_deg, "gap_deg": gap,
        "W-EC": angles["W-EC"], "W-Inter": angles["W-Inter"], "Intra": angles["Intra1"], "Inter": angles["Inter1"],
        "Intra1": angles["Intra1"], "Inter1": angles["Inter1"], "Intra2": angles["Intra2"],
        "Inter2": angles["Inter2"],
        "n_train": int(len(y_tr)), "n_test": int(len(test[1])) if test[1] is not None else 0,
        "device": describe(trainer.device), "num_threads": trainer.num_threads or torch.get_num_threads(),
        "config": trainer.config.to_dict(),
    }
    return report, snap


def _figure(snap: Any, title: str):
    from ..plots.sphere import embedding_figure

    return embedding_figure(snap.embeddings, snap.labels, snap.centres, title=title)


def run(args: argparse.Namespace) -> int:
    from ..cli import UsageError

    cfg = config_from_args(args)
    steps = _int(args.steps, "--steps", 0, MAX_STEPS)
    if args.out:
        folder = os.path.dirname(os.path.abspath(args.out))
        if not os.path.isdir(folder):
            raise UsageError(f"cannot write {args.out}: folder {folder} does not exist")
    report, snap = train(cfg, steps)
    if args.out:
        title = (f"{report['loss_label']} on {report['dataset']}, {report['dim']}-D, step {report['steps']}, "
                 f"test acc {report['test_acc']:.3f}" if report["test_acc"] is not None else "")
        try:
            _figure(snap, title).write_html(args.out, include_plotlyjs=True)
        except OSError as exc:
            raise UsageError(f"cannot write {args.out}: {exc.strerror or exc}") from None
        report["out"] = args.out
    if args.json:
        sys.stdout.write(json.dumps(report, indent=1, ensure_ascii=False, default=_jsonable) + "\n")
    else:
        _print_table(report)
    return 0


def _jsonable(v: Any) -> Any:
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


def _print_table(r: dict[str, Any]) -> None:
    print_report(r, f"trained on {r['num_threads']} thread(s)", [
        f"steps {r['steps']}  in {r['seconds']:.2f} s  ({fmt(r['steps_per_second'], '.0f')} steps/s)",
        f"train acc {fmt(r['train_acc'], '.4f')}  test acc {fmt(r['test_acc'], '.4f')}  "
        f"loss {fmt(r['final_loss'], '.4f')}",
        f"min angle between centres {fmt(r['min_centre_angle_deg'], '.1f')}°  "
        f"gap between the closest identities {fmt(r['gap_deg'], '.1f')}°",
    ])
