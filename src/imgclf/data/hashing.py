"""Perceptual image fingerprints and a fast search for near duplicates: pure functions over images and arrays.

1. ``gray64``: the image as a 64x64 grayscale array (aspect not kept); everything below is computed from it.
2. ``view_hashes``: a 64-bit perceptual hash (``phash``) of the whole image and of 14 slightly cropped *views* of it
   (centre crops, one side or one corner cut by 2.5-10 %), so a cropped copy's whole-image hash lands close to one
   of the original's view hashes.
3. ``close_pairs``: every ordered pair (i, j) where some view of i is within a Hamming distance of the whole of j,
   by vectorised XOR + popcount in blocks: 10,000 images is 1.5 G bit comparisons, a few seconds, no Python loop.
4. ``similarity``: the confirmation of a candidate pair: the best correlation, over the views, of high-pass filtered
   32x32 copies. Hashes of unrelated photos with the same layout (sky above, wall below) collide now and then;
   their fine structure does not (measured on scenes-mini: copies >= 0.6, unrelated look-alikes <= 0.25).

``phash`` is Zauner's DCT hash ("Implementation and Benchmarking of Perceptual Image Hash Functions", 2010): the
signs, against their median, of the 8x8 lowest frequencies of the DCT of a 32x32 grayscale image. ``dhash`` (the
signs of horizontal gradients on 9x8) is here for callers who want a second, cheaper fingerprint.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

GRAY_SIDE = 64  # px, side of the stored grayscale copy of every image
# crops (left, top, right, bottom cut, as fractions of the side); the first view is the whole image
VIEWS = ((0, 0, 0, 0), (.025, .025, .025, .025), (.05, .05, .05, .05),
         (.05, 0, 0, 0), (0, .05, 0, 0), (0, 0, .05, 0), (0, 0, 0, .05),
         (.1, 0, 0, 0), (0, .1, 0, 0), (0, 0, .1, 0), (0, 0, 0, .1),
         (.05, .05, 0, 0), (0, .05, .05, 0), (0, 0, .05, .05), (.05, 0, 0, .05))
CACHE_ENTRIES = 2048  # filtered views kept by ``similarity`` (60 kB each)
FLAT_STD = 2.0  # gray levels; below this an image has no pattern and only its mean brightness can be compared


def gray64(img: Image.Image) -> np.ndarray:
    """The 64x64 uint8 grayscale copy every fingerprint is computed from (antialiased resize of the whole image)."""
    if img.mode not in ("L", "RGB"):
        from imgclf.data.images import to_mode

        img = to_mode(img, 3)
    return np.asarray(img.convert("L").resize((GRAY_SIDE, GRAY_SIDE), Image.BILINEAR), dtype=np.uint8)


def _resample_matrix(start: float, stop: float, out: int, size: int = GRAY_SIDE) -> np.ndarray:
    """(out, size) weights that resample the source interval [start, stop) to ``out`` pixels with an antialiased
    triangle (bilinear) filter, as Pillow's resize(box=...) does; out-of-range taps are dropped and renormalised."""
    scale = (stop - start) / out
    support = max(scale, 1.0)
    centres = start + (np.arange(out) + 0.5) * scale
    taps = np.arange(size) + 0.5
    w = np.clip(1.0 - np.abs(taps[None, :] - centres[:, None]) / support, 0.0, None)
    return w / w.sum(axis=1, keepdims=True)


def _view_matrices(side: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) resampling matrices of every view, each (len(VIEWS), side, GRAY_SIDE)."""
    rows = np.stack([_resample_matrix(t * GRAY_SIDE, GRAY_SIDE * (1 - b), side) for _, t, _, b in VIEWS])
    cols = np.stack([_resample_matrix(left * GRAY_SIDE, GRAY_SIDE * (1 - r), side) for left, _, r, _ in VIEWS])
    return rows, cols


_ROWS32, _COLS32 = _view_matrices(32)


def views32(gray: np.ndarray) -> np.ndarray:
    """float (len(VIEWS), 32, 32): every view of a 64x64 gray copy, resampled to 32x32 (one batched product)."""
    return _ROWS32 @ gray.astype(np.float64) @ _COLS32.transpose(0, 2, 1)


def _pack(bits: np.ndarray) -> int:
    return int.from_bytes(np.packbits(bits.astype(np.uint8).ravel()).tobytes(), "big")


def _dct_matrix(n: int) -> np.ndarray:
    """Orthonormal DCT-II matrix: ``M @ x`` is the DCT of the column vector x."""
    k, i = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    m = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    m[0] /= np.sqrt(2.0)
    return m


_DCT32 = _dct_matrix(32)


def phash_array(px: np.ndarray) -> np.ndarray | int:
    """64-bit perceptual hash of a 32x32 grayscale array, or uint64 hashes of a (k, 32, 32) stack."""
    low = (_DCT32 @ px @ _DCT32.T)[..., :8, :8].reshape(*px.shape[:-2], 64)
    bits = low > np.median(low[..., 1:], axis=-1, keepdims=True)
    packed = np.packbits(bits.astype(np.uint8), axis=-1)  # (..., 8) big-endian bytes
    hashes = packed.view(">u8")[..., 0].astype(np.uint64)
    return int(hashes) if px.ndim == 2 else hashes


def phash(img: Image.Image) -> int:
    """64-bit perceptual hash of a whole image; a resized or re-encoded copy stays within a few bits.

    Examples:
        >>> img = Image.effect_noise((32, 24), 60).resize((160, 120), Image.BICUBIC)
        >>> hamming(phash(img), phash(img.resize((60, 45)))) <= 4
        True
    """
    return phash_array(views32(gray64(img))[0])


def dhash(img: Image.Image) -> int:
    """64-bit difference hash: bit = (pixel brighter than its left neighbour) on a 9x8 grayscale copy.

    Examples:
        >>> img = Image.effect_noise((32, 24), 60).resize((160, 120), Image.BICUBIC)
        >>> hamming(dhash(img), dhash(img.resize((240, 180)))) <= 4
        True
    """
    px = np.asarray(img.convert("L").resize((9, 8), Image.BILINEAR), dtype=np.float64)
    return _pack(px[:, 1:] > px[:, :-1])


def view_hashes(gray: np.ndarray) -> np.ndarray:
    """uint64 (len(VIEWS),) perceptual hashes of the whole image and of its cropped views."""
    return phash_array(views32(gray))


def hamming(a: int, b: int) -> int:
    """Number of differing bits of two 64-bit hashes."""
    return (int(a) ^ int(b)).bit_count()


def _popcount(x: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):  # numpy >= 2.0
        return np.bitwise_count(x)
    return _BYTE_BITS[x.view(np.uint8).reshape(*x.shape, 8)].sum(-1, dtype=np.uint8)


_BYTE_BITS = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def close_pairs(hashes: np.ndarray, max_distance: int, block: int = 64) -> np.ndarray:
    """Index pairs (i, j), i < j, sorted, where a view of one image is within ``max_distance`` bits of the other.

    Args:
        hashes: uint64 (n, views) from ``view_hashes``; column 0 is the whole image. A (n,) array is one view.
        max_distance: Hamming distance in bits (of 64).
        block: rows compared at once; memory is about block * views * n bytes.

    Returns:
        int64 (m, 2) array of pairs.

    Examples:
        >>> h = np.array([0b1111, 0b0111, 0xFF00], dtype=np.uint64)
        >>> close_pairs(h, 1).tolist()
        [[0, 1]]
    """
    hashes = np.asarray(hashes, dtype=np.uint64)
    if hashes.ndim == 1:
        hashes = hashes[:, None]
    whole = hashes[:, 0]
    n = len(hashes)
    keys = []
    for start in range(0, n, block):
        rows = hashes[start:start + block]  # (b, views)
        # distance from each view of a row image to every whole image, closest view kept: (b, n)
        dist = _popcount(rows[:, :, None] ^ whole[None, None, :]).min(axis=1)
        i, j = np.nonzero(dist <= max_distance)
        i = i + start
        keep = i != j
        lo, hi = np.minimum(i[keep], j[keep]), np.maximum(i[keep], j[keep])
        keys.append(lo.astype(np.int64) * n + hi)
    # a pair is found from both sides when each is close to a view of the other
    unique = np.unique(np.concatenate(keys)) if keys else np.zeros(0, np.int64)
    return np.stack([unique // max(n, 1), unique % max(n, 1)], axis=1)


def _blur_matrix(n: int, radius: int = 2) -> np.ndarray:
    """(n, n) box blur of width 2 * radius + 1 with edge replication, as a matrix."""
    m = np.zeros((n, n))
    for i in range(n):
        for k in range(-radius, radius + 1):
            m[i, min(max(i + k, 0), n - 1)] += 1.0 / (2 * radius + 1)
    return m


_BLUR32 = _blur_matrix(32)


def highpass_views(gray: np.ndarray) -> tuple[np.ndarray, float, float]:
    """(unit-norm high-pass vectors of every view, shape (views, 1024); std and mean of the whole view).

    High-pass = the 32x32 view minus its 5x5 box blur: fine structure, which look-alike photos do not share.
    """
    v = views32(gray)
    hp = (v - _BLUR32 @ v @ _BLUR32.T).reshape(len(VIEWS), -1)
    hp -= hp.mean(axis=1, keepdims=True)
    hp /= np.maximum(np.linalg.norm(hp, axis=1, keepdims=True), 1e-9)
    return hp, float(v[0].std()), float(v[0].mean())


def similarity(gray_a: np.ndarray, gray_b: np.ndarray, cache: dict | None = None, keys: tuple = ()) -> float:
    """How surely two images are copies of each other, in [-1, 1]: the best correlation, over the crop views of
    either image against the whole other one, of high-pass filtered 32x32 copies. Copies score >= 0.6.

    Flat images (no pattern) score 1.0 when their mean brightness agrees within 8 gray levels, else 0.0.
    ``cache`` (a dict) and ``keys`` (one hashable per image) reuse the filtered views of images seen before.

    Examples:
        >>> img = Image.effect_mandelbrot((200, 150), (-2, -1.2, 1, 1.2), 60)
        >>> similarity(gray64(img), gray64(img.crop((8, 0, 200, 150)))) > 0.6
        True
    """
    def views(gray, key):
        if cache is None:
            return highpass_views(gray)
        if key not in cache:
            if len(cache) >= CACHE_ENTRIES:
                cache.pop(next(iter(cache)))  # oldest first; candidate pairs come sorted, so reuse is local
            hp, std, mean = highpass_views(gray)
            cache[key] = (hp.astype(np.float32), std, mean)
        return cache[key]

    (ha, std_a, mean_a), (hb, std_b, mean_b) = views(gray_a, keys[:1]), views(gray_b, keys[1:])
    if std_a < FLAT_STD or std_b < FLAT_STD:
        both_flat = std_a < FLAT_STD and std_b < FLAT_STD
        return 1.0 if both_flat and abs(mean_a - mean_b) < 8 else 0.0
    return float(max((ha @ hb[0]).max(), (hb @ ha[0]).max()))
