"""Data sets inside the data roots, for the Training runs page (the CLI is ``arcface-viz data``): find the ones
there are, and make new ones (synthetic faces, RecordIO from an image folder, a verification ``.bin``), every
path confined to :func:`arcface_viz.settings.data_roots`."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from .. import settings
from .recordio import IMAGE_EXTENSIONS


def _is_image_folder(path: Path, subdirs: list[str]) -> bool:
    """One sub-folder per identity: the first sub-folder holds images (only a few entries are looked at)."""
    if not subdirs:
        return False
    with contextlib.suppress(OSError), os.scandir(path / subdirs[0]) as it:
        for k, entry in enumerate(it):
            if entry.name.lower().endswith(IMAGE_EXTENSIONS):
                return True
            if k >= 50:
                break
    return False


def find_datasets(roots: list[Path] | None = None, max_depth: int = 3, max_dirs: int = 2000) -> dict[str, list[Path]]:
    """Data sets under the data roots: ``rec`` folders (train.rec + train.idx), image ``folder``s (one
    sub-folder of images per identity) and verification ``bin`` files.  Image folders are not descended
    into and at most ``max_dirs`` folders are listed, so a root holding millions of images stays cheap."""
    roots = settings.data_roots() if roots is None else roots
    found: dict[str, list[Path]] = {"rec": [], "folder": [], "bin": []}
    visited = 0
    for root in roots:
        if not root.is_dir():
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            visited += 1
            here = Path(dirpath)
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            if "train.rec" in filenames and "train.idx" in filenames:
                found["rec"].append(here)
            found["bin"] += [here / f for f in sorted(filenames) if f.endswith(".bin")]
            if _is_image_folder(here, dirnames):
                found["folder"].append(here)
                dirnames[:] = []
            if len(here.relative_to(root).parts) >= max_depth or visited >= max_dirs:
                dirnames[:] = []
    return found


def prepare_synthetic(out: str | os.PathLike, identities: int = 20, images_per_identity: int = 10, seed: int = 0,
                      val_identities: int = 10, val_pairs: int = 40) -> dict[str, Any]:
    """``data make-synthetic`` confined to the data roots: RecordIO + image folder + ``val.bin``."""
    from toy_data.faces import make_synthetic_faces, make_verification_bin

    roots = settings.data_roots()
    out_dir = settings.confine(out, roots, what="output folder", base=roots[0])
    info = make_synthetic_faces(out_dir, identities, images_per_identity, seed, ("rec", "folder"))
    n = make_verification_bin(out_dir / "val.bin", val_identities, val_pairs, seed) if val_pairs else 0
    return {"out": str(out_dir), "identities": info.num_identities, "images": info.num_images,
            "folder": str(info.folder), "val_bin": str(out_dir / "val.bin") if n else None, "val_pairs": n}


def prepare_rec(folder: str | os.PathLike, out: str | os.PathLike) -> dict[str, Any]:
    """``data make-rec`` confined to the data roots: image folder -> train.rec / train.idx / property."""
    from toy_data.faces import build_rec_from_folder

    roots = settings.data_roots()
    src = settings.confine(folder, roots, what="image folder", base=roots[0])
    dst = settings.confine(out, roots, what="output folder", base=roots[0])
    if not src.is_dir():
        raise FileNotFoundError(f"image folder not found: {src}")
    info = build_rec_from_folder(src, dst)
    return {"out": str(dst), "images": info.num_images, "identities": info.num_classes}


def prepare_bin(pairs: str | os.PathLike, out: str | os.PathLike) -> dict[str, Any]:
    """``data make-bin`` confined to the data roots; every image the pairs file names is confined as well."""
    from toy_data.faces import build_bin_from_pairs, read_pairs_file

    roots = settings.data_roots()
    pairs_file = settings.confine(pairs, roots, what="pairs file", base=roots[0])
    dst = settings.confine(out, roots, what="output .bin", base=roots[0])
    if dst.suffix != ".bin":
        raise ValueError(f"output .bin: expected a file name ending in .bin, got {dst.name!r}")
    triples = [(settings.confine(a, roots, what="image in the pairs file"),
                settings.confine(b, roots, what="image in the pairs file"), same)
               for a, b, same in read_pairs_file(pairs_file)]
    n = build_bin_from_pairs(triples, dst)
    return {"out": str(dst), "pairs": n}
