"""Data: built-in and file datasets, splits, label grouping, the in-memory batch loader."""

from __future__ import annotations

from pathlib import Path

from imgclf.data.dataset import Dataset, Pool, Splits, apply_grouping, make_splits, splits_from_ids
from imgclf.data.images import DEFAULT_MAX_PIXELS, PreprocessSpec
from imgclf.errors import ImgclfError, unknown

__all__ = ["Dataset", "Pool", "Splits", "PreprocessSpec", "load_dataset", "list_datasets", "make_splits",
           "splits_from_ids", "dataset_family", "FOLDER_DEFAULT_SIZE"]

FOLDER_DEFAULT_SIZE = 64  # px, side of folder images when --image-size is not given


def dataset_family(spec: str) -> str:
    """'cifar10', 'mnist', ... for built-ins; 'folder' or 'csv' for file datasets."""
    from imgclf.data.builtin import BUILTINS

    if spec in BUILTINS:
        return spec
    prefix, sep, _ = spec.partition(":")
    if sep and prefix in ("folder", "csv"):
        return prefix
    raise unknown("dataset", spec, [*BUILTINS, "folder:PATH", "csv:FILE"])


def load_dataset(spec: str, data_dir: str | Path | None = None, image_size: int | None = None,
                 classes: str | None = None, max_pixels: int = DEFAULT_MAX_PIXELS, workers: int = 0,
                 progress: bool = True, crop_fraction: float = 1.0, resample: str = "bicubic") -> Dataset:
    """Load a dataset by spec: a built-in name, ``folder:PATH`` or ``csv:FILE``; then apply ``classes`` grouping.

    Examples:
        >>> ds = load_dataset("mnist", data_dir="../shared/data/mnist")  # doctest: +SKIP
        >>> ds.classes[:3], len(ds.pools["train"])  # doctest: +SKIP
        (['0', '1', '2'], 60000)
    """
    family = dataset_family(spec)
    if family in ("folder", "csv"):
        from imgclf.data.folder import load_csv, load_folder

        path = spec.partition(":")[2]
        if not path:
            raise ImgclfError(f"dataset {spec!r}: give a path, e.g. {family}:path/to/photos")
        size = image_size or FOLDER_DEFAULT_SIZE
        pspec = PreprocessSpec(size=size, channels=3, max_pixels=max_pixels, crop_fraction=crop_fraction,
                               resample=resample)
        loader = load_folder if family == "folder" else load_csv
        ds = loader(path, pspec, workers=workers, progress=progress)
    else:
        from imgclf.data.builtin import load_builtin

        ds = load_builtin(family, data_dir)
    if classes:
        ds = apply_grouping(ds, classes)
    return ds


def list_datasets(data_dir: str | Path | None = None) -> list[dict]:
    """Every built-in dataset with where it is looked for and whether a local copy was found."""
    from imgclf.data.builtin import BUILTINS, default_data_dirs, locate

    rows = []
    for name, spec in BUILTINS.items():
        found = locate(name, data_dir)
        rows.append({"name": name, "description": spec.description, "present": found is not None,
                     "path": str(found) if found else "",
                     "searched": [str(d) for d in default_data_dirs(data_dir)]})
    for name, desc in (("folder:PATH", "your images, one sub-folder per class (train/ and test/ optional)"),
                       ("csv:FILE", "your images listed in a CSV with columns path,label[,split]")):
        rows.append({"name": name, "description": desc, "present": None, "path": "", "searched": []})
    return rows
