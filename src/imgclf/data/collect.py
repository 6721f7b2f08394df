"""Download images from a URL list, a CSV of url,label, or a public JSON listing: politely, safely, resumably.

    imgclf data collect urls.txt --out photos/                          # one URL per line ("URL LABEL" too)
    imgclf data collect urls.csv --out photos/ --label-from column      # CSV url,label: photos/LABEL/...
    imgclf data collect lists/ --out photos/                            # lists/tanks.txt, lists/cars.txt
    imgclf data collect listing:https://www.reddit.com/r/TankPorn/top.json?t=all --out photos/tanks --limit 500

1. Targets: (url, label) pairs; a label becomes a sub-folder of ``--out``.
2. Downloads run in a bounded thread pool; each host gets at most ``per_host_rate`` requests per second, so many
   workers never hammer one server. Requests carry ``User-Agent: imgclf/VERSION`` and have connect and read
   timeouts (plus an overall limit per file, against servers that drip bytes).
3. Connection errors, timeouts, 429 and 5xx are retried with exponential backoff (``Retry-After`` respected);
   404 and other 4xx are not.
4. A body is accepted when its Content-Type is an image type (or generic binary), its size stays under
   ``max_bytes`` while streaming, and its first bytes are those of an image format; the extension comes from those
   bytes, the file name from its SHA-256, so the same picture at two URLs is stored once.
5. ``OUT/manifest.jsonl`` gets one line per attempt (url, label, file, sha256, bytes, status, error). A rerun skips
   every URL already downloaded or failed for good (404, not an image, too large); ``retry_failed`` retries those.
"""

from __future__ import annotations

import csv
import hashlib
import html
import http.client
import json
import os
import random
import re
import ssl
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from imgclf.data._formats import SNIFF_BYTES, sniff
from imgclf.data._parallel import track
from imgclf.data.images import IMAGE_EXTENSIONS
from imgclf.errors import ImgclfError

MANIFEST = "manifest.jsonl"
FINAL = {"ok", "duplicate", "http_error", "not_image", "too_large", "bad_url"}  # statuses a rerun does not retry
LABEL_FROM = ("column", "folder", "list")
_GENERIC_TYPES = {"application/octet-stream", "binary/octet-stream", "application/binary"}


def user_agent() -> str:
    from imgclf import __version__

    return f"imgclf/{__version__}"


@dataclass(frozen=True)
class CollectOptions:
    """How downloads behave; the defaults are polite to public servers."""

    workers: int = 8  # concurrent downloads
    per_host_rate: float = 2.0  # requests per second to any one host (0: no limit)
    retries: int = 3  # extra attempts after a connection error, timeout, 429 or 5xx
    backoff: float = 1.0  # s, wait before the first retry; doubles on each further retry (+ up to 10 % jitter)
    connect_timeout: float = 10.0  # s, to open a connection
    read_timeout: float = 30.0  # s, longest wait for the next bytes
    total_timeout: float = 120.0  # s, longest time for one file, redirects included
    max_bytes: int = 20 * 2**20  # bytes; larger bodies are refused while streaming
    max_redirects: int = 5
    retry_failed: bool = False  # retry URLs that failed for good (404, not an image) in an earlier run
    user_agent: str = field(default_factory=user_agent)


@dataclass(frozen=True)
class Target:
    url: str
    label: str = ""  # sub-folder of the output folder, "" for the folder itself


@dataclass
class CollectResult:
    out: Path
    records: list[dict]  # this run's attempts, one per URL
    skipped: int = 0  # URLs done in an earlier run
    seconds: float = 0.0

    def counts(self) -> dict[str, int]:
        return dict(Counter(r["status"] for r in self.records))


class FetchError(Exception):
    def __init__(self, status: str, message: str, retryable: bool = False, retry_after: float | None = None):
        super().__init__(message)
        self.status, self.retryable, self.retry_after = status, retryable, retry_after


# politeness --------------------------------------------------------------------------------------------------------

class HostRateLimiter:
    """At most ``rate`` requests per second to each host, shared by all threads (slots are reserved in order)."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self._next: dict[str, float] = {}
        self._lock = threading.Lock()
        self._clock, self._sleep = clock, sleep

    def wait(self, host: str) -> None:
        if not self.interval:
            return
        with self._lock:
            now = self._clock()
            slot = max(now, self._next.get(host, now))
            self._next[host] = slot + self.interval
        if slot > now:
            self._sleep(slot - now)


# HTTP --------------------------------------------------------------------------------------------------------------

def _connection(parts: urllib.parse.SplitResult, options: CollectOptions) -> tuple[http.client.HTTPConnection, str]:
    """A connection for the URL (through the environment's proxy, if any) and the request target to send."""
    host, port = parts.hostname or "", parts.port
    path = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(host):
        p = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        conn = http.client.HTTPConnection(p.hostname, p.port or 80, timeout=options.connect_timeout)
        if parts.scheme == "https":
            conn = http.client.HTTPSConnection(p.hostname, p.port or 80, timeout=options.connect_timeout,
                                               context=ssl.create_default_context())
            conn.set_tunnel(host, port or 443)
            return conn, path
        return conn, urllib.parse.urlunsplit(parts._replace(fragment=""))
    if parts.scheme == "https":
        return http.client.HTTPSConnection(host, port, timeout=options.connect_timeout,
                                           context=ssl.create_default_context()), path
    return http.client.HTTPConnection(host, port, timeout=options.connect_timeout), path


def _request(url: str, options: CollectOptions, limiter: HostRateLimiter, accept: str
             ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse, str]:
    """GET ``url`` following redirects; returns (connection, response with status 2xx, final url)."""
    for _ in range(options.max_redirects + 1):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise FetchError("bad_url", f"not an http(s) URL: {url}")
        limiter.wait(parts.hostname)
        conn, target = _connection(parts, options)
        try:
            conn.connect()
            conn.sock.settimeout(options.read_timeout)  # connect used connect_timeout; reads get their own
            conn.request("GET", target, headers={"User-Agent": options.user_agent, "Accept": accept,
                                                 "Accept-Encoding": "identity"})
            resp = conn.getresponse()
        except TimeoutError as exc:
            conn.close()
            raise FetchError("timeout", f"timed out ({exc or 'no answer'})", retryable=True) from None
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise FetchError("error", f"{type(exc).__name__}: {exc}", retryable=True) from None
        if resp.status in (301, 302, 303, 307, 308) and resp.getheader("Location"):
            url = urllib.parse.urljoin(url, resp.getheader("Location"))
            conn.close()
            continue
        if resp.status >= 400:
            conn.close()
            raise _http_error(resp)
        return conn, resp, url
    raise FetchError("http_error", f"more than {options.max_redirects} redirects")


def _http_error(resp: http.client.HTTPResponse) -> FetchError:
    retryable = resp.status in (408, 425, 429) or resp.status >= 500
    after = resp.getheader("Retry-After")
    wait = float(after) if after and after.strip().isdigit() else None
    return FetchError("http_error", f"HTTP {resp.status} {resp.reason}", retryable, wait)


def _read_body(resp: http.client.HTTPResponse, options: CollectOptions, max_bytes: int, deadline: float) -> bytes:
    length = resp.getheader("Content-Length")
    if length and length.isdigit() and int(length) > max_bytes:
        raise FetchError("too_large", f"{int(length):,} bytes > limit {max_bytes:,}")
    chunks, total = [], 0
    try:
        while chunk := resp.read(1 << 16):
            total += len(chunk)
            if total > max_bytes:
                raise FetchError("too_large", f"more than {max_bytes:,} bytes")
            if time.monotonic() > deadline:
                raise FetchError("timeout", f"took more than {options.total_timeout:g} s", retryable=True)
            chunks.append(chunk)
    except TimeoutError:
        raise FetchError("timeout", f"no data for {options.read_timeout:g} s", retryable=True) from None
    except (OSError, http.client.HTTPException) as exc:
        raise FetchError("error", f"{type(exc).__name__}: {exc}", retryable=True) from None
    return b"".join(chunks)


def fetch_image(url: str, options: CollectOptions, limiter: HostRateLimiter) -> tuple[bytes, str]:
    """(body, extension) of an image URL, checked by Content-Type, size and magic bytes; raises FetchError."""
    deadline = time.monotonic() + options.total_timeout
    conn, resp, _ = _request(url, options, limiter, "image/*,*/*;q=0.5")
    try:
        ctype = (resp.getheader("Content-Type") or "").split(";")[0].strip().lower()
        if ctype and not ctype.startswith("image/") and ctype not in _GENERIC_TYPES:
            raise FetchError("not_image", f"Content-Type {ctype}")
        body = _read_body(resp, options, options.max_bytes, deadline)
    finally:
        conn.close()
    ext = sniff(body[:SNIFF_BYTES])
    if not ext:
        raise FetchError("not_image", f"content is not an image ({ctype or 'no Content-Type'}, "
                         f"starts with {body[:12]!r})")
    return body, ext


def with_retries(fn: Callable[[], object], options: CollectOptions, sleep: Callable[[float], None] = time.sleep):
    """Call ``fn``; retry retryable FetchErrors with exponential backoff; the last error propagates."""
    for attempt in range(options.retries + 1):
        try:
            return fn()
        except FetchError as exc:
            if not exc.retryable or attempt == options.retries:
                raise
            wait = exc.retry_after if exc.retry_after is not None else options.backoff * 2 ** attempt
            sleep(min(wait, 60.0) * (1 + 0.1 * random.random()))
    raise AssertionError("unreachable")


# targets -----------------------------------------------------------------------------------------------------------

def safe_label(label: str) -> str:
    """A label usable as one folder name: path separators and odd characters become '_'.

    Examples:
        >>> safe_label(" Tiger / Tank ")
        'Tiger _ Tank'
    """
    cleaned = re.sub(r"[\x00-\x1f/\\:*?\"<>|]", "_", label).strip().strip(".")
    return cleaned[:100]


def _url_folder(url: str) -> str:
    parts = [p for p in urllib.parse.urlsplit(url).path.split("/") if p]
    return urllib.parse.unquote(parts[-2]) if len(parts) >= 2 else ""


def _read_list(path: Path, label_from: str | None, label_column: str) -> list[Target]:
    if path.suffix.lower() == ".csv":
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            fields = reader.fieldnames or []
            url_key = "url" if "url" in fields else (fields[0] if fields else "url")
            if label_from == "column" and label_column not in fields:
                raise ImgclfError(f"{path}: no column {label_column!r} for the labels; columns: {', '.join(fields)}")
            rows = [(r.get(url_key) or "", r.get(label_column) or "") for r in reader]
    else:  # one URL per line, optionally followed by a label: "https://... tanks"
        lines = [ln.split(maxsplit=1) for ln in path.read_text().splitlines() if ln.strip()]
        rows = [(parts[0], parts[1].strip() if len(parts) > 1 else "") for parts in lines
                if not parts[0].startswith("#")]
        if label_from == "column" and not any(label for _, label in rows):
            raise ImgclfError(f"{path}: --label-from column needs labels: a CSV with a {label_column!r} column, "
                              "or 'URL LABEL' lines")
    out = []
    for url, column_label in rows:
        url = url.strip()
        if not url:
            continue
        label = {"column": column_label, "folder": _url_folder(url), "list": path.stem}.get(label_from or "", "")
        out.append(Target(url, safe_label(label)))
    return out


def read_targets(source: str, label_from: str | None = None, label_column: str = "label",
                 limit: int | None = None, options: CollectOptions | None = None, progress: bool = False
                 ) -> list[Target]:
    """The (url, label) pairs of a source: ``listing:URL``, a .txt/.csv file, or a folder of such lists.

    ``label_from``: ``column`` (a CSV column, default ``label``, or the word after the URL on a line of a .txt
    list), ``folder`` (the URL's parent folder, e.g.
    .../tanks/001.jpg -> tanks), ``list`` (the list file's name; the default for a folder of lists), or None.
    """
    if label_from is not None and label_from not in LABEL_FROM:
        raise ImgclfError(f"--label-from {label_from!r}: accepted: {', '.join(LABEL_FROM)}")
    if source.startswith("listing:"):
        urls = listing_urls(source[len("listing:"):], options or CollectOptions(), limit, progress)
        targets = [Target(u, _url_folder(u) if label_from == "folder" else "") for u in urls]
    else:
        path = Path(source).expanduser()
        if path.is_dir():
            lists = sorted(p for p in path.iterdir() if p.suffix.lower() in (".txt", ".csv"))
            if not lists:
                raise ImgclfError(f"{path}: no URL lists (*.txt or *.csv) in this folder")
            targets = [t for p in lists for t in _read_list(p, label_from or "list", label_column)]
        elif path.is_file():
            targets = _read_list(path, label_from, label_column)
        else:
            raise ImgclfError(f"URL list not found: {source} (give a .txt/.csv file, a folder of them, "
                              "or listing:URL)")
    seen, unique = set(), []
    for t in targets:
        if t.url not in seen:
            seen.add(t.url)
            unique.append(t)
    return unique[:limit] if limit else unique


# JSON listings -----------------------------------------------------------------------------------------------------

_IMAGE_PATH = re.compile(r"\.(" + "|".join(e[1:] for e in IMAGE_EXTENSIONS) + r")$", re.IGNORECASE)
_PREFERRED_KEYS = ("url_overridden_by_dest", "url", "image_url", "image", "src", "full", "original", "link", "href")
# keys whose contents are smaller renditions of an image already linked nearby (Reddit's names, and common ones)
_SKIPPED_KEYS = {"thumbnail", "thumbnails", "resolutions", "variants", "icon_img", "community_icon", "header_img",
                 "banner_img", "banner_background_image", "mobile_banner_image", "icon", "avatar", "p", "gif", "mp4"}


def is_image_url(value: object) -> bool:
    """True for an http(s) URL whose path ends in an image extension (query strings allowed).

    Examples:
        >>> is_image_url("https://i.example.com/a/b.JPG?width=640"), is_image_url("https://example.com/post/1")
        (True, False)
    """
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        return False
    return bool(_IMAGE_PATH.search(urllib.parse.urlsplit(html.unescape(value)).path))


def image_urls(doc: object) -> Iterator[str]:
    """Image URLs in a JSON document, one per record: a dict whose preferred key (``url``,
    ``url_overridden_by_dest``, ``src``...) links an image gives that image and nothing below it; otherwise the
    walk goes on into its values (e.g. Reddit's ``preview.images[].source.url``), skipping thumbnails and smaller
    renditions. HTML entities (``&amp;``) are decoded.

    Examples:
        >>> post = {"url": "https://example.com/post", "preview": {"images": [{"source": {"url":
        ...         "https://i.example.com/x.jpg?s=1&amp;w=2"}, "resolutions": [{"url": "https://i.example.com/x_s.jpg"}]}]}}
        >>> list(image_urls({"children": [{"data": post}, {"data": {"url": "https://i.example.com/y.png"}}]}))
        ['https://i.example.com/x.jpg?s=1&w=2', 'https://i.example.com/y.png']
    """
    if isinstance(doc, dict):
        for key in _PREFERRED_KEYS:
            if is_image_url(doc.get(key)):
                yield html.unescape(doc[key])
                return
        for key, value in doc.items():
            if key not in _SKIPPED_KEYS:
                yield from image_urls(value)
    elif isinstance(doc, list):
        for value in doc:
            yield from image_urls(value)
    elif is_image_url(doc):
        yield html.unescape(doc)


def _next_page(doc: object, url: str) -> str | None:
    """The next page of a listing: a ``next`` URL, or a Reddit-style ``after`` cursor (at the top or in ``data``)."""
    if not isinstance(doc, dict):
        return None
    if isinstance(doc.get("next"), str) and doc["next"].startswith(("http://", "https://")):
        return doc["next"]
    data = doc["data"] if isinstance(doc.get("data"), dict) else {}
    after = doc.get("after") or data.get("after")
    if not isinstance(after, str) or not after:
        return None
    parts = urllib.parse.urlsplit(url)
    query = [(k, v) for k, v in urllib.parse.parse_qsl(parts.query) if k != "after"] + [("after", after)]
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def listing_urls(url: str, options: CollectOptions, limit: int | None = None, progress: bool = False,
                 max_pages: int = 40) -> list[str]:
    """Image URLs of a public JSON listing, following its pages until ``limit`` URLs or the last page."""
    limiter = HostRateLimiter(options.per_host_rate)
    urls: list[str] = []
    seen_pages = set()
    page: str | None = url
    while page and page not in seen_pages and len(seen_pages) < max_pages and not (limit and len(urls) >= limit):
        seen_pages.add(page)
        try:
            body = with_retries(lambda p=page: _fetch_json(p, options, limiter), options)
        except FetchError as exc:
            raise ImgclfError(f"listing {page}: {exc}") from None
        try:
            doc = json.loads(body)
        except ValueError as exc:
            raise ImgclfError(f"listing {page}: not JSON ({exc})") from None
        urls += [u for u in image_urls(doc) if u not in urls]
        page = _next_page(doc, page)
    return urls[:limit] if limit else urls


def _fetch_json(url: str, options: CollectOptions, limiter: HostRateLimiter) -> bytes:
    conn, resp, _ = _request(url, options, limiter, "application/json")
    try:
        return _read_body(resp, options, 16 * 2**20, time.monotonic() + options.total_timeout)
    finally:
        conn.close()


# the download loop -------------------------------------------------------------------------------------------------

def read_manifest(out: Path) -> dict[str, dict]:
    """The last record of every URL in ``out/manifest.jsonl`` (empty when there is none)."""
    path = out / MANIFEST
    records: dict[str, dict] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue  # a line cut by a crash
            records[rec.get("url", "")] = rec
    return records


def _is_done(rec: dict | None, out: Path, options: CollectOptions) -> bool:
    if rec is None:
        return False
    if rec["status"] in ("ok", "duplicate"):
        return bool(rec.get("file")) and (out / rec["file"]).is_file()
    return rec["status"] in FINAL and not options.retry_failed and not rec.get("retryable", False)


class _Store:
    """Writes downloaded bodies under content-hash names; the same content is stored once per folder."""

    def __init__(self, out: Path):
        self.out = out
        self._lock = threading.Lock()

    def save(self, body: bytes, ext: str, label: str) -> tuple[str, str, str]:
        """(status "ok" or "duplicate", file relative to out, sha256)."""
        sha = hashlib.sha256(body).hexdigest()
        rel = f"{label}/{sha}{ext}" if label else f"{sha}{ext}"
        with self._lock:
            if (self.out / rel).is_file():
                return "duplicate", rel, sha
            path = self.out / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{sha}.part")
            tmp.write_bytes(body)
            os.replace(tmp, path)  # a crash never leaves a half-written image under a final name
        return "ok", rel, sha


def _download(target: Target, store: _Store, options: CollectOptions, limiter: HostRateLimiter) -> dict:
    rec = {"url": target.url, "label": target.label, "file": None, "sha256": None, "bytes": 0}
    start = time.monotonic()
    try:
        body, ext = with_retries(lambda: fetch_image(target.url, options, limiter), options)
        status, rel, sha = store.save(body, ext, target.label)
        rec.update(status=status, file=rel, sha256=sha, bytes=len(body))
    except FetchError as exc:
        rec.update(status=exc.status, error=str(exc), retryable=exc.retryable)
    rec["seconds"] = round(time.monotonic() - start, 3)
    rec["time"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    return rec


def collect(source: str, out: str | Path, label_from: str | None = None, label_column: str = "label",
            limit: int | None = None, options: CollectOptions | None = None, progress: bool = False
            ) -> CollectResult:
    """Download the images of ``source`` into ``out`` (see the module docstring); rerunning resumes.

    Examples:
        >>> result = collect("urls.csv", "photos/", label_from="column")  # doctest: +SKIP
        >>> result.counts()  # doctest: +SKIP
        {'ok': 480, 'http_error': 12, 'not_image': 3, 'duplicate': 5}
    """
    start = time.perf_counter()
    options = options or CollectOptions()
    out = Path(out).expanduser()
    targets = read_targets(source, label_from, label_column, limit, options, progress)
    out.mkdir(parents=True, exist_ok=True)
    previous = read_manifest(out)
    todo = [t for t in targets if not _is_done(previous.get(t.url), out, options)]
    store, limiter = _Store(out), HostRateLimiter(options.per_host_rate)
    records = []
    with ThreadPoolExecutor(max(1, options.workers)) as pool, open(out / MANIFEST, "a") as manifest:
        futures = [pool.submit(_download, t, store, options, limiter) for t in todo]
        for fut in track(as_completed(futures), len(futures), "downloading", progress, unit="files"):
            rec = fut.result()
            manifest.write(json.dumps(rec) + "\n")
            manifest.flush()
            records.append(rec)
    return CollectResult(out, records, len(targets) - len(todo), time.perf_counter() - start)
