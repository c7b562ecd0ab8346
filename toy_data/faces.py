"""Synthetic face-like identities (112×112 RGB) and builders for insightface's data formats.

An identity is a seeded set of parameters of a cartoon face: background, hair style and colour, head
ellipse, skin colour and texture, eyes (spacing, size, iris colour), brows, nose, mouth, optional glasses
and beard.  Each sample of an identity varies pose (rotation ±~7°, scale, shift), expression (eye
openness, gaze, smile), lighting (brightness, colour cast, side light), sensor noise and occasionally an
occluding patch, so a small CNN can learn the identities but pixel matching alone cannot.

Everything is deterministic in (seed, identity, sample).  Held-out identities (for verification pairs)
are numbered from :data:`HELD_OUT_OFFSET`, so they never coincide with training identities.

Writers: :func:`make_synthetic_faces` (RecordIO set and/or image folder), :func:`make_verification_bin`,
:func:`build_rec_from_folder` and :func:`build_bin_from_pairs`.  They import ``arcface_viz.fullscale.recordio`` (and
so torch) only when called, which keeps ``import toy_data`` light.
"""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "HELD_OUT_OFFSET",
    "FaceParams",
    "SyntheticFacesInfo",
    "build_bin_from_pairs",
    "build_rec_from_folder",
    "face_image",
    "identity_params",
    "make_synthetic_faces",
    "make_verification_bin",
    "read_pairs_file",
    "render_face",
]

SIZE = 112
HELD_OUT_OFFSET = 1_000_000
_REC_FILES = ("train.rec", "train.idx", "property")
PathLike = str | os.PathLike


@dataclass(frozen=True)
class FaceParams:
    """Parameters of one identity (canonical coordinates: u right, v down, both in [−1, 1])."""

    background: tuple[float, float, float]
    skin: tuple[float, float, float]
    hair: tuple[float, float, float]
    iris: tuple[float, float, float]
    lips: tuple[float, float, float]
    shirt: tuple[float, float, float]
    hair_style: int  # 0 short, 1 long, 2 bald
    head_rx: float
    head_ry: float
    hairline: float
    eye_dx: float
    eye_y: float
    eye_rx: float
    eye_ry: float
    brow_tilt: float
    brow_gap: float
    nose_len: float
    mouth_y: float
    mouth_w: float
    smile: float
    texture: tuple[float, float, float, float]  # frequency u, frequency v, phase, strength
    glasses: bool
    beard: bool


def _colour(rng: np.random.Generator, lo: float, hi: float) -> tuple[float, float, float]:
    return tuple(float(x) for x in rng.uniform(lo, hi, 3))


def identity_params(identity: int, seed: int = 0) -> FaceParams:
    """The face parameters of ``identity`` (deterministic in seed and identity)."""
    if identity < 0 or seed < 0:
        raise ValueError(f"identity and seed must be >= 0, got {identity}, {seed}")
    rng = np.random.default_rng([seed, identity])
    tone = rng.uniform(0.25, 0.95)
    skin = (tone, tone * rng.uniform(0.7, 0.85), tone * rng.uniform(0.5, 0.7))
    return FaceParams(
        background=_colour(rng, 0.1, 0.9), skin=tuple(float(x) for x in skin), hair=_colour(rng, 0.02, 0.7),
        iris=_colour(rng, 0.05, 0.7), lips=(float(rng.uniform(0.5, 0.9)), float(rng.uniform(0.1, 0.4)),
                                              float(rng.uniform(0.15, 0.4))),
        shirt=_colour(rng, 0.05, 0.95), hair_style=int(rng.integers(3)),
        head_rx=float(rng.uniform(0.52, 0.68)), head_ry=float(rng.uniform(0.68, 0.82)),
        hairline=float(rng.uniform(-0.55, -0.35)), eye_dx=float(rng.uniform(0.2, 0.32)),
        eye_y=float(rng.uniform(-0.2, -0.05)), eye_rx=float(rng.uniform(0.08, 0.13)),
        eye_ry=float(rng.uniform(0.045, 0.075)), brow_tilt=float(rng.uniform(-0.35, 0.35)),
        brow_gap=float(rng.uniform(0.09, 0.16)), nose_len=float(rng.uniform(0.1, 0.25)),
        mouth_y=float(rng.uniform(0.3, 0.45)), mouth_w=float(rng.uniform(0.14, 0.3)),
        smile=float(rng.uniform(-0.6, 1.2)),
        texture=(float(rng.uniform(3, 14)), float(rng.uniform(3, 14)), float(rng.uniform(0, 2 * np.pi)),
                 float(rng.uniform(0.0, 0.12))),
        glasses=bool(rng.random() < 0.3), beard=bool(rng.random() < 0.3),
    )


def _blob(u: np.ndarray, v: np.ndarray, cx: float, cy: float, rx: float, ry: float, px: float,
          angle: float = 0.0) -> np.ndarray:
    """Anti-aliased ellipse coverage in [0, 1]."""
    du, dv = u - cx, v - cy
    if angle:
        c, s = np.cos(angle), np.sin(angle)
        du, dv = c * du + s * dv, -s * du + c * dv
    d = np.sqrt((du / rx) ** 2 + (dv / ry) ** 2)
    return np.clip((1.0 - d) * min(rx, ry) / px + 0.5, 0.0, 1.0)


def _paint(img: np.ndarray, alpha: np.ndarray, colour: Sequence[float] | np.ndarray) -> None:
    a = alpha[..., None]
    img *= 1.0 - a
    img += a * np.asarray(colour, dtype=np.float64)


def render_face(p: FaceParams, rng: np.random.Generator | None = None, size: int = SIZE) -> np.ndarray:
    """One sample of identity ``p`` as uint8 (size, size, 3); ``rng`` draws the per-sample variation.

    With ``rng=None`` the face is drawn frontal and clean (no variation).
    """
    vary = rng is not None
    r = rng if vary else np.random.default_rng(0)
    theta = float(np.clip(r.normal(0, 0.12), -0.3, 0.3)) if vary else 0.0
    scale = float(np.clip(r.normal(1.0, 0.05), 0.88, 1.12)) if vary else 1.0
    shift = np.clip(r.normal(0, 0.05, 2), -0.12, 0.12) if vary else np.zeros(2)

    # pixel centres -> canonical face coordinates (inverse of rotate, scale, shift)
    g = (np.arange(size) + 0.5) / size * 2 - 1
    x, y = np.meshgrid(g, g)
    x, y = (x - shift[0]) / scale, (y - shift[1]) / scale
    c, s = np.cos(theta), np.sin(theta)
    u, v = c * x + s * y, -s * x + c * y
    px = 2.0 / size / scale

    img = np.empty((size, size, 3))
    mix = float(r.uniform(0.3, 0.8)) if vary else 0.0  # backgrounds change from photo to photo
    img[:] = (1 - mix) * np.asarray(p.background) + mix * (r.uniform(0.05, 0.95, 3) if vary else 0.0)
    img *= (1.0 + 0.25 * v)[..., None]
    skin = np.asarray(p.skin)
    hy = 0.02
    if p.hair_style == 1:  # long hair behind the head
        _paint(img, _blob(u, v, 0, hy + 0.15, p.head_rx * 1.25, p.head_ry * 1.15, px), p.hair)
    _paint(img, _blob(u, v, 0, 1.15, 0.85, 0.4, px), p.shirt)
    _paint(img, _blob(u, v, 0, 0.75, 0.22, 0.35, px), skin * 0.9)
    head = _blob(u, v, 0, hy, p.head_rx, p.head_ry, px)
    fu, fv, ph, amp = p.texture
    texture = 1.0 + amp * np.sin(fu * u + ph) * np.sin(fv * v + 0.5 * ph)
    img *= (1.0 - head)[..., None]
    img += head[..., None] * skin * texture[..., None]
    if p.hair_style == 0:  # short hair: the head's top above the hairline
        cap = _blob(u, v, 0, hy - 0.03, p.head_rx * 1.04, p.head_ry * 1.02, px)
        _paint(img, cap * np.clip((p.hairline - v) / px + 0.5, 0, 1), p.hair)
    if p.beard:
        low = np.clip((v - (p.mouth_y - 0.12)) / 0.08, 0, 1)
        _paint(img, head * low * 0.75, np.asarray(p.hair) * 0.8)

    openness = float(r.uniform(0.45, 1.1)) if vary else 1.0
    gaze = r.normal(0, 0.02, 2) if vary else np.zeros(2)
    for side in (-1, 1):
        ex = side * p.eye_dx
        brow = _blob(u, v, ex, p.eye_y - p.brow_gap, p.eye_rx * 1.2, 0.022, px, side * p.brow_tilt)
        _paint(img, brow, np.asarray(p.hair) * 0.7)
        ry = p.eye_ry * openness
        eye = _blob(u, v, ex, p.eye_y, p.eye_rx, ry, px)
        _paint(img, eye, (0.95, 0.95, 0.92))
        iris_r = min(p.eye_ry * 0.9, p.eye_rx * 0.6)
        _paint(img, eye * _blob(u, v, ex + gaze[0], p.eye_y + gaze[1], iris_r, iris_r, px), p.iris)
        _paint(img, eye * _blob(u, v, ex + gaze[0], p.eye_y + gaze[1], iris_r * 0.45, iris_r * 0.45, px),
               (0.03, 0.03, 0.03))
        if p.glasses:
            ring = _blob(u, v, ex, p.eye_y, p.eye_rx * 1.7, p.eye_rx * 1.45, px)
            ring = ring * (1 - _blob(u, v, ex, p.eye_y, p.eye_rx * 1.7 - 0.03, p.eye_rx * 1.45 - 0.03, px))
            _paint(img, ring, (0.08, 0.08, 0.1))
    nose_y = p.eye_y + 0.1 + p.nose_len / 2
    _paint(img, 0.6 * _blob(u, v, 0, nose_y, 0.05, p.nose_len / 2, px), skin * 0.72)
    _paint(img, 0.8 * _blob(u, v, 0, nose_y + p.nose_len / 2, 0.07, 0.03, px), skin * 0.6)
    smile = p.smile + (float(r.normal(0, 0.35)) if vary else 0.0)
    curve = p.mouth_y + smile * (u / max(p.mouth_w, 1e-3)) ** 2 * -0.05
    band = np.clip((0.028 - np.abs(v - curve)) / px + 0.5, 0, 1) * np.clip((p.mouth_w - np.abs(u)) / px + 0.5, 0, 1)
    _paint(img, band, p.lips)

    if vary:
        if r.random() < 0.15:  # an occluding patch (hand, microphone, ...)
            cx, cy, w, h = r.uniform(-0.6, 0.6), r.uniform(-0.3, 0.8), r.uniform(0.1, 0.3), r.uniform(0.1, 0.3)
            patch = np.clip((w - np.abs(x - cx)) / px + 0.5, 0, 1) * np.clip((h - np.abs(y - cy)) / px + 0.5, 0, 1)
            _paint(img, patch, r.uniform(0, 1, 3))
        phi = r.uniform(0, 2 * np.pi)
        light = 1.0 + r.uniform(0, 0.35) * (np.cos(phi) * x + np.sin(phi) * y)
        img *= (light * r.uniform(0.75, 1.25))[..., None] * r.normal(1.0, 0.05, 3)
        img += r.normal(0, r.uniform(0.01, 0.04), img.shape)
    return np.clip(np.rint(img * 255), 0, 255).astype(np.uint8)


def face_image(identity: int, sample: int, seed: int = 0, size: int = SIZE) -> np.ndarray:
    """Sample ``sample`` of ``identity``: uint8 (size, size, 3), deterministic in (seed, identity, sample)."""
    if sample < 0:
        raise ValueError(f"sample must be >= 0, got {sample}")
    rng = np.random.default_rng([seed, identity, sample, 1])
    return render_face(identity_params(identity, seed), rng, size)


def _check_count(name: str, value: int, minimum: int = 1) -> int:
    if isinstance(value, bool) or int(value) != value or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _out_dir(path: PathLike) -> Path:
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} is a file; give a folder to write the data set into")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _out_file(path: PathLike, overwrite: bool) -> Path:
    out = Path(path)
    if out.is_dir():
        raise ValueError(f"{out} is a folder; give the .bin file to write")
    _refuse_existing([out], overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    return out


def _refuse_existing(paths: Iterable[Path], overwrite: bool) -> None:
    if overwrite:
        return
    found = [p for p in paths if p.is_file() or (p.is_dir() and any(p.iterdir()))]
    if found:
        names = ", ".join(str(p) for p in found)
        raise ValueError(f"{names} already exist{'s' if len(found) == 1 else ''}; "
                         "pass overwrite=True (--overwrite) to replace")


@dataclass(frozen=True)
class SyntheticFacesInfo:
    """What :func:`make_synthetic_faces` wrote: ``rec_root`` (train.rec/idx/property) and ``folder``."""

    out_dir: Path
    num_identities: int
    images_per_identity: int
    rec_root: Path | None
    folder: Path | None

    @property
    def num_images(self) -> int:
        return self.num_identities * self.images_per_identity


def make_synthetic_faces(out_dir: PathLike, num_identities: int = 10, images_per_identity: int = 8, seed: int = 0,
                         formats: Sequence[str] = ("rec", "folder"), quality: int = 95,
                         overwrite: bool = False) -> SyntheticFacesInfo:
    """Write a synthetic face set: ``rec`` -> out_dir/{train.rec, train.idx, property};
    ``folder`` -> out_dir/images/id_NNNNN/NNNN.jpg.  Both hold the same JPEG bytes; identity i is label i.
    Existing outputs are refused unless ``overwrite`` (which replaces out_dir/images entirely).
    """
    from arcface_viz.fullscale.recordio import encode_jpeg, write_face_set

    n_id = _check_count("num_identities", num_identities)
    per = _check_count("images_per_identity", images_per_identity)
    seed = _check_count("seed", seed, 0)
    formats = tuple(formats)
    if not formats or set(formats) - {"rec", "folder"}:
        raise ValueError(f"formats must be a non-empty subset of ('rec', 'folder'), got {formats}")
    out = _out_dir(out_dir)
    width = max(5, len(str(n_id - 1)))
    folder = out / "images" if "folder" in formats else None
    targets = [out / n for n in _REC_FILES] if "rec" in formats else []
    _refuse_existing(targets + ([folder] if folder else []), overwrite)
    if folder and folder.is_dir():
        shutil.rmtree(folder)  # overwrite: no identity folders left over from a larger set

    def images() -> Iterable[tuple[int, bytes]]:
        for i in range(n_id):
            sub = folder / f"id_{i:0{width}d}" if folder else None
            if sub:
                sub.mkdir(parents=True, exist_ok=True)
            for k in range(per):
                jpeg = encode_jpeg(face_image(i, k, seed), quality)
                if sub:
                    (sub / f"{k:04d}.jpg").write_bytes(jpeg)
                yield i, jpeg

    if "rec" in formats:
        write_face_set(out, [per] * n_id, images())
    else:
        for _ in images():
            pass
    return SyntheticFacesInfo(out, n_id, per, out if "rec" in formats else None, folder)


def make_verification_bin(out_path: PathLike, num_identities: int = 10, pairs: int = 20, seed: int = 0,
                          quality: int = 95, overwrite: bool = False) -> int:
    """Write a ``.bin`` of ``pairs`` pairs (even i positive, odd i negative) from held-out identities.

    Held-out identity k is ``HELD_OUT_OFFSET + k``, never one of the training identities of the same seed.
    Returns the number of pairs.
    """
    from arcface_viz.fullscale.recordio import encode_jpeg, write_bin

    n_id = _check_count("num_identities", num_identities)
    n_pairs = _check_count("pairs", pairs)
    seed = _check_count("seed", seed, 0)
    if n_pairs > 1 and n_id < 2:
        raise ValueError("negative pairs need at least 2 identities")
    out = _out_file(out_path, overwrite)
    rng = np.random.default_rng([seed, 2])
    images: list[bytes] = []
    issame: list[bool] = []
    for i in range(n_pairs):
        same = i % 2 == 0
        a = int(rng.integers(n_id))
        b = a if same else int((a + rng.integers(1, n_id)) % n_id)
        sa, sb = rng.choice(10_000, 2, replace=False)
        images += [encode_jpeg(face_image(HELD_OUT_OFFSET + a, int(sa), seed), quality),
                   encode_jpeg(face_image(HELD_OUT_OFFSET + b, int(sb), seed), quality)]
        issame.append(same)
    return write_bin(out, images, issame)


def _face_jpeg(path: Path, size: tuple[int, int], quality: int) -> bytes:
    """File bytes as they are if already an RGB JPEG of ``size`` (H, W), else decoded, resized, re-encoded."""
    from PIL import Image, UnidentifiedImageError

    from arcface_viz.fullscale.recordio import DataFormatError, decode_image, encode_jpeg

    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    data = path.read_bytes()
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.format == "JPEG" and im.mode == "RGB" and im.size == (size[1], size[0]):
                return data
    except (UnidentifiedImageError, OSError) as exc:
        raise DataFormatError(f"{path}: not an image: {exc}") from None
    return encode_jpeg(decode_image(data, size, str(path)), quality)


def build_rec_from_folder(folder: PathLike, out_dir: PathLike, quality: int = 95,
                          image_size: tuple[int, int] = (112, 112), overwrite: bool = False):
    """Image folder (one sub-folder per identity, sorted names = labels) -> insightface RecordIO set.

    Writes out_dir/{train.rec, train.idx, property} with record 0's identity ranges; RGB JPEGs of the right
    size are stored byte for byte, other images are resized and re-encoded.  Returns a ``FaceSetInfo``.
    """
    from arcface_viz.fullscale.recordio import scan_image_folder, write_face_set

    classes, samples = scan_image_folder(folder)
    out = _out_dir(out_dir)
    _refuse_existing([out / n for n in _REC_FILES], overwrite)
    counts = np.bincount([label for _, label in samples], minlength=len(classes)).tolist()
    return write_face_set(out, counts, ((label, _face_jpeg(p, image_size, quality)) for p, label in samples),
                          image_size)


def read_pairs_file(path: PathLike) -> list[tuple[Path, Path, bool]]:
    """Parse lines ``path_a path_b 1|0`` (tab-separated when paths hold spaces; ``#`` comments).

    Relative paths are taken relative to the pairs file's folder.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pairs file not found: {path}")
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split("\t") if "\t" in line else line.split()
        fields = [f.strip() for f in fields]
        if len(fields) != 3 or fields[2].lower() not in ("1", "0", "true", "false"):
            raise ValueError(f"{path} line {n}: expected 'path_a path_b 1|0', got {line[:80]!r}")
        a, b = (Path(f) if Path(f).is_absolute() else path.parent / f for f in fields[:2])
        out.append((a, b, fields[2].lower() in ("1", "true")))
    if not out:
        raise ValueError(f"{path}: no pairs (expected lines 'path_a path_b 1|0')")
    return out


def build_bin_from_pairs(pairs_file_or_list: PathLike | Sequence[tuple[PathLike, PathLike, bool | int]],
                         out_path: PathLike, quality: int = 95, image_size: tuple[int, int] = (112, 112),
                         overwrite: bool = False) -> int:
    """Pairs (a text file of ``path_a path_b 1|0`` lines, or a list of such triples) -> ``.bin``.

    Images are stored as ``image_size`` RGB JPEGs.  Returns the number of pairs.
    """
    from arcface_viz.fullscale.recordio import write_bin

    if isinstance(pairs_file_or_list, str | os.PathLike):
        pairs = read_pairs_file(pairs_file_or_list)
    else:
        pairs = [(Path(a), Path(b), bool(int(s))) for a, b, s in pairs_file_or_list]
        if not pairs:
            raise ValueError("no pairs given")
    out = _out_file(out_path, overwrite)
    images = [_face_jpeg(p, image_size, quality) for a, b, _ in pairs for p in (a, b)]
    return write_bin(out, images, [s for _, _, s in pairs])
