"""Matplotlib figures for the report (and the Predict tab's probabilities), drawn on `Figure` objects
(Agg, no pyplot): nothing here touches the process-wide backend or needs a display. The dashboard's
other tabs draw interactive Bokeh plots (plots.py)."""
from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from core.data.stats import SYNTHETIC_MARK
from core.evaluation.metrics import TARGET_RECALLS
from core.labels import CLASSES


def titled(text: str, synthetic: bool | None) -> str:
    return f"{SYNTHETIC_MARK}: {text}" if synthetic else text


def _annotated_matrix(ax, values: np.ndarray, fmt: str, cmap: str, columns, rows) -> None:
    finite = values[np.isfinite(values)]
    top = (finite.max() if finite.size else 0) or 1
    shown = ax.imshow(np.nan_to_num(values), cmap=cmap, vmin=0, vmax=top)
    for (i, j), v in np.ndenumerate(values):
        red, green, blue, _ = shown.cmap(shown.norm(np.nan_to_num(v)))
        dark = 0.299 * red + 0.587 * green + 0.114 * blue < 0.5
        ax.text(j, i, format(v, fmt) if np.isfinite(v) else "-", ha="center", va="center", fontsize=8,
                color="white" if dark else "black")
    ax.set_xticks(range(len(columns)), columns, rotation=45, ha="right")
    ax.set_yticks(range(len(rows)), rows)


def confusion_figure(confusion, title: str) -> Figure:
    """Counts and row-normalized (recall per true class) confusion matrices, side by side."""
    counts = np.asarray(confusion, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        normalized = counts / counts.sum(axis=1, keepdims=True)
    fig = Figure(figsize=(11, 4.8), layout="constrained")
    for ax, values, fmt, name in zip(fig.subplots(1, 2), (counts, normalized), ("g", ".2f"),
                                     ("counts", "row-normalized"), strict=True):
        _annotated_matrix(ax, values, fmt, "Blues", CLASSES, CLASSES)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(name)
    fig.suptitle(title)
    return fig


def history_figure(history: pd.DataFrame, selected_epoch: int | None, title: str) -> Figure:
    """Losses and validation metrics per epoch; the selected checkpoint's epoch marked."""
    fig = Figure(figsize=(11, 3.8), layout="constrained")
    loss_ax, metric_ax = fig.subplots(1, 2)
    for column in ("train_loss", "val_loss"):
        loss_ax.plot(history["epoch"], history[column], marker="o", label=column)
    for column in ("val_acc", "val_macro_f1", "val_mel_recall"):
        metric_ax.plot(history["epoch"], history[column], marker="o", label=column)
    metric_ax.set_ylim(-0.02, 1.02)
    for ax in (loss_ax, metric_ax):
        if selected_epoch is not None:
            ax.axvline(selected_epoch, color="black", linestyle="--", label=f"selected epoch {selected_epoch}")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=8)
    loss_ax.set_title("loss")
    metric_ax.set_title("validation")
    fig.suptitle(title)
    return fig


def threshold_figure(curves: dict[str, pd.DataFrame], title: str,
                     marks: dict[str, list[float]] | None = None) -> Figure:
    """Melanoma precision and recall against the threshold, one line per arm; `marks` puts a dot on
    each arm's recall curve at its chosen thresholds."""
    fig = Figure(figsize=(11, 4), layout="constrained")
    precision_ax, recall_ax = fig.subplots(1, 2, sharex=True)
    for arm, curve in curves.items():
        line, = precision_ax.plot(curve["threshold"], curve["precision"], drawstyle="steps-post", label=arm)
        recall_ax.plot(curve["threshold"], curve["recall"], drawstyle="steps-post", color=line.get_color())
        for t in (marks or {}).get(arm, []):
            above = curve.loc[curve["threshold"] >= t, "recall"]  # recall at t: the next score up
            recall_ax.plot([t], [above.iloc[0] if len(above) else 0.0], "o", color=line.get_color())
    for target in TARGET_RECALLS:
        recall_ax.axhline(target, color="grey", linewidth=0.6, linestyle=":")
    for ax, name in ((precision_ax, "precision"), (recall_ax, "recall")):
        ax.set_xlim(0, 1)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("threshold on P(mel)")
        ax.set_title(f"melanoma {name}")
    if curves:
        precision_ax.legend(fontsize=8)
    fig.suptitle(title)
    return fig


def reliability_figure(calibration: dict, title: str) -> Figure:
    """Top-label reliability on test, before and after temperature scaling (fitted on validation)."""
    fig = Figure(figsize=(5.5, 4.5), layout="constrained")
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color="grey", linewidth=0.8, linestyle=":", label="perfect calibration")
    for when, marker in (("before", "o"), ("after", "s")):
        bins = [b for b in calibration["reliability_test"][when] if b["n"]]
        ece = calibration["test"][when]["ece"]
        label = f"{when} (ECE {ece:.3f})" if when == "before" else \
            f"after T = {calibration['temperature']:.2f} (ECE {ece:.3f})"
        ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], marker=marker, label=label)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (top-label probability)")
    ax.set_ylabel("accuracy")
    ax.legend(fontsize=8)
    ax.set_title(title)
    return fig


def recall_heatmap(table: pd.DataFrame, title: str) -> Figure:
    """Table 3 as a heatmap: arms (rows) by classes (columns), test recall."""
    values = table[list(CLASSES)].to_numpy(dtype=float)
    fig = Figure(figsize=(8, 0.5 * len(table) + 1.8), layout="constrained")
    ax = fig.add_subplot()
    _annotated_matrix(ax, values, ".2f", "viridis", CLASSES, list(table["arm"]))
    ax.set_title(title)
    return fig


def probability_figure(probs: np.ndarray, title: str) -> Figure:
    """The seven class probabilities as horizontal bars, the predicted class highlighted."""
    fig = Figure(figsize=(5.5, 3), layout="constrained")
    ax = fig.add_subplot()
    colours = ["tab:red" if i == int(np.argmax(probs)) else "tab:blue" for i in range(len(CLASSES))]
    bars = ax.barh(CLASSES[::-1], probs[::-1], color=colours[::-1])
    ax.bar_label(bars, labels=[f"{p:.3f}" for p in probs[::-1]], padding=2, fontsize=8)
    ax.set_xlim(0, 1.15)
    ax.set_xlabel("probability")
    ax.set_title(title)
    return fig


def gradcam_figure(examples: list[dict], title: str) -> Figure:
    """Rows of (image, CAM for the predicted class, CAM for mel); each example a dict with
    caption, image, cam_predicted, cam_mel (uint8 RGB arrays)."""
    fig = Figure(figsize=(7.5, 2.6 * len(examples) + 0.6), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(examples), 3))
    for row, example in zip(axes, examples, strict=True):
        for ax, key, name in zip(row, ("image", "cam_predicted", "cam_mel"),
                                 ("image", "Grad-CAM: predicted", "Grad-CAM: mel"), strict=True):
            ax.imshow(example[key])
            ax.set_title(name if key != "image" else example["caption"], fontsize=8)
            ax.axis("off")
    fig.suptitle(title)
    return fig


VERDICT_COLOURS = {"higher": "tab:green", "lower": "tab:red", "not separated": "tab:grey", "one run": "tab:orange"}


def forest_figure(frame: pd.DataFrame, title: str) -> Figure:
    """The findings as a forest plot: one panel per figure, a row per comparison, the difference and
    its interval coloured by verdict, zero marked (frame: `tables.findings_frame`)."""
    names = list(dict.fromkeys(frame["figure"]))
    comparisons = list(dict.fromkeys(frame["comparison"]))
    fig = Figure(figsize=(3.2 * len(names) + 1.5, 0.4 * len(comparisons) + 1.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(names), sharey=True))
    for ax, name in zip(axes, names, strict=True):
        rows = frame[frame["figure"] == name].dropna(subset=["estimate"])
        y = [comparisons.index(c) for c in rows["comparison"]]
        for (_, row), at in zip(rows.iterrows(), y, strict=True):
            colour = VERDICT_COLOURS[row["verdict"]]
            if pd.notna(row["low"]):
                ax.plot([row["low"], row["high"]], [at, at], color=colour, linewidth=2)
            ax.plot(row["estimate"], at, "o", color=colour, markerfacecolor="white" if row["verdict"] == "one run"
                    else colour)
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_title(name, fontsize=9)
        ax.set_yticks(range(len(comparisons)), comparisons, fontsize=8)
        ax.tick_params(axis="x", labelsize=8)
    axes[0].invert_yaxis()  # the first comparison on top (the panels share the axis)
    handles = [axes[0].plot([], [], "o", color=c, label=v)[0] for v, c in VERDICT_COLOURS.items()]
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=8)
    fig.suptitle(title)
    return fig
