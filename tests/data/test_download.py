"""Downloads against a local HTTP server: resume, checksum → next mirror, all-fail message."""

from __future__ import annotations

import gzip
import hashlib

import pytest

from cnnlab.cli import main
from cnnlab.data import download as dl
from cnnlab.errors import DataError

BODY = bytes(range(256)) * 400  # 100 KiB
MD5 = hashlib.md5(BODY).hexdigest()


def test_fetch_plain(tmp_path, http_server):
    http_server.files["/f.bin"] = BODY
    dest = dl.fetch([http_server.url + "/f.bin"], tmp_path / "f.bin", MD5, progress=False)
    assert dest.read_bytes() == BODY and not (tmp_path / "f.bin.part").exists()


def test_resume_uses_a_range_request(tmp_path, http_server):
    http_server.files["/f.bin"] = BODY
    (tmp_path / "f.bin.part").write_bytes(BODY[:30000])
    dl.fetch([http_server.url + "/f.bin"], tmp_path / "f.bin", MD5, progress=False)
    assert (tmp_path / "f.bin").read_bytes() == BODY
    assert http_server.requests == [("/f.bin", "bytes=30000-")]


def test_server_ignoring_range_restarts_cleanly(tmp_path, http_server):
    http_server.files["/f.bin"] = BODY
    http_server.honour_range = False
    (tmp_path / "f.bin.part").write_bytes(b"stale junk" * 10)
    dl.fetch([http_server.url + "/f.bin"], tmp_path / "f.bin", MD5, progress=False)
    assert (tmp_path / "f.bin").read_bytes() == BODY  # no junk prefix kept


def test_complete_part_file_is_accepted_after_416(tmp_path, http_server):
    http_server.files["/f.bin"] = BODY
    (tmp_path / "f.bin.part").write_bytes(BODY)
    dl.fetch([http_server.url + "/f.bin"], tmp_path / "f.bin", MD5, progress=False)
    assert (tmp_path / "f.bin").read_bytes() == BODY


def test_dropped_connection_then_next_mirror_resumes(tmp_path, http_server):
    http_server.files["/a/f.bin"] = BODY
    http_server.files["/b/f.bin"] = BODY
    http_server.truncate["/a/f.bin"] = 40000
    urls = [http_server.url + "/a/f.bin", http_server.url + "/b/f.bin"]
    dl.fetch(urls, tmp_path / "f.bin", MD5, progress=False)
    assert (tmp_path / "f.bin").read_bytes() == BODY
    assert http_server.requests[0] == ("/a/f.bin", None)
    assert http_server.requests[1] == ("/b/f.bin", "bytes=40000-")


def test_checksum_mismatch_deletes_and_tries_next_mirror(tmp_path, http_server):
    http_server.files["/bad/f.bin"] = b"tampered" + BODY[8:]
    http_server.files["/good/f.bin"] = BODY
    urls = [http_server.url + "/bad/f.bin", http_server.url + "/good/f.bin"]
    dl.fetch(urls, tmp_path / "f.bin", MD5, progress=False)
    assert (tmp_path / "f.bin").read_bytes() == BODY
    assert [r[0] for r in http_server.requests] == ["/bad/f.bin", "/good/f.bin"]
    assert http_server.requests[1][1] is None  # the bad bytes were not resumed from


def test_all_mirrors_fail_lists_every_url(tmp_path, http_server):
    http_server.files["/bad/f.bin"] = b"x" * 100
    urls = [http_server.url + "/missing/f.bin", http_server.url + "/bad/f.bin",
            "http://127.0.0.1:9/f.bin"]  # port 9 (discard): connection refused
    with pytest.raises(DataError) as err:
        dl.fetch(urls, tmp_path / "f.bin", MD5, timeout=5, progress=False)
    msg = str(err.value)
    assert "HTTP 404" in msg and "checksum mismatch" in msg
    assert all(u in msg for u in urls)
    assert not (tmp_path / "f.bin").exists() and not (tmp_path / "f.bin.part").exists()


def _fake_remote(monkeypatch, bodies: dict[str, bytes], mirrors, subdir="fakeset"):
    files = tuple(dl.RemoteFile(name, hashlib.md5(body).hexdigest())
                  for name, body in bodies.items())
    monkeypatch.setitem(dl.REMOTES, "fakeset", dl.Remote("fakeset", subdir, tuple(mirrors), files))


def test_download_named_set_with_mirrors_table(tmp_path, http_server, monkeypatch):
    bodies = {"one.gz": gzip.compress(b"1" * 1000), "two.gz": gzip.compress(b"2" * 1000)}
    for name, body in bodies.items():
        http_server.files[f"/m2/{name}"] = body
    _fake_remote(monkeypatch, bodies, [http_server.url + "/m1/", http_server.url + "/m2/"])
    paths = dl.download("fakeset", tmp_path, progress=False)
    assert [p.name for p in paths] == ["one.gz", "two.gz"]
    assert (tmp_path / "fakeset" / "two.gz").read_bytes() == bodies["two.gz"]
    n = len(http_server.requests)
    dl.download("fakeset", tmp_path, progress=False)  # verified files are not fetched again
    assert len(http_server.requests) == n


def test_download_failure_says_copy_by_hand(tmp_path, monkeypatch):
    _fake_remote(monkeypatch, {"one.gz": b"abc"}, ["http://127.0.0.1:9/"])
    with pytest.raises(DataError) as err:
        dl.download("fakeset", tmp_path, progress=False, timeout=5)
    msg = str(err.value)
    assert "http://127.0.0.1:9/one.gz" in msg
    assert "by hand" in msg and str(tmp_path / "fakeset") in msg and "--data-dir" in msg


def test_unknown_name():
    with pytest.raises(DataError, match="did you mean 'mnist'"):
        dl.download("minst")


def test_recompressed_mnist_gz_counts_as_verified(tmp_path):
    raw = b"idx bytes" * 100
    remote = dl.RemoteFile("x.gz", "0" * 32, hashlib.md5(raw).hexdigest())
    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(raw, compresslevel=1))
    assert dl.verified(path, remote)
    path.write_bytes(gzip.compress(raw + b"!"))
    assert not dl.verified(path, remote)


def test_published_checksums_are_well_formed():
    for remote in dl.REMOTES.values():
        assert remote.mirrors and remote.files
        for f in remote.files:
            assert len(f.md5) == 32 and int(f.md5, 16) >= 0
    assert dl.REMOTES["mnist"].files[0].md5 == "f68b3c2dcbeaaa9fbdd348bbdeb94873"
    assert dl.REMOTES["cifar10"].files[0].name == "cifar-10-binary.tar.gz"


def test_cli_download_then_load(tmp_path, http_server, monkeypatch, fake, capsys):
    src = tmp_path / "src"
    ref = fake.cifar10_bin(src)
    archive = fake.tar(ref["folder"], tmp_path / "cifar-10-binary.tar.gz")
    body = archive.read_bytes()
    http_server.files["/kriz/cifar-10-binary.tar.gz"] = body
    monkeypatch.setitem(dl.REMOTES, "cifar10", dl.Remote(
        "cifar10", "", (http_server.url + "/kriz/",),
        (dl.RemoteFile("cifar-10-binary.tar.gz", hashlib.md5(body).hexdigest()),)))
    data_dir = tmp_path / "data"
    assert main(["data", "download", "cifar10", "--data-dir", str(data_dir)]) == 0
    assert (data_dir / "cifar-10-batches-bin" / "data_batch_1.bin").is_file()  # extracted
    assert main(["data", "info", "cifar10", "--data-dir", str(data_dir), "--json"]) == 0
    assert '"count": 60' in capsys.readouterr().out


def test_cli_download_failure_is_one_line_exit_2(tmp_path, monkeypatch, capsys):
    _fake_remote(monkeypatch, {"one.gz": b"abc"}, ["http://127.0.0.1:9/"])
    code = main(["data", "download", "fakeset", "--data-dir", str(tmp_path), "--timeout", "5"])
    last = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress log lines
    assert code == 2 and last.startswith("error: could not download fakeset")
    assert "http://127.0.0.1:9/one.gz" in last and "by hand" in last
