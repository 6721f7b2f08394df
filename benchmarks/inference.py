"""Inference benchmark: PyTorch eager vs ONNX Runtime fp32 / int8, and the REST server under load. One JSON line.

    PYTHONPATH=src python benchmarks/inference.py --quick                   # does it run? (about a minute)
    PYTHONPATH=src python benchmarks/inference.py --run runs/c10-rf         # full; resnet-fast from a trained run
    PYTHONPATH=src python benchmarks/inference.py                           # full; random weights (speed only)

What it measures (every model gets uint8 pixels, preprocessing and normalisation inside, no TTA):
  1. single-image latency p50/p99 (batch 1) and batch throughput (images/s, mean +- std over repeats) for PyTorch
     eager (all threads, and one thread), ONNX Runtime fp32 and ONNX Runtime int8 (static, QDQ, calibrated on
     training images of ``--run``, or on random images for random weights), timed interleaved so that load changes
     hit every backend alike, for ``resnet-fast`` at 32x32 and EfficientNet-Lite0 (timm ``tf_efficientnet_lite0``,
     random weights) at 224x224;
  2. with ``--run``: the int8 accuracy change on the run's test split (``imgclf export --quantize int8``);
  3. the server (``imgclf serve`` in a subprocess, ONNX backend, no TTA) under ``--clients`` keep-alive clients on
     127.0.0.1, bounded by ``--server-requests`` and ``--server-seconds``: requests/s, p50/p99, errors; then
     ``--malformed`` bad requests (random bytes, truncated PNG, wrong content type, 50-megapixel PNG, oversize body),
     which must all get a 4xx, and /healthz afterwards.
The load generator shares the CPU with the server, so server figures are a lower bound for a dedicated machine.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import itertools
import json
import os
import platform
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from PIL import Image

TARGETS = {"ort_fp32_speedup": 1.5, "ort_int8_speedup": 2.0, "int8_max_accuracy_loss_points": 1.0,
           "resnet_fast_images_per_s": 5000, "lite0_single_p50_ms": 15.0, "server_requests_per_s": 300,
           "server_p99_ms": 100.0}


# models -------------------------------------------------------------------------------------------------------------

def random_model(name: str, size: int, classes: int = 10):
    """An ImageClassifier with random weights (resnet-fast's whitening stem set from random images)."""
    from imgclf.data.images import PreprocessSpec
    from imgclf.models.io import build_classifier

    arch = {"model": name, "num_classes": classes, "net_channels": 3, "mean": [0.49, 0.48, 0.45],
            "std": [0.25, 0.24, 0.26], "input_size": size}
    model = build_classifier(arch).eval()
    if hasattr(model.net, "init_from_data"):
        model.net.init_from_data(model.normalize(torch.from_numpy(images(256, size))))
    meta = {"classes": [f"c{i}" for i in range(classes)], "preprocess": PreprocessSpec(size=size).to_dict(),
            "arch": arch, "tta": False, "flip": True, "run": None, "dataset": None}
    return model, meta


def images(n: int, size: int, seed: int = 0) -> np.ndarray:
    """Smooth random images (noise blurred by upsampling), closer to photos than white noise."""
    rng = np.random.default_rng(seed)
    small = torch.from_numpy(rng.uniform(0, 255, (n, 3, max(2, size // 8), max(2, size // 8))).astype(np.float32))
    big = torch.nn.functional.interpolate(small, size=(size, size), mode="bilinear", align_corners=False)
    return big.clamp(0, 255).to(torch.uint8).numpy()


def backends(model, meta, calibration: np.ndarray, threads: int) -> dict:
    """name -> batch function uint8 (N, C, H, W) -> logits: torch eager (N and 1 threads), ONNX Runtime fp32, int8.

    PyTorch is also timed with one thread because its OpenMP pool stalls badly when other processes hold the
    cores (each op waits for every thread); speed-ups are computed against the better of the two.
    """
    from imgclf.infer.backends import OrtBackend
    from imgclf.infer.export import quantize_int8, to_onnx

    proto = to_onnx(model, meta)

    def eager(n_threads: int):
        @torch.inference_mode()
        def run(x):
            torch.set_num_threads(n_threads)
            return model(torch.from_numpy(x)).numpy()

        return run

    fns = {"torch_eager": eager(threads)}
    if threads > 1:
        fns["torch_eager_1thread"] = eager(1)
    fns["ort_fp32"] = OrtBackend(proto.SerializeToString(), meta, threads=threads).logits
    fns["ort_int8"] = OrtBackend(quantize_int8(proto, calibration).SerializeToString(), meta, threads=threads).logits
    return fns


def timings(fns: dict, x: np.ndarray, n: int) -> dict[str, list[float]]:
    """Seconds per call of each function on ``x``, interleaved (a, b, c, a, b, c, ...) so that changes in the
    machine's load hit every backend alike; a few untimed warm-up calls first."""
    for fn in fns.values():
        for _ in range(3):
            fn(x)
    out: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(n):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn(x)
            out[name].append(time.perf_counter() - start)
    return out


def bench_model(label: str, model, meta, calibration: np.ndarray, size: int, args, source: str) -> dict:
    fns = backends(model, meta, calibration, args.threads)
    n_single = args.latency_iters if size <= 64 else max(5, args.latency_iters // 4)
    single = timings(fns, images(1, size, seed=1), n_single)
    batch = images(args.batch if size <= 64 else args.batch_large, size, seed=2)
    batched = timings(fns, batch, args.repeats)
    out = {"model": label, "input": f"3x{size}x{size}", "weights": source, "backends": {}}
    for name in fns:
        ms = 1000 * np.array(single[name])
        rates = len(batch) / np.array(batched[name])
        out["backends"][name] = {
            "single": {"p50_ms": round(float(np.percentile(ms, 50)), 3),
                       "p99_ms": round(float(np.percentile(ms, 99)), 3), "n": len(ms)},
            "batch": {"images_per_s": round(float(rates.mean()), 1),
                      "std": round(float(rates.std(ddof=1)), 1) if len(rates) > 1 else 0.0, "batch": len(batch),
                      "repeats": len(rates)}}
    base = max(v["batch"]["images_per_s"] for k, v in out["backends"].items() if k.startswith("torch"))
    for name in ("ort_fp32", "ort_int8"):
        out["backends"][name]["speedup_vs_eager"] = round(out["backends"][name]["batch"]["images_per_s"] / base, 2)
    return out


# server -------------------------------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "PNG")
    return buf.getvalue()


def http_request(body: bytes, content_type: str, path: str = "/v1/predict", close: bool = False,
                 declared_length: int | None = None) -> bytes:
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {declared_length or len(body)}\r\n")
    return (head + ("Connection: close\r\n" if close else "") + "\r\n").encode() + body


def multipart(data: bytes, filename: str = "x.png", kind: str = "image/png") -> tuple[bytes, str]:
    b = "imgclfbenchboundary"
    body = (f'--{b}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            f"Content-Type: {kind}\r\n\r\n").encode() + data + f"\r\n--{b}--\r\n".encode()
    return body, f"multipart/form-data; boundary={b}"


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    match = re.search(rb"content-length:\s*(\d+)", head, re.IGNORECASE)
    body = await reader.readexactly(int(match.group(1))) if match else b""
    return status, body, b"connection: close" in head.lower()


async def load(port: int, request: bytes, clients: int, total: int, seconds: float) -> dict:
    """Keep-alive clients sending ``request`` until ``total`` requests or ``seconds`` have passed."""
    ticket, latencies, statuses = itertools.count(), [], Counter()
    deadline = time.monotonic() + seconds

    async def client():
        reader = writer = None
        while next(ticket) < total and time.monotonic() < deadline:
            start = time.perf_counter()
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(request)
                await writer.drain()
                status, _, close = await read_response(reader)
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                statuses[f"client:{type(exc).__name__}"] += 1
                writer = None
                continue
            latencies.append(time.perf_counter() - start)
            statuses[status] += 1
            if close:
                writer.close()
                writer = None
        if writer is not None:
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*[client() for _ in range(clients)])
    elapsed = time.perf_counter() - start
    n = sum(statuses.values())
    ms = 1000 * np.array(latencies or [0.0])
    return {"requests": n, "seconds": round(elapsed, 2), "requests_per_s": round(n / elapsed, 1),
            "p50_ms": round(float(np.percentile(ms, 50)), 2), "p99_ms": round(float(np.percentile(ms, 99)), 2),
            "errors": n - statuses[200], "statuses": {str(k): v for k, v in statuses.items()}}


def malformed_requests(limit: int) -> list[tuple[str, bytes]]:
    rng = np.random.default_rng(0)
    good = png(images(1, 32)[0].transpose(1, 2, 0))
    buf = io.BytesIO()
    Image.new("1", (8000, 6500)).save(buf, "PNG")  # 50 megapixels in a few kilobytes
    kinds = {"random_bytes": http_request(*multipart(rng.bytes(4096), "r.png")),
             "truncated_png": http_request(*multipart(good[: len(good) // 2])),
             "wrong_content_type": http_request(b"just some text", "text/plain"),
             "wrong_part_type": http_request(*multipart(good, "x.txt", "text/plain")),
             "50_megapixel_png": http_request(*multipart(buf.getvalue(), "huge.png")),
             "oversize_body": http_request(b"\x00" * 65536, "image/png", declared_length=limit * 4)}
    return list(kinds.items())


async def malformed(port: int, count: int, clients: int, limit: int) -> dict:
    kinds = malformed_requests(limit)
    ticket, statuses, by_kind = itertools.count(), Counter(), Counter()

    async def client():
        while (i := next(ticket)) < count:
            name, request = kinds[i % len(kinds)]
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(request)
                await writer.drain()
                status, _, _ = await read_response(reader)
                writer.close()
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                status = f"client:{type(exc).__name__}"
            statuses[status] += 1
            if not (isinstance(status, int) and 400 <= status < 500):
                by_kind[name] += 1

    await asyncio.gather(*[client() for _ in range(clients)])
    return {"requests": count, "all_4xx": not by_kind, "statuses": {str(k): v for k, v in statuses.items()},
            "not_4xx_by_kind": dict(by_kind)}


def bench_server(model_file: Path, args) -> dict:
    port = free_port()
    limit = 1_000_000
    cmd = [sys.executable, "-m", "imgclf", "serve", str(model_file), "--port", str(port), "--no-access-log",
           "--no-tta", "--max-upload-bytes", str(limit), "--max-batch", str(args.max_batch), "--max-wait-ms",
           str(args.max_wait_ms)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_healthy(port, proc)
        good = http_request(*multipart(png(images(1, 32, seed=3)[0].transpose(1, 2, 0))))
        asyncio.run(load(port, good, 4, 50, 10))  # warm-up
        result = {"command": " ".join(cmd[1:]), "clients": args.clients,
                  "load": asyncio.run(load(port, good, args.clients, args.server_requests, args.server_seconds))}
        result["malformed"] = asyncio.run(malformed(port, args.malformed, args.clients, limit))
        result["healthy_after"] = healthz(port) == 200
        result["good_after"] = asyncio.run(load(port, good, 1, 1, 10))["errors"] == 0
        return result
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


def healthz(port: int) -> int | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
            return r.status
    except OSError:
        return None


def wait_healthy(port: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read()[-2000:]}")
        if healthz(port) == 200:
            return
        time.sleep(0.2)
    raise RuntimeError("server did not become healthy")


def serve_model(rf, int8: bool, args) -> dict:
    from imgclf.infer.export import export_meta, quantize_int8, set_metadata, to_onnx

    proto = to_onnx(rf[0], rf[1])
    if int8:
        proto = quantize_int8(proto, rf[2])
        set_metadata(proto, export_meta(rf[1], "int8"))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        path.write_bytes(proto.SerializeToString())
        return {"model": f"resnet-fast {'int8' if int8 else 'fp32'} ONNX ({rf[3]})", **bench_server(path, args)}


# main -----------------------------------------------------------------------------------------------------------------

def machine(threads: int) -> dict:
    import onnxruntime

    import imgclf

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    return {"cpu": cpu, "cores": os.cpu_count(), "threads": threads, "load_avg_at_start": os.getloadavg()[0],
            "python": platform.python_version(), "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
            "imgclf": imgclf.__version__, "platform": platform.platform()}


def resnet_fast(args):
    """(model, meta, calibration images, weights note) from --run, or random weights."""
    if not args.run:
        model, meta = random_model("resnet-fast", 32)
        return model, meta, images(args.calibration, 32, seed=4), "random weights"
    from imgclf.infer.export import load_run_splits
    from imgclf.models.io import load_model
    from imgclf.runs import model_file

    path = model_file(args.run)
    model, meta = load_model(path)
    splits = load_run_splits(path.parent, meta, args.data_dir)
    idx = np.random.default_rng(0).permutation(len(splits.train))[: args.calibration]
    return model, meta, splits.train.images[np.sort(idx)], f"trained run {path.parent}"


def int8_accuracy(args) -> dict | None:
    if not args.run:
        return None
    from imgclf.infer.export import export

    with tempfile.TemporaryDirectory() as tmp:
        report = export(args.run, "onnx", quantize="int8", out=Path(tmp) / "q.onnx", data_dir=args.data_dir,
                        calibration_images=args.calibration).report
    return {k: report[k] for k in ("images", "reference_accuracy", "exported_accuracy", "accuracy_change_points",
                                   "top1_agreement")}


def verdicts(result: dict) -> list[dict]:
    """Every target with its measured figure and whether it was met."""
    rows = []

    def add(name: str, value, target, higher_is_better: bool = True):
        met = value >= target if higher_is_better else value <= target
        rows.append({"target": name, "measured": value, "goal": f"{'>=' if higher_is_better else '<='} {target}",
                     "met": bool(met)})

    for m in result["models"]:
        b = m["backends"]
        add(f"{m['model']} ORT fp32 / eager throughput", b["ort_fp32"]["speedup_vs_eager"], TARGETS["ort_fp32_speedup"])
        add(f"{m['model']} ORT int8 / eager throughput", b["ort_int8"]["speedup_vs_eager"], TARGETS["ort_int8_speedup"])
        if m["model"] == "resnet-fast":
            add("resnet-fast best batch images/s", max(v["batch"]["images_per_s"] for v in b.values()),
                TARGETS["resnet_fast_images_per_s"])
        else:
            add(f"{m['model']} best single-image p50 ms", min(v["single"]["p50_ms"] for v in b.values()),
                TARGETS["lite0_single_p50_ms"], higher_is_better=False)
    if result.get("int8_accuracy"):
        add("int8 accuracy change, points", result["int8_accuracy"]["accuracy_change_points"],
            -TARGETS["int8_max_accuracy_loss_points"])
    for server in result.get("servers", []):
        load_, bad, name = server["load"], server["malformed"], server["model"].split(" (")[0]
        add(f"server {name} requests/s", load_["requests_per_s"], TARGETS["server_requests_per_s"])
        add(f"server {name} p99 ms", load_["p99_ms"], TARGETS["server_p99_ms"], higher_is_better=False)
        add(f"server {name} errors", load_["errors"], 0, higher_is_better=False)
        add(f"server {name} malformed requests not answered 4xx (+1 if unhealthy after)",
            sum(bad["not_4xx_by_kind"].values()) + (not (server["healthy_after"] and server["good_after"])), 0,
            higher_is_better=False)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny counts: checks that the script runs")
    parser.add_argument("--run", help="a resnet-fast run (e.g. trained on cifar-10-mini) instead of random weights")
    parser.add_argument("--data-dir", help="where the run's dataset is")
    parser.add_argument("--models", default="resnet-fast,lite0", help="comma list of resnet-fast, lite0 ('' = none)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="intra-op threads for every backend")
    parser.add_argument("--batch", type=int, default=256, help="batch for throughput at 32x32")
    parser.add_argument("--batch-large", type=int, default=32, help="batch for throughput at 224x224")
    parser.add_argument("--repeats", type=int, default=10, help="timed batches per backend")
    parser.add_argument("--latency-iters", type=int, default=200, help="single-image calls per backend (224 px: /4)")
    parser.add_argument("--calibration", type=int, default=300, help="int8 calibration images")
    parser.add_argument("--no-server", action="store_true", help="skip the server benchmark")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--server-requests", type=int, default=2000)
    parser.add_argument("--server-seconds", type=float, default=30.0)
    parser.add_argument("--malformed", type=int, default=1000)
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--max-wait-ms", type=float, default=2.0)
    args = parser.parse_args()
    if args.quick:
        args.batch, args.batch_large, args.repeats, args.latency_iters, args.calibration = 32, 4, 2, 20, 16
        args.server_requests, args.server_seconds, args.malformed = 200, 10.0, 60
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    result = {"benchmark": "inference", "machine": machine(args.threads), "quick": args.quick, "models": []}
    models = [m for m in args.models.split(",") if m]
    rf = resnet_fast(args) if "resnet-fast" in models or not args.no_server else None
    if "resnet-fast" in models:
        result["models"].append(bench_model("resnet-fast", *rf[:3], 32, args, rf[3]))
    if "lite0" in models:
        model, meta = random_model("timm:tf_efficientnet_lite0", 224, classes=1000)
        result["models"].append(bench_model("tf_efficientnet_lite0", model, meta, images(max(8, args.calibration // 10),
                                                                                       224, seed=5), 224, args,
                                            "random weights"))
    result["int8_accuracy"] = int8_accuracy(args)
    if rf and not args.no_server:
        result["servers"] = [serve_model(rf, int8, args) for int8 in (False, True)]
    result["targets"] = verdicts(result)
    result["seconds"] = round(time.perf_counter() - started, 1)
    result["machine"]["load_avg_at_end"] = os.getloadavg()[0]  # > 0.5 or so: other work shared the cores
    print(json.dumps(result))


if __name__ == "__main__":
    main()
