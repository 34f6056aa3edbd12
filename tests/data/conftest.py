"""Fake data sets in their canonical formats, built in tmp_path, and a local HTTP server."""

from __future__ import annotations

import gzip
import io
import pickle
import struct
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


class Fake:
    """Writers for every format the data layer reads; all arrays are seeded."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.rng = np.random.default_rng(0)

    # -- IDX (MNIST, Fashion-MNIST) --------------------------------------------------------------
    @staticmethod
    def idx_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
        magic = magic if magic is not None else 0x800 + array.ndim
        header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
        return header + array.astype(np.uint8).tobytes()

    def write_idx(self, path: Path, array: np.ndarray, gz: bool = True,
                  magic: int | None = None) -> Path:
        data = self.idx_bytes(array, magic)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(gzip.compress(data) if gz else data)
        return path

    def mnist(self, folder: Path, n_train: int = 30, n_test: int = 10, gz: bool = True,
              size: int = 28) -> dict[str, np.ndarray]:
        arrays = {
            "train-images-idx3-ubyte": self.rng.integers(0, 256, (n_train, size, size)),
            "train-labels-idx1-ubyte": np.arange(n_train) % 10,
            "t10k-images-idx3-ubyte": self.rng.integers(0, 256, (n_test, size, size)),
            "t10k-labels-idx1-ubyte": (np.arange(n_test) * 3) % 10,
        }
        for name, arr in arrays.items():
            self.write_idx(folder / (name + (".gz" if gz else "")), arr, gz=gz)
        return arrays

    # -- CIFAR ----------------------------------------------------------------------------------
    def cifar_records(self, n: int, classes: int) -> tuple[np.ndarray, np.ndarray]:
        images = self.rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
        labels = (np.arange(n) * 7) % classes
        return images, labels

    def cifar10_bin(self, data_dir: Path, per_batch: int = 12, n_test: int = 10) -> dict:
        folder = data_dir / "cifar-10-batches-bin"
        folder.mkdir(parents=True)
        out = {"train_images": [], "train_labels": []}
        for i in range(1, 6):
            images, labels = self.cifar_records(per_batch, 10)
            self._write_bin(folder / f"data_batch_{i}.bin", images, [labels])
            out["train_images"].append(images)
            out["train_labels"].append(labels)
        images, labels = self.cifar_records(n_test, 10)
        self._write_bin(folder / "test_batch.bin", images, [labels])
        (folder / "batches.meta.txt").write_text(
            "\n".join(f"class{i}" for i in range(10)) + "\n\n")
        return {"train_images": np.concatenate(out["train_images"]),
                "train_labels": np.concatenate(out["train_labels"]),
                "test_images": images, "test_labels": labels, "folder": folder}

    def cifar100_bin(self, data_dir: Path, n_train: int = 200, n_test: int = 100) -> dict:
        folder = data_dir / "cifar-100-binary"
        folder.mkdir(parents=True)
        out = {"folder": folder}
        for split, n in (("train", n_train), ("test", n_test)):
            images, fine = self.cifar_records(n, 100)
            coarse = fine // 5
            self._write_bin(folder / f"{split}.bin", images, [coarse, fine])
            out[f"{split}_images"], out[f"{split}_labels"] = images, fine
        (folder / "fine_label_names.txt").write_text(
            "\n".join(f"fine{i}" for i in range(100)) + "\n")
        return out

    @staticmethod
    def _write_bin(path: Path, images: np.ndarray, label_rows: list[np.ndarray]) -> None:
        labels = np.stack(label_rows, 1).astype(np.uint8)
        path.write_bytes(np.concatenate([labels, images.reshape(len(images), -1)], 1).tobytes())

    def cifar10_py(self, data_dir: Path, per_batch: int = 12, n_test: int = 10,
                   protocol: int = 2) -> dict:
        folder = data_dir / "cifar-10-batches-py"
        folder.mkdir(parents=True)
        train_images, train_labels = [], []
        for i in range(1, 6):
            images, labels = self.cifar_records(per_batch, 10)
            self._pickle(folder / f"data_batch_{i}", {
                b"batch_label": b"training batch", b"labels": labels.tolist(),
                b"data": images.reshape(per_batch, -1), b"filenames": [b"x.png"] * per_batch},
                protocol)
            train_images.append(images)
            train_labels.append(labels)
        images, labels = self.cifar_records(n_test, 10)
        self._pickle(folder / "test_batch", {b"labels": labels.tolist(),
                                             b"data": images.reshape(n_test, -1)}, protocol)
        self._pickle(folder / "batches.meta",
                     {b"label_names": [f"py{i}".encode() for i in range(10)],
                      b"num_vis": 3072}, protocol)
        return {"train_images": np.concatenate(train_images),
                "train_labels": np.concatenate(train_labels),
                "test_images": images, "test_labels": labels, "folder": folder}

    def cifar100_py(self, data_dir: Path, n_train: int = 200, n_test: int = 100) -> dict:
        folder = data_dir / "cifar-100-python"
        folder.mkdir(parents=True)
        out = {}
        for split, n in (("train", n_train), ("test", n_test)):
            images, fine = self.cifar_records(n, 100)
            self._pickle(folder / split, {"data": images.reshape(n, -1),
                                          "fine_labels": fine.tolist(),
                                          "coarse_labels": (fine // 5).tolist()}, 4)
            out[f"{split}_images"], out[f"{split}_labels"] = images, fine
        self._pickle(folder / "meta", {"fine_label_names": [f"f{i}" for i in range(100)],
                                       "coarse_label_names": [f"c{i}" for i in range(20)]}, 4)
        return out

    @staticmethod
    def _pickle(path: Path, obj, protocol: int) -> None:
        path.write_bytes(pickle.dumps(obj, protocol=protocol))

    @staticmethod
    def tar(folder: Path, archive: Path, arcname: str | None = None) -> Path:
        with tarfile.open(archive, "w:gz") as tar:
            tar.add(folder, arcname=arcname or folder.name)
        return archive

    # -- image folders and zips ------------------------------------------------------------------
    def image_bytes(self, size=(8, 8), mode: str = "RGB", fmt: str = "PNG") -> bytes:
        h, w = size
        if mode == "L":
            arr = self.rng.integers(0, 256, (h, w), dtype=np.uint8)
        else:
            arr = self.rng.integers(0, 256, (h, w, 4 if mode == "RGBA" else 3), dtype=np.uint8)
        img = Image.fromarray(arr, "L" if mode == "L" else ("RGBA" if mode == "RGBA" else "RGB"))
        if mode == "P":
            img = img.convert("P", palette=Image.ADAPTIVE, colors=16)
        buf = io.BytesIO()
        img.save(buf, format=fmt)
        return buf.getvalue()

    def tree(self, root: Path, spec: dict[str, int], size=(8, 8), mode: str = "RGB",
             fmt: str = "PNG") -> Path:
        """``{"train/cat": 3, "test/cat": 1}`` → folders with that many images each."""
        ext = {"PNG": "png", "JPEG": "jpg", "BMP": "bmp"}[fmt]
        for folder, count in spec.items():
            (root / folder).mkdir(parents=True, exist_ok=True)
            for i in range(count):
                (root / folder / f"{i:03d}.{ext}").write_bytes(self.image_bytes(size, mode, fmt))
        return root

    def zip_tree(self, path: Path, spec: dict[str, int], size=(8, 8), mode: str = "RGB",
                 extra: dict[str, bytes] | None = None) -> Path:
        with zipfile.ZipFile(path, "w") as zf:
            for folder, count in spec.items():
                for i in range(count):
                    zf.writestr(f"{folder}/{i:03d}.png", self.image_bytes(size, mode))
            for name, data in (extra or {}).items():
                zf.writestr(name, data)
        return path


@pytest.fixture
def fake(tmp_path) -> Fake:
    return Fake(tmp_path)


# -- a local HTTP server for download tests --------------------------------------------------------

class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        srv = self.server
        rng = self.headers.get("Range")
        srv.requests.append((self.path, rng))
        body = srv.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        if self.path in srv.truncate:  # announce the whole file, send a part, hang up
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[:srv.truncate[self.path]])
            self.wfile.flush()
            self.close_connection = True
            return
        if rng and srv.honour_range:
            start = int(rng.split("=")[1].split("-")[0])
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            chunk = body[start:]
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            chunk = body
            self.send_response(200)
        self.send_header("Content-Length", str(len(chunk)))
        self.end_headers()
        self.wfile.write(chunk)

    def log_message(self, *args) -> None:  # keep test output clean
        pass


@pytest.fixture
def http_server(monkeypatch):
    """A server on 127.0.0.1 serving ``server.files`` (path → bytes); records requests."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy",
                "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.files = {}
    server.requests = []
    server.truncate = {}
    server.honour_range = True
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
