"""Running one function over many files in worker processes, in order, with an optional progress bar."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any

SERIAL_BELOW = 64  # jobs; fewer run in this process (starting workers would cost more than they save)


def pmap(fn: Callable[[Any], Any], jobs: list, workers: int = 0, progress: bool = False, label: str = "working"
         ) -> Iterator[Any]:
    """``map(fn, jobs)`` in ``workers`` processes (0: one per CPU), results in order, streamed as they come."""
    workers = workers or os.cpu_count() or 1
    if workers <= 1 or len(jobs) < SERIAL_BELOW:
        results: Iterable = map(fn, jobs)
        yield from track(results, len(jobs), label, progress)
        return
    chunk = max(1, min(64, len(jobs) // (workers * 8)))
    with ProcessPoolExecutor(workers) as pool:
        yield from track(pool.map(fn, jobs, chunksize=chunk), len(jobs), label, progress)


def track(items: Iterable, total: int, label: str, enabled: bool = True, unit: str = "images") -> Iterator:
    """Yield ``items`` while a transient progress bar (on stderr) shows how many of ``total`` are done."""
    if not enabled or total < 2:
        yield from items
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    start = time.perf_counter()
    columns = (TextColumn(label), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
               TimeRemainingColumn())
    with Progress(*columns, transient=True, console=Console(stderr=True)) as bar:
        task = bar.add_task(label, total=total, rate="")
        for i, item in enumerate(items, 1):
            yield item
            if i % 20 == 0 or i == total:
                bar.update(task, completed=i, rate=f"{i / max(time.perf_counter() - start, 1e-9):.0f} {unit}/s")
