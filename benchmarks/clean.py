"""Benchmark ``imgclf data clean`` on a folder of ~500x375 JPEG photos built from the real scenes-mini photos.

    PYTHONPATH=src python benchmarks/clean.py --n 10000 --workers 2     # the target: <= 2 min, <= 2 GiB
    PYTHONPATH=src python benchmarks/clean.py --n 500                   # a quick check

1. Build N distinct photos in a temporary folder (two classes, like the source): each is a 2x2 mosaic of random
   source photos (each tile randomly flipped), randomly cropped, resized to about 500x375 (some portrait or
   3:2), saved as JPEG at quality 70-95. Mosaics of random tiles are all different pictures, but with the
   statistics and texture of real photos.
2. Plant known copies (``--dups``, a fraction of N): byte copies with an added comment segment (exact), PNG
   re-saves (exact), re-encodes at quality 50, half-size resizes and 2-4 % crops (near).
3. Run the scan in a fresh process (so its memory is its own) with ``--workers`` processes; print ONE JSON line:
   images, seconds, images/s, peak RSS of the main process and of the largest worker (MiB), findings by kind,
   planted copies found, clean images flagged, machine and versions. ``--repeat`` runs the scan several times
   and reports mean and std of the seconds.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import random
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "scenes-mini"
SIZES = ((500, 375),) * 6 + ((375, 500), (500, 333), (480, 360))  # mostly 4:3 landscape


def _mosaic(args: tuple[int, list[str], str]) -> tuple[str, bytes]:
    from PIL import Image

    seed, sources, name = args
    rng = random.Random(seed)
    w, h = rng.choice(SIZES)
    canvas = Image.new("RGB", (300, 300))
    for k in range(4):
        tile = Image.open(rng.choice(sources)).convert("RGB").resize((150, 150))
        if rng.random() < 0.5:
            tile = tile.transpose(Image.FLIP_LEFT_RIGHT)
        canvas.paste(tile, (150 * (k % 2), 150 * (k // 2)))
    cw, ch = rng.randint(200, 300), rng.randint(200, 300)
    x, y = rng.randint(0, 300 - cw), rng.randint(0, 300 - ch)
    img = canvas.crop((x, y, x + cw, y + ch)).resize((w, h), Image.BICUBIC)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=rng.randint(70, 95))
    return name, buf.getvalue()


def _copy(args: tuple[int, bytes, str]) -> tuple[str, bytes, str]:
    """A planted copy of JPEG bytes: (kind, bytes, extension)."""
    from PIL import Image

    seed, data, how = args
    rng = random.Random(seed)
    if how == "comment":
        text = b"re-saved by a photo manager"
        return "exact_duplicate", data[:2] + b"\xff\xfe" + struct.pack(">H", len(text) + 2) + text + data[2:], ".jpg"
    img = Image.open(io.BytesIO(data))
    buf = io.BytesIO()
    if how == "png":
        img.save(buf, "PNG", compress_level=1)
        return "exact_duplicate", buf.getvalue(), ".png"
    if how == "resize":
        img = img.resize((img.width // 2, img.height // 2), Image.LANCZOS)
    elif how == "crop":
        cut = [rng.uniform(0.02, 0.04) for _ in range(4)]
        img = img.crop((round(img.width * cut[0]), round(img.height * cut[1]), round(img.width * (1 - cut[2])),
                        round(img.height * (1 - cut[3]))))
    img.save(buf, "JPEG", quality=50 if how == "reencode" else 90)
    return "near_duplicate", buf.getvalue(), ".jpg"


def build(folder: Path, n: int, dups: float, seed: int, workers: int) -> dict[str, str]:
    """Write n images (planted copies included) under folder/CLASS/; returns {copy: original}."""
    classes = sorted(p for p in SOURCE.iterdir() if p.is_dir())
    sources = {c.name: sorted(str(f) for f in c.glob("*.jpg")) for c in classes}
    n_copies = int(n * dups)
    jobs = [(seed * 1_000_003 + i, sources[classes[i % len(classes)].name],
             f"{classes[i % len(classes)].name}/{i:06d}.jpg") for i in range(n - n_copies)]
    originals = {}
    with ProcessPoolExecutor(workers) as pool:
        for name, data in pool.map(_mosaic, jobs, chunksize=32):
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(data)
            originals[name] = data
        rng = random.Random(seed)
        picked = rng.sample(sorted(originals), n_copies)
        hows = ("comment", "png", "reencode", "resize", "crop")
        copy_jobs = [(seed + k, originals[o], hows[k % len(hows)]) for k, o in enumerate(picked)]
        planted = {}
        for (kind, data, ext), o in zip(pool.map(_copy, copy_jobs, chunksize=8), picked, strict=True):
            rel = f"{o[:-4]}_{kind.split('_')[0]}{len(planted)}{ext}"
            (folder / rel).write_bytes(data)
            planted[rel] = o
    return planted


def measure(folder: str, workers: int, repeat: int) -> dict:
    """Scan ``folder`` ``repeat`` times in this process; seconds, memory and findings (run in a fresh process)."""
    from imgclf.data.clean import CleanOptions, scan

    seconds, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = scan(folder, CleanOptions(workers=workers))
        seconds.append(time.perf_counter() - start)
    unit = 1 if sys.platform == "darwin" else 1024  # ru_maxrss is bytes on macOS, KiB on Linux

    def mib(who: int) -> float:
        return round(resource.getrusage(who).ru_maxrss * unit / 2**20, 1)

    return {"seconds": seconds, "images": len(result.files), "findings": result.counts(),
            "groups": result.groups, "flagged": result.flagged(),
            "peak_rss_main_mib": mib(resource.RUSAGE_SELF), "peak_rss_worker_mib": mib(resource.RUSAGE_CHILDREN)}


def _versions() -> dict:
    import numpy
    import PIL

    import imgclf

    return {"python": platform.python_version(), "numpy": numpy.__version__, "pillow": PIL.__version__,
            "imgclf": imgclf.__version__}


def _machine() -> dict:
    from _common import cpu_name

    cpu = cpu_name()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": cpu, "cpus_usable": usable, "os": platform.platform()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="images in the folder")
    parser.add_argument("--workers", type=int, default=2, help="processes for the scan (and the build)")
    parser.add_argument("--dups", type=float, default=0.02, help="fraction of planted copies")
    parser.add_argument("--repeat", type=int, default=1, help="scans to time")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, help="build the folder here and keep it")
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # internal: scan this folder and print JSON
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.workers, args.repeat)))
        return
    if not SOURCE.is_dir():
        sys.exit(f"source photos not found: {SOURCE} (see ../shared/data/README.md)")
    folder = args.keep or Path(tempfile.mkdtemp(prefix="imgclf-clean-bench-"))
    try:
        start = time.perf_counter()
        planted = build(folder, args.n, args.dups, args.seed, args.workers)
        build_s = time.perf_counter() - start
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1] / "src"),
                                                            os.environ.get("PYTHONPATH", "")])}
        out = subprocess.run([sys.executable, __file__, "--measure", str(folder), "--workers", str(args.workers),
                              "--repeat", str(args.repeat)], capture_output=True, text=True, env=env, check=True)
        m = json.loads(out.stdout)
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    group_of = {member: set(g) for g in m.pop("groups") for member in g}
    found = sum(orig in group_of.get(copy, ()) for copy, orig in planted.items())
    involved = set(planted) | set(planted.values())
    false_alarms = [f for f in m.pop("flagged") if f not in involved]
    import numpy as np

    secs = np.array(m.pop("seconds"))
    print(json.dumps({
        "benchmark": "clean", "images": m["images"], "workers": args.workers,
        "seconds": round(float(secs.mean()), 2), "seconds_std": round(float(secs.std()), 2), "repeats": len(secs),
        "images_per_s": round(m["images"] / float(secs.mean()), 1), "peak_rss_main_mib": m["peak_rss_main_mib"],
        "peak_rss_worker_mib": m["peak_rss_worker_mib"], "findings": {k: v for k, v in m["findings"].items() if v},
        "planted_copies": len(planted), "planted_found": found, "clean_flagged": len(false_alarms),
        "build_seconds": round(build_s, 1), "machine": _machine(), "versions": _versions()}))


if __name__ == "__main__":
    main()
