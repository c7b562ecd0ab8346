"""``arcface-viz mnist``: train the MNIST lesson's CNN (2-D/3-D embedding) with any loss; accuracy and Table-3 angles.

Trains the small CNN of the live MNIST page on MNIST, Fashion-MNIST or scikit-learn's 8×8 digits for
``--epochs`` passes or ``--seconds`` of training (whichever comes first) and prints the accuracy on the whole
test set, the training time, images/second and the Table-3 angle statistics of the final model: W-EC,
W-Inter, Intra = Intra1 / Inter = Inter1 on (up to 10,000) training images, Intra2 / Inter2 on the test set
(degrees).  Loss parameters left out take the lesson's defaults for the chosen loss.  A data set that is not on
this machine exits with status 2 and says how to get it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from ..losses import LOSSES
from ..params import LOSS_SPEC, ParamError
from .toy import _jsonable, fmt, print_report  # the toy command's JSON fallback and text report

TRAINING_FLAGS = ("dataset", "dim", "optimizer", "lr", "batch_size", "warmup", "max_train", "seed")


def add_parser(sub: argparse._SubParsersAction) -> None:
    from ..image_training import MNIST_SPEC

    p = sub.add_parser("mnist", help="train the MNIST lesson's CNN with any loss; test accuracy and Table-3 angles",
                       description=__doc__.splitlines()[0].replace("``", ""),
                       epilog="example: arcface-viz mnist --dataset fashion-mnist --loss arcface --dim 3 "
                              "--seconds 120 --json")
    MNIST_SPEC.subset(TRAINING_FLAGS).add_arguments(p)
    p.add_argument("--data-dir", default=None, metavar="DIR",
                   help="folder holding the four IDX files (gzipped or not); default: the cache, then system folders")
    p.add_argument("--download", action="store_true",
                   help="download MNIST / Fashion-MNIST into the user cache first when it is not on this machine")
    p.add_argument("--epochs", default=None, help="passes over the training set (default: 1 unless --seconds)")
    p.add_argument("--seconds", default=None, help="training-time budget in seconds (optimizer steps only)")
    p.add_argument("--lr-decay", choices=("none", "cosine"), default="cosine",
                   help="cosine: lower the rate to 0 over the budget; none: keep it (default: cosine)")
    p.add_argument("--channels", default=None, help="comma-separated CNN widths (default: 16,32)")
    p.add_argument("--no-anneal", action="store_true", help="A-Softmax: keep λ fixed instead of annealing it")
    p.add_argument("--device", choices=("cpu", "cuda", "mps"), default=None,
                   help="compute device (default: CUDA, then MPS, then CPU)")
    p.add_argument("--threads", default=None, help="CPU threads for training (default: 1 for this small CNN)")
    LOSS_SPEC.add_arguments(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--out", metavar="FILE.html", help="write the final embedding figure (test images) as HTML")
    p.set_defaults(func=run)


def _number(text: str, flag: str, lo: float, hi: float, whole: bool = False) -> float:
    try:
        v = float(text)
        if whole and v != int(v):
            raise ValueError
    except (TypeError, ValueError, OverflowError):
        raise ParamError(f"{flag}: expected {'a whole number' if whole else 'a number'}, got {text!r}") from None
    if not lo <= v <= hi:  # also rejects NaN
        raise ParamError(f"{flag}: {text} is outside {lo:g}–{hi:g}")
    return int(v) if whole else v


def config_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The ImageConfig dict for parsed flags; every problem raises ParamError naming the flag."""
    from ..image_training import MNIST_SPEC, image_config

    values = MNIST_SPEC.subset(TRAINING_FLAGS).from_namespace(args)
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
    cfg = image_config({**values, "loss": loss}, loss=loss, data_dir=args.data_dir)
    cfg["loss_params"] = given
    for name in ("lr", "batch_size", "warmup"):  # flags left out take the data set's recommendation
        if getattr(args, name) is None:
            cfg.pop({"warmup": "warmup_steps"}.get(name, name))
    if args.max_train is None:
        cfg["max_train"] = None  # the whole training set
    if args.channels is not None:
        try:
            channels = tuple(int(c) for c in args.channels.split(",") if c.strip())
        except ValueError:
            raise ParamError(f"--channels: expected comma-separated whole numbers, got {args.channels!r}") from None
        if not channels or any(not 1 <= c <= 512 for c in channels):
            raise ParamError(f"--channels: widths must be 1–512, got {args.channels!r}")
        cfg["channels"] = channels
    cfg.update(anneal=not args.no_anneal, device=args.device)
    if args.threads is not None:
        cfg["num_threads"] = _number(args.threads, "--threads", 1, 256, whole=True)
    return cfg


def run(args: argparse.Namespace) -> int:
    from ..cli import UsageError
    from ..image_training import build_image_trainer, report, train_for

    cfg = config_from_args(args)
    epochs = _number(args.epochs, "--epochs", 1e-6, 10_000) if args.epochs is not None else None
    seconds = _number(args.seconds, "--seconds", 1e-3, 7 * 86400) if args.seconds is not None else None
    if epochs is None and seconds is None:
        epochs = 1.0
    if args.out:
        folder = os.path.dirname(os.path.abspath(args.out))
        if not os.path.isdir(folder):
            raise UsageError(f"cannot write {args.out}: folder {folder} does not exist")
    t0 = time.perf_counter()
    trainer = build_image_trainer(cfg, data=_data(cfg, args.download))
    snap = train_for(trainer, epochs=epochs, seconds=seconds, lr_decay=args.lr_decay, chunk_seconds=10.0)
    rep = report(trainer)
    rep["wall_seconds"] = time.perf_counter() - t0
    rep["budget"] = {"epochs": epochs, "seconds": seconds, "lr_decay": args.lr_decay}
    if args.out:
        from ..plots.sphere import embedding_figure

        title = (f"{rep['loss_label']} on {rep['dataset']}, {rep['dim']}-D, {rep['epochs']:.2f} epochs, "
                 f"test acc {rep['test_acc']:.4f}")
        try:
            embedding_figure(snap.embeddings, snap.labels, snap.centres, class_names=trainer.data.classes,
                             title=title).write_html(args.out, include_plotlyjs=True)
        except OSError as exc:
            raise UsageError(f"cannot write {args.out}: {exc.strerror or exc}") from None
        rep["out"] = args.out
    if args.json:
        sys.stdout.write(json.dumps(rep, indent=1, ensure_ascii=False, default=_jsonable) + "\n")
    else:
        _print_table(rep)
    return 0


def _data(cfg: dict[str, Any], download: bool):
    """The data set; missing -> DatasetMissing (exit 2) saying how to get it, or a download with --download."""
    from toy_data import DatasetMissing
    from toy_data import download as download_dataset

    from ..image_training import ImageConfig

    config = ImageConfig.from_dict(cfg)
    try:
        return config.load_data()
    except DatasetMissing as exc:
        if not download:
            raise DatasetMissing(f"{exc}\nFrom this command: add --download.") from None

    def progress(done: int, total: int | None, fname: str) -> None:
        if total and done == total:
            print(f"downloaded {fname} ({total / 1e6:.1f} MB)", file=sys.stderr)

    download_dataset(cfg["dataset"], progress=progress)
    return config.load_data()


def _print_table(r: dict[str, Any]) -> None:
    print_report(r, f"{r['num_threads']} thread(s)", [
        f"data: {r['source']}",
        f"{r['epochs']:.2f} epochs ({r['steps']} steps) in {r['seconds']:.1f} s of training "
        f"({fmt(r['images_per_second'], ',.0f')} images/s), {r['wall_seconds']:.1f} s in all",
        f"test accuracy {fmt(r['test_acc'], '.4f')} on {r['n_test']:,} test images",
    ])
