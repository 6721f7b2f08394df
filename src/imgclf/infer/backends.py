"""Inference backends: one small interface over PyTorch (model.pt, TorchScript) and ONNX Runtime (.onnx).

Every backend takes the uint8 (N, C, H, W) arrays that ``PreprocessSpec`` produces and returns softmax
probabilities, with the same test-time augmentation (TTA) views, so a run folder and its exported files give the
same predictions.

Examples:
    >>> backend = load_backend("runs/c10/model.onnx")  # doctest: +SKIP
    >>> backend.probs(images).shape  # doctest: +SKIP
    (8, 10)
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from imgclf.errors import ImgclfError

EXPORT_FORMAT = "imgclf-export/1"
META_KEY = "imgclf"  # ONNX metadata_props key / TorchScript extra file "imgclf.json" holding the contract
TS_EXTRA = "imgclf.json"
BACKENDS = ("torch", "onnx")


def require(module: str):
    """Import an optional dependency, or say which extra installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImgclfError(f"{module} is not installed; pip install 'imgclf[deploy]'") from None


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def tta_views(x: np.ndarray, level: int) -> list[np.ndarray]:
    """The views ``imgclf.models.tta_logits`` averages: 0 = x; 1 = + mirror; 2 = + mirror of one-pixel shifts."""
    views = [x] if level == 0 else [x, x[..., ::-1]]
    if level >= 2:
        padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="edge")
        h, w = x.shape[-2:]
        for s in (padded[..., 0:h, 0:w], padded[..., 2 : h + 2, 2 : w + 2]):
            views += [s, s[..., ::-1]]
    return views


def combine_views(logits: list[np.ndarray], level: int) -> np.ndarray:
    """Average view logits with the weights of ``tta_logits`` (mirror pairs first, shifted pairs at half weight)."""
    if level == 0:
        return logits[0]
    plain = 0.5 * (logits[0] + logits[1])
    if level == 1:
        return plain
    shifted = 0.5 * (0.5 * (logits[2] + logits[3]) + 0.5 * (logits[4] + logits[5]))
    return 0.5 * plain + 0.5 * shifted


class _Backend:
    """Logits and probabilities of uint8 (N, C, H, W) batches; ``meta`` is the model's preprocessing contract."""

    name = "base"

    def __init__(self, meta: dict[str, Any]):
        self.meta = meta

    def logits(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def probs(self, x: np.ndarray, tta: int = 0) -> np.ndarray:
        """Softmax probabilities (N, K); all TTA views go through the model as one batch."""
        if len(x) == 0:
            return np.zeros((0, len(self.meta["classes"])), dtype=np.float32)
        views = tta_views(x, tta)
        out = self.logits(np.ascontiguousarray(np.concatenate(views)) if len(views) > 1 else x)
        logits = combine_views(np.split(out, len(views)), tta)
        return softmax(logits.astype(np.float32))


class TorchBackend(_Backend):
    """An ``ImageClassifier`` (from model.pt) or a TorchScript module; TTA through ``tta_logits`` as in evaluation."""

    name = "torch"

    def __init__(self, model: torch.nn.Module, meta: dict[str, Any], device: str = "cpu", threads: int | None = None):
        super().__init__(meta)
        if threads:
            torch.set_num_threads(threads)
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()

    @torch.inference_mode()
    def logits(self, x: np.ndarray) -> np.ndarray:
        return self.model(torch.from_numpy(np.ascontiguousarray(x)).to(self.device)).float().cpu().numpy()

    @torch.inference_mode()
    def probs(self, x: np.ndarray, tta: int = 0) -> np.ndarray:
        from imgclf.models import tta_logits

        if len(x) == 0:
            return np.zeros((0, len(self.meta["classes"])), dtype=np.float32)
        t = torch.from_numpy(np.ascontiguousarray(x)).to(self.device)
        return torch.softmax(tta_logits(self.model, t, tta).float(), dim=1).cpu().numpy()


class OrtBackend(_Backend):
    """An ONNX Runtime session on the CPU, with every core as intra-op threads unless told otherwise."""

    name = "onnx"

    def __init__(self, model: str | Path | bytes, meta: dict[str, Any] | None = None, threads: int | None = None):
        ort = require("onnxruntime")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or os.cpu_count() or 1
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        # idle threads sleep instead of spinning: on a few shared cores, spinning steals the CPU that decoding,
        # the event loop and other processes need (costs a little latency on an idle machine)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        label = "ONNX model" if isinstance(model, bytes) else str(model)
        try:
            self.session = ort.InferenceSession(model if isinstance(model, bytes) else str(model), options,
                                                providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for unreadable files
            raise ImgclfError(f"{label}: not a readable ONNX model ({str(exc).splitlines()[0][:200]})") from None
        if meta is None:
            raw = self.session.get_modelmeta().custom_metadata_map.get(META_KEY)
            if raw is None:
                raise ImgclfError(f"{label}: no imgclf metadata; export it with `imgclf export RUN --format onnx`")
            meta = json.loads(raw)
        super().__init__(meta)
        first = self.session.get_inputs()[0]
        self.input_name = first.name
        self.input_dtype = np.uint8 if "uint8" in first.type else np.float32

    def logits(self, x: np.ndarray) -> np.ndarray:
        feed = np.ascontiguousarray(x, dtype=self.input_dtype)
        return self.session.run(None, {self.input_name: feed})[0]


def is_torchscript(path: Path) -> bool:
    """True for a TorchScript archive written by ``imgclf export --format torchscript``."""
    try:
        with zipfile.ZipFile(path) as z:
            return any(n.endswith(f"extra/{TS_EXTRA}") for n in z.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def load_torchscript(path: str | Path, device: str = "cpu") -> tuple[torch.nn.Module, dict]:
    import warnings

    extra = {TS_EXTRA: ""}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # TorchScript is deprecated but still the portable format
            module = torch.jit.load(str(path), map_location=device, _extra_files=extra)
    except Exception as exc:  # torch raises RuntimeError and others for damaged archives
        raise ImgclfError(f"{path}: not a readable TorchScript model ({str(exc).splitlines()[0][:200]})") from None
    return module, json.loads(extra[TS_EXTRA])


def load_backend(source: str | Path, backend: str | None = None, device: str = "cpu", threads: int | None = None,
                 runs_dir: str | Path = "runs") -> _Backend:
    """A backend for a run folder (best seed of a group), a model.pt, a TorchScript file or an .onnx file.

    Args:
        source: the run or file.
        backend: 'torch' or 'onnx'; default: what the file is. A run folder with 'onnx' is exported in memory.
        threads: intra-op CPU threads (default: every core for ONNX Runtime, torch's setting otherwise).
    """
    if backend is not None and backend not in BACKENDS:
        raise ImgclfError(f"unknown backend {backend!r}; accepted: {', '.join(BACKENDS)}")
    path = Path(source)
    if not path.exists() and (Path(runs_dir) / path).exists():
        path = Path(runs_dir) / path
    if not path.exists():
        raise ImgclfError(f"run folder or model file not found: {source}")
    if path.is_file() and path.suffix.lower() == ".onnx":
        if backend == "torch":
            raise ImgclfError(f"{path} is an ONNX file; use backend 'onnx' (or give the run folder for 'torch')")
        return OrtBackend(path, threads=threads)
    if path.is_file() and is_torchscript(path):
        if backend == "onnx":
            raise ImgclfError(f"{path} is a TorchScript file; use backend 'torch' (or give the run folder)")
        return TorchBackend(*load_torchscript(path, device), device=device, threads=threads)
    from imgclf.models.io import load_model
    from imgclf.runs import model_file

    model, meta = load_model(model_file(path), map_location=device)
    if backend == "onnx":
        from imgclf.infer.export import export_meta, to_onnx

        proto = to_onnx(model, meta)
        return OrtBackend(proto.SerializeToString(), export_meta(meta), threads=threads)
    return TorchBackend(model, meta, device=device, threads=threads)
