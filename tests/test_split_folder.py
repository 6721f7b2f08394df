"""split: stratified, seeded, copies of one picture never divided between train and test."""

from __future__ import annotations

import csv
import io
import os

import numpy as np
import pytest
from PIL import Image

from imgclf.data.split import plan_split, split_folder
from imgclf.errors import ImgclfError


def _synth(seed: int, size: tuple[int, int] = (96, 72)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).resize(size, Image.BICUBIC)


def _jpeg(img: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


@pytest.fixture()
def photos(tmp_path):
    """20 cats (3 of them with a near copy), 10 dogs, one broken file, one loose file at the top."""
    root = tmp_path / "photos"
    for cls, n, offset in (("cats", 20, 0), ("dogs", 10, 100)):
        (root / cls).mkdir(parents=True)
        for k in range(n):
            (root / cls / f"{k:02d}.jpg").write_bytes(_jpeg(_synth(offset + k)))
    for k in range(3):
        (root / "cats" / f"{k:02d}_copy.jpg").write_bytes(_jpeg(_synth(k).resize((64, 48)), 60))
    (root / "dogs" / "broken.jpg").write_bytes(b"")
    (root / "loose.jpg").write_bytes(_jpeg(_synth(999)))
    return root


def _read_split(out):
    with open(out / "split.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_split_keeps_copies_together_and_stratifies(photos, tmp_path):
    result = split_folder(photos, tmp_path / "out", test=0.2, seed=0)
    assert result.groups == 3
    assert sum(result.counts["train"].values()) + sum(result.counts["test"].values()) == 33
    assert result.counts["test"]["dogs"] == 2 and 4 <= result.counts["test"]["cats"] <= 6
    assert any("broken.jpg: empty" in s for s in result.skipped) and any("loose.jpg" in s for s in result.skipped)
    rows = _read_split(tmp_path / "out")
    where = {r["path"].split("/", 1)[1]: r["split"] for r in rows}
    for k in range(3):
        assert where[f"cats/{k:02d}.jpg"] == where[f"cats/{k:02d}_copy.jpg"]
    for r in rows:
        assert (tmp_path / "out" / r["path"]).read_bytes() == (photos / r["path"].split("/", 1)[1]).read_bytes()
    assert not any(r["path"].endswith("broken.jpg") for r in rows)


def test_split_is_seeded(photos, tmp_path):
    def test_files(seed, name):
        split_folder(photos, tmp_path / name, test=0.3, seed=seed)
        return {r["path"] for r in _read_split(tmp_path / name) if r["split"] == "test"}

    first = test_files(0, "a")
    assert first == test_files(0, "b")
    assert first != test_files(1, "c")


def test_split_hard_links(photos, tmp_path):
    split_folder(photos, tmp_path / "out", link="hardlink")
    row = _read_split(tmp_path / "out")[0]
    assert os.path.samefile(tmp_path / "out" / row["path"], photos / row["path"].split("/", 1)[1])


def test_plan_split_never_divides_a_group():
    rng = np.random.default_rng(0)
    labels = [str(x) for x in rng.integers(0, 3, 200)]
    groups = [list(range(k, k + 4)) for k in range(0, 80, 4)]
    for seed in range(5):
        mask = plan_split(labels, groups, 0.25, seed)
        assert all(len(set(mask[g])) == 1 for g in groups)
        assert 0.2 <= mask.mean() <= 0.3


def test_split_errors(photos, tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("taken")
    with pytest.raises(ImgclfError, match="not empty"):
        split_folder(photos, tmp_path / "full")
    with pytest.raises(ImgclfError, match="between 0 and 1"):
        split_folder(photos, tmp_path / "o1", test=1.5)
    with pytest.raises(ImgclfError, match="accepted: copy, hardlink, symlink"):
        split_folder(photos, tmp_path / "o2", link="move")
    split_folder(photos, tmp_path / "done")
    with pytest.raises(ImgclfError, match="already split"):
        split_folder(tmp_path / "done", tmp_path / "o3")
