"""RecordIO framing, .idx, IRHeader: byte layout as dmlc/MXNet write it, round trips and corrupt files."""

from __future__ import annotations

import pickle
import struct
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from arcface_viz.fullscale.recordio import (
    IR_SIZE,
    MAGIC,
    DataFormatError,
    IRHeader,
    RecordReader,
    RecordWriter,
    frame_record,
    iter_records,
    pack_header,
    rebuild_index,
    unpack_header,
)

M = struct.pack("<I", 0xCED7230A)  # the magic as it lies in the file (little-endian)


def head(cflag: int, length: int) -> bytes:
    return M + struct.pack("<I", (cflag << 29) | length)


def write_set(tmp_path: Path, records: dict[int, bytes]) -> tuple[Path, Path]:
    rec, idx = tmp_path / "x.rec", tmp_path / "x.idx"
    with RecordWriter(rec, idx) as w:
        for k, v in records.items():
            w.write(k, v)
    return rec, idx


# ------------------------------------------------------------------------------------------ byte layout

def test_single_part_record_layout_and_padding():
    assert MAGIC == 0xCED7230A
    assert frame_record(b"abcde") == head(0, 5) + b"abcde" + b"\0\0\0"
    assert frame_record(b"abcd") == head(0, 4) + b"abcd"
    assert frame_record(b"") == head(0, 0)


def test_aligned_magic_splits_the_record_into_parts():
    payload = b"ABCD" + M + b"EFGH" + M + b"IJ"
    expected = head(1, 4) + b"ABCD" + head(2, 4) + b"EFGH" + head(3, 2) + b"IJ" + b"\0\0"
    assert frame_record(payload) == expected
    # magic at the very start and at the very end: empty first / last parts
    assert frame_record(M + b"xy") == head(1, 0) + head(3, 2) + b"xy\0\0"
    assert frame_record(b"abcd" + M) == head(1, 4) + b"abcd" + head(3, 0)


def test_unaligned_magic_stays_inside_one_part():
    payload = b"a" + M + b"bc"
    assert frame_record(payload) == head(0, 7) + payload + b"\0"


# ------------------------------------------------------------------------------------------ round trips

def tricky_payloads() -> dict[int, bytes]:
    rng = np.random.default_rng(0)
    big = bytearray(rng.integers(0, 256, 3 * 2**20 + 3, dtype=np.uint8).tobytes())
    for pos in (0, 4096, 2**20, 3 * 2**20 - 4):  # aligned magics inside a large binary payload
        big[pos:pos + 4] = M
    big[13:17] = M  # and an unaligned one
    return {
        0: b"",
        1: b"x",
        2: b"abc",
        3: M,
        4: M + M + M,
        5: b"12" + M + b"34" + M,
        6: bytes(big),
        7: rng.integers(0, 256, 1001, dtype=np.uint8).tobytes(),
        8: M.join([b"abcd"] * 50),
    }


def test_round_trip_with_magic_inside_and_large_records(tmp_path):
    records = tricky_payloads()
    rec, idx = write_set(tmp_path, records)
    with RecordReader(rec, idx) as r:
        assert r.keys == list(records) and len(r) == len(records)
        for k in reversed(list(records)):  # random access, any order
            assert r.read(k) == records[k]
    # the sequential reader sees the same records at the offsets the .idx lists
    listed = dict(line.split("\t") for line in idx.read_text().splitlines())
    seen = list(iter_records(rec))
    assert [p for _, p in seen] == list(records.values())
    assert [off for off, _ in seen] == [int(listed[str(k)]) for k in records]
    assert rec.stat().st_size % 4 == 0


def test_sparse_keys_and_missing_key(tmp_path):
    records = {10: b"ten", 3: b"three", 1000: b"k"}
    rec, idx = write_set(tmp_path, records)
    r = RecordReader(rec)  # .idx found next to the .rec
    assert r.keys == [10, 3, 1000]
    assert {k: r.read(k) for k in records} == records
    assert 3 in r and 4 not in r
    with pytest.raises(KeyError, match="no record with key 4"):
        r.read(4)


def test_reader_is_thread_safe_and_survives_pickling(tmp_path):
    rng = np.random.default_rng(1)
    records = {k: rng.integers(0, 256, int(rng.integers(1, 5000)), dtype=np.uint8).tobytes() for k in range(64)}
    rec, idx = write_set(tmp_path, records)
    r = RecordReader(rec, idx)
    keys = rng.integers(0, 64, 2000).tolist()
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(r.read, keys))
    assert got == [records[k] for k in keys]
    clone = pickle.loads(pickle.dumps(r))  # what a spawn-started DataLoader worker receives
    assert clone._fd is None
    assert clone.read(17) == records[17]
    r.close()
    assert r.read(5) == records[5]  # reopens after close


def test_writer_rejects_duplicate_and_non_integer_keys(tmp_path):
    with RecordWriter(tmp_path / "a.rec") as w:
        w.write(1, b"a")
        with pytest.raises(ValueError, match="key 1 written twice"):
            w.write(1, b"b")
        with pytest.raises(TypeError):
            w.write("2", b"b")
    assert (tmp_path / "a.idx").read_text() == "1\t0\n"


def test_rebuild_index_recreates_a_lost_idx(tmp_path):
    records = {k: bytes([k]) * (k + 1) + M for k in range(7)}
    rec, idx = write_set(tmp_path, records)
    original = idx.read_text()
    idx.unlink()
    assert rebuild_index(rec) == 7
    assert idx.read_text() == original


# --------------------------------------------------------------------------------------------- headers

def test_scalar_label_header_layout():
    data = pack_header(IRHeader(0, 7.0, 42, 3), b"JPEG")
    assert len(data) == IR_SIZE + 4 == 28
    assert struct.unpack("<IfQQ", data[:24]) == (0, 7.0, 42, 3)
    header, rest = unpack_header(data)
    assert header == IRHeader(0, 7.0, 42, 3) and rest == b"JPEG"


def test_sequence_label_sets_flag_and_follows_header():
    data = pack_header((0, (13, 17), 0, 0), b"tail")
    flag, label_field, _, _ = struct.unpack("<IfQQ", data[:24])
    assert (flag, label_field) == (2, 0.0)
    assert np.frombuffer(data[24:32], "<f4").tolist() == [13.0, 17.0]
    header, rest = unpack_header(data)
    assert header.flag == 2 and header.label == (13.0, 17.0) and rest == b"tail"
    # a scalar label forces flag 0 whatever flag was given, as MXNet's pack does
    assert unpack_header(pack_header(IRHeader(5, 1.5, 0, 0)))[0].flag == 0


def test_header_ids_are_uint64_and_labels_float32():
    big = 2**64 - 1
    header, _ = unpack_header(pack_header(IRHeader(0, 0.1, big, big)))
    assert header.id == big and header.id2 == big
    assert header.label == pytest.approx(0.1, rel=1e-6) and header.label != 0.1  # stored as float32
    with pytest.raises(ValueError, match="uint64"):
        pack_header(IRHeader(0, 1.0, 2**64, 0))
    with pytest.raises(ValueError, match="at least one"):
        pack_header(IRHeader(0, (), 0, 0))


def test_unpack_errors_name_the_problem():
    with pytest.raises(DataFormatError, match="shorter than the 24-byte IRHeader"):
        unpack_header(b"\0" * 10)
    short = struct.pack("<IfQQ", 3, 0.0, 0, 0) + b"\0" * 8  # announces 3 labels, has 2
    with pytest.raises(DataFormatError, match="announces 3 float32 labels"):
        unpack_header(short)


# ------------------------------------------------------------------------------------------ corruption

def test_missing_files_are_named(tmp_path):
    rec, idx = write_set(tmp_path, {0: b"a"})
    idx.unlink()
    with pytest.raises(FileNotFoundError, match=r"index not found: .*x\.idx"):
        RecordReader(rec)
    with pytest.raises(FileNotFoundError, match=r"RecordIO file not found: .*nope\.rec"):
        RecordReader(tmp_path / "nope.rec", idx)


def test_truncated_rec(tmp_path):
    rec, idx = write_set(tmp_path, {0: b"a" * 100, 1: b"b" * 100, 2: b"c" * 100})
    data = rec.read_bytes()
    rec.write_bytes(data[:-20])  # the last record loses its tail
    r = RecordReader(rec, idx)
    assert r.read(1) == b"b" * 100
    with pytest.raises(DataFormatError, match=r"record 2 at byte 216: .*file ends after 80 \(truncated"):
        r.read(2)
    rec.write_bytes(data[:150])  # offsets now point past the end: caught when opening
    with pytest.raises(DataFormatError, match=r"x\.idx line 3: offset 216 of key 2 points past the end of x\.rec"):
        RecordReader(rec, idx)


def test_bad_magic_and_misaligned_index(tmp_path):
    rec, idx = write_set(tmp_path, {0: b"a" * 40, 1: b"b" * 40})
    data = bytearray(rec.read_bytes())
    data[48] ^= 0xFF  # first byte of record 1's magic
    rec.write_bytes(bytes(data))
    r = RecordReader(rec, idx)
    assert r.read(0) == b"a" * 40
    with pytest.raises(DataFormatError, match=r"record 1 at byte 48: bad magic 0x.*expected 0xced7230a"):
        r.read(1)
    idx.write_text("0\t4\n")  # an index that does not belong to this file
    with pytest.raises(DataFormatError, match="bad magic"):
        RecordReader(rec, idx).read(0)


def test_malformed_index_lines(tmp_path):
    rec, idx = write_set(tmp_path, {0: b"a", 1: b"b"})
    idx.write_text("0\t0\n1\t12\nthree\t4\n")
    with pytest.raises(DataFormatError, match=r"line 3: expected 'key<TAB>offset', got 'three\\t4'"):
        RecordReader(rec, idx)
    idx.write_text("0\t0\n0\t12\n")
    with pytest.raises(DataFormatError, match="key 0 appears twice"):
        RecordReader(rec, idx)


def test_continuation_part_without_a_start_is_rejected(tmp_path):
    rec = tmp_path / "y.rec"
    rec.write_bytes(head(3, 4) + b"abcd")
    (tmp_path / "y.idx").write_text("0\t0\n")
    with pytest.raises(DataFormatError, match="unexpected part flag 3"):
        RecordReader(rec).read(0)
