"""Compare runs: runs that differ only in seed form one configuration, reported as mean ± std over seeds.

    imgclf compare runs/a runs/b runs/c --out compare.csv

Each argument is a run folder (or name) or a multi-seed group, whose seeds all count. Two runs belong to the same
configuration when their resolved configs (config.yaml) are equal once the keys that only say how or where a run
ran are removed (``IGNORED_KEYS``: seed, name, runs_dir, threads, ...). The best configuration has the highest mean
test accuracy (then macro F1).

Examples:
    >>> rows = compare(["runs/cnn3", "runs/resnet"])  # doctest: +SKIP
    >>> [(r["config"], r["accuracy_mean"], r["best"]) for r in rows]  # doctest: +SKIP
    [('model=resnet-fast', 0.912, True), ('model=cnn3', 0.874, False)]
"""

from __future__ import annotations

import csv
import json
import logging
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from imgclf.errors import ImgclfError

log = logging.getLogger("imgclf")

IGNORED_KEYS = ("seed", "seeds", "name", "runs_dir", "overwrite", "progress", "threads", "workers", "accelerator",
                "devices", "data_dir")
METRICS = ("accuracy", "top5_accuracy", "macro_f1", "roc_auc", "train_seconds")


def _members(runs: Iterable[str | Path], runs_dir: str | Path) -> list[tuple[str, Path]]:
    """(label, single-seed run folder) of every argument, groups expanded, duplicates dropped."""
    from imgclf.runs import find_run, is_group, members

    out, seen = [], set()
    for run in runs:
        path = find_run(run, runs_dir)
        for member in members(path):
            key = member.resolve()
            if key not in seen:
                seen.add(key)
                out.append((f"{path.name}/{member.name}" if is_group(path) else path.name, member))
    return out


def _read(member: Path) -> tuple[dict, dict] | None:
    """(config without IGNORED_KEYS, test metrics) of a finished run, or None (with a warning) if not evaluated."""
    from imgclf.config import read_yaml
    from imgclf.runs import read_json

    missing = [f for f in ("config.yaml", "metrics.json") if not (member / f).is_file()]
    if missing:
        log.warning("skipped %s: no %s (unfinished or not evaluated)", member, " or ".join(missing))
        return None
    cfg = {k: v for k, v in read_yaml(member / "config.yaml").items() if k not in IGNORED_KEYS}
    return cfg, read_json(member / "metrics.json")


def _stats(values: list[float]) -> tuple[float | None, float | None]:
    arr = np.array([v for v in values if v is not None and v == v], dtype=np.float64)
    if not len(arr):
        return None, None
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else None


def _topk_key(metrics: list[dict]) -> str | None:
    keys = [k for m in metrics for k in m if re.fullmatch(r"top\d+_accuracy", k)]
    return keys[0] if keys else None


def compare(runs: Iterable[str | Path], runs_dir: str | Path = "runs") -> list[dict[str, Any]]:
    """One row per configuration, best first: mean and std (over seeds) of the main test metrics.

    Returns:
        Dicts with ``config`` (the keys that differ between configurations, or the run name), ``runs``, ``seeds``,
        the differing keys themselves, ``{metric}_mean`` and ``{metric}_std`` (None with one seed), and ``best``.
    """
    groups: dict[str, dict[str, Any]] = {}
    for label, member in _members(runs, runs_dir):
        read = _read(member)
        if read is None:
            continue
        cfg, metrics = read
        key = json.dumps(cfg, sort_keys=True, default=str)
        group = groups.setdefault(key, {"cfg": cfg, "labels": [], "metrics": []})
        group["labels"].append(label)
        group["metrics"].append(metrics)
    if not groups:
        raise ImgclfError("no finished, evaluated runs to compare")
    cfgs = [g["cfg"] for g in groups.values()]
    differing = sorted(k for k in set().union(*cfgs) if len({json.dumps(c.get(k), default=str) for c in cfgs}) > 1)
    rows = [_row(g, differing) for g in groups.values()]
    rows.sort(key=lambda r: (-(r["accuracy_mean"] or 0.0), -(r["macro_f1_mean"] or 0.0)))
    for i, r in enumerate(rows):
        r["best"] = i == 0
    return rows


def _row(group: dict[str, Any], differing: list[str]) -> dict[str, Any]:
    cfg, metrics = group["cfg"], group["metrics"]
    label = " ".join(f"{k}={cfg.get(k)}" for k in differing) or ", ".join(sorted({lb.split("/")[0]
                                                                                 for lb in group["labels"]}))
    row: dict[str, Any] = {"config": label, "runs": " ".join(group["labels"]), "seeds": len(metrics),
                           **{k: cfg.get(k) for k in differing}}
    topk = _topk_key(metrics)
    for name in METRICS:
        source = topk if name == "top5_accuracy" else name
        mean, std = _stats([m.get(source) for m in metrics]) if source else (None, None)
        out_name = source or name
        row[f"{out_name}_mean"], row[f"{out_name}_std"] = mean, std
    return row


def write_csv(rows: list[dict[str, Any]], path: str | Path) -> Path:
    """The comparison as CSV (one row per configuration; empty cells where a value is missing)."""
    columns = list(dict.fromkeys(k for r in rows for k in r))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for r in rows:
            writer.writerow({k: "" if r.get(k) is None else r.get(k) for k in columns})
    return path
