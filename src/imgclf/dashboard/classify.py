"""The image-classifier page's work, without Streamlit: check an upload, predict top-k, draw Grad-CAM.

Uploads stay in memory (Streamlit keeps uploaded files in RAM; they are decoded from bytes here), so nothing
uploaded is ever written to disk.

Examples:
    >>> from imgclf.infer.predict import Predictor  # doctest: +SKIP
    >>> from imgclf.evaluation.explain import Explainer  # doctest: +SKIP
    >>> p, ex = Predictor("runs/c10"), Explainer("runs/c10")  # doctest: +SKIP
    >>> out = classify_upload(p, ex, "cat.jpg", open("cat.jpg", "rb").read())  # doctest: +SKIP
    >>> out.label, out.top_k[0]["probability"]  # doctest: +SKIP
    ('cat', 0.91)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from imgclf.dashboard.data import MAX_UPLOAD_BYTES, check_upload, display_copy, to_display


@dataclass
class Classified:
    """One image's result: top-k (label, probability), the picture shown and its heat-map overlay, or an error."""

    name: str
    top_k: list[dict[str, Any]] = field(default_factory=list)
    image: Image.Image | None = None  # what the page shows (at most 512 px)
    overlay: Image.Image | None = None  # Grad-CAM (or saliency) of the predicted class on ``image``
    error: str | None = None
    predict_seconds: float = 0.0  # check + decode + preprocess + model (with the run's TTA)
    explain_seconds: float = 0.0

    @property
    def label(self) -> str | None:
        return self.top_k[0]["label"] if self.top_k else None


def _classify(predictor, explainer, name: str, array: np.ndarray, shown: Image.Image, crop_fraction: float,
              top_k: int, method: str) -> Classified:
    """Top-k of a preprocessed array (the run's TTA) and the heat map of the predicted class drawn on ``shown``."""
    from imgclf.evaluation.explain import overlay, to_original

    start = time.perf_counter()
    result = predictor.result(name, predictor.predict_arrays(np.ascontiguousarray(array)[None])[0], top_k)
    predicted = time.perf_counter()
    cam = None
    if explainer is not None:
        heat, _ = explainer.heatmap(array, method=method, target=predictor.classes.index(result["label"]))
        full, box = to_original(heat, shown.width, shown.height, crop_fraction)
        cam = overlay(shown, full, box)
    return Classified(name, result["top_k"], shown, cam, None, predicted - start, time.perf_counter() - predicted)


def classify_upload(predictor, explainer, name: str, data: bytes, top_k: int = 5, method: str = "gradcam",
                    max_bytes: int = MAX_UPLOAD_BYTES, max_side: int = 512) -> Classified:
    """An uploaded file, checked (bytes, pixels, decodable) before anything else; a bad file returns ``error``.

    The model gets exactly what ``imgclf predict`` gives it for the same bytes; the page shows a copy of at most
    ``max_side`` pixels (JPEGs decoded at reduced scale for it).
    """
    from imgclf.data.images import ImageError, to_mode

    start = time.perf_counter()
    try:
        image = check_upload(name, data, predictor.spec.max_pixels, max_bytes, draft_size=max_side)
        array = predictor.preprocess(bytes(data), name=name)
    except ImageError as exc:
        return Classified(name, error=str(exc))
    shown = to_mode(display_copy(image, max_side), 3)
    decoded = time.perf_counter() - start
    out = _classify(predictor, explainer, name, array, shown, predictor.spec.crop_fraction, top_k, method)
    out.predict_seconds += decoded
    return out


def classify_array(predictor, explainer, name: str, array: np.ndarray, top_k: int = 5,
                   method: str = "gradcam") -> Classified:
    """A test image already at the model's size (uint8 (C, H, W)): shown enlarged, no resizing for the model."""
    from imgclf.data.images import to_mode

    shown = to_mode(Image.fromarray(to_display(array, min_side=192)), 3)
    return _classify(predictor, explainer, name, array, shown, 1.0, top_k, method)
