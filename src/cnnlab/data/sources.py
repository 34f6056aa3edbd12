"""Named data sets: name → function that returns a :class:`Dataset`.

Every source reads its canonical files from ``data_dir`` (or, for digits, from scikit-learn) and
raises :class:`DataError` naming the missing or malformed file and what was expected there.

Signature of every source: ``fn(data_dir, *, seed=0, skip_corrupt=False, cache=True,
image_size=None, channels=None, **_) -> Dataset``. ``image_size``/``channels`` resize and
convert the whole set with tensor ops (bilinear with antialiasing; grey→RGB repeats the channel,
RGB→grey is BT.601 luminance); decoded results go through the decode-once cache
(:mod:`cnnlab.data.cache`).

Formats (https://yann.lecun.com/exdb/mnist/, https://www.cs.toronto.edu/~kriz/cifar.html):

* MNIST / Fashion-MNIST: IDX files, big-endian header ``0 0 <type 0x08=ubyte> <ndim>``, then one
  uint32 per dimension, then the bytes: magic 2051 (images, N×rows×cols) and 2049 (labels, N).
* CIFAR binary: records of label byte(s) + 3072 pixel bytes (1024 R, 1024 G, 1024 B, row-major);
  CIFAR-100 records carry two label bytes, coarse then fine (we use fine).
* CIFAR python: pickled dicts (``data``: N×3072 uint8 array, ``labels``/``fine_labels``),
  read only through :class:`SafeUnpickler` so a tampered pickle cannot run code.
"""

from __future__ import annotations

import gzip
import importlib
import os
import pickle
import re
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .cache import cache_root, cached, fingerprint, writable
from .dataset import Dataset, Split, stratified_split
from .images import adapt_images, as_size, check_channels

SourceFn = Callable[..., Dataset]
SOURCES: dict[str, SourceFn] = {}


def source(name: str) -> Callable[[SourceFn], SourceFn]:
    def wrap(fn: SourceFn) -> SourceFn:
        if name in SOURCES:
            raise ValueError(f"data source '{name}' registered twice")
        SOURCES[name] = fn
        return fn

    return wrap


@source("digits")
def load_digits(data_dir: Path | None = None, *, seed: int = 0, test_fraction: float = 0.2,
                image_size: int | tuple[int, int] | None = None, channels: int | None = None,
                **_: object) -> Dataset:
    """scikit-learn's 8×8 handwritten digits (1,797 images, 17 grey levels), embedded: no download.

    Pixels 0..16 are scaled to 0..255 so every source hands the loader the same uint8 range.
    There is no official test split, so a seeded stratified one is made. Too small to cache.
    """
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    images = torch.from_numpy(np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8))[:, None]
    images = adapt_images(images, image_size, channels)
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    train_idx, test_idx = stratified_split(labels, test_fraction, seed)
    return Dataset(
        name="digits",
        classes=[str(i) for i in range(10)],
        train=Split(images[train_idx], labels[train_idx]),
        test=Split(images[test_idx], labels[test_idx]),
        source="sklearn.datasets.load_digits",
        info={"test_split": f"stratified {test_fraction:.0%} held out, seed {seed}"},
    )


# -- shared helpers -------------------------------------------------------------------------------

def _download_hint(name: str) -> str:
    return (f"pass --data-dir, or run `cnnlab data download {name}` on a machine with internet "
            "and copy the files over")


def _named_dataset(name: str, files: list[Path], where: Path, read: Callable[[], tuple],
                   *, data_dir: Path, cache: bool, image_size, channels, fmt: str) -> Dataset:
    """Read (through the cache: native pixels) a located named set, then resize/convert it."""
    size = as_size(image_size)
    check_channels(channels)

    def build():
        train, test, classes, notes = read()
        return {"train": train, "test": test}, {"classes": classes,
                                                "info": {"format": fmt, **notes}}

    identity = {"kind": name, "where": str(where.resolve())}
    splits, meta = cached(build, slug=name, identity=identity,
                          content=lambda: fingerprint(files), data_dir=data_dir, enabled=cache)
    train, test = (Split(adapt_images(s.images, size, channels), s.labels)
                   for s in (splits["train"], splits["test"]))
    return Dataset(name=name, classes=list(meta["classes"]), train=train, test=test,
                   source=str(where),
                   info={**meta.get("info", {}), "files": [str(f) for f in files],
                         "cache": meta["cache"]})


# -- MNIST and Fashion-MNIST (IDX) ----------------------------------------------------------------

IDX_IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions
IDX_LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension

IDX_FILES = {  # split → (images, labels), without the .gz
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

MNIST_CLASSES = [str(i) for i in range(10)]
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                         "Sneaker", "Bag", "Ankle boot"]


def read_idx(path: Path, magic: int) -> np.ndarray:
    """An IDX file (gzipped or not: detected from its first bytes) as a uint8 array.

    Checks the magic number, the header and that the payload is exactly prod(dims) bytes.
    """
    kind = {IDX_IMAGES_MAGIC: "images", IDX_LABELS_MAGIC: "labels"}.get(magic, "IDX")
    try:
        data = path.read_bytes()
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"cannot read {path}: {exc} — the file is truncated or not gzip; delete "
                        "it and copy or download it again") from exc
    if len(data) < 8:
        raise DataError(f"{path} is truncated: {len(data)} bytes, too short for an IDX header")
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        other = {IDX_IMAGES_MAGIC: " (that is an IDX images file)",
                 IDX_LABELS_MAGIC: " (that is an IDX labels file)"}.get(found, "")
        raise DataError(f"{path} is not an IDX {kind} file: magic number {found}{other}, "
                        f"expected {magic}")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path} is truncated: {len(data)} bytes, the header alone needs {header}")
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    expected = int(np.prod(dims))
    got = len(data) - header
    if got != expected:
        what = "truncated" if got < expected else "longer than its header says"
        raise DataError(f"{path} is {what}: header says {'×'.join(map(str, dims))} = {expected:,} "
                        f"bytes of {kind}, file holds {got:,}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims).copy()


def _idx_candidates(data_dir: Path, subdirs: tuple[str, ...]) -> list[Path]:
    return [data_dir / s for s in subdirs] + [data_dir]


def locate_idx(name: str, data_dir: Path, subdirs: tuple[str, ...]) -> dict[str, Path]:
    """The 4 IDX files of ``name``: first folder among ``data_dir/<subdir>`` and ``data_dir``
    that holds a file for each (``.gz`` preferred, un-gzipped accepted)."""
    wanted = [f for pair in IDX_FILES.values() for f in pair]
    partial: tuple[Path, list[str]] | None = None
    for folder in _idx_candidates(data_dir, subdirs):
        found = {}
        for base in wanted:
            for candidate in (folder / f"{base}.gz", folder / base):
                if candidate.is_file():
                    found[base] = candidate
                    break
        if len(found) == len(wanted):
            return found
        if found and partial is None:
            partial = (folder, [f"{b}.gz" for b in wanted if b not in found])
    if partial is not None:
        raise DataError(f"{name} files incomplete in {partial[0]}: missing "
                        f"{', '.join(partial[1])} — {_download_hint(name)}")
    raise DataError(f"{name} files not found in {data_dir / subdirs[0]} (nor in {data_dir}): "
                    f"expected {', '.join(f + '.gz' for f in wanted)} (gzipped or not) — "
                    f"{_download_hint(name)}")


def _check_not_the_other(name: str, labels_file: Path) -> None:
    """MNIST and Fashion-MNIST share file names: files lying loose in ``data_dir`` could be
    either. The train labels file (28 KB, instant to hash) tells them apart."""
    from .download import REMOTES, file_md5

    other = "fashion-mnist" if name == "mnist" else "mnist"
    known = next(f for f in REMOTES[other].files if f.name.startswith("train-labels"))
    try:
        digests = {file_md5(labels_file)}
        if labels_file.suffix == ".gz":
            digests.add(file_md5(labels_file, gunzip=True))
    except (OSError, EOFError):
        return  # unreadable: read_idx reports it properly
    if digests & {known.md5, known.raw_md5}:
        raise DataError(f"{labels_file} is from {other}, not {name}: keep each set in its own "
                        f"folder ({labels_file.parent / name}/, "
                        f"{labels_file.parent / other}/)")


def _load_idx_set(name: str, data_dir: Path, subdirs: tuple[str, ...], classes: list[str],
                  **kw) -> Dataset:
    files = locate_idx(name, data_dir, subdirs)
    labels_file = files[IDX_FILES["train"][1]]
    if labels_file.parent == data_dir:
        _check_not_the_other(name, labels_file)

    def read():
        splits = []
        for img_base, lab_base in IDX_FILES.values():
            images = read_idx(files[img_base], IDX_IMAGES_MAGIC)
            labels = read_idx(files[lab_base], IDX_LABELS_MAGIC)
            if len(images) != len(labels):
                raise DataError(f"{files[img_base]} has {len(images):,} images but "
                                f"{files[lab_base]} has {len(labels):,} labels")
            if labels.size and int(labels.max()) >= len(classes):
                raise DataError(f"{files[lab_base]} has label {int(labels.max())}; {name} has "
                                f"{len(classes)} classes")
            splits.append(Split(torch.from_numpy(images)[:, None],
                                torch.from_numpy(labels.astype(np.int64))))
        return splits[0], splits[1], classes, {}

    where = files[IDX_FILES["train"][0]].parent
    return _named_dataset(name, sorted(files.values()), where, read, data_dir=data_dir,
                          fmt="idx", **kw)


@source("mnist")
def load_mnist(data_dir: Path, *, seed: int = 0, skip_corrupt: bool = False, cache: bool = True,
               image_size=None, channels=None, **_: object) -> Dataset:
    """MNIST (LeCun et al. 1998): 60,000 train / 10,000 test, 28×28 grey, digits 0–9.

    Files in ``data_dir/mnist/`` (also ``data_dir/MNIST/raw/``, torchvision's layout, or
    ``data_dir`` itself).
    """
    return _load_idx_set("mnist", Path(data_dir), ("mnist", "MNIST/raw"), MNIST_CLASSES,
                         cache=cache, image_size=image_size, channels=channels)


@source("fashion-mnist")
def load_fashion_mnist(data_dir: Path, *, seed: int = 0, skip_corrupt: bool = False,
                       cache: bool = True, image_size=None, channels=None,
                       **_: object) -> Dataset:
    """Fashion-MNIST (Xiao et al. 2017): MNIST's format and sizes, 10 clothing classes.

    Files in ``data_dir/fashion-mnist/`` (also ``data_dir/FashionMNIST/raw/`` or ``data_dir``).
    """
    return _load_idx_set("fashion-mnist", Path(data_dir), ("fashion-mnist", "FashionMNIST/raw"),
                         FASHION_MNIST_CLASSES, cache=cache, image_size=image_size,
                         channels=channels)


# -- CIFAR-10 and CIFAR-100 -----------------------------------------------------------------------

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                   "truck"]
CIFAR100_CLASSES = [  # fine labels, in label order (alphabetical), as in fine_label_names.txt
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle",
    "bottle", "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle",
    "caterpillar", "cattle", "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch",
    "crab", "crocodile", "cup", "dinosaur", "dolphin", "elephant", "flatfish", "forest", "fox",
    "girl", "hamster", "house", "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion",
    "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain", "mouse", "mushroom",
    "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
    "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road",
    "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake",
    "spider", "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank",
    "telephone", "television", "tiger", "tractor", "train", "trout", "tulip", "turtle",
    "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm",
]

CIFAR_PIXELS = 3 * 32 * 32


@dataclass(frozen=True)
class CifarSpec:
    display: str
    classes: list[str]
    bin_dir: str
    bin_train: tuple[str, ...]
    bin_test: tuple[str, ...]
    label_bytes: int  # 1 (CIFAR-10) or 2 (CIFAR-100: coarse, fine)
    bin_names: str
    py_dir: str
    py_train: tuple[str, ...]
    py_test: tuple[str, ...]
    py_meta: str
    py_labels: str
    py_names: str
    archives: dict[str, str]  # archive file → the folder it must contain


CIFAR = {
    "cifar10": CifarSpec(
        "CIFAR-10", CIFAR10_CLASSES, "cifar-10-batches-bin",
        tuple(f"data_batch_{i}.bin" for i in range(1, 6)), ("test_batch.bin",), 1,
        "batches.meta.txt", "cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)),
        ("test_batch",), "batches.meta", "labels", "label_names",
        {"cifar-10-binary.tar.gz": "cifar-10-batches-bin",
         "cifar-10-python.tar.gz": "cifar-10-batches-py"}),
    "cifar100": CifarSpec(
        "CIFAR-100", CIFAR100_CLASSES, "cifar-100-binary", ("train.bin",), ("test.bin",), 2,
        "fine_label_names.txt", "cifar-100-python", ("train",), ("test",), "meta", "fine_labels",
        "fine_label_names",
        {"cifar-100-binary.tar.gz": "cifar-100-binary",
         "cifar-100-python.tar.gz": "cifar-100-python"}),
}


def _cifar_bases(name: str, data_dir: Path) -> list[Path]:
    return [data_dir, data_dir / name]


def _complete(folder: Path, files: tuple[str, ...]) -> bool:
    return folder.is_dir() and all((folder / f).is_file() for f in files)


def locate_cifar(name: str, data_dir: Path) -> tuple[str, Path]:
    """(``"binary"`` or ``"python"``, folder) for CIFAR ``name``, extracting an archive if that
    is all there is. Binary batches are preferred: reading them runs no unpickler at all."""
    spec = CIFAR[name]
    bases = _cifar_bases(name, data_dir)
    for base in bases:
        if _complete(base / spec.bin_dir, spec.bin_train + spec.bin_test):
            return "binary", base / spec.bin_dir
        if _complete(base / spec.py_dir, spec.py_train + spec.py_test):
            return "python", base / spec.py_dir
    for base in bases:
        for archive, folder in spec.archives.items():
            if (base / archive).is_file():
                fmt = "binary" if folder == spec.bin_dir else "python"
                required = (spec.bin_train + spec.bin_test if fmt == "binary"
                            else spec.py_train + spec.py_test)
                return fmt, extract_archive(base / archive, folder, required, data_dir)
    for base in bases:  # a partial folder: say exactly what is missing
        for folder, files in ((spec.bin_dir, spec.bin_train + spec.bin_test),
                              (spec.py_dir, spec.py_train + spec.py_test)):
            if (base / folder).is_dir():
                missing = [f for f in files if not (base / folder / f).is_file()]
                raise DataError(f"{spec.display} folder {base / folder} is incomplete: missing "
                                f"{', '.join(missing)} — {_download_hint(name)}")
    binary, python = spec.archives
    raise DataError(
        f"{spec.display} files not found in {data_dir} (nor in {data_dir / name}): expected "
        f"{spec.bin_dir}/ ({', '.join(spec.bin_train + spec.bin_test)}), or {spec.py_dir}/, or "
        f"the archive {binary} or {python} — {_download_hint(name)}")


def extract_archive(archive: Path, folder: str, required: tuple[str, ...], data_dir: Path) -> Path:
    """Extract ``folder/`` from a .tar.gz next to it (or into the cache when that is read-only).

    Atomic: members go to a temporary folder beside the target, which is renamed into place only
    when complete. Only regular files and folders under ``folder/`` are extracted (no links, no
    absolute or ``..`` paths).
    """
    dest = archive.parent
    if not writable(dest):
        root = cache_root(data_dir)
        if root is None:
            raise DataError(f"cannot extract {archive}: {dest} is read-only and no cache folder is "
                            "writable; extract it by hand")
        dest = root / "extracted"
        dest.mkdir(parents=True, exist_ok=True)
    target = dest / folder
    if _complete(target, required):
        return target
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder}.extract-", dir=dest))
    try:
        try:
            with tarfile.open(archive, "r:*") as tar:
                members = tar.getmembers()
                names = {re.sub(r"^(\./)+", "", m.name).rstrip("/"): m for m in members}
                tops = sorted({n.split("/")[0] for n in names if n})
                missing = [f for f in required if f"{folder}/{f}" not in names]
                if folder not in tops or missing:
                    shown = ", ".join(tops[:6]) + (" …" if len(tops) > 6 else "")
                    raise DataError(
                        f"{archive} has the wrong layout: found top-level {shown or 'nothing'}"
                        f"{'; missing ' + ', '.join(missing[:6]) if folder in tops else ''}, "
                        f"expected {folder}/ with {', '.join(required)}")
                chosen = []
                for n, m in names.items():
                    if n != folder and not n.startswith(folder + "/"):
                        continue
                    if not (m.isfile() or m.isdir()) or n.startswith("/") or ".." in n.split("/"):
                        raise DataError(f"{archive}: refusing unsafe member {m.name!r}")
                    chosen.append(m)
                kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
                tar.extractall(tmp, members=chosen, **kwargs)
        except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
            raise DataError(f"cannot extract {archive}: {exc} — the archive is truncated or "
                            "corrupt; delete it and download it again") from exc
        extracted = tmp / folder
        if not _complete(extracted, required):
            raise DataError(f"{archive}: extraction did not produce {folder}/ with "
                            f"{', '.join(required)}")
        try:
            os.replace(extracted, target)
        except OSError:
            if not _complete(target, required):  # someone else won the race: fine if complete
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def read_cifar_bin(path: Path, label_bytes: int, num_classes: int) -> Split:
    """One binary batch: records of ``label_bytes`` + 3072 bytes; the last label byte is used."""
    record = label_bytes + CIFAR_PIXELS
    try:
        raw = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc
    if raw.size == 0 or raw.size % record:
        raise DataError(f"{path} is truncated or not a CIFAR binary batch: {raw.size:,} bytes is "
                        f"not a whole number of {record}-byte records ({label_bytes} label "
                        f"byte(s) + {CIFAR_PIXELS} pixels)")
    rows = raw.reshape(-1, record)
    labels = rows[:, label_bytes - 1].astype(np.int64)
    if labels.max() >= num_classes:
        raise DataError(f"{path} has label {labels.max()}; expected 0..{num_classes - 1} — is "
                        "this the other CIFAR?")
    images = np.ascontiguousarray(rows[:, label_bytes:]).reshape(-1, 3, 32, 32)
    return Split(torch.from_numpy(images), torch.from_numpy(labels))


def _class_names(path: Path, spec: CifarSpec, names: list | None = None) -> tuple[list[str], dict]:
    if names is None and path.is_file():
        names = [line.strip() for line in path.read_text(errors="replace").splitlines()]
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in (names or []) if n]
    names = [n for n in names if n.strip()]
    if not names:
        return list(spec.classes), {"class_names": f"built in ({path.name} not found)"}
    if len(names) != len(spec.classes):
        raise DataError(f"{path} lists {len(names)} class names; {spec.display} has "
                        f"{len(spec.classes)}")
    return names, {}


# Exactly what a CIFAR pickle (Python 2 or 3, numpy 1 or 2) needs to rebuild its arrays.
_PICKLE_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "numpy.core.multiarray"),
    ("numpy._core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "numpy.core.multiarray"),
    ("numpy.core.multiarray", "scalar"): ("numpy._core.multiarray", "numpy.core.multiarray"),
    ("numpy._core.multiarray", "scalar"): ("numpy._core.multiarray", "numpy.core.multiarray"),
    ("numpy.core.numeric", "_frombuffer"): ("numpy._core.numeric", "numpy.core.numeric"),
    ("numpy._core.numeric", "_frombuffer"): ("numpy._core.numeric", "numpy.core.numeric"),
    ("numpy", "ndarray"): ("numpy",),
    ("numpy", "dtype"): ("numpy",),
    ("_codecs", "encode"): ("_codecs",),  # how protocol-2 pickles from Python 3 store bytes
}
_PICKLE_BUILTINS = {"list", "dict", "tuple", "set", "frozenset", "bytearray", "bytes", "str",
                    "int", "float", "complex", "bool"}


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that rebuilds numpy arrays and plain containers and refuses everything else.

    ``pickle.load`` on an untrusted file can call any importable function (``os.system``...);
    here :meth:`find_class` only hands out the numpy array constructors and builtin container
    types listed in ``_PICKLE_ALLOWED``/``_PICKLE_BUILTINS``.
    """

    def find_class(self, module: str, name: str):
        if module in ("builtins", "__builtin__") and name in _PICKLE_BUILTINS:
            return getattr(__import__("builtins"), name)
        candidates = _PICKLE_ALLOWED.get((module, name))
        if candidates is None:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        for mod in candidates:
            try:
                return getattr(importlib.import_module(mod), name)
            except (ImportError, AttributeError):
                continue
        raise pickle.UnpicklingError(f"cannot resolve {module}.{name}")


def safe_unpickle(path: Path) -> object:
    """Load a pickle with :class:`SafeUnpickler` (latin-1 for Python 2 strings, as numpy needs)."""
    try:
        with open(path, "rb") as f:
            return SafeUnpickler(f, encoding="latin1").load()
    except pickle.UnpicklingError as exc:
        raise DataError(f"{path}: {exc} — a CIFAR batch holds only numpy arrays, lists and "
                        "strings; this file is something else or was tampered with") from exc
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            MemoryError, OSError) as exc:
        raise DataError(f"{path} is truncated or not a CIFAR python batch ({exc})") from exc


def _plain_keys(obj: object, path: Path) -> dict:
    if not isinstance(obj, dict):
        raise DataError(f"{path} is not a CIFAR python batch: holds {type(obj).__name__}, "
                        "expected a dict")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


def read_cifar_pickle(path: Path, label_key: str, num_classes: int) -> Split:
    batch = _plain_keys(safe_unpickle(path), path)
    data, labels = batch.get("data"), batch.get(label_key)
    if not isinstance(data, np.ndarray) or labels is None:
        raise DataError(f"{path} is not a CIFAR python batch: expected keys 'data' (array) and "
                        f"'{label_key}', found {sorted(map(str, batch))}")
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != CIFAR_PIXELS:
        raise DataError(f"{path}: 'data' is {data.dtype} {data.shape}, expected uint8 "
                        f"(N, {CIFAR_PIXELS})")
    labels = np.asarray(labels, dtype=np.int64)
    if labels.shape != (data.shape[0],):
        raise DataError(f"{path}: {data.shape[0]:,} images but {labels.size:,} labels")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(f"{path} has label {labels.max()}; expected 0..{num_classes - 1}")
    images = np.ascontiguousarray(data).reshape(-1, 3, 32, 32)
    return Split(torch.from_numpy(images), torch.from_numpy(labels))


def _concat(splits: list[Split]) -> Split:
    return Split(torch.cat([s.images for s in splits]), torch.cat([s.labels for s in splits]))


def _load_cifar(name: str, data_dir: Path, **kw) -> Dataset:
    spec = CIFAR[name]
    fmt, folder = locate_cifar(name, Path(data_dir))
    n = len(spec.classes)
    if fmt == "binary":
        train_files = [folder / f for f in spec.bin_train]
        test_files = [folder / f for f in spec.bin_test]

        def read():
            train = _concat([read_cifar_bin(f, spec.label_bytes, n) for f in train_files])
            test = _concat([read_cifar_bin(f, spec.label_bytes, n) for f in test_files])
            classes, notes = _class_names(folder / spec.bin_names, spec)
            return train, test, classes, notes
    else:
        train_files = [folder / f for f in spec.py_train]
        test_files = [folder / f for f in spec.py_test]

        def read():
            train = _concat([read_cifar_pickle(f, spec.py_labels, n) for f in train_files])
            test = _concat([read_cifar_pickle(f, spec.py_labels, n) for f in test_files])
            meta_path = folder / spec.py_meta
            names = None
            if meta_path.is_file():
                names = _plain_keys(safe_unpickle(meta_path), meta_path).get(spec.py_names)
            classes, notes = _class_names(meta_path, spec, names)
            return train, test, classes, notes

    meta_file = folder / (spec.bin_names if fmt == "binary" else spec.py_meta)
    files = train_files + test_files + ([meta_file] if meta_file.is_file() else [])
    return _named_dataset(name, files, folder, read, data_dir=Path(data_dir),
                          fmt=f"cifar-{fmt}", **kw)


@source("cifar10")
def load_cifar10(data_dir: Path, *, seed: int = 0, skip_corrupt: bool = False,
                 cache: bool = True, image_size=None, channels=None, **_: object) -> Dataset:
    """CIFAR-10 (Krizhevsky 2009): 50,000 train / 10,000 test, 32×32 RGB, 10 classes.

    Reads ``cifar-10-batches-bin/`` (preferred) or ``cifar-10-batches-py/`` in ``data_dir`` or
    ``data_dir/cifar10``, or extracts ``cifar-10-binary.tar.gz`` / ``cifar-10-python.tar.gz``
    found there on first use.
    """
    return _load_cifar("cifar10", Path(data_dir), cache=cache, image_size=image_size,
                       channels=channels)


@source("cifar100")
def load_cifar100(data_dir: Path, *, seed: int = 0, skip_corrupt: bool = False,
                  cache: bool = True, image_size=None, channels=None, **_: object) -> Dataset:
    """CIFAR-100 (Krizhevsky 2009): 50,000 train / 10,000 test, 32×32 RGB, 100 fine classes.

    Reads ``cifar-100-binary/`` (preferred) or ``cifar-100-python/`` in ``data_dir`` or
    ``data_dir/cifar100``, or extracts the matching ``.tar.gz`` found there on first use.
    """
    return _load_cifar("cifar100", Path(data_dir), cache=cache, image_size=image_size,
                       channels=channels)


def source_status(name: str, data_dir: Path) -> str:
    """'found', 'archive (extracted on first use)', 'missing' or 'embedded' — without loading
    or extracting anything (``cnnlab data list``)."""
    data_dir = Path(data_dir)
    if name == "digits":
        return "embedded"
    if name in CIFAR:
        spec = CIFAR[name]
        for base in _cifar_bases(name, data_dir):
            if (_complete(base / spec.bin_dir, spec.bin_train + spec.bin_test)
                    or _complete(base / spec.py_dir, spec.py_train + spec.py_test)):
                return "found"
        if any((base / a).is_file() for base in _cifar_bases(name, data_dir)
               for a in spec.archives):
            return "archive (extracted on first use)"
        return "missing"
    subdirs = {"mnist": ("mnist", "MNIST/raw"), "fashion-mnist": ("fashion-mnist",
                                                                  "FashionMNIST/raw")}
    try:
        locate_idx(name, data_dir, subdirs.get(name, (name,)))
    except DataError:
        return "missing"
    return "found"
