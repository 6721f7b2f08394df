"""Split a folder of class sub-folders into train/ and test/: stratified, seeded and leak-free.

    imgclf data split photos/ --test 0.2 --seed 0 --out photos-split/

1. Scan the folder as ``clean`` does (same fingerprints, same thresholds); broken files are left out and listed.
2. Copies (exact and near duplicates) form groups, and every group lands in one split whole, so no picture is in
   train and test at once.
3. Per class, the groups are shuffled with the seed and taken into test while the class's test count stays within
   ``test * class size``, then the one group that brings it closest (if any does); a class with two or more
   groups always gets at least one in test.
4. ``OUT/train/CLASS/...`` and ``OUT/test/CLASS/...`` are written as copies, hard links or symbolic links, with
   ``OUT/split.csv`` listing path,label,split,group for every file.
"""

from __future__ import annotations

import csv
import os
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from imgclf.data._parallel import track
from imgclf.data.clean import BROKEN, CleanOptions, scan
from imgclf.errors import ImgclfError

LINKS = ("copy", "hardlink", "symlink")


@dataclass
class SplitResult:
    out: Path
    counts: dict[str, dict[str, int]]  # split -> class -> images
    groups: int  # copy groups kept together
    skipped: list[str] = field(default_factory=list)  # broken or unlabelled files, one line each
    fallbacks: int = 0  # hard links that had to be copies (another file system)


def plan_split(labels: list[str], groups: list[list[int]], test: float, seed: int) -> np.ndarray:
    """Boolean (n,) mask of the test images: stratified by label, groups never divided.

    A group counts for the label of its first member.

    Examples:
        >>> mask = plan_split(["a"] * 6 + ["b"] * 4, [[0, 1, 2]], 0.5, seed=0)
        >>> int(mask[:6].sum()), bool(mask[0] == mask[1] == mask[2]), int(mask[6:].sum())
        (3, True, 2)
    """
    if not 0 < test < 1:
        raise ImgclfError(f"--test {test}: give the test fraction, between 0 and 1 (e.g. 0.2)")
    n = len(labels)
    grouped = {i for g in groups for i in g}
    units = [sorted(g) for g in groups] + [[i] for i in range(n) if i not in grouped]
    by_label: dict[str, list[list[int]]] = {}
    for unit in sorted(units):
        by_label.setdefault(labels[unit[0]], []).append(unit)
    rng = np.random.default_rng(seed)
    mask = np.zeros(n, dtype=bool)
    for label in sorted(by_label):
        class_units = by_label[label]
        order = rng.permutation(len(class_units))
        size = sum(len(u) for u in class_units)
        target = max(round(test * size), 1 if len(class_units) >= 2 else 0)
        taken = 0
        rest = []
        for k in order:  # first every group that fits under the target, in shuffled order
            unit = class_units[k]
            if taken + len(unit) <= target:
                mask[unit] = True
                taken += len(unit)
            else:
                rest.append(unit)
        if taken < target and rest:  # then the one group that brings the count closest, if it does
            best = min(rest, key=lambda u: abs(taken + len(u) - target))
            if abs(taken + len(best) - target) < target - taken:
                mask[best] = True
    return mask


def _place(src: Path, dst: Path, link: str) -> bool:
    """Put ``src`` at ``dst``; returns False when a hard link had to fall back to a copy."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if link == "hardlink":
        try:
            os.link(src, dst)
            return True
        except OSError:
            shutil.copy2(src, dst)
            return False
    if link == "symlink":
        dst.symlink_to(src.resolve())
    else:
        shutil.copy2(src, dst)
    return True


def split_folder(root: str | Path, out: str | Path, test: float = 0.2, seed: int = 0, link: str = "copy",
                 options: CleanOptions | None = None, progress: bool = False) -> SplitResult:
    """Write a leak-free, stratified train/test copy of a class-per-folder dataset (see the module docstring).

    Examples:
        >>> result = split_folder("photos/", "photos-split/", test=0.2, seed=0)  # doctest: +SKIP
        >>> result.counts["test"]  # doctest: +SKIP
        {'cats': 40, 'dogs': 38}
    """
    if link not in LINKS:
        raise ImgclfError(f"--link {link!r}: accepted: {', '.join(LINKS)}")
    root, out = Path(root).expanduser(), Path(out).expanduser()
    if (root / "train").is_dir() and (root / "test").is_dir():
        raise ImgclfError(f"{root} is already split (it has train/ and test/); give a folder of class sub-folders")
    if out.exists() and any(out.iterdir()):
        raise ImgclfError(f"output folder {out} exists and is not empty; choose a new --out")
    if out.resolve().is_relative_to(root.resolve()):
        raise ImgclfError(f"--out {out} must be outside the dataset folder {root}")
    result = scan(root, options, progress)
    broken = {f.file: f"{f.file}: {f.kind} ({f.detail})" for f in result.findings if f.kind in BROKEN}
    skipped = list(broken.values())
    files = []
    for rel in result.files:
        if rel in broken:
            continue
        if "/" not in rel:
            skipped.append(f"{rel}: not in a class folder")
            continue
        files.append(rel)
    index = {rel: i for i, rel in enumerate(files)}
    groups = [[index[m] for m in g if m in index] for g in result.groups]
    groups = [g for g in groups if len(g) > 1]
    labels = [rel.split("/", 1)[0] for rel in files]
    mask = plan_split(labels, groups, test, seed)
    group_id = {i: k for k, g in enumerate(groups) for i in g}
    counts: dict[str, Counter] = {"train": Counter(), "test": Counter()}
    fallbacks = 0
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "split.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label", "split", "group"])
        for i in track(range(len(files)), len(files), "writing", progress, unit="files"):
            part = "test" if mask[i] else "train"
            fallbacks += not _place(root / files[i], out / part / files[i], link)
            counts[part][labels[i]] += 1
            writer.writerow([f"{part}/{files[i]}", labels[i], part, group_id.get(i, "")])
    return SplitResult(out, {k: dict(sorted(v.items())) for k, v in counts.items()}, len(groups), skipped, fallbacks)
