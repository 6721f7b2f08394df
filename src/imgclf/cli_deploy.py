"""Deployment commands: ``imgclf predict``, ``imgclf export`` and ``imgclf serve`` (registered in cli.py).

    imgclf export runs/c10 --format onnx [--quantize int8] --out model.onnx [--check]
    imgclf predict model.onnx images/ --batch-size 64 --json > preds.jsonl
    imgclf serve runs/c10 --host 127.0.0.1 --port 8000 [--backend onnx] [--workers N] [--api-key KEY]

onnx, onnxruntime, fastapi and uvicorn are imported inside the commands, so ``imgclf --help`` stays fast.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

_SOURCE_HELP = "run folder, run name, or model file (model.pt, .onnx, .ts)"


def predict(source: Annotated[str, typer.Argument(help=_SOURCE_HELP)],
            images: Annotated[list[str], typer.Argument(help="image files, folders (recursive) or http(s) URLs")],
            top_k: Annotated[int, typer.Option(help="labels to show per image")] = 3,
            json_out: Annotated[bool, typer.Option("--json", help="print one JSON line per image")] = False,
            csv_out: Annotated[bool, typer.Option("--csv", help="print CSV (input, label, probability, ...)")] = False,
            tta: Annotated[bool | None, typer.Option("--tta/--no-tta", help="mirror test-time augmentation")] = None,
            batch_size: Annotated[int, typer.Option(help="images per forward pass")] = 64,
            backend: Annotated[str | None, typer.Option(help="torch | onnx (default: what the file is)")] = None,
            max_pixels: Annotated[int | None, typer.Option(help="reject larger images")] = None,
            glob: Annotated[str, typer.Option(help="file pattern inside folders")] = "*",
            out: Annotated[Path | None, typer.Option(help="append JSON lines to this file (streams; for big folders)")
                           ] = None,
            resume: Annotated[bool, typer.Option("--resume", help="with --out: skip the images already written")
                              ] = False,
            runs_dir: Annotated[str, typer.Option(help="folder of run folders")] = "runs") -> None:
    """Predict the class of new images; unreadable files are reported one per line and the rest go on."""
    from imgclf.cli import _table
    from imgclf.errors import ImgclfError
    from imgclf.infer.predict import Predictor, iter_inputs

    if json_out and csv_out:
        raise ImgclfError("choose one of --json and --csv")
    if resume and out is None:
        raise ImgclfError("--resume needs --out FILE (the results written so far)")
    predictor = Predictor(source, tta=tta, batch_size=batch_size, max_pixels=max_pixels, runs_dir=runs_dir,
                          backend=backend)
    inputs = iter_inputs(images, glob)
    if out is not None:
        failures = _predict_to_file(predictor, inputs, out, resume, top_k)
        raise typer.Exit(1 if failures else 0)
    writer = _csv_writer(top_k) if csv_out else None
    failures, rows = 0, []
    for result in predictor.iter_predict(inputs, top_k=top_k):
        failures += "error" in result
        if "error" in result:
            print(f"error: {result['error']}", file=sys.stderr)
        if json_out:
            print(json.dumps(result), flush=True)
        elif writer:
            writer.writerow(_csv_row(result))
        elif "error" not in result:
            rows.append({"input": result["input"], **{f"top{i + 1}": f"{t['label']} ({t['probability']:.3f})"
                                                      for i, t in enumerate(result["top_k"])}})
    if rows:
        _table(rows, [("input", "image")] + [(f"top{i + 1}", f"top {i + 1}") for i in range(min(top_k, 10))])
    if failures:
        raise typer.Exit(1)


def _predict_to_file(predictor, inputs, out: Path, resume: bool, top_k: int) -> int:
    """Stream results to ``out`` as JSON lines; with ``resume``, skip as many inputs as complete lines written.

    Inputs come in a stable sorted order, so the first N inputs are the N already written; the last written
    line is checked against the N-th input so that a changed folder is refused rather than mislabelled.
    """
    from collections import deque
    from itertools import islice

    from imgclf.errors import ImgclfError

    done, last = _written(out) if resume else (0, None)
    if done:
        deque(islice(inputs, done - 1), maxlen=0)  # consume without keeping: memory stays flat
        nth = next(inputs, None)
        if nth is None or str(nth) != last:
            raise ImgclfError(f"{out}: its {done} results do not match the first {done} inputs; "
                              "use a new --out file")
        print(f"resuming: {done} images already in {out}", file=sys.stderr)
    failures = 0
    with open(out, "a" if resume else "w") as f:
        for i, result in enumerate(predictor.iter_predict(inputs, top_k=top_k), start=1):
            failures += "error" in result
            f.write(json.dumps(result) + "\n")
            if i % predictor.batch_size == 0:
                f.flush()
    return failures


def _written(out: Path) -> tuple[int, str | None]:
    """(complete JSON lines in ``out``, the input of the last one); a torn last line is cut off."""
    if not out.is_file():
        return 0, None
    count, last, good_bytes = 0, None, 0
    with open(out, "rb") as f:
        for line in f:
            try:
                last = json.loads(line)["input"]
            except (ValueError, KeyError):
                break
            count, good_bytes = count + 1, good_bytes + len(line)
    with open(out, "r+b") as f:
        f.truncate(good_bytes)
    return count, last


def _csv_writer(top_k: int) -> csv.DictWriter:
    fields = ["input", "label", "probability"]
    for i in range(2, top_k + 1):
        fields += [f"label_{i}", f"probability_{i}"]
    writer = csv.DictWriter(sys.stdout, fieldnames=[*fields, "error"], extrasaction="ignore")
    writer.writeheader()
    return writer


def _csv_row(result: dict[str, Any]) -> dict[str, Any]:
    row = {"input": result["input"], "error": result.get("error", "")}
    for i, t in enumerate(result.get("top_k", []), start=1):
        suffix = "" if i == 1 else f"_{i}"
        row[f"label{suffix}"], row[f"probability{suffix}"] = t["label"], t["probability"]
    return row


def export(source: Annotated[str, typer.Argument(help="run folder, run name or model.pt")],
           format: Annotated[str, typer.Option("--format", help="onnx | torchscript")] = "onnx",
           out: Annotated[str | None, typer.Option(help="output file (default: beside model.pt)")] = None,
           quantize: Annotated[str | None, typer.Option(help="int8: static quantization (ONNX)")] = None,
           check: Annotated[bool, typer.Option("--check", help="compare with PyTorch on test images; "
                                                               "fail above the tolerance")] = False,
           tolerance: Annotated[float, typer.Option(help="--check: max probability difference (fp32)")] = 1e-4,
           max_accuracy_drop: Annotated[float, typer.Option(help="--check: max accuracy loss, points (int8)")] = 1.0,
           calibration_images: Annotated[int, typer.Option(help="int8: training images to calibrate on")] = 300,
           calibration_data: Annotated[str | None, typer.Option(
               help="folder of images for calibration and checks when exporting a bare model.pt")] = None,
           data_dir: Annotated[str | None, typer.Option(help="where the run's dataset is")] = None,
           runs_dir: Annotated[str, typer.Option(help="folder of run folders")] = "runs") -> None:
    """Export a run to ONNX (optionally int8) or TorchScript, with its preprocessing contract inside the file."""
    from imgclf.infer.export import export as run_export

    result = run_export(source, format=format, out=out, quantize=quantize, check=check, tolerance=tolerance,
                        max_accuracy_drop=max_accuracy_drop, calibration_images=calibration_images,
                        calibration_data=calibration_data, data_dir=data_dir, runs_dir=runs_dir,
                        progress=sys.stdout.isatty())
    size = result.path.stat().st_size / 1e6
    print(f"wrote {result.path} ({result.format}{', ' + result.quantize if result.quantize else ''}, "
          f"{size:.2f} MB, {result.seconds:.1f} s)")
    if result.report:
        r = result.report
        line = (f"check on {r['images']} test images: max |probability difference| {r['max_abs_diff']:.2e}, "
                f"top-1 agreement {r['top1_agreement']:.4f}")
        if "accuracy_change_points" in r:
            line += (f"; accuracy {r['reference_accuracy']:.4f} (PyTorch fp32) -> {r['exported_accuracy']:.4f} "
                     f"({r['accuracy_change_points']:+.2f} points)")
        print(line + f" [{'passed' if r['passed'] else 'FAILED'}: {r['criterion']}]")


def serve(source: Annotated[str, typer.Argument(help=_SOURCE_HELP)],
          host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
          port: Annotated[int, typer.Option(help="TCP port")] = 8000,
          backend: Annotated[str | None, typer.Option(help="torch | onnx (default: what the file is)")] = None,
          workers: Annotated[int, typer.Option(help="server processes, each with a copy of the model")] = 1,
          threads: Annotated[int | None, typer.Option(help="model threads per worker (default: cores/workers)")]
          = None,
          api_key: Annotated[str | None, typer.Option(envvar="IMGCLF_API_KEY", show_envvar=True,
                                                         help="require this key in X-API-Key on /v1/*")] = None,
          max_batch: Annotated[int, typer.Option(help="micro-batching: images per forward pass")] = 32,
          max_wait_ms: Annotated[float, typer.Option(help="micro-batching: ms to wait for more requests")] = 5.0,
          max_upload_bytes: Annotated[int, typer.Option(help="largest request body")] = 10_000_000,
          max_pixels: Annotated[int | None, typer.Option(help="largest image, pixels")] = None,
          tta: Annotated[bool | None, typer.Option("--tta/--no-tta", help="mirror test-time augmentation")] = None,
          allow_urls: Annotated[bool, typer.Option("--allow-urls", help="accept {\"url\": ...} inputs")] = False,
          access_log: Annotated[bool, typer.Option("--access-log/--no-access-log", help="log each request")] = True,
          runs_dir: Annotated[str, typer.Option(help="folder of run folders")] = "runs") -> None:
    """Serve a model over HTTP: POST /v1/predict, /v1/predict/batch; GET /v1/model, /healthz, /metrics, /docs."""
    try:
        from imgclf.infer.serve import serve as run_serve
    except ImportError as exc:
        from imgclf.errors import ImgclfError

        raise ImgclfError(f"serving needs the deploy extras ({exc.name} is missing): pip install 'imgclf[deploy]'"
                          ) from None
    run_serve(source, host=host, port=port, workers=workers, backend=backend, tta=tta, threads=threads,
              runs_dir=runs_dir, access_log=access_log, api_key=api_key or None, max_batch=max_batch,
              max_wait_ms=max_wait_ms, max_upload_bytes=max_upload_bytes, max_pixels=max_pixels,
              allow_urls=allow_urls)
