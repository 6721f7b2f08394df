"""imgclf.data.dataset and imgclf.data.folder: splits, label grouping, folder/csv datasets, the decode cache."""

from __future__ import annotations

import os

import numpy as np
import pytest

from conftest import CIFAR10_CLASSES, COLOURS, make_folder_dataset
from imgclf.data import folder as folder_mod
from imgclf.data import load_dataset
from imgclf.data.dataset import Dataset, Pool, apply_grouping, make_splits, splits_from_ids, stratified_split
from imgclf.errors import ImgclfError


def _pool(labels, prefix="all", size=4) -> Pool:
    labels = np.asarray(labels, dtype=np.int64)
    images = np.repeat(labels.astype(np.uint8)[:, None, None, None], size * size * 3).reshape(len(labels), 3, size,
                                                                                               size)
    return Pool(images, labels, np.array([f"{prefix}/{i}" for i in range(len(labels))]))


def _dataset(pools: dict[str, Pool], classes=("a", "b", "c"), name="synthetic") -> Dataset:
    return Dataset(name, list(classes), pools)


# stratified splits ----------------------------------------------------------------------------------------------

def test_stratified_split_proportions_per_class():
    labels = np.repeat([0, 1, 2], [10, 20, 40])
    keep, held = stratified_split(labels, 0.25, seed=3)
    assert np.bincount(labels[held]).tolist() == [2, 5, 10]  # round(0.25 * n) of each class
    assert sorted(np.concatenate([keep, held]).tolist()) == list(range(len(labels)))
    assert not set(keep) & set(held)


def test_stratified_split_holds_out_one_of_a_small_class():
    labels = np.array([0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2])
    _, held = stratified_split(labels, 0.1, seed=0)
    assert np.bincount(labels[held], minlength=3).tolist() == [1, 1, 0]  # a single image stays in training


def test_stratified_split_is_determined_by_the_seed():
    labels = np.repeat([0, 1], 50)
    a, b, c = (stratified_split(labels, 0.2, seed=s)[1] for s in (7, 7, 8))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_make_splits_without_a_test_pool():
    ds = _dataset({"all": _pool(np.repeat([0, 1, 2], 20))})
    splits = make_splits(ds, val_fraction=0.25, test_fraction=0.2, seed=0)
    assert np.bincount(splits.test.labels).tolist() == [4, 4, 4]
    assert np.bincount(splits.val.labels).tolist() == [4, 4, 4]  # 25 % of the 16 left per class
    assert np.bincount(splits.train.labels).tolist() == [12, 12, 12]
    ids = splits.ids()
    everything = ids["train"] + ids["val"] + ids["test"]
    assert len(everything) == len(set(everything)) == 60
    again = make_splits(ds, 0.25, 0.2, seed=0)
    assert again.ids() == ids
    assert make_splits(ds, 0.25, 0.2, seed=1).ids() != ids


def test_make_splits_with_a_test_pool():
    ds = _dataset({"train": _pool(np.repeat([0, 1, 2], 10), "train"), "test": _pool([0, 1, 2], "test")})
    splits = make_splits(ds, val_fraction=0.2, test_fraction=0.5, seed=0)
    assert splits.test.ids.tolist() == ["test/0", "test/1", "test/2"]  # the source's own test split, untouched
    assert len(splits.val) == 6 and len(splits.train) == 24
    no_val = make_splits(ds, val_fraction=0.0, test_fraction=0.5, seed=0)
    assert no_val.val is None and len(no_val.train) == 30 and no_val.ids()["val"] == []


def test_make_splits_with_nothing_left_to_train_on():
    ds = _dataset({"train": _pool([], "train"), "test": _pool([0], "test")})
    with pytest.raises(ImgclfError, match="training split of synthetic is empty"):
        make_splits(ds, 0.1, 0.2, seed=0)


def test_splits_from_ids_round_trip():
    ds = _dataset({"train": _pool(np.repeat([0, 1, 2], 10), "train"), "test": _pool([0, 1, 2, 2], "test")})
    splits = make_splits(ds, 0.2, 0.2, seed=4)
    rebuilt = splits_from_ids(ds, splits.ids())
    for a, b in ((splits.train, rebuilt.train), (splits.val, rebuilt.val), (splits.test, rebuilt.test)):
        np.testing.assert_array_equal(a.ids, b.ids)
        np.testing.assert_array_equal(a.labels, b.labels)
        np.testing.assert_array_equal(a.images, b.images)
    assert splits_from_ids(ds, {"train": ["train/0"], "val": [], "test": ["test/1"]}).val is None


def test_splits_from_ids_across_pools_keeps_orig_labels(tmp_path):
    grouping = tmp_path / "g.yaml"
    grouping.write_text("flying: [airplane]\nroad: [automobile, bird]\n")
    ds = _dataset({"train": _pool([0, 1, 2], "train"), "test": _pool([2, 1], "test")}, classes=CIFAR10_CLASSES[:3])
    ds = apply_grouping(ds, str(grouping))
    split = splits_from_ids(ds, {"train": ["train/0", "test/0"], "test": ["test/1"]})
    assert sorted(split.train.ids.tolist()) == ["test/0", "train/0"]
    assert sorted(split.train.orig_labels.tolist()) == [0, 2] and sorted(split.train.labels.tolist()) == [0, 1]


def test_splits_from_ids_missing_id_is_named():
    ds = _dataset({"all": _pool([0, 1, 2])})
    with pytest.raises(ImgclfError) as err:
        splits_from_ids(ds, {"train": ["all/0", "all/99"], "val": [], "test": ["all/1"]})
    assert "'all/99'" in str(err.value) and "1 image(s)" in str(err.value)


# label grouping ----------------------------------------------------------------------------------------------

def _cifar_like() -> Dataset:
    labels = np.arange(40) % 10
    return _dataset({"train": _pool(labels, "train"), "test": _pool(labels[:20], "test")}, CIFAR10_CLASSES,
                    name="cifar10")


def test_vehicles_vs_animals():
    ds = _cifar_like()
    grouped = apply_grouping(ds, "vehicles-vs-animals")
    assert grouped.classes == ["vehicle", "animal"] and grouped.orig_classes == CIFAR10_CLASSES
    pool = grouped.pools["train"]
    assert len(pool) == 40
    np.testing.assert_array_equal(pool.orig_labels, ds.pools["train"].labels)
    vehicles = {CIFAR10_CLASSES.index(c) for c in ("airplane", "automobile", "ship", "truck")}
    expected = [0 if old in vehicles else 1 for old in pool.orig_labels]
    assert pool.labels.tolist() == expected
    np.testing.assert_array_equal(pool.images, ds.pools["train"].images)  # images follow their labels


def test_grouping_from_yaml_drops_unlisted_classes(tmp_path):
    path = tmp_path / "pets.yaml"
    path.write_text("pets: [cat, dog]\nwild: [deer, frog]\n")
    grouped = apply_grouping(_cifar_like(), str(path))
    assert grouped.classes == ["pets", "wild"]
    pool = grouped.pools["train"]
    assert len(pool) == 16  # 4 classes x 4 images; the other six classes are dropped
    names = [CIFAR10_CLASSES[i] for i in pool.orig_labels]
    assert all((n in ("cat", "dog")) == (lab == 0) for n, lab in zip(names, pool.labels, strict=True))


def test_grouping_errors(tmp_path):
    path = tmp_path / "g.yaml"
    path.write_text("pets: [cat, unicorn]\n")
    with pytest.raises(ImgclfError) as err:
        apply_grouping(_cifar_like(), str(path))
    assert "'unicorn'" in str(err.value) and "'pets'" in str(err.value) and "airplane" in str(err.value)
    path.write_text("a: [cat]\nb: [cat]\n")
    with pytest.raises(ImgclfError, match="'cat' is listed in more than one group"):
        apply_grouping(_cifar_like(), str(path))
    path.write_text("- cat\n")
    with pytest.raises(ImgclfError, match="expected a mapping"):
        apply_grouping(_cifar_like(), str(path))
    with pytest.raises(ImgclfError, match="not a built-in grouping"):
        apply_grouping(_cifar_like(), "no-such-grouping")


# folder and csv datasets ------------------------------------------------------------------------------------

def test_folder_dataset(folder_dataset):
    root = folder_dataset(per_class=5)
    ds = load_dataset(f"folder:{root}", image_size=16, progress=False)
    assert ds.classes == ["blue", "green", "red"] and list(ds.pools) == ["all"]
    pool = ds.pools["all"]
    assert pool.images.shape == (15, 3, 16, 16) and pool.images.dtype == np.uint8
    assert pool.ids[0] == "blue/blue_00.png" and ds.skipped == []
    for c, name in enumerate(ds.classes):  # each image has its class's colour
        mean = pool.images[pool.labels == c].mean(axis=(0, 2, 3))
        assert np.abs(mean - np.array(COLOURS[name])).max() < 10


def test_folder_default_size(folder_dataset):
    ds = load_dataset(f"folder:{folder_dataset(per_class=2)}", progress=False)
    assert ds.image_size == 64


def test_folder_with_train_and_test_subfolders(tmp_path):
    make_folder_dataset(tmp_path / "ds" / "train", per_class=4)
    make_folder_dataset(tmp_path / "ds" / "test", classes=("blue", "red"), per_class=2, seed=1)
    ds = load_dataset(f"folder:{tmp_path / 'ds'}", image_size=8, progress=False)
    assert set(ds.pools) == {"train", "test"} and ds.classes == ["blue", "green", "red"]
    assert len(ds.pools["train"]) == 12 and len(ds.pools["test"]) == 4
    assert ds.pools["test"].ids[0] == "test/blue/blue_00.png"
    assert ds.pools["test"].labels.tolist() == [0, 0, 2, 2]  # indices of train's class list
    splits = make_splits(ds, 0.0, 0.2, seed=0)
    assert len(splits.test) == 4 and len(splits.train) == 12


def test_folder_test_class_missing_from_train(tmp_path):
    make_folder_dataset(tmp_path / "ds" / "train", classes=("blue", "red"), per_class=2)
    make_folder_dataset(tmp_path / "ds" / "test", classes=("green",), per_class=2)
    with pytest.raises(ImgclfError, match="classes missing from train: green"):
        load_dataset(f"folder:{tmp_path / 'ds'}", image_size=8, progress=False)


def test_csv_dataset(tmp_path):
    root = make_folder_dataset(tmp_path / "imgs", per_class=3)
    rows = ["path,label,split"]
    for i, f in enumerate(sorted(root.rglob("*.png"))):
        rows.append(f"{f.relative_to(tmp_path)},{f.parent.name},{'test' if i % 3 == 0 else 'train'}")
    (tmp_path / "list.csv").write_text("\n".join(rows) + "\n")
    ds = load_dataset(f"csv:{tmp_path / 'list.csv'}", image_size=8, progress=False)
    assert ds.classes == ["blue", "green", "red"]
    assert len(ds.pools["test"]) == 3 and len(ds.pools["train"]) == 6
    assert ds.pools["test"].ids[0] == "imgs/blue/blue_00.png"
    (tmp_path / "plain.csv").write_text("\n".join(r.rsplit(",", 1)[0] for r in rows) + "\n")
    plain = load_dataset(f"csv:{tmp_path / 'plain.csv'}", image_size=8, progress=False)
    assert list(plain.pools) == ["all"] and len(plain.pools["all"]) == 9


def test_csv_with_every_row_in_test_reports_the_empty_training_split(tmp_path):
    root = make_folder_dataset(tmp_path / "imgs", per_class=2)
    rows = ["path,label,split"] + [f"{f},{f.parent.name},test" for f in sorted(root.rglob("*.png"))]
    (tmp_path / "list.csv").write_text("\n".join(rows) + "\n")
    ds = load_dataset(f"csv:{tmp_path / 'list.csv'}", image_size=8, progress=False)
    assert len(ds.pools["train"]) == 0 and len(ds.pools["test"]) == 6
    with pytest.raises(ImgclfError, match="training split .* is empty"):
        make_splits(ds, 0.1, 0.2, seed=0)


def test_csv_errors(tmp_path):
    with pytest.raises(ImgclfError, match="CSV file not found"):
        load_dataset(f"csv:{tmp_path / 'none.csv'}", progress=False)
    (tmp_path / "bad.csv").write_text("file,class\na.png,x\n")
    with pytest.raises(ImgclfError, match="path,label"):
        load_dataset(f"csv:{tmp_path / 'bad.csv'}", progress=False)


def test_folder_errors(tmp_path):
    with pytest.raises(ImgclfError, match="dataset folder not found"):
        load_dataset(f"folder:{tmp_path / 'nope'}", progress=False)
    (tmp_path / "flat").mkdir()
    with pytest.raises(ImgclfError, match="no class sub-folders"):
        load_dataset(f"folder:{tmp_path / 'flat'}", progress=False)
    with pytest.raises(ImgclfError, match="give a path"):
        load_dataset("folder:", progress=False)
    with pytest.raises(ImgclfError, match="unknown dataset 'imagenet'"):
        load_dataset("imagenet")


def test_empty_class_folder_is_an_error(folder_dataset):
    root = folder_dataset(per_class=2)
    (root / "purple").mkdir()
    (root / "purple" / "readme.txt").write_text("no images here")
    with pytest.raises(ImgclfError) as err:
        load_dataset(f"folder:{root}", image_size=8, progress=False)
    assert "purple" in str(err.value) and "no image files" in str(err.value) and "\n" not in str(err.value)


def test_corrupt_file_is_skipped_and_reported(folder_dataset):
    root = folder_dataset(per_class=3)
    (root / "red" / "broken.jpg").write_text("not really a jpeg")
    (root / "green" / "empty.png").write_bytes(b"")
    ds = load_dataset(f"folder:{root}", image_size=8, progress=False)
    assert len(ds.pools["all"]) == 9
    assert len(ds.skipped) == 2
    assert any("broken.jpg" in s and "not an image" in s for s in ds.skipped)
    assert any("empty.png" in s and "0 bytes" in s for s in ds.skipped)
    assert not any("broken" in i for i in ds.pools["all"].ids)


def test_decode_cache_is_reused_and_invalidated(folder_dataset, monkeypatch, tmp_path):
    monkeypatch.setenv("IMGCLF_CACHE", str(tmp_path / "cache"))
    root = folder_dataset(per_class=3)
    calls = []
    real = folder_mod.decode_files

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(folder_mod, "decode_files", counting)
    first = load_dataset(f"folder:{root}", image_size=8, progress=False)
    assert len(calls) == 1 and list((tmp_path / "cache" / "decoded").glob("*.npy"))

    def fail(*args, **kwargs):
        raise AssertionError("decode_files called although the cache holds this dataset")

    monkeypatch.setattr(folder_mod, "decode_files", fail)
    second = load_dataset(f"folder:{root}", image_size=8, progress=False)
    np.testing.assert_array_equal(first.pools["all"].images, second.pools["all"].images)
    np.testing.assert_array_equal(first.pools["all"].ids, second.pools["all"].ids)
    assert second.pools["all"].images.flags.writeable  # torch.from_numpy warns on read-only (memory-mapped) arrays

    monkeypatch.setattr(folder_mod, "decode_files", counting)
    load_dataset(f"folder:{root}", image_size=12, progress=False)  # another size: a new entry
    assert len(calls) == 2
    changed = root / "red" / "red_00.png"
    changed.write_bytes((root / "blue" / "blue_00.png").read_bytes())
    st = changed.stat()
    os.utime(changed, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    third = load_dataset(f"folder:{root}", image_size=8, progress=False)
    assert len(calls) == 3
    idx = third.pools["all"].ids.tolist().index("red/red_00.png")
    assert third.pools["all"].images[idx, 2].mean() > third.pools["all"].images[idx, 0].mean()  # now blue


def test_parallel_decoding_matches_serial(tmp_path):
    root = make_folder_dataset(tmp_path / "many", per_class=24, sizes=(10,))  # 72 files: the process pool is used
    spec = folder_mod.PreprocessSpec(size=8)
    files = sorted(root.rglob("*.png"))
    serial, ok_s, _ = folder_mod.decode_files(files, spec, workers=1, progress=False)
    parallel, ok_p, _ = folder_mod.decode_files(files, spec, workers=2, progress=False)
    np.testing.assert_array_equal(serial, parallel)
    assert ok_s == ok_p == list(range(72))
