"""Self-contained HTML reports (figures embedded as base64 PNG) for ``data explore`` and ``data clean``.

A report is one file that opens anywhere, with no network and no side files. Figures come from
``imgclf.data.plots``; the numbers from ``imgclf.data.explore`` and ``imgclf.data.clean``.
"""

from __future__ import annotations

import base64
import html
import io
import math
import time
from pathlib import Path

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1100px;color:#222;
padding:0 1em}
h1{font-size:1.6em}h2{font-size:1.25em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.8em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}td,th{border:1px solid #ddd;padding:.25em .6em;
text-align:left}th{background:#f4f4f4}td.n{text-align:right;font-variant-numeric:tabular-nums}
img.fig{max-width:100%}img.thumb{height:72px;margin-right:4px;vertical-align:middle;border:1px solid #ccc}
.note{color:#666;font-size:.9em}
"""


def data_uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def figure(png: bytes, alt: str) -> str:
    return f'<img class="fig" alt="{html.escape(alt)}" src="{data_uri(png)}">'


def _cell(value) -> str:
    if isinstance(value, float):
        text = "inf" if math.isinf(value) else "" if math.isnan(value) else f"{value:.4g}"
        return f'<td class="n">{text}</td>'
    if isinstance(value, int):
        return f'<td class="n">{value:,}</td>'
    return f"<td>{value}</td>" if isinstance(value, _Raw) else f"<td>{html.escape(str(value or ''))}</td>"


class _Raw(str):
    """HTML that must not be escaped (thumbnails)."""


def table(rows: list[dict], columns: list[tuple[str, str]]) -> str:
    head = "".join(f"<th>{html.escape(title)}</th>" for _, title in columns)
    body = "".join("<tr>" + "".join(_cell(r.get(key)) for key, _ in columns) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def page(title: str, sections: list[tuple[str, str]]) -> str:
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>",
             f"<p class='note'>written by imgclf on {time.strftime('%Y-%m-%d %H:%M')}</p>"]
    parts += [f"<h2>{html.escape(heading)}</h2>{body}" for heading, body in sections]
    return "".join(parts) + "</body></html>"


def _write(path: str | Path, text: str) -> Path:
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# explore ---------------------------------------------------------------------------------------------------------

def _summary_rows(summary: dict) -> list[dict]:
    return [{"what": name, **summary[name]} for name in ("width", "height", "aspect") if name in summary]


def explore_sections(e) -> list[tuple[str, str]]:
    """The sections of the explore report for an ``Exploration``."""
    from imgclf.data import plots

    pools = list(e.counts)
    overview = table([{"k": "dataset", "v": e.dataset}, {"k": "classes", "v": len(e.classes)},
                      {"k": "array shape (C, H, W)", "v": " x ".join(map(str, e.image_shape))},
                      *({"k": f"images in {p}", "v": sum(e.counts[p])} for p in pools),
                      {"k": "imbalance (largest / smallest class)", "v": e.imbalance},
                      {"k": "unreadable files skipped", "v": len(e.skipped)}], [("k", ""), ("v", "")])
    count_rows = [{"class": c, **{p: e.counts[p][k] for p in pools}, "total": sum(e.counts[p][k] for p in pools)}
                  for k, c in enumerate(e.classes)]
    stat = ("mean", "std", "p5", "p50", "p95")
    bc_rows = [{"class": r["class"], "images": r["images"], **{f"b_{s}": r["brightness"][s] for s in stat},
                **{f"c_{s}": r["contrast"][s] for s in stat}} for r in e.per_class]
    sections = [
        ("Overview", overview),
        ("Class counts", figure(plots.class_counts_png(e.classes, e.counts), "class counts")
         + table(count_rows, [("class", "class"), *((p, p) for p in pools), ("total", "total")])),
        ("Samples", figure(plots.sample_grid_png(e.samples), "random images of each class")),
    ]
    if e.sizes:
        sections.append(("Image sizes (original files)", figure(plots.sizes_png(e.size_array), "image sizes")
                         + table(_summary_rows(e.sizes), [("what", ""), *((s, s) for s in stat)])
                         + f"<p class='note'>{e.sizes['distinct']} distinct sizes; most common: "
                         + html.escape(", ".join(f"{k} ({v})" for k, v in e.sizes["most_common"].items()))
                         + "</p>"))
    ch = e.channels
    sections += [
        ("Pixel intensities", figure(plots.channel_histograms_png(ch["names"], ch["hist"]), "channel histograms")
         + table([{"channel": n, "mean": m, "std": s} for n, m, s in zip(ch["names"], ch["mean"], ch["std"],
                                                                          strict=True)],
                 [("channel", "channel"), ("mean", "mean (0..1)"), ("std", "std (0..1)")])
         + "<p class='note'>computed on the arrays as loaded for training (folder images: resized and "
           "centre-cropped)</p>"),
        ("Brightness and contrast per class",
         figure(plots.brightness_contrast_png(e.brightness, e.contrast, e.labels, e.classes), "brightness")
         + table(bc_rows, [("class", "class"), ("images", "images"), ("b_mean", "brightness mean"),
                           ("b_p5", "p5"), ("b_p95", "p95"), ("c_mean", "contrast mean"), ("c_p5", "p5"),
                           ("c_p95", "p95")])),
    ]
    sections.append(("Data quality", _quality_html(e.quality)))
    return sections


def _quality_html(quality: dict | None) -> str:
    if not quality:
        return "<p class='note'>not checked (run without --no-quality; CSV datasets: run imgclf data clean)</p>"
    rows = [{"kind": k, "findings": v} for k, v in quality["counts"].items()]
    out = table(rows, [("kind", "kind"), ("findings", "findings")])
    out += f"<p class='note'>{quality['flagged']} images flagged; {html.escape(quality['note'])}</p>"
    if quality["examples"]:
        out += table(quality["examples"], [("file", "file"), ("kind", "kind"), ("detail", "detail"),
                                           ("duplicate_of", "duplicate of")])
    return out


def write_explore_report(e, path: str | Path) -> Path:
    """Write the explore report of an ``Exploration`` to ``path`` (one self-contained HTML file)."""
    return _write(path, page(f"Dataset report: {e.dataset}", explore_sections(e)))


# clean -----------------------------------------------------------------------------------------------------------

def _thumb(path: Path, side: int = 96) -> str:
    from imgclf.data.images import open_image, to_mode

    try:
        img = to_mode(open_image(path, draft_size=side), 3)
    except Exception:  # noqa: BLE001 - a broken file has no thumbnail
        return ""
    img.thumbnail((side * 2, side))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=80)
    return f'<img class="thumb" src="{data_uri(buf.getvalue(), "image/jpeg")}">'


def write_clean_report(result, path: str | Path, max_rows: int = 500, max_thumbs: int = 200) -> Path:
    """Write the clean report of a ``CleanResult``: totals, then each kind's findings (copies with thumbnails)."""
    summary = result.summary()
    head = table([{"k": k, "v": summary[k]} for k in ("root", "images", "flagged", "rejects", "seconds")],
                 [("k", ""), ("v", "")])
    counts = table([{"kind": k, "findings": v, "moved by --apply": "yes" if k in result.options.rejected_kinds()
                     else "no"} for k, v in result.counts().items()],
                   [("kind", "kind"), ("findings", "findings"), ("moved by --apply", "moved by --apply")])
    sections = [("Summary", head + counts)]
    thumbs = 0
    for kind, n in result.counts().items():
        if not n:
            continue
        rows = []
        for f in (f for f in result.findings if f.kind == kind):
            row = f.to_dict()
            if f.duplicate_of and thumbs < max_thumbs:
                row["view"] = _Raw(_thumb(result.root / f.file) + _thumb(result.root / f.duplicate_of))
                thumbs += 1
            rows.append(row)
            if len(rows) >= max_rows:
                break
        more = f"<p class='note'>first {max_rows} of {n}</p>" if n > max_rows else ""
        cols = [("file", "file"), ("detail", "detail"), ("duplicate_of", "duplicate of"), ("view", "")]
        sections.append((f"{kind} ({n})", table(rows, cols) + more))
    return _write(path, page(f"Clean report: {result.root}", sections))
