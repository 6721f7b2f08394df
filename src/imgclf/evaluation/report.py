"""The evaluation report: one self-contained HTML file (figures embedded as base64 PNG, no external resources).

    imgclf report runs/c10 --out report.html

``collect`` gathers and computes everything (plain data, reusable by the dashboard); ``render_html`` draws the
figures (``report_plots``) and writes the page. For a multi-seed run the summary shows mean ± std over seeds and
the details are those of the best seed by validation accuracy (the one ``predict`` deploys).

Examples:
    >>> from imgclf.evaluation.report import write_report
    >>> write_report("runs/c10", "report.html")  # doctest: +SKIP
    PosixPath('report.html')
"""

from __future__ import annotations

import base64
import contextlib
import csv
import html
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from imgclf.errors import ImgclfError
from imgclf.evaluation import analysis

EPOCH_COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "train_seconds")


# reading a run ------------------------------------------------------------------------------------------------------

def read_epochs(path: Path) -> dict[str, np.ndarray]:
    """The per-epoch columns of metrics.csv as float arrays (NaN where a value is missing); {} without the file."""
    if not Path(path).is_file():
        return {}
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return {col: np.array([_float(r.get(col)) for r in rows]) for col in EPOCH_COLUMNS if rows and col in rows[0]}


def _float(text: str | None) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return float("nan")


def read_predictions(run_dir: Path) -> dict[str, np.ndarray]:
    """probs, labels, ids and orig_labels written by ``imgclf evaluate`` (empty arrays where not recorded)."""
    path = Path(run_dir) / "test_predictions.npz"
    if not path.is_file():
        raise ImgclfError(f"{run_dir} has no test_predictions.npz; run: imgclf evaluate {run_dir}")
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in ("probs", "labels", "ids", "orig_labels")}


def load_split_images(run_dir: Path, cfg: dict, meta: dict, data_dir: str | None, progress: bool = False):
    """The run's (test, val) pools rebuilt from its recorded split, as ``evaluate_run`` does."""
    from imgclf.data import load_dataset, splits_from_ids
    from imgclf.runs import read_json

    ds = load_dataset(cfg["dataset"], data_dir=data_dir or cfg.get("data_dir"), image_size=cfg["image_size"],
                      classes=cfg.get("classes"), max_pixels=cfg["max_pixels"], workers=cfg["workers"],
                      progress=progress, crop_fraction=meta["preprocess"].get("crop_fraction", 1.0))
    splits = splits_from_ids(ds, read_json(Path(run_dir) / "split.json"))
    return splits.test, splits.val


def align_images(pool, ids: np.ndarray) -> np.ndarray:
    """The pool's images in the order of the recorded prediction ``ids`` (pool order if ids were not recorded)."""
    if len(ids) == 0:
        return pool.images
    where = {key: i for i, key in enumerate(pool.ids.tolist())}
    missing = [k for k in ids.tolist() if k not in where]
    if missing:
        raise ImgclfError(f"test image {missing[0]!r} of the recorded predictions is not in the dataset any more")
    return pool.images[np.array([where[k] for k in ids.tolist()])]


# computing ----------------------------------------------------------------------------------------------------------

def _model_summary(model, meta: dict) -> dict:
    from imgclf.models.summary import count_flops, count_params

    spec = meta["preprocess"]
    return {"params": count_params(model), "flops": count_flops(model, (spec["channels"], spec["size"], spec["size"])),
            "input_size": meta["arch"]["input_size"], "array_size": spec["size"], "channels": spec["channels"]}


def validation_probs(run_dir: Path, model, val, cfg: dict, max_val: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """Predictions on a fixed random subset of at most ``max_val`` validation images, with the test-time TTA
    (so the temperature fits the probabilities it is applied to); cached in RUN/val_predictions.npz."""
    from imgclf.evaluation.evaluate import predict_probs, tta_level

    idx = np.arange(len(val))
    if len(idx) > max_val:
        idx = np.sort(np.random.default_rng(0).permutation(len(val))[:max_val])
    ids, tta = val.ids[idx], tta_level(cfg)
    cache = Path(run_dir) / "val_predictions.npz"
    if cache.is_file():
        with np.load(cache, allow_pickle=False) as z:
            if int(z["tta"]) == tta and np.array_equal(z["ids"], ids):
                return z["probs"], z["labels"]
    probs = predict_probs(model, val.images[idx], tta=tta)
    with contextlib.suppress(OSError):  # a read-only run folder: no cache, same result
        np.savez_compressed(cache, probs=probs.astype(np.float32), labels=val.labels[idx], ids=ids, tta=tta)
    return probs, val.labels[idx]


def collect(run: str | Path, data_dir: str | None = None, runs_dir: str | Path = "runs", examples: int = 40,
            calibrate: bool = True, max_val: int = 1000, progress: bool = False) -> dict[str, Any]:
    """Everything the report shows, as plain data (arrays, dicts), computed from a run folder.

    Args:
        run: run folder or name; for a group, the best seed by validation accuracy is analysed.
        data_dir: where the dataset files are (default: the run's own ``data_dir``), for the image galleries
            and the validation predictions that temperature scaling is fitted on.
        examples: thumbnails per gallery.
        calibrate: fit a temperature on the validation split (one pass over at most ``max_val`` validation
            images, with the run's TTA; cached in the run folder as val_predictions.npz).
    """
    from imgclf.config import read_yaml
    from imgclf.models.io import load_model
    from imgclf.runs import best_member, find_run, is_group, read_json

    path = find_run(run, runs_dir)
    member = best_member(path) if is_group(path) else path
    model, meta = load_model(member / "model.pt")
    cfg = read_yaml(member / "config.yaml")
    pred = read_predictions(member)
    data: dict[str, Any] = {
        "run": str(path), "member": str(member), "info": read_json(member / "run.json"), "config": cfg,
        "metrics": read_json(member / "metrics.json"), "epochs": read_epochs(member / "metrics.csv"),
        "group": read_json(path / "metrics.json") if is_group(path) and (path / "metrics.json").is_file() else None,
        "classes": list(meta["classes"]), "orig_classes": meta.get("orig_classes"),
        "model": _model_summary(model, meta), "notes": [], **pred}
    val = None
    try:
        test, val = load_split_images(member, cfg, meta, data_dir, progress)
        data["images"] = align_images(test, pred["ids"])
    except ImgclfError as exc:
        data["images"] = None
        data["notes"].append(f"test images unavailable, galleries show no pictures: {exc}")
    val_probs = val_labels = None
    if calibrate and val is not None and len(val):
        val_probs, val_labels = validation_probs(member, model, val, cfg, max_val)
    elif calibrate:
        data["notes"].append("no validation split available: temperature scaling skipped")
    data.update(analyse(pred["probs"], pred["labels"], data["classes"], pred["orig_labels"], data["orig_classes"],
                        val_probs, val_labels, examples))
    return data


def analyse(probs: np.ndarray, labels: np.ndarray, classes: list[str], orig_labels: np.ndarray | None = None,
            orig_classes: list[str] | None = None, val_probs: np.ndarray | None = None,
            val_labels: np.ndarray | None = None, examples: int = 40) -> dict[str, Any]:
    """The error analysis of a test set (see ``analysis``): pairs with example indices, galleries, ROC, calibration."""
    from imgclf.evaluation.metrics import confusion_matrix

    pairs = analysis.most_confused(labels, probs, classes, top=10)
    for p in pairs:
        p["examples"] = analysis.pair_examples(labels, probs, p["true_index"], p["pred_index"], n=8)
    grouped = orig_labels is not None and len(orig_labels) == len(labels) and bool(orig_classes)
    return {"confusion": confusion_matrix(labels, probs.argmax(axis=1), len(classes)),
            "roc": analysis.roc_curves(labels, probs, classes) if len(classes) > 1 else [],
            "calibration": analysis.calibration(probs, labels, val_probs, val_labels),
            "confused_pairs": pairs,
            "confident_wrong": analysis.confidently_wrong(labels, probs, n=examples),
            "least_sure": analysis.least_sure(probs, n=examples),
            "by_original": analysis.mistakes_by_original(labels, probs, orig_labels, classes, orig_classes)
            if grouped else None}


# rendering ----------------------------------------------------------------------------------------------------------

def write_report(run: str | Path, out: str | Path = "report.html", data_dir: str | None = None,
                 runs_dir: str | Path = "runs", examples: int = 40, calibrate: bool = True,
                 progress: bool = False) -> Path:
    """Write the self-contained HTML report of a run and return its path.

    Examples:
        >>> write_report("runs/c10", "c10.html", examples=24)  # doctest: +SKIP
    """
    start = time.perf_counter()
    data = collect(run, data_dir, runs_dir, examples, calibrate, progress=progress)
    out = Path(out)
    if out.parent and not out.parent.exists():
        out.parent.mkdir(parents=True)
    page = render_html(data, seconds=time.perf_counter() - start)
    out.write_text(page, encoding="utf-8")
    return out


def _img(png: bytes, alt: str, cls: str = "fig") -> str:
    return f'<img class="{cls}" alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _table(rows: list[list[Any]], header: list[str] | None = None, cls: str = "") -> str:
    head = "<tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in header) + "</tr>" if header else ""
    body = "".join("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f'<table class="{cls}">{head}{body}</table>'


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "–" if value != value else f"{value:.4f}"
    return html.escape("" if value is None else str(value))


def _g(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{anchor}"><h2>{html.escape(title)}</h2>{body}</section>'


def render_html(data: dict[str, Any], seconds: float | None = None) -> str:
    """The report page for data from ``collect``: sections in reading order, figures embedded."""
    sections = [("summary", "Run summary", summary_html(data)),
                ("curves", "Training curves", curves_html(data)),
                ("metrics", "Test metrics", metrics_html(data)),
                ("confusion", "Confusion matrix", confusion_html(data)),
                ("roc", "ROC curves (one vs rest)", roc_html(data)),
                ("calibration", "Calibration", calibration_html(data)),
                ("confused", "Most-confused class pairs", confused_html(data)),
                ("wrong", "Most confidently wrong", gallery_html(data, data["confident_wrong"], "wrong")),
                ("unsure", "Least sure (smallest top-1 / top-2 margin)",
                 gallery_html(data, data["least_sure"], "unsure"))]
    if data.get("by_original"):
        sections.append(("grouped", "Mistakes by original class", by_original_html(data)))
    nav = " · ".join(f'<a href="#{a}">{html.escape(t.split(" (")[0])}</a>' for a, t, _ in sections)
    name = Path(data["run"]).name
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    took = f" in {seconds:.1f} s" if seconds is not None else ""
    notes = "".join(f'<p class="note">{html.escape(n)}</p>' for n in data["notes"])
    body = "".join(_section(a, t, b) for a, t, b in sections)
    return (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>imgclf report: {html.escape(name)}"
            f"</title><style>{CSS}</style></head><body><header><h1>imgclf report: {html.escape(name)}</h1>"
            f"<p class=\"sub\">{html.escape(data['run'])} · generated {stamp}{took}</p><nav>{nav}</nav></header>"
            f"{notes}{body}</body></html>\n")


def summary_html(data: dict[str, Any]) -> str:
    info, cfg, m, env = data["info"], data["config"], data["model"], data["info"].get("environment", {})
    ds = info.get("dataset", {})
    classes = data["classes"]
    shown = ", ".join(classes[:20]) + (f", … ({len(classes)} classes)" if len(classes) > 20 else "")
    rows = [
        ["data", "dataset", f"{cfg.get('dataset')} ({ds.get('source', '')})"],
        ["data", "classes", shown + (f"  [grouped: {cfg['classes']}]" if cfg.get("classes") else "")],
        ["data", "images train / val / test", f"{ds.get('n_train')} / {ds.get('n_val')} / {ds.get('n_test')}"],
        ["data", "image size", f"{m['array_size']} px, {m['channels']} channel(s)"],
        ["model", "model", f"{cfg.get('model')}" + (f" (width {cfg['width']})" if cfg.get("width") else "")
                           + f", input {m['input_size']} px"],
        ["model", "parameters", f"{m['params']:,}"],
        ["model", "FLOPs per image", f"{m['flops'] / 1e9:.3f} GFLOPs"],
        ["training", "recipe", f"{cfg.get('optimizer')} lr {_g(cfg.get('lr'))}, batch {cfg.get('batch_size')}, "
                               f"{cfg.get('schedule')}, label smoothing {cfg.get('label_smoothing')}, "
                               f"TTA {cfg.get('tta')}"],
        ["training", "epochs", info.get("epochs_done")],
        ["training", "training time", f"{info.get('train_seconds') or 0:.1f} s"],
        ["training", "best validation accuracy", info.get("best_val_acc")],
        ["training", "seed, created", f"{info.get('seed')}, {info.get('created', '')}"],
        ["hardware", "machine", f"{env.get('processor')}, {env.get('cpu_cores')} cores ({env.get('torch_threads')} "
                                f"torch threads), GPU: {env.get('gpu') or 'none'}"],
        ["hardware", "software", f"imgclf {env.get('imgclf')}, torch {env.get('torch')}, lightning "
                                 f"{env.get('lightning')}, Python {env.get('python')}, {env.get('platform')}"],
        ["hardware", "git", env.get("git")],
    ]
    out = _table(rows, cls="kv")
    group = data.get("group")
    if group:
        keys = [k for k in ("accuracy", "macro_f1", "roc_auc", "train_seconds") if k in group]
        out += (f"<p>{group.get('seeds')} seeds; mean ± std over seeds below. The rest of the report analyses the "
                f"best seed by validation accuracy: <code>{html.escape(Path(data['member']).name)}</code>.</p>")
        out += _table([[k, f"{group[k]:.4f} ± {group.get(k + '_std', 0.0):.4f}"] for k in keys], ["metric", "value"])
    return out


def curves_html(data: dict[str, Any]) -> str:
    from imgclf.evaluation.report_plots import curves_png

    if not data["epochs"]:
        return "<p>No metrics.csv in the run folder.</p>"
    return _img(curves_png(data["epochs"]), "training and validation loss and accuracy per epoch")


def metrics_html(data: dict[str, Any]) -> str:
    m = data["metrics"]
    keys = [k for k in m if k.endswith("accuracy")] + ["macro_precision", "macro_recall", "macro_f1", "roc_auc"]
    head = _table([[k, m.get(k)] for k in keys if k in m] + [["test images", m.get("n_test")]], ["metric", "value"])
    rows = [[r["class"], r["precision"], r["recall"], r["f1"], r["support"], r["roc_auc"]] for r in m["per_class"]]
    return head + "<h3>Per class</h3>" + _table(rows, ["class", "precision", "recall", "F1", "support", "ROC-AUC"])


def confusion_html(data: dict[str, Any]) -> str:
    from imgclf.evaluation.report_plots import confusion_png

    return _img(confusion_png(data["confusion"], data["classes"]), "confusion matrix: counts and row-normalised")


def roc_html(data: dict[str, Any]) -> str:
    from imgclf.evaluation.report_plots import roc_png

    if not data["roc"]:
        return "<p>Needs at least two classes present in the test set.</p>"
    return _img(roc_png(data["roc"]), "one-vs-rest ROC curves")


def calibration_html(data: dict[str, Any]) -> str:
    from imgclf.evaluation.report_plots import reliability_png

    cal = data["calibration"]
    before, after, t = cal["before"], cal["after"], cal["temperature"]
    rows = [["uncalibrated", before["ece"], before["nll"]]]
    if after:
        rows.append([f"temperature scaling, T = {t:.3f} (fitted on {cal['n_val']} validation images)", after["ece"],
                     after["nll"]])
    text = ("<p>Expected calibration error (ECE, 15 equal-width bins of the top-1 probability) and negative "
            "log-likelihood on the test set. Temperature scaling divides the log-probabilities by T, fitted by "
            "minimising the validation NLL: T &gt; 1 means the model was over-confident, T &lt; 1 under-confident.</p>")
    return text + _table(rows, ["predictions", "ECE", "NLL"]) + _img(reliability_png(before, after, t),
                                                                      "reliability diagram")


def _thumbs(data: dict[str, Any], indices: np.ndarray, show_truth: bool = True) -> str:
    from imgclf.evaluation.report_plots import thumbnail_png

    classes, probs, labels, ids = data["classes"], data["probs"], data["labels"], data["ids"]
    orig = data["orig_labels"] if data.get("by_original") else None
    cards = []
    for i in np.asarray(indices).tolist():
        p = int(probs[i].argmax())
        name = str(ids[i]) if len(ids) else f"#{i}"
        truth = classes[labels[i]] + (f" ({data['orig_classes'][orig[i]]})" if orig is not None else "")
        caption = (f"true <b>{html.escape(truth)}</b><br>" if show_truth else "") + \
            f"pred <b>{html.escape(classes[p])}</b> {probs[i, p]:.2f}"
        pic = _img(thumbnail_png(data["images"][i]), name, "thumb") if data.get("images") is not None else ""
        wrong = ' class="wrong"' if p != labels[i] else ""
        cards.append(f'<figure{wrong} title="{html.escape(name)}">{pic}<figcaption>{caption}</figcaption></figure>')
    return '<div class="gallery">' + "".join(cards) + "</div>" if cards else "<p>None.</p>"


def confused_html(data: dict[str, Any]) -> str:
    pairs = data["confused_pairs"]
    if not pairs:
        return "<p>No mistakes on the test set.</p>"
    out = []
    for p in pairs:
        out.append(f"<h3>{html.escape(p['true'])} → {html.escape(p['predicted'])}: {p['count']} images "
                   f"({100 * p['share']:.1f}% of {html.escape(p['true'])})</h3>")
        out.append(_thumbs(data, p["examples"], show_truth=False))
    return "<p>True class → predicted class, most frequent first, with the most confident examples.</p>" + "".join(out)


def gallery_html(data: dict[str, Any], indices: np.ndarray, kind: str) -> str:
    intro = {"wrong": "Wrong predictions with the highest predicted probability: often label noise or a systematic "
                      "confusion.",
             "unsure": "Test images whose two most probable classes are closest."}[kind]
    return f"<p>{intro}</p>" + _thumbs(data, indices)


def by_original_html(data: dict[str, Any]) -> str:
    rows = [[r["original"], r["group"], r["n"], r["mistakes"], r["error_rate"],
             ", ".join(f"{k}: {v}" for k, v in r["predicted_as"].items())] for r in data["by_original"]]
    return ("<p>Labels were grouped; each mistake is traced back to the image's original class.</p>" +
            _table(rows, ["original class", "group", "test images", "mistakes", "error rate", "predicted as"]))


CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:0 auto;max-width:1200px;
padding:0 1.5em 3em;color:#222;line-height:1.4}
header{border-bottom:2px solid #4c72b0;margin-bottom:1em}h1{margin:.6em 0 .1em}.sub{color:#666;margin:0 0 .4em}
nav{margin:.4em 0 .8em;font-size:.95em}nav a{color:#4c72b0;text-decoration:none}
h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}h3{font-size:1em;margin:1em 0 .3em}
table{border-collapse:collapse;margin:.5em 0;font-size:.92em}th,td{border:1px solid #ddd;padding:3px 8px;
text-align:left}th{background:#f3f5f9}table.kv td:first-child{color:#888}
img.fig{max-width:100%;height:auto;display:block;margin:.5em 0}
.gallery{display:flex;flex-wrap:wrap;gap:8px}figure{margin:0;width:104px;font-size:11px;text-align:center}
img.thumb{width:96px;height:96px;object-fit:contain;image-rendering:pixelated;background:#eee;display:block;
margin:0 auto 2px}figure.wrong img.thumb{outline:2px solid #c44e52}
.note{background:#fff4e0;border-left:4px solid #dd8452;padding:.4em .8em}
code{background:#f3f3f3;padding:0 3px}
"""
