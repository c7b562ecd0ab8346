"""MNIST, Fashion-MNIST and scikit-learn's 8×8 digits for the hypersphere-embedding lesson.

The IDX format (LeCun et al., the MNIST page): a 4-byte magic ``00 00 <dtype code> <ndim>``, then
``ndim`` big-endian uint32 dimensions, then the payload in row-major order, big-endian.  Files may be
gzipped; we detect that from the gzip magic bytes ``1f 8b``, not from the file name.

Where data comes from, in this order:

1. a directory the user gives (standard names, gzipped or not, also ``train-images.idx3-ubyte``);
2. the user cache, filled by :func:`download` (``$ARCFACE_VIZ_DATA``, else
   ``$XDG_CACHE_HOME/arcface-viz``, else ``~/.cache/arcface-viz``), one sub-folder per dataset;
3. system folders: ``/usr/share/datasets/fashion-mnist`` from Debian's ``dataset-fashion-mnist``.

``"digits"`` (scikit-learn's bundled 1797 8×8 digits) always works offline.

Checksums are those published for the ``.gz`` files on the mirrors; they guard downloads only.  Local
files are checked structurally (magic, dtype, dimensions, payload length, label range) instead, since
repackaged copies (Debian recompresses the ``.gz`` files) have different bytes but the same content.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.client
import math
import os
import struct
import tempfile
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "DATASETS",
    "DatasetError",
    "DatasetMissing",
    "DatasetSpec",
    "DatasetStatus",
    "ImageDataset",
    "ProgressFn",
    "available_datasets",
    "dataset_names",
    "default_cache_dir",
    "download",
    "load_dataset",
    "read_idx",
    "read_idx_header",
]

ProgressFn = Callable[[int, "int | None", str], None]
"""``progress(done_bytes, total_bytes, filename)``; ``total_bytes`` is None when the server sends no length."""

# IDX dtype codes (third magic byte) -> big-endian numpy dtypes
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"
_MAX_NDIM = 8
_CHUNK = 1 << 18  # 256 KiB per read while downloading

FILE_KEYS = ("train_images", "train_labels", "test_images", "test_labels")
_STANDARD_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


class DatasetError(ValueError):
    """A dataset file is unreadable, malformed or failed to download; the message names the file."""


class DatasetMissing(DatasetError):
    """The dataset is not on this machine; the message says how to get it."""


@dataclass(frozen=True)
class DatasetSpec:
    """An IDX dataset: its four files, download mirrors, ``.gz`` checksums and class names."""

    name: str
    title: str
    classes: tuple[str, ...]
    mirrors: tuple[str, ...]
    checksums: Mapping[str, str]  # "<file>.gz" -> "md5:<hex>" or "sha256:<hex>"
    system_dirs: tuple[str, ...] = ()
    torchvision_dir: str = ""  # torchvision's layout: <root>/<torchvision_dir>/raw/
    how_to_get_extra: str = ""

    @property
    def download_files(self) -> tuple[str, ...]:
        return tuple(f"{_STANDARD_FILES[k]}.gz" for k in FILE_KEYS)

    @property
    def download_size_mb(self) -> str:
        return {"mnist": "about 11 MB", "fashion-mnist": "about 30 MB"}.get(self.name, "")


DATASETS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec(
        name="mnist",
        title="MNIST",
        classes=tuple(str(d) for d in range(10)),
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
        ),
        checksums={
            "train-images-idx3-ubyte.gz": "md5:f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train-labels-idx1-ubyte.gz": "md5:d53e105ee54ea40749a09fcbcd1e9432",
            "t10k-images-idx3-ubyte.gz": "md5:9fb629c4189551a2d022fa330f9573f3",
            "t10k-labels-idx1-ubyte.gz": "md5:ec29112dd5afa0611ce80d1b7f02629c",
        },
        torchvision_dir="MNIST",
    ),
    "fashion-mnist": DatasetSpec(
        name="fashion-mnist",
        title="Fashion-MNIST",
        classes=(
            "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
            "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
        ),
        mirrors=(
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
        ),
        checksums={
            "train-images-idx3-ubyte.gz": "md5:8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte.gz": "md5:25c81989df183df01b3e8a0aad5dffbe",
            "t10k-images-idx3-ubyte.gz": "md5:bef4ecab320f06d8554ea6380940ec79",
            "t10k-labels-idx1-ubyte.gz": "md5:bb300cfdad3c16e7a12a480ee83fd310",
        },
        system_dirs=("/usr/share/datasets/fashion-mnist",),
        torchvision_dir="FashionMNIST",
        how_to_get_extra="on Debian/Ubuntu: `apt-get install dataset-fashion-mnist` "
        "(installs it in /usr/share/datasets/fashion-mnist, found automatically)",
    ),
}

DIGITS_CLASSES = tuple(str(d) for d in range(10))
DIGITS_TEST_FRACTION = 0.2
_DIGITS_N = 1797


def dataset_names() -> list[str]:
    """Every dataset name ``load_dataset`` accepts."""
    return [*DATASETS, "digits"]


# --------------------------------------------------------------------------------------------- IDX


def _open_idx(path: Path):
    """Open ``path`` for reading, through gzip when it starts with the gzip magic bytes."""
    with open(path, "rb") as f:
        head = f.read(2)
    return gzip.open(path, "rb") if head == _GZIP_MAGIC else open(path, "rb")


def _read_exact(f, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        chunk = f.read(n - len(out))
        if not chunk:
            break
        out += chunk
    return bytes(out)


def _parse_header(f, path: Path) -> tuple[np.dtype, tuple[int, ...], int]:
    magic = _read_exact(f, 4)
    if len(magic) < 4:
        raise DatasetError(f"{path}: not an IDX file: only {len(magic)} bytes, the header needs 4")
    if magic[0] != 0 or magic[1] != 0:
        raise DatasetError(
            f"{path}: wrong magic number 0x{magic.hex()}: an IDX file starts with 00 00 <dtype> <ndim>"
        )
    code, ndim = magic[2], magic[3]
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in IDX_DTYPES)
        raise DatasetError(f"{path}: unknown IDX dtype code 0x{code:02X} (known: {known})")
    if not 1 <= ndim <= _MAX_NDIM:
        raise DatasetError(f"{path}: bad number of dimensions {ndim} in the IDX header (1..{_MAX_NDIM})")
    raw_dims = _read_exact(f, 4 * ndim)
    if len(raw_dims) < 4 * ndim:
        raise DatasetError(f"{path}: truncated IDX header: {ndim} dimensions need {4 * ndim} bytes")
    shape = struct.unpack(f">{ndim}I", raw_dims)
    return IDX_DTYPES[code], tuple(int(d) for d in shape), 4 + 4 * ndim


@contextlib.contextmanager
def _gzip_guard(path: Path):
    """Turn decompression failures into a DatasetError naming ``path``."""
    try:
        yield
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise DatasetError(f"{path}: corrupt or truncated gzip data ({exc})") from exc


def read_idx_header(path: str | os.PathLike) -> tuple[np.dtype, tuple[int, ...]]:
    """Validate an IDX file's header (and, for raw files, its size) without reading the payload.

    Returns (big-endian dtype, shape).  A gzipped file's payload length is only checked by ``read_idx``.
    """
    path = Path(path)
    with _gzip_guard(path), _open_idx(path) as f:
        dtype, shape, header_len = _parse_header(f, path)
        gzipped = isinstance(f, gzip.GzipFile)
    if not gzipped:
        expected = header_len + math.prod(shape) * dtype.itemsize
        size = path.stat().st_size
        if size != expected:
            what = "truncated" if size < expected else "too long"
            raise DatasetError(
                f"{path}: {what}: header says shape {shape} of {dtype.name}, i.e. {expected} bytes, "
                f"but the file has {size}"
            )
    return dtype, shape


def _fill(f, view: memoryview) -> int:
    """Read into ``view`` until it is full or the file ends; returns the bytes read."""
    have = 0
    while have < len(view):
        n = f.readinto(view[have:])
        if not n:
            break
        have += n
    return have


def read_idx(path: str | os.PathLike, rows: Sequence[int] | np.ndarray | None = None, *,
             block_bytes: int = 1 << 22) -> np.ndarray:
    """Read an IDX file (gzipped or not) into a native-endian array of the header's shape.

    ``rows`` (sorted, distinct indices along the first axis) keeps only those records.  The file is still read
    to its end and checked, ``block_bytes`` at a time, so a 6,000-image subset of MNIST never holds all 60,000
    images in memory.
    """
    path = Path(path)
    with _gzip_guard(path), _open_idx(path) as f:
        dtype, shape, _ = _parse_header(f, path)
        record = math.prod(shape[1:]) * dtype.itemsize
        n_bytes = shape[0] * record
        if rows is None:
            out = np.empty(n_bytes, dtype=np.uint8)
            got = _fill(f, memoryview(out))
        else:
            keep = np.asarray(rows, dtype=np.int64).reshape(-1)
            if len(keep) and (keep[0] < 0 or keep[-1] >= shape[0] or np.any(np.diff(keep) <= 0)):
                raise ValueError(f"rows must be sorted, distinct indices in 0..{shape[0] - 1}")
            out = np.empty((len(keep), record), dtype=np.uint8)
            per = max(1, block_bytes // max(record, 1)) * record
            block = np.empty(per, dtype=np.uint8)
            got = filled = 0
            while got < n_bytes:
                want = min(per, n_bytes - got)
                have = _fill(f, memoryview(block)[:want])
                first, last = got // record, (got + have) // record
                sel = keep[(keep >= first) & (keep < last)] - first
                out[filled:filled + len(sel)] = block[:(last - first) * record].reshape(-1, record)[sel]
                filled += len(sel)
                got += have
                if have < want:
                    break
        if got < n_bytes:
            raise DatasetError(
                f"{path}: truncated: header says shape {shape} of {dtype.name} ({n_bytes} bytes of data) "
                f"but only {got} bytes follow"
            )
        if f.read(1):
            raise DatasetError(
                f"{path}: too long: more bytes follow the {n_bytes} bytes of data that shape {shape} "
                f"of {dtype.name} needs"
            )
    count = shape[0] if rows is None else len(out)
    arr = out.reshape(-1).view(dtype).reshape((count, *shape[1:]))
    return arr if dtype.itemsize == 1 else arr.astype(dtype.newbyteorder("="))


# -------------------------------------------------------------------------------------- locations


def default_cache_dir() -> Path:
    """``$ARCFACE_VIZ_DATA``, else ``$XDG_CACHE_HOME/arcface-viz``, else ``~/.cache/arcface-viz``."""
    env = os.environ.get("ARCFACE_VIZ_DATA")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "arcface-viz"
    return Path.home() / ".cache" / "arcface-viz"


def _spec(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; choose one of {', '.join(dataset_names())}")
    return DATASETS[name]


def _candidate_names(key: str) -> list[str]:
    std = _STANDARD_FILES[key]
    dotted = std.replace("-idx", ".idx")  # train-images.idx3-ubyte, as some mirrors spell it
    return [std, f"{std}.gz", dotted, f"{dotted}.gz"]


def _search_dirs(spec: DatasetSpec, data_dir, cache_dir) -> list[tuple[Path, str]]:
    """(directory, kind) in search order."""
    dirs: list[tuple[Path, str]] = []
    if data_dir is not None:
        root = Path(data_dir).expanduser()
        dirs += [(root, "data directory"), (root / spec.name, "data directory")]
        if spec.torchvision_dir:
            dirs.append((root / spec.torchvision_dir / "raw", "data directory"))
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    dirs.append((cache / spec.name, "cache"))
    dirs += [(Path(d), "system") for d in spec.system_dirs]
    return dirs


@dataclass(frozen=True)
class _Found:
    directory: Path
    kind: str
    paths: dict[str, Path]


def _find_files(directory: Path) -> dict[str, Path]:
    found = {}
    for key in FILE_KEYS:
        for fname in _candidate_names(key):
            p = directory / fname
            if p.is_file():
                found[key] = p
                break
    return found


def _locate(spec: DatasetSpec, data_dir, cache_dir) -> tuple[_Found | None, list[str]]:
    """The first directory holding all four files, and notes on incomplete ones seen before it."""
    notes = []
    for directory, kind in _search_dirs(spec, data_dir, cache_dir):
        if not directory.is_dir():
            continue
        paths = _find_files(directory)
        if len(paths) == len(FILE_KEYS):
            return _Found(directory, kind, paths), notes
        if paths:
            missing = [_STANDARD_FILES[k] for k in FILE_KEYS if k not in paths]
            notes.append(f"{directory} is incomplete: missing {', '.join(missing)} (.gz or not)")
    return None, notes


def _how_to_get(spec: DatasetSpec, data_dir, cache_dir, notes: Sequence[str]) -> str:
    searched = [str(d) for d, _ in _search_dirs(spec, data_dir, cache_dir)]
    files = ", ".join(_STANDARD_FILES[k] for k in FILE_KEYS)
    ways = [
        f"download it (needs internet, {spec.download_size_mb}; it is cached in "
        f"{(Path(cache_dir) if cache_dir is not None else default_cache_dir()) / spec.name})",
        f"give a directory holding the four IDX files ({files}; gzipped or not)",
    ]
    if spec.how_to_get_extra:
        ways.append(spec.how_to_get_extra)
    lines = [f"{spec.title} is not available on this machine. To get it:"]
    lines += [f"  - {w}" for w in ways]
    lines += [f"  note: {n}" for n in notes]
    lines.append(f"Searched: {', '.join(searched)}")
    return "\n".join(lines)


def _check_pair(images_hdr, labels_hdr, paths: Mapping[str, Path], split: str) -> int:
    (img_dtype, img_shape), (lab_dtype, lab_shape) = images_hdr, labels_hdr
    img_path, lab_path = paths[f"{split}_images"], paths[f"{split}_labels"]
    if img_dtype != IDX_DTYPES[0x08] or len(img_shape) != 3:
        raise DatasetError(
            f"{img_path}: expected images as unsigned bytes of shape (N, H, W), "
            f"found {img_dtype.name} of shape {img_shape}"
        )
    if lab_dtype != IDX_DTYPES[0x08] or len(lab_shape) != 1:
        raise DatasetError(
            f"{lab_path}: expected labels as unsigned bytes of shape (N,), "
            f"found {lab_dtype.name} of shape {lab_shape}"
        )
    if img_shape[0] != lab_shape[0]:
        raise DatasetError(
            f"{split} images and labels disagree: {img_path} has {img_shape[0]} images, "
            f"{lab_path} has {lab_shape[0]} labels"
        )
    if img_shape[0] == 0:
        raise DatasetError(f"{img_path}: holds no images")
    return img_shape[0]


# ---------------------------------------------------------------------------------------- loading


@dataclass
class ImageDataset:
    """Grey images and integer labels: x uint8 (N, H, W) in 0..255, y int64 in 0..len(classes)-1."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: tuple[str, ...]
    name: str
    source: str

    @property
    def image_shape(self) -> tuple[int, int]:
        return tuple(self.x_train.shape[1:])

    @property
    def n_classes(self) -> int:
        return len(self.classes)


def _subset_rows(n: int, k: int | None, rng: np.random.Generator) -> np.ndarray | None:
    """Sorted indices of a seeded random subset of k of n rows; None for all of them."""
    if k is None or k >= n:
        return None
    if k < 1:
        raise DatasetError(f"subset size must be at least 1, got {k}")
    return np.sort(rng.permutation(n)[:k])


def _subset(x: np.ndarray, y: np.ndarray, k: int | None, rng: np.random.Generator):
    rows = _subset_rows(len(y), k, rng)
    return (x, y) if rows is None else (x[rows], y[rows])


def _check_headers(found: _Found) -> tuple[int, int, tuple[int, ...]]:
    """Validate the four headers together; returns (n_train, n_test, image shape)."""
    hdr = {key: read_idx_header(found.paths[key]) for key in FILE_KEYS}
    n_train = _check_pair(hdr["train_images"], hdr["train_labels"], found.paths, "train")
    n_test = _check_pair(hdr["test_images"], hdr["test_labels"], found.paths, "test")
    train_hw, test_hw = hdr["train_images"][1][1:], hdr["test_images"][1][1:]
    if train_hw != test_hw:
        raise DatasetError(f"{found.directory}: train images are {train_hw} but test images are {test_hw}")
    return n_train, n_test, train_hw


def _load_idx_dataset(spec: DatasetSpec, found: _Found, max_train: int | None, max_test: int | None,
                      rng: np.random.Generator) -> ImageDataset:
    """The four files, keeping seeded random subsets of max_train / max_test images (read without holding
    the rest)."""
    counts = _check_headers(found)[:2]  # cheap: fails before decompressing anything
    arrays = {}
    for split, n, k in zip(("train", "test"), counts, (max_train, max_test), strict=True):
        rows = _subset_rows(n, k, rng)
        labs = read_idx(found.paths[f"{split}_labels"])
        if labs.max() >= len(spec.classes):
            raise DatasetError(
                f"{found.paths[f'{split}_labels']}: label {int(labs.max())} out of range "
                f"0..{len(spec.classes) - 1} for {spec.title}"
            )
        arrays[split] = (read_idx(found.paths[f"{split}_images"], rows),
                         (labs if rows is None else labs[rows]).astype(np.int64))
    return ImageDataset(
        x_train=arrays["train"][0],
        y_train=arrays["train"][1],
        x_test=arrays["test"][0],
        y_test=arrays["test"][1],
        classes=spec.classes,
        name=spec.name,
        source=f"{spec.title} IDX files in {found.directory} ({found.kind})",
    )


def _load_digits(seed: int) -> ImageDataset:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = np.round(digits.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    y = digits.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=DIGITS_TEST_FRACTION, stratify=y, random_state=seed
    )
    return ImageDataset(
        x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te, classes=DIGITS_CLASSES, name="digits",
        source=f"scikit-learn's bundled 8×8 digits (stratified {1 - DIGITS_TEST_FRACTION:.0%} / "
        f"{DIGITS_TEST_FRACTION:.0%} split, seed {seed})",
    )


def load_dataset(
    name: str,
    data_dir: str | os.PathLike | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
    max_train: int | None = None,
    max_test: int | None = None,
    seed: int = 0,
) -> ImageDataset:
    """Load ``"mnist"``, ``"fashion-mnist"`` or ``"digits"``.

    Searches ``data_dir``, then the cache, then system folders; the first folder holding all four files
    is used.  ``max_train`` / ``max_test`` keep a seeded random subset for quick runs (``seed`` also
    fixes the digits split).  Raises DatasetMissing (with how to get it) or DatasetError (bad file).
    """
    rng = np.random.default_rng(seed)
    if name == "digits":
        ds = _load_digits(seed)
    else:
        spec = _spec(name)
        found, notes = _locate(spec, data_dir, cache_dir)
        if found is None:
            raise DatasetMissing(_how_to_get(spec, data_dir, cache_dir, notes))
        return _load_idx_dataset(spec, found, max_train, max_test, rng)
    ds.x_train, ds.y_train = _subset(ds.x_train, ds.y_train, max_train, rng)
    ds.x_test, ds.y_test = _subset(ds.x_test, ds.y_test, max_test, rng)
    return ds


@dataclass(frozen=True)
class DatasetStatus:
    """What ``available_datasets`` knows about one dataset, from file headers only."""

    name: str
    title: str
    available: bool
    location: str | None  # folder (or "scikit-learn") it would be loaded from
    n_train: int | None
    n_test: int | None
    image_shape: tuple[int, ...] | None
    message: str  # a one-line summary, or how to get it / what is wrong


def _status(spec: DatasetSpec, data_dir, cache_dir) -> DatasetStatus:
    found, notes = _locate(spec, data_dir, cache_dir)
    if found is None:
        msg = _how_to_get(spec, data_dir, cache_dir, notes)
        return DatasetStatus(spec.name, spec.title, False, None, None, None, None, msg)
    try:
        n_train, n_test, shape = _check_headers(found)
    except (DatasetError, OSError) as exc:
        return DatasetStatus(spec.name, spec.title, False, str(found.directory), None, None, None, str(exc))
    msg = f"{spec.title}: {n_train} train / {n_test} test images of {shape[0]}×{shape[1]} in {found.directory}"
    return DatasetStatus(spec.name, spec.title, True, str(found.directory), n_train, n_test, shape, msg)


def available_datasets(
    data_dir: str | os.PathLike | None = None, *, cache_dir: str | os.PathLike | None = None
) -> dict[str, DatasetStatus]:
    """Status of every dataset right now (headers checked, payloads not read); digits is always there."""
    out = {name: _status(spec, data_dir, cache_dir) for name, spec in DATASETS.items()}
    import importlib.util

    has_sklearn = importlib.util.find_spec("sklearn") is not None
    n_test = math.ceil(DIGITS_TEST_FRACTION * _DIGITS_N)
    out["digits"] = DatasetStatus(
        "digits", "Digits (8×8)", has_sklearn, "scikit-learn" if has_sklearn else None,
        _DIGITS_N - n_test if has_sklearn else None, n_test if has_sklearn else None,
        (8, 8) if has_sklearn else None,
        f"scikit-learn's bundled digits: {_DIGITS_N - n_test} train / {n_test} test images of 8×8"
        if has_sklearn else "scikit-learn is not installed: `pip install scikit-learn`",
    )
    return out


# --------------------------------------------------------------------------------------- download


def _parse_checksum(text: str) -> tuple[str, str]:
    algo, sep, digest = text.partition(":")
    if not sep:  # bare hex: infer from its length
        digest, algo = text, {32: "md5", 64: "sha256"}.get(len(text), "")
    algo, digest = algo.lower(), digest.lower()
    if algo not in ("md5", "sha256"):
        raise DatasetError(f"unsupported checksum {text!r}: use 'md5:<hex>' or 'sha256:<hex>'")
    return algo, digest


def _file_digest(path: Path, algo: str) -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fetch_one(url: str, dest: Path, fname: str, checksum: str, timeout: float, progress) -> None:
    """Stream ``url`` to a temp file next to ``dest``; verify it; move it into place only when valid."""
    algo, want = _parse_checksum(checksum)
    h = hashlib.new(algo)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{fname}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        opener = urllib.request.build_opener()
        req = urllib.request.Request(url, headers={"User-Agent": "arcface-viz (dataset download)"})
        with os.fdopen(fd, "wb") as out, opener.open(req, timeout=timeout) as resp:
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            done = 0
            if progress:
                progress(0, total, fname)
            while True:
                chunk = resp.read(_CHUNK)
                if not chunk:
                    break
                out.write(chunk)
                h.update(chunk)
                done += len(chunk)
                if progress:
                    progress(done, total, fname)
        if total is not None and done != total:
            raise DatasetError(f"{fname}: truncated download from {url}: received {done} of {total} bytes")
        got = h.hexdigest()
        if got != want:
            raise DatasetError(
                f"{fname}: checksum mismatch for {url}: {algo} is {got}, expected {want} "
                f"(corrupt or incomplete download, or a changed mirror)"
            )
        read_idx(tmp)  # catches a truncated gzip even when its checksum was declared for it
        os.replace(tmp, dest)
    except DatasetError as exc:
        raise DatasetError(str(exc).replace(str(tmp), f"{fname} from {url}")) from exc
    finally:
        tmp.unlink(missing_ok=True)


def download(
    name: str,
    cache_dir: str | os.PathLike | None = None,
    mirrors: Sequence[str] | None = None,
    progress: ProgressFn | None = None,
    *,
    checksums: Mapping[str, str] | None = None,
    timeout: float = 30.0,
    force: bool = False,
) -> Path:
    """Download the four ``.gz`` files of ``name`` into ``<cache_dir>/<name>/`` and return that folder.

    Each file is fetched from the mirrors in order (URL = mirror + file name) until one gives a file with
    the right checksum; a file is moved into the cache only once verified, so the cache never holds a
    partial or wrong file.  Files already cached with the right checksum are kept unless ``force``.
    ``checksums`` overrides entries (file name -> ``"md5:<hex>"`` / ``"sha256:<hex>"``).
    Raises DatasetError naming the file and every URL tried when all mirrors fail.
    """
    spec = _spec(name)
    mirrors = tuple(mirrors) if mirrors is not None else spec.mirrors
    if not mirrors:
        raise DatasetError(f"no mirrors given to download {spec.title}")
    sums = {**spec.checksums, **(checksums or {})}
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    target = root / spec.name
    created = not target.exists()
    target.mkdir(parents=True, exist_ok=True)
    try:
        for fname in spec.download_files:
            dest = target / fname
            algo, want = _parse_checksum(sums[fname])
            if dest.is_file() and not force and _file_digest(dest, algo) == want:
                if progress:
                    size = dest.stat().st_size
                    progress(size, size, fname)
                continue
            errors = []
            for mirror in mirrors:
                url = mirror if mirror.endswith("/") else mirror + "/"
                url += fname
                try:
                    _fetch_one(url, dest, fname, sums[fname], timeout, progress)
                    break
                except urllib.error.HTTPError as exc:
                    errors.append(f"{url}: HTTP {exc.code} {exc.reason}")
                except (urllib.error.URLError, OSError) as exc:
                    reason = getattr(exc, "reason", exc)
                    errors.append(f"{url}: {type(exc).__name__}: {reason}")
                except DatasetError as exc:
                    errors.append(str(exc))
                except (http.client.HTTPException, ValueError) as exc:
                    errors.append(f"{url}: {type(exc).__name__}: {exc}")
            else:
                raise DatasetError(
                    f"could not download {fname} for {spec.title}; tried:\n  " + "\n  ".join(errors)
                )
    finally:
        if created:
            try:
                target.rmdir()  # only succeeds when nothing was downloaded
            except OSError:
                pass
    return target
