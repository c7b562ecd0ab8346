"""``arcface-viz data {make-synthetic,make-rec,make-bin}``: build face data sets in insightface's formats.

- ``make-synthetic --out DIR``: procedural face identities as a RecordIO set (train.rec, train.idx,
  property), an image folder (DIR/images) and a small verification set DIR/val.bin of held-out identities;
- ``make-rec --folder IMAGES --out DIR``: one sub-folder per identity -> train.rec, train.idx, property;
- ``make-bin --pairs FILE --out FILE.bin``: lines ``path_a path_b 1|0`` -> a verification .bin.
"""

from __future__ import annotations

import argparse
import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="build face data sets (RecordIO, image folder, verification .bin)",
                       description=__doc__.splitlines()[0])
    dsub = p.add_subparsers(dest="data_command", required=True, metavar="ACTION")

    s = dsub.add_parser("make-synthetic", help="synthetic face identities in both formats, plus val.bin",
                        description="Write procedural face identities (112x112 JPEG) as a RecordIO set and an "
                                    "image folder, and a verification .bin of held-out identities.")
    s.add_argument("--out", required=True, metavar="DIR", help="folder to write into (created if missing)")
    s.add_argument("--identities", type=int, default=20, help="training identities (default 20)")
    s.add_argument("--images-per-identity", type=int, default=10, help="images of each identity (default 10)")
    s.add_argument("--seed", type=int, default=0, help="seed: same seed, same images (default 0)")
    s.add_argument("--formats", default="rec,folder", help="comma list of rec, folder (default rec,folder)")
    s.add_argument("--val-pairs", type=int, default=40, help="pairs in DIR/val.bin, half positive (default 40)")
    s.add_argument("--val-identities", type=int, default=10, help="held-out identities for val.bin (default 10)")
    s.add_argument("--no-val", action="store_true", help="do not write val.bin")
    s.add_argument("--overwrite", action="store_true", help="replace an existing set in DIR")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.set_defaults(func=run_synthetic)

    r = dsub.add_parser("make-rec", help="image folder (one sub-folder per identity) -> train.rec/idx/property",
                        description="Pack an image folder into insightface's RecordIO layout (record 0 holds "
                                    "the identity ranges; labels follow sorted folder names).")
    r.add_argument("--folder", required=True, metavar="DIR", help="image folder, one sub-folder per identity")
    r.add_argument("--out", required=True, metavar="DIR", help="folder for train.rec, train.idx, property")
    r.add_argument("--quality", type=int, default=95, help="JPEG quality for re-encoded images (default 95)")
    r.add_argument("--overwrite", action="store_true", help="replace an existing train.rec/idx/property in DIR")
    r.add_argument("--json", action="store_true", help="print one JSON object")
    r.set_defaults(func=run_rec)

    b = dsub.add_parser("make-bin", help="pairs file ('path_a path_b 1|0' lines) -> verification .bin",
                        description="Build an insightface verification .bin from a pairs file; relative "
                                    "paths are relative to the pairs file.")
    b.add_argument("--pairs", required=True, metavar="FILE", help="text file, one 'path_a path_b 1|0' per line")
    b.add_argument("--out", required=True, metavar="FILE.bin", help=".bin file to write")
    b.add_argument("--quality", type=int, default=95, help="JPEG quality for re-encoded images (default 95)")
    b.add_argument("--overwrite", action="store_true", help="replace an existing .bin")
    b.add_argument("--json", action="store_true", help="print one JSON object")
    b.set_defaults(func=run_bin)


def _plain_os_errors(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Permission denied, not a directory, disk full …: a one-line ValueError (the CLI exits 2)."""

    @functools.wraps(fn)
    def wrapper(args: argparse.Namespace) -> int:
        try:
            return fn(args)
        except FileNotFoundError:
            raise
        except OSError as exc:
            where = f": {exc.filename}" if exc.filename else ""
            raise ValueError(f"{exc.strerror or exc}{where}") from None

    return wrapper


def _emit(args: argparse.Namespace, out: dict[str, Any], lines: list[str]) -> int:
    print(json.dumps(out) if args.json else "\n".join(lines))
    return 0


@_plain_os_errors
def run_synthetic(args: argparse.Namespace) -> int:
    from toy_data.faces import make_synthetic_faces, make_verification_bin

    formats = tuple(f.strip() for f in args.formats.split(",") if f.strip())
    val = Path(args.out) / "val.bin"
    if not args.no_val:
        if args.val_pairs < 1 or args.val_identities < (2 if args.val_pairs > 1 else 1):
            raise ValueError("--val-pairs must be >= 1 and --val-identities >= 2 (negative pairs need two)")
        if val.exists() and not args.overwrite:
            raise ValueError(f"{val} already exists; pass --overwrite to replace")
    info = make_synthetic_faces(args.out, args.identities, args.images_per_identity, args.seed, formats,
                                overwrite=args.overwrite)
    out: dict[str, Any] = {
        "out": str(info.out_dir), "identities": info.num_identities, "images": info.num_images,
        "rec": str(info.rec_root / "train.rec") if info.rec_root else None,
        "folder": str(info.folder) if info.folder else None, "val_bin": None, "val_pairs": 0,
    }
    lines = [f"wrote {info.num_images} images of {info.num_identities} identities to {info.out_dir}"]
    if info.rec_root:
        lines.append(f"  RecordIO: {info.rec_root / 'train.rec'} (+ train.idx, property)")
    if info.folder:
        lines.append(f"  image folder: {info.folder}")
    if not args.no_val:
        out["val_pairs"] = make_verification_bin(val, args.val_identities, args.val_pairs, args.seed,
                                                 overwrite=args.overwrite)
        out["val_bin"] = str(val)
        lines.append(f"  verification: {val} ({out['val_pairs']} pairs of {args.val_identities} held-out identities)")
    return _emit(args, out, lines)


@_plain_os_errors
def run_rec(args: argparse.Namespace) -> int:
    from toy_data.faces import build_rec_from_folder

    info = build_rec_from_folder(args.folder, args.out, quality=args.quality, overwrite=args.overwrite)
    out = {"out": str(info.root), "images": info.num_images, "identities": info.num_classes}
    return _emit(args, out, [f"wrote {info.num_images} images of {info.num_classes} identities to "
                             f"{info.root / 'train.rec'} (+ train.idx, property)"])


@_plain_os_errors
def run_bin(args: argparse.Namespace) -> int:
    from toy_data.faces import build_bin_from_pairs

    n = build_bin_from_pairs(args.pairs, args.out, quality=args.quality, overwrite=args.overwrite)
    return _emit(args, {"out": args.out, "pairs": n}, [f"wrote {n} pairs ({2 * n} images) to {args.out}"])
