"""Interactive Plotly figures of the dashboard: drawing only, from values computed elsewhere (``data``, ``analysis``).

Examples:
    >>> import numpy as np
    >>> fig = confusion_figure(np.array([[3, 1], [0, 4]]), ["cat", "dog"])
    >>> [t.type for t in fig.data]
    ['heatmap', 'scatter']
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from imgclf.dashboard.data import cell_grid

PALETTE = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c", "#ccb974",
           "#64b5cd")


def _layout(fig: go.Figure, height: int = 360, margin: dict | None = None, **kwargs) -> go.Figure:
    fig.update_layout(height=height, margin=margin or {"l": 10, "r": 10, "t": 40, "b": 10}, **kwargs)
    return fig


def curves_figure(epochs: dict[str, np.ndarray], runs: dict[str, dict[str, np.ndarray]] | None = None) -> go.Figure:
    """Loss and accuracy per epoch (train dashed, validation solid); ``runs`` overlays other runs' validation
    accuracy for comparison."""
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("loss", "accuracy"))
    x = epochs.get("epoch", np.arange(len(next(iter(epochs.values()), []))))
    x = np.asarray(x) + 1  # epochs counted from 1, as the training log prints them
    for col, metric in ((1, "loss"), (2, "acc")):
        for split, dash, colour in (("train", "dash", PALETTE[0]), ("val", "solid", PALETTE[1])):
            y = epochs.get(f"{split}_{metric}")
            if y is not None and not np.isnan(y).all():
                fig.add_trace(go.Scatter(x=x, y=y, name=f"{split} {metric}", mode="lines+markers",
                                         line={"dash": dash, "color": colour}), row=1, col=col)
    for i, (name, other) in enumerate((runs or {}).items()):
        y = other.get("val_acc")
        if y is not None and len(y):
            fig.add_trace(go.Scatter(x=np.asarray(other["epoch"]) + 1, y=y, name=f"{name} val acc", mode="lines",
                                     line={"color": PALETTE[(i + 2) % len(PALETTE)]}), row=1, col=2)
    fig.update_xaxes(title_text="epoch")
    return _layout(fig, legend={"orientation": "h", "y": -0.25})


def confusion_figure(cm: np.ndarray, classes: list[str], selected: tuple[int, int] | None = None,
                     size: int = 520) -> go.Figure:
    """The confusion matrix (rows: true class, columns: predicted) as a heat map of row shares with counts.

    Plotly heat maps send no selection events, so an invisible square marker sits on every cell: clicking a cell
    selects its marker, whose ``customdata`` is ``[true, predicted]`` (see ``data.selected_cell``).
    """
    cm = np.asarray(cm)
    k = len(classes)
    share = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    text = [[str(int(v)) for v in row] for row in cm] if k <= 20 else None
    fig = go.Figure(go.Heatmap(z=share, x=classes, y=classes, colorscale="Blues", zmin=0, zmax=1, text=text,
                               texttemplate="%{text}" if text else None, hoverinfo="skip",
                               colorbar={"title": "row share", "thickness": 12}))
    rows, cols = cell_grid(k)
    plot_side = size - 150
    fig.add_trace(go.Scatter(
        x=[classes[j] for j in cols], y=[classes[i] for i in rows], mode="markers",
        customdata=[[i, j, int(cm[i, j])] for i, j in zip(rows, cols, strict=True)],
        marker={"symbol": "square", "size": max(4, plot_side / k * 0.9), "color": "rgba(0,0,0,0)",
                "line": {"width": 0}},
        selected={"marker": {"color": "rgba(255,165,0,0.35)"}}, unselected={"marker": {"opacity": 1}},
        hovertemplate="true %{y}, predicted %{x}: %{customdata[2]} images — click to see them<extra></extra>",
        showlegend=False))
    if selected is not None:
        i, j = selected
        fig.add_shape(type="rect", x0=j - 0.5, x1=j + 0.5, y0=i - 0.5, y1=i + 0.5, line={"color": "#dd8452",
                                                                                          "width": 3})
    # fixed ranges: autorange would pad for the marker size and shrink the matrix
    fig.update_xaxes(title_text="predicted", tickangle=-45 if k > 6 else 0, showgrid=False, range=[-0.5, k - 0.5])
    fig.update_yaxes(title_text="true", showgrid=False, range=[k - 0.5, -0.5], scaleanchor="x")
    return _layout(fig, height=size, clickmode="event+select", dragmode=False, hovermode="closest")


def roc_figure(curves: list[dict], max_legend: int = 20) -> go.Figure:
    """One-vs-rest ROC curves with their AUC, and the chance diagonal."""
    fig = go.Figure()
    for i, c in enumerate(curves):
        fig.add_trace(go.Scatter(x=c["fpr"], y=c["tpr"], mode="lines", name=f"{c['class']} ({c['auc']:.3f})",
                                 line={"color": PALETTE[i % len(PALETTE)]}, showlegend=i < max_legend))
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line={"dash": "dot", "color": "#999"},
                             name="chance", hoverinfo="skip"))
    fig.update_xaxes(title_text="false positive rate", range=[0, 1])
    fig.update_yaxes(title_text="true positive rate", range=[0, 1.01])
    return _layout(fig, height=420)


def reliability_figure(before: dict, after: dict | None = None, temperature: float | None = None) -> go.Figure:
    """Reliability diagram: accuracy per confidence bin against the diagonal, before (and after) temperature scaling."""
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line={"dash": "dot", "color": "#999"},
                             name="perfect calibration", hoverinfo="skip"))
    series = [("uncalibrated", before, PALETTE[0])]
    if after is not None:
        series.append((f"temperature T = {temperature:.2f}", after, PALETTE[1]))
    for name, summary, colour in series:
        bins = summary["bins"]
        ok = np.asarray(bins["count"]) > 0
        fig.add_trace(go.Scatter(x=np.asarray(bins["confidence"])[ok], y=np.asarray(bins["accuracy"])[ok],
                                 mode="lines+markers", name=f"{name} (ECE {summary['ece']:.3f})",
                                 line={"color": colour}, customdata=np.asarray(bins["count"])[ok],
                                 hovertemplate="confidence %{x:.2f}, accuracy %{y:.2f}, %{customdata} images"))
    fig.update_xaxes(title_text="confidence (top-1 probability)", range=[0, 1])
    fig.update_yaxes(title_text="accuracy", range=[0, 1.01])
    return _layout(fig, height=420, legend={"orientation": "h", "y": -0.2})


def distribution_figure(rows: list[dict], splits: list[str]) -> go.Figure:
    """Images per class, stacked by split."""
    fig = go.Figure()
    for i, split in enumerate(splits):
        fig.add_trace(go.Bar(x=[r["class"] for r in rows], y=[r.get(split, 0) for r in rows], name=split,
                             marker_color=PALETTE[i % len(PALETTE)]))
    fig.update_layout(barmode="stack")
    fig.update_yaxes(title_text="images")
    return _layout(fig)


def histogram_figure(histogram: np.ndarray, channels: list[dict]) -> go.Figure:
    """Pixel-value histograms per channel (share of pixels per value 0..255)."""
    colours = {"red": "#c44e52", "green": "#55a868", "blue": "#4c72b0", "gray": "#555", "alpha": "#999"}
    fig = go.Figure()
    for row, ch in zip(histogram, channels, strict=False):
        fig.add_trace(go.Scatter(x=np.arange(256), y=row / max(row.sum(), 1), mode="lines", name=ch["channel"],
                                 line={"color": colours.get(ch["channel"], "#333")}))
    fig.update_xaxes(title_text="pixel value", range=[0, 255])
    fig.update_yaxes(title_text="share of pixels")
    return _layout(fig, height=300)


def topk_figure(top: list[dict]) -> go.Figure:
    """Horizontal bars of the top-k classes and their probabilities, most probable on top."""
    fig = go.Figure(go.Bar(x=[t["probability"] for t in top][::-1], y=[t["label"] for t in top][::-1],
                           orientation="h", marker_color=PALETTE[0], text=[f"{t['probability']:.1%}"
                                                                          for t in top][::-1],
                           textposition="auto"))
    fig.update_xaxes(range=[0, 1], title_text="probability")
    return _layout(fig, height=60 + 28 * len(top), margin={"l": 10, "r": 10, "t": 10, "b": 10})
