"""Frozen-backbone features, computed once per image and cached, so a linear probe trains in seconds.

The cache key covers the backbone, its weights, the preprocessing (input size, mean/std, data size) and the
exact images (split ids and a sample of their pixels), so any change computes the features afresh. With flips
enabled, a mirrored view of every image is cached too: training uses both views, and test predictions average
them (flip TTA).
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
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


@torch.inference_mode()
def extract(model: ImageClassifier, images: np.ndarray, batch_size: int = 64, flip: bool = False,
            label: str = "features", progress: bool = False) -> np.ndarray:
    """Pooled pre-logit features (N, D) of uint8 images through a timm backbone in eval mode."""
    net = model.net
    model.eval()
    out, start = [], time.perf_counter()
    for i in range(0, len(images), batch_size):
        x = torch.from_numpy(np.ascontiguousarray(images[i : i + batch_size]))
        if flip:
            x = x.flip(-1)
        feats = net.forward_head(net.forward_features(model.normalize(x)), pre_logits=True)
        out.append(feats.float().numpy())
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
        feats = {}
        for name, pool in (("train", splits.train), ("val", splits.val), ("test", splits.test)):
            if pool is None:
                continue
            for v in range(views):
                feats[f"{name}/{v}"] = extract(model, pool.images, flip=v == 1, label=f"{name} features",
                                               progress=progress)
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
