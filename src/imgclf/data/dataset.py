"""In-memory image datasets, stratified splits and label grouping.

A dataset is a set of *pools* (the source's own splits: ``train``/``test``, or ``all`` for a folder without them),
each holding uint8 images (N, C, H, W), integer labels and string ids. Splits are lists of ids, so a run can
record exactly which images it trained, validated and tested on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from imgclf.errors import ImgclfError


@dataclass
class Pool:
    images: np.ndarray  # uint8 (N, C, H, W)
    labels: np.ndarray  # int64 (N,), index into Dataset.classes
    ids: np.ndarray  # str (N,), unique within the dataset: "train/12" or a file path relative to the root
    orig_labels: np.ndarray | None = None  # int64 (N,), labels before grouping

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, idx: np.ndarray) -> Pool:
        orig = None if self.orig_labels is None else self.orig_labels[idx]
        return Pool(self.images[idx], self.labels[idx], self.ids[idx], orig)


@dataclass
class Dataset:
    name: str  # the spec it was loaded from, e.g. "cifar10" or "folder:photos"
    classes: list[str]
    pools: dict[str, Pool]
    digits: bool = False  # True for digit-like data, where horizontal flips change the class
    orig_classes: list[str] | None = None  # class names before grouping
    skipped: list[str] = field(default_factory=list)  # files that could not be read, one line each
    source: str = ""  # where the files were found

    @property
    def channels(self) -> int:
        return next(iter(self.pools.values())).images.shape[1]

    @property
    def image_size(self) -> int:
        return next(iter(self.pools.values())).images.shape[-1]


@dataclass
class Splits:
    train: Pool
    val: Pool | None
    test: Pool

    def ids(self) -> dict[str, list[str]]:
        out = {"train": self.train.ids.tolist(), "test": self.test.ids.tolist()}
        out["val"] = [] if self.val is None else self.val.ids.tolist()
        return out


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (kept, held_out): ``fraction`` of each class held out, at least one where a class has two or more."""
    rng = np.random.default_rng(seed)
    keep, held = [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.int64)]  # an empty pool splits into two
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        n_held = int(round(fraction * len(idx)))
        if fraction > 0 and n_held == 0 and len(idx) >= 2:
            n_held = 1
        held.append(idx[:n_held])
        keep.append(idx[n_held:])
    return np.sort(np.concatenate(keep)), np.sort(np.concatenate(held))


def make_splits(ds: Dataset, val_fraction: float, test_fraction: float, seed: int) -> Splits:
    """Carve validation from training (and test from ``all`` when the source has no test split)."""
    if "test" in ds.pools:
        train_pool, test = ds.pools["train"], ds.pools["test"]
    else:
        pool = ds.pools["all"]
        keep, held = stratified_split(pool.labels, test_fraction, seed)
        train_pool, test = pool.take(keep), pool.take(held)
    val = None
    if val_fraction > 0:
        keep, held = stratified_split(train_pool.labels, val_fraction, seed + 1)
        train_pool, val = train_pool.take(keep), train_pool.take(held)
    for name, part in (("training", train_pool), ("test", test)):
        if len(part) == 0:
            raise ImgclfError(f"the {name} split of {ds.name} is empty; add images or change the split fractions")
    return Splits(train_pool, val, test)


def splits_from_ids(ds: Dataset, ids: dict[str, list[str]]) -> Splits:
    """Rebuild the splits a run recorded; an id that is no longer in the dataset is an error naming it."""
    where = {}
    for pool_name, pool in ds.pools.items():
        for i, key in enumerate(pool.ids.tolist()):
            where[key] = (pool_name, i)

    def build(keys: list[str]) -> Pool | None:
        if not keys:
            return None
        missing = [k for k in keys if k not in where]
        if missing:
            raise ImgclfError(f"{len(missing)} image(s) of the recorded split are missing from {ds.name}, "
                              f"e.g. {missing[0]!r}")
        pool_names = {where[k][0] for k in keys}
        parts = []
        for pool_name in sorted(pool_names):
            idx = np.array([where[k][1] for k in keys if where[k][0] == pool_name])
            parts.append(ds.pools[pool_name].take(idx))
        if len(parts) == 1:
            return parts[0]
        orig = None if parts[0].orig_labels is None else np.concatenate([p.orig_labels for p in parts])
        return Pool(np.concatenate([p.images for p in parts]), np.concatenate([p.labels for p in parts]),
                    np.concatenate([p.ids for p in parts]), orig)

    return Splits(build(ids["train"]), build(ids.get("val", [])), build(ids["test"]))


# Label grouping -----------------------------------------------------------------------------------------------

BUILTIN_GROUPINGS = {
    "vehicles-vs-animals": {
        "vehicle": ["airplane", "automobile", "ship", "truck"],
        "animal": ["bird", "cat", "deer", "dog", "frog", "horse"],
    },
}


def read_grouping(spec: str) -> dict[str, list[str]]:
    """A grouping by name or from a YAML file mapping each new class to a list of original classes."""
    if spec in BUILTIN_GROUPINGS:
        return BUILTIN_GROUPINGS[spec]
    path = Path(spec)
    if not path.is_file():
        raise ImgclfError(f"--classes {spec!r}: not a built-in grouping ({', '.join(BUILTIN_GROUPINGS)}) "
                          "and no such YAML file")
    import yaml

    mapping = yaml.safe_load(path.read_text())
    if not isinstance(mapping, dict) or not all(isinstance(v, list) for v in mapping.values()):
        raise ImgclfError(f"--classes {spec}: expected a mapping 'new_class: [original, ...]'")
    return {str(k): [str(x) for x in v] for k, v in mapping.items()}


def apply_grouping(ds: Dataset, spec: str) -> Dataset:
    """Relabel with grouped classes; images of classes the grouping leaves out are dropped."""
    grouping = read_grouping(spec)
    old_index = {name: i for i, name in enumerate(ds.classes)}
    lut = np.full(len(ds.classes), -1, dtype=np.int64)
    for new_i, (new_name, olds) in enumerate(grouping.items()):
        for old in olds:
            if old not in old_index:
                raise ImgclfError(f"--classes: {old!r} (in group {new_name!r}) is not a class of {ds.name}; "
                                  f"classes: {', '.join(ds.classes)}")
            if lut[old_index[old]] >= 0:
                raise ImgclfError(f"--classes: {old!r} is listed in more than one group")
            lut[old_index[old]] = new_i
    pools = {}
    for name, pool in ds.pools.items():
        new = lut[pool.labels]
        keep = np.flatnonzero(new >= 0)
        pools[name] = Pool(pool.images[keep], new[keep], pool.ids[keep], pool.labels[keep])
    return Dataset(ds.name, list(grouping), pools, ds.digits, list(ds.classes), ds.skipped, ds.source)


def class_counts(labels: np.ndarray, num_classes: int) -> np.ndarray:
    return np.bincount(labels, minlength=num_classes)
