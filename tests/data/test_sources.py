"""Named sources on fake files in their canonical formats: parsing, validation, error messages."""

from __future__ import annotations

import os
import pickle
import tarfile

import numpy as np
import pytest
import torch

from cnnlab.data import load_data
from cnnlab.data.sources import (
    CIFAR100_CLASSES,
    FASHION_MNIST_CLASSES,
    SOURCES,
    read_idx,
    safe_unpickle,
    source,
    source_status,
)
from cnnlab.errors import DataError

# -- MNIST / Fashion-MNIST ------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_reads_idx_exactly(tmp_path, fake, gz):
    arrays = fake.mnist(tmp_path / "mnist", gz=gz)
    ds = load_data("mnist", data_dir=tmp_path, cache=False)
    assert ds.name == "mnist" and ds.classes == [str(i) for i in range(10)]
    assert ds.image_shape == (1, 28, 28)
    assert torch.equal(ds.train.images[:, 0], torch.from_numpy(
        arrays["train-images-idx3-ubyte"].astype(np.uint8)))
    assert ds.train.labels.tolist() == arrays["train-labels-idx1-ubyte"].tolist()
    assert ds.test.labels.tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()
    assert ds.info["format"] == "idx"


def test_mnist_files_directly_in_data_dir_and_torchvision_layout(tmp_path, fake):
    fake.mnist(tmp_path)
    assert len(load_data("mnist", data_dir=tmp_path, cache=False).train) == 30
    other = tmp_path / "tv"
    fake.mnist(other / "FashionMNIST" / "raw", n_train=20)
    ds = load_data("fashion-mnist", data_dir=other, cache=False)
    assert len(ds.train) == 20 and ds.classes == FASHION_MNIST_CLASSES


def test_missing_mnist_says_what_and_where(tmp_path):
    with pytest.raises(DataError) as err:
        load_data("mnist", data_dir=tmp_path)
    msg = str(err.value)
    assert str(tmp_path / "mnist") in msg
    assert "train-images-idx3-ubyte.gz" in msg and "t10k-labels-idx1-ubyte.gz" in msg
    assert "--data-dir" in msg and "cnnlab data download mnist" in msg


def test_incomplete_mnist_names_the_missing_file(tmp_path, fake):
    fake.mnist(tmp_path / "mnist")
    (tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match=r"missing t10k-labels-idx1-ubyte\.gz"):
        load_data("mnist", data_dir=tmp_path)


def test_idx_wrong_magic_names_file_and_expectation(tmp_path, fake):
    path = fake.write_idx(tmp_path / "x.gz", np.zeros((4, 28, 28)), magic=2049 + 0x10000)
    with pytest.raises(DataError) as err:
        read_idx(path, 2051)
    assert str(path) in str(err.value) and "expected 2051" in str(err.value)
    # labels file given where images are expected: says what it is
    labels = fake.write_idx(tmp_path / "l.gz", np.zeros(4))
    with pytest.raises(DataError, match="that is an IDX labels file"):
        read_idx(labels, 2051)


def test_idx_truncated_and_too_long(tmp_path, fake):
    data = fake.idx_bytes(np.zeros((5, 28, 28)))
    short = tmp_path / "short"
    short.write_bytes(data[:-100])
    with pytest.raises(DataError, match=r"truncated.*5×28×28 = 3,920 bytes.*3,820"):
        read_idx(short, 2051)
    long = tmp_path / "long"
    long.write_bytes(data + b"\0")
    with pytest.raises(DataError, match="longer than its header says"):
        read_idx(long, 2051)
    tiny = tmp_path / "tiny"
    tiny.write_bytes(b"\0\0\x08")
    with pytest.raises(DataError, match="truncated"):
        read_idx(tiny, 2051)


def test_truncated_gzip_is_a_data_error(tmp_path, fake):
    path = fake.write_idx(tmp_path / "t.gz", np.zeros((50, 28, 28)))
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(DataError, match=str(path)):
        read_idx(path, 2051)


def test_image_label_count_mismatch(tmp_path, fake):
    fake.mnist(tmp_path / "mnist")
    fake.write_idx(tmp_path / "mnist" / "train-labels-idx1-ubyte.gz", np.zeros(29))
    with pytest.raises(DataError, match="30 images but .* 29 labels"):
        load_data("mnist", data_dir=tmp_path, cache=False)


def test_mnist_loose_in_data_dir_is_not_taken_for_fashion(tmp_path, fake, monkeypatch):
    from cnnlab.data import download as dl

    fake.mnist(tmp_path)
    labels = tmp_path / "train-labels-idx1-ubyte.gz"
    files = list(dl.REMOTES["mnist"].files)
    files[1] = dl.RemoteFile(files[1].name, dl.file_md5(labels))
    monkeypatch.setitem(dl.REMOTES, "mnist", dl.Remote("mnist", "mnist", (), tuple(files)))
    with pytest.raises(DataError, match="is from mnist, not fashion-mnist"):
        load_data("fashion-mnist", data_dir=tmp_path, cache=False)


def test_named_set_resize_and_channels_as_tensor_ops(tmp_path, fake):
    fake.mnist(tmp_path / "mnist")
    ds = load_data("mnist", data_dir=tmp_path, image_size=32, channels=3, cache=False)
    assert ds.image_shape == (3, 32, 32)
    assert torch.equal(ds.train.images[:, 0], ds.train.images[:, 2])  # grey repeated
    plain = load_data("mnist", data_dir=tmp_path, cache=False)
    # constant images stay constant under antialiased bilinear resizing
    const = torch.full((2, 1, 28, 28), 77, dtype=torch.uint8)
    from cnnlab.data.images import adapt_images

    assert (adapt_images(const, 14, None) == 77).all()
    # mean brightness is preserved by resizing (to within rounding)
    assert abs(ds.train.images.float().mean() - plain.train.images.float().mean()) < 1.0


def test_rgb_to_grey_is_bt601_luminance():
    from cnnlab.data.images import convert_channels

    x = torch.tensor([[[[255]], [[0]], [[0]]], [[[0]], [[255]], [[0]]],
                      [[[0]], [[0]], [[255]]]], dtype=torch.uint8)
    grey = convert_channels(x, 1)
    assert grey.flatten().tolist() == [76, 150, 29]  # round(255 × 0.299, 0.587, 0.114)


# -- CIFAR binary ---------------------------------------------------------------------------------


def test_cifar10_binary(tmp_path, fake):
    ref = fake.cifar10_bin(tmp_path)
    ds = load_data("cifar10", data_dir=tmp_path, cache=False)
    assert len(ds.train) == 60 and len(ds.test) == 10
    assert ds.image_shape == (3, 32, 32)
    assert torch.equal(ds.train.images, torch.from_numpy(ref["train_images"]))
    assert ds.train.labels.tolist() == ref["train_labels"].tolist()
    assert torch.equal(ds.test.images, torch.from_numpy(ref["test_images"]))
    assert ds.classes == [f"class{i}" for i in range(10)]  # from batches.meta.txt
    assert ds.info["format"] == "cifar-binary"


def test_cifar100_binary_uses_fine_labels(tmp_path, fake):
    ref = fake.cifar100_bin(tmp_path)
    ds = load_data("cifar100", data_dir=tmp_path, cache=False)
    assert ds.train.labels.tolist() == ref["train_labels"].tolist()
    assert torch.equal(ds.test.images, torch.from_numpy(ref["test_images"]))
    assert ds.classes == [f"fine{i}" for i in range(100)]
    assert len(CIFAR100_CLASSES) == 100 and len(set(CIFAR100_CLASSES)) == 100


def test_cifar_binary_without_names_file_uses_built_in_names(tmp_path, fake):
    ref = fake.cifar10_bin(tmp_path)
    (ref["folder"] / "batches.meta.txt").unlink()
    ds = load_data("cifar10", data_dir=tmp_path, cache=False)
    assert ds.classes[0] == "airplane" and ds.classes[-1] == "truck"


def test_cifar_binary_truncated_record(tmp_path, fake):
    ref = fake.cifar10_bin(tmp_path)
    batch = ref["folder"] / "data_batch_3.bin"
    batch.write_bytes(batch.read_bytes()[:-5])
    with pytest.raises(DataError) as err:
        load_data("cifar10", data_dir=tmp_path, cache=False)
    assert "data_batch_3.bin" in str(err.value) and "3073-byte records" in str(err.value)


def test_cifar_missing_and_incomplete(tmp_path, fake):
    with pytest.raises(DataError) as err:
        load_data("cifar10", data_dir=tmp_path)
    msg = str(err.value)
    assert "cifar-10-batches-bin" in msg and "cifar-10-binary.tar.gz" in msg
    assert "cnnlab data download cifar10" in msg
    ref = fake.cifar10_bin(tmp_path)
    (ref["folder"] / "data_batch_5.bin").unlink()
    with pytest.raises(DataError, match="incomplete: missing data_batch_5.bin"):
        load_data("cifar10", data_dir=tmp_path)


def test_cifar_archive_extracted_atomically_on_first_use(tmp_path, fake):
    src = tmp_path / "src"
    ref = fake.cifar10_bin(src)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    fake.tar(ref["folder"], data_dir / "cifar-10-binary.tar.gz")
    assert source_status("cifar10", data_dir).startswith("archive")
    ds = load_data("cifar10", data_dir=data_dir, cache=False)
    assert torch.equal(ds.train.images, torch.from_numpy(ref["train_images"]))
    assert (data_dir / "cifar-10-batches-bin" / "test_batch.bin").is_file()
    assert not [p for p in data_dir.iterdir() if p.name.startswith(".cifar")]  # no temp left
    assert source_status("cifar10", data_dir) == "found"


def test_cifar_archive_with_wrong_layout(tmp_path, fake):
    src = tmp_path / "src"
    ref = fake.cifar10_bin(src)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    fake.tar(ref["folder"], data_dir / "cifar-10-binary.tar.gz", arcname="batches")
    with pytest.raises(DataError) as err:
        load_data("cifar10", data_dir=data_dir)
    msg = str(err.value)
    assert "wrong layout" in msg and "found top-level batches" in msg
    assert "expected cifar-10-batches-bin/" in msg
    assert not (data_dir / "cifar-10-batches-bin").exists()


def test_cifar_archive_refuses_unsafe_members(tmp_path, fake):
    src = tmp_path / "src"
    ref = fake.cifar10_bin(src)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    with tarfile.open(data_dir / "cifar-10-binary.tar.gz", "w:gz") as tar:
        tar.add(ref["folder"], arcname="cifar-10-batches-bin")
        link = tarfile.TarInfo("cifar-10-batches-bin/evil")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        tar.addfile(link)
    with pytest.raises(DataError, match="unsafe member"):
        load_data("cifar10", data_dir=data_dir)


# -- CIFAR python (restricted unpickler) ----------------------------------------------------------


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar10_python_batches(tmp_path, fake, protocol):
    ref = fake.cifar10_py(tmp_path, protocol=protocol)
    ds = load_data("cifar10", data_dir=tmp_path, cache=False)
    assert torch.equal(ds.train.images, torch.from_numpy(ref["train_images"]))
    assert ds.train.labels.tolist() == ref["train_labels"].tolist()
    assert ds.test.labels.tolist() == ref["test_labels"].tolist()
    assert ds.classes == [f"py{i}" for i in range(10)]
    assert ds.info["format"] == "cifar-python"


def test_cifar100_python(tmp_path, fake):
    ref = fake.cifar100_py(tmp_path)
    ds = load_data("cifar100", data_dir=tmp_path, cache=False)
    assert ds.train.labels.tolist() == ref["train_labels"].tolist()
    assert torch.equal(ds.test.images, torch.from_numpy(ref["test_images"]))
    assert ds.classes == [f"f{i}" for i in range(100)]


def test_binary_preferred_over_python(tmp_path, fake):
    fake.cifar10_py(tmp_path)
    ref = fake.cifar10_bin(tmp_path)
    ds = load_data("cifar10", data_dir=tmp_path, cache=False)
    assert ds.info["format"] == "cifar-binary"
    assert torch.equal(ds.test.images, torch.from_numpy(ref["test_images"]))


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_and_runs_nothing(tmp_path, fake):
    fake.cifar10_py(tmp_path)
    marker = tmp_path / "pwned"
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_2"
    batch.write_bytes(pickle.dumps({b"data": _Evil(marker), b"labels": [0]}, protocol=2))
    with pytest.raises(DataError) as err:
        load_data("cifar10", data_dir=tmp_path, cache=False)
    assert "data_batch_2" in str(err.value) and "refusing to load" in str(err.value)
    assert "system" in str(err.value)
    assert not marker.exists()


@pytest.mark.parametrize("payload", [
    ("builtins", "eval"), ("builtins", "getattr"), ("subprocess", "Popen"),
    ("numpy", "load"), ("torch", "load"),
])
def test_unpickler_allows_only_the_array_rebuilders(tmp_path, payload):
    module, name = payload
    path = tmp_path / "p"
    # protocol-0 GLOBAL opcode, then call it with an empty tuple: what a crafted pickle does
    path.write_bytes(f"c{module}\n{name}\n)R.".encode())
    with pytest.raises(DataError, match=f"refusing to load {module}.{name}"):
        safe_unpickle(path)


def test_truncated_pickle(tmp_path, fake):
    fake.cifar10_py(tmp_path)
    batch = tmp_path / "cifar-10-batches-py" / "test_batch"
    batch.write_bytes(batch.read_bytes()[:100])
    with pytest.raises(DataError, match="test_batch"):
        load_data("cifar10", data_dir=tmp_path, cache=False)


# -- registry -------------------------------------------------------------------------------------


def test_registry_refuses_duplicates_and_unknown_names_suggest():
    assert {"digits", "mnist", "fashion-mnist", "cifar10", "cifar100"} <= set(SOURCES)
    with pytest.raises(ValueError, match="registered twice"):
        source("mnist")(lambda *a, **k: None)
    with pytest.raises(DataError, match="did you mean 'mnist'"):
        load_data("mnsit")


def test_digits_unchanged_and_resizable():
    ds = load_data("digits")
    assert ds.image_shape == (1, 8, 8) and len(ds.train) + len(ds.test) == 1797
    big = load_data("digits", image_size=16, channels=3)
    assert big.image_shape == (3, 16, 16)
