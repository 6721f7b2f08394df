"""``imgclf report``, ``imgclf explain`` and ``imgclf compare``: understanding a trained model.

    imgclf report runs/c10 --out report.html
    imgclf explain runs/c10 img1.jpg img2.png --method gradcam --out cams/
    imgclf compare runs/a runs/b runs/c --out compare.csv

Registered on the main app in ``cli.py``; heavy imports happen inside the commands.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

RunsDir = Annotated[str, typer.Option(help="folder of run folders")]


def report(run: Annotated[str, typer.Argument(help="run folder or name")],
           out: Annotated[str | None, typer.Option(help="HTML file to write (default: RUN/report.html)")] = None,
           data_dir: Annotated[str | None, typer.Option(help="where the dataset files are")] = None,
           examples: Annotated[int, typer.Option(help="thumbnails per gallery", min=1, max=200)] = 40,
           calibrate: Annotated[bool, typer.Option("--calibrate/--no-calibrate",
                                                   help="fit temperature scaling on the validation split")] = True,
           runs_dir: RunsDir = "runs") -> None:
    """Write a self-contained HTML report: summary, curves, metrics, confusion, ROC, calibration, error galleries."""
    from pathlib import Path

    from imgclf.evaluation.report import write_report
    from imgclf.runs import find_run

    path = find_run(run, runs_dir)
    target = Path(out) if out else path / "report.html"
    written = write_report(path, target, data_dir=data_dir, examples=examples, calibrate=calibrate,
                           progress=sys.stdout.isatty())
    print(f"wrote {written} ({written.stat().st_size / 1e6:.1f} MB)")


def explain(source: Annotated[str, typer.Argument(help="run folder, run name or model file")],
            images: Annotated[list[str], typer.Argument(help="image files or folders")],
            method: Annotated[str, typer.Option(help="gradcam | saliency")] = "gradcam",
            target: Annotated[str | None, typer.Option(help="class to explain (default: the predicted one)")] = None,
            out: Annotated[str, typer.Option(help="folder for the overlay PNGs")] = "cams",
            json_out: Annotated[bool, typer.Option("--json", help="print one JSON line per image")] = False,
            glob: Annotated[str, typer.Option(help="file pattern inside folders")] = "*",
            threads: Annotated[int, typer.Option(help="CPU threads (one image is too little work to split)",
                                                 min=1)] = 1,
            runs_dir: RunsDir = "runs") -> None:
    """Heat maps of what the model looked at, overlaid on each image at its original resolution."""
    from imgclf.evaluation.explain import explain as run_explain
    from imgclf.infer.predict import expand_inputs

    failures = 0
    for r in run_explain(source, expand_inputs(images, glob), method=method, target=target, out=out,
                         runs_dir=runs_dir, threads=threads):
        if "error" in r:
            failures += 1
            print(f"error: {r['error']}", file=sys.stderr)
        if json_out:
            print(json.dumps(r), flush=True)
        elif "error" not in r:
            why = "" if r["target"] == r["label"] else f", explaining {r['target']} ({r['target_probability']:.3f})"
            print(f"{r['input']}: {r['label']} ({r['probability']:.3f}){why} -> {r['output']}", flush=True)
    if failures:
        raise typer.Exit(1)


def compare(runs: Annotated[list[str], typer.Argument(help="run folders or names (groups count every seed)")],
            out: Annotated[str | None, typer.Option(help="also write the table as CSV")] = None,
            json_out: Annotated[bool, typer.Option("--json", help="print JSON lines")] = False,
            runs_dir: RunsDir = "runs") -> None:
    """Group runs that differ only in seed; mean ± std of the main test metrics; the best configuration marked."""
    from imgclf.evaluation.compare import compare as run_compare
    from imgclf.evaluation.compare import write_csv

    rows = run_compare(runs, runs_dir)
    if out:
        write_csv(rows, out)
    if json_out:
        for r in rows:
            print(json.dumps(r))
        return
    _print_compare(rows)
    if out:
        print(f"wrote {out}")


def _pm(mean: float | None, std: float | None) -> str:
    if mean is None:
        return ""
    fmt = ".4f" if abs(mean) < 10 else ".1f"
    return format(mean, fmt) + (f" ± {format(std, fmt)}" if std is not None else "")


def _print_compare(rows: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    metrics = list(dict.fromkeys(k[: -len("_mean")] for r in rows for k in r if k.endswith("_mean")))
    names = {"accuracy": "accuracy", "macro_f1": "macro F1", "roc_auc": "ROC-AUC", "train_seconds": "train s"}
    table = Table(title="runs compared (mean ± std over seeds)")
    for header in ("", "configuration", "seeds", *[names.get(m, m.replace("_accuracy", "")) for m in metrics],
                   "runs"):
        table.add_column(header, overflow="fold")
    for r in rows:
        values = [_pm(r.get(f"{m}_mean"), r.get(f"{m}_std")) for m in metrics]
        table.add_row("★" if r["best"] else "", r["config"], str(r["seeds"]), *values, r["runs"],
                      style="bold" if r["best"] else None)
    Console().print(table)
