"""miniflow.data: reading, checking and downloading MNIST, and the notebook's splits.

Real files only: the MNIST test split in conftest.MNIST, copies of it in tmp_path, and
loopback HTTP servers that serve such copies. Nothing here needs the internet.
"""

import functools
import gzip
import hashlib
import importlib
import shutil
import socket
import struct
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from conftest import MNIST

IMAGES, LABELS = "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"
# Digits 0..9 in the official 10,000-image test split.
TEST_CLASS_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture(scope="module")
def data(mf):
    return importlib.import_module("miniflow_reference.data")


@pytest.fixture(autouse=True)
def no_env_override(monkeypatch):
    """A developer's own $MINIFLOW_DATA must not change what the tests read."""
    monkeypatch.delenv("MINIFLOW_DATA", raising=False)


def md5(path):
    return hashlib.md5(path.read_bytes()).hexdigest()


def copy_test_split(folder):
    """Copy the two real t10k files into `folder` (created) and return it."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in (IMAGES, LABELS):
        shutil.copyfile(MNIST / name, folder / name)
    return folder


def corrupt(path):
    """Flip one byte in the middle of a file."""
    content = bytearray(path.read_bytes())
    content[len(content) // 2] ^= 0xFF
    path.write_bytes(bytes(content))


class QuietHandler(SimpleHTTPRequestHandler):
    """Serves files without logging each request to stderr."""

    def log_message(self, format, *args):
        pass


@pytest.fixture
def serve():
    """serve(folder) starts a loopback HTTP server for `folder` and returns its base URL."""
    servers = []

    def start(folder):
        handler = functools.partial(QuietHandler, directory=str(folder))
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        # A short poll interval makes shutdown() quick.
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def closed_port_url():
    """A loopback URL where nothing listens: connecting is refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def leftovers(folder):
    """Files in `folder` other than the MNIST files (e.g. temporary downloads)."""
    return sorted(p.name for p in folder.iterdir() if not p.name.endswith("-ubyte.gz"))


# Reading the real test split


def test_reads_the_real_test_split(data):
    mnist = data.load_mnist(MNIST, download=False)
    images, labels = mnist.test
    assert mnist.train is None
    assert images.shape == (10000, 784) and images.dtype == np.float32
    assert images.min() == 0 and images.max() == 1
    # Pixels are bytes scaled by 1/255, and most of each image is background.
    np.testing.assert_allclose(images * 255, np.round(images * 255), atol=1e-4)
    assert 0.7 < np.mean(images == 0) < 0.9
    assert labels.shape == (10000,) and labels.dtype == np.int64
    assert labels[0] == 7
    assert np.bincount(labels).tolist() == TEST_CLASS_COUNTS


def test_a_damaged_file_is_rejected_naming_file_and_both_md5s(data, tmp_path):
    folder = copy_test_split(tmp_path / "mnist")
    corrupt(folder / IMAGES)
    with pytest.raises(data.MnistChecksumError) as error:
        data.load_mnist(folder, download=False)
    message = str(error.value)
    assert str(folder / IMAGES) in message
    assert data.MNIST_FILES[IMAGES] in message
    assert md5(folder / IMAGES) in message


def test_md5s_are_the_published_ones(data):
    assert md5(MNIST / IMAGES) == data.MNIST_FILES[IMAGES]
    assert md5(MNIST / LABELS) == data.MNIST_FILES[LABELS]
    assert data.MNIST_FILES["train-images-idx3-ubyte.gz"] == "f68b3c2dcbeaaa9fbdd348bbdeb94873"
    assert data.MNIST_FILES["train-labels-idx1-ubyte.gz"] == "d53e105ee54ea40749a09fcbcd1e9432"


def write_idx(path, header, values=b""):
    with gzip.open(path, "wb") as file:
        file.write(header + values)


@pytest.mark.parametrize(
    ("header", "values", "complaint"),
    [
        (b"\x08\x03\x00\x00", b"", "magic number"),
        (b"\x00\x00\x0d\x01" + struct.pack(">I", 2), b"\x00" * 8, "type 0x0d"),
        (b"\x00\x00\x08\x03" + struct.pack(">II", 2, 28), b"", "cut short"),
        (b"\x00\x00\x08\x01" + struct.pack(">I", 5), b"\x01\x02\x03", r"shape \(5,\)"),
    ],
)
def test_a_malformed_idx_file_is_reported_by_name(data, tmp_path, header, values, complaint):
    path = tmp_path / "broken-idx1-ubyte.gz"
    write_idx(path, header, values)
    with pytest.raises(data.IdxFormatError, match=complaint) as error:
        data.read_idx(path)
    assert str(path) in str(error.value)


def test_read_idx_gives_the_header_shape(data, tmp_path):
    path = tmp_path / "small-idx3-ubyte.gz"
    write_idx(path, b"\x00\x00\x08\x03" + struct.pack(">III", 2, 3, 4), bytes(range(24)))
    np.testing.assert_array_equal(data.read_idx(path), np.arange(24, dtype=np.uint8).reshape(2, 3, 4))


# Where the files are looked for


def test_environment_variable_names_the_folder(data, monkeypatch):
    monkeypatch.setenv("MINIFLOW_DATA", str(MNIST))
    assert data.load_mnist(download=False).test[1][0] == 7


def test_argument_beats_environment_variable(data, monkeypatch, tmp_path):
    monkeypatch.setenv("MINIFLOW_DATA", str(tmp_path / "empty"))
    assert data.load_mnist(MNIST, download=False).test[1][0] == 7
    with pytest.raises(data.MnistNotFound, match="empty"):
        data.load_mnist(download=False)


def test_default_folder_is_in_the_home_cache(data, monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert data.mnist_folder() == tmp_path / ".cache" / "miniflow" / "mnist"


def test_without_data_the_error_says_what_to_put_where(data, tmp_path):
    folder = tmp_path / "nothing here"
    with pytest.raises(data.MnistNotFound) as error:
        data.load_mnist(folder, download=False)
    assert isinstance(error.value, FileNotFoundError)
    message = str(error.value)
    for name, checksum in data.MNIST_FILES.items():
        assert name in message and checksum in message
    assert str(folder) in message
    assert "MINIFLOW_DATA" in message
    for mirror in data.DEFAULT_MIRRORS:
        assert mirror in message
    assert not folder.exists(), "download=False must not create the folder"


def test_test_split_alone_is_not_enough_without_its_labels(data, tmp_path):
    folder = tmp_path / "mnist"
    folder.mkdir()
    shutil.copyfile(MNIST / IMAGES, folder / IMAGES)
    with pytest.raises(data.MnistNotFound, match=LABELS):
        data.load_mnist(folder, download=False)


# Downloading, from loopback servers


def test_downloads_missing_files_into_an_empty_cache(data, serve, tmp_path, capsys):
    mirror = serve(copy_test_split(tmp_path / "served"))
    cache = tmp_path / "cache"
    mnist = data.load_mnist(cache, mirrors=[mirror], progress=False)
    assert mnist.train is None
    assert mnist.test[0].shape == (10000, 784)
    assert np.bincount(mnist.test[1]).tolist() == TEST_CLASS_COUNTS
    assert md5(cache / IMAGES) == data.MNIST_FILES[IMAGES]
    assert md5(cache / LABELS) == data.MNIST_FILES[LABELS]
    assert leftovers(cache) == []
    # The served folder has no train files: each 404 is reported.
    out = capsys.readouterr().out
    assert f"{mirror}train-images-idx3-ubyte.gz" in out and "404" in out


def test_present_files_are_not_downloaded_again(data, serve, tmp_path, capsys):
    cache = copy_test_split(tmp_path / "cache")
    empty = tmp_path / "served"
    empty.mkdir()
    mirror = serve(empty)
    data.load_mnist(cache, mirrors=[mirror], progress=False)
    out = capsys.readouterr().out
    assert "train-images" in out
    assert "t10k" not in out


def test_a_damaged_download_is_rejected_and_not_kept(data, serve, tmp_path):
    served = copy_test_split(tmp_path / "served")
    corrupt(served / LABELS)
    cache = tmp_path / "cache"
    with pytest.raises(data.MnistNotFound) as error:
        data.load_mnist(cache, mirrors=[serve(served)], progress=False)
    message = str(error.value)
    assert f"{LABELS}: " in message and md5(served / LABELS) in message
    assert not (cache / LABELS).exists()
    assert (cache / IMAGES).exists(), "the good file is kept"
    assert leftovers(cache) == []


def test_a_mirror_that_lacks_a_file_is_followed_by_the_next(data, serve, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    missing, good = serve(empty), serve(copy_test_split(tmp_path / "served"))
    mnist = data.load_mnist(tmp_path / "cache", mirrors=[missing, good], progress=False)
    assert mnist.test[1][0] == 7
    out = capsys.readouterr().out
    assert f"{missing}{IMAGES}: HTTP Error 404" in out


def test_a_damaged_copy_on_one_mirror_is_replaced_from_the_next(data, serve, tmp_path, capsys):
    damaged = copy_test_split(tmp_path / "damaged")
    corrupt(damaged / IMAGES)
    bad, good = serve(damaged), serve(copy_test_split(tmp_path / "good"))
    cache = tmp_path / "cache"
    mnist = data.load_mnist(cache, mirrors=[bad, good], progress=False)
    assert mnist.test[0].shape == (10000, 784)
    assert md5(cache / IMAGES) == data.MNIST_FILES[IMAGES]
    assert f"{bad}{IMAGES} sent a damaged file" in capsys.readouterr().out


def test_an_unreachable_mirror_is_tried_once(data, serve, tmp_path, capsys):
    unreachable, good = closed_port_url(), serve(copy_test_split(tmp_path / "served"))
    mnist = data.load_mnist(tmp_path / "cache", mirrors=[unreachable, good], progress=False)
    assert mnist.test[1][0] == 7
    assert capsys.readouterr().out.count(unreachable) == 1


def test_download_shows_a_progress_bar(data, serve, tmp_path, capsys):
    mirror = serve(copy_test_split(tmp_path / "served"))
    data.load_mnist(tmp_path / "cache", mirrors=[mirror], progress=True)
    assert f"{IMAGES}: 100%" in capsys.readouterr().err


def test_without_tqdm_progress_is_a_text_line(data, serve, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)  # makes `import tqdm.auto` fail
    mirror = serve(copy_test_split(tmp_path / "served"))
    data.load_mnist(tmp_path / "cache", mirrors=[mirror], progress=True)
    assert f"{IMAGES}: 100%" in capsys.readouterr().out


# The notebook's splits


def test_splits_from_the_test_split_alone(data):
    splits = data.course_splits(cache_dir=MNIST, download=False)
    assert splits.source == "MNIST test split"
    assert splits.image_shape == (28, 28)
    assert [len(part) for part in splits[:6]] == [7000, 7000, 1000, 1000, 2000, 2000]
    assert splits.X_train.shape[1] == 784 and splits.X_train.dtype == np.float32
    labels = np.concatenate([splits.y_train, splits.y_val, splits.y_test])
    assert np.bincount(labels).tolist() == TEST_CLASS_COUNTS
    for words in ("10,000-image test split", "seed 0", "7,000 training", "1,000 validation", "2,000 test"):
        assert words in splits.notice
    assert "train-images-idx3-ubyte.gz" in splits.notice


def test_splits_from_the_test_split_are_seeded(data):
    first = data.course_splits(seed=3, cache_dir=MNIST, download=False)
    again = data.course_splits(seed=3, cache_dir=MNIST, download=False)
    other = data.course_splits(seed=4, cache_dir=MNIST, download=False)
    for a, b in zip(first[:6], again[:6], strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first.y_train, other.y_train)
    assert "seed 3" in first.notice


def test_splits_from_full_mnist_keep_the_official_test_set(data, tmp_path):
    # A stand-in for full MNIST: the real test split also serves as the training split,
    # checked against its own md5s.
    folder = copy_test_split(tmp_path / "mnist")
    shutil.copyfile(MNIST / IMAGES, folder / "train-images-idx3-ubyte.gz")
    shutil.copyfile(MNIST / LABELS, folder / "train-labels-idx1-ubyte.gz")
    checksums = {
        "train-images-idx3-ubyte.gz": data.MNIST_FILES[IMAGES],
        "train-labels-idx1-ubyte.gz": data.MNIST_FILES[LABELS],
        IMAGES: data.MNIST_FILES[IMAGES],
        LABELS: data.MNIST_FILES[LABELS],
    }
    splits = data.course_splits(cache_dir=folder, download=False, validation=1000, checksums=checksums)
    assert splits.source == "MNIST" and splits.notice is None
    assert splits.image_shape == (28, 28)
    train_images, train_labels = data.load_mnist(folder, download=False, checksums=checksums).train
    # Validation is the last 1,000 training images, in order; the test set is the official one.
    np.testing.assert_array_equal(splits.X_train, train_images[:9000])
    np.testing.assert_array_equal(splits.X_val, train_images[9000:])
    np.testing.assert_array_equal(splits.y_val, train_labels[9000:])
    assert len(splits.X_test) == 10000 and splits.y_test[0] == 7
    with pytest.raises(ValueError, match="validation=10000"):
        data.course_splits(cache_dir=folder, download=False, validation=10000, checksums=checksums)


def test_without_mnist_the_splits_are_sklearn_digits_with_a_notice(data, tmp_path):
    folder = tmp_path / "no mnist"
    splits = data.course_splits(seed=1, cache_dir=folder, download=False)
    assert splits.source == "scikit-learn digits 8x8"
    assert splits.image_shape == (8, 8)
    assert sum(len(part) for part in splits[:6:2]) == 1797
    for part in splits[:6:2]:
        assert part.dtype == np.float32 and part.shape[1] == 64
        assert part.min() >= 0 and part.max() <= 1
    assert splits.X_train.max() == 1
    assert "8x8 digits" in splits.notice and "seed 1" in splits.notice
    # ...and it says how to get MNIST.
    assert str(folder) in splits.notice and "MINIFLOW_DATA" in splits.notice
    assert "t10k-images-idx3-ubyte.gz" in splits.notice


def test_seeded_split_is_a_70_10_20_partition(data):
    X = np.arange(1000).reshape(-1, 1) * 10
    y = np.arange(1000)
    X_train, y_train, X_val, y_val, X_test, y_test = data.split_train_val_test(X, y, seed=5)
    assert (len(y_train), len(y_val), len(y_test)) == (700, 100, 200)
    np.testing.assert_array_equal(np.sort(np.concatenate([y_train, y_val, y_test])), y)
    for X_part, y_part in [(X_train, y_train), (X_val, y_val), (X_test, y_test)]:
        np.testing.assert_array_equal(X_part[:, 0], y_part * 10)
    assert not np.array_equal(y_train, np.sort(y_train)), "the split must shuffle"
    again = data.split_train_val_test(X, y, seed=5)
    np.testing.assert_array_equal(again[1], y_train)
    assert not np.array_equal(data.split_train_val_test(X, y, seed=6)[1], y_train)


# Mini-batches


def test_batches_cover_one_epoch_shuffled_with_pairs_kept(data):
    X = np.arange(10).reshape(-1, 1) * 10
    y = np.arange(10)
    epoch = list(data.batches(X, y, 4, np.random.default_rng(0)))
    assert [len(y_batch) for _, y_batch in epoch] == [4, 4, 2]
    for X_batch, y_batch in epoch:
        np.testing.assert_array_equal(X_batch[:, 0], y_batch * 10)
    seen = np.concatenate([y_batch for _, y_batch in epoch])
    np.testing.assert_array_equal(np.sort(seen), y)
    assert not np.array_equal(seen, y)
    repeat = np.concatenate([y_batch for _, y_batch in data.batches(X, y, 4, np.random.default_rng(0))])
    np.testing.assert_array_equal(repeat, seen)


def test_batches_reject_mismatched_inputs(data):
    with pytest.raises(ValueError, match="10 samples but y holds 9"):
        next(data.batches(np.zeros((10, 2)), np.zeros(9), 4, np.random.default_rng(0)))
    with pytest.raises(ValueError, match="batch_size"):
        next(data.batches(np.zeros((10, 2)), np.zeros(10), 0, np.random.default_rng(0)))
