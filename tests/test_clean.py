"""clean: every detector on tiny synthetic images, quarantine + restore, and a planted folder of real photos."""

from __future__ import annotations

import io
import random
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgclf.data.clean import CleanOptions, scan
from imgclf.data.duplicates import Copies, Item, find_copies, group_findings
from imgclf.data.hashing import close_pairs, dhash, gray64, hamming, phash, similarity, view_hashes
from imgclf.data.quarantine import apply, read_manifest, restore
from imgclf.errors import ImgclfError

SCENES = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "scenes-mini"


# tiny synthetic images -------------------------------------------------------------------------------------------

def synth(seed: int, size: tuple[int, int] = (96, 72)) -> Image.Image:
    """A distinct smooth random picture (12x16 random colours, upsampled)."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).resize(size, Image.BICUBIC)


def jpeg_bytes(img: Image.Image, quality: int = 90, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality, **kw)
    return buf.getvalue()


def png_bytes(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG", **kw)
    return buf.getvalue()


def forged_png(width: int, height: int) -> bytes:
    """A PNG header claiming width x height pixels with a tiny body: a decompression bomb."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


def with_comment(jpeg: bytes, text: bytes) -> bytes:
    """The same JPEG with a comment (COM) segment after SOI: other bytes, same pixels."""
    return jpeg[:2] + b"\xff\xfe" + struct.pack(">H", len(text) + 2) + text + jpeg[2:]


def write(root: Path, rel: str, data: bytes) -> str:
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    (root / rel).write_bytes(data)
    return rel


def good_folder(root: Path, n: int = 6, classes: tuple[str, ...] = ("a", "b"), seed: int = 0) -> list[str]:
    return [write(root, f"{c}/img{k}.jpg", jpeg_bytes(synth(seed + 100 * i + k)))
            for i, c in enumerate(classes) for k in range(n)]


def kinds(result) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for f in result.findings:
        out.setdefault(f.file, set()).add(f.kind)
    return out


# fingerprints ------------------------------------------------------------------------------------------------------

def test_hashes_survive_resize_and_reencode_but_not_flips():
    img = synth(1, (160, 120))
    small = Image.open(io.BytesIO(jpeg_bytes(img.resize((80, 60)), quality=60)))
    assert hamming(phash(img), phash(small)) <= 4 and hamming(dhash(img), dhash(small)) <= 6
    assert hamming(phash(img), phash(img.transpose(Image.FLIP_LEFT_RIGHT))) > 16
    assert hamming(phash(img), phash(synth(2, (160, 120)))) > 16
    assert similarity(gray64(img), gray64(small)) > 0.9
    assert similarity(gray64(img), gray64(img.crop((5, 3, 160, 116)))) > 0.6
    assert similarity(gray64(img), gray64(synth(2, (160, 120)))) < 0.5


def test_close_pairs_matches_brute_force():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 2**63, 300, dtype=np.int64).astype(np.uint64)
    views = np.stack([base ^ (rng.integers(0, 2**63, 300, dtype=np.int64).astype(np.uint64)
                              & np.uint64(rng.integers(0, 2**63))) for _ in range(3)], axis=1)
    hashes = np.concatenate([base[:, None], views], axis=1)
    hashes[7] = hashes[3] ^ np.uint64(0b101)  # a planted close pair
    expected = {(i, j) for i in range(300) for j in range(i + 1, 300)
                if min(min(hamming(v, hashes[j, 0]) for v in hashes[i]),
                       min(hamming(v, hashes[i, 0]) for v in hashes[j])) <= 10}
    assert (3, 7) in expected
    assert {tuple(p) for p in close_pairs(hashes, 10, block=64).tolist()} == expected


def test_flat_images_compare_by_brightness():
    black, black2, white = (gray64(Image.new("L", s, v)) for s, v in (((40, 40), 0), ((80, 60), 0), ((40, 40), 255)))
    assert similarity(black, black2) == 1.0 and similarity(black, white) == 0.0
    assert similarity(black, gray64(synth(0))) == 0.0


# per-file detectors ------------------------------------------------------------------------------------------------

def test_per_file_detectors(tmp_path):
    good = good_folder(tmp_path)
    jpg = jpeg_bytes(synth(50, (120, 90)))
    bad = {
        write(tmp_path, "a/empty.jpg", b""): "empty",
        write(tmp_path, "a/notes.jpg", b"some text saved under an image name\n"): "not_image",
        write(tmp_path, "a/page.png", b"<!DOCTYPE html><html></html>"): "not_image",
        write(tmp_path, "a/cut.jpg", jpg[: len(jpg) // 2]): "corrupt",
        write(tmp_path, "a/cut-header.jpg", jpg[:10]): "corrupt",
        write(tmp_path, "b/bomb.png", forged_png(60_000, 60_000)): "bomb",
        write(tmp_path, "b/tiny.png", png_bytes(synth(51, (20, 12)))): "too_small",
        write(tmp_path, "b/cmyk.jpg", jpeg_bytes(synth(52).convert("CMYK"))): "mode",
        write(tmp_path, "b/deep.png", png_bytes(Image.fromarray(np.asarray(synth(53).convert("L"), np.uint16)
                                                                 * 257))): "mode",
        write(tmp_path, "b/palette.png", png_bytes(synth(54).convert("P"), transparency=0)): "mode",
        write(tmp_path, "b/alpha.png", png_bytes(Image.merge("RGBA", (*synth(55).split(),
                                                                       Image.new("L", (96, 72), 128))))): "mode",
    }
    write(tmp_path, "b/readme.txt", b"ignored: not an image extension")
    write(tmp_path, "b/.hidden.jpg", b"ignored: hidden")
    result = scan(tmp_path)
    assert sorted(result.files) == sorted([*good, *bad])
    assert kinds(result) == {rel: {kind} for rel, kind in bad.items()}
    assert result.counts()["mode"] == 4 and result.counts()["not_image"] == 2
    assert "b/cmyk.jpg" not in result.rejects() and "a/cut.jpg" in result.rejects()
    assert "b/cmyk.jpg" in scan(tmp_path, CleanOptions(reject_modes=True)).rejects()
    # a lower pixel limit makes ordinary images bombs; a higher minimum size makes them too small
    small_limit = kinds(scan(tmp_path, CleanOptions(max_pixels=96 * 72 - 1, min_size=0)))
    assert small_limit["a/img0.jpg"] == {"bomb"}
    assert kinds(scan(tmp_path, CleanOptions(min_size=80)))["a/img0.jpg"] == {"too_small"}


def test_distinct_images_are_not_flagged(tmp_path):
    good_folder(tmp_path, n=40)
    result = scan(tmp_path, CleanOptions(workers=2))  # 80 files: the worker-process path
    assert result.findings == [] and len(result.files) == 80


# copies ------------------------------------------------------------------------------------------------------------

def test_exact_and_near_duplicates(tmp_path):
    good_folder(tmp_path)
    original = (tmp_path / "a/img0.jpg").read_bytes()
    img = Image.open(io.BytesIO(original))
    write(tmp_path, "a/img0_meta.jpg", with_comment(original, b"re-saved by another tool"))
    write(tmp_path, "a/img0.png", png_bytes(img))
    def variant(name: str, of: str, change) -> tuple[str, str]:
        return write(tmp_path, name, jpeg_bytes(change(Image.open(tmp_path / of)), quality=70)), of

    near = dict([variant("a/img1_q40.jpg", "a/img1.jpg", lambda im: im),
                 variant("a/img2_small.jpg", "a/img2.jpg", lambda im: im.resize((64, 48))),
                 variant("a/img3_crop.jpg", "a/img3.jpg", lambda im: im.crop((4, 0, 96, 69)))])
    result = scan(tmp_path)
    found = {f.file: f for f in result.findings}
    assert {k: (f.kind, f.duplicate_of) for k, f in found.items() if k.startswith("a/img0")} == {
        "a/img0_meta.jpg": ("exact_duplicate", "a/img0.jpg"), "a/img0.png": ("exact_duplicate", "a/img0.jpg")}
    for copy, orig in near.items():
        pair = {copy, orig}
        hit = [f for f in result.findings if {f.file, f.duplicate_of} == pair]
        assert len(hit) == 1 and hit[0].kind == "near_duplicate", (copy, result.findings)
    assert len(result.findings) == 5 and len(result.groups) == 4
    assert kinds(scan(tmp_path, CleanOptions(near=False))) == {"a/img0_meta.jpg": {"exact_duplicate"},
                                                               "a/img0.png": {"exact_duplicate"}}


def test_leaks_and_label_conflicts(tmp_path):
    for split in ("train", "test"):
        good_folder(tmp_path / split, n=4, seed=0 if split == "train" else 500)
    train_img = (tmp_path / "train/a/img1.jpg").read_bytes()
    write(tmp_path, "test/a/leak_exact.jpg", train_img)
    write(tmp_path, "test/b/leak_near.jpg", jpeg_bytes(Image.open(io.BytesIO(train_img)).resize((80, 60)), 70))
    write(tmp_path, "train/b/conflict.jpg", (tmp_path / "train/a/img2.jpg").read_bytes())
    result = scan(tmp_path)
    assert result.split_layout
    found = {(f.file, f.kind): f.duplicate_of for f in result.findings if f.kind != "label_conflict"}
    assert found == {("test/a/leak_exact.jpg", "leak"): "train/a/img1.jpg",
                     ("test/b/leak_near.jpg", "leak"): "train/a/img1.jpg",
                     ("train/b/conflict.jpg", "exact_duplicate"): "train/a/img2.jpg"}
    conflicts = {f.file: f.duplicate_of for f in result.findings if f.kind == "label_conflict"}
    # the matched pair across classes a and b: the near leak with one of the two class-a copies, and the conflict
    assert conflicts.pop("test/b/leak_near.jpg") in ("train/a/img1.jpg", "test/a/leak_exact.jpg")
    assert conflicts.pop("train/b/conflict.jpg") == "train/a/img2.jpg"
    assert conflicts.pop("train/a/img2.jpg") == "train/b/conflict.jpg"
    assert list(conflicts.values()) == ["test/b/leak_near.jpg"]
    leak = next(f for f in result.findings if f.file == "test/a/leak_exact.jpg")
    assert "exact" in leak.detail


def test_group_findings_keeps_the_training_copy_with_most_pixels():
    g = np.stack([gray64(synth(0, s)) for s in ((96, 72), (192, 144), (96, 72))])
    items = [Item("train/x/small.jpg", "train", "x", 96 * 72), Item("test/x/big.jpg", "test", "x", 192 * 144),
             Item("train/x/big.jpg", "train", "x", 192 * 144)]
    copies = find_copies(np.stack([view_hashes(x) for x in g]), g)
    assert copies.groups == [[0, 1, 2]] and all(s >= 0.9 for s in copies.edges.values())
    found = group_findings(copies, items, lambda idx: {i: "same" if i else "other" for i in idx})
    assert [(f.file, f.kind, f.duplicate_of) for f in found] == [
        ("train/x/small.jpg", "near_duplicate", "train/x/big.jpg"),
        ("test/x/big.jpg", "leak", "train/x/big.jpg")]
    assert found[1].detail == "test image is an exact copy of a training image"


def test_findings_name_the_directly_matched_copy_and_conflicts_come_from_pairs():
    # a chain 0 - 1 - 2 where 0 and 2 were never matched directly; 2 sits in another class
    items = [Item("a/0.jpg", label="a", pixels=100), Item("a/1.jpg", label="a", pixels=50),
             Item("b/2.jpg", label="b", pixels=50)]
    copies = Copies([[0, 1, 2]], {(0, 1): 0.9, (1, 2): 0.8})
    found = group_findings(copies, items, lambda idx: {i: str(i) for i in idx})
    assert [(f.file, f.kind, f.duplicate_of) for f in found] == [
        ("a/1.jpg", "near_duplicate", "a/0.jpg"), ("b/2.jpg", "near_duplicate", "a/1.jpg"),
        ("a/1.jpg", "label_conflict", "b/2.jpg"), ("b/2.jpg", "label_conflict", "a/1.jpg")]
    assert found[1].detail == "near copy (similarity 0.80)"
    assert Copies.from_keys(["x", "y", "x", "x"]).groups == [[0, 2, 3]]


def test_scan_errors(tmp_path):
    with pytest.raises(ImgclfError, match="folder not found"):
        scan(tmp_path / "nope")
    (tmp_path / "a").mkdir()
    with pytest.raises(ImgclfError, match="no image files"):
        scan(tmp_path)


# quarantine ------------------------------------------------------------------------------------------------------

def snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    return {p.relative_to(root).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_apply_then_restore_gives_back_the_folder_exactly(tmp_path):
    root = tmp_path / "photos"
    good_folder(root)
    write(root, "a/empty.jpg", b"")
    write(root, "b/copy.jpg", (root / "a/img0.jpg").read_bytes())
    write(root, "b/notes.txt", b"not an image, stays")
    before = snapshot(root)
    dirs_before = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_dir())
    result = scan(root)
    assert result.rejects() == ["a/empty.jpg", "a/img0.jpg", "b/copy.jpg"]  # label conflict: both copies go
    quarantine = tmp_path / "rejected"
    moved = apply(root, result.rejects(), quarantine, {"a/empty.jpg": [{"kind": "empty"}]})
    assert len(moved) == 3 and not (root / "a/empty.jpg").exists() and (quarantine / "a/empty.jpg").is_file()
    assert [r["why"] for r in read_manifest(quarantine)][0] == [{"kind": "empty"}]
    assert scan(root).findings == []
    restored, problems = restore(quarantine)
    assert len(restored) == 3 and problems == []
    assert snapshot(root) == before
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_dir()) == dirs_before
    assert [p.name for p in quarantine.iterdir()][0].startswith("manifest.restored-")
    with pytest.raises(ImgclfError, match="no manifest.jsonl"):
        restore(quarantine)


def test_restore_leaves_a_file_whose_place_is_taken(tmp_path):
    root = tmp_path / "photos"
    good_folder(root, n=2)
    apply(root, ["a/img0.jpg", "a/img1.jpg"], tmp_path / "q")
    write(root, "a/img0.jpg", b"a new file in the old place")
    restored, problems = restore(tmp_path / "q")
    assert restored == [str((root / "a/img1.jpg").resolve())] and "exists again" in problems[0]
    assert (tmp_path / "q/a/img0.jpg").is_file() and len(read_manifest(tmp_path / "q")) == 1
    with pytest.raises(ImgclfError, match="must not be the dataset folder"):
        apply(root, ["a/img1.jpg"], root)


# a planted folder of real photos -----------------------------------------------------------------------------------

def _jpeg(img: Image.Image, quality: int = 85) -> bytes:
    return jpeg_bytes(img, quality)


def _crop(img: Image.Image, rng: random.Random, most: float = 0.04) -> Image.Image:
    w, h = img.size
    cuts = [rng.uniform(0, most) for _ in range(4)]
    return img.crop((round(w * cuts[0]), round(h * cuts[1]), round(w * (1 - cuts[2])), round(h * (1 - cuts[3]))))


def build_planted(dst: Path, src: Path = SCENES, seed: int = 0) -> dict:
    """Copy the real photos into dst/{train,test}/CLASS/ (80/20) and plant problems.

    Returns {"clean": [untouched originals], "problems": {planted file: (kind, its original or None)}}.
    """
    rng = random.Random(seed)
    originals: dict[str, bytes] = {}
    for cls_dir in sorted(p for p in src.iterdir() if p.is_dir()):
        files = sorted(cls_dir.glob("*.jpg"))
        rng.shuffle(files)
        cut = int(len(files) * 0.8)
        for k, f in enumerate(files):
            rel = f"{'train' if k < cut else 'test'}/{cls_dir.name}/{f.name}"
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, dst / rel)
            originals[rel] = f.read_bytes()
    train = sorted(r for r in originals if r.startswith("train/"))
    pick = iter(rng.sample(train, 40))
    problems: dict[str, tuple[str, str | None]] = {}

    def plant(rel: str, data: bytes, kind: str, original: str | None) -> None:
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        (dst / rel).write_bytes(data)
        problems[rel] = (kind, original)

    def stem(rel: str) -> str:
        return rel.rsplit(".", 1)[0]

    for k in range(3):  # truncated at 30 %, 70 %, 95 % of the bytes
        o = next(pick)
        plant(f"{stem(o)}_trunc.jpg", originals[o][: int(len(originals[o]) * (0.3, 0.7, 0.95)[k])], "corrupt", None)
    for k in range(2):
        plant(f"train/forest/empty{k}.jpg", b"", "empty", None)
    plant("train/buildings/page.jpg", b"<!DOCTYPE html><html><body>404 not found</body></html>", "not_image", None)
    plant("train/forest/notes.jpg", b"just some text, saved with the wrong name\n" * 20, "not_image", None)
    plant("train/forest/huge.png", forged_png(50_000, 50_000), "bomb", None)
    for k in range(3):  # exact: same JPEG data with a comment segment; and as PNG
        o = next(pick)
        plant(f"{stem(o)}_meta.jpg", with_comment(originals[o], f"copy {k}".encode()), "exact_duplicate", o)
    for _ in range(2):
        o = next(pick)
        buf = io.BytesIO()
        Image.open(io.BytesIO(originals[o])).save(buf, "PNG")
        plant(f"{stem(o)}_png.png", buf.getvalue(), "exact_duplicate", o)
    for k in range(9):  # near: re-encoded, resized, slightly cropped
        o = next(pick)
        img = Image.open(io.BytesIO(originals[o])).convert("RGB")
        if k % 3 == 0:
            data = _jpeg(img, quality=50)
        elif k % 3 == 1:
            data = _jpeg(img.resize((img.width * 2 // 3, img.height * 2 // 3), Image.LANCZOS), quality=90)
        else:
            data = _jpeg(_crop(img, rng), quality=90)
        plant(f"{stem(o)}_near{k}.jpg", data, "near_duplicate", o)
    for k in range(4):  # leaks: copies of training photos in test (two exact, two re-encoded and cropped)
        o = next(pick)
        img = Image.open(io.BytesIO(originals[o])).convert("RGB")
        data = originals[o] if k < 2 else _jpeg(_crop(img, rng, 0.03), quality=70)
        plant(f"test/{o.split('/')[1]}/leak{k}.jpg", data, "leak", o)
    for k in range(2):  # label conflicts: a buildings photo copied into forest
        o = next(p for p in pick if "/buildings/" in p)
        plant(f"train/forest/conflict{k}.jpg", originals[o], "label_conflict", o)
    o = next(pick)  # unusual mode and too small: the originals replaced, so no copies
    plant(o, _jpeg(Image.open(io.BytesIO(originals[o])).convert("CMYK")), "mode", None)
    o = next(pick)
    plant(o, _jpeg(Image.open(io.BytesIO(originals[o])).resize((24, 24))), "too_small", None)
    used = {o for _, o in problems.values() if o}
    clean = sorted(r for r in originals if r not in used and r not in problems)
    return {"clean": clean, "problems": problems, "originals": sorted(originals)}


@pytest.mark.realdata
def test_planted_real_photos_all_found_few_false_alarms(tmp_path):
    if not SCENES.is_dir():
        pytest.skip(f"real photos not found at {SCENES} (see ../shared/data/README.md)")
    key = build_planted(tmp_path / "planted")
    result = scan(tmp_path / "planted")
    by_file: dict[str, set[str]] = {}
    for f in result.findings:
        by_file.setdefault(f.file, set()).add(f.kind)
    group_of = {m: set(g) for g in result.groups for m in g}
    missed = []
    for rel, (kind, original) in key["problems"].items():
        seen = by_file.get(rel, set()) | (by_file.get(original, set()) if original else set())
        if kind not in seen or (original and original not in group_of.get(rel, ())):
            missed.append((rel, kind, sorted(seen)))
    false_alarms = [rel for rel in key["clean"] if rel in by_file]
    print(f"planted {len(key['problems'])}, missed {len(missed)}; clean images flagged "
          f"{len(false_alarms)}/{len(key['clean'])}: {false_alarms}")
    assert missed == []
    assert len(false_alarms) <= 0.01 * len(key["clean"])


def test_unreadable_file_is_reported_not_fatal(tmp_path):
    from imgclf.data.clean import inspect_file

    assert inspect_file((str(tmp_path / "gone.jpg"), 10**6))["problem"] == "corrupt"
