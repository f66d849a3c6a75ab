"""Load MNIST (or a small stand-in) for the course notebooks.

This module is given to you; you do not need to change it. In short:

    from miniflow.data import course_splits, batches

    data = course_splits(seed=0)
    print(data.source, data.X_train.shape)
    if data.notice:
        print(data.notice)

MNIST comes as four gzip-compressed files in the IDX format (below). `load_mnist`
reads them from a folder, the *cache directory*:

1. the `cache_dir` argument, if you pass one;
2. else the folder named by the environment variable MINIFLOW_DATA, if it is set;
3. else ~/.cache/miniflow/mnist.

Files that are missing are downloaded there when there is a network. Every file is
checked against its md5 checksum before it is read, so a truncated or altered file
is reported instead of giving strange digits.
"""

import gzip
import hashlib
import http.client
import os
import struct
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import NamedTuple

import numpy as np

ENV_VAR = "MINIFLOW_DATA"

# The four MNIST files and the md5 checksum of each, as published with the dataset.
MNIST_FILES = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
TRAIN_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")
TEST_FILES = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")

# Public copies of MNIST, tried in this order.
DEFAULT_MIRRORS = [
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
]

# Seconds to wait for a server before giving up, so that a machine without a
# network fails quickly instead of hanging.
DOWNLOAD_TIMEOUT = 5

IMAGE_SHAPE = (28, 28)


class MnistNotFound(FileNotFoundError):  # noqa: N818 (a "not found" error, like FileNotFoundError)
    """The MNIST files are not in the cache directory and could not be downloaded."""


class MnistChecksumError(ValueError):
    """A file's md5 checksum is not the published one: the file is damaged or not MNIST."""


class IdxFormatError(ValueError):
    """A file is not a valid IDX file."""


class MNIST(NamedTuple):
    """MNIST as loaded by `load_mnist`.

    Each split is a pair `(images, labels)`: images float32 of shape (N, 784),
    scaled to [0, 1]; labels int64 of shape (N,), digits 0 to 9.
    `train` is None when only the test split is available.
    """

    train: tuple | None
    test: tuple


class Splits(NamedTuple):
    """Training, validation and test data for a notebook, and where they came from.

    X_* are float32 arrays of shape (N, pixels) in [0, 1]; y_* are int64 class labels (N,).
    `image_shape` is the shape of one image, (28, 28) or (8, 8), for plotting.
    `source` names the data set; `notice` explains any substitution (None for full MNIST).
    """

    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    image_shape: tuple
    source: str
    notice: str | None


def mnist_folder(cache_dir=None):
    """The cache directory: `cache_dir` if given, else $MINIFLOW_DATA, else ~/.cache/miniflow/mnist."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    return Path.home() / ".cache" / "miniflow" / "mnist"


def md5_of(path):
    """The md5 checksum of a file, as 32 hexadecimal digits."""
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


def check_md5(path, expected):
    """Raise MnistChecksumError unless the file's md5 is `expected`."""
    actual = md5_of(path)
    if actual != expected:
        raise MnistChecksumError(
            f"{path} is damaged or is not the MNIST file of that name: its md5 is {actual}, "
            f"expected {expected}. Delete it and load again to download a fresh copy."
        )


def read_idx(path):
    """Read a gzip-compressed IDX file into a uint8 array of the shape its header gives.

    IDX layout: two zero bytes, a type code (0x08 means unsigned bytes), the number of
    dimensions d, then d sizes as 4-byte big-endian integers, then the values.
    """
    try:
        with gzip.open(path, "rb") as file:
            content = file.read()
    except (OSError, EOFError) as error:
        raise IdxFormatError(f"{path}: cannot decompress it ({error})") from None
    if len(content) < 4 or content[:2] != b"\x00\x00":
        raise IdxFormatError(f"{path}: not an IDX file (it does not start with the IDX magic number)")
    type_code, ndim = content[2], content[3]
    if type_code != 0x08:
        raise IdxFormatError(f"{path}: holds values of IDX type 0x{type_code:02x}, expected 0x08 (bytes)")
    header_size = 4 + 4 * ndim
    if len(content) < header_size:
        raise IdxFormatError(f"{path}: the header is cut short")
    shape = struct.unpack(f">{ndim}I", content[4:header_size])
    if len(content) - header_size != np.prod(shape):
        raise IdxFormatError(
            f"{path}: the header announces shape {shape}, "
            f"but the file holds {len(content) - header_size} values"
        )
    return np.frombuffer(content, dtype=np.uint8, offset=header_size).reshape(shape)


def read_split(folder, images_file, labels_file):
    """Read one split: images float32 (N, 784) in [0, 1], labels int64 (N,)."""
    images = read_idx(folder / images_file)
    labels = read_idx(folder / labels_file)
    if images.ndim != 3 or images.shape[1:] != IMAGE_SHAPE:
        raise IdxFormatError(f"{folder / images_file}: expected 28x28 images, found shape {images.shape}")
    if labels.ndim != 1 or np.any(labels > 9):
        raise IdxFormatError(f"{folder / labels_file}: expected one label from 0 to 9 per image")
    if len(images) != len(labels):
        raise IdxFormatError(
            f"{folder / images_file} holds {len(images)} images "
            f"but {folder / labels_file} holds {len(labels)} labels"
        )
    return images.reshape(len(images), -1).astype(np.float32) / np.float32(255), labels.astype(np.int64)


class TextProgress:
    """A one-line progress display, used when tqdm is not installed."""

    def __init__(self, total, description):
        self.total, self.description, self.done = total, description, 0

    def update(self, size):
        self.done += size
        if self.total:
            print(f"\r{self.description}: {self.done / self.total:.0%}", end="", flush=True)
        else:
            print(f"\r{self.description}: {self.done // 1024} KiB", end="", flush=True)

    def close(self):
        print()


def progress_bar(total, description):
    """A progress bar with update(size) and close(): tqdm's if installed, else a text line."""
    try:
        # tqdm.auto draws a widget in a notebook and text in a terminal.
        from tqdm.auto import tqdm
    except ImportError:
        return TextProgress(total, description)
    return tqdm(total=total, desc=description, unit="B", unit_scale=True, unit_divisor=1024)


def download_file(url, target, expected_md5, progress=True):
    """Download `url` to the file `target`, which appears only once its md5 is right.

    The data go to a temporary file beside `target` first, so an interrupted or damaged
    download never looks like a good file. Raises MnistChecksumError for a wrong md5,
    OSError (urllib's errors among them) when the download fails.
    """
    with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT) as response:
        handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
        try:
            with os.fdopen(handle, "wb") as file:
                size = int(response.headers.get("Content-Length") or 0) or None
                bar = progress_bar(size, target.name) if progress else None
                while chunk := response.read(64 * 1024):
                    file.write(chunk)
                    if bar:
                        bar.update(len(chunk))
                if bar:
                    bar.close()
            actual = md5_of(temporary)
            if actual != expected_md5:
                raise MnistChecksumError(f"{url} sent a damaged file: md5 {actual}, expected {expected_md5}")
            os.replace(temporary, target)
        finally:
            Path(temporary).unlink(missing_ok=True)


def download_missing(folder, checksums, mirrors, progress=True):
    """Download each file of `checksums` that is not in `folder`, trying `mirrors` in order.

    Returns a list of messages, one per failed attempt (empty when all went well).
    A mirror that cannot be reached at all is not tried again for the other files.
    """
    missing = [name for name in checksums if not (folder / name).exists()]
    if not missing:
        return []
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        return [f"cannot create {folder}: {error}"]
    problems, unreachable = [], set()
    for name in missing:
        for mirror in mirrors:
            if mirror in unreachable:
                continue
            url = mirror.rstrip("/") + "/" + name
            try:
                download_file(url, folder / name, checksums[name], progress)
                break
            except (urllib.error.HTTPError, MnistChecksumError) as error:
                # The server answered, just not with this file: try the next mirror.
                problems.append(f"{url}: {error}")
            except (OSError, http.client.HTTPException) as error:
                problems.append(f"{url}: {error} (this mirror is not tried for the other files)")
                unreachable.add(mirror)
    return problems


def not_found_message(folder, checksums, mirrors, problems):
    """Explain which files to put where, and where to get them."""
    lines = [f"MNIST was not found in {folder}.", "Put these files in that folder:"]
    lines += [f"    {name}  (md5 {md5})" for name, md5 in checksums.items()]
    lines += [
        "The two t10k files (the 10,000-image test split) are enough to start;",
        "the two train files add the 60,000 training images. Download them from one of:",
    ]
    lines += [f"    {mirror}" for mirror in mirrors or DEFAULT_MIRRORS]
    lines.append(f"Or point the environment variable {ENV_VAR} or cache_dir=... at a folder holding them.")
    if problems:
        lines.append("Downloading failed:")
        lines += [f"    {problem}" for problem in problems]
    return "\n".join(lines)


def load_mnist(cache_dir=None, download=True, mirrors=None, progress=True, *, checksums=None):
    """Load MNIST from the cache directory, downloading missing files if `download` is true.

    cache_dir: the folder holding the four .gz files; None means $MINIFLOW_DATA if set,
        else ~/.cache/miniflow/mnist.
    mirrors: base URLs to download from, tried in order; None means DEFAULT_MIRRORS.
    progress: show a progress bar while downloading.
    checksums: {file name: md5} to check against instead of MNIST_FILES (for tests of
        your own files).

    Returns MNIST(train, test), each split a pair (images float32 (N, 784) in [0, 1],
    labels int64 (N,)); train is None when only the two t10k files are available.
    Raises MnistNotFound when the test split is missing, and MnistChecksumError when a
    file in the folder is damaged.
    """
    folder = mnist_folder(cache_dir)
    checksums = MNIST_FILES if checksums is None else checksums
    mirrors = DEFAULT_MIRRORS if mirrors is None else mirrors
    problems = download_missing(folder, checksums, mirrors, progress) if download else []
    present = [name for name in checksums if (folder / name).is_file()]
    if not all(name in present for name in TEST_FILES):
        raise MnistNotFound(not_found_message(folder, checksums, mirrors, problems))
    for problem in problems:
        print(f"Could not download {problem}")
    for name in present:
        check_md5(folder / name, checksums[name])
    test = read_split(folder, *TEST_FILES)
    train = read_split(folder, *TRAIN_FILES) if all(name in present for name in TRAIN_FILES) else None
    return MNIST(train, test)


def split_train_val_test(X, y, seed, fractions=(0.7, 0.1, 0.2)):
    """Shuffle X and y with `seed` and cut them into train, validation and test parts.

    Returns X_train, y_train, X_val, y_val, X_test, y_test. The same seed gives the same split.
    """
    order = np.random.default_rng(seed).permutation(len(X))
    n_train = round(fractions[0] * len(X))
    n_val = round(fractions[1] * len(X))
    train, val, test = np.split(order, [n_train, n_train + n_val])
    return X[train], y[train], X[val], y[val], X[test], y[test]


def load_digits_scaled():
    """scikit-learn's bundled 8x8 digits: images float32 (1797, 64) in [0, 1], labels int64."""
    # Imported here, so that scikit-learn is needed only when MNIST is missing.
    from sklearn.datasets import load_digits

    digits = load_digits()
    return (digits.data / 16).astype(np.float32), digits.target.astype(np.int64)


def course_splits(seed=0, cache_dir=None, download=True, validation=5000, progress=True, *, checksums=None):
    """The data for the MNIST notebook: the best of full MNIST, its test split, or 8x8 digits.

    - Full MNIST: the last `validation` training images become the validation set;
      the official 10,000 test images are the test set.
    - Only the test split: its 10,000 images are shuffled with `seed` and split
      70/10/20 into 7,000 training, 1,000 validation and 2,000 test images.
    - No MNIST: scikit-learn's 1,797 8x8 digits, split 70/10/20 the same way.

    The other arguments are load_mnist's. Returns a Splits; its `notice` says what was
    substituted and how to get full MNIST.
    """
    folder = mnist_folder(cache_dir)
    try:
        mnist = load_mnist(folder, download=download, progress=progress, checksums=checksums)
    except MnistNotFound as missing:
        try:
            X, y = load_digits_scaled()
        except ImportError:
            raise MnistNotFound(f"{missing}\nscikit-learn, the fallback, is not installed either.") from None
        notice = (
            f"Using scikit-learn's {len(X):,} bundled 8x8 digits instead of MNIST, shuffled (seed {seed}) "
            "and split 70/10/20 into training, validation and test sets; expect different accuracies "
            f"than with MNIST. To use MNIST:\n\n{missing}"
        )
        return Splits(*split_train_val_test(X, y, seed), (8, 8), "scikit-learn digits 8x8", notice)

    if mnist.train is None:
        X, y = mnist.test
        X_train, y_train, X_val, y_val, X_test, y_test = split_train_val_test(X, y, seed)
        notice = (
            f"Only MNIST's {len(X):,}-image test split was found (in {folder}), so its images were "
            f"shuffled (seed {seed}) and split into {len(X_train):,} training, {len(X_val):,} validation "
            f"and {len(X_test):,} test images. For the 60,000 training images, put "
            f"{' and '.join(TRAIN_FILES)} in that folder, or load with a network."
        )
        return Splits(X_train, y_train, X_val, y_val, X_test, y_test, IMAGE_SHAPE, "MNIST test split", notice)

    X, y = mnist.train
    if not 0 < validation < len(X):
        raise ValueError(f"validation={validation}: choose between 1 and {len(X) - 1} images")
    cut = len(X) - validation
    return Splits(X[:cut], y[:cut], X[cut:], y[cut:], *mnist.test, IMAGE_SHAPE, "MNIST", None)


def batches(X, y, batch_size, rng):
    """Yield (X_batch, y_batch) pairs that cover X and y once, in a random order.

    X: (N, ...) array; y: (N,) array; rng: a numpy Generator, e.g. np.random.default_rng(0).
    Each batch holds `batch_size` samples, the last one fewer if batch_size does not divide N.
    """
    if len(X) != len(y):
        raise ValueError(f"X holds {len(X)} samples but y holds {len(y)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")
    order = rng.permutation(len(X))
    for start in range(0, len(X), batch_size):
        chosen = order[start : start + batch_size]
        yield X[chosen], y[chosen]
