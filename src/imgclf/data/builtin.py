"""Built-in datasets (CIFAR-10/100, MNIST, Fashion-MNIST): where they are looked for, reading, downloading.

Look-up order: ``--data-dir``, then ``$IMGCLF_DATA``, then ``~/.cache/imgclf``; in each, the files may sit in
the folder itself or in a sub-folder named after the dataset. A local copy is checked by structure (keys,
shapes, label range), not by the checksum of the full release, so subsets work. If no copy is found the
official archive is downloaded, verified against its MD5 and unpacked into the first look-up folder.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imgclf.data.dataset import Dataset, Pool
from imgclf.errors import ImgclfError


@dataclass(frozen=True)
class Remote:
    url: str
    md5: str
    filename: str


@dataclass(frozen=True)
class BuiltinSpec:
    name: str
    description: str
    folder_names: tuple[str, ...]  # sub-folders of a data dir that may hold it
    remotes: tuple[Remote, ...]
    reader: Callable[[Path], Dataset]
    finder: Callable[[Path], Path | None]  # the folder holding the files, if present under a root


def default_data_dirs(data_dir: str | Path | None = None) -> list[Path]:
    """The folders searched for dataset files, in order."""
    dirs = []
    if data_dir:
        dirs.append(Path(data_dir).expanduser())
    if os.environ.get("IMGCLF_DATA"):
        dirs.append(Path(os.environ["IMGCLF_DATA"]).expanduser())
    dirs.append(Path(os.environ.get("IMGCLF_CACHE", "~/.cache/imgclf")).expanduser())
    return dirs


# Reading --------------------------------------------------------------------------------------------------------

class _SafeUnpickler(pickle.Unpickler):
    """Unpickles the CIFAR batches (dicts of numpy arrays, lists and bytes) and nothing that can run code."""

    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
                ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}")


def _load_pickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            obj = _SafeUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError) as exc:
        raise ImgclfError(f"{path}: not a valid CIFAR batch ({exc})") from None
    if not isinstance(obj, dict):
        raise ImgclfError(f"{path}: not a valid CIFAR batch (expected a dict)")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _cifar_batch(path: Path, label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    d = _load_pickle(path)
    for key in ("data", label_key):
        if key not in d:
            raise ImgclfError(f"{path}: CIFAR batch without the key {key!r}")
    data = np.asarray(d["data"], dtype=np.uint8)
    labels = np.asarray(d[label_key], dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise ImgclfError(f"{path}: expected data of shape (N, 3072) and N labels, got {data.shape} and {len(labels)}")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise ImgclfError(f"{path}: labels outside 0..{num_classes - 1}")
    return data.reshape(-1, 3, 32, 32), labels


def _names(meta: dict, key: str) -> list[str]:
    return [n.decode() if isinstance(n, bytes) else str(n) for n in meta[key]]


def _pool(images: np.ndarray, labels: np.ndarray, prefix: str) -> Pool:
    return Pool(np.ascontiguousarray(images), labels, np.array([f"{prefix}/{i}" for i in range(len(labels))]))


def read_cifar10(folder: Path) -> Dataset:
    meta = _load_pickle(folder / "batches.meta")
    classes = _names(meta, "label_names")
    parts = [_cifar_batch(folder / f"data_batch_{i}", "labels", len(classes)) for i in range(1, 6)]
    train = _pool(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), "train")
    test = _pool(*_cifar_batch(folder / "test_batch", "labels", len(classes)), "test")
    return Dataset("cifar10", classes, {"train": train, "test": test}, source=str(folder))


def read_cifar100(folder: Path) -> Dataset:
    classes = _names(_load_pickle(folder / "meta"), "fine_label_names")
    train = _pool(*_cifar_batch(folder / "train", "fine_labels", len(classes)), "train")
    test = _pool(*_cifar_batch(folder / "test", "fine_labels", len(classes)), "test")
    return Dataset("cifar100", classes, {"train": train, "test": test}, source=str(folder))


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as exc:
        raise ImgclfError(f"{path}: unreadable IDX file ({exc})") from None
    if len(raw) < 8 or raw[0] != 0 or raw[1] != 0 or raw[2] != 8:
        raise ImgclfError(f"{path}: not an IDX file of unsigned bytes")
    ndim = raw[3]
    dims = np.frombuffer(raw, dtype=">u4", count=ndim, offset=4).astype(np.int64)
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ImgclfError(f"{path}: IDX size mismatch, header says {tuple(dims)}, file holds {data.size} values")
    return data.reshape(tuple(dims)).copy()  # np.frombuffer is read-only, which torch.from_numpy warns about


MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def _find_idx(folder: Path, stem: str) -> Path:
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.is_file():
            return candidate
    raise ImgclfError(f"{folder}: missing {stem}.gz")


def _read_mnist_like(folder: Path, name: str, classes: list[str]) -> Dataset:
    pools = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images = _read_idx(_find_idx(folder, f"{prefix}-images-idx3-ubyte"))
        labels = _read_idx(_find_idx(folder, f"{prefix}-labels-idx1-ubyte")).astype(np.int64)
        if images.ndim != 3 or len(images) != len(labels):
            raise ImgclfError(f"{folder}: {split} images {images.shape} do not match {len(labels)} labels")
        if len(labels) and (labels.min() < 0 or labels.max() >= len(classes)):
            raise ImgclfError(f"{folder}: {split} labels outside 0..{len(classes) - 1}")
        pools[split] = _pool(images[:, None], labels, split)
    return Dataset(name, classes, pools, digits=name == "mnist", source=str(folder))


FASHION_CLASSES = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle-boot"]


def _finder(required: tuple[str, ...], subdirs: tuple[str, ...]) -> Callable[[Path], Path | None]:
    def find(root: Path) -> Path | None:
        for sub in ("", *subdirs):
            folder = root / sub if sub else root
            if all((folder / r).is_file() or (folder / f"{r}.gz").is_file() for r in required):
                return folder
        return None

    return find


_MNIST_MIRROR = "https://ossci-datasets.s3.amazonaws.com/mnist/"
_FASHION_MIRROR = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"

BUILTINS: dict[str, BuiltinSpec] = {
    "cifar10": BuiltinSpec(
        "cifar10", "CIFAR-10: 60,000 32x32 colour images in 10 classes", ("cifar10", "cifar-10"),
        (Remote("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a",
                "cifar-10-python.tar.gz"),),
        read_cifar10,
        _finder(("batches.meta", "data_batch_1", "test_batch"),
                ("cifar-10-batches-py", "cifar10/cifar-10-batches-py", "cifar-10/cifar-10-batches-py",
                 "cifar-10-mini/cifar-10-batches-py")),
    ),
    "cifar100": BuiltinSpec(
        "cifar100", "CIFAR-100: 60,000 32x32 colour images in 100 classes", ("cifar100", "cifar-100"),
        (Remote("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85",
                "cifar-100-python.tar.gz"),),
        read_cifar100,
        _finder(("meta", "train", "test"), ("cifar-100-python", "cifar100/cifar-100-python",
                                            "cifar-100/cifar-100-python")),
    ),
    "mnist": BuiltinSpec(
        "mnist", "MNIST: 70,000 28x28 handwritten digits", ("mnist",),
        tuple(Remote(_MNIST_MIRROR + f + ".gz", md5, f + ".gz") for f, md5 in zip(MNIST_FILES, (
            "f68b3c2dcbeaaa9fbdd348bbdeb94873", "d53e105ee54ea40749a09fcbcd1e9432",
            "9fb629c4189551a2d022fa330f9573f3", "ec29112dd5afa0611ce80d1b7f02629c"), strict=True)),
        lambda folder: _read_mnist_like(folder, "mnist", [str(i) for i in range(10)]),
        _finder(MNIST_FILES, ("mnist", "MNIST/raw")),
    ),
    "fashion-mnist": BuiltinSpec(
        "fashion-mnist", "Fashion-MNIST: 70,000 28x28 grayscale clothing images in 10 classes",
        ("fashion-mnist", "fashion_mnist"),
        tuple(Remote(_FASHION_MIRROR + f + ".gz", md5, f + ".gz") for f, md5 in zip(MNIST_FILES, (
            "8d4fb7e6c68d591d4c3dfef9ec88bf0d", "25c81989df183df01b3e8a0aad5dffbe",
            "bef4ecab320f06d8554ea6380940ec79", "bb300cfdad3c16e7a12a480ee83cd310"), strict=True)),
        lambda folder: _read_mnist_like(folder, "fashion-mnist", FASHION_CLASSES),
        _finder(MNIST_FILES, ("fashion-mnist", "fashion_mnist", "FashionMNIST/raw")),
    ),
}


def locate(name: str, data_dir: str | Path | None = None) -> Path | None:
    """The folder holding a built-in dataset's files, or None if no look-up folder has them."""
    spec = BUILTINS[name]
    for root in default_data_dirs(data_dir):
        for base in (root, *(root / f for f in spec.folder_names)):
            found = spec.finder(base)
            if found is not None:
                return found
    return None


def load_builtin(name: str, data_dir: str | Path | None = None, download: bool = True) -> Dataset:
    """Read a built-in dataset, downloading it (with checksum checks) if no local copy is found."""
    spec = BUILTINS[name]
    folder = locate(name, data_dir)
    if folder is None:
        target = default_data_dirs(data_dir)[0] / spec.folder_names[0]
        if not download:
            raise ImgclfError(_missing_message(spec, data_dir))
        try:
            fetch(spec, target)
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            raise ImgclfError(f"{_missing_message(spec, data_dir)} (download failed: {_reason(exc)})") from None
        folder = locate(name, data_dir)
        if folder is None:
            raise ImgclfError(f"{name}: downloaded into {target} but the expected files are not there")
    return spec.reader(folder)


def _reason(exc: Exception) -> str:
    return str(getattr(exc, "reason", None) or exc).splitlines()[0]


def _missing_message(spec: BuiltinSpec, data_dir: str | Path | None) -> str:
    dirs = default_data_dirs(data_dir)
    files = ", ".join(r.filename for r in spec.remotes)
    return (f"{spec.name} not found in {', '.join(str(d) for d in dirs)}; "
            f"put {files} (or the unpacked files) into {dirs[0] / spec.folder_names[0]} or pass --data-dir")


# Downloading -----------------------------------------------------------------------------------------------------

def file_digest(path: Path, algorithm: str = "sha256", chunk: int = 1 << 20) -> str:
    """Hex digest of a file's bytes, read in chunks (md5 for the official archives, sha256 elsewhere)."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def md5sum(path: Path) -> str:
    return file_digest(path, "md5")


def download(url: str, dest: Path, md5: str | None = None, timeout: float = 30.0, progress: bool = True) -> Path:
    """Download ``url`` to ``dest`` through a temporary file, verifying the MD5 before moving it in place.

    Raises:
        ImgclfError: on a checksum mismatch (the partial file is removed).
        urllib.error.URLError / OSError: when the host cannot be reached.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.is_file() and (md5 is None or md5sum(dest) == md5):
        return dest
    request = urllib.request.Request(url, headers={"User-Agent": "imgclf"})
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=".part-")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(request, timeout=timeout) as response:
            total = int(response.headers.get("Content-Length") or 0)
            _copy_with_progress(response, out, total, dest.name, progress)
        if md5 is not None and (got := md5sum(tmp)) != md5:
            raise ImgclfError(f"{url}: checksum mismatch (md5 {got}, expected {md5}); the file was discarded")
        tmp.replace(dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def _copy_with_progress(src: io.BufferedIOBase, dst: io.BufferedIOBase, total: int, label: str, show: bool) -> None:
    if not show:
        shutil.copyfileobj(src, dst, 1 << 20)
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                  TransferSpeedColumn(), transient=True) as bar:
        task = bar.add_task(f"downloading {label}", total=total or None)
        while block := src.read(1 << 20):
            dst.write(block)
            bar.update(task, advance=len(block))


def fetch(spec: BuiltinSpec, target: Path, progress: bool = True) -> None:
    """Download and unpack every file of a built-in dataset into ``target``."""
    target.mkdir(parents=True, exist_ok=True)
    for remote in spec.remotes:
        path = download(remote.url, target / remote.filename, remote.md5, progress=progress)
        if remote.filename.endswith((".tar.gz", ".tgz")):
            _safe_extract(path, target)


def _safe_extract(archive: Path, target: Path) -> None:
    with tarfile.open(archive, "r:gz") as tar:
        root = target.resolve()
        for member in tar.getmembers():
            dest = (target / member.name).resolve()
            if not dest.is_relative_to(root) or member.issym() or member.islnk():
                raise ImgclfError(f"{archive}: refusing to extract {member.name!r} (outside the target folder)")
        tar.extractall(target)
