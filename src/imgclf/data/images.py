"""Reading one image file safely and turning it into the model's input: the one preprocessing path.

Every consumer (folder decoding for training, evaluation, prediction, the server) calls
``preprocess_image`` with the run's ``PreprocessSpec``, so they can never disagree on the same image.
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from imgclf.errors import ImgclfError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".jfif")
DEFAULT_MAX_PIXELS = 40_000_000

_RESAMPLE = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST, "lanczos": Image.LANCZOS}


class ImageError(ImgclfError):
    """A file that cannot be used as an image (not an image, truncated, too large)."""


@dataclass(frozen=True)
class PreprocessSpec:
    """How a file becomes a uint8 (C, size, size) array; the model normalises it itself.

    ``size`` is the stored image side; the model may resize it further to its own input size.
    """

    size: int  # px, side of the square array
    channels: int = 3  # 1 (grayscale) or 3 (RGB)
    crop_fraction: float = 1.0  # (0, 1], resize the shortest side to size / crop_fraction, then centre-crop
    resample: str = "bicubic"  # bilinear | bicubic | nearest | lanczos
    max_pixels: int = DEFAULT_MAX_PIXELS  # larger images are rejected
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> PreprocessSpec:
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def open_image(source: str | Path | bytes, max_pixels: int = DEFAULT_MAX_PIXELS, draft_size: int | None = None,
               name: str | None = None) -> Image.Image:
    """Open, check and fully decode an image; EXIF orientation is applied.

    Args:
        source: a path or the file's bytes.
        max_pixels: reject images with more pixels than this before decoding them.
        draft_size: if given, JPEGs are decoded at a reduced scale whose shortest side stays >= this.
        name: how to call the file in errors (default: its path).

    Raises:
        ImageError: one line naming the file: not found, not an image, truncated or too large.
    """
    label = name or (str(source) if not isinstance(source, bytes) else "upload")
    if not isinstance(source, bytes):
        path = Path(source)
        if not path.is_file():
            raise ImageError(f"{label}: file not found")
        if path.stat().st_size == 0:
            raise ImageError(f"{label}: empty file (0 bytes)")
        fp = path
    else:
        if not source:
            raise ImageError(f"{label}: empty file (0 bytes)")
        fp = io.BytesIO(source)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(fp)
            w, h = img.size
            if w * h > max_pixels:
                raise ImageError(f"{label}: image too large ({w}x{h} = {w * h:,} pixels > limit {max_pixels:,})")
            if draft_size and img.format == "JPEG":
                scale = draft_size / min(w, h)
                img.draft(img.mode if img.mode in ("RGB", "L") else None,
                          (math.ceil(w * scale), math.ceil(h * scale)))
            img.load()
            img = ImageOps.exif_transpose(img)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(f"{label}: not an image (Pillow cannot identify it)") from None
    except Image.DecompressionBombError as exc:
        raise ImageError(f"{label}: image too large ({exc})") from None
    except (OSError, SyntaxError, ValueError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        kind = "truncated image" if "truncated" in msg.lower() else "unreadable image"
        raise ImageError(f"{label}: {kind} ({msg})") from None
    return img


def to_mode(img: Image.Image, channels: int) -> Image.Image:
    """Convert any Pillow mode (RGBA, P, CMYK, 16-bit, float) to 'L' or 'RGB'; transparency goes on white."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if arr.max(initial=0) > 255 else 255.0
        img = Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if img.mode == "P" or img.mode == "PA":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "RGBa", "La"):
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img.convert("RGBA"))
    target = "L" if channels == 1 else "RGB"
    return img if img.mode == target else img.convert(target)


def resize_center_crop(img: Image.Image, size: int, crop_fraction: float = 1.0,
                       resample: str = "bicubic") -> Image.Image:
    """Resize so the shortest side is ``size / crop_fraction``, then take the centred ``size`` square."""
    w, h = img.size
    scaled = size / crop_fraction
    scale = scaled / min(w, h)
    # the source box that maps onto the output square, in source pixels
    bw, bh = size / scale, size / scale
    left, top = (w - bw) / 2, (h - bh) / 2
    return img.resize((size, size), _RESAMPLE[resample], box=(left, top, left + bw, top + bh),
                      reducing_gap=None if scale > 0.5 else 3.0)


def preprocess_image(img: Image.Image, spec: PreprocessSpec) -> np.ndarray:
    """A decoded image to the uint8 (C, size, size) array the model takes."""
    img = to_mode(img, spec.channels)
    img = resize_center_crop(img, spec.size, spec.crop_fraction, spec.resample)
    arr = np.asarray(img, dtype=np.uint8)
    return arr[None] if arr.ndim == 2 else np.ascontiguousarray(arr.transpose(2, 0, 1))


def load_for_model(source: str | Path | bytes, spec: PreprocessSpec, name: str | None = None) -> np.ndarray:
    """Open a file (or bytes) and preprocess it for the model; raises ImageError naming the file."""
    img = open_image(source, spec.max_pixels, draft_size=round(spec.size / spec.crop_fraction), name=name)
    return preprocess_image(img, spec)


def from_array(image: np.ndarray | Image.Image, spec: PreprocessSpec) -> np.ndarray:
    """Preprocess an in-memory PIL image or HWC/HW numpy array."""
    if isinstance(image, Image.Image):
        return preprocess_image(image, spec)
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        arr = np.clip(arr * (255.0 if arr.max(initial=0) <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3):
        arr = arr.transpose(1, 2, 0)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    return preprocess_image(Image.fromarray(arr), spec)
