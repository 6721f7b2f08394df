"""Find what is wrong with a folder of images: broken files, odd modes, copies, train/test leaks, label conflicts.

    imgclf data clean photos/ --report clean.html             # report only; nothing moved
    imgclf data clean photos/ --json                          # one JSON line per finding
    imgclf data clean photos/ --apply --quarantine rejected/  # move rejects (see imgclf.data.quarantine)

1. List the image files (by extension; hidden files and the quarantine folder are skipped).
2. Inspect every file in worker processes: size, magic bytes, header, decompression-bomb check, then a decode at
   reduced scale (JPEG draft mode: the fingerprints need only 64x64) and the fingerprints of ``hashing``. Each
   worker returns a few kilobytes, never a full image, so memory stays flat however many files there are.
3. Per-file findings: ``empty``, ``not_image``, ``corrupt``, ``bomb``, ``too_small``, ``mode``.
4. Copies among the readable files (``duplicates``); exact copies are confirmed by a SHA-256 of the fully decoded
   pixels, computed only for the few candidates that need it.

A folder with ``train/`` and ``test/`` is read as ``SPLIT/CLASS/...``; otherwise as ``CLASS/...``.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from imgclf.data._formats import SNIFF_BYTES, sniff
from imgclf.data._parallel import pmap
from imgclf.data.duplicates import (
    DEFAULT_MAX_DISTANCE,
    DEFAULT_MIN_SIMILARITY,
    Finding,
    Item,
    find_copies,
    group_findings,
    keeper_order,
)
from imgclf.data.hashing import GRAY_SIDE, VIEWS, gray64, view_hashes
from imgclf.data.images import DEFAULT_MAX_PIXELS, IMAGE_EXTENSIONS, open_image
from imgclf.errors import ImgclfError

KINDS = ("corrupt", "empty", "not_image", "bomb", "too_small", "mode", "exact_duplicate", "near_duplicate", "leak",
         "label_conflict")
BROKEN = ("corrupt", "empty", "not_image", "bomb")  # files that cannot be used at all
DEFAULT_MIN_SIZE = 32  # px, shortest side below which an image is too small
_ODD_MODES = {"CMYK": "CMYK", "YCbCr": "YCbCr", "LAB": "Lab", "HSV": "HSV", "1": "1-bit", "I": "32-bit integer",
              "F": "32-bit float", "I;16": "16-bit", "I;16B": "16-bit", "I;16L": "16-bit", "I;16N": "16-bit"}


@dataclass(frozen=True)
class CleanOptions:
    """What counts as a problem."""

    min_size: int = DEFAULT_MIN_SIZE  # px, shortest side; smaller images are too_small
    max_pixels: int = DEFAULT_MAX_PIXELS  # width * height above which an image is a decompression bomb
    max_distance: int = DEFAULT_MAX_DISTANCE  # bits of 64, pHash distance of a near-duplicate candidate
    min_similarity: float = DEFAULT_MIN_SIMILARITY  # [-1, 1], thumbnail correlation that confirms a candidate
    near: bool = True  # look for near duplicates (exact ones are always found)
    reject_modes: bool = False  # move unusual modes to quarantine too (default: report; they are converted on load)
    workers: int = 0  # processes, 0 = one per CPU

    def rejected_kinds(self) -> frozenset[str]:
        return frozenset(KINDS) - (set() if self.reject_modes else {"mode"})


@dataclass
class CleanResult:
    """Every finding of one scan; ``files`` are all image files seen, relative to ``root``."""

    root: Path
    files: list[str]
    findings: list[Finding]
    options: CleanOptions = field(default_factory=CleanOptions)
    split_layout: bool = False  # the folder has train/ and test/
    seconds: float = 0.0
    groups: list[list[str]] = field(default_factory=list)  # copy groups, keeper first

    def counts(self) -> dict[str, int]:
        """Number of findings of each kind (every kind listed, zeros included)."""
        out = dict.fromkeys(KINDS, 0)
        for f in self.findings:
            out[f.kind] += 1
        return out

    def rejects(self) -> list[str]:
        """Files that ``--apply`` moves to quarantine: any finding of a rejected kind."""
        kinds = self.options.rejected_kinds()
        return sorted({f.file for f in self.findings if f.kind in kinds})

    def flagged(self) -> list[str]:
        return sorted({f.file for f in self.findings})

    def summary(self) -> dict:
        return {"root": str(self.root), "images": len(self.files), "flagged": len(self.flagged()),
                "rejects": len(self.rejects()), "seconds": round(self.seconds, 2), **self.counts()}


def list_images(root: Path, exclude: list[Path] | None = None) -> list[Path]:
    """Image files under ``root`` by extension, sorted; hidden files and folders and ``exclude`` are skipped."""
    skip = [p.resolve() for p in exclude or []]
    out = []
    for path in root.rglob("*"):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts) or path.suffix.lower() not in IMAGE_EXTENSIONS:
            continue
        if not path.is_file() or any(path.resolve().is_relative_to(s) for s in skip):
            continue
        out.append(path)
    return sorted(out)


def split_and_label(rel: str, split_layout: bool) -> tuple[str, str]:
    """("train"/"test"/"", class folder or "") of a relative path.

    Examples:
        >>> split_and_label("test/cat/1.jpg", True), split_and_label("cat/1.jpg", False)
        (('test', 'cat'), ('', 'cat'))
    """
    parts = rel.split("/")
    if split_layout and parts[0] in ("train", "test"):
        return parts[0], parts[1] if len(parts) > 2 else ""
    return "", parts[0] if len(parts) > 1 else ""


# per file (runs in worker processes) ------------------------------------------------------------------------------

def inspect_file(job: tuple[str, int]) -> dict:
    """Check and fingerprint one file; returns a small dict (``problem`` set when it cannot be used)."""
    path, max_pixels = job
    try:
        rec: dict = {"bytes": Path(path).stat().st_size}
        with open(path, "rb") as f:
            magic = sniff(f.read(SNIFF_BYTES))
    except OSError as exc:  # vanished, unreadable (permissions), a broken link
        return {"bytes": 0, "problem": "corrupt", "detail": f"cannot read the file ({exc.strerror or exc})"}
    if rec["bytes"] == 0:
        return {**rec, "problem": "empty", "detail": "empty file (0 bytes)"}
    # a truncated file must fail here, whatever the caller set; the pixel limit is checked below, with a clear message
    flags = ImageFile.LOAD_TRUNCATED_IMAGES, Image.MAX_IMAGE_PIXELS
    ImageFile.LOAD_TRUNCATED_IMAGES, Image.MAX_IMAGE_PIXELS = False, None
    try:
        return {**rec, **_decode_fingerprint(Path(path), max_pixels)}
    except UnidentifiedImageError:
        if magic:
            return {**rec, "problem": "corrupt", "detail": f"starts like a {magic[1:].upper()} but cannot be read"}
        return {**rec, "problem": "not_image", "detail": "not an image (unknown content)"}
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a broken file, never a stopped batch
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return {**rec, "problem": "corrupt", "detail": msg}
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES, Image.MAX_IMAGE_PIXELS = flags


def _decode_fingerprint(path: Path, max_pixels: int) -> dict:
    with Image.open(path) as img:  # reads the header only
        w, h = img.size
        info = {"width": w, "height": h, "mode": img.mode, "format": img.format}
        if w * h > max_pixels:
            return {**info, "problem": "bomb", "detail": f"{w}x{h} = {w * h:,} pixels > limit {max_pixels:,}"}
        if img.format == "JPEG":  # decode at 1/2..1/8 scale: the fingerprints need only 64x64
            img.draft(img.mode if img.mode in ("RGB", "L") else None, (GRAY_SIDE, GRAY_SIDE))
        img.load()
        odd = unusual_mode(img)
        gray = gray64(ImageOps.exif_transpose(img))
    return {**info, "odd_mode": odd, "gray": gray.tobytes(), "hashes": view_hashes(gray).tobytes()}


def unusual_mode(img: Image.Image) -> str | None:
    """A description of an unusual pixel mode (CMYK, 16-bit, transparency, ...), or None for RGB/L/plain palette."""
    if img.mode in _ODD_MODES:
        return _ODD_MODES[img.mode]
    if img.mode == "P" and "transparency" in img.info:
        return "palette with transparency"
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La") and img.getchannel("A").getextrema()[0] < 255:
        return f"{img.mode} with transparency"
    return None


def pixel_digest(job: tuple[str, int]) -> str:
    """SHA-256 of the fully decoded pixels (mode, size and values): equal for re-saves with other metadata."""
    path, max_pixels = job
    try:
        img = open_image(path, max_pixels)
    except ImgclfError:
        return f"unreadable:{path}"
    return hashlib.sha256(f"{img.mode}|{img.size}|".encode() + img.tobytes()).hexdigest()


def file_findings(rel: str, rec: dict, options: CleanOptions) -> list[Finding]:
    """Per-file findings of one inspected file."""
    if "problem" in rec:
        return [Finding(rel, rec["problem"], rec["detail"])]
    out = []
    if min(rec["width"], rec["height"]) < options.min_size:
        out.append(Finding(rel, "too_small", f"{rec['width']}x{rec['height']} < {options.min_size} px"))
    if rec.get("odd_mode"):
        out.append(Finding(rel, "mode", f"{rec['odd_mode']} ({rec['mode']}; converted to RGB when loaded)"))
    return out


# the folder ----------------------------------------------------------------------------------------------------------

def scan(root: str | Path, options: CleanOptions | None = None, progress: bool = False,
         exclude: list[Path] | None = None) -> CleanResult:
    """Inspect every image file under ``root`` and return all findings; nothing is moved.

    Examples:
        >>> result = scan("photos/")  # doctest: +SKIP
        >>> result.counts()["near_duplicate"], result.rejects()[:2]  # doctest: +SKIP
        (3, ['cats/img_0012.jpg', 'dogs/img_0400.png'])
    """
    start = time.perf_counter()
    options = options or CleanOptions()
    root = Path(root).expanduser()
    if not root.is_dir():
        raise ImgclfError(f"folder not found: {root}")
    files = list_images(root, exclude)
    if not files:
        raise ImgclfError(f"{root}: no image files ({', '.join(IMAGE_EXTENSIONS[:5])}, ...)")
    split_layout = (root / "train").is_dir() and (root / "test").is_dir()
    rels = [f.relative_to(root).as_posix() for f in files]
    jobs = [(str(f), options.max_pixels) for f in files]
    findings, grays, hashes, items = [], [], [], []
    for rel, rec in zip(rels, pmap(inspect_file, jobs, options.workers, progress, "inspecting"), strict=True):
        findings += file_findings(rel, rec, options)
        if "gray" in rec:
            grays.append(rec["gray"])
            hashes.append(rec["hashes"])
            items.append(Item(rel, *split_and_label(rel, split_layout), pixels=rec["width"] * rec["height"]))
    paths = {rel: str(root / rel) for rel in rels}
    groups, copy_findings = _copies(items, grays, hashes, paths, options, progress)
    return CleanResult(root, rels, findings + copy_findings, options, split_layout, time.perf_counter() - start,
                       groups)


def _copies(items: list[Item], grays: list[bytes], hashes: list[bytes], paths: dict[str, str],
            options: CleanOptions, progress: bool) -> tuple[list[list[str]], list[Finding]]:
    if len(items) < 2:
        return [], []
    gray = np.frombuffer(b"".join(grays), np.uint8).reshape(-1, GRAY_SIDE, GRAY_SIDE)
    hash_arr = np.frombuffer(b"".join(hashes), np.uint64).reshape(-1, len(VIEWS))
    max_distance = options.max_distance if options.near else -1
    if progress:
        from rich.console import Console

        with Console(stderr=True).status(f"looking for copies among {len(items):,} images"):
            copies = find_copies(hash_arr, gray, max_distance, options.min_similarity)
    else:
        copies = find_copies(hash_arr, gray, max_distance, options.min_similarity)

    def exact_keys(indices: list[int]) -> dict[int, str]:
        jobs = [(paths[items[i].id], options.max_pixels) for i in indices]
        digests = pmap(pixel_digest, jobs, options.workers, progress and len(jobs) > 200, "comparing copies")
        return dict(zip(indices, digests, strict=True))

    findings = group_findings(copies, items, exact_keys)
    if not options.near:  # without near duplicates only exact copies count
        findings = [f for f in findings if f.kind != "near_duplicate" and "near copy" not in f.detail]
    return [[items[i].id for i in keeper_order(g, items)] for g in copies.groups], findings
