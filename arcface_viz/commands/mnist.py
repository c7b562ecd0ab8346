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
import sys
import time
from typing import TYPE_CHECKING, Any

from ..params import LOSS_SPEC
from .lessons import check_out, finish, fmt, loss_from_args, number, print_report, widths

if TYPE_CHECKING:
    from ..image_training import ImageConfig

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


def config_from_args(args: argparse.Namespace) -> ImageConfig:
    """The ImageConfig for parsed flags; every problem raises ParamError naming the flag.  Flags left out take
    the data set's recommendation (lr, batch size, warm-up) and the whole training set."""
    from ..image_training import MNIST_SPEC, ImageConfig

    values = MNIST_SPEC.subset(TRAINING_FLAGS).from_namespace(args)
    loss, loss_params = loss_from_args(args)
    unset = {field: None for flag, field in (("lr", "lr"), ("batch_size", "batch_size"), ("warmup", "warmup_steps"),
                                             ("max_train", "max_train")) if getattr(args, flag) is None}
    extra: dict[str, Any] = {}
    if args.channels is not None:
        extra["channels"] = widths(args.channels, "--channels", 512)
    if args.threads is not None:
        extra["num_threads"] = number(args.threads, "--threads", 1, 256, whole=True)
    return ImageConfig.from_values({**values, "loss": loss}, loss_params=loss_params, data_dir=args.data_dir,
                                   anneal=not args.no_anneal, device=args.device, **unset, **extra)


def run(args: argparse.Namespace) -> int:
    from ..image_training import report, train_for

    cfg = config_from_args(args)
    epochs = number(args.epochs, "--epochs", 1e-6, 10_000) if args.epochs is not None else None
    seconds = number(args.seconds, "--seconds", 1e-3, 7 * 86400) if args.seconds is not None else None
    if epochs is None and seconds is None:
        epochs = 1.0
    check_out(args.out)
    t0 = time.perf_counter()
    trainer = cfg.build(data=_data(cfg, args.download))
    snap = train_for(trainer, epochs=epochs, seconds=seconds, lr_decay=args.lr_decay, chunk_seconds=10.0)
    rep = report(trainer)
    rep["wall_seconds"] = time.perf_counter() - t0
    rep["budget"] = {"epochs": epochs, "seconds": seconds, "lr_decay": args.lr_decay}

    def figure():
        from ..plots.sphere import embedding_figure

        title = (f"{rep['loss_label']} on {rep['dataset']}, {rep['dim']}-D, {rep['epochs']:.2f} epochs, "
                 f"test acc {rep['test_acc']:.4f}")
        return embedding_figure(snap.embeddings, snap.labels, snap.centres, class_names=trainer.data.classes,
                                title=title)

    return finish(rep, args, figure, _print_table)


def _data(cfg: ImageConfig, download: bool):
    """The data set; missing -> DatasetMissing (exit 2) saying how to get it, or a download with --download."""
    from toy_data import DatasetMissing
    from toy_data import download as download_dataset

    try:
        return cfg.load_data()
    except DatasetMissing as exc:
        if not download:
            raise DatasetMissing(f"{exc}\nFrom this command: add --download.") from None

    def progress(done: int, total: int | None, fname: str) -> None:
        if total and done == total:
            print(f"downloaded {fname} ({total / 1e6:.1f} MB)", file=sys.stderr)

    download_dataset(cfg.dataset, progress=progress)
    return cfg.load_data()


def _print_table(r: dict[str, Any]) -> None:
    print_report(r, f"{r['num_threads']} thread(s)", [
        f"data: {r['source']}",
        f"{r['epochs']:.2f} epochs ({r['steps']} steps) in {r['seconds']:.1f} s of training "
        f"({fmt(r['images_per_second'], ',.0f')} images/s), {r['wall_seconds']:.1f} s in all",
        f"test accuracy {fmt(r['test_acc'], '.4f')} on {r['n_test']:,} test images",
    ])
