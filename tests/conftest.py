"""Shared fixtures: tiny synthetic datasets (image folders, CIFAR pickles, MNIST IDX files) and one trained run.

Everything is built in temporary folders; the decode cache and the dataset look-up folders are redirected there
too, so the suite never reads or writes the user's ``~/.cache/imgclf``.
"""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]

# Three well separated colours: a model sees the class in the mean pixel, so one or two epochs can learn it.
COLOURS = {"blue": (40, 60, 220), "green": (40, 200, 60), "red": (220, 40, 40)}
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def data_root() -> Path:
    """``../shared/data`` (the real datasets) or skip the calling test with the reason."""
    root = (REPO.parent / "shared" / "data").resolve()
    if not root.is_dir():
        pytest.skip(f"real data not found at {root} (expected ../shared/data next to the repository)")
    return root


def real_dataset(name: str) -> Path:
    """A folder under ``data_root()`` or skip naming it."""
    path = data_root() / name
    if not path.is_dir():
        pytest.skip(f"real dataset {name!r} not found at {path}")
    return path


@pytest.fixture(autouse=True, scope="session")
def _isolated_env(tmp_path_factory):
    """Keep the decode cache and dataset look-ups inside a temporary folder; plots off-screen."""
    mp = pytest.MonkeyPatch()
    mp.setenv("IMGCLF_CACHE", str(tmp_path_factory.mktemp("imgclf-cache")))
    mp.delenv("IMGCLF_DATA", raising=False)
    mp.setenv("MPLBACKEND", "Agg")
    mp.setenv("COLUMNS", "200")  # rich tables: wide enough that names are not cut in CLI output
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # see TRAINED_KW: tiny tensors on a shared machine run fastest on one thread
    yield
    torch.set_num_threads(threads)
    mp.undo()


# image folders ---------------------------------------------------------------------------------------------------

def colour_image(colour: tuple[int, int, int], size: int | tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """An (H, W, 3) uint8 image of ``colour`` with mild noise."""
    h, w = (size, size) if isinstance(size, int) else size
    noise = rng.normal(0, 20, (h, w, 3))
    return np.clip(np.array(colour, dtype=np.float64)[None, None] + noise, 0, 255).astype(np.uint8)


def make_folder_dataset(root: Path, classes: tuple[str, ...] = ("blue", "green", "red"), per_class: int = 12,
                        sizes: tuple[int, ...] = (16, 20, 24), seed: int = 0, ext: str = ".png") -> Path:
    """``root/CLASS/NAME.png`` images of each class's colour, sides cycling through ``sizes``."""
    rng = np.random.default_rng(seed)
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            side = sizes[i % len(sizes)]
            Image.fromarray(colour_image(COLOURS[c], (side, side + i % 3), rng)).save(root / c / f"{c}_{i:02d}{ext}")
    return root


@pytest.fixture
def folder_dataset(tmp_path) -> callable:
    """Factory: ``folder_dataset(name="photos", **kwargs)`` makes a synthetic class-folder dataset in tmp_path."""

    def make(name: str = "photos", **kwargs) -> Path:
        return make_folder_dataset(tmp_path / name, **kwargs)

    return make


# built-in formats ------------------------------------------------------------------------------------------------

def cifar_images(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(N, 3072) uint8 rows in CIFAR's layout (R plane, G plane, B plane), colour depends on the label."""
    n = len(labels)
    base = np.stack([(labels * 25) % 256, (255 - labels * 25) % 256, (labels * 70) % 256], axis=1)
    img = base[:, :, None, None] + rng.normal(0, 10, (n, 3, 32, 32))
    return np.clip(img, 0, 255).astype(np.uint8).reshape(n, 3072)


def write_cifar10(folder: Path, per_batch: int = 20, n_test: int = 20, seed: int = 0,
                  classes: list[str] | None = None) -> Path:
    """A tiny CIFAR-10 in the official python layout, pickled as the official files are (protocol 2, bytes keys)."""
    classes = classes or CIFAR10_CLASSES
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    batches = [(f"data_batch_{i}", per_batch) for i in range(1, 6)] + [("test_batch", n_test)]
    for name, n in batches:
        labels = np.arange(n) % len(classes)
        rng.shuffle(labels)
        batch = {b"batch_label": name.encode(), b"labels": labels.tolist(), b"data": cifar_images(labels, rng),
                 b"filenames": [f"img_{i}.png".encode() for i in range(n)]}
        write_pickle(folder / name, batch)
    write_pickle(folder / "batches.meta", {b"num_cases_per_batch": per_batch, b"num_vis": 3072,
                                           b"label_names": [c.encode() for c in classes]})
    return folder


def write_pickle(path: Path, obj) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def write_idx(path: Path, array: np.ndarray) -> None:
    """An IDX file of unsigned bytes (gzipped when the name ends in .gz)."""
    header = struct.pack(">BBBB", 0, 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


def write_mnist(folder: Path, n_train: int = 30, n_test: int = 10, seed: int = 0) -> Path:
    """A tiny MNIST-like set of the four official gzipped IDX files."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = (np.arange(n) % 10).astype(np.uint8)
        images = np.clip(labels[:, None, None] * 25 + rng.normal(0, 5, (n, 28, 28)), 0, 255).astype(np.uint8)
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return folder


# one trained run, shared ---------------------------------------------------------------------------------------

# one torch thread: on a shared 2-core machine, two spinning OpenMP threads per tiny step cost more than they give
TRAINED_KW = {"image_size": 16, "epochs": 1, "model": "cnn3", "batch_size": 8, "val_fraction": 0.2, "progress": False,
              "threads": 1}


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> dict:
    """A cnn3 run trained once for one epoch on a 3-colour synthetic folder dataset (16 px).

    Returns a dict with ``run_dir`` (Path), ``data`` (the dataset folder), ``runs_dir`` and ``metrics``.
    Tests must not modify the run folder (copy it first).
    """
    from imgclf.training.api import train

    base = tmp_path_factory.mktemp("trained")
    data = make_folder_dataset(base / "photos")
    result = train(dataset=f"folder:{data}", runs_dir=str(base / "runs"), name="shared", **TRAINED_KW)
    return {"run_dir": result.run_dir, "data": data, "runs_dir": base / "runs", "metrics": result.metrics}
