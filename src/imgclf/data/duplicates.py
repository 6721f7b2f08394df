"""Exact and near duplicates, train/test leaks and label conflicts among fingerprinted images (pure, no file I/O).

Input: per image an id, its split ("train", "test" or ""), its label ("" when unknown), its pixel count, its
view hashes and 64x64 gray copy (``imgclf.data.hashing``). Output: groups of copies and one ``Finding`` per problem.

1. Candidate pairs: a view hash within ``max_distance`` bits (``hashing.close_pairs``).
2. Confirmation: ``hashing.similarity`` >= ``min_similarity``; pairs already joined are not re-checked, so a
   thousand copies of one placeholder image cost a thousand checks, not half a million.
3. Groups: connected components (union-find) of confirmed pairs.
4. In each group the *keeper* is the copy to keep: a training image first (a copy in test is the leak), then the
   most pixels, then the shortest path. Members with the same content hash form exact clusters.
5. Findings: a test copy of a training image is a ``leak``; other copies are ``exact_duplicate`` (same decoded
   pixels) or ``near_duplicate``; a group whose members sit in different class folders gives every member a
   ``label_conflict``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from imgclf.data.hashing import close_pairs, similarity

DEFAULT_MAX_DISTANCE = 12  # bits of 64: pHash distance of a candidate pair
DEFAULT_MIN_SIMILARITY = 0.5  # [-1, 1]: high-pass thumbnail correlation that confirms a candidate


@dataclass(frozen=True)
class Finding:
    """One problem with one file: ``kind`` is one of ``imgclf.data.clean.KINDS``."""

    file: str  # path relative to the scanned folder (POSIX separators) or a dataset id
    kind: str
    detail: str = ""
    duplicate_of: str | None = None  # for duplicates, leaks and label conflicts: the other file

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True)
class Item:
    """What the duplicate search needs to know about one image besides its fingerprints."""

    id: str
    split: str = ""  # "train", "test" or "" (no split layout)
    label: str = ""  # class folder, "" when unknown
    pixels: int = 0  # width * height of the original


class _UnionFind:
    def __init__(self, n: int):
        self.parent = np.arange(n)

    def find(self, i: int) -> int:
        root = i
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[i] != root:  # path compression
            self.parent[i], i = root, self.parent[i]
        return int(root)

    def union(self, i: int, j: int) -> None:
        ri, rj = self.find(i), self.find(j)
        if ri != rj:
            self.parent[max(ri, rj)] = min(ri, rj)


def find_groups(hashes: np.ndarray, grays: np.ndarray, max_distance: int = DEFAULT_MAX_DISTANCE,
                min_similarity: float = DEFAULT_MIN_SIMILARITY) -> list[list[int]]:
    """Groups (sorted index lists, two or more members) of images that are copies of each other.

    Args:
        hashes: uint64 (n, views) view hashes.
        grays: uint8 (n, 64, 64) gray copies.
        max_distance: candidate threshold in bits; negative disables near duplicates (identical gray copies only).
        min_similarity: confirmation threshold.

    Examples:
        >>> from PIL import Image
        >>> from imgclf.data.hashing import gray64, view_hashes
        >>> a = Image.effect_mandelbrot((200, 150), (-2, -1.2, 1, 1.2), 60)
        >>> b = Image.effect_noise((200, 150), 60)
        >>> g = np.stack([gray64(x) for x in (a, b, a.resize((100, 75)))])
        >>> find_groups(np.stack([view_hashes(x) for x in g]), g)
        [[0, 2]]
    """
    n = len(grays)
    uf = _UnionFind(n)
    pairs = close_pairs(hashes, max(max_distance, 0)) if n > 1 else np.zeros((0, 2), np.int64)
    for i, j in pairs.tolist():
        if uf.find(i) == uf.find(j):
            continue
        same = np.array_equal(grays[i], grays[j])
        if same or (max_distance >= 0 and similarity(grays[i], grays[j]) >= min_similarity):
            uf.union(i, j)
    members: dict[int, list[int]] = {}
    for i in range(n):
        members.setdefault(uf.find(i), []).append(i)
    return [g for g in members.values() if len(g) > 1]


def keeper_order(group: list[int], items: Sequence[Item]) -> list[int]:
    """The group's members, the one to keep first (training split, most pixels, shortest path)."""
    return sorted(group, key=lambda i: (items[i].split == "test", -items[i].pixels, len(items[i].id), items[i].id))


def group_findings(groups: list[list[int]], items: Sequence[Item], grays: np.ndarray,
                   exact_keys: Callable[[list[int]], dict[int, str]]) -> list[Finding]:
    """Findings for copy groups: leaks, exact and near duplicates, label conflicts (see the module docstring).

    ``exact_keys(indices)`` returns a content hash of the decoded pixels of each asked image; it is called once,
    about the members that share their pixel count with another member of their group (only those can be exact
    copies).
    """
    orders = [keeper_order(group, items) for group in groups]
    needed = []
    for order in orders:
        sizes = Counter(items[i].pixels for i in order)
        needed += [i for i in order if sizes[items[i].pixels] > 1]
    keys = exact_keys(needed) if needed else {}
    findings = []
    for order in orders:
        keeper = order[0]
        cluster_rep: dict[str, int] = {}
        for i in order:
            if i in keys:
                cluster_rep.setdefault(keys[i], i)
        for i in order[1:]:
            rep = cluster_rep.get(keys[i], i) if i in keys else i
            findings.append(_copy_finding(i, keeper, rep, items, grays))
        findings += _label_conflicts(order, items)
    return findings


def _copy_finding(i: int, keeper: int, rep: int, items: Sequence[Item], grays: np.ndarray) -> Finding:
    """The finding for a non-keeper member ``i``; ``rep`` is the first member with its exact pixels (or i)."""
    me, kept = items[i], items[keeper]
    if me.split != kept.split and kept.split == "train":
        how = "an exact" if rep == keeper else "a near"
        return Finding(me.id, "leak", f"{me.split} image is {how} copy of a training image", kept.id)
    if rep != i:
        return Finding(me.id, "exact_duplicate", "same decoded pixels", items[rep].id)
    score = similarity(grays[i], grays[keeper])
    return Finding(me.id, "near_duplicate", f"near copy (similarity {score:.2f})", kept.id)


def _label_conflicts(order: list[int], items: Sequence[Item]) -> list[Finding]:
    labels = {items[i].label for i in order if items[i].label}
    if len(labels) < 2:
        return []
    out = []
    for i in (i for i in order if items[i].label):
        other = next(j for j in order if items[j].label and items[j].label != items[i].label)
        out.append(Finding(items[i].id, "label_conflict",
                           f"copies are labelled {', '.join(sorted(labels))}", items[other].id))
    return out
