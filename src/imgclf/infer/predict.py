"""Prediction on new images with the model's own preprocessing contract: run folders and exported files alike.

    imgclf predict runs/c10 cat.jpg
    imgclf predict model.onnx images/ --glob "*.jpg" --batch-size 64 --json > preds.jsonl
    imgclf predict model.int8.onnx https://example.org/cat.jpg --csv

Examples:
    >>> p = Predictor("runs/c10")  # or "model.onnx", "model.ts"  # doctest: +SKIP
    >>> p.predict(["cat.jpg"], top_k=3)[0]["label"]  # doctest: +SKIP
    'cat'
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from imgclf.data.images import IMAGE_EXTENSIONS, ImageError, PreprocessSpec, from_array, load_for_model
from imgclf.errors import ImgclfError

ImageInput = str | Path | bytes | np.ndarray | Image.Image
URL_PREFIXES = ("http://", "https://")
MAX_URL_BYTES = 20_000_000  # bytes, largest image fetched from a URL
URL_TIMEOUT = 10.0  # s, for the whole download


def is_url(item: object) -> bool:
    return isinstance(item, str) and item.lower().startswith(URL_PREFIXES)


def iter_inputs(items: Iterable[str | Path], pattern: str = "*") -> Iterator[str | Path]:
    """Files and URLs as given, and the image files of folders, streamed in a stable (sorted) order.

    Folders are walked one directory at a time, so a folder of a million images never sits in memory at once.
    """
    import fnmatch

    for item in items:
        if is_url(item):
            yield item
            continue
        p = Path(item)
        if not p.is_dir():
            yield p
            continue
        yield from _walk_sorted(p, lambda name: Path(name).suffix.lower() in IMAGE_EXTENSIONS
                                and fnmatch.fnmatch(name, pattern))


def _walk_sorted(folder: Path, keep) -> Iterator[Path]:
    """Files under ``folder`` in path order (as ``sorted(rglob)``), holding one directory listing at a time."""
    with os.scandir(folder) as it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        if entry.is_dir():
            yield from _walk_sorted(Path(entry.path), keep)
        elif entry.is_file() and keep(entry.name):
            yield Path(entry.path)


def expand_inputs(items: Iterable[str | Path], pattern: str = "*") -> list[str | Path]:
    """``iter_inputs`` as a list."""
    return list(iter_inputs(items, pattern))


def fetch_url(url: str, max_bytes: int = MAX_URL_BYTES, timeout: float = URL_TIMEOUT) -> bytes:
    """Download an http(s) URL, refusing more than ``max_bytes`` or more than ``timeout`` seconds in all.

    Raises:
        ImageError: one line naming the URL (HTTP status, too large, timed out, unreachable).
    """
    import urllib.error
    import urllib.request

    import imgclf

    if not is_url(url):
        raise ImageError(f"{url}: only http:// and https:// URLs are accepted")
    deadline = time.monotonic() + timeout
    request = urllib.request.Request(url, headers={"User-Agent": f"imgclf/{imgclf.__version__}"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            if length and length.isdigit() and int(length) > max_bytes:
                raise ImageError(f"{url}: too large ({int(length):,} bytes > limit {max_bytes:,})")
            chunks, size = [], 0
            while chunk := response.read(65536):
                size += len(chunk)
                if size > max_bytes:
                    raise ImageError(f"{url}: too large (more than {max_bytes:,} bytes)")
                if time.monotonic() > deadline:
                    raise ImageError(f"{url}: download timed out after {timeout:g} s")
                chunks.append(chunk)
    except urllib.error.HTTPError as exc:
        raise ImageError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise ImageError(f"{url}: cannot fetch ({exc.reason})") from None
    except (TimeoutError, OSError, ValueError) as exc:
        raise ImageError(f"{url}: cannot fetch ({exc or type(exc).__name__})") from None
    return b"".join(chunks)


class Predictor:
    """Top-k predictions from a run folder (best seed of a group), a model.pt, an exported .onnx or TorchScript file.

    Args:
        source: run folder, run name under ``runs_dir``, or model file (.pt, .onnx, .ts).
        tta: average over mirrored views (default: what the run was evaluated with).
        batch_size: images per forward pass.
        max_pixels: override the model's decompression-bomb limit.
        backend: 'torch' or 'onnx' (default: what the file is; a run folder with 'onnx' is exported in memory).
        threads: intra-op CPU threads (default: every core for ONNX Runtime).
        workers: threads decoding images in parallel.
        url_timeout, max_url_bytes: limits for URL inputs.
    """

    def __init__(self, source: str | Path, tta: bool | None = None, batch_size: int = 64,
                 max_pixels: int | None = None, device: str = "cpu", runs_dir: str | Path = "runs",
                 backend: str | None = None, threads: int | None = None, workers: int = 2,
                 url_timeout: float = URL_TIMEOUT, max_url_bytes: int = MAX_URL_BYTES):
        from imgclf.infer.backends import load_backend

        if batch_size < 1:
            raise ImgclfError(f"batch_size must be >= 1, got {batch_size}")
        self.backend = load_backend(source, backend, device=device, threads=threads, runs_dir=runs_dir)
        self.meta = self.backend.meta
        self.classes: list[str] = self.meta["classes"]
        spec = PreprocessSpec.from_dict(self.meta["preprocess"])
        self.spec = spec if max_pixels is None else PreprocessSpec(**{**spec.to_dict(), "max_pixels": max_pixels})
        flip_ok = self.meta.get("flip", True)
        if tta is None:  # what the run was evaluated with
            from imgclf.evaluation.evaluate import tta_level

            self.tta_level = tta_level({**self.meta, "flip": flip_ok})
        else:
            self.tta_level = 1 if tta and flip_ok else 0
        self.batch_size = batch_size
        self.workers = max(1, workers)
        self.url_timeout, self.max_url_bytes = url_timeout, max_url_bytes

    @property
    def model(self):
        """The PyTorch module (torch backend only)."""
        return getattr(self.backend, "model", None)

    @property
    def device(self):
        """The torch device of the PyTorch module (cpu for other backends)."""
        import torch

        return getattr(self.backend, "device", torch.device("cpu"))

    def preprocess(self, item: ImageInput, name: str | None = None) -> np.ndarray:
        """One input (path, URL, bytes, PIL image or array) to the uint8 (C, H, W) array the model takes."""
        if isinstance(item, np.ndarray | Image.Image):
            return from_array(item, self.spec)
        if is_url(item):
            item = fetch_url(item, self.max_url_bytes, self.url_timeout)
        return load_for_model(item, self.spec, name=name)

    def predict_arrays(self, batch: np.ndarray) -> np.ndarray:
        """Probabilities (N, K) for preprocessed uint8 arrays (N, C, H, W)."""
        return self.backend.probs(np.ascontiguousarray(batch), self.tta_level)

    def result(self, name: str, probs: np.ndarray, top_k: int) -> dict[str, Any]:
        """The output record of one image: input, label, probability, top_k [{label, probability}]."""
        order = np.argsort(-probs, kind="stable")[: max(1, min(top_k, len(self.classes)))]
        top = [{"label": self.classes[i], "probability": round(float(probs[i]), 6)} for i in order]
        return {"input": name, "label": top[0]["label"], "probability": top[0]["probability"], "top_k": top}

    _result = result  # the name it had before exported files were supported

    def _load(self, indexed: tuple[int, ImageInput]) -> tuple[str, np.ndarray | str]:
        i, item = indexed
        name = str(item) if isinstance(item, str | Path) else f"<input {i}>"
        try:
            return name, self.preprocess(item, name=name)
        except ImageError as exc:
            return name, str(exc)

    def iter_predict(self, inputs: Iterable[ImageInput], top_k: int = 5) -> Iterator[dict[str, Any]]:
        """Yield one result per input, in order; a bad input yields ``{"input", "error"}`` and the rest go on."""
        items = enumerate(inputs)
        with ThreadPoolExecutor(self.workers) as pool:
            while chunk := list(islice(items, self.batch_size)):
                loaded = list(pool.map(self._load, chunk)) if self.workers > 1 else [self._load(c) for c in chunk]
                good = [arr for _, arr in loaded if isinstance(arr, np.ndarray)]
                probs = iter(self.predict_arrays(np.stack(good)) if good else [])
                for name, arr in loaded:
                    yield self.result(name, next(probs), top_k) if isinstance(arr, np.ndarray) else \
                        {"input": name, "error": arr}

    def predict(self, inputs: ImageInput | Iterable[ImageInput], top_k: int = 5) -> list[dict[str, Any]]:
        """Predictions for one input or many; see ``iter_predict``."""
        if isinstance(inputs, str | Path | bytes | np.ndarray | Image.Image):
            inputs = [inputs]
        return list(self.iter_predict(inputs, top_k))

    def __repr__(self) -> str:
        return (f"Predictor({self.meta.get('run')!r}, backend={self.backend.name}, classes={len(self.classes)}, "
                f"input={self.spec.size}px)")


def check_source(source: str | Path) -> None:
    if not Path(source).exists():
        raise ImgclfError(f"run folder or model file not found: {source}")
