"""Synthetic faces, insightface face sets (RecordIO, image folder), verification .bin and the builders."""

from __future__ import annotations

import io
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from arcface_viz.fullscale.recordio import (
    DataFormatError,
    FaceRecordDataset,
    ImageFolderFaces,
    IRHeader,
    RecordReader,
    SyntheticFaces,
    decode_image,
    encode_jpeg,
    frame_record,
    load_bin,
    pack_header,
    write_bin,
)
from toy_data.faces import (
    HELD_OUT_OFFSET,
    build_bin_from_pairs,
    build_rec_from_folder,
    face_image,
    identity_params,
    make_synthetic_faces,
    make_verification_bin,
)

N_ID, PER, SEED = 4, 3, 1


@pytest.fixture(scope="module")
def face_set(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("faces")
    make_synthetic_faces(out, N_ID, PER, seed=SEED)
    return out


def normalised(image: np.ndarray) -> torch.Tensor:
    """Reference (x/255 − 0.5)/0.5 in float64, written independently of the code under test."""
    return torch.from_numpy((image.astype(np.float64) / 255 - 0.5) / 0.5).permute(2, 0, 1)


# ----------------------------------------------------------------------------------------- the faces

def test_faces_are_deterministic_and_vary_within_an_identity():
    a = face_image(3, 0, seed=5)
    assert a.shape == (112, 112, 3) and a.dtype == np.uint8
    assert np.array_equal(a, face_image(3, 0, seed=5))
    same_id = np.abs(a.astype(int) - face_image(3, 1, seed=5)).mean()
    other_id = np.abs(a.astype(int) - face_image(4, 0, seed=5)).mean()
    other_seed = np.abs(a.astype(int) - face_image(3, 0, seed=6)).mean()
    assert same_id > 2 and other_id > 2 and other_seed > 2
    assert identity_params(3, 5) == identity_params(3, 5) != identity_params(HELD_OUT_OFFSET + 3, 5)


def test_identities_are_learnable_but_not_trivial_in_pixel_space():
    """Nearest neighbour on raw pixels beats chance clearly, but is far from perfect."""
    n_id, per = 12, 5
    x = np.stack([face_image(i, k, seed=0)[::4, ::4].astype(np.float32).ravel()
                  for i in range(n_id) for k in range(per)])
    y = np.repeat(np.arange(n_id), per)
    d = ((x[:, None] - x[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    acc = (y[d.argmin(1)] == y).mean()
    assert 2 / n_id < acc < 0.95


# ------------------------------------------------------------------------------------ RecordIO face set

def test_record0_identity_ranges_and_property(face_set):
    assert (face_set / "property").read_text().strip() == f"{N_ID},112,112"
    r = RecordReader(face_set / "train.rec", face_set / "train.idx")
    n = N_ID * PER
    header0, rest = r.read_header(0)
    assert header0.flag == 2 and header0.label == (n + 1, n + 1 + N_ID) and rest == b""
    assert r.keys == list(range(n + 1 + N_ID))
    for c in range(N_ID):
        header, _ = r.read_header(n + 1 + c)
        assert header.label == (1 + c * PER, 1 + (c + 1) * PER)
    header, jpeg = r.read_header(PER + 1)  # first image of identity 1
    assert header == IRHeader(0, 1.0, PER + 1, 0) and jpeg[:2] == b"\xff\xd8"
    ds = FaceRecordDataset(face_set)
    assert ds.header0 == (n + 1, n + 1 + N_ID) and ds.num_classes == N_ID and len(ds) == n
    assert ds.identity_ranges() == [(1 + c * PER, 1 + (c + 1) * PER) for c in range(N_ID)]


def test_items_are_normalised_decoded_faces(face_set):
    ds = FaceRecordDataset(face_set, flip=False)
    image, label = ds[PER * 2 + 1]  # identity 2, sample 1
    assert label == 2 and image.dtype == torch.float32 and image.shape == (3, 112, 112)
    assert -1 <= image.min() and image.max() <= 1
    jpeg = (face_set / "images" / "id_00002" / "0001.jpg").read_bytes()
    assert torch.allclose(image.double(), normalised(decode_image(jpeg)), atol=1e-6)
    back = ((image.permute(1, 2, 0).numpy() * 0.5 + 0.5) * 255).astype(np.float64)
    assert np.abs(back - face_image(2, 1, SEED)).mean() < 10  # JPEG of the rendered face
    assert np.abs(back - face_image(2, 0, SEED)).mean() > 20  # and not another sample
    assert [ds.label_of(i) for i in range(len(ds))] == np.repeat(np.arange(N_ID), PER).tolist()


def test_flip_mirrors_half_the_time_and_transform_runs_last(face_set):
    plain = FaceRecordDataset(face_set, flip=False)[0][0]
    ds = FaceRecordDataset(face_set, flip=True)
    torch.manual_seed(0)
    seen = [ds[0][0] for _ in range(40)]
    n_plain = sum(torch.equal(s, plain) for s in seen)
    n_flip = sum(torch.equal(s, plain.flip(-1)) for s in seen)
    assert n_plain + n_flip == 40 and 5 < n_plain < 35
    t = FaceRecordDataset(face_set, flip=False, transform=lambda x: x[:, :56, :56] * 2)
    assert torch.equal(t[0][0], plain[:, :56, :56] * 2)


def test_rec_and_folder_give_the_same_items(face_set):
    rec = FaceRecordDataset(face_set, flip=False)
    folder = ImageFolderFaces(face_set / "images", flip=False)
    assert folder.classes == [f"id_{i:05d}" for i in range(N_ID)] and len(folder) == len(rec)
    for i in (0, 4, len(rec) - 1):
        assert torch.equal(rec[i][0], folder[i][0]) and rec[i][1] == folder[i][1]


@pytest.mark.parametrize("context", [None, "spawn"])
def test_dataloader_with_two_workers(face_set, context):
    ds = FaceRecordDataset(face_set, flip=False)
    ds[0]  # the parent has opened the file before the workers start
    loader = DataLoader(ds, batch_size=5, num_workers=2, multiprocessing_context=context)
    images, labels = zip(*loader, strict=True)
    images, labels = torch.cat(images), torch.cat(labels)
    assert labels.tolist() == np.repeat(np.arange(N_ID), PER).tolist()
    assert torch.equal(images, torch.stack([ds[i][0] for i in range(len(ds))]))


# ------------------------------------------------------------------------------------ corrupt face sets

def copy_set(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for name in ("train.rec", "train.idx", "property"):
        (dst / name).write_bytes((src / name).read_bytes())
    return dst


def test_missing_or_bad_property(face_set, tmp_path):
    d = copy_set(face_set, tmp_path / "s")
    (d / "property").unlink()
    with pytest.raises(FileNotFoundError, match=r"property file not found: .*'num_classes,112,112'"):
        FaceRecordDataset(d)
    (d / "property").write_text("many,112,112")
    with pytest.raises(DataFormatError, match=r"property: expected 'num_classes,H,W'"):
        FaceRecordDataset(d)
    (d / "property").write_text("2,112,112")  # fewer classes than the labels use
    ds = FaceRecordDataset(d)
    assert ds[0][1] == 0
    with pytest.raises(DataFormatError, match=r"record 7 has label 2, outside 0..1"):
        ds[6]
    with pytest.raises(FileNotFoundError, match="face data folder not found"):
        FaceRecordDataset(tmp_path / "nowhere")


def test_truncated_set_and_bad_record0(face_set, tmp_path):
    d = copy_set(face_set, tmp_path / "s")
    data = (d / "train.rec").read_bytes()
    (d / "train.rec").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataFormatError, match=r"train\.idx line \d+: offset \d+ of key \d+ points past the end"):
        FaceRecordDataset(d)
    rec0 = frame_record(pack_header(IRHeader(2, (101, 105), 0, 0)))  # claims 100 images; same size as before
    (d / "train.rec").write_bytes(rec0 + data[len(rec0):])
    assert len(rec0) == RecordReader(d / "train.rec").offset(1)
    with pytest.raises(DataFormatError, match=r"announces image records 1..100 but key 100 is not in the index"):
        FaceRecordDataset(d)


def test_corrupt_jpeg_names_the_record(face_set, tmp_path):
    d = copy_set(face_set, tmp_path / "s")
    r = RecordReader(d / "train.rec")
    data = bytearray((d / "train.rec").read_bytes())
    start = r.offset(2) + 8 + 24  # frame header + IRHeader: the JPEG's first bytes
    data[start:start + 64] = b"\0" * 64
    (d / "train.rec").write_bytes(bytes(data))
    ds = FaceRecordDataset(d)
    ds[0]
    with pytest.raises(DataFormatError, match=r"train\.rec: record 2: cannot decode image"):
        ds[1]


# ------------------------------------------------------------------------------------------ image folder

def test_image_folder_resizes_and_checks_layout(tmp_path):
    root = tmp_path / "imgs"
    (root / "bob").mkdir(parents=True)
    (root / "alice").mkdir()
    Image.fromarray(face_image(0, 0)[:60, :50]).save(root / "bob" / "a.png")
    Image.fromarray(face_image(1, 0)).save(root / "alice" / "x.jpg")
    (root / "alice" / "notes.txt").write_text("not an image")
    ds = ImageFolderFaces(root, flip=False)
    assert ds.classes == ["alice", "bob"] and len(ds) == 2 and ds.num_classes == 2
    image, label = ds[1]
    assert label == 1 and image.shape == (3, 112, 112)
    (root / "carol").mkdir()
    with pytest.raises(DataFormatError, match=r"carol: identity folder holds no images"):
        ImageFolderFaces(root)
    with pytest.raises(DataFormatError, match="no identity sub-folders"):
        ImageFolderFaces(root / "bob")
    with pytest.raises(FileNotFoundError, match="image folder not found"):
        ImageFolderFaces(tmp_path / "missing")


def test_synthetic_dataset_for_speed_tests():
    ds = SyntheticFaces(num_classes=7, length=50, seed=3)
    image, label = ds[9]
    assert image.shape == (3, 112, 112) and image.dtype == torch.float32
    assert -1 <= image.min() < -0.9 and 0.9 < image.max() <= 1
    assert torch.equal(image, SyntheticFaces(7, 50, seed=3)[9][0])
    assert not torch.equal(image, SyntheticFaces(7, 50, seed=4)[9][0])
    labels = [ds[i][1] for i in range(len(ds))]
    assert set(labels) <= set(range(7)) and len(set(labels)) > 3
    with pytest.raises(IndexError):
        ds[50]
    batch = next(iter(DataLoader(ds, batch_size=8)))
    assert batch[0].shape == (8, 3, 112, 112) and batch[1].dtype == torch.int64


# ---------------------------------------------------------------------------------------- .bin files

def test_verification_bin_round_trip(tmp_path):
    path = tmp_path / "val.bin"
    assert make_verification_bin(path, num_identities=4, pairs=6, seed=2) == 6
    with open(path, "rb") as f:  # the insightface layout, read without our loader
        bins, issame_list = pickle.load(f)
    assert len(bins) == 12 and all(isinstance(b, bytes) and b[:2] == b"\xff\xd8" for b in bins)
    assert issame_list == [True, False] * 3
    images, issame = load_bin(path)
    assert images.dtype == torch.uint8 and images.shape == (12, 3, 112, 112)
    assert issame.dtype == np.bool_ and issame.tolist() == issame_list
    assert torch.equal(images[5], torch.from_numpy(decode_image(bins[5])).permute(2, 0, 1))
    floats, _ = load_bin(path, normalize=True)
    assert torch.allclose(floats.double(), (images.double() / 255 - 0.5) / 0.5, atol=1e-6)


def test_write_bin_accepts_bytes_arrays_and_pairs(tmp_path):
    a, b = face_image(0, 0), face_image(1, 0)
    jpeg = encode_jpeg(a)
    write_bin(tmp_path / "1.bin", [jpeg, b], [False])
    with open(tmp_path / "1.bin", "rb") as f:
        bins, _ = pickle.load(f)
    assert bins[0] == jpeg  # encoded bytes are stored untouched
    write_bin(tmp_path / "2.bin", np.stack([np.stack([a, b]), np.stack([b, a])]), np.array([False, False]))
    write_bin(tmp_path / "3.bin", [(a, a), (torch.from_numpy(b).permute(2, 0, 1), b)], [True, True])
    images2, _ = load_bin(tmp_path / "2.bin")
    images3, issame3 = load_bin(tmp_path / "3.bin")
    assert torch.equal(images2[1], images3[2]) and issame3.tolist() == [True, True]
    with pytest.raises(ValueError, match="3 images for 2 pairs"):
        write_bin(tmp_path / "4.bin", [jpeg] * 3, [True, False])


def test_load_bin_reads_python2_pickles_and_resizes(tmp_path):
    small = encode_jpeg(face_image(0, 0)[:100, :100])
    # protocol 2 as Python 2 wrote it: str (BINSTRING 'T') items, NEWTRUE/NEWFALSE, TUPLE2
    py2 = b"\x80\x02(" + b"".join(b"T" + struct.pack("<i", len(small)) + small for _ in range(4)) + b"l"
    py2 += b"(\x88\x89l\x86."
    (tmp_path / "py2.bin").write_bytes(py2)
    images, issame = load_bin(tmp_path / "py2.bin")
    assert images.shape == (4, 3, 112, 112) and issame.tolist() == [True, False]
    (tmp_path / "np.bin").write_bytes(pickle.dumps(([small] * 2, np.array([True])), protocol=2))
    assert load_bin(tmp_path / "np.bin", image_size=(100, 100))[0].shape == (2, 3, 100, 100)


class _Evil:
    def __init__(self, target: Path):
        self.target = target

    def __reduce__(self):
        return (open, (str(self.target), "w"))


def test_load_bin_refuses_code_and_reports_bad_files(tmp_path):
    target = tmp_path / "pwned"
    (tmp_path / "evil.bin").write_bytes(pickle.dumps(([_Evil(target)], [True])))
    with pytest.raises(DataFormatError, match=r"refusing to load (builtins|io)\.open"):
        load_bin(tmp_path / "evil.bin")
    assert not target.exists()
    (tmp_path / "junk.bin").write_bytes(b"\x00\x01 not a pickle")
    with pytest.raises(DataFormatError, match=r"junk\.bin: not a verification \.bin"):
        load_bin(tmp_path / "junk.bin")
    jpeg = encode_jpeg(face_image(0, 0))
    (tmp_path / "count.bin").write_bytes(pickle.dumps(([jpeg] * 3, [True, False])))
    with pytest.raises(DataFormatError, match=r"3 images for 2 pairs"):
        load_bin(tmp_path / "count.bin")
    (tmp_path / "broken.bin").write_bytes(pickle.dumps(([jpeg] * 3 + [b"garbage"], [True, False])))
    with pytest.raises(DataFormatError, match=r"broken\.bin: image 3: cannot decode"):
        load_bin(tmp_path / "broken.bin")
    with pytest.raises(FileNotFoundError, match="verification set not found"):
        load_bin(tmp_path / "absent.bin")


# -------------------------------------------------------------------------------------------- builders

def test_folder_to_rec_reproduces_the_synthetic_set(face_set, tmp_path):
    info = build_rec_from_folder(face_set / "images", tmp_path / "rebuilt")
    assert (info.num_images, info.num_classes) == (N_ID * PER, N_ID)
    for name in ("train.rec", "train.idx", "property"):  # JPEGs kept byte for byte, same layout
        assert (tmp_path / "rebuilt" / name).read_bytes() == (face_set / name).read_bytes()


def test_folder_to_rec_converts_other_images(tmp_path):
    root = tmp_path / "imgs"
    for name in ("zed", "amy"):
        (root / name).mkdir(parents=True)
    keep = encode_jpeg(face_image(0, 0))
    (root / "zed" / "1.jpg").write_bytes(keep)
    Image.fromarray(face_image(1, 0)[:80, :70]).convert("L").save(root / "amy" / "1.png")
    Image.fromarray(face_image(1, 1)).save(root / "amy" / "2.bmp")
    info = build_rec_from_folder(root, tmp_path / "out")
    assert info.identity_ranges == ((1, 3), (3, 4))
    r = RecordReader(tmp_path / "out" / "train.rec")
    assert r.read_header(3) == (IRHeader(0, 1.0, 3, 0), keep)
    header, jpeg = r.read_header(1)
    assert header.label == 0.0 and Image.open(io.BytesIO(jpeg)).size == (112, 112)
    ds = FaceRecordDataset(tmp_path / "out", flip=False)
    assert [ds[i][1] for i in range(3)] == [0, 0, 1]
    with pytest.raises(ValueError, match="already exist"):
        build_rec_from_folder(root, tmp_path / "out")
    (root / "amy" / "bad.jpg").write_bytes(b"no image")
    with pytest.raises(DataFormatError, match=r"bad\.jpg: not an image"):
        build_rec_from_folder(root, tmp_path / "out", overwrite=True)


def test_pairs_to_bin(tmp_path):
    imgs = tmp_path / "pics"
    (imgs / "with space").mkdir(parents=True)
    for i in range(3):
        Image.fromarray(face_image(i, 0)).save(imgs / f"{i}.jpg")
    Image.fromarray(face_image(0, 1)).save(imgs / "with space" / "0b.png")
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("# a comment\npics/0.jpg pics/1.jpg 0\n\npics/0.jpg\tpics/with space/0b.png\t1\n"
                     f"{imgs / '2.jpg'} pics/1.jpg 0\n")
    assert build_bin_from_pairs(pairs, tmp_path / "p.bin") == 3
    images, issame = load_bin(tmp_path / "p.bin")
    assert issame.tolist() == [False, True, False] and images.shape == (6, 3, 112, 112)
    assert torch.equal(images[0], images[2])  # the same file, pairs 0 and 1
    assert build_bin_from_pairs([(imgs / "0.jpg", imgs / "1.jpg", 1)], tmp_path / "q.bin") == 1
    pairs.write_text("pics/0.jpg pics/1.jpg maybe\n")
    with pytest.raises(ValueError, match=r"pairs\.txt line 1: expected 'path_a path_b 1\|0'"):
        build_bin_from_pairs(pairs, tmp_path / "r.bin")
    pairs.write_text("pics/0.jpg pics/9.jpg 1\n")
    with pytest.raises(FileNotFoundError, match=r"image not found: .*9\.jpg"):
        build_bin_from_pairs(pairs, tmp_path / "r.bin")
    with pytest.raises(ValueError, match="already exists"):
        build_bin_from_pairs([(imgs / "0.jpg", imgs / "1.jpg", 1)], tmp_path / "q.bin")


def test_make_synthetic_refuses_to_overwrite_and_cleans_up_when_asked(tmp_path):
    make_synthetic_faces(tmp_path, 3, 1, seed=0, formats=("folder",))
    with pytest.raises(ValueError, match="already exist"):
        make_synthetic_faces(tmp_path, 2, 1, seed=0, formats=("folder",))
    make_synthetic_faces(tmp_path, 2, 1, seed=0, formats=("folder",), overwrite=True)
    assert sorted(p.name for p in (tmp_path / "images").iterdir()) == ["id_00000", "id_00001"]
    assert not (tmp_path / "train.rec").exists()
    with pytest.raises(ValueError, match="formats"):
        make_synthetic_faces(tmp_path / "x", 2, 1, formats=("lmdb",))
    with pytest.raises(ValueError, match="num_identities"):
        make_synthetic_faces(tmp_path / "x", 0, 1)
