"""``imgclf data``: the dataset workbench (collect, clean, restore, split, explore); a thin layer over imgclf.data.

    imgclf data collect urls.txt --out photos/
    imgclf data collect urls.csv --out photos/ --label-from column
    imgclf data collect listing:https://www.reddit.com/r/TankPorn/top.json --out photos/tanks --limit 500
    imgclf data clean photos/ --report clean.html
    imgclf data clean photos/ --apply --quarantine rejected/
    imgclf data restore rejected/
    imgclf data split photos/ --test 0.2 --seed 0 --out photos-split/
    imgclf data explore cifar10 --data-dir ../shared/data/cifar-10-mini --out eda/
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

data_app = typer.Typer(help="Dataset workbench: collect images, clean them, split them, explore them.",
                       no_args_is_help=True, add_completion=False, rich_markup_mode=None,
                       context_settings={"help_option_names": ["-h", "--help"]})


def _progress() -> bool:
    return sys.stderr.isatty()


def _print_table(rows: list[dict], columns: list[tuple[str, str]], title: str | None = None,
                 stderr: bool = False) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for key, header in columns:
        table.add_column(header, justify="right" if rows and isinstance(rows[0].get(key), int | float) else "left")
    for row in rows:
        table.add_row(*[_fmt(row.get(key)) for key, _ in columns])
    Console(stderr=stderr).print(table)


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _say(text: str, stderr: bool = False) -> None:
    print(text, file=sys.stderr if stderr else sys.stdout)


# collect -----------------------------------------------------------------------------------------------------------

@data_app.command()
def collect(source: Annotated[str, typer.Argument(help="URL list (.txt), CSV (url,label), folder of lists, "
                                                       "or listing:URL of a public JSON listing")],
            out: Annotated[Path, typer.Option(help="output folder (labels become sub-folders)")],
            label_from: Annotated[str | None, typer.Option(help="column (CSV column), folder (URL's parent "
                                                                "folder) or list (list file name)")] = None,
            label_column: Annotated[str, typer.Option(help="CSV column of the labels")] = "label",
            limit: Annotated[int | None, typer.Option(help="at most this many URLs")] = None,
            workers: Annotated[int, typer.Option(help="concurrent downloads")] = 8,
            rate: Annotated[float, typer.Option(help="requests per second per host (0: no limit)")] = 2.0,
            retries: Annotated[int, typer.Option(help="retries after timeouts, 429 and 5xx")] = 3,
            timeout: Annotated[float, typer.Option(help="seconds to wait for data")] = 30.0,
            max_mb: Annotated[float, typer.Option(help="largest file to accept, MB")] = 20.0,
            retry_failed: Annotated[bool, typer.Option(help="retry URLs that failed for good before")] = False,
            json_out: Annotated[bool, typer.Option("--json", help="print one JSON line per URL")] = False) -> None:
    """Download images politely and resumably; OUT/manifest.jsonl records every URL (rerun to resume)."""
    from imgclf.data.collect import CollectOptions
    from imgclf.data.collect import collect as run_collect

    options = CollectOptions(workers=workers, per_host_rate=rate, retries=retries, read_timeout=timeout,
                             max_bytes=int(max_mb * 2**20), retry_failed=retry_failed)
    result = run_collect(source, out, label_from, label_column, limit, options, progress=_progress())
    if json_out:
        for rec in result.records:
            print(json.dumps(rec))
        return
    counts = result.counts()
    rows = [{"status": s, "files": n} for s, n in sorted(counts.items(), key=lambda kv: -kv[1])]
    rows.append({"status": "done before (skipped)", "files": result.skipped})
    _print_table(rows, [("status", "status"), ("files", "URLs")], title=f"collect -> {result.out}")
    for rec in [r for r in result.records if r.get("error")][:5]:
        _say(f"  {rec['status']}: {rec['url']} ({rec['error']})")
    _say(f"{counts.get('ok', 0)} new images in {result.out} in {result.seconds:.1f} s; "
         f"manifest: {result.out / 'manifest.jsonl'}")


# clean / restore ---------------------------------------------------------------------------------------------------

@data_app.command()
def clean(folder: Annotated[Path, typer.Argument(help="image folder (CLASS/... or train|test/CLASS/...)")],
          report: Annotated[Path | None, typer.Option(help="write an HTML report here")] = None,
          json_out: Annotated[bool, typer.Option("--json", help="print one JSON line per finding")] = False,
          apply: Annotated[bool, typer.Option("--apply", help="move rejected files to the quarantine")] = False,
          quarantine: Annotated[Path | None, typer.Option(help="where --apply moves files "
                                                               "[default: FOLDER-rejected]")] = None,
          min_size: Annotated[int, typer.Option(help="px; a shorter side is too_small")] = 32,
          max_pixels: Annotated[int, typer.Option(help="more pixels is a decompression bomb")] = 40_000_000,
          hamming: Annotated[int, typer.Option(help="bits; pHash distance of near-duplicate candidates")] = 12,
          similarity: Annotated[float, typer.Option(help="thumbnail correlation that confirms a near "
                                                         "duplicate (higher: stricter)")] = 0.6,
          near: Annotated[bool, typer.Option("--near/--no-near", help="look for near duplicates")] = True,
          reject_modes: Annotated[bool, typer.Option(help="also move unusual modes (CMYK, 16-bit...)")] = False,
          workers: Annotated[int, typer.Option(help="processes (0: one per CPU)")] = 0) -> None:
    """Find broken files, odd modes, duplicates, train/test leaks and label conflicts; nothing moves without --apply."""
    from imgclf.data.clean import CleanOptions, scan

    options = CleanOptions(min_size=min_size, max_pixels=max_pixels, max_distance=hamming,
                           min_similarity=similarity, near=near, reject_modes=reject_modes, workers=workers)
    target = (quarantine or folder.parent / f"{folder.resolve().name}-rejected") if apply else None
    result = scan(folder, options, progress=_progress(), exclude=[target] if target else None)
    if json_out:
        for f in result.findings:
            print(json.dumps(f.to_dict()), flush=True)
    else:
        _clean_summary(result)
    if report:
        from imgclf.data.report import write_clean_report

        _say(f"report: {write_clean_report(result, report)}", stderr=json_out)
    if apply and target is not None:
        from imgclf.data.quarantine import apply as move

        reasons: dict[str, list[dict]] = {}
        for f in result.findings:
            reasons.setdefault(f.file, []).append(f.to_dict())
        moved = move(folder, result.rejects(), target, reasons)
        _say(f"moved {len(moved)} files to {target}; undo with: imgclf data restore {target}", stderr=json_out)


def _clean_summary(result) -> None:
    from imgclf.data.clean import KINDS

    rejected = result.options.rejected_kinds()
    counts = result.counts()
    rows = [{"kind": k, "findings": counts[k], "moved by --apply": "yes" if k in rejected else "no (reported)"}
            for k in KINDS if counts[k]]
    title = (f"clean {result.root}: {len(result.files):,} images, {len(result.flagged()):,} flagged, "
             f"{result.seconds:.1f} s")
    if rows:
        _print_table(rows, [("kind", "kind"), ("findings", "findings"), ("moved by --apply", "moved by --apply")],
                     title=title)
    else:
        _say(title + ": nothing to report")
    for f in result.findings[:10]:
        other = f" (of {f.duplicate_of})" if f.duplicate_of else ""
        _say(f"  {f.kind}: {f.file}{other}: {f.detail}")
    if len(result.findings) > 10:
        _say(f"  ... {len(result.findings) - 10} more (--json for all, --report for an HTML page)")


@data_app.command()
def restore(quarantine: Annotated[Path, typer.Argument(help="quarantine folder written by clean --apply")]) -> None:
    """Move every quarantined file back where it was (the folder is as before clean --apply)."""
    from imgclf.data.quarantine import restore as run_restore

    restored, problems = run_restore(quarantine)
    for line in problems:
        print(f"warning: {line}", file=sys.stderr)
    _say(f"restored {len(restored)} files from {quarantine}")
    if problems:
        raise typer.Exit(1)


# split -------------------------------------------------------------------------------------------------------------

@data_app.command()
def split(folder: Annotated[Path, typer.Argument(help="folder with one sub-folder per class")],
          out: Annotated[Path, typer.Option(help="new folder for train/ and test/")],
          test: Annotated[float, typer.Option(help="fraction of each class for test")] = 0.2,
          seed: Annotated[int, typer.Option(help="random seed")] = 0,
          link: Annotated[str, typer.Option(help="copy, hardlink or symlink")] = "copy",
          hamming: Annotated[int, typer.Option(help="bits; pHash distance of near-duplicate candidates")] = 12,
          similarity: Annotated[float, typer.Option(help="correlation that confirms a near duplicate")] = 0.6,
          workers: Annotated[int, typer.Option(help="processes (0: one per CPU)")] = 0) -> None:
    """Stratified, seeded train/test split that keeps every group of (near) copies in one split."""
    from imgclf.data.clean import CleanOptions
    from imgclf.data.split import split_folder

    options = CleanOptions(max_distance=hamming, min_similarity=similarity, workers=workers)
    result = split_folder(folder, out, test, seed, link, options, progress=_progress())
    classes = sorted(set(result.counts["train"]) | set(result.counts["test"]))
    rows = [{"class": c, "train": result.counts["train"].get(c, 0), "test": result.counts["test"].get(c, 0)}
            for c in classes]
    rows.append({"class": "total", "train": sum(r["train"] for r in rows), "test": sum(r["test"] for r in rows)})
    _print_table(rows, [("class", "class"), ("train", "train"), ("test", "test")], title=f"split -> {result.out}")
    _say(f"{result.groups} groups of copies kept together; {len(result.skipped)} files left out"
         + (f"; {result.fallbacks} hard links copied instead" if result.fallbacks else ""))
    for line in result.skipped[:10]:
        _say(f"  skipped {line}")
    _say(f"list of files: {result.out / 'split.csv'}")


# explore -----------------------------------------------------------------------------------------------------------

@data_app.command()
def explore(dataset: Annotated[str, typer.Argument(help="built-in name (cifar10, mnist...), folder:PATH, "
                                                        "csv:FILE or a folder")],
            out: Annotated[Path, typer.Option(help="folder for report.html and summary.json")] = Path("eda"),
            data_dir: Annotated[str | None, typer.Option(help="where the built-in dataset files are")] = None,
            image_size: Annotated[int | None, typer.Option(help="px; side of folder images as loaded")] = None,
            samples: Annotated[int, typer.Option(help="sample images per class in the grid")] = 8,
            quality: Annotated[bool, typer.Option("--quality/--no-quality", help="look for broken files, "
                                                                                  "duplicates, leaks")] = True,
            workers: Annotated[int, typer.Option(help="processes (0: one per CPU)")] = 0) -> None:
    """Class balance, samples, sizes, pixel statistics, brightness/contrast and data quality: HTML + summary."""
    from imgclf.data.explore import explore as run_explore
    from imgclf.data.report import write_explore_report

    e = run_explore(dataset, data_dir, image_size, samples, quality, progress=_progress(), workers=workers)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(e.to_dict(), indent=1))
    path = write_explore_report(e, out / "report.html")
    _explore_summary(e)
    _say(f"report: {path}  summary: {out / 'summary.json'}")


def _explore_summary(e) -> None:
    pools = list(e.counts)
    rows = [{"class": c, **{p: e.counts[p][k] for p in pools}, "brightness": r["brightness"]["mean"],
             "contrast": r["contrast"]["mean"]} for k, (c, r) in enumerate(zip(e.classes, e.per_class, strict=True))]
    title = (f"{e.dataset}: {sum(sum(v) for v in e.counts.values()):,} images, {len(e.classes)} classes, "
             f"imbalance {e.imbalance:.2f}")
    shown = rows if len(rows) <= 20 else rows[:20]
    _print_table(shown, [("class", "class"), *((p, p) for p in pools), ("brightness", "brightness"),
                         ("contrast", "contrast")], title=title)
    if len(rows) > 20:
        _say(f"  ... {len(rows) - 20} more classes in the report")
    ch = e.channels
    _say("channels: " + ", ".join(f"{n} mean {m:.3f} std {s:.3f}"
                                  for n, m, s in zip(ch["names"], ch["mean"], ch["std"], strict=True)))
    if e.sizes:
        common = ", ".join(f"{k} ({v})" for k, v in list(e.sizes["most_common"].items())[:3])
        _say(f"sizes: {e.sizes['distinct']} distinct, median {e.sizes['width']['p50']:.0f}x"
             f"{e.sizes['height']['p50']:.0f}, aspect {e.sizes['aspect']['p5']:.2f}..{e.sizes['aspect']['p95']:.2f}"
             f"; most common {common}")
    if e.quality:
        found = {k: v for k, v in e.quality["counts"].items() if v}
        _say("quality: " + (", ".join(f"{k} {v}" for k, v in found.items()) or "no problems found")
             + f" ({e.quality['note']})")
    if e.skipped:
        _say(f"{len(e.skipped)} unreadable files skipped, e.g. {e.skipped[0]}")
