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
FLAT_STD = 2.0  # gray levels; below this an image has no pattern and only its mean brightness can be compared


def gray64(img: Image.Image) -> np.ndarray:
    """The 64x64 uint8 grayscale copy every fingerprint is computed from (antialiased resize of the whole image)."""
    if img.mode not in ("L", "RGB"):
        from imgclf.data.images import to_mode

        img = to_mode(img, 3)
    return np.asarray(img.convert("L").resize((GRAY_SIDE, GRAY_SIDE), Image.BILINEAR), dtype=np.uint8)


def _view(gray: np.ndarray, cut: tuple[float, ...], side: int) -> np.ndarray:
    left, top, right, bottom = (c * GRAY_SIDE for c in cut)
    box = (left, top, GRAY_SIDE - right, GRAY_SIDE - bottom)
    return np.asarray(Image.fromarray(gray).resize((side, side), Image.BILINEAR, box=box), dtype=np.float64)


def _pack(bits: np.ndarray) -> int:
    return int.from_bytes(np.packbits(bits.astype(np.uint8).ravel()).tobytes(), "big")


def _dct_matrix(n: int) -> np.ndarray:
    """Orthonormal DCT-II matrix: ``M @ x`` is the DCT of the column vector x."""
    k, i = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    m = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    m[0] /= np.sqrt(2.0)
    return m


_DCT32 = _dct_matrix(32)


def phash_array(px: np.ndarray) -> int:
    """64-bit perceptual hash of a 32x32 grayscale array."""
    low = (_DCT32 @ px @ _DCT32.T)[:8, :8]
    return _pack(low > np.median(low.ravel()[1:]))


def phash(img: Image.Image) -> int:
    """64-bit perceptual hash of a whole image; a resized or re-encoded copy stays within a few bits.

    Examples:
        >>> img = Image.effect_mandelbrot((120, 90), (-2, -1.2, 1, 1.2), 60)
        >>> hamming(phash(img), phash(img.resize((60, 45)))) <= 4
        True
    """
    return phash_array(_view(gray64(img), VIEWS[0], 32))


def dhash(img: Image.Image) -> int:
    """64-bit difference hash: bit = (pixel brighter than its left neighbour) on a 9x8 grayscale copy.

    Examples:
        >>> img = Image.effect_mandelbrot((120, 90), (-2, -1.2, 1, 1.2), 60)
        >>> hamming(dhash(img), dhash(img.resize((240, 180)))) <= 4
        True
    """
    px = np.asarray(img.convert("L").resize((9, 8), Image.BILINEAR), dtype=np.float64)
    return _pack(px[:, 1:] > px[:, :-1])


def view_hashes(gray: np.ndarray) -> np.ndarray:
    """uint64 (len(VIEWS),) perceptual hashes of the whole image and of its cropped views."""
    return np.array([phash_array(_view(gray, cut, 32)) for cut in VIEWS], dtype=np.uint64)


def hamming(a: int, b: int) -> int:
    """Number of differing bits of two 64-bit hashes."""
    return (int(a) ^ int(b)).bit_count()


def _popcount(x: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):  # numpy >= 2.0
        return np.bitwise_count(x)
    return _BYTE_BITS[x.view(np.uint8).reshape(*x.shape, 8)].sum(-1, dtype=np.uint8)


_BYTE_BITS = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def close_pairs(hashes: np.ndarray, max_distance: int, block: int = 256) -> np.ndarray:
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


def _highpass_unit(px: np.ndarray) -> tuple[np.ndarray, float]:
    """(pixels minus their 5x5 box blur, scaled to unit norm; the standard deviation of the pixels)."""
    pad = np.pad(px, 2, mode="edge")
    rows = sum(pad[k:k + px.shape[0], :] for k in range(5))
    blur = sum(rows[:, k:k + px.shape[1]] for k in range(5)) / 25.0
    hp = (px - blur).ravel()
    hp -= hp.mean()
    norm = float(np.sqrt((hp * hp).sum()))
    return hp / max(norm, 1e-9), float(px.std())


def similarity(gray_a: np.ndarray, gray_b: np.ndarray) -> float:
    """How surely two images are copies of each other, in [-1, 1]: the best correlation over the crop views of
    either image against the whole other one, of high-pass filtered 32x32 copies. Copies score >= 0.6.

    Flat images (no pattern) score 1.0 when their mean brightness agrees within 8 gray levels, else 0.0.

    Examples:
        >>> img = Image.effect_mandelbrot((200, 150), (-2, -1.2, 1, 1.2), 60)
        >>> similarity(gray64(img), gray64(img.crop((8, 0, 200, 150)))) > 0.6
        True
    """
    whole_a, whole_b = _view(gray_a, VIEWS[0], 32), _view(gray_b, VIEWS[0], 32)
    ua, std_a = _highpass_unit(whole_a)
    ub, std_b = _highpass_unit(whole_b)
    if std_a < FLAT_STD or std_b < FLAT_STD:
        both_flat = std_a < FLAT_STD and std_b < FLAT_STD
        return 1.0 if both_flat and abs(whole_a.mean() - whole_b.mean()) < 8 else 0.0
    best = float(ua @ ub)
    for cut in VIEWS[1:]:
        best = max(best, float(_highpass_unit(_view(gray_a, cut, 32))[0] @ ub),
                   float(_highpass_unit(_view(gray_b, cut, 32))[0] @ ua))
    return best
