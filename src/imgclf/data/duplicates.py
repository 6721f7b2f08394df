"""Exact and near duplicates, train/test leaks and label conflicts among fingerprinted images (pure, no file I/O).

Input: per image an id, its split ("train", "test" or ""), its label ("" when unknown), its pixel count, its
view hashes and 64x64 gray copy (``imgclf.data.hashing``). Output: groups of copies and one ``Finding`` per problem.

1. Candidate pairs: a view hash within ``max_distance`` bits (``hashing.close_pairs``).
2. Confirmation: ``hashing.similarity`` >= ``min_similarity``. Pairs already joined are not re-checked, so a
   thousand copies of one placeholder image cost a thousand checks, not half a million. Measured on scenes-mini
   (150 px photos): re-encoded or resized copies score >= 0.99, copies cropped up to 4 % a side >= 0.71 (6 %:
   >= 0.59), unrelated photos with close hashes <= 0.25. Tiny images (CIFAR's 32 px) that merely look alike
   reach 0.5-0.7, hence the default of 0.6.
3. Groups: connected components (union-find) of the confirmed pairs; ``split`` keeps each group in one split.
4. In each group the *keeper* is the copy to keep: a training image first (a copy in test is the leak), then the
   most pixels, then the shortest path. Members with the same content hash form exact clusters.
5. Findings, each naming the member it was directly matched with on the way to the keeper: a test copy of a
   training image is a ``leak``; other copies are ``exact_duplicate`` (same decoded pixels) or
   ``near_duplicate``; both ends of a confirmed pair in different class folders get a ``label_conflict``.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from imgclf.data.hashing import close_pairs, similarity

DEFAULT_MAX_DISTANCE = 12  # bits of 64: pHash distance of a candidate pair
DEFAULT_MIN_SIMILARITY = 0.6  # [-1, 1]: high-pass thumbnail correlation that confirms a candidate


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


@dataclass
class Copies:
    """Groups of copies (index lists, two or more members) and the confirmed pairs that joined them."""

    groups: list[list[int]] = field(default_factory=list)
    edges: dict[tuple[int, int], float] = field(default_factory=dict)  # (i, j), i < j -> similarity

    @classmethod
    def from_keys(cls, keys: Sequence[str]) -> Copies:
        """Groups of equal keys (e.g. pixel hashes): exact copies only."""
        members: dict[str, list[int]] = {}
        for i, key in enumerate(keys):
            members.setdefault(key, []).append(i)
        groups = [g for g in members.values() if len(g) > 1]
        return cls(groups, {(g[0], j): 1.0 for g in groups for j in g[1:]})


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


def find_copies(hashes: np.ndarray, grays: np.ndarray, max_distance: int = DEFAULT_MAX_DISTANCE,
                min_similarity: float = DEFAULT_MIN_SIMILARITY) -> Copies:
    """Groups of images that are copies of each other, and the confirmed pairs.

    Args:
        hashes: uint64 (n, views) view hashes.
        grays: uint8 (n, 64, 64) gray copies.
        max_distance: candidate threshold in bits; negative: identical gray copies only (no near duplicates).
        min_similarity: confirmation threshold.

    Examples:
        >>> from PIL import Image
        >>> from imgclf.data.hashing import gray64, view_hashes
        >>> a = Image.effect_mandelbrot((200, 150), (-2, -1.2, 1, 1.2), 60)
        >>> b = Image.effect_noise((200, 150), 60)
        >>> g = np.stack([gray64(x) for x in (a, b, a.resize((100, 75)))])
        >>> find_copies(np.stack([view_hashes(x) for x in g]), g).groups
        [[0, 2]]
    """
    n = len(grays)
    uf = _UnionFind(n)
    edges: dict[tuple[int, int], float] = {}
    cache: dict = {}  # filtered views of the images met so far; a few hundred kB each, only for candidates
    pairs = close_pairs(hashes, max(max_distance, 0)) if n > 1 else np.zeros((0, 2), np.int64)
    for i, j in pairs.tolist():
        if uf.find(i) == uf.find(j):
            continue
        if np.array_equal(grays[i], grays[j]):
            score = 1.0
        elif max_distance >= 0:
            score = similarity(grays[i], grays[j], cache, (i, j))
        else:
            continue
        if score >= min_similarity:
            uf.union(i, j)
            edges[(i, j)] = score
    members: dict[int, list[int]] = {}
    for i in range(n):
        members.setdefault(uf.find(i), []).append(i)
    return Copies([g for g in members.values() if len(g) > 1], edges)


def keeper_order(group: list[int], items: Sequence[Item]) -> list[int]:
    """The group's members, the one to keep first (training split, most pixels, shortest path)."""
    return sorted(group, key=lambda i: (items[i].split == "test", -items[i].pixels, len(items[i].id), items[i].id))


def _tree(keeper: int, members: list[int], adjacency: dict[int, list[int]]) -> dict[int, int]:
    """parent[member] on a shortest path of confirmed pairs to the keeper (breadth-first)."""
    inside, parent, queue = set(members), {keeper: keeper}, deque([keeper])
    while queue:
        node = queue.popleft()
        for nxt in adjacency.get(node, []):
            if nxt in inside and nxt not in parent:
                parent[nxt] = node
                queue.append(nxt)
    return parent


def group_findings(copies: Copies, items: Sequence[Item], exact_keys: Callable[[list[int]], dict[int, str]]
                   ) -> list[Finding]:
    """Findings for copy groups: leaks, exact and near duplicates, label conflicts (see the module docstring).

    ``exact_keys(indices)`` returns a content hash of the decoded pixels of each asked image; it is called once,
    about the members that share their pixel count with another member of their group (only those can be exact
    copies).
    """
    orders = [keeper_order(group, items) for group in copies.groups]
    needed = []
    for order in orders:
        sizes = Counter(items[i].pixels for i in order)
        needed += [i for i in order if sizes[items[i].pixels] > 1]
    keys = exact_keys(needed) if needed else {}
    adjacency: dict[int, list[int]] = {}
    for i, j in copies.edges:
        adjacency.setdefault(i, []).append(j)
        adjacency.setdefault(j, []).append(i)
    findings = []
    for order in orders:
        parent = _tree(order[0], order, adjacency)
        first_with_key: dict[str, int] = {}
        for i in order:
            if i in keys:
                first_with_key.setdefault(keys[i], i)
        for i in order[1:]:
            rep = first_with_key.get(keys[i], i) if i in keys else i
            findings.append(_copy_finding(i, order[0], rep, parent, items, copies.edges))
    findings += _label_conflicts(copies.edges, items)
    return findings


def _copy_finding(i: int, keeper: int, rep: int, parent: dict[int, int], items: Sequence[Item],
                  edges: dict[tuple[int, int], float]) -> Finding:
    """The finding for non-keeper member ``i``; ``rep`` is the first member with the same pixels (or i itself)."""
    me = items[i]
    if me.split == "test" and items[keeper].split == "train":
        if rep != i and items[rep].split == "train":
            return Finding(me.id, "leak", "test image is an exact copy of a training image", items[rep].id)
        node = parent.get(i, keeper)  # the nearest training image on the way to the keeper
        while items[node].split != "train":
            node = parent.get(node, keeper)
        return Finding(me.id, "leak", "test image is a near copy of a training image", items[node].id)
    if rep != i:
        return Finding(me.id, "exact_duplicate", "same decoded pixels", items[rep].id)
    other = parent.get(i, keeper)
    score = edges.get((min(i, other), max(i, other)))
    detail = f"near copy (similarity {score:.2f})" if score is not None else "near copy"
    return Finding(me.id, "near_duplicate", detail, items[other].id)


def _label_conflicts(edges: dict[tuple[int, int], float], items: Sequence[Item]) -> list[Finding]:
    """Both ends of every confirmed pair whose class folders differ (one finding per file)."""
    seen, out = set(), []
    for i, j in sorted(edges):
        a, b = items[i], items[j]
        if a.label and b.label and a.label != b.label:
            for me, other in ((a, b), (b, a)):
                if me.id not in seen:
                    seen.add(me.id)
                    out.append(Finding(me.id, "label_conflict", f"a copy is labelled {other.label!r}, "
                                                                f"this one {me.label!r}", other.id))
    return out
