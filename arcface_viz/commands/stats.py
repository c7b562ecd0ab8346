"""``arcface-viz stats --embeddings FILE.npz``: Table-3 angle statistics for embeddings saved by any model.

The file holds ``embeddings`` and ``labels`` (the training set, "1" in Table 3) and optionally ``weight``
(W, shape (n_classes, dim)) and ``test_embeddings`` / ``test_labels`` ("2").  Besides the six angle
statistics it prints the Fig. 6/7 pair angles (test set if present, else training set) and the LFW-protocol
verification accuracy and TAR@FAR on balanced pairs sampled from the same set.
"""

from __future__ import annotations

import argparse
import json

from .. import stats as S
from ..table3 import embeddings_report
from .lessons import fmt


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("stats", help="Table-3 angle statistics, pair angles and verification for an .npz",
                       description=__doc__.splitlines()[0])
    p.add_argument("--embeddings", required=True, metavar="FILE.npz",
                   help="np.savez file with embeddings, labels [, weight, test_embeddings, test_labels]")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--max-pairs", type=int, default=10_000,
                   help="at most this many positive and this many negative pairs (default 10000)")
    p.add_argument("--seed", type=int, default=0, help="seed for sampling pairs (default 0)")
    p.add_argument("--bins", type=int, default=90, help="histogram bins over 0–180° for the overlap (default 90)")
    p.add_argument("--far", type=float, default=1e-3, help="false-accept rate for TAR@FAR (default 1e-3)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    data = S.load_embeddings_npz(args.embeddings)
    out = embeddings_report(data, max_pairs=args.max_pairs, seed=args.seed, bins=args.bins, far=args.far)
    if args.json:
        print(json.dumps({"file": args.embeddings, **out}, indent=2))
        return 0
    test = f", {out['n_test']} test embeddings" if out["n_test"] is not None else ""
    weight = ", with W" if out["has_weight"] else ", no W"
    print(f"{args.embeddings}: {out['n_train']} embeddings, {out['n_classes_train']} classes, "
          f"dim {out['dim']}{weight}{test}")
    stats = out["angle_statistics"]
    print("Angle statistics (Table 3, degrees)")
    for row in S.TABLE3_ROWS:
        print(f"  {row:<8}{S.TABLE3_ARROW[row]}  {fmt(stats[row]):>7}")
    if stats["skipped_classes"]:
        sk = stats["skipped_classes"]
        more = " …" if len(sk) > 10 else ""
        print(f"  skipped {len(sk)} classes without samples: {', '.join(map(str, sk[:10]))}{more}")
    pairs = out["pairs"]
    if "skipped" in pairs:
        print(f"Pair angles ({pairs['set']} set): skipped, {pairs['skipped']}")
        return 0
    print(f"Pair angles (Fig. 6/7, {pairs['set']} set, {pairs['n_positive']} positive / "
          f"{pairs['n_negative']} negative pairs, seed {pairs['seed']})")
    print(f"  mean angle: positive {pairs['mean_positive_deg']:.2f}°, negative {pairs['mean_negative_deg']:.2f}°;"
          f" histogram overlap {pairs['overlap']:.3f} ({pairs['bins']} bins over 0–180°)")
    ver = out["verification"]
    if "skipped" in ver:
        print(f"Verification: skipped, {ver['skipped']}")
        return 0
    print(f"Verification (LFW protocol, 10 folds, {ver['n_pairs']} balanced pairs): "
          f"{100 * ver['accuracy_mean']:.2f} ± {100 * ver['accuracy_std']:.2f} %")
    print(f"  TAR @ FAR={ver['far']:g}: {100 * ver['tar_at_far']:.2f} %")
    return 0
