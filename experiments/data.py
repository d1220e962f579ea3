"""Datasets that work with no network: generated sets, sklearn's digits, and local copies of MNIST/IMDB.

Every random choice here derives from the [data] seed alone (split, generated samples, epoch order, probe set), via
numpy RandomStates keyed by (purpose, seed, ...), so the data side of a run is independent of the training seed.

Dense data (vector/image/sequence) lives as NDArrays on the training context; an epoch is one `take` with a
permutation and then contiguous slices (several times faster than gluon's DataLoader on small data). Token data is
bucketed by length with gluonnlp's FixedBucketSampler and padded per batch with the vocabulary's `<pad>` index.
"""
from __future__ import annotations

import functools
import gzip
import math
import os
import re
import struct
import warnings
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Callable

import numpy as np

from nets import DataInfo, ParamError, check_int, check_number

# Purposes of the random streams derived from the data seed (keeps them independent of each other).
_SPLIT, _EPOCH, _PROBE, _GENERATE, _SUBSET = range(5)

COMMON_DEFAULTS = {"val_fraction": 0.2, "seed": 0}


class DataError(Exception):
    """A problem the user must fix (missing or unreadable local files, unusable sizes); `key` names the [data] key
    to change, when there is one (e.g. "root")."""

    def __init__(self, message: str, key: str | None = None):
        self.key, self.message = key, message
        super().__init__(message)


@dataclass(frozen=True)
class DataShape:
    """What validating an experiment needs to know about a dataset, found without loading it."""
    info: DataInfo  # vocab_size is None for token sets: the vocabulary exists only once the data is read
    n_samples: int  # before the train/validation split

    def split_sizes(self, val_fraction: float) -> tuple[int, int]:
        """(training, validation) sample counts, as `split_indices` makes them."""
        n_val = int(round(self.n_samples * float(val_fraction)))
        return self.n_samples - n_val, n_val


def _rng(purpose: int, seed: int, *more: int) -> np.random.RandomState:
    return np.random.RandomState([purpose, int(seed) % 2**32, *more])


def _ctx_key(ctx):
    return (ctx.device_type, ctx.device_id)


def split_indices(n: int, val_fraction: float, seed: int):
    """Sorted (train, val) index arrays: a random, seed-determined split of range(n)."""
    val_fraction = float(val_fraction)
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction = {val_fraction} must be in [0, 1)")
    n_val = int(round(n * val_fraction))
    if n - n_val < 1:
        raise DataError(f"val_fraction = {val_fraction} leaves no training samples out of {n}")
    perm = _rng(_SPLIT, seed).permutation(n)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


class Dataset:
    """Common interface; see DenseDataset and TokenDataset."""
    info: DataInfo
    n_train: int
    n_val: int
    static_shape: bool

    def __init__(self, info: DataInfo, seed: int):
        self.info = info
        self.seed = int(seed)

    def steps_per_epoch(self, batch_size: int) -> int:
        raise NotImplementedError

    def _check_steps(self, batch_size: int, steps: int) -> int:
        if batch_size < 1:
            raise ValueError(f"batch_size = {batch_size} must be >= 1")
        if steps < 1:
            raise DataError(f"batch_size = {batch_size} is larger than the {self.n_train} training samples "
                            f"(or than every length bucket): no full training batch")
        return steps


class DenseDataset(Dataset):
    """Fixed-shape samples (vector, image, dense sequence) held as arrays."""
    static_shape = True

    def __init__(self, x: np.ndarray, y: np.ndarray, info: DataInfo, val_fraction: float, seed: int):
        super().__init__(info, seed)
        self.train_index, self.val_index = split_indices(len(x), val_fraction, seed)
        self._x = {"train": np.ascontiguousarray(x[self.train_index], dtype=np.float32),
                   "val": np.ascontiguousarray(x[self.val_index], dtype=np.float32)}
        self._y = {"train": y[self.train_index].astype(np.float32), "val": y[self.val_index].astype(np.float32)}
        self.n_train, self.n_val = len(self.train_index), len(self.val_index)
        self._on_ctx = {}  # (device, part) -> (x, y) NDArrays
        self._lengths = {}  # (device, n) -> full valid_length NDArray for dense sequences

    def _arrays(self, part, ctx):
        from mxnet import nd
        key = (_ctx_key(ctx), part)
        if key not in self._on_ctx:
            self._on_ctx[key] = (nd.array(self._x[part], ctx=ctx), nd.array(self._y[part], ctx=ctx))
        return self._on_ctx[key]

    def _valid_length(self, n, ctx):
        """Dense sequences are never padded: every valid_length is the full length. None for other kinds."""
        if self.info.kind != "sequence":
            return None
        from mxnet import nd
        key = (_ctx_key(ctx), n)
        if key not in self._lengths:
            self._lengths[key] = nd.full((n,), self.info.input_shape[0], ctx=ctx, dtype="int32")
        return self._lengths[key]

    def steps_per_epoch(self, batch_size):
        return self._check_steps(batch_size, self.n_train // batch_size)

    def epoch_order(self, epoch, shuffle_seed=None):
        """The permutation of training samples used in `epoch`."""
        seed = self.seed if shuffle_seed is None else shuffle_seed
        return _rng(_EPOCH, seed, epoch).permutation(self.n_train)

    def train_batches(self, epoch, batch_size, ctx, start=0, shuffle_seed=None):
        from mxnet import nd
        steps = self.steps_per_epoch(batch_size)
        if start >= steps:
            return
        order = self.epoch_order(epoch, shuffle_seed)[start * batch_size: steps * batch_size]
        x_all, y_all = self._arrays("train", ctx)
        index = nd.array(order, ctx=ctx, dtype="int32")
        x, y = nd.take(x_all, index), nd.take(y_all, index)  # one gather per epoch, then cheap slices
        valid_length = self._valid_length(batch_size, ctx)
        for i in range(steps - start):
            lo, hi = i * batch_size, (i + 1) * batch_size
            yield x[lo:hi], y[lo:hi], valid_length

    def val_batches(self, batch_size, ctx):
        x, y = self._arrays("val", ctx)
        for lo in range(0, self.n_val, batch_size):
            hi = min(lo + batch_size, self.n_val)
            yield x[lo:hi], y[lo:hi], self._valid_length(hi - lo, ctx)

    def probe_batch(self, size, ctx):
        from mxnet import nd
        key = (_ctx_key(ctx), "probe", size)
        if key not in self._on_ctx:
            chosen = _rng(_PROBE, self.seed).permutation(self.n_train)[:size]
            self._on_ctx[key] = nd.array(self._x["train"][chosen], ctx=ctx)
        data = self._on_ctx[key]
        return data, self._valid_length(data.shape[0], ctx)


class TokenDataset(Dataset):
    """Variable-length token sequences: bucketed by length, padded per batch with the vocabulary's <pad> index.

    The vocabulary is built from the training split only.
    """
    static_shape = False
    max_buckets = 10

    def __init__(self, token_lists, labels, num_classes, max_len, val_fraction, seed, max_vocab=None):
        import gluonnlp as nlp

        train_index, val_index = split_indices(len(token_lists), val_fraction, seed)
        self.train_index, self.val_index = train_index, val_index
        counter = nlp.data.count_tokens(chain.from_iterable(token_lists[i] for i in train_index))
        self.vocab = nlp.Vocab(counter, max_size=max_vocab)
        pad_index = self.vocab[self.vocab.padding_token]
        super().__init__(DataInfo(kind="tokens", input_shape=(int(max_len),), num_classes=num_classes,
                                  vocab_size=len(self.vocab), padding_idx=pad_index), seed)
        labels = np.asarray(labels, dtype=np.float32)
        self._ids = {part: [np.asarray(self.vocab[list(token_lists[i][:max_len])], dtype=np.int32) for i in index]
                     for part, index in (("train", train_index), ("val", val_index))}
        self._y = {"train": labels[train_index], "val": labels[val_index]}
        self.n_train, self.n_val = len(train_index), len(val_index)
        self._train_lengths = np.array([len(ids) for ids in self._ids["train"]])
        # pad_val given explicitly: Pad() would pad with 0, which is <unk> in a gluonnlp Vocab.
        self._pad = nlp.data.batchify.Pad(axis=0, pad_val=pad_index, ret_length=True, dtype="int32")
        self._steps = {}

    def _num_buckets(self, batch_size):
        # Enough samples per bucket that dropping each bucket's partial batch loses little data.
        return max(1, min(self.max_buckets, self.n_train // (4 * batch_size)))

    def _bucket_batches(self, lengths, batch_size):
        import gluonnlp as nlp
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Some buckets are empty and will be removed" is expected
            sampler = nlp.data.FixedBucketSampler(lengths.tolist(), batch_size,
                                                  num_buckets=self._num_buckets(batch_size), shuffle=False)
        return [batch for batch in sampler if len(batch) == batch_size]  # drop each bucket's partial batch

    def steps_per_epoch(self, batch_size):
        if batch_size not in self._steps:  # depends only on the multiset of lengths, not on the shuffle
            self._steps[batch_size] = len(self._bucket_batches(self._train_lengths, max(1, batch_size)))
        return self._check_steps(batch_size, self._steps[batch_size])

    def epoch_batches(self, epoch, batch_size, shuffle_seed=None):
        """Training sample indices of each batch of `epoch`, in order.

        The sampler runs unshuffled over a seed-permuted sample order (so bucket contents change every epoch),
        then the batch order is permuted: deterministic without touching numpy's global RNG.
        """
        rng = _rng(_EPOCH, self.seed if shuffle_seed is None else shuffle_seed, epoch)
        perm = rng.permutation(self.n_train)
        batches = [perm[np.asarray(batch)] for batch in
                   self._bucket_batches(self._train_lengths[perm], batch_size)]
        return [batches[i] for i in rng.permutation(len(batches))]

    def _make_batch(self, part, index, ctx):
        from mxnet import nd
        data, valid_length = self._pad([self._ids[part][i] for i in index])
        label = nd.array(self._y[part][index], ctx=ctx)
        return data.as_in_context(ctx), label, valid_length.as_in_context(ctx)  # Pad gives cpu_shared(0)

    def train_batches(self, epoch, batch_size, ctx, start=0, shuffle_seed=None):
        self.steps_per_epoch(batch_size)
        for index in self.epoch_batches(epoch, batch_size, shuffle_seed)[start:]:
            yield self._make_batch("train", index, ctx)

    def val_batches(self, batch_size, ctx):
        for lo in range(0, self.n_val, batch_size):
            yield self._make_batch("val", np.arange(lo, min(lo + batch_size, self.n_val)), ctx)

    def probe_batch(self, size, ctx):
        chosen = _rng(_PROBE, self.seed).permutation(self.n_train)[:size]
        data, _, valid_length = self._make_batch("train", chosen, ctx)
        return data, valid_length


# ----------------------------------------------------------------------------------------------- dataset loaders
# Each dataset has `describe(params) -> DataShape`: its own checks (parameter ranges, local files and their headers)
# and its shape and size, computed without loading it, so an experiment is validated in milliseconds; and
# `load(params) -> Dataset`. `load_dataset` describes first, so a dataset is never loaded from unchecked parameters.
DIGITS_SAMPLES = 1797  # sklearn's load_digits


def _describe_digits(params):
    if params["as_images"]:
        return DataShape(DataInfo("image", (1, 8, 8), 10), DIGITS_SAMPLES)
    return DataShape(DataInfo("vector", (64,), 10), DIGITS_SAMPLES)


@functools.lru_cache(maxsize=1)
def sklearn_digits() -> tuple[np.ndarray, np.ndarray]:
    """(pixels scaled to [0, 1] as float32, labels), read once per process: load_digits parses a CSV (8 ms, a tenth
    of a warm run's start-up), and the scheduler reads it before it forks its workers, which then share it."""
    from sklearn.datasets import load_digits
    digits = load_digits()
    x, y = (digits.data / 16.0).astype(np.float32), digits.target
    x.flags.writeable = y.flags.writeable = False
    return x, y


def _digits(params):
    x, y = sklearn_digits()
    if params["as_images"]:
        x = x.reshape(-1, 1, 8, 8)
    return DenseDataset(x, y, _describe_digits(params).info, params["val_fraction"], params["seed"])


def _describe_seq_digits(params):
    return DataShape(DataInfo("sequence", (8, 8), 10), DIGITS_SAMPLES)  # 8 steps (rows) of 8 pixels


def _seq_digits(params):
    x, y = sklearn_digits()
    return DenseDataset(x.reshape(-1, 8, 8), y, _describe_seq_digits(params).info, params["val_fraction"],
                        params["seed"])


def _class_sizes(n_samples, classes):
    return [n_samples // classes + (1 if k < n_samples % classes else 0) for k in range(classes)]


def _describe_playground(params):
    classes = check_int(params, "classes", low=2)
    n = check_int(params, "n_samples", low=2 * classes)  # at least 2 points per class
    check_number(params, "noise", low=0.0)
    return DataShape(DataInfo("vector", (2,), classes), n)


def _playground_params(params):
    return int(params["n_samples"]), int(params["classes"]), float(params["noise"]), _rng(_GENERATE, params["seed"])


def _spiral_points(params):
    n, classes, noise, rng = _playground_params(params)
    xs, ys = [], []
    for k, size in enumerate(_class_sizes(n, classes)):  # one arm per class (the CS231n spiral)
        radius = np.linspace(0.05, 1.0, size)
        angle = np.linspace(k * 2 * np.pi / classes, k * 2 * np.pi / classes + 4.0, size)
        angle = angle + rng.randn(size) * noise
        xs.append(np.c_[radius * np.sin(angle), radius * np.cos(angle)])
        ys.append(np.full(size, k))
    return np.concatenate(xs), np.concatenate(ys)


def _circles_points(params):
    n, classes, noise, rng = _playground_params(params)
    xs, ys = [], []
    for k, size in enumerate(_class_sizes(n, classes)):  # concentric rings, radius (k+1)/classes
        angle = rng.uniform(0, 2 * np.pi, size)
        ring = (k + 1) / classes * np.c_[np.cos(angle), np.sin(angle)]
        xs.append(ring + rng.randn(size, 2) * noise)
        ys.append(np.full(size, k))
    return np.concatenate(xs), np.concatenate(ys)


def _xor_points(params):
    # classes x classes grid over [-1, 1]^2, cell (i, j) labelled (i + j) % classes: 2 classes is XOR.
    n, classes, noise, rng = _playground_params(params)
    points = rng.uniform(-1, 1, (n, 2))
    cells = np.minimum(((points + 1) / 2 * classes).astype(int), classes - 1)
    labels = (cells[:, 0] + cells[:, 1]) % classes
    return points + rng.randn(n, 2) * noise, labels


def _gaussians_points(params):
    n, classes, noise, rng = _playground_params(params)
    xs, ys = [], []
    for k, size in enumerate(_class_sizes(n, classes)):  # blobs with centres on a circle of radius 2
        centre = 2.0 * np.array([np.cos(2 * np.pi * k / classes), np.sin(2 * np.pi * k / classes)])
        xs.append(centre + rng.randn(size, 2) * noise)
        ys.append(np.full(size, k))
    return np.concatenate(xs), np.concatenate(ys)


def _playground(make_points):
    def load(params):
        x, y = make_points(params)
        x = (x - x.mean(axis=0)) / (x.std(axis=0) + 1e-8)  # standardised over the generated set
        return DenseDataset(x.astype(np.float32), y, DataInfo("vector", (2,), int(params["classes"])),
                            params["val_fraction"], params["seed"])
    return load


POSITIVE_WORDS = ("good", "great", "excellent", "superb", "wonderful", "brilliant", "lovely", "fine")
NEGATIVE_WORDS = ("bad", "awful", "terrible", "poor", "horrible", "dreadful", "boring", "worst")


def generate_token_task(n_samples, min_len, max_len, vocab_filler, seed):
    """Sentences of filler words with some positive and negative words; label 1 when positives outnumber negatives.

    Lengths are drawn independently of the label, so length alone says nothing about the class.
    """
    rng = _rng(_GENERATE, seed)
    fillers = np.array([f"w{i}" for i in range(vocab_filler)])
    sentences, labels = [], []
    for _ in range(n_samples):
        length = rng.randint(min_len, max_len + 1)
        label = rng.randint(2)
        majority = rng.randint(1, max(1, length // 4) + 1)
        minority = min(rng.randint(0, majority), length - majority)
        words = list(fillers[rng.randint(0, vocab_filler, length)])
        major, minor = (POSITIVE_WORDS, NEGATIVE_WORDS) if label == 1 else (NEGATIVE_WORDS, POSITIVE_WORDS)
        positions = rng.choice(length, majority + minority, replace=False)
        for j, position in enumerate(positions):
            pool = major if j < majority else minor
            words[position] = pool[rng.randint(len(pool))]
        sentences.append(words)
        labels.append(label)
    return sentences, labels


def _describe_tokens(params):
    n = check_int(params, "n_samples", low=2)
    max_len = check_int(params, "max_len", high=100_000)
    check_int(params, "min_len", high=max_len)
    check_int(params, "vocab_filler")
    return DataShape(DataInfo("tokens", (max_len,), 2), n)


def _tokens(params):
    n, min_len, max_len = int(params["n_samples"]), int(params["min_len"]), int(params["max_len"])
    sentences, labels = generate_token_task(n, min_len, max_len, int(params["vocab_filler"]), params["seed"])
    return TokenDataset(sentences, labels, 2, max_len, params["val_fraction"], params["seed"])


def mxnet_home() -> Path:
    return Path(os.environ.get("MXNET_HOME") or Path.home() / ".mxnet").expanduser()


MNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
               "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
_IDX_IMAGES, _IDX_LABELS = 2051, 2049


def _damaged(path: Path, problem: str) -> DataError:
    return DataError(f"{path}: {problem} (a damaged download? replace the file)", key="root")


def read_idx_header(path: Path, expected_magic: int) -> tuple:
    """The sizes an MNIST idx .gz file declares ((n, rows, cols) or (n,)), checked without decompressing it all:
    the magic number, sizes > 0, and gzip's stored length against the length the header promises."""
    dims = 3 if expected_magic == _IDX_IMAGES else 1
    header_size = 4 * (1 + dims)
    try:
        if path.stat().st_size == 0:
            raise _damaged(path, "empty file")
        with gzip.open(path, "rb") as f:
            header = f.read(header_size)
        if len(header) < header_size:
            raise _damaged(path, f"{len(header)} bytes, too short for an idx header")
        magic, *shape = struct.unpack(f">{1 + dims}i", header)
        what = "images" if dims == 3 else "labels"
        if magic != expected_magic:
            raise _damaged(path, f"magic number {magic}, expected {expected_magic} (not an MNIST idx {what} file)")
        if any(d <= 0 for d in shape):
            raise _damaged(path, f"header declares sizes {shape}")
        promised = header_size + math.prod(shape)
        with open(path, "rb") as raw:  # gzip's trailer: uncompressed size mod 2**32 (of the last member)
            raw.seek(-4, os.SEEK_END)
            stored = struct.unpack("<I", raw.read(4))[0]
        if stored != promised % 2**32 and _gzip_length(path) != promised:  # multi-member files: count it all
            raise _damaged(path, f"holds {_gzip_length(path)} bytes, its header promises {promised} (truncated?)")
        return tuple(shape)
    except (OSError, EOFError, struct.error) as exc:
        raise _damaged(path, f"cannot read it: {exc}") from None


def _gzip_length(path: Path) -> int:
    total = 0
    with gzip.open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            total += len(chunk)
    return total


def read_idx_gz(path: Path, expected_magic: int) -> np.ndarray:
    """An MNIST idx file: big-endian int32 magic and sizes, then uint8 values."""
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
        dims = 3 if expected_magic == _IDX_IMAGES else 1
        header = np.frombuffer(raw, dtype=">i4", count=1 + dims)
        if header[0] != expected_magic:
            raise ValueError(f"magic number {header[0]}, expected {expected_magic}")
        shape = tuple(int(d) for d in header[1:])
        return np.frombuffer(raw, dtype=np.uint8, offset=4 * (1 + dims)).reshape(shape)
    except (OSError, EOFError, ValueError) as exc:
        raise DataError(f"cannot read {path}: {exc} (a damaged download? replace the file)", key="root") from exc


def _mnist_root(params, folder) -> Path:
    return Path(params["root"] or mxnet_home() / "datasets" / folder).expanduser()


def _describe_mnist_like(title, folder, url):
    def describe(params):
        root = _mnist_root(params, folder)
        # Checked before anything else: gluon's MNIST would try to download the files, with no timeout.
        missing = [name for name in MNIST_FILES if not (root / name).is_file()]
        if missing:
            raise DataError(f"{title} files missing in {root}: {', '.join(missing)}. This machine may be offline, "
                            f"so nothing is downloaded: copy the four files {', '.join(MNIST_FILES)} (from {url}) "
                            f"into that directory, or set [data] root to where they are.", key="root")
        n_images, rows, cols = read_idx_header(root / MNIST_FILES[0], _IDX_IMAGES)
        (n_labels,) = read_idx_header(root / MNIST_FILES[1], _IDX_LABELS)
        if n_images != n_labels:
            raise DataError(f"{root}: {n_images} training images but {n_labels} labels", key="root")
        limit = check_int(params, "limit", low=0)  # 0 = all
        n = min(n_images, limit) if limit else n_images
        if params["as_images"]:
            return DataShape(DataInfo("image", (1, rows, cols), 10), n)
        return DataShape(DataInfo("vector", (rows * cols,), 10), n)
    return describe


def _mnist_like(folder):
    def load(params):
        root = _mnist_root(params, folder)
        images = read_idx_gz(root / MNIST_FILES[0], _IDX_IMAGES)
        labels = read_idx_gz(root / MNIST_FILES[1], _IDX_LABELS)
        if len(images) != len(labels):
            raise DataError(f"{root}: {len(images)} training images but {len(labels)} labels", key="root")
        limit = int(params["limit"])
        if limit:
            images, labels = images[:limit], labels[:limit]
        x = images.astype(np.float32) / 255.0
        if params["as_images"]:
            x, info = x[:, None, :, :], DataInfo("image", (1,) + images.shape[1:], 10)
        else:
            x, info = x.reshape(len(x), -1), DataInfo("vector", (images.shape[1] * images.shape[2],), 10)
        return DenseDataset(x, labels, info, params["val_fraction"], params["seed"])
    return load


_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def tokenize_review(text: str) -> list:
    return _WORD.findall(text.lower().replace("<br />", " "))


def _imdb_root(params) -> Path:
    return Path(params["root"] or mxnet_home() / "datasets" / "imdb" / "aclImdb").expanduser()


def _imdb_files(root: Path) -> list:
    folders = [root / "train" / "pos", root / "train" / "neg"]
    missing = [str(folder.relative_to(root)) for folder in folders if not folder.is_dir()]
    if missing:
        raise DataError(f"IMDB reviews not found in {root}: missing subfolders {', '.join(missing)}. Expected the "
                        f"extracted aclImdb directory (train/pos/*.txt and train/neg/*.txt, from "
                        f"https://ai.stanford.edu/~amaas/data/sentiment/); set [data] root to it.", key="root")
    return [(path, 1) for path in sorted(folders[0].glob("*.txt"))] + \
           [(path, 0) for path in sorted(folders[1].glob("*.txt"))]


def _describe_imdb(params):
    root = _imdb_root(params)
    n_files = len(_imdb_files(root))
    limit = check_int(params, "limit", low=0)  # 0 = all
    max_len = check_int(params, "max_len", high=100_000)
    check_int(params, "max_vocab", low=0)  # 0 = no limit
    n = min(n_files, limit) if limit else n_files
    if n < 2:
        raise DataError(f"IMDB: {n_files} review files in {root}/train/{{pos,neg}}, need at least 2", key="root")
    return DataShape(DataInfo("tokens", (max_len,), 2), n)


def _imdb(params):
    root = _imdb_root(params)
    files = _imdb_files(root)
    limit = int(params["limit"])
    if limit and limit < len(files):  # a random subset: the first N files would all be positive
        chosen = np.sort(_rng(_SUBSET, params["seed"]).permutation(len(files))[:limit])
        files = [files[i] for i in chosen]
    max_len = int(params["max_len"])
    reviews, labels = [], []
    for path, label in files:
        tokens = tokenize_review(path.read_text(encoding="utf-8", errors="replace"))[:max_len]
        if tokens:  # an empty review has no last valid step
            reviews.append(tokens)
            labels.append(label)
    if len(reviews) < 2:
        raise DataError(f"IMDB: fewer than 2 non-empty reviews in {root}/train/{{pos,neg}}", key="root")
    max_vocab = int(params["max_vocab"])
    return TokenDataset(reviews, labels, 2, max_len, params["val_fraction"], params["seed"],
                        max_vocab=max_vocab if max_vocab > 0 else None)


# ------------------------------------------------------------------------------------------------------- registry

@dataclass
class DatasetSpec:
    name: str
    load: Callable      # (params: dict) -> Dataset
    describe: Callable  # (params: dict) -> DataShape, cheap; raises ParamError / DataError naming the key
    defaults: dict      # every accepted key except "name", with its default (val_fraction and seed included)
    doc: str


def _spec(name, load, describe, options, doc):
    return DatasetSpec(name, load, describe, {**COMMON_DEFAULTS, **options}, doc)


DATASETS = {spec.name: spec for spec in [
    _spec("digits", _digits, _describe_digits, {"as_images": False},
          "sklearn 8x8 digits (1797): vector (64,) or image (1,8,8)"),
    _spec("seq_digits", _seq_digits, _describe_seq_digits, {},
          "sklearn 8x8 digits read row by row: sequence of 8 steps x 8 pixels"),
    _spec("spiral", _playground(_spiral_points), _describe_playground,
          {"n_samples": 1000, "noise": 0.2, "classes": 3}, "2-D spiral arms, one per class"),
    _spec("circles", _playground(_circles_points), _describe_playground,
          {"n_samples": 1000, "noise": 0.1, "classes": 2}, "2-D concentric rings, one per class"),
    _spec("xor", _playground(_xor_points), _describe_playground,
          {"n_samples": 1000, "noise": 0.05, "classes": 2}, "2-D XOR (checkerboard of classes x classes cells)"),
    _spec("gaussians", _playground(_gaussians_points), _describe_playground,
          {"n_samples": 1000, "noise": 0.7, "classes": 3}, "2-D Gaussian blobs around a circle"),
    _spec("tokens", _tokens, _describe_tokens, {"n_samples": 2000, "min_len": 5, "max_len": 30, "vocab_filler": 200},
          "generated token sequences: are positive or negative words in the majority?"),
    _spec("mnist", _mnist_like("mnist"),
          _describe_mnist_like("MNIST", "mnist", "http://yann.lecun.com/exdb/mnist/"),
          {"root": str(mxnet_home() / "datasets" / "mnist"), "as_images": True, "limit": 0},
          "local MNIST idx .gz files: image (1,28,28) or vector (784,)"),
    _spec("fashion_mnist", _mnist_like("fashion-mnist"),
          _describe_mnist_like("Fashion-MNIST", "fashion-mnist", "https://github.com/zalandoresearch/fashion-mnist"),
          {"root": str(mxnet_home() / "datasets" / "fashion-mnist"), "as_images": True, "limit": 0},
          "local Fashion-MNIST idx .gz files: image (1,28,28) or vector (784,)"),
    _spec("imdb", _imdb, _describe_imdb,
          {"root": str(mxnet_home() / "datasets" / "imdb" / "aclImdb"), "max_len": 200, "max_vocab": 20000,
           "limit": 0},
          "local aclImdb movie reviews (train/pos, train/neg): tokens, truncated to max_len"),
]}


def get_dataset_spec(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise KeyError(f"unknown dataset {name!r}; available: {', '.join(sorted(DATASETS))}")
    return DATASETS[name]


def describe_dataset(params: dict) -> DataShape:
    """Check a [data] section and say what the dataset is (kind, shape, classes, size) without loading it.
    Raises ParamError or DataError naming the key (KeyError for an unknown dataset name)."""
    spec = get_dataset_spec(params.get("name"))
    options = {key: value for key, value in params.items() if key != "name"}
    unknown = sorted(set(options) - set(spec.defaults))
    if unknown:
        raise ParamError(unknown[0], f"unknown key for dataset {spec.name!r} "
                                     f"(accepted: {', '.join(sorted(spec.defaults))})")
    full = {**spec.defaults, **options, "name": spec.name}
    if not 0.0 < float(full["val_fraction"]) < 1.0:
        raise ParamError("val_fraction", f"expected a number in (0, 1), got {full['val_fraction']!r}")
    check_int(full, "seed", low=0, high=2**32 - 1)
    shape = spec.describe(full)
    n_train, n_val = shape.split_sizes(full["val_fraction"])
    if n_train < 1 or n_val < 1:
        raise ParamError("val_fraction", f"{full['val_fraction']} of {shape.n_samples} samples leaves {n_train} "
                                         f"for training and {n_val} for validation; both need at least 1")
    return shape


def load_dataset(params: dict) -> Dataset:
    """Load the dataset described by a [data] section: {"name": ..., "val_fraction": ..., "seed": ..., options}.
    The dataset's own checks run first (`describe_dataset`)."""
    describe_dataset(params)
    spec = get_dataset_spec(params.get("name"))
    return spec.load({**spec.defaults, **{k: v for k, v in params.items() if k != "name"}, "name": spec.name})
