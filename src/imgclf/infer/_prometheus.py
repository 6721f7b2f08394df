"""Server metrics in the Prometheus text exposition format (version 0.0.4), without a client library.

Counters and histograms are updated on the event loop only, so they need no lock.
"""

from __future__ import annotations

import bisect
import time
from collections import defaultdict

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)  # s
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)  # images per forward pass


class Histogram:
    def __init__(self, buckets: tuple[float, ...]):
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)  # the last one is +Inf
        self.total = 0.0
        self.n = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value
        self.n += 1

    def lines(self, name: str, labels: str) -> list[str]:
        sep = "," if labels else ""
        out, running = [], 0
        for bound, count in zip((*self.buckets, "+Inf"), self.counts, strict=True):
            running += count
            out.append(f'{name}_bucket{{{labels}{sep}le="{bound}"}} {running}')
        braces = f"{{{labels}}}" if labels else ""
        return [*out, f"{name}_sum{braces} {self.total:.6f}", f"{name}_count{braces} {self.n}"]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Metrics:
    """Requests by endpoint and status code, errors, latency and micro-batch size histograms, images predicted."""

    def __init__(self):
        self.started = time.time()
        self.requests: dict[tuple[str, str, int], int] = defaultdict(int)
        self.latency: dict[str, Histogram] = {}
        self.batch_size = Histogram(BATCH_BUCKETS)
        self.forward_seconds = Histogram(LATENCY_BUCKETS)
        self.images = 0

    def observe_request(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        self.requests[(endpoint, method, status)] += 1
        self.latency.setdefault(endpoint, Histogram(LATENCY_BUCKETS)).observe(seconds)

    def observe_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.forward_seconds.observe(seconds)
        self.images += size

    def render(self, queue_depth: int = 0) -> str:
        lines = ["# HELP imgclf_requests_total HTTP requests by endpoint, method and status code.",
                 "# TYPE imgclf_requests_total counter"]
        errors: dict[str, int] = defaultdict(int)
        for (endpoint, method, status), n in sorted(self.requests.items()):
            lines.append(f'imgclf_requests_total{{endpoint="{_escape(endpoint)}",method="{method}",'
                         f'code="{status}"}} {n}')
            if status >= 400:
                errors[endpoint] += n
        lines += ["# HELP imgclf_request_errors_total HTTP requests answered with a 4xx or 5xx status.",
                  "# TYPE imgclf_request_errors_total counter"]
        lines += [f'imgclf_request_errors_total{{endpoint="{_escape(e)}"}} {n}' for e, n in sorted(errors.items())]
        lines += ["# HELP imgclf_request_duration_seconds Time from request start to response end.",
                  "# TYPE imgclf_request_duration_seconds histogram"]
        for endpoint, hist in sorted(self.latency.items()):
            lines += hist.lines("imgclf_request_duration_seconds", f'endpoint="{_escape(endpoint)}"')
        lines += ["# HELP imgclf_batch_size Images per forward pass (micro-batching).",
                  "# TYPE imgclf_batch_size histogram",
                  *self.batch_size.lines("imgclf_batch_size", ""),
                  "# HELP imgclf_forward_seconds Time of one batched forward pass.",
                  "# TYPE imgclf_forward_seconds histogram", *self.forward_seconds.lines("imgclf_forward_seconds", ""),
                  "# HELP imgclf_images_predicted_total Images that went through the model.",
                  "# TYPE imgclf_images_predicted_total counter", f"imgclf_images_predicted_total {self.images}",
                  "# HELP imgclf_queue_depth Images waiting for a forward pass.", "# TYPE imgclf_queue_depth gauge",
                  f"imgclf_queue_depth {queue_depth}",
                  "# HELP imgclf_uptime_seconds Seconds since the server started.",
                  "# TYPE imgclf_uptime_seconds gauge",
                  f"imgclf_uptime_seconds {time.time() - self.started:.3f}"]
        return "\n".join(lines) + "\n"
