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
import textwrap
import time
from typing import TYPE_CHECKING, Any

from ..params import LOSS_SPEC, ParamError
from .lessons import check_out, finish, fmt, loss_from_args, number, print_report, widths

if TYPE_CHECKING:
    from ..training import ToyConfig

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


def config_from_args(args: argparse.Namespace) -> ToyConfig:
    """The ToyConfig for parsed flags; every problem raises ParamError with the flag's name."""
    from toy_data import TOY_DATASETS

    from ..training import ToyConfig

    if args.dataset not in TOY_DATASETS:
        raise ParamError(f"--dataset: unknown data set {args.dataset!r}; choose one of {', '.join(TOY_DATASETS)}")
    loss, loss_params = loss_from_args(args)
    hidden = None if args.hidden is None else widths(args.hidden, "--hidden", 4096, allow_empty=True)
    dim = number(args.dim, "--dim", 2, 3, whole=True)
    optional = (("lr", 1e-7, 10.0, False), ("batch_size", 1, 1_000_000, True), ("warmup_steps", 0, MAX_STEPS, True),
                ("seed", 0, 2**31 - 1, True), ("num_classes", 2, 1000, True),
                ("samples_per_class", 2, 1_000_000, True), ("noise", 0.0, 100.0, False))
    given = {name: number(getattr(args, name), "--" + name.replace("_", "-"), lo, hi, whole)
             for name, lo, hi, whole in optional if getattr(args, name) is not None}
    return ToyConfig(dataset=args.dataset, dim=dim, loss=loss, loss_params=loss_params, optimizer=args.optimizer,
                     anneal=not args.no_anneal, hidden=hidden, device=args.device, **given)


def train(cfg: ToyConfig, steps: int) -> tuple[dict[str, Any], Any]:
    """Train and measure; returns (report dict, final Snapshot)."""
    from .. import stats

    t0 = time.perf_counter()
    trainer = cfg.build()
    last = min(100, steps)  # the reported loss is the mean over the last 100 steps
    if steps > last:
        trainer.advance(steps - last)
    snap = trainer.advance(last)
    train_set = trainer.embeddings("train")
    test_set = trainer.embeddings("test") if trainer.has_test else None
    try:
        gap = stats.gap_deg(snap.embeddings, snap.labels)
    except ValueError:  # a single class in the sample, or a class whose embeddings cancel out
        gap = None
    seconds = trainer.seconds
    report: dict[str, Any] = {
        **trainer.report(train_set, test_set), "steps_per_second": snap.step / seconds if seconds > 0 else None,
        "wall_seconds": time.perf_counter() - t0, "train_acc": snap.train_acc, "test_acc": snap.test_acc,
        "final_loss": snap.loss, "min_centre_angle_deg": snap.min_centre_angle_deg, "gap_deg": gap,
        "n_train": int(len(train_set[1])), "n_test": int(len(test_set[1])) if test_set is not None else 0,
    }
    return report, snap


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    steps = number(args.steps, "--steps", 0, MAX_STEPS, whole=True)
    check_out(args.out)
    report, snap = train(cfg, steps)

    def figure():
        from ..plots.sphere import embedding_figure

        title = (f"{report['loss_label']} on {report['dataset']}, {report['dim']}-D, step {report['steps']}, "
                 f"test acc {report['test_acc']:.3f}" if report["test_acc"] is not None else "")
        return embedding_figure(snap.embeddings, snap.labels, snap.centres, title=title)

    return finish(report, args, figure, _print_table)


def _print_table(r: dict[str, Any]) -> None:
    print_report(r, f"trained on {r['num_threads']} thread(s)", [
        f"steps {r['steps']}  in {r['seconds']:.2f} s  ({fmt(r['steps_per_second'], '.0f')} steps/s)",
        f"train acc {fmt(r['train_acc'], '.4f')}  test acc {fmt(r['test_acc'], '.4f')}  "
        f"loss {fmt(r['final_loss'], '.4f')}",
        f"min angle between centres {fmt(r['min_centre_angle_deg'], '.1f')}°  "
        f"gap between the closest identities {fmt(r['gap_deg'], '.1f')}°",
    ])
