"""imgclf.data.builtin: CIFAR/MNIST readers, structure checks, safe unpickling, look-up order and downloads."""

from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import http.server
import os
import pickle
import socket
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest

from conftest import CIFAR10_CLASSES, cifar_images, real_dataset, write_cifar10, write_idx, write_mnist, write_pickle
from imgclf.data import builtin, load_dataset
from imgclf.data.builtin import BUILTINS, Remote, default_data_dirs, load_builtin, locate
from imgclf.errors import ImgclfError


def test_read_cifar10(tmp_path):
    folder = write_cifar10(tmp_path / "cifar-10-batches-py", per_batch=20, n_test=15)
    ds = load_builtin("cifar10", data_dir=tmp_path, download=False)
    assert ds.classes == CIFAR10_CLASSES
    assert len(ds.pools["train"]) == 100 and len(ds.pools["test"]) == 15
    assert ds.pools["train"].images.shape == (100, 3, 32, 32) and ds.pools["train"].images.dtype == np.uint8
    assert ds.channels == 3 and ds.image_size == 32 and ds.source == str(folder)
    assert ds.pools["train"].ids[0] == "train/0" and len(set(ds.pools["train"].ids)) == 100
    # the pixels are the pickled rows, reshaped as R, G, B planes
    with open(folder / "data_batch_1", "rb") as f:
        raw = pickle.load(f, encoding="bytes")
    np.testing.assert_array_equal(ds.pools["train"].images[:20], raw[b"data"].reshape(20, 3, 32, 32))
    np.testing.assert_array_equal(ds.pools["train"].labels[:20], raw[b"labels"])


def test_read_mnist(tmp_path):
    write_mnist(tmp_path / "mnist", n_train=30, n_test=10)
    ds = load_dataset("mnist", data_dir=tmp_path)
    assert ds.classes == [str(i) for i in range(10)] and ds.digits
    assert ds.pools["train"].images.shape == (30, 1, 28, 28) and len(ds.pools["test"]) == 10
    assert ds.pools["test"].labels.tolist() == list(range(10))


@pytest.mark.parametrize("name", ["cifar10", "mnist"])
def test_pools_are_writable_arrays(tmp_path, name):
    if name == "cifar10":
        write_cifar10(tmp_path / "cifar-10-batches-py")
    else:
        write_mnist(tmp_path / "mnist")
    ds = load_builtin(name, data_dir=tmp_path, download=False)
    for pool in ds.pools.values():  # torch.from_numpy warns about read-only arrays (np.frombuffer gives those)
        assert pool.images.flags.writeable and pool.labels.flags.writeable


def test_read_uncompressed_idx_and_fashion(tmp_path):
    folder = write_mnist(tmp_path / "fashion-mnist", n_train=20, n_test=10)
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    write_idx(folder / "t10k-labels-idx1-ubyte", (np.arange(10) % 10).astype(np.uint8))
    ds = load_builtin("fashion-mnist", data_dir=tmp_path, download=False)
    assert ds.classes[0] == "t-shirt" and not ds.digits and len(ds.pools["test"]) == 10


# structure checks -------------------------------------------------------------------------------------------

def _rewrite_batch(folder: Path, name: str, **changes):
    with open(folder / name, "rb") as f:
        batch = pickle.load(f, encoding="bytes")
    for key, value in changes.items():
        if value is None:
            del batch[key.encode()]
        else:
            batch[key.encode()] = value
    write_pickle(folder / name, batch)


@pytest.mark.parametrize(("changes", "expected"), [
    ({"data": np.zeros((20, 100), np.uint8)}, "expected data of shape (N, 3072)"),
    ({"labels": [10] * 20}, "labels outside 0..9"),
    ({"labels": [-1] + [0] * 19}, "labels outside 0..9"),
    ({"labels": [0] * 19}, "N labels"),
    ({"labels": None}, "without the key 'labels'"),
    ({"data": None}, "without the key 'data'"),
])
def test_cifar_structure_errors(tmp_path, changes, expected):
    folder = write_cifar10(tmp_path / "cifar-10-batches-py")
    _rewrite_batch(folder, "data_batch_3", **changes)
    with pytest.raises(ImgclfError) as err:
        load_builtin("cifar10", data_dir=tmp_path, download=False)
    msg = str(err.value)
    assert expected in msg and "data_batch_3" in msg and "\n" not in msg


def test_cifar_batch_that_is_not_a_dict(tmp_path):
    folder = write_cifar10(tmp_path / "cifar-10-batches-py")
    write_pickle(folder / "test_batch", [1, 2, 3])
    with pytest.raises(ImgclfError, match="test_batch: not a valid CIFAR batch"):
        load_builtin("cifar10", data_dir=tmp_path, download=False)


def test_mnist_structure_errors(tmp_path):
    folder = write_mnist(tmp_path / "mnist", n_train=30, n_test=10)
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.full(10, 12, np.uint8))
    with pytest.raises(ImgclfError, match="test labels outside 0..9"):
        load_builtin("mnist", data_dir=tmp_path, download=False)
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.zeros(9, np.uint8))
    with pytest.raises(ImgclfError, match="do not match 9 labels"):
        load_builtin("mnist", data_dir=tmp_path, download=False)
    header_says_10 = b"\x00\x00\x08\x01\x00\x00\x00\x0a\x01"  # one value given
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(header_says_10))
    with pytest.raises(ImgclfError, match="IDX size mismatch"):
        load_builtin("mnist", data_dir=tmp_path, download=False)
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(b"not gzip at all")
    with pytest.raises(ImgclfError, match="unreadable IDX file"):
        load_builtin("mnist", data_dir=tmp_path, download=False)


class _Exploit:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_restricted_unpickler_refuses_code(tmp_path):
    folder = write_cifar10(tmp_path / "cifar-10-batches-py")
    marker = tmp_path / "pwned"
    data = cifar_images(np.zeros(20, np.int64), np.random.default_rng(0))
    write_pickle(folder / "data_batch_1", {b"data": data, b"labels": [0] * 20, b"payload": _Exploit(marker)})
    assert b"system" in (folder / "data_batch_1").read_bytes()
    with pytest.raises(ImgclfError) as err:
        load_builtin("cifar10", data_dir=tmp_path, download=False)
    assert "refusing to unpickle" in str(err.value) and "system" in str(err.value)
    assert not marker.exists()


# look-up order ----------------------------------------------------------------------------------------------

def test_lookup_order(tmp_path, monkeypatch):
    given, env, cache = (write_cifar10(tmp_path / d / "cifar10" / "cifar-10-batches-py", per_batch=2, n_test=2)
                         for d in ("given", "env", "cache"))
    monkeypatch.setenv("IMGCLF_DATA", str(tmp_path / "env"))
    monkeypatch.setenv("IMGCLF_CACHE", str(tmp_path / "cache"))
    assert default_data_dirs(tmp_path / "given") == [tmp_path / "given", tmp_path / "env", tmp_path / "cache"]
    assert locate("cifar10", tmp_path / "given") == given
    assert locate("cifar10") == env
    monkeypatch.delenv("IMGCLF_DATA")
    assert locate("cifar10") == cache
    assert locate("cifar10", tmp_path / "nothing-here") == cache  # a --data-dir without the files falls through
    monkeypatch.delenv("IMGCLF_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_data_dirs() == [tmp_path / "home" / ".cache" / "imgclf"]
    assert locate("cifar10") is None
    home = write_cifar10(tmp_path / "home" / ".cache" / "imgclf" / "cifar-10-batches-py", per_batch=2, n_test=2)
    assert locate("cifar10") == home


def test_files_directly_in_the_data_dir(tmp_path):
    write_mnist(tmp_path / "flat")
    assert locate("mnist", tmp_path / "flat") == tmp_path / "flat"


def test_missing_without_download(tmp_path):
    with pytest.raises(ImgclfError) as err:
        load_builtin("cifar10", data_dir=tmp_path / "empty", download=False)
    msg = str(err.value)
    assert msg.startswith("cifar10 not found in") and "cifar-10-python.tar.gz" in msg
    assert f"into {tmp_path / 'empty' / 'cifar10'}" in msg and "\n" not in msg


# downloading ----------------------------------------------------------------------------------------------

@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    """Requests to the local test server must not go through a proxy from the environment."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def http_dir(tmp_path):
    """A local HTTP server on 127.0.0.1 (random port, in a thread) serving a folder; yields (folder, base url)."""
    folder = tmp_path / "served"
    folder.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield folder, f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def _cifar_archive(folder: Path, work: Path) -> tuple[Path, str]:
    write_cifar10(work / "cifar-10-batches-py", per_batch=4, n_test=6)
    archive = folder / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(work / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    return archive, hashlib.md5(archive.read_bytes()).hexdigest()


def _point_cifar10_at(monkeypatch, url: str, md5: str) -> None:
    spec = dataclasses.replace(BUILTINS["cifar10"], remotes=(Remote(url, md5, "cifar-10-python.tar.gz"),))
    monkeypatch.setitem(BUILTINS, "cifar10", spec)


def test_download_verifies_unpacks_and_loads(tmp_path, http_dir, monkeypatch):
    served, url = http_dir
    archive, md5 = _cifar_archive(served, tmp_path / "src")
    _point_cifar10_at(monkeypatch, url + archive.name, md5)
    target = tmp_path / "data"
    ds = load_builtin("cifar10", data_dir=target)
    assert len(ds.pools["train"]) == 20 and len(ds.pools["test"]) == 6 and ds.classes == CIFAR10_CLASSES
    assert (target / "cifar10" / "cifar-10-python.tar.gz").is_file()
    assert (target / "cifar10" / "cifar-10-batches-py" / "data_batch_5").is_file()
    assert not list((target / "cifar10").glob(".part-*"))
    # the next load finds the unpacked copy: no server needed
    _point_cifar10_at(monkeypatch, "http://127.0.0.1:9/none.tar.gz", md5)
    assert len(load_builtin("cifar10", data_dir=target).pools["test"]) == 6


def test_download_with_wrong_md5_leaves_nothing(tmp_path, http_dir, monkeypatch):
    served, url = http_dir
    archive, _ = _cifar_archive(served, tmp_path / "src")
    _point_cifar10_at(monkeypatch, url + archive.name, "0" * 32)
    target = tmp_path / "data"
    with pytest.raises(ImgclfError) as err:
        load_builtin("cifar10", data_dir=target)
    msg = str(err.value)
    assert "checksum mismatch" in msg and "0" * 32 in msg and "\n" not in msg
    assert not [p for p in target.rglob("*") if p.is_file()]  # no partial or unverified file left behind


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_server_gives_the_put_it_there_message(tmp_path, monkeypatch):
    _point_cifar10_at(monkeypatch, f"http://127.0.0.1:{_closed_port()}/cifar-10-python.tar.gz", "0" * 32)
    target = tmp_path / "data"
    with pytest.raises(ImgclfError) as err:
        load_builtin("cifar10", data_dir=target)
    msg = str(err.value)
    assert msg.startswith("cifar10 not found in") and "put cifar-10-python.tar.gz" in msg
    assert f"into {target / 'cifar10'}" in msg and "download failed" in msg and "\n" not in msg
    assert not [p for p in target.rglob("*") if p.is_file()]


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts open files through /proc/self/fd")
def test_failed_download_closes_its_temporary_file(tmp_path):
    url = f"http://127.0.0.1:{_closed_port()}/x.tar.gz"
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(3):
        with pytest.raises(OSError):
            builtin.download(url, tmp_path / "x.tar.gz", progress=False)
    assert len(os.listdir("/proc/self/fd")) == before
    assert not list(tmp_path.iterdir())


def test_missing_file_on_server(tmp_path, http_dir, monkeypatch):
    _, url = http_dir
    _point_cifar10_at(monkeypatch, url + "absent.tar.gz", "0" * 32)
    with pytest.raises(ImgclfError, match="download failed"):
        load_builtin("cifar10", data_dir=tmp_path / "data")


def test_archive_escaping_the_target_is_refused(tmp_path):
    evil = tmp_path / "evil.tar.gz"
    (tmp_path / "payload").write_text("x")
    with tarfile.open(evil, "w:gz") as tar:
        tar.add(tmp_path / "payload", arcname="../outside.txt")
    (tmp_path / "target").mkdir()
    with pytest.raises(ImgclfError, match="refusing to extract"):
        builtin._safe_extract(evil, tmp_path / "target")
    assert not (tmp_path / "outside.txt").exists()


# real data ----------------------------------------------------------------------------------------------------

@pytest.mark.realdata
def test_real_cifar10_mini():
    ds = load_builtin("cifar10", data_dir=real_dataset("cifar-10-mini"), download=False)
    assert len(ds.pools["train"]) == 5085 and len(ds.pools["test"]) == 1017
    assert ds.classes == CIFAR10_CLASSES
    assert set(np.unique(ds.pools["train"].labels)) == set(range(10))


@pytest.mark.realdata
def test_real_mnist():
    ds = load_builtin("mnist", data_dir=real_dataset("mnist"), download=False)
    assert len(ds.pools["train"]) == 60000 and len(ds.pools["test"]) == 10000
    assert ds.pools["train"].images.shape[1:] == (1, 28, 28)
    assert np.bincount(ds.pools["test"].labels).min() > 800
