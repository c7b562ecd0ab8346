"""``arcface-viz table3``: train the five models of the paper's Table 3 alike and print their angle statistics.

NS, ArcFace, IntraL, InterL and TripletL train on the same data with the same seed, initial weights,
mini-batches and step count (derived from ``--budget``, seconds per model on a reference CPU; see
arcface_viz.table3).  For each it prints W-EC, W-Inter, Intra1/Inter1 (training set), Intra2/Inter2 (test
set) in degrees beside the paper's values, then verification accuracy (LFW protocol on balanced test pairs)
and TAR@FAR, and a reading of which comparisons go the paper's way.  ``--json`` prints the five rows as a
JSON list instead.
"""

from __future__ import annotations

import argparse
import json
import sys

from .. import table3 as T
from ..params import ParamError
from ..stats import PAPER_TABLE3, TABLE3_ARROW, TABLE3_ROWS
from .lessons import fmt, number


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("table3", help="train NS, ArcFace, IntraL, InterL, TripletL alike; Table-3 angles",
                       description=__doc__.splitlines()[0].replace("``", ""),
                       epilog="example: arcface-viz table3 --dataset fig3 --budget 3 --seed 0 --dim 16 --json")
    p.add_argument("--dataset", default="fig3", help=f"data set: {', '.join(T.DATASET_CHOICES)} (default: fig3)")
    p.add_argument("--budget", default=None, metavar="SECONDS",
                   help="seconds per model on the reference CPU, turned into one step count for all five "
                        "(default: 3 for toy sets, 6 for digits, 20 for (Fashion-)MNIST)")
    p.add_argument("--seed", default="0", help="seed for data, initial weights and batches (default: 0)")
    p.add_argument("--dim", default="16", help=f"embedding dimension: {', '.join(map(str, T.DIMS))} (default: 16)")
    p.add_argument("--steps", default=None, help="train exactly this many steps per model (overrides --budget)")
    p.add_argument("--data-dir", default=None, help="folder with the MNIST / Fashion-MNIST IDX files")
    p.add_argument("--device", choices=("cpu", "auto"), default="cpu",
                   help="cpu (default: the same numbers on every machine) or auto (CUDA/MPS when present)")
    p.add_argument("--json", action="store_true", help="print the five rows as a JSON list")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.dataset not in T.DATASET_CHOICES:
        raise ParamError(f"--dataset: unknown data set {args.dataset!r}; choose one of "
                         f"{', '.join(T.DATASET_CHOICES)}")
    budget = args.budget if args.budget is not None else T.DEFAULT_BUDGET[args.dataset]
    values = {}
    for name, text in (("dataset", args.dataset), ("budget", budget), ("seed", args.seed), ("dim", args.dim)):
        try:
            values[name] = T.TABLE3_SPEC[name].coerce(text)
        except ParamError as exc:
            raise ParamError(f"--{name}: {exc}") from None
    steps = None if args.steps is None else number(args.steps, "--steps", 1, T.MAX_STEPS, whole=True)

    def progress(fraction: float, text: str) -> None:
        if text.startswith(("Preparing", "Training")) and text.endswith("…"):  # once per model, not per chunk
            print(text, file=sys.stderr, flush=True)

    result = T.run_table3(values["dataset"], values["budget"], values["seed"], values["dim"], progress=progress,
                          steps=steps, data_dir=args.data_dir, device=None if args.device == "auto" else "cpu")
    if args.json:
        print(json.dumps(T.summary_rows(result), indent=2))
        return 0
    cfg = result.config
    print(f"Table 3 on {cfg['dataset']} ({result.n_classes} classes, {result.n_train} train / {result.n_test} test "
          f"samples), {cfg['dim']}-D embeddings, seed {cfg['seed']}, {cfg['steps']} steps per model "
          f"({result.seconds:.1f} s in all)")
    cols = list(T.TABLE3_LOSSES)
    print(f"{'degrees':<11}" + "".join(f"{c:>18}" for c in cols))
    print(f"{'':<11}" + "".join(f"{'ours':>9}{'paper':>9}" for _ in cols))
    for stat in TABLE3_ROWS:
        line = f"{stat + ' ' + TABLE3_ARROW[stat]:<11}"
        for c in cols:
            row = result.row(c)
            line += f"{fmt(row.stats.get(stat) if row else None):>9}{fmt(PAPER_TABLE3[stat][c]):>9}"
        print(line)
    print("Test pairs (Fig. 6/7) and verification (LFW protocol, 10 folds)")
    for row in result.rows:
        ver, pairs = row.verification, row.pairs or {}
        tars = ", ".join(f"TAR@FAR={k} {100 * v:.1f} %" for k, v in (ver or {}).get("tar_at_far", {}).items())
        acc = f"{100 * ver['accuracy_mean']:.2f} ± {100 * ver['accuracy_std']:.2f} % on {ver['n_pairs']} pairs" \
            if ver else "not enough pairs"
        print(f"  {row.column:<9} mean angle positive {pairs.get('mean_positive_deg', float('nan')):6.1f}°, "
              f"negative {pairs.get('mean_negative_deg', float('nan')):6.1f}°, overlap "
              f"{pairs.get('overlap', float('nan')):.3f}; verification {acc}" + (f"; {tars}" if tars else ""))
    print("Reading")
    for line in T.reading(result):
        print(f"  {line}")
    return 0
