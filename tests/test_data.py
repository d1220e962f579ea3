"""experiments/data.py: splits, deterministic batching, token padding/bucketing, local MNIST and IMDB readers."""
import gzip
import struct
import time

import mxnet as mx
import numpy as np
import pytest

from experiments import data
from experiments.data import DataError, load_dataset

CTX = mx.cpu()


def as_numpy(batches):
    return [tuple(None if a is None else a.asnumpy() for a in batch) for batch in batches]


def assert_same_batches(a, b):
    assert len(a) == len(b)
    for batch_a, batch_b in zip(a, b):
        for array_a, array_b in zip(batch_a, batch_b):
            if array_a is None:
                assert array_b is None
            else:
                np.testing.assert_array_equal(array_a, array_b)


@pytest.fixture(scope="module")
def digits():
    return load_dataset({"name": "digits"})


@pytest.fixture(scope="module")
def tokens():
    return load_dataset({"name": "tokens", "n_samples": 600, "seed": 3})


def test_split_is_deterministic_disjoint_and_complete(digits):
    again = load_dataset({"name": "digits", "as_images": True})
    np.testing.assert_array_equal(digits.train_index, again.train_index)
    assert not set(digits.train_index) & set(digits.val_index)
    assert sorted(set(digits.train_index) | set(digits.val_index)) == list(range(1797))
    assert digits.n_val == round(1797 * 0.2) and digits.n_train == 1797 - digits.n_val
    other = load_dataset({"name": "digits", "seed": 1})
    assert not np.array_equal(digits.train_index, other.train_index)
    assert load_dataset({"name": "digits", "val_fraction": 0.5}).n_val == round(1797 * 0.5)


def test_dataset_kinds_and_shapes(digits):
    assert digits.info.kind == "vector" and digits.info.input_shape == (64,) and digits.static_shape
    x, y, valid_length = next(digits.train_batches(0, 16, CTX))
    assert x.shape == (16, 64) and y.shape == (16,) and valid_length is None
    assert y.dtype == np.float32 and x.asnumpy().max() <= 1.0
    images = load_dataset({"name": "digits", "as_images": True})
    assert images.info.kind == "image" and next(images.val_batches(8, CTX))[0].shape == (8, 1, 8, 8)
    rows = load_dataset({"name": "seq_digits"})
    assert rows.info.kind == "sequence" and rows.info.input_shape == (8, 8)
    x, _, valid_length = next(rows.train_batches(0, 16, CTX))
    assert x.shape == (16, 8, 8) and valid_length.asnumpy().tolist() == [8] * 16


def test_train_batches_deterministic_per_epoch_and_drop_last(digits):
    batch_size = 100
    steps = digits.steps_per_epoch(batch_size)
    assert steps == digits.n_train // batch_size
    epoch0 = as_numpy(digits.train_batches(0, batch_size, CTX))
    assert len(epoch0) == steps and all(b[0].shape[0] == batch_size for b in epoch0)
    assert_same_batches(epoch0, as_numpy(digits.train_batches(0, batch_size, CTX)))
    epoch1 = as_numpy(digits.train_batches(1, batch_size, CTX))
    assert not np.array_equal(epoch0[0][0], epoch1[0][0])
    # An epoch visits distinct training samples, in the documented order.
    order = digits.epoch_order(0)[:steps * batch_size]
    np.testing.assert_array_equal(np.concatenate([b[0] for b in epoch0]), digits._x["train"][order])
    np.testing.assert_array_equal(np.concatenate([b[1] for b in epoch0]), digits._y["train"][order])
    assert len(set(order)) == len(order)
    reseeded = as_numpy(digits.train_batches(0, batch_size, CTX, shuffle_seed=7))
    assert not np.array_equal(epoch0[0][0], reseeded[0][0])


def test_start_skips_without_reordering(digits, tokens):
    for dataset in (digits, tokens):
        full = as_numpy(dataset.train_batches(2, 32, CTX))
        assert_same_batches(as_numpy(dataset.train_batches(2, 32, CTX, start=3)), full[3:])
        assert as_numpy(dataset.train_batches(2, 32, CTX, start=len(full))) == []


def test_val_batches_cover_every_sample_once_in_order(digits):
    batches = as_numpy(digits.val_batches(64, CTX))
    assert [b[0].shape[0] for b in batches[:-1]] == [64] * (len(batches) - 1)
    assert batches[-1][0].shape[0] == digits.n_val - 64 * (len(batches) - 1)
    np.testing.assert_array_equal(np.concatenate([b[0] for b in batches]), digits._x["val"])


def test_probe_batch_is_fixed(digits, tokens):
    a, _ = digits.probe_batch(50, CTX)
    b, _ = digits.probe_batch(50, CTX)
    assert a.shape == (50, 64)
    np.testing.assert_array_equal(a.asnumpy(), b.asnumpy())
    x1, vl1 = tokens.probe_batch(20, CTX)
    x2, vl2 = tokens.probe_batch(20, CTX)
    np.testing.assert_array_equal(x1.asnumpy(), x2.asnumpy())
    np.testing.assert_array_equal(vl1.asnumpy(), vl2.asnumpy())


@pytest.mark.parametrize("name", ["spiral", "circles", "xor", "gaussians"])
def test_playground_sets(name):
    dataset = load_dataset({"name": name, "n_samples": 300, "seed": 5})
    classes = data.DATASETS[name].defaults["classes"]
    assert dataset.info == data.DataInfo("vector", (2,), classes)
    x = np.concatenate([dataset._x["train"], dataset._x["val"]])
    y = np.concatenate([dataset._y["train"], dataset._y["val"]])
    assert x.shape == (300, 2)
    np.testing.assert_allclose(x.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(x.std(axis=0), 1, atol=1e-4)
    assert set(y.tolist()) == set(range(classes))
    np.testing.assert_array_equal(load_dataset({"name": name, "n_samples": 300, "seed": 5})._x["train"],
                                  dataset._x["train"])
    assert not np.array_equal(load_dataset({"name": name, "n_samples": 300, "seed": 6})._x["train"],
                              dataset._x["train"])
    four = load_dataset({"name": name, "n_samples": 400, "classes": 4})
    assert four.info.num_classes == 4 and set(four._y["train"].tolist()) == {0, 1, 2, 3}


def test_token_batches_are_padded_with_pad_index(tokens):
    info = tokens.info
    assert info.kind == "tokens" and info.input_shape == (30,) and not tokens.static_shape
    assert info.padding_idx == tokens.vocab[tokens.vocab.padding_token] == 1  # not 0, which is <unk>
    assert info.vocab_size == len(tokens.vocab)
    spreads = []
    for x, y, valid_length in tokens.train_batches(0, 16, CTX):
        x, y, valid_length = x.asnumpy(), y.asnumpy(), valid_length.asnumpy()
        assert x.dtype == np.int32 and valid_length.dtype == np.int32 and y.dtype == np.float32
        assert x.shape[0] == 16 and x.shape[1] == valid_length.max() <= 30
        positions = np.arange(x.shape[1])[None, :]
        assert (x[positions >= valid_length[:, None]] == info.padding_idx).all()
        assert (x[positions < valid_length[:, None]] != info.padding_idx).all()
        spreads.append(valid_length.max() - valid_length.min())
    # Bucketing: batches hold similar lengths (lengths range over 5..30).
    assert np.mean(spreads) < 10
    val = as_numpy(tokens.val_batches(50, CTX))
    assert sum(len(b[1]) for b in val) == tokens.n_val
    np.testing.assert_array_equal(np.concatenate([b[1] for b in val]), tokens._y["val"])


def test_token_epochs_deterministic_and_drop_partial_batches(tokens):
    steps = tokens.steps_per_epoch(16)
    epoch0 = as_numpy(tokens.train_batches(0, 16, CTX))
    assert len(epoch0) == steps and all(len(b[1]) == 16 for b in epoch0)
    assert_same_batches(epoch0, as_numpy(tokens.train_batches(0, 16, CTX)))
    epoch1 = as_numpy(tokens.train_batches(1, 16, CTX))
    assert len(epoch1) == steps
    assert not all(np.array_equal(a[0], b[0]) for a, b in zip(epoch0, epoch1))
    used = np.concatenate(tokens.epoch_batches(0, 16))
    assert len(set(used.tolist())) == len(used) == steps * 16 > 0.8 * tokens.n_train


def test_token_task_label_not_given_by_length():
    sentences, labels = data.generate_token_task(3000, 5, 30, 200, seed=0)
    lengths = np.array([len(s) for s in sentences])
    labels = np.array(labels)
    assert lengths.min() == 5 and lengths.max() == 30
    assert abs(np.corrcoef(lengths, labels)[0, 1]) < 0.1
    positive = set(data.POSITIVE_WORDS)
    negative = set(data.NEGATIVE_WORDS)
    for words, label in zip(sentences[:200], labels[:200]):
        n_pos = sum(w in positive for w in words)
        n_neg = sum(w in negative for w in words)
        assert (n_pos > n_neg) == bool(label)


def write_idx(path, array, magic):
    header = struct.pack(">" + "i" * (1 + array.ndim), magic, *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def write_fake_mnist(root, n_train=40, n_test=10):
    rng = np.random.RandomState(0)
    root.mkdir(parents=True, exist_ok=True)
    images = rng.randint(0, 256, (n_train, 28, 28))
    labels = np.arange(n_train) % 10
    write_idx(root / "train-images-idx3-ubyte.gz", images, 2051)
    write_idx(root / "train-labels-idx1-ubyte.gz", labels, 2049)
    write_idx(root / "t10k-images-idx3-ubyte.gz", rng.randint(0, 256, (n_test, 28, 28)), 2051)
    write_idx(root / "t10k-labels-idx1-ubyte.gz", np.arange(n_test) % 10, 2049)
    return images, labels


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_mnist_missing_files_raise_data_error_quickly(tmp_path, name):
    started = time.monotonic()
    with pytest.raises(DataError) as error:
        load_dataset({"name": name, "root": str(tmp_path / "nowhere")})
    message = str(error.value)
    assert str(tmp_path / "nowhere") in message
    assert all(f in message for f in data.MNIST_FILES)
    assert time.monotonic() - started < 2
    # Only the missing files are named as missing.
    write_fake_mnist(tmp_path / "partial")
    (tmp_path / "partial" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="missing in .*: t10k-labels-idx1-ubyte.gz. "):
        load_dataset({"name": name, "root": str(tmp_path / "partial")})


def test_mnist_reads_local_idx_files(tmp_path):
    images, labels = write_fake_mnist(tmp_path)
    dataset = load_dataset({"name": "mnist", "root": str(tmp_path), "val_fraction": 0.25})
    assert dataset.info == data.DataInfo("image", (1, 28, 28), 10)
    assert (dataset.n_train, dataset.n_val) == (30, 10)
    np.testing.assert_allclose(dataset._x["train"][:, 0], images[dataset.train_index] / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(dataset._y["train"], labels[dataset.train_index])
    vectors = load_dataset({"name": "mnist", "root": str(tmp_path), "as_images": False, "limit": 20})
    assert vectors.info.input_shape == (784,) and vectors.n_train + vectors.n_val == 20
    x, y, _ = next(vectors.train_batches(0, 8, CTX))
    assert x.shape == (8, 784)


def test_mnist_corrupt_file_is_a_data_error(tmp_path):
    write_fake_mnist(tmp_path)
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz"):
        load_dataset({"name": "mnist", "root": str(tmp_path)})


def write_fake_imdb(root, n_per_class=15):
    words = {"pos": ["great", "loved", "superb"], "neg": ["awful", "boring", "hated"]}
    rng = np.random.RandomState(0)
    for label, vocab in words.items():
        folder = root / "train" / label
        folder.mkdir(parents=True)
        for i in range(n_per_class):
            body = " ".join(rng.choice(vocab + ["the", "movie", "was"], rng.randint(3, 12)))
            (folder / f"{i}_7.txt").write_text(f"This Movie<br /><br />{body.upper()}. It's {label}!")


def test_imdb_on_a_fake_tree(tmp_path):
    write_fake_imdb(tmp_path)
    dataset = load_dataset({"name": "imdb", "root": str(tmp_path), "max_len": 6, "val_fraction": 0.2})
    assert dataset.info.kind == "tokens" and dataset.info.input_shape == (6,) and dataset.info.num_classes == 2
    assert dataset.n_train + dataset.n_val == 30
    vocab = dataset.vocab
    assert "movie" in vocab.token_to_idx and "it's" in vocab.token_to_idx
    assert not any("<br" in token or token.isupper() for token in vocab.idx_to_token[4:])
    assert np.array_equal(np.sort(np.unique(dataset._y["train"])), [0.0, 1.0])
    x, y, valid_length = next(dataset.train_batches(0, 4, CTX))
    assert x.shape[1] <= 6 and valid_length.asnumpy().max() <= 6
    first = dataset._ids["train"][0]
    assert [vocab.idx_to_token[i] for i in first[:2]] == ["this", "movie"]
    limited = load_dataset({"name": "imdb", "root": str(tmp_path), "limit": 10})
    assert limited.n_train + limited.n_val == 10
    assert len(set(np.concatenate([limited._y["train"], limited._y["val"]]).tolist())) == 2
    small_vocab = load_dataset({"name": "imdb", "root": str(tmp_path), "max_vocab": 3})
    assert len(small_vocab.vocab) == 4 + 3  # 4 special tokens + the 3 most frequent words


def test_imdb_missing_tree_names_root_and_subfolders(tmp_path):
    (tmp_path / "train" / "pos").mkdir(parents=True)
    with pytest.raises(DataError) as error:
        load_dataset({"name": "imdb", "root": str(tmp_path)})
    assert str(tmp_path) in str(error.value) and "train/neg" in str(error.value)


def test_unknown_dataset_and_keys():
    with pytest.raises(KeyError, match="digits"):
        load_dataset({"name": "cifar100"})
    with pytest.raises(ValueError, match="n_sample"):
        load_dataset({"name": "spiral", "n_sample": 10})
    for spec in data.DATASETS.values():
        assert {"val_fraction", "seed"} <= set(spec.defaults)


def test_batch_size_larger_than_data_is_a_data_error():
    dataset = load_dataset({"name": "xor", "n_samples": 50})
    with pytest.raises(DataError, match="batch_size"):
        dataset.steps_per_epoch(100)


# -- describe_dataset: each dataset's own checks and shape, without loading it -------------------------------------
DESCRIBED = [{"name": "digits"}, {"name": "digits", "as_images": True, "val_fraction": 0.3},
             {"name": "seq_digits"}, {"name": "spiral", "n_samples": 90, "classes": 4},
             {"name": "circles", "n_samples": 60}, {"name": "xor", "n_samples": 50}, {"name": "gaussians"},
             {"name": "tokens", "n_samples": 300, "max_len": 12}]


@pytest.mark.parametrize("params", DESCRIBED, ids=[str(p) for p in DESCRIBED])
def test_describe_tells_what_load_makes(params):
    """The cheap description used to validate experiments agrees with the loaded dataset (an independent count)."""
    shape = data.describe_dataset(params)
    dataset = load_dataset(params)
    assert shape.split_sizes(params.get("val_fraction", 0.2)) == (dataset.n_train, dataset.n_val)
    expected = dataset.info if dataset.info.kind != "tokens" else \
        data.DataInfo("tokens", dataset.info.input_shape, dataset.info.num_classes)  # vocabulary unknown up front
    assert shape.info == expected


def test_describe_local_files_agrees_with_load(tmp_path):
    write_fake_mnist(tmp_path / "m")
    for params in ({"name": "mnist", "root": str(tmp_path / "m")},
                   {"name": "fashion_mnist", "root": str(tmp_path / "m"), "as_images": False, "limit": 25}):
        shape, dataset = data.describe_dataset(params), load_dataset(params)
        assert shape.info == dataset.info and shape.n_samples == dataset.n_train + dataset.n_val
    write_fake_imdb(tmp_path / "imdb")
    params = {"name": "imdb", "root": str(tmp_path / "imdb"), "max_len": 6}
    assert data.describe_dataset(params).n_samples == 30 == load_dataset(params).n_train + 6


@pytest.mark.parametrize("damage, message", [
    (lambda path: path.write_bytes(b""), "empty file"),
    (lambda path: write_idx(path, np.zeros((40, 28, 28)), 2049), "magic number 2049"),
    (lambda path: path.write_bytes(gzip.compress(struct.pack(">4i", 2051, 40, 28, 28) + bytes(100))), "truncated"),
    (lambda path: path.write_bytes(gzip.compress(struct.pack(">2i", 2051, 40))), "too short"),
    (lambda path: path.write_bytes(b"not gzip at all"), "cannot read"),
])
def test_mnist_headers_are_checked_without_loading(tmp_path, damage, message):
    write_fake_mnist(tmp_path)
    damage(tmp_path / "train-images-idx3-ubyte.gz")
    with pytest.raises(DataError, match=message) as error:
        data.describe_dataset({"name": "mnist", "root": str(tmp_path)})
    assert error.value.key == "root" and "train-images-idx3-ubyte.gz" in str(error.value)
    with pytest.raises(DataError):  # the loader runs the same checks first (the worker's safety net)
        load_dataset({"name": "mnist", "root": str(tmp_path)})


def test_mnist_header_check_accepts_a_multi_member_gzip(tmp_path):
    """gzip's stored length is that of the last member only: a valid file made of two members is counted in full
    instead of being refused."""
    write_fake_mnist(tmp_path)
    images = np.random.RandomState(1).randint(0, 256, (40, 28, 28)).astype(np.uint8).tobytes()
    header = struct.pack(">4i", 2051, 40, 28, 28)
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(header + images[:1000]) +
                                                           gzip.compress(images[1000:]))
    assert data.describe_dataset({"name": "mnist", "root": str(tmp_path)}).n_samples == 40
    assert load_dataset({"name": "mnist", "root": str(tmp_path)}).n_train == 32


@pytest.mark.parametrize("params, key", [
    ({"name": "spiral", "classes": 1}, "classes"), ({"name": "xor", "n_samples": 3}, "n_samples"),
    ({"name": "circles", "noise": -0.1}, "noise"), ({"name": "gaussians", "noise": float("nan")}, "noise"),
    ({"name": "tokens", "min_len": 9, "max_len": 4}, "min_len"), ({"name": "tokens", "n_samples": 1}, "n_samples"),
    ({"name": "digits", "val_fraction": 0.0001}, "val_fraction"), ({"name": "digits", "val_fraction": 1.0},
                                                                    "val_fraction"),
    ({"name": "digits", "seed": -1}, "seed"), ({"name": "digits", "n_samples": 5}, "n_samples"),
])
def test_dataset_parameter_checks_name_the_key(params, key):
    with pytest.raises(data.ParamError) as error:
        data.describe_dataset(params)
    assert error.value.key == key
