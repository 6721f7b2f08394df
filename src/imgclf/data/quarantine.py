"""Moving rejected files out of a dataset folder and back, never deleting anything.

    imgclf data clean photos/ --apply --quarantine rejected/
    imgclf data restore rejected/

``apply`` moves each file to ``QUARANTINE/<its path relative to the dataset folder>`` and appends one JSON line per
file to ``QUARANTINE/manifest.jsonl`` (where it came from, its SHA-256, why it was rejected). ``restore`` moves
every file back to where it was, checks its SHA-256, and renames the manifest to ``manifest.restored-<time>.jsonl``.
Moves are renames within one file system (modification times kept) and copy + delete across file systems.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterable
from pathlib import Path

from imgclf.errors import ImgclfError

MANIFEST = "manifest.jsonl"


def file_sha256(path: Path) -> str:
    from imgclf.data.builtin import file_digest

    return file_digest(path, "sha256")


def _move(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(src, dst)
    except OSError:  # another file system: copy with metadata, then remove
        shutil.copy2(src, dst)
        src.unlink()


def _free_name(path: Path) -> Path:
    """``path``, or ``name.1.ext``, ``name.2.ext``... when it is taken (a second apply into the same quarantine)."""
    k = 0
    candidate = path
    while candidate.exists():
        k += 1
        candidate = path.with_name(f"{path.stem}.{k}{path.suffix}")
    return candidate


def apply(root: str | Path, files: Iterable[str], quarantine: str | Path, reasons: dict[str, list[dict]] | None = None
          ) -> list[dict]:
    """Move ``files`` (relative to ``root``) into ``quarantine`` and record each move; returns the records.

    Examples:
        >>> result = scan("photos/")  # doctest: +SKIP
        >>> moved = apply("photos/", result.rejects(), "rejected/")  # doctest: +SKIP
    """
    root, quarantine = Path(root).expanduser().resolve(), Path(quarantine).expanduser().resolve()
    if quarantine == root or root.is_relative_to(quarantine):
        raise ImgclfError(f"quarantine folder {quarantine} must not be the dataset folder or contain it")
    quarantine.mkdir(parents=True, exist_ok=True)
    session = time.strftime("%Y-%m-%dT%H:%M:%S")
    records = []
    with open(quarantine / MANIFEST, "a") as manifest:
        for rel in files:
            src = root / rel
            if not src.is_file():
                continue
            dst = _free_name(quarantine / rel)
            record = {"source": str(src), "file": dst.relative_to(quarantine).as_posix(), "sha256": file_sha256(src),
                      "bytes": src.stat().st_size, "session": session, "why": (reasons or {}).get(rel, [])}
            _move(src, dst)
            manifest.write(json.dumps(record) + "\n")
            manifest.flush()  # a crash half-way still leaves every completed move on record
            records.append(record)
    return records


def read_manifest(quarantine: str | Path) -> list[dict]:
    """The move records of a quarantine folder (raises ImgclfError when there is none)."""
    path = Path(quarantine).expanduser() / MANIFEST
    if not path.is_file():
        raise ImgclfError(f"{path.parent}: no {MANIFEST}; is this a quarantine folder written by 'imgclf data clean "
                          "--apply'?")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def restore(quarantine: str | Path) -> tuple[list[str], list[str]]:
    """Move every quarantined file back where it came from; returns (restored sources, problems, one line each).

    A file whose original path is taken again is left in quarantine and reported; so is one whose content changed.
    The manifest is kept (renamed) when everything went back, and rewritten to the remaining moves otherwise.
    """
    quarantine = Path(quarantine).expanduser().resolve()
    records = read_manifest(quarantine)
    restored, problems, remaining = [], [], []
    for rec in reversed(records):  # last move first, so repeated sessions unwind in order
        src, dst = quarantine / rec["file"], Path(rec["source"])
        if not src.is_file():
            problems.append(f"{rec['file']}: missing from quarantine")
            continue
        if dst.exists():
            problems.append(f"{dst}: exists again; left {rec['file']} in quarantine")
            remaining.append(rec)
            continue
        if file_sha256(src) != rec["sha256"]:
            problems.append(f"{rec['file']}: content changed since it was quarantined (restored anyway)")
        _move(src, dst)
        restored.append(str(dst))
    manifest = quarantine / MANIFEST
    if remaining:
        manifest.write_text("".join(json.dumps(r) + "\n" for r in reversed(remaining)))
    else:
        manifest.rename(quarantine / f"manifest.restored-{time.strftime('%Y%m%dT%H%M%S')}.jsonl")
    _remove_empty_dirs(quarantine)
    return restored, problems


def _remove_empty_dirs(top: Path) -> None:
    for d in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        if not any(d.iterdir()):
            d.rmdir()
