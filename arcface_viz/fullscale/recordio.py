"""Face-recognition data formats of insightface's arcface_torch, read and written without MXNet.

**RecordIO** (dmlc-core, little-endian).  Each record is framed as::

    uint32 magic = 0xced7230a | uint32 lrec = cflag << 29 | length | payload | zero padding to 4 bytes

If the payload holds the magic at a 4-byte aligned offset, the writer cuts it there and drops those four
bytes: the parts are written with cflag 1 (first), 2 (middle) and 3 (last), and the reader puts the magic
back between them.  cflag 0 is a record in one part.  The ``.idx`` file is text, one ``key<TAB>offset``
line per record, giving random access.

**IRHeader** (``struct "<IfQQ"``, 24 bytes) at the start of a payload: flag, label, id, id2.  When
flag > 0 the label is the ``flag`` float32 values that follow the header (the header's own label field is
then 0).

**insightface face sets** (``train.rec`` + ``train.idx`` + ``property``): record 0 has flag > 0 and
label = (first identity record, end); image records are 1 .. label[0] − 1, each an IRHeader (label =
class) followed by JPEG bytes; identity records label[0] .. label[1] − 1 hold the range [a, b) of image
records of one identity.  ``property`` is the text ``num_classes,112,112``.

**Verification sets** (``lfw.bin`` …): a pickle of ``(bins, issame_list)``, 2N JPEG byte strings where
pair i is images 2i and 2i+1.  Security: unpickling can run code, so :func:`load_bin` only reads files
the user names, and its unpickler refuses every global except the few numpy/bytes helpers such files
use.

Images come out as insightface feeds them: (3, 112, 112) float, normalised (x/255 − 0.5)/0.5.
"""

from __future__ import annotations

import io
import numbers
import os
import pickle
import struct
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

__all__ = [
    "IMAGE_EXTENSIONS",
    "IR_SIZE",
    "MAGIC",
    "DataFormatError",
    "FaceRecordDataset",
    "FaceSetInfo",
    "IRHeader",
    "ImageFolderFaces",
    "RecordReader",
    "RecordWriter",
    "SyntheticFaces",
    "decode_image",
    "encode_jpeg",
    "frame_record",
    "iter_records",
    "load_bin",
    "pack_header",
    "read_property",
    "rebuild_index",
    "scan_image_folder",
    "to_model_input",
    "unpack_header",
    "write_bin",
    "write_face_set",
    "write_property",
]

MAGIC = 0xCED7230A
_MAGIC_BYTES = struct.pack("<I", MAGIC)
_LEN_MASK = (1 << 29) - 1
_IR_FORMAT = "<IfQQ"
IR_SIZE = struct.calcsize(_IR_FORMAT)  # 24
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
PathLike = str | os.PathLike


class DataFormatError(ValueError):
    """A data file is missing a part or is corrupt; the message names the file and what is wrong."""


# --------------------------------------------------------------------------------------------- framing

def frame_record(payload: bytes) -> bytes:
    """The bytes dmlc's RecordIOWriter writes for one record (split at aligned magics, padded to 4)."""
    payload = bytes(payload)
    n = len(payload)
    out: list[bytes] = []
    start = 0
    i = payload.find(_MAGIC_BYTES)
    while i != -1:
        if i % 4 == 0:
            out += [_lrec_head(1 if start == 0 else 2, i - start), payload[start:i]]
            start = i + 4
            i = payload.find(_MAGIC_BYTES, i + 4)
        else:
            i = payload.find(_MAGIC_BYTES, i + 1)
    out += [_lrec_head(3 if start != 0 else 0, n - start), payload[start:], b"\0" * (-n % 4)]
    return b"".join(out)


def _lrec_head(cflag: int, length: int) -> bytes:
    if length > _LEN_MASK:
        raise ValueError(f"a RecordIO part holds at most {_LEN_MASK} bytes, got {length}")
    return struct.pack("<II", MAGIC, (cflag << 29) | length)


class RecordWriter:
    """Write an indexed RecordIO pair: ``write(key, payload)`` appends a record and a ``key<TAB>offset`` line."""

    def __init__(self, path_rec: PathLike, path_idx: PathLike | None = None):
        self.path_rec = Path(path_rec)
        self.path_idx = Path(path_idx) if path_idx is not None else self.path_rec.with_suffix(".idx")
        self._rec = open(self.path_rec, "wb")
        self._idx = open(self.path_idx, "w", encoding="ascii", newline="\n")
        self._pos = 0
        self._keys: set[int] = set()

    def tell(self) -> int:
        """Byte offset the next record starts at."""
        return self._pos

    def write(self, key: int, payload: bytes) -> int:
        """Append one record under integer ``key``; return its offset."""
        if isinstance(key, bool) or not isinstance(key, numbers.Integral):
            raise TypeError(f"RecordIO keys are integers, got {key!r}")
        key = int(key)
        if key in self._keys:
            raise ValueError(f"{self.path_idx}: key {key} written twice")
        data = frame_record(payload)
        offset = self._pos
        self._rec.write(data)
        self._idx.write(f"{key}\t{offset}\n")
        self._pos += len(data)
        self._keys.add(key)
        return offset

    def close(self) -> None:
        self._rec.close()
        self._idx.close()

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _read_part(read: Callable[[int, int], bytes], pos: int, where: str, first: bool) -> tuple[int, int, bytes]:
    """One framed part at ``pos``: (cflag, bytes consumed, data)."""
    head = read(8, pos)
    if len(head) < 8:
        raise DataFormatError(f"{where} at byte {pos}: the file ends inside the 8-byte record header "
                              "(truncated .rec?)")
    magic, lrec = struct.unpack("<II", head)
    if magic != MAGIC:
        raise DataFormatError(f"{where} at byte {pos}: bad magic 0x{magic:08x}, expected 0x{MAGIC:08x} "
                              "(the .idx does not belong to this .rec, or the file is corrupt)")
    cflag, length = lrec >> 29, lrec & _LEN_MASK
    if (first and cflag not in (0, 1)) or (not first and cflag not in (2, 3)):
        raise DataFormatError(f"{where} at byte {pos}: unexpected part flag {cflag} "
                              f"({'start' if first else 'continuation'} of a record expected)")
    padded = (length + 3) & ~3
    body = read(padded, pos + 8)
    if len(body) < padded:
        raise DataFormatError(f"{where} at byte {pos}: the record needs {padded} bytes but the file ends "
                              f"after {len(body)} (truncated .rec?)")
    return cflag, 8 + padded, body[:length]


def _read_record(read: Callable[[int, int], bytes], pos: int, where: str) -> tuple[bytes, int]:
    """Reassemble the record at ``pos``; return (payload, bytes consumed)."""
    parts: list[bytes] = []
    used = 0
    while True:
        cflag, n, data = _read_part(read, pos + used, where, first=not parts)
        used += n
        parts.append(data)
        if cflag in (0, 3):
            return b"".join(parts), used
        parts.append(_MAGIC_BYTES)


def iter_records(path_rec: PathLike) -> Iterator[tuple[int, bytes]]:
    """Read a ``.rec`` front to back (no index needed): yields (offset, payload)."""
    path = Path(path_rec)
    if not path.is_file():
        raise FileNotFoundError(f"RecordIO file not found: {path}")
    with open(path, "rb") as f:
        def read(n: int, pos: int) -> bytes:
            f.seek(pos)
            return f.read(n)

        size = path.stat().st_size
        pos = 0
        while pos < size:
            payload, used = _read_record(read, pos, f"{path}: record starting")
            yield pos, payload
            pos += used


def rebuild_index(path_rec: PathLike, path_idx: PathLike | None = None) -> int:
    """Write a ``.idx`` for a ``.rec`` whose index is lost (keys 0, 1, … in file order); return the count."""
    path_idx = Path(path_idx) if path_idx is not None else Path(path_rec).with_suffix(".idx")
    lines = [f"{k}\t{off}\n" for k, (off, _) in enumerate(iter_records(path_rec))]
    path_idx.write_text("".join(lines), encoding="ascii")
    return len(lines)


def _parse_index(path_idx: Path, path_rec: Path, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(keys, offsets) as int64 arrays in file order; every offset must leave room for a header."""
    raw = path_idx.read_bytes()
    lines = [ln for ln in raw.splitlines() if ln.strip()]
    tokens = raw.split()
    try:
        if len(tokens) != 2 * len(lines):
            raise ValueError
        keys = np.array(tokens[0::2]).astype(np.int64)
        offsets = np.array(tokens[1::2]).astype(np.int64)
    except (ValueError, OverflowError):
        for n, line in enumerate(raw.splitlines(), 1):
            fields = line.split()
            if line.strip() and (len(fields) != 2 or not all(f.lstrip(b"-").isdigit() for f in fields)):
                text = line[:60].decode("ascii", "replace")
                raise DataFormatError(f"{path_idx} line {n}: expected 'key<TAB>offset', got {text!r}") from None
        raise DataFormatError(f"{path_idx}: not a RecordIO index (key<TAB>offset lines)") from None
    bad = np.flatnonzero((offsets < 0) | (offsets + 8 > size))
    if bad.size:
        i = int(bad[0])
        raise DataFormatError(f"{path_idx} line {i + 1}: offset {int(offsets[i])} of key {int(keys[i])} points "
                              f"past the end of {path_rec.name} ({size} bytes): the .rec is truncated or the "
                              "index belongs to another file")
    if np.unique(keys).size != keys.size:
        dup = keys[np.flatnonzero(np.diff(np.sort(keys)) == 0)[0]]
        raise DataFormatError(f"{path_idx}: key {int(dup)} appears twice")
    return keys, offsets


class RecordReader:
    """Random access to an indexed ``.rec``: ``read(key)``, ``keys``, ``len()``.

    Reads use ``os.pread`` (no shared file position), so one reader serves many threads; each process
    opens its own file descriptor on first use, so a reader can be handed to DataLoader workers (fork or
    spawn: pickling drops the descriptor).
    """

    def __init__(self, path_rec: PathLike, path_idx: PathLike | None = None):
        self.path_rec = Path(path_rec)
        self.path_idx = Path(path_idx) if path_idx is not None else self.path_rec.with_suffix(".idx")
        if not self.path_rec.is_file():
            raise FileNotFoundError(f"RecordIO file not found: {self.path_rec}")
        if not self.path_idx.is_file():
            raise FileNotFoundError(f"RecordIO index not found: {self.path_idx} (it lists 'key<TAB>offset' for "
                                    f"{self.path_rec.name}; fullscale.recordio.rebuild_index can recreate it)")
        self._size = self.path_rec.stat().st_size
        self._keys, self._offsets = _parse_index(self.path_idx, self.path_rec, self._size)
        self._dense = bool(np.array_equal(self._keys, np.arange(self._keys.size)))
        if not self._dense:
            self._order = np.argsort(self._keys, kind="stable")
            self._sorted = self._keys[self._order]
        self._fd: int | None = None
        self._pid: int | None = None
        self._lock = threading.Lock()

    # -- pickling for DataLoader workers: never carry a file descriptor across processes
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.update(_fd=None, _pid=None)
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    @property
    def keys(self) -> list[int]:
        """Keys in index order."""
        return self._keys.tolist()

    def __len__(self) -> int:
        return int(self._keys.size)

    def __contains__(self, key: object) -> bool:
        try:
            self.offset(key)  # type: ignore[arg-type]
        except KeyError:
            return False
        return True

    def offset(self, key: int) -> int:
        """Byte offset of record ``key`` (KeyError if the index has no such key)."""
        if isinstance(key, numbers.Integral) and not isinstance(key, bool):
            k = int(key)
            if self._dense:
                if 0 <= k < self._keys.size:
                    return int(self._offsets[k])
            else:
                i = int(np.searchsorted(self._sorted, k))
                if i < self._sorted.size and self._sorted[i] == k:
                    return int(self._offsets[self._order[i]])
        raise KeyError(f"{self.path_idx}: no record with key {key!r}")

    def _descriptor(self) -> int:
        pid = os.getpid()
        if self._fd is None or self._pid != pid:
            with self._lock:
                if self._fd is None or self._pid != pid:
                    self._fd = os.open(self.path_rec, os.O_RDONLY | getattr(os, "O_BINARY", 0))
                    self._pid = pid
        return self._fd

    def _pread(self, n: int, pos: int) -> bytes:
        fd = self._descriptor()
        if hasattr(os, "pread"):
            chunks, got = [], 0
            while got < n:
                chunk = os.pread(fd, n - got, pos + got)
                if not chunk:
                    break
                chunks.append(chunk)
                got += len(chunk)
            return b"".join(chunks)
        with self._lock:  # no pread (Windows): serialise seek + read
            os.lseek(fd, pos, os.SEEK_SET)
            return os.read(fd, n)

    def read(self, key: int) -> bytes:
        """The payload of record ``key``."""
        payload, _ = _read_record(self._pread, self.offset(key), f"{self.path_rec}: record {key}")
        return payload

    def read_header(self, key: int) -> tuple[IRHeader, bytes]:
        """``unpack_header(read(key))`` with the record named in errors."""
        try:
            return unpack_header(self.read(key))
        except DataFormatError as exc:
            raise DataFormatError(f"{self.path_rec}: record {key}: {exc}") from None

    def close(self) -> None:
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)
        self._fd = self._pid = None

    def __enter__(self) -> RecordReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown
            pass


# ---------------------------------------------------------------------------------------------- header

class IRHeader(NamedTuple):
    """MXNet's image-record header. ``label`` is a float, or a tuple of floats when ``flag`` > 0."""

    flag: int
    label: float | tuple[float, ...]
    id: int = 0
    id2: int = 0


def pack_header(header: IRHeader | Sequence[Any], payload: bytes = b"") -> bytes:
    """IRHeader + payload as MXNet's ``recordio.pack``: a scalar label sets flag 0, a sequence sets flag = len."""
    flag, label, id_, id2 = IRHeader(*header)
    if isinstance(label, numbers.Real) or (isinstance(label, np.ndarray) and label.ndim == 0):
        flag, scalar, extra = 0, float(label), b""
    else:
        values = np.asarray(label, dtype="<f4").ravel()
        if values.size == 0:
            raise ValueError("an IRHeader label sequence needs at least one value")
        flag, scalar, extra = int(values.size), 0.0, values.tobytes()
    try:
        head = struct.pack(_IR_FORMAT, flag, scalar, int(id_), int(id2))
    except struct.error as exc:
        raise ValueError(f"IRHeader id/id2 must fit in uint64: {exc}") from None
    return head + extra + bytes(payload)


def unpack_header(record: bytes) -> tuple[IRHeader, bytes]:
    """Split a record payload into (IRHeader, rest); with flag > 0 the label tuple is read after the header."""
    if len(record) < IR_SIZE:
        raise DataFormatError(f"a {len(record)}-byte record is shorter than the {IR_SIZE}-byte IRHeader")
    flag, label, id_, id2 = struct.unpack_from(_IR_FORMAT, record)
    rest = record[IR_SIZE:]
    if flag > 0:
        if len(rest) < 4 * flag:
            raise DataFormatError(f"IRHeader flag {flag} announces {flag} float32 labels but only {len(rest)} "
                                  "bytes follow the header")
        label = tuple(float(v) for v in np.frombuffer(rest, dtype="<f4", count=flag))
        rest = rest[4 * flag:]
    return IRHeader(flag, label, id_, id2), rest


# ---------------------------------------------------------------------------------------------- images

def decode_image(data: bytes, size: tuple[int, int] | None = (112, 112), what: str = "image") -> np.ndarray:
    """Encoded image bytes -> uint8 RGB array (H, W, 3), resized (bilinear) to ``size`` = (H, W) if needed."""
    try:
        with Image.open(io.BytesIO(bytes(data))) as im:
            im = im.convert("RGB")
            if size is not None and im.size != (size[1], size[0]):
                im = im.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            return np.asarray(im, dtype=np.uint8).copy()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataFormatError(f"{what}: cannot decode image ({len(data)} bytes): {exc}") from None


def encode_jpeg(image: np.ndarray | Image.Image, quality: int = 95) -> bytes:
    """uint8 RGB (H, W, 3) array or PIL image -> JPEG bytes."""
    im = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image, dtype=np.uint8))
    buf = io.BytesIO()
    im.convert("RGB").save(buf, format="JPEG", quality=int(quality))
    return buf.getvalue()


def to_model_input(image: np.ndarray, flip: bool = False) -> torch.Tensor:
    """uint8 (H, W, 3) -> float (3, H, W) normalised (x/255 − 0.5)/0.5, mirrored left-right if ``flip``."""
    # numpy, not torch: per-image torch ops on small tensors pay thread start-up costs
    arr = np.asarray(image)[:, ::-1] if flip else np.asarray(image)
    chw = np.ascontiguousarray(arr.transpose(2, 0, 1), dtype=np.float32)
    chw /= 255.0
    chw -= 0.5
    chw /= 0.5
    return torch.from_numpy(chw)


def _coin(flip: bool) -> bool:
    # torch's RNG is seeded differently in every DataLoader worker (numpy's is not)
    return flip and bool(torch.rand(()) < 0.5)


# --------------------------------------------------------------------------------------- face datasets

def read_property(path: PathLike) -> tuple[int, int, int]:
    """Parse a ``property`` file ``num_classes,H,W``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"property file not found: {path} (it holds 'num_classes,112,112'; write it by "
                                "hand or rebuild the set with `arcface-viz data make-rec`)")
    text = path.read_text(encoding="ascii", errors="replace").strip()
    try:
        n, h, w = (int(v) for v in text.split(","))
    except ValueError:
        raise DataFormatError(f"{path}: expected 'num_classes,H,W' such as '85742,112,112', got {text[:60]!r}") \
            from None
    if n < 1 or h < 1 or w < 1:
        raise DataFormatError(f"{path}: values must be positive, got {text!r}")
    return n, h, w


def write_property(path: PathLike, num_classes: int, image_size: tuple[int, int] = (112, 112)) -> None:
    """Write ``num_classes,H,W``."""
    Path(path).write_text(f"{int(num_classes)},{int(image_size[0])},{int(image_size[1])}\n", encoding="ascii")


@dataclass(frozen=True)
class FaceSetInfo:
    """What :func:`write_face_set` wrote."""

    root: Path
    num_images: int
    num_classes: int
    identity_ranges: tuple[tuple[int, int], ...]


def write_face_set(root: PathLike, class_counts: Sequence[int], images: Iterable[tuple[int, bytes]],
                   image_size: tuple[int, int] = (112, 112)) -> FaceSetInfo:
    """Write ``root/train.rec``, ``train.idx``, ``property`` in insightface's layout.

    ``images`` yields (label, JPEG bytes) grouped by label 0, 1, …, ``class_counts[label]`` of each.
    """
    counts = [int(c) for c in class_counts]
    if not counts or min(counts) < 1:
        raise ValueError("every identity needs at least one image")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    n = sum(counts)
    first_identity = n + 1
    ends = np.cumsum([1, *counts])  # image records of class c: [ends[c], ends[c + 1])
    ranges = tuple((int(a), int(b)) for a, b in zip(ends[:-1], ends[1:], strict=True))
    with RecordWriter(root / "train.rec", root / "train.idx") as w:
        w.write(0, pack_header(IRHeader(2, (first_identity, first_identity + len(counts)), 0, 0)))
        key = 1
        for label, jpeg in images:
            if key > n or not ranges[label][0] <= key < ranges[label][1]:
                raise ValueError(f"image {key}: label {label} out of the order given by class_counts")
            w.write(key, pack_header(IRHeader(0, float(label), key, 0), jpeg))
            key += 1
        if key != n + 1:
            raise ValueError(f"class_counts announce {n} images, got {key - 1}")
        for c, (a, b) in enumerate(ranges):
            w.write(first_identity + c, pack_header(IRHeader(2, (a, b), first_identity + c, 0)))
    write_property(root / "property", len(counts), image_size)
    return FaceSetInfo(root, n, len(counts), ranges)


class FaceRecordDataset(Dataset):
    """insightface RecordIO face set ``root/{train.rec, train.idx, property}`` as (image, label) pairs.

    image: float (3, 112, 112) normalised (x/255 − 0.5)/0.5, randomly mirrored when ``flip``; then
    ``transform`` (if given) is applied to that tensor.  label: int in [0, num_classes).
    """

    def __init__(self, root: PathLike, transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 flip: bool = True, image_size: tuple[int, int] = (112, 112)):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"face data folder not found: {self.root}")
        self.transform, self.flip, self.image_size = transform, flip, tuple(image_size)
        self.num_classes, *_ = read_property(self.root / "property")
        self.reader = RecordReader(self.root / "train.rec", self.root / "train.idx")
        if 0 not in self.reader:
            raise DataFormatError(f"{self.reader.path_idx}: no record 0 (insightface sets start with a header record)")
        header, _ = self.reader.read_header(0)
        if header.flag > 0:
            if header.flag < 2:
                raise DataFormatError(f"{self.reader.path_rec}: record 0 label {header.label} should be "
                                      "(first identity record, end)")
            first, end = int(header.label[0]), int(header.label[1])
            if first < 1 or end < first:
                raise DataFormatError(f"{self.reader.path_rec}: record 0 label ({first}, {end}) is not a valid "
                                      "(first identity record, end) pair")
            self.header0: tuple[int, int] | None = (first, end)
            self.imgidx = np.arange(1, first, dtype=np.int64)
            missing = [k for k in (1, first - 1) if first > 1 and k not in self.reader]
            if missing:
                raise DataFormatError(f"{self.reader.path_idx}: record 0 announces image records 1..{first - 1} "
                                      f"but key {missing[0]} is not in the index")
        else:  # a plain image list: every record is an image
            self.header0 = None
            self.imgidx = np.asarray(self.reader.keys, dtype=np.int64)

    def __len__(self) -> int:
        return int(self.imgidx.size)

    def identity_ranges(self) -> list[tuple[int, int]]:
        """[a, b) image-record range of every identity, from the identity records (needs record 0 ranges)."""
        if self.header0 is None:
            raise DataFormatError(f"{self.reader.path_rec}: record 0 has no identity ranges (flag 0)")
        out = []
        for key in range(*self.header0):
            header, _ = self.reader.read_header(key)
            if header.flag < 2:
                raise DataFormatError(f"{self.reader.path_rec}: identity record {key} has no (a, b) range")
            out.append((int(header.label[0]), int(header.label[1])))
        return out

    def label_of(self, index: int) -> int:
        """Label of item ``index`` without decoding its image."""
        key = int(self.imgidx[index])
        return self._label(key, self.reader.read_header(key)[0])

    def _label(self, key: int, header: IRHeader) -> int:
        label = header.label if header.flag == 0 else header.label[0]
        label = int(label)
        if not 0 <= label < self.num_classes:
            raise DataFormatError(f"{self.reader.path_rec}: record {key} has label {label}, outside "
                                  f"0..{self.num_classes - 1} (num_classes from {self.root / 'property'})")
        return label

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        key = int(self.imgidx[index])
        header, jpeg = self.reader.read_header(key)
        label = self._label(key, header)
        image = to_model_input(decode_image(jpeg, self.image_size, f"{self.reader.path_rec}: record {key}"),
                               _coin(self.flip))
        return (self.transform(image) if self.transform else image), label


def scan_image_folder(root: PathLike) -> tuple[list[str], list[tuple[Path, int]]]:
    """(identity names, [(image path, label)]) of a folder with one sub-folder per identity (sorted names)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder not found: {root}")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise DataFormatError(f"{root}: no identity sub-folders (expected one folder of images per identity)")
    samples: list[tuple[Path, int]] = []
    for label, name in enumerate(classes):
        files = sorted(p for p in (root / name).iterdir()
                       if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith("."))
        if not files:
            raise DataFormatError(f"{root / name}: identity folder holds no images ({', '.join(IMAGE_EXTENSIONS)})")
        samples += [(p, label) for p in files]
    return classes, samples


class ImageFolderFaces(Dataset):
    """``root/<identity>/<image>`` as (float (3, 112, 112) normalised image, label); labels follow sorted names."""

    def __init__(self, root: PathLike, flip: bool = True,
                 transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 image_size: tuple[int, int] = (112, 112)):
        self.root = Path(root)
        self.classes, self.samples = scan_image_folder(self.root)
        self.num_classes = len(self.classes)
        self.flip, self.transform, self.image_size = flip, transform, tuple(image_size)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[index]
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise DataFormatError(f"{path}: cannot read: {exc}") from None
        image = to_model_input(decode_image(data, self.image_size, str(path)), _coin(self.flip))
        return (self.transform(image) if self.transform else image), label


class SyntheticFaces(Dataset):
    """Random (3, 112, 112) tensors in [−1, 1] with random labels, for speed tests (no I/O, no decoding).

    Item i is the same for a given seed: it is drawn from a numpy generator seeded with (seed, i).
    """

    def __init__(self, num_classes: int, length: int, seed: int = 0, image_size: tuple[int, int] = (112, 112)):
        if num_classes < 1 or length < 0 or seed < 0:
            raise ValueError(f"need num_classes >= 1, length >= 0, seed >= 0, got {num_classes}, {length}, {seed}")
        self.num_classes, self.length, self.seed, self.image_size = int(num_classes), int(length), int(seed), \
            tuple(image_size)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if not 0 <= index < self.length:
            raise IndexError(index)
        rng = np.random.default_rng([self.seed, int(index)])
        image = rng.random((3, *self.image_size), dtype=np.float32)
        image *= 2
        image -= 1
        return torch.from_numpy(image), int(rng.integers(self.num_classes))


# ----------------------------------------------------------------------------------- verification .bin

class _BinUnpickler(pickle.Unpickler):
    """Builds only plain containers, bytes, bools and numpy arrays: any other global is refused."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
        ("builtins", "bytearray"), ("builtins", "bytes"), ("__builtin__", "bytearray"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: a .bin holds only bytes and booleans")
        return super().find_class(module, name)


def _as_bytes(item: Any) -> bytes | None:
    if isinstance(item, bytes | bytearray | memoryview):
        return bytes(item)
    if isinstance(item, np.ndarray) and item.dtype == np.uint8:
        return item.tobytes()
    return None


def load_bin(path: PathLike, image_size: tuple[int, int] = (112, 112),
             normalize: bool = False) -> tuple[torch.Tensor, np.ndarray]:
    """Read an insightface verification ``.bin``: (images (2N, 3, H, W), issame bool (N,)).

    Images are uint8, or float normalised (x/255 − 0.5)/0.5 when ``normalize``; pair i is images 2i, 2i+1.
    Only pass paths you trust (pickle); the unpickler refuses everything but bytes, bools and numpy arrays.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"verification set not found: {path}")
    try:
        with open(path, "rb") as f:
            obj = _BinUnpickler(f, encoding="bytes").load()  # 'bytes': py2 str -> bytes
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, IndexError, TypeError,
            ValueError, struct.error) as exc:
        raise DataFormatError(f"{path}: not a verification .bin (pickle of (bins, issame_list)): {exc}") from None
    if not (isinstance(obj, tuple | list) and len(obj) == 2):
        raise DataFormatError(f"{path}: expected a pickled pair (bins, issame_list), got {type(obj).__name__}")
    bins, issame_list = obj
    try:
        n, count = len(issame_list), len(bins)
        if not all(isinstance(v, bool | np.bool_) or (isinstance(v, numbers.Integral) and v in (0, 1))
                   for v in issame_list):
            raise TypeError
        issame = np.array([bool(v) for v in issame_list], dtype=np.bool_)
    except TypeError:
        raise DataFormatError(f"{path}: issame_list must be a list of booleans and bins a list of images") from None
    if count != 2 * n:
        raise DataFormatError(f"{path}: {count} images for {n} pairs (expected {2 * n}: pair i is images 2i, 2i+1)")
    h, w = image_size
    array = np.empty((count, 3, h, w), dtype=np.uint8)
    for i, item in enumerate(bins):
        data = _as_bytes(item)
        if data is None:
            raise DataFormatError(f"{path}: image {i} is a {type(item).__name__}, expected encoded image bytes")
        array[i] = decode_image(data, (h, w), f"{path}: image {i}").transpose(2, 0, 1)
    images = torch.from_numpy(array)
    if normalize:
        return images.float().div_(255).sub_(0.5).div_(0.5), issame
    return images, issame


def _flat_images(pairs_images: Any, n_pairs: int) -> list[Any]:
    if isinstance(pairs_images, torch.Tensor):
        pairs_images = pairs_images.detach().cpu().numpy()
    if isinstance(pairs_images, np.ndarray):
        if pairs_images.ndim == 5:  # (N, 2, ...)
            pairs_images = pairs_images.reshape(-1, *pairs_images.shape[2:])
        return list(pairs_images)
    items = list(pairs_images)
    if len(items) == n_pairs and n_pairs and all(isinstance(p, tuple | list) and len(p) == 2 for p in items):
        return [x for p in items for x in p]
    return items


def _image_bytes(item: Any, quality: int) -> bytes:
    data = _as_bytes(item) if not isinstance(item, np.ndarray) or item.ndim == 1 else None
    if data is not None:
        return data
    if isinstance(item, Image.Image):
        return encode_jpeg(item, quality)
    if isinstance(item, torch.Tensor):
        item = item.detach().cpu().numpy()
    arr = np.asarray(item)
    if arr.ndim == 3 and arr.shape[0] == 3 and arr.shape[-1] != 3:  # CHW -> HWC
        arr = arr.transpose(1, 2, 0)
    if arr.ndim != 3 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"images must be encoded bytes or uint8 (H, W, 3) arrays, got {arr.dtype} {arr.shape}")
    return encode_jpeg(arr, quality)


def write_bin(path: PathLike, pairs_images: Any, issame: Sequence[bool] | np.ndarray, quality: int = 95) -> int:
    """Write an insightface ``.bin``; return the number of pairs.

    ``pairs_images``: 2N images (pair i = items 2i, 2i+1) or N 2-tuples, each encoded bytes (stored as is),
    a uint8 (H, W, 3) / (3, H, W) array or tensor, or a PIL image (JPEG-encoded).
    """
    flags = [bool(v) for v in np.asarray(issame, dtype=bool).ravel()]
    items = _flat_images(pairs_images, len(flags))
    if len(items) != 2 * len(flags):
        raise ValueError(f"{len(items)} images for {len(flags)} pairs (expected {2 * len(flags)})")
    bins = [_image_bytes(x, quality) for x in items]
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a folder; give the .bin file to write")
    with open(path, "wb") as f:
        pickle.dump((bins, flags), f, protocol=4)
    return len(flags)
