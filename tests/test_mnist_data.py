"""MNIST-family loaders: IDX parsing, bad files, the download path against a real local server."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import struct
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from toy_data import mnist
from toy_data.mnist import (
    DatasetError,
    DatasetMissing,
    available_datasets,
    default_cache_dir,
    download,
    load_dataset,
    read_idx,
    read_idx_header,
)

DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")
CODES = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C, np.float32: 0x0D, np.float64: 0x0E}
NAMES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def idx_bytes(arr: np.ndarray, code: int | None = None) -> bytes:
    """Encode ``arr`` as an IDX file (written here independently of the reader under test)."""
    code = CODES[arr.dtype.type] if code is None else code
    header = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def write(path: Path, data: bytes, gz: bool = False) -> Path:
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def make_split(n: int, hw: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, hw, hw), dtype=np.uint8), np.arange(n, dtype=np.uint8) % 10


@pytest.fixture
def arrays():
    x_tr, y_tr = make_split(40, seed=1)
    x_te, y_te = make_split(15, seed=2)
    return {"train_images": x_tr, "train_labels": y_tr, "test_images": x_te, "test_labels": y_te}


def write_dataset(directory: Path, arrays, gz=True, names=NAMES) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for key, arr in arrays.items():
        write(directory / (names[key] + (".gz" if gz else "")), idx_bytes(arr), gz=gz)
    return directory


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    """Every test gets an empty user cache, so a real ~/.cache never leaks in."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("ARCFACE_VIZ_DATA", str(cache))
    return cache


# ------------------------------------------------------------------------------------------ reader


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize(
    "arr",
    [
        np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4),
        np.array([0, 9, 3, 255], dtype=np.uint8),
        np.array([[-70000, 1], [2, 2**31 - 1]], dtype=np.int32),
        np.linspace(-1, 1, 6, dtype=np.float32).reshape(3, 2),
        np.array([-1.5, 1e300], dtype=np.float64),
    ],
)
def test_idx_round_trip_exact(tmp_path, arr, gz):
    path = write(tmp_path / "a.idx", idx_bytes(arr), gz=gz)
    back = read_idx(path)
    assert back.shape == arr.shape
    assert back.dtype == arr.dtype  # native byte order, same kind and size
    np.testing.assert_array_equal(back, arr)
    dtype, shape = read_idx_header(path)
    assert shape == arr.shape and dtype.itemsize == arr.dtype.itemsize


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("block_bytes", [1, 100, 1 << 22])  # a record per block, a few, everything at once
def test_reading_chosen_rows_equals_indexing_the_whole_array(tmp_path, gz, block_bytes):
    arr = np.random.default_rng(0).integers(-(2**31), 2**31 - 1, (37, 3, 5), dtype=np.int64).astype(np.int32)
    path = write(tmp_path / "rows.idx", idx_bytes(arr), gz=gz)
    for rows in ([0], [36], [0, 1, 2], [3, 17, 18, 35, 36], list(range(37)), []):
        back = read_idx(path, np.array(rows, dtype=np.int64), block_bytes=block_bytes)
        assert back.dtype == arr.dtype and back.shape == (len(rows), 3, 5)
        np.testing.assert_array_equal(back, arr[rows])


def test_reading_rows_still_checks_the_whole_file(tmp_path):
    short = write(tmp_path / "short", idx_bytes(np.zeros((5, 4, 4), np.uint8))[:-7], gz=True)
    with pytest.raises(DatasetError, match="truncated"):
        read_idx(short, [0], block_bytes=16)
    long = write(tmp_path / "long", idx_bytes(np.zeros((5, 4), np.uint8)) + b"\x00", gz=True)
    with pytest.raises(DatasetError, match="too long"):
        read_idx(long, [1, 2])
    ok = write(tmp_path / "ok", idx_bytes(np.zeros((5, 4), np.uint8)))
    for bad in ([5], [-1], [2, 1], [1, 1]):
        with pytest.raises(ValueError, match="sorted, distinct"):
            read_idx(ok, bad)


def test_gzip_detected_by_magic_bytes_not_name(tmp_path):
    arr = np.arange(6, dtype=np.uint8)
    gz_named_plain = write(tmp_path / "x-idx1-ubyte.gz", idx_bytes(arr), gz=False)
    plain_named_gz = write(tmp_path / "x-idx1-ubyte", idx_bytes(arr), gz=True)
    np.testing.assert_array_equal(read_idx(gz_named_plain), arr)
    np.testing.assert_array_equal(read_idx(plain_named_gz), arr)


@pytest.mark.parametrize("gz", [False, True])
def test_truncated_file_is_a_clear_error(tmp_path, gz):
    data = idx_bytes(np.zeros((5, 4, 4), np.uint8))[:-7]
    path = write(tmp_path / "short-idx3-ubyte", data, gz=gz)
    with pytest.raises(DatasetError, match="truncated") as info:
        read_idx(path)
    assert str(path) in str(info.value)
    assert "80 bytes" in str(info.value)  # 5 * 4 * 4 expected


def test_truncated_gzip_stream_is_a_clear_error(tmp_path):
    blob = gzip.compress(idx_bytes(np.arange(3000, dtype=np.uint8) % 7))
    path = tmp_path / "cut.gz"
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DatasetError, match="gzip") as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_raw_truncation_is_caught_from_the_header_alone(tmp_path):
    path = write(tmp_path / "short", idx_bytes(np.zeros((5, 4, 4), np.uint8))[:-1])
    with pytest.raises(DatasetError, match="truncated"):
        read_idx_header(path)


def test_trailing_bytes_are_an_error(tmp_path):
    path = write(tmp_path / "long", idx_bytes(np.zeros(4, np.uint8)) + b"\x00\x01")
    with pytest.raises(DatasetError, match="too long"):
        read_idx(path)


def test_wrong_magic_number(tmp_path):
    data = bytearray(idx_bytes(np.zeros(4, np.uint8)))
    data[0:2] = b"\x12\x34"
    path = write(tmp_path / "magic", bytes(data))
    with pytest.raises(DatasetError, match="magic number") as info:
        read_idx(path)
    assert str(path) in str(info.value)
    with pytest.raises(DatasetError, match="magic number"):
        read_idx_header(path)


def test_wrong_dtype_code(tmp_path):
    path = write(tmp_path / "dtype", idx_bytes(np.zeros(4, np.uint8), code=0x07))
    with pytest.raises(DatasetError, match="dtype code 0x07") as info:
        read_idx(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("data", [b"", b"\x00\x00", b"\x00\x00\x08\x00", b"\x00\x00\x08\x03\x00\x00\x00\x05"])
def test_bad_headers(tmp_path, data):
    path = write(tmp_path / "hdr", data)
    with pytest.raises(DatasetError) as info:
        read_idx(path)
    assert str(path) in str(info.value)


# ----------------------------------------------------------------------------------- local loading


def test_load_from_data_dir_exact(tmp_path, arrays):
    d = write_dataset(tmp_path / "data", arrays, gz=True)
    ds = load_dataset("mnist", data_dir=d)
    np.testing.assert_array_equal(ds.x_train, arrays["train_images"])
    np.testing.assert_array_equal(ds.y_test, arrays["test_labels"])
    assert ds.x_train.dtype == np.uint8 and ds.y_train.dtype == np.int64
    assert ds.classes == tuple("0123456789") and ds.name == "mnist" and ds.n_classes == 10
    assert ds.image_shape == (12, 12)
    assert str(d) in ds.source


def test_load_accepts_dotted_names_uncompressed(tmp_path, arrays):
    dotted = {k: v.replace("-idx", ".idx") for k, v in NAMES.items()}
    d = write_dataset(tmp_path / "dots", arrays, gz=False, names=dotted)
    ds = load_dataset("fashion-mnist", data_dir=d)
    np.testing.assert_array_equal(ds.x_test, arrays["test_images"])
    assert ds.classes[0] == "T-shirt/top" and ds.classes[9] == "Ankle boot"


def test_data_dir_wins_over_cache(tmp_path, arrays, isolated_cache):
    write_dataset(isolated_cache / "mnist", arrays)
    other = {**arrays, "train_images": 255 - arrays["train_images"]}
    d = write_dataset(tmp_path / "mine", other)
    np.testing.assert_array_equal(load_dataset("mnist", data_dir=d).x_train, other["train_images"])
    np.testing.assert_array_equal(load_dataset("mnist").x_train, arrays["train_images"])
    assert str(isolated_cache / "mnist") in load_dataset("mnist").source


def test_count_mismatch(tmp_path, arrays):
    bad = {**arrays, "train_labels": arrays["train_labels"][:-3]}
    d = write_dataset(tmp_path / "bad", bad)
    with pytest.raises(DatasetError, match="40 images") as info:
        load_dataset("mnist", data_dir=d)
    assert "37 labels" in str(info.value)
    status = available_datasets(d)["mnist"]
    assert not status.available and "37 labels" in status.message


def test_labels_with_wrong_dtype_or_range(tmp_path, arrays):
    d = write_dataset(tmp_path / "i32", {**arrays, "test_labels": arrays["test_labels"].astype(np.int32)})
    with pytest.raises(DatasetError, match="expected labels as unsigned bytes"):
        load_dataset("mnist", data_dir=d)
    y = arrays["train_labels"].copy()
    y[3] = 10
    d = write_dataset(tmp_path / "range", {**arrays, "train_labels": y})
    with pytest.raises(DatasetError, match="label 10 out of range"):
        load_dataset("mnist", data_dir=d)


def test_corrupt_file_in_data_dir_names_it(tmp_path, arrays):
    d = write_dataset(tmp_path / "cut", arrays, gz=False)
    p = d / NAMES["test_images"]
    p.write_bytes(p.read_bytes()[:-10])
    with pytest.raises(DatasetError, match="truncated") as info:
        load_dataset("mnist", data_dir=d)
    assert str(p) in str(info.value)
    assert not available_datasets(d)["mnist"].available


def test_subset_is_seeded_and_bounded(tmp_path, arrays):
    d = write_dataset(tmp_path / "data", arrays)
    a = load_dataset("mnist", data_dir=d, max_train=10, max_test=4, seed=3)
    b = load_dataset("mnist", data_dir=d, max_train=10, max_test=4, seed=3)
    assert a.x_train.shape == (10, 12, 12) and a.y_test.shape == (4,)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    # every kept image keeps its own label
    full = arrays["train_images"].reshape(40, -1)
    for img, lab in zip(a.x_train, a.y_train, strict=True):
        (i,) = np.flatnonzero((full == img.ravel()).all(axis=1))
        assert arrays["train_labels"][i] == lab


def test_missing_mnist_says_how_to_get_it(tmp_path):
    with pytest.raises(DatasetMissing) as info:
        load_dataset("mnist", data_dir=tmp_path / "empty")
    msg = str(info.value)
    assert "download it" in msg and "train-images-idx3-ubyte" in msg and str(tmp_path / "empty") in msg
    assert isinstance(info.value, DatasetError)


def test_missing_fashion_mentions_debian_package(tmp_path, monkeypatch):
    spec = dataclasses.replace(mnist.DATASETS["fashion-mnist"], system_dirs=(str(tmp_path / "nowhere"),))
    monkeypatch.setitem(mnist.DATASETS, "fashion-mnist", spec)
    with pytest.raises(DatasetMissing, match="apt-get install dataset-fashion-mnist"):
        load_dataset("fashion-mnist")


def test_incomplete_directory_is_reported(tmp_path, arrays):
    d = write_dataset(tmp_path / "part", {k: v for k, v in arrays.items() if k != "test_labels"})
    with pytest.raises(DatasetMissing, match="incomplete: missing t10k-labels-idx1-ubyte"):
        load_dataset("mnist", data_dir=d)


def test_unknown_dataset():
    with pytest.raises(DatasetError, match="unknown dataset 'emnist'"):
        load_dataset("emnist")


def test_cache_dir_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("ARCFACE_VIZ_DATA", str(tmp_path / "a"))
    assert default_cache_dir() == tmp_path / "a"
    monkeypatch.delenv("ARCFACE_VIZ_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "arcface-viz"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "arcface-viz"


# ---------------------------------------------------------------------------- digits and Debian


def test_digits_offline_split():
    ds = load_dataset("digits")
    assert ds.x_train.shape == (1437, 8, 8) and ds.x_test.shape == (360, 8, 8)
    assert ds.x_train.dtype == np.uint8 and ds.y_train.dtype == np.int64
    assert ds.x_train.max() == 255 and ds.x_train.min() == 0
    counts = np.bincount(ds.y_test, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37  # stratified: ~36 of each digit
    again = load_dataset("digits")
    np.testing.assert_array_equal(ds.y_train, again.y_train)
    assert not np.array_equal(load_dataset("digits", seed=1).y_train, ds.y_train)
    assert load_dataset("digits", max_train=100).x_train.shape == (100, 8, 8)


def test_fashion_mnist_from_debian_package():
    assert DEBIAN_FASHION.is_dir(), "the dataset-fashion-mnist package is expected here and in CI"
    ds = load_dataset("fashion-mnist")
    assert ds.x_train.shape == (60000, 28, 28) and ds.x_test.shape == (10000, 28, 28)
    assert ds.y_train.shape == (60000,) and ds.y_test.shape == (10000,)
    np.testing.assert_array_equal(np.bincount(ds.y_train), [6000] * 10)
    np.testing.assert_array_equal(np.bincount(ds.y_test), [1000] * 10)
    assert str(DEBIAN_FASHION) in ds.source


def test_available_datasets_reports_what_is_there(tmp_path, arrays):
    status = available_datasets()
    assert status["digits"].available and status["digits"].n_train == 1437
    assert not status["mnist"].available and "download it" in status["mnist"].message
    assert status["fashion-mnist"].available
    assert status["fashion-mnist"].location == str(DEBIAN_FASHION)
    assert (status["fashion-mnist"].n_train, status["fashion-mnist"].n_test) == (60000, 10000)

    d = write_dataset(tmp_path / "mine" / "mnist", arrays)
    mine = available_datasets(tmp_path / "mine")["mnist"]  # <data_dir>/mnist/ is searched too
    assert mine.available and mine.location == str(d)
    assert (mine.n_train, mine.n_test, mine.image_shape) == (40, 15, (12, 12))


# ---------------------------------------------------------------------------------------- download


class Server:
    """A real HTTP server on 127.0.0.1 with per-path behaviours, recording every request path."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.lie_length: set[str] = set()  # paths whose Content-Length exceeds the body
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's naming)
                server.requests.append(self.path)
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404, "Not Found")
                    return
                self.send_response(200)
                extra = 1000 if self.path in server.lie_length else 0
                self.send_header("Content-Length", str(len(body) + extra))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture
def server(monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    s = Server()
    yield s
    s.close()


def gz_files(arrays) -> dict[str, bytes]:
    return {NAMES[k] + ".gz": gzip.compress(idx_bytes(v)) for k, v in arrays.items()}


def md5s(files: dict[str, bytes]) -> dict[str, str]:
    return {name: "md5:" + hashlib.md5(b).hexdigest() for name, b in files.items()}


def publish(server: Server, prefix: str, files: dict[str, bytes]) -> str:
    for name, body in files.items():
        server.files[f"/{prefix}/{name}"] = body
    return f"{server.url}/{prefix}/"


def files_under(path: Path) -> list[Path]:
    return [p for p in path.rglob("*") if p.is_file()] if path.exists() else []


def test_download_into_cache_with_progress(server, arrays, tmp_path):
    files = gz_files(arrays)
    mirror = publish(server, "m1", files)
    calls = []
    cache = tmp_path / "dl"
    target = download("mnist", cache_dir=cache, mirrors=[mirror], checksums=md5s(files),
                      progress=lambda done, total, name: calls.append((done, total, name)))
    assert target == cache / "mnist"
    assert sorted(p.name for p in files_under(cache)) == sorted(files)
    for name, body in files.items():
        assert (target / name).read_bytes() == body
        mine = [c for c in calls if c[2] == name]
        assert mine[0][0] == 0 and mine[-1] == (len(body), len(body), name)
        assert [c[0] for c in mine] == sorted(c[0] for c in mine)
    ds = load_dataset("mnist", cache_dir=cache)
    np.testing.assert_array_equal(ds.x_train, arrays["train_images"])
    assert available_datasets(cache_dir=cache)["mnist"].available

    # cached files with the right checksum are not fetched again
    n = len(server.requests)
    download("mnist", cache_dir=cache, mirrors=[mirror], checksums=md5s(files))
    assert len(server.requests) == n


def test_sha256_checksums_accepted(server, arrays, tmp_path):
    files = gz_files(arrays)
    mirror = publish(server, "m", files)
    sums = {name: "sha256:" + hashlib.sha256(b).hexdigest() for name, b in files.items()}
    download("fashion-mnist", cache_dir=tmp_path / "c", mirrors=[mirror], checksums=sums)
    assert len(files_under(tmp_path / "c")) == 4


def test_checksum_mismatch_leaves_nothing(server, arrays, tmp_path):
    files = gz_files(arrays)
    mirror = publish(server, "m", files)
    sums = md5s(files)
    sums["train-images-idx3-ubyte.gz"] = "md5:" + "0" * 32
    cache = tmp_path / "c"
    with pytest.raises(DatasetError) as info:
        download("mnist", cache_dir=cache, mirrors=[mirror], checksums=sums)
    msg = str(info.value)
    assert "checksum mismatch" in msg and "train-images-idx3-ubyte.gz" in msg
    assert f"{mirror}train-images-idx3-ubyte.gz" in msg
    assert files_under(cache) == []


def test_published_checksums_reject_other_bytes(server, arrays, tmp_path):
    """Without overrides the real MNIST checksums apply, so generated files are refused."""
    mirror = publish(server, "m", gz_files(arrays))
    with pytest.raises(DatasetError, match="checksum mismatch"):
        download("mnist", cache_dir=tmp_path / "c", mirrors=[mirror])
    assert files_under(tmp_path / "c") == []


def test_404_falls_back_to_next_mirror(server, arrays, tmp_path):
    files = gz_files(arrays)
    good = publish(server, "good", files)
    dead = f"{server.url}/dead/"
    target = download("mnist", cache_dir=tmp_path / "c", mirrors=[dead, good], checksums=md5s(files))
    assert "/dead/train-images-idx3-ubyte.gz" in server.requests
    assert "/good/train-images-idx3-ubyte.gz" in server.requests
    assert sorted(p.name for p in target.iterdir()) == sorted(files)


def test_all_mirrors_failing_lists_every_url(server, arrays, tmp_path):
    with pytest.raises(DatasetError) as info:
        download("mnist", cache_dir=tmp_path / "c", mirrors=[f"{server.url}/a", f"{server.url}/b/"],
                 checksums=md5s(gz_files(arrays)))
    msg = str(info.value)
    assert "train-images-idx3-ubyte.gz" in msg and "HTTP 404" in msg
    assert f"{server.url}/a/train-images-idx3-ubyte.gz" in msg
    assert f"{server.url}/b/train-images-idx3-ubyte.gz" in msg
    assert files_under(tmp_path / "c") == []


def test_short_body_against_content_length(server, arrays, tmp_path):
    files = gz_files(arrays)
    mirror = publish(server, "m", files)
    server.lie_length.add("/m/train-images-idx3-ubyte.gz")
    with pytest.raises(DatasetError, match="truncated download") as info:
        download("mnist", cache_dir=tmp_path / "c", mirrors=[mirror], checksums=md5s(files))
    n = len(files["train-images-idx3-ubyte.gz"])
    assert f"received {n} of {n + 1000} bytes" in str(info.value)
    assert f"{mirror}train-images-idx3-ubyte.gz" in str(info.value)
    assert files_under(tmp_path / "c") == []


def test_truncated_gzip_with_matching_checksum(server, arrays, tmp_path):
    files = gz_files(arrays)
    name = "train-images-idx3-ubyte.gz"
    files[name] = files[name][: len(files[name]) // 2]
    mirror = publish(server, "m", files)
    with pytest.raises(DatasetError, match="corrupt or truncated gzip") as info:
        download("mnist", cache_dir=tmp_path / "c", mirrors=[mirror], checksums=md5s(files))
    assert f"{mirror}{name}" in str(info.value)
    assert files_under(tmp_path / "c") == []


def test_bad_first_mirror_then_good_one(server, arrays, tmp_path):
    """A mirror serving wrong bytes is skipped like a dead one."""
    files = gz_files(arrays)
    wrong = publish(server, "wrong", {n: b"\x1f\x8bnot really" for n in files})
    good = publish(server, "good", files)
    target = download("mnist", cache_dir=tmp_path / "c", mirrors=[wrong, good], checksums=md5s(files))
    assert (target / "t10k-labels-idx1-ubyte.gz").read_bytes() == files["t10k-labels-idx1-ubyte.gz"]
