"""Export a trained run to ONNX (optionally int8) or TorchScript, with its preprocessing contract inside the file.

    imgclf export runs/c10 --format onnx --out model.onnx --check
    imgclf export runs/c10 --format onnx --quantize int8 --out model.int8.onnx
    imgclf export runs/c10 --format torchscript --out model.ts

The exported graph is the whole ``ImageClassifier``: it takes uint8 pixels (N, C, size, size) in 0..255, exactly
what ``PreprocessSpec`` produces, and normalises (and resizes) inside, so the file alone can predict. The contract
(size, channels, crop and resample rule, pixel limit, class names, TTA, mean/std, model, imgclf version) is stored
as JSON in the ONNX ``metadata_props`` (key ``imgclf``) or the TorchScript extra file ``imgclf.json``.

int8 is ONNX Runtime's *static* quantization (QDQ, per-channel weights), calibrated on a few hundred images of the
run's training split; the test split is never used for calibration, only for the accuracy report.
"""

from __future__ import annotations

import io
import json
import logging
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from imgclf.errors import ImgclfError
from imgclf.infer.backends import EXPORT_FORMAT, META_KEY, TS_EXTRA, OrtBackend, TorchBackend, _Backend, require
from imgclf.runs import HEADLINE, read_json

FORMATS = ("onnx", "torchscript")
QUANTIZE = ("int8",)
OPSET = 20  # >= 18 for Resize with antialias; 20 exports GELU as one Gelu node (faster, and quantizes cleanly)
INPUT_NAME, OUTPUT_NAME = "pixels", "logits"


@dataclass
class ExportResult:
    path: Path  # the written file
    format: str  # onnx | torchscript
    quantize: str | None  # None | int8
    seconds: float  # export time, including quantization and checks
    report: dict[str, Any] | None = None  # exported vs PyTorch on test images (see compare); None when not run
    meta: dict[str, Any] = field(default_factory=dict)  # the stored contract


def export_meta(meta: dict[str, Any], quantize: str | None = None, metrics: dict | None = None) -> dict[str, Any]:
    """The contract stored in an exported file, from a model.pt ``meta`` (see ``imgclf.models.io``)."""
    import imgclf

    arch, spec = meta.get("arch", {}), meta["preprocess"]
    return {"format": EXPORT_FORMAT, "imgclf_version": imgclf.__version__, "model": arch.get("model"),
            "run": meta.get("run"), "dataset": meta.get("dataset"), "classes": list(meta["classes"]),
            "orig_classes": meta.get("orig_classes"), "preprocess": spec, "tta": bool(meta.get("tta")),
            "flip": bool(meta.get("flip", True)), "transfer": meta.get("transfer"),
            "normalize": {k: arch.get(k) for k in ("mean", "std", "input_size", "net_channels")},
            "input": {"name": INPUT_NAME, "dtype": "uint8", "layout": "NCHW", "range": [0, 255],
                      "shape": ["batch", spec["channels"], spec["size"], spec["size"]]},
            "output": {"name": OUTPUT_NAME, "shape": ["batch", len(meta["classes"])], "kind": "logits"},
            "quantize": quantize, "metrics": metrics or {}}


def _example(meta: dict[str, Any], batch: int = 2) -> torch.Tensor:
    spec = meta["preprocess"]
    return torch.zeros(batch, spec["channels"], spec["size"], spec["size"], dtype=torch.uint8)


def to_onnx(model: torch.nn.Module, meta: dict[str, Any], opset: int = OPSET, quantize: str | None = None,
            metrics: dict | None = None):
    """An ``onnx.ModelProto`` of ``model`` with a dynamic batch axis and the contract in ``metadata_props``."""
    onnx = require("onnx")

    model = model.eval()
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about the shape checks, frozen at the stored size
        try:
            torch.onnx.export(model, (_example(meta),), buffer, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                              dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                              opset_version=opset, dynamo=False)
            proto = onnx.load_from_string(buffer.getvalue())
        except (TypeError, RuntimeError, AttributeError):  # a torch without the TorchScript-based exporter
            proto = _dynamo_export(model, meta, opset)
    set_metadata(proto, export_meta(meta, quantize, metrics))
    return proto


def _dynamo_export(model: torch.nn.Module, meta: dict[str, Any], opset: int):
    import onnx

    batch = torch.export.Dim("batch", min=1)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        torch.onnx.export(model, (_example(meta),), str(path), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          dynamic_shapes=({0: batch},), opset_version=opset, dynamo=True, verbose=False)
        return onnx.load(str(path))


def set_metadata(proto, contract: dict[str, Any]) -> None:
    import imgclf

    for prop in [p for p in proto.metadata_props if p.key == META_KEY]:
        proto.metadata_props.remove(prop)
    proto.metadata_props.add(key=META_KEY, value=json.dumps(contract))
    proto.producer_name, proto.producer_version = "imgclf", imgclf.__version__
    proto.doc_string = (f"imgclf classifier '{contract.get('model')}' ({len(contract['classes'])} classes). Input "
                        f"'{INPUT_NAME}': uint8 NCHW pixels 0..255; contract in metadata_props['{META_KEY}'].")


# run data: calibration (training split) and checks (test split) -------------------------------------------------

def _run_dir_of(model_path: Path) -> Path | None:
    run = model_path.parent
    return run if (run / "config.yaml").is_file() and (run / "split.json").is_file() else None


def load_run_splits(run_dir: Path, meta: dict[str, Any], data_dir: str | None = None, progress: bool = False):
    """The run's recorded train/val/test splits, reloaded from its dataset as ``evaluate`` does."""
    from imgclf.config import read_yaml
    from imgclf.data import load_dataset, splits_from_ids

    cfg = read_yaml(run_dir / "config.yaml")
    ds = load_dataset(cfg["dataset"], data_dir=data_dir or cfg.get("data_dir"), image_size=cfg["image_size"],
                      classes=cfg.get("classes"), max_pixels=cfg["max_pixels"], workers=cfg["workers"],
                      progress=progress, crop_fraction=meta["preprocess"].get("crop_fraction", 1.0))
    return splits_from_ids(ds, read_json(run_dir / "split.json"))


def _folder_images(folder: str | Path, meta: dict[str, Any], limit: int) -> np.ndarray:
    """Up to ``limit`` images of a folder, preprocessed with the model's contract (for bare model files)."""
    from imgclf.data.images import ImageError, PreprocessSpec, load_for_model
    from imgclf.infer.predict import expand_inputs

    spec = PreprocessSpec.from_dict(meta["preprocess"])
    arrays = []
    for path in expand_inputs([folder])[:limit]:
        try:
            arrays.append(load_for_model(path, spec))
        except ImageError:
            continue
    if not arrays:
        raise ImgclfError(f"{folder}: no readable images for calibration")
    return np.stack(arrays)


def _sample(images: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    idx = np.random.default_rng(seed).permutation(len(images))[:n]
    return images[np.sort(idx)]


def _batched_probs(backend: _Backend, images: np.ndarray, batch: int = 256) -> np.ndarray:
    return np.concatenate([backend.probs(images[i : i + batch]) for i in range(0, len(images), batch)])


def compare(reference: _Backend, exported: _Backend, images: np.ndarray, labels: np.ndarray | None = None) -> dict:
    """Exported vs reference (PyTorch fp32) on the same images: largest probability difference, top-1 agreement,
    and, with labels, both accuracies and the change in points (no TTA on either side)."""
    ref, exp = _batched_probs(reference, images), _batched_probs(exported, images)
    report = {"images": len(images), "max_abs_diff": float(np.abs(ref - exp).max()),
              "top1_agreement": float((ref.argmax(1) == exp.argmax(1)).mean())}
    if labels is not None:
        acc_ref, acc_exp = float((ref.argmax(1) == labels).mean()), float((exp.argmax(1) == labels).mean())
        report.update(reference_accuracy=acc_ref, exported_accuracy=acc_exp,
                      accuracy_change_points=round(100 * (acc_exp - acc_ref), 4))
    return report


def _reference_sets(splits, calibration_data: str | Path | None, meta: dict, n_calibration: int):
    """(calibration images, check images, check labels): the run's training / test splits, or a folder."""
    if splits is not None:
        return _sample(splits.train.images, n_calibration), splits.test.images, splits.test.labels
    if calibration_data is not None:
        images = _folder_images(calibration_data, meta, n_calibration)
        return images, images, None
    return None, None, None


# int8 ----------------------------------------------------------------------------------------------------------------

def quantize_int8(proto, calibration: np.ndarray, batch: int = 32):
    """Static int8 quantization (QDQ, per-channel weights, uint8 activations) calibrated on uint8 images."""
    onnx = require("onnx")
    require("onnxruntime")
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    input_name = proto.graph.input[0].name

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{input_name: calibration[i : i + batch]} for i in range(0, len(calibration), batch)])

        def get_next(self):
            return next(self.batches, None)

    with tempfile.TemporaryDirectory() as tmp:
        fp32, pre, out = (str(Path(tmp) / n) for n in ("fp32.onnx", "pre.onnx", "int8.onnx"))
        onnx.save(proto, fp32)
        _optimize_basic(fp32, pre)
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # onnxruntime's quantizer warns on the root logger about harmless things
        try:
            quantize_static(pre, out, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})
        finally:
            root.setLevel(level)
        return onnx.load(out)


def _optimize_basic(src: str, dst: str) -> None:
    """onnxruntime's basic graph optimisations (constant folding, Conv+BatchNorm folding), still standard ONNX."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = dst
    ort.InferenceSession(src, options, providers=["CPUExecutionProvider"])


# export -------------------------------------------------------------------------------------------------------------

def _headline_metrics(run_dir: Path | None) -> dict[str, Any]:
    path = None if run_dir is None else run_dir / "metrics.json"
    if path is None or not path.is_file():
        return {}
    metrics = read_json(path)
    return {k: metrics[k] for k in (*HEADLINE, "top5_accuracy", "tta", "dataset") if metrics.get(k) is not None}


def _default_name(fmt: str, quantize: str | None) -> str:
    return "model.ts" if fmt == "torchscript" else ("model.int8.onnx" if quantize else "model.onnx")


def _write_torchscript(model: torch.nn.Module, contract: dict[str, Any], out: Path) -> TorchBackend:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model.eval(), (_example(contract),), check_trace=False)
        torch.jit.save(traced, str(out), _extra_files={TS_EXTRA: json.dumps(contract)})
    from imgclf.infer.backends import load_torchscript

    return TorchBackend(*load_torchscript(out))


def _criterion(report: dict, quantize: str | None, tolerance: float, max_drop: float) -> tuple[bool, str]:
    if quantize and "accuracy_change_points" in report:
        return report["accuracy_change_points"] >= -max_drop, f"accuracy change >= -{max_drop} points"
    if quantize:
        return report["top1_agreement"] >= 0.9, "top-1 agreement with fp32 >= 0.9"
    return report["max_abs_diff"] <= tolerance, f"max |probability difference| <= {tolerance}"


def export(source: str | Path, format: str = "onnx", out: str | Path | None = None, quantize: str | None = None,
           check: bool = False, tolerance: float = 1e-4, max_accuracy_drop: float = 1.0,
           calibration_images: int = 300, calibration_data: str | Path | None = None, data_dir: str | None = None,
           runs_dir: str | Path = "runs", opset: int = OPSET, progress: bool = False) -> ExportResult:
    """Export a run (best seed of a group) or a model.pt to ONNX or TorchScript.

    Args:
        source: run folder, run name under ``runs_dir``, or model.pt.
        format: 'onnx' or 'torchscript'.
        out: output file (default: ``model.onnx`` / ``model.int8.onnx`` / ``model.ts`` beside model.pt).
        quantize: None or 'int8' (ONNX only): static quantization calibrated on ``calibration_images`` training
            images; the accuracy change on the test split is always measured and returned in ``report``.
        check: compare with the PyTorch model on the run's test images; raise ImgclfError when the largest
            probability difference exceeds ``tolerance`` (fp32) or accuracy drops by more than
            ``max_accuracy_drop`` points (int8).
        calibration_data: a folder of images, for a model.pt without its run folder (never the test set).
        data_dir: where the run's dataset is, if not where it was trained from.

    Examples:
        >>> result = export("runs/c10", "onnx", quantize="int8")  # doctest: +SKIP
        >>> result.report["accuracy_change_points"]  # doctest: +SKIP
        -0.2
    """
    from imgclf.models.io import load_model
    from imgclf.runs import model_file

    if format not in FORMATS:
        raise ImgclfError(f"unknown export format {format!r}; accepted: {', '.join(FORMATS)}")
    if quantize is not None and (quantize not in QUANTIZE or format != "onnx"):
        raise ImgclfError(f"--quantize {quantize!r}: accepted: {', '.join(QUANTIZE)} (ONNX format only)")
    start = time.perf_counter()
    path = Path(source)
    if not path.exists() and (Path(runs_dir) / path).exists():
        path = Path(runs_dir) / path
    if not path.exists():
        raise ImgclfError(f"run folder or model file not found: {source}")
    model_path = model_file(path)
    model, meta = load_model(model_path)
    run_dir = _run_dir_of(model_path)
    out = Path(out) if out else model_path.parent / _default_name(format, quantize)
    out.parent.mkdir(parents=True, exist_ok=True)
    splits = load_run_splits(run_dir, meta, data_dir, progress) if run_dir and (check or quantize) else None
    calib, check_images, check_labels = _reference_sets(splits, calibration_data, meta, calibration_images)
    if (check or quantize) and calib is None:
        raise ImgclfError(f"{model_path} has no run folder with its data; give calibration_data (--calibration-data "
                          "FOLDER of images, never the test set) or export the run folder")
    contract = export_meta(meta, quantize, _headline_metrics(run_dir))
    if format == "torchscript":
        exported = _write_torchscript(model, contract, out)
    else:
        exported, proto = _build_onnx(model, meta, contract, calib, opset, quantize)
    report = None
    if check or quantize:
        report = compare(TorchBackend(model, meta), exported, check_images, check_labels)
        report["passed"], report["criterion"] = _criterion(report, quantize, tolerance, max_accuracy_drop)
        contract["check"] = report
    if format == "onnx":
        set_metadata(proto, contract)
        _save_onnx(proto, out)
    result = ExportResult(out, format, quantize, round(time.perf_counter() - start, 3), report, contract)
    if check and not report["passed"]:
        accuracy = (f", accuracy {report['reference_accuracy']:.4f} -> {report['exported_accuracy']:.4f}"
                    if "exported_accuracy" in report else "")
        raise ImgclfError(f"export check failed ({report['criterion']}): max diff {report['max_abs_diff']:.3g}, "
                          f"top-1 agreement {report['top1_agreement']:.4f}{accuracy} on {report['images']} images; "
                          f"{out} was written but should not be trusted")
    return result


def _build_onnx(model, meta: dict, contract: dict, calib: np.ndarray | None, opset: int, quantize: str | None):
    proto = to_onnx(model, meta, opset, quantize, contract.get("metrics"))
    if quantize:
        proto = quantize_int8(proto, calib)
        contract["calibration"] = {"images": len(calib), "method": "minmax", "format": "QDQ",
                                   "weights": "int8 per-channel", "activations": "uint8"}
    set_metadata(proto, contract)
    return OrtBackend(proto.SerializeToString()), proto


def _save_onnx(proto, out: Path) -> None:
    import onnx

    tmp = out.with_name(out.name + ".tmp")
    onnx.save(proto, str(tmp))
    tmp.replace(out)
