"""Frozen-backbone features, computed once per image and cached, so a linear probe trains in seconds.

The cache key covers the backbone, its weights, the preprocessing (input size, mean/std, data size) and the
exact images (split ids and a sample of their pixels), so any change computes the features afresh. With flips
enabled, a mirrored view of every image is cached too: training uses both views, and test predictions average
them (flip TTA).

On a CPU the frozen backbone runs in onnxruntime when it is installed (exported once per call of `split_features`):
depthwise-convolution backbones such as EfficientNet-Lite0 extract about 2.5x faster there than in eager torch on
2 cores; the features agree with torch's to about 1e-5. ``IMGCLF_FEATURES=torch`` keeps torch.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from imgclf.data.dataset import Pool, Splits
from imgclf.models import ImageClassifier

_MEMORY: dict[str, dict[str, np.ndarray]] = {}  # feature sets of this process, by key


def cache_key(model: ImageClassifier, hp: dict, splits: Splits, views: int) -> str:
    h = hashlib.sha256()
    weights = hp.get("weights") or ("pretrained" if hp.get("pretrained") else "random")
    if hp.get("weights") and Path(hp["weights"]).is_file():
        st = Path(hp["weights"]).stat()
        weights += f":{st.st_size}:{st.st_mtime_ns}"
    h.update(json.dumps({"model": hp["model"], "weights": weights, "input": model.input_size,
                         "mean": model.mean.flatten().tolist(), "std": model.std.flatten().tolist(),
                         "views": views}, sort_keys=True).encode())
    for pool in (splits.train, splits.val, splits.test):
        if pool is not None:
            h.update(("\n".join(pool.ids.tolist()) + f"|{pool.images.shape}").encode())
            # a sample of the pixels: datasets with the same ids and shapes (mnist, fashion-mnist) differ here
            h.update(np.ascontiguousarray(pool.images[:: max(1, len(pool) // 64)]).tobytes())
    return h.hexdigest()[:20]


Runner = Callable[[np.ndarray], np.ndarray]  # uint8 (N, C, H, W) -> float32 (N, D)


class _Features(nn.Module):
    """Pixels in, pooled pre-logit features out: what gets exported to onnxruntime."""

    def __init__(self, model: ImageClassifier):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        net = self.model.net
        return net.forward_head(net.forward_features(self.model.normalize(x)), pre_logits=True)


def torch_runner(model: ImageClassifier) -> Runner:
    features = _Features(model).eval()

    @torch.inference_mode()
    def run(batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(batch)).to(model.mean.device)
        return features(x).float().cpu().numpy()

    return run


def onnx_runner(model: ImageClassifier, shape: tuple[int, ...]) -> Runner | None:
    """The frozen backbone in an onnxruntime session for uint8 images of ``shape`` (C, H, W), or None when
    onnxruntime is missing or the backbone does not export."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about shape checks, frozen at this input size
            torch.onnx.export(_Features(model).eval(), (torch.zeros((2, *shape), dtype=torch.uint8),), buffer,
                              input_names=["pixels"], output_names=["features"],
                              dynamic_axes={"pixels": {0: "batch"}, "features": {0: "batch"}}, dynamo=False)
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        session = ort.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])
    except Exception:  # noqa: BLE001 - any export or load failure: eager torch computes the same features
        return None
    return lambda batch: session.run(None, {"pixels": np.ascontiguousarray(batch)})[0]


def runner_for(model: ImageClassifier, images: np.ndarray) -> Runner:
    """For uint8 ``images`` like these: onnxruntime on a CPU (unless ``IMGCLF_FEATURES=torch``), else eager torch."""
    model.eval()
    usable = images.dtype == np.uint8 and model.mean.device.type == "cpu"
    fast = onnx_runner(model, tuple(images.shape[1:])) if usable and os.environ.get("IMGCLF_FEATURES") != "torch" \
        else None
    return fast or torch_runner(model)


def extract(model: ImageClassifier, images: np.ndarray, batch_size: int = 64, flip: bool = False,
            label: str = "features", progress: bool = False, runner: Runner | None = None) -> np.ndarray:
    """Pooled pre-logit features (N, D) of uint8 images through a timm backbone in eval mode."""
    run = runner or runner_for(model, images)
    out, start = [], time.perf_counter()
    for i in range(0, len(images), batch_size):
        x = images[i : i + batch_size]
        if flip:
            x = x[..., ::-1]
        out.append(np.asarray(run(np.ascontiguousarray(x)), dtype=np.float32))
        if progress and sys.stdout.isatty():
            done = min(i + batch_size, len(images))
            print(f"\r{label}: {done}/{len(images)} images, {done / (time.perf_counter() - start):.0f} images/s",
                  end="", flush=True)
    if progress:
        print(f"\r{label}: {len(images)} images, {len(images) / (time.perf_counter() - start):.0f} images/s",
              flush=True)
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def split_features(model: ImageClassifier, hp: dict, splits: Splits, run_dir: Path,
                   progress: bool = False) -> dict[str, np.ndarray]:
    """Features of every split and view: keys 'train/0', 'train/1' (mirrored), 'val/0', 'test/0', ...

    Looked up in this process's memory, then in ``run_dir/features-KEY.npz`` (mode 'disk'), else computed.
    """
    views = 2 if hp.get("flip") else 1
    key = cache_key(model, hp, splits, views)
    disk = run_dir / f"features-{key}.npz"
    if key in _MEMORY:
        return _MEMORY[key]
    if disk.is_file():
        with np.load(disk) as f:
            feats = {k: f[k] for k in f.files}
    else:
        feats, runners = {}, {}
        for name, pool in (("train", splits.train), ("val", splits.val), ("test", splits.test)):
            if pool is None:
                continue
            shape = (pool.images.shape[1:], pool.images.dtype)
            if shape not in runners:
                runners[shape] = runner_for(model, pool.images)
            for v in range(views):
                feats[f"{name}/{v}"] = extract(model, pool.images, flip=v == 1, label=f"{name} features",
                                               progress=progress, runner=runners[shape])
        if hp.get("feature_cache") == "disk":
            np.savez(disk, **feats)
    if hp.get("feature_cache") in ("auto", "memory", "disk"):
        _MEMORY[key] = feats
    return feats


def feature_splits(feats: dict[str, np.ndarray], splits: Splits) -> Splits:
    """Splits whose 'images' are feature vectors; training gets every view as its own sample."""
    views = sorted(k for k in feats if k.startswith("train/"))
    train = splits.train
    train_pool = Pool(np.concatenate([feats[v] for v in views]), np.tile(train.labels, len(views)),
                      np.concatenate([train.ids] * len(views)))
    val = None if splits.val is None else Pool(feats["val/0"], splits.val.labels, splits.val.ids)
    return Splits(train_pool, val, Pool(feats["test/0"], splits.test.labels, splits.test.ids))


def head_of(model: ImageClassifier) -> nn.Module:
    """The classifier layer, in training mode (feature extraction left the model in eval mode)."""
    return model.net.get_classifier().train()


@torch.inference_mode()
def test_probs(head: nn.Module, feats: dict[str, np.ndarray], tta: bool) -> np.ndarray:
    """Test-set probabilities from cached features, logits averaged over the views when ``tta`` (as tta_logits)."""
    views = sorted(k for k in feats if k.startswith("test/")) if tta else ["test/0"]
    head.eval()
    logits = torch.stack([head(torch.from_numpy(feats[v])) for v in views]).mean(0)
    return torch.softmax(logits, dim=1).numpy()
