"""A trained run (or exported file) behind a REST API: FastAPI + uvicorn, with micro-batching.

    imgclf serve runs/c10 --host 127.0.0.1 --port 8000 [--backend onnx] [--workers 2] [--api-key KEY]
    curl -F file=@cat.jpg localhost:8000/v1/predict
    curl -H 'Content-Type: application/json' -d '{"image_base64": "..."}' localhost:8000/v1/predict
    curl -F files=@a.jpg -F files=@b.png localhost:8000/v1/predict/batch
    curl localhost:8000/v1/model ; curl localhost:8000/healthz ; curl localhost:8000/metrics   # docs: /docs

Every bad input gets a 4xx with ``{"error": "..."}``: bodies over the upload limit (413, checked on Content-Length
and while reading), images over the pixel limit (413), unsupported content types or files that are not images by
their first bytes (415), undecodable or truncated images (422), bad JSON or base64 (400), a missing or wrong API
key (401). Concurrent requests are batched together (see ``_batching``), so results equal one-by-one prediction.
With ``--workers N`` each worker process has its own model, batcher and /metrics counters.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import logging
import os
import time
from contextlib import asynccontextmanager, suppress
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from imgclf.data.images import ImageError
from imgclf.errors import ImgclfError

log = logging.getLogger("imgclf.serve")

ENV_CONFIG = "IMGCLF_SERVE_CONFIG"  # JSON of create_app's arguments, for uvicorn worker processes
IMAGE_MAGIC = ((b"\xff\xd8\xff", "JPEG"), (b"\x89PNG\r\n\x1a\n", "PNG"), (b"GIF87a", "GIF"), (b"GIF89a", "GIF"),
               (b"BM", "BMP"), (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"))
ACCEPTED_IMAGES = "JPEG, PNG, GIF, BMP, TIFF, WebP, PPM/PGM"
INLINE_PIXELS = 128 * 128  # images up to this size are decoded on the event loop: cheaper than a thread hop


@dataclass(frozen=True)
class ServeOptions:
    """Limits and batching of the server."""

    max_batch: int = 32  # images per forward pass at most
    max_wait_ms: float = 5.0  # ms the first request of a batch waits for others
    max_upload_bytes: int = 10_000_000  # bytes, largest request body
    max_pixels: int | None = None  # largest image (width x height); default: the model's contract
    max_batch_files: int = 64  # images in one /v1/predict/batch request
    top_k: int = 5  # labels returned by default
    api_key: str | None = None  # required in X-API-Key (or Authorization: Bearer) on /v1/* when set
    allow_urls: bool = False  # accept {"url": ...} inputs (the server then fetches arbitrary URLs)
    url_timeout: float = 5.0  # s, for a URL download


class ApiError(Exception):
    """A client error answered as ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def image_kind(data: bytes) -> str | None:
    """The image format named by the first bytes, or None."""
    for magic, kind in IMAGE_MAGIC:
        if data.startswith(magic):
            return kind
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    if len(data) > 2 and data[:1] == b"P" and data[1:2] in b"123456" and data[2:3].isspace():
        return "PNM"
    return None


class Service:
    """What the endpoints share: the predictor, the micro-batcher, metrics and the options."""

    def __init__(self, source: str | Path, backend: str | None, tta: bool | None, threads: int | None,
                 runs_dir: str | Path, options: ServeOptions):
        import numpy as np

        from imgclf.infer._batching import MicroBatcher
        from imgclf.infer._prometheus import Metrics
        from imgclf.infer.predict import Predictor

        self.options = options
        self.predictor = Predictor(source, tta=tta, backend=backend, threads=threads, runs_dir=runs_dir,
                                   max_pixels=options.max_pixels, url_timeout=options.url_timeout,
                                   max_url_bytes=options.max_upload_bytes, batch_size=options.max_batch)
        meta = self.predictor.meta
        self.model_name = meta.get("model") or meta.get("arch", {}).get("model") or "model"
        self.metrics = Metrics()
        self.batcher = MicroBatcher(self.predictor.predict_arrays, options.max_batch, options.max_wait_ms,
                                    on_batch=self.metrics.observe_batch)
        spec = self.predictor.spec
        self.predictor.predict_arrays(np.zeros((1, spec.channels, spec.size, spec.size), np.uint8))  # warm-up
        self.test_metrics = _test_metrics(source, runs_dir, meta)

    def describe(self) -> dict[str, Any]:
        import imgclf

        p, meta = self.predictor, self.predictor.meta
        arch = meta.get("arch") or {}
        normalize = meta.get("normalize") or {k: arch.get(k) for k in ("mean", "std", "input_size", "net_channels")}
        return {"model": self.model_name, "run": meta.get("run"), "dataset": meta.get("dataset"),
                "classes": p.classes, "num_classes": len(p.classes), "backend": p.backend.name,
                "quantize": meta.get("quantize"), "tta": p.tta_level,
                "input": {"preprocess": p.spec.to_dict(), "normalize": normalize,
                          "accepted_formats": ACCEPTED_IMAGES},
                "metrics": self.test_metrics,
                "limits": {k: v for k, v in asdict(self.options).items() if k != "api_key"},
                "auth": self.options.api_key is not None, "imgclf_version": imgclf.__version__}


def _test_metrics(source: str | Path, runs_dir: str | Path, meta: dict) -> dict[str, Any]:
    """Test metrics from the run's metrics.json (seed's, then group's), else those stored in an exported file."""
    from imgclf.runs import HEADLINE, model_file, read_json

    path = Path(source) if Path(source).exists() else Path(runs_dir) / source
    candidates = [path / "metrics.json"] if path.is_dir() else []
    if path.suffix == ".pt" or path.is_dir():
        with suppress(ImgclfError):
            candidates.insert(0, model_file(path).parent / "metrics.json")
    for candidate in candidates:
        if candidate.is_file():
            metrics = read_json(candidate)
            return {k: metrics[k] for k in (*HEADLINE, "top5_accuracy", "tta") if metrics.get(k) is not None}
    return dict(meta.get("metrics") or {})


# request reading ------------------------------------------------------------------------------------------------

async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing more than ``limit`` bytes by Content-Length and while reading."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise ApiError(400, "invalid Content-Length header")
        if int(declared) > limit:
            raise ApiError(413, f"request body too large ({int(declared):,} bytes > limit {limit:,})")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"request body too large (more than {limit:,} bytes)")
        chunks.append(chunk)
    return b"".join(chunks)


def content_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def parse_multipart(request: Request, body: bytes, max_files: int) -> list[tuple[str, bytes, str]]:
    """(name, bytes, content type) of every file part of a multipart body."""
    from starlette.datastructures import UploadFile
    from starlette.formparsers import MultiPartException, MultiPartParser

    async def stream():
        yield body
        yield b""

    parser = MultiPartParser(request.headers, stream(), max_files=max_files, max_fields=16,
                             max_part_size=64 * 1024)
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise ApiError(400, f"invalid multipart body: {exc.message}") from None
    except Exception as exc:  # python-multipart raises its own errors for malformed bodies
        raise ApiError(400, f"invalid multipart body ({type(exc).__name__})") from None
    files = []
    try:
        for _, value in form.multi_items():
            if isinstance(value, UploadFile):
                files.append((value.filename or "upload", await value.read(), (value.content_type or "").lower()))
    finally:
        await form.close()
    return files


def parse_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"invalid JSON body ({exc})") from None


def decode_base64(text: Any) -> bytes:
    if not isinstance(text, str):
        raise ApiError(400, "image_base64 must be a string")
    if text.startswith("data:") and "," in text:  # a data URL
        text = text.split(",", 1)[1]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, "image_base64 is not valid base64") from None


def check_part_type(kind: str, name: str) -> None:
    if kind and not (kind.startswith("image/") or kind == "application/octet-stream"):
        raise ApiError(415, f"{name}: unsupported content type {kind!r}; send an image ({ACCEPTED_IMAGES})")


async def json_image(item: Any, svc: Service, name: str) -> tuple[str, bytes]:
    """(name, bytes) of a JSON image: ``{"image_base64": ...}`` or ``{"url": ...}``."""
    from imgclf.infer.predict import fetch_url

    if not isinstance(item, dict) or not ({"image_base64", "url"} & item.keys()):
        raise ApiError(400, 'expected a JSON object with "image_base64" or "url"')
    if "image_base64" in item:
        return str(item.get("name") or name), decode_base64(item["image_base64"])
    url = item["url"]
    if not svc.options.allow_urls:
        raise ApiError(403, "URL inputs are disabled on this server (start it with --allow-urls)")
    if not isinstance(url, str):
        raise ApiError(400, "url must be a string")
    try:
        return url, await run_in_threadpool(fetch_url, url, svc.options.max_upload_bytes, svc.options.url_timeout)
    except ImageError as exc:
        raise ApiError(422 if "too large" not in str(exc) else 413, str(exc)) from None


async def request_images(request: Request, svc: Service, many: bool) -> list[tuple[str, bytes] | ApiError]:
    """The images of a request (multipart files, JSON, or a raw image body); per-image errors stay in the list."""
    limit = svc.options.max_batch_files if many else 1
    kind = content_type(request)
    body = await read_body(request, svc.options.max_upload_bytes)
    if kind == "multipart/form-data":
        files = await parse_multipart(request, body, max_files=limit)
        out: list = []
        for name, data, part_type in files:
            try:
                check_part_type(part_type, name)
                out.append((name, data))
            except ApiError as exc:
                out.append(exc)
    elif kind == "application/json":
        payload = parse_json(body)
        items = payload.get("images") if many and isinstance(payload, dict) else [payload]
        if not isinstance(items, list):
            raise ApiError(400, 'expected {"images": [{"image_base64": ...} or {"url": ...}, ...]}')
        out = []
        for i, item in enumerate(items[: limit + 1]):
            try:
                out.append(await json_image(item, svc, f"<image {i}>"))
            except ApiError as exc:
                out.append(exc)
    elif kind.startswith("image/") or kind == "application/octet-stream":
        out = [("upload", body)]
    else:
        raise ApiError(415, f"unsupported content type {kind or '(none)'!r}; send multipart/form-data (field "
                            "'file'), application/json with image_base64 or url, or the image itself")
    if not out:
        raise ApiError(400, "no image in the request (multipart field 'file', or JSON image_base64 / url)")
    if len(out) > limit:
        raise ApiError(413, f"too many images in one request (limit {limit})")
    return out


async def predict_one(svc: Service, name: str, data: bytes, top_k: int) -> dict[str, Any]:
    """Check, decode and preprocess one image in a worker thread, then predict it through the micro-batcher."""
    if not data:
        raise ApiError(400, f"{name}: empty file")
    if image_kind(data) is None:
        raise ApiError(415, f"{name}: not a supported image (by its first bytes); accepted: {ACCEPTED_IMAGES}")
    try:
        if _pixels(data) <= INLINE_PIXELS:
            array = svc.predictor.preprocess(data, name)
        else:
            array = await run_in_threadpool(svc.predictor.preprocess, data, name)
    except ImageError as exc:
        raise ApiError(413 if "too large" in str(exc) else 422, str(exc)) from None
    probs = await svc.batcher.submit(array)
    return svc.predictor.result(name, probs, top_k)


def _pixels(data: bytes) -> float:
    """Width x height from the image header (no decoding), or infinity when the header is unreadable."""
    import io

    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.size[0] * img.size[1]
    except Exception:  # any Pillow failure: let the thread path produce the proper error
        return float("inf")


def authorize(request: Request, api_key: str | None) -> None:
    """Constant-time check of the X-API-Key header (or an Authorization bearer token)."""
    if api_key is None:
        return
    given = request.headers.get("x-api-key")
    if given is None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        given = token.strip() if scheme.lower() == "bearer" else None
    if not given or not hmac.compare_digest(given.encode(), api_key.encode()):
        raise ApiError(401, "missing or wrong API key (send it in the X-API-Key header)")


# app ---------------------------------------------------------------------------------------------------------------

class MetricsMiddleware:
    """Counts every HTTP request by endpoint, method and status, and observes its latency (pure ASGI)."""

    def __init__(self, app, metrics, paths: set[str]):
        self.app, self.metrics, self.paths = app, metrics, paths

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), 500

        async def send_status(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            path = scope.get("path", "")
            endpoint = path if path in self.paths else "other"
            self.metrics.observe_request(endpoint, scope.get("method", ""), status, time.perf_counter() - start)


_UPLOAD_DOC = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "properties": {
        "file": {"type": "string", "format": "binary", "description": "one image (batch: repeat 'files')"}}}},
    "application/json": {"schema": {"type": "object", "properties": {
        "image_base64": {"type": "string", "description": "the image file, base64"},
        "url": {"type": "string", "description": "an http(s) URL (only with --allow-urls)"},
        "images": {"type": "array", "description": "batch endpoint: a list of such objects",
                   "items": {"type": "object"}}}}},
    "image/*": {"schema": {"type": "string", "format": "binary"}}}}}


def create_app(source: str | Path, *, backend: str | None = None, tta: bool | None = None, threads: int | None = None,
               runs_dir: str | Path = "runs", **options: Any) -> FastAPI:
    """The FastAPI app serving ``source`` (run folder, model.pt, .onnx or TorchScript file).

    Args:
        backend: 'torch' or 'onnx' (default: what the file is).
        tta: mirror test-time augmentation (default: what the run was evaluated with).
        threads: intra-op CPU threads for the model.
        **options: any ``ServeOptions`` field (max_batch, max_wait_ms, max_upload_bytes, api_key, ...).

    Examples:
        >>> from fastapi.testclient import TestClient  # doctest: +SKIP
        >>> with TestClient(create_app("runs/c10")) as client:  # doctest: +SKIP
        ...     client.post("/v1/predict", files={"file": open("cat.jpg", "rb")}).json()["label"]
        'cat'
    """
    unknown_keys = set(options) - set(ServeOptions.__dataclass_fields__)
    if unknown_keys:
        raise ImgclfError(f"unknown server option(s): {', '.join(sorted(unknown_keys))}; accepted: "
                          f"{', '.join(ServeOptions.__dataclass_fields__)}")
    svc = Service(source, backend, tta, threads, runs_dir, ServeOptions(**options))

    @asynccontextmanager
    async def lifespan(_app):
        svc.batcher.start()
        yield
        await svc.batcher.close()  # uvicorn has finished in-flight requests by now

    import imgclf

    app = FastAPI(title="imgclf", version=imgclf.__version__, lifespan=lifespan,
                  description=f"Image classifier '{svc.model_name}': {', '.join(svc.predictor.classes[:20])}")
    app.state.service = svc
    _error_handlers(app)
    _routes(app, svc)
    app.add_middleware(MetricsMiddleware, metrics=svc.metrics, paths={r.path for r in app.routes})
    return app


def _error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_request, exc: ApiError):
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse({"error": exc.message}, status_code=exc.status, headers=headers)

    @app.exception_handler(HTTPException)
    async def http_error(_request, exc: HTTPException):
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "query")
        return JSONResponse({"error": f"invalid {where or 'request'}: {first.get('msg', 'validation error')}"},
                            status_code=422)

    @app.exception_handler(Exception)
    async def internal_error(_request, exc: Exception):
        log.exception("internal error", exc_info=exc)
        return JSONResponse({"error": "internal server error"}, status_code=500)


def _routes(app: FastAPI, svc: Service) -> None:
    top_k_query = Query(None, ge=1, le=1000, description="labels to return (default: the server's top_k)")

    @app.post("/v1/predict", summary="Predict one image", openapi_extra=_UPLOAD_DOC)
    async def predict(request: Request, top_k: int | None = top_k_query) -> JSONResponse:
        start = time.perf_counter()
        authorize(request, svc.options.api_key)
        item = (await request_images(request, svc, many=False))[0]
        if isinstance(item, ApiError):
            raise item
        result = await predict_one(svc, *item, top_k or svc.options.top_k)
        return JSONResponse({**result, "model": svc.model_name, "ms": round(1000 * (time.perf_counter() - start), 3)})

    @app.post("/v1/predict/batch", summary="Predict several images", openapi_extra=_UPLOAD_DOC)
    async def predict_batch(request: Request, top_k: int | None = top_k_query) -> JSONResponse:
        start = time.perf_counter()
        authorize(request, svc.options.api_key)
        items = await request_images(request, svc, many=True)
        results = await asyncio.gather(*[_one_or_error(svc, item, top_k or svc.options.top_k) for item in items])
        return JSONResponse({"results": results, "model": svc.model_name,
                             "ms": round(1000 * (time.perf_counter() - start), 3)})

    @app.get("/v1/model", summary="Classes, input contract, test metrics and limits")
    async def model_info(request: Request) -> dict[str, Any]:
        authorize(request, svc.options.api_key)
        return svc.describe()

    @app.get("/healthz", summary="Liveness and readiness")
    async def healthz():
        ok = svc.batcher.alive
        return JSONResponse({"status": "ok" if ok else "unhealthy", "model": svc.model_name,
                             "queue": svc.batcher.pending, "uptime_s": round(time.time() - svc.metrics.started, 1)},
                            status_code=200 if ok else 503)

    @app.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse)
    async def metrics():
        return PlainTextResponse(svc.metrics.render(svc.batcher.pending),
                                 media_type="text/plain; version=0.0.4; charset=utf-8")


async def _one_or_error(svc: Service, item: tuple[str, bytes] | ApiError, top_k: int) -> dict[str, Any]:
    if isinstance(item, ApiError):
        return {"input": None, "error": item.message, "status": item.status}
    try:
        return await predict_one(svc, *item, top_k)
    except ApiError as exc:
        return {"input": item[0], "error": exc.message, "status": exc.status}


# running ------------------------------------------------------------------------------------------------------------

def app_from_env() -> FastAPI:
    """App factory for uvicorn worker processes: ``create_app`` with the arguments in $IMGCLF_SERVE_CONFIG."""
    return create_app(**json.loads(os.environ[ENV_CONFIG]))


def serve(source: str | Path, host: str = "127.0.0.1", port: int = 8000, workers: int = 1, backend: str | None = None,
          tta: bool | None = None, threads: int | None = None, runs_dir: str | Path = "runs",
          log_level: str = "info", access_log: bool = True, graceful_timeout: float = 30.0,
          limit_concurrency: int | None = 1000, **options: Any) -> None:
    """Serve a model with uvicorn until interrupted; SIGINT/SIGTERM finish in-flight requests first.

    Args:
        workers: server processes, each with its own copy of the model and cores // workers threads.
        graceful_timeout: seconds to wait for in-flight requests on shutdown.
        limit_concurrency: connections + requests at once before answering 503.
        **options: ``ServeOptions`` fields.
    """
    import uvicorn

    workers = max(1, workers)
    threads = threads or max(1, (os.cpu_count() or 1) // workers)
    kwargs = {"host": host, "port": port, "log_level": log_level, "access_log": access_log,
              "timeout_graceful_shutdown": graceful_timeout, "limit_concurrency": limit_concurrency}
    if workers == 1:
        app = create_app(source, backend=backend, tta=tta, threads=threads, runs_dir=runs_dir, **options)
        uvicorn.run(app, **kwargs)
        return
    config = {"source": str(source), "backend": backend, "tta": tta, "threads": threads, "runs_dir": str(runs_dir),
              **options}
    create_app(**config)  # fail here, once, on a bad source or option rather than in every worker
    os.environ[ENV_CONFIG] = json.dumps(config)
    uvicorn.run("imgclf.infer.serve:app_from_env", factory=True, workers=workers, **kwargs)
