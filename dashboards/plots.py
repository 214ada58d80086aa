"""Bokeh plots for the dashboard's tabs: hover reads the values, the wheel zooms, drag pans, and the
toolbar has box zoom and reset. The report draws the same figures as PNGs with matplotlib (figures.py)."""
from __future__ import annotations

import numpy as np
import pandas as pd
from bokeh.layouts import grid, row
from bokeh.models import ColumnDataSource, HoverTool, LinearColorMapper, Range1d, Span
from bokeh.palettes import Blues256, Category10_10, Viridis256
from bokeh.plotting import figure

from core.evaluation.metrics import TARGET_RECALLS
from core.labels import CLASSES

TOOLS = "pan,wheel_zoom,box_zoom,reset,save"
AT = "at"  # the name of the lines a threshold slider moves: `layout.select({"name": AT})`
RATES = {"precision": Category10_10[0], "recall": Category10_10[1], "specificity": Category10_10[2]}


def _figure(title: str, **params) -> figure:
    plot = figure(title=title, tools=TOOLS, toolbar_location="above", **params)
    plot.toolbar.autohide = True  # shown while the mouse is over the plot
    return plot


def _source(frame: pd.DataFrame) -> ColumnDataSource:
    return ColumnDataSource({column: frame[column].to_numpy() for column in frame.columns})


def _legend_above(plot) -> None:
    """The legend in one row above the plot, off the curves."""
    plot.legend.orientation = "horizontal"
    plot.legend.label_text_font_size = "8pt"
    plot.legend.padding = plot.legend.spacing = 2
    plot.add_layout(plot.legend[0], "above")


def _steps(curve: pd.DataFrame) -> pd.DataFrame:
    """A threshold curve as a step path in `t`: each row's figures hold for t in (the next score down, its
    score], and above the top score nothing is flagged (recall 0, specificity 1, precision undefined)."""
    top = curve.iloc[-1]
    if top["threshold"] < 1:
        nothing = {"threshold": 1.0, "precision": np.nan, "recall": 0.0, "specificity": 1.0,
                   "tp": 0, "fp": 0, "tn": top["tn"] + top["fp"], "fn": top["fn"] + top["tp"]}
        curve = pd.concat([curve, pd.DataFrame([nothing])], ignore_index=True)
    starts = curve.assign(t=curve["threshold"].shift(1, fill_value=0.0))
    return pd.concat([starts, curve.assign(t=curve["threshold"])]).sort_index(kind="stable")


def _at(curve: pd.DataFrame, t: float, column: str) -> float:
    """A curve's figure at threshold t: the row of the next score up (nothing is flagged above the top one)."""
    above = curve.loc[curve["threshold"] >= t, column]
    return float(above.iloc[0]) if len(above) else 0.0


def threshold_plots(curves: dict[str, pd.DataFrame], marks: dict[str, list[float]], at: float):
    """Melanoma precision, recall and specificity against the threshold on P(mel), a plot per arm, zoomed
    together. Hovering over a plot reads all three and the counts at that threshold; dots mark each arm's
    `marks` (its thresholds chosen on validation) on its recall, a dashed line the threshold `at`."""
    x_range, y_range = Range1d(0, 1, bounds=(0, 1)), Range1d(-0.02, 1.02, bounds=(-0.02, 1.02))
    plots = []
    for arm, curve in curves.items():
        plot = _figure(arm, x_range=x_range, y_range=y_range, height=300, min_width=300,
                       sizing_mode="stretch_width", x_axis_label="threshold on P(mel)")
        source = _source(_steps(curve))
        lines = {rate: plot.line("t", rate, source=source, color=colour, line_width=2, legend_label=rate)
                 for rate, colour in RATES.items()}
        chosen = marks.get(arm, [])
        plot.scatter(chosen, [_at(curve, t, "recall") for t in chosen], size=9, color="black",
                     legend_label="chosen on validation")
        for target in TARGET_RECALLS:
            plot.add_layout(Span(location=target, dimension="width", line_color="grey", line_dash="dotted"))
        plot.add_layout(Span(location=at, dimension="height", line_color="black", line_dash="dashed", name=AT))
        plot.add_tools(HoverTool(renderers=[lines["recall"]], mode="vline", tooltips=[
            ("arm", arm), ("t", "$x{0.000}"), ("precision", "@precision{0.000}"), ("recall", "@recall{0.000}"),
            ("specificity", "@specificity{0.000}"), ("tp / fp / tn / fn", "@tp / @fp / @tn / @fn")]))
        _legend_above(plot)
        plots.append(plot)
    return grid(plots, ncols=3, sizing_mode="stretch_width")  # not gridplot: in some Panel layouts it paints nothing


def history_plots(history: pd.DataFrame, selected_epoch: int | None):
    """Losses and validation metrics per epoch, zoomed together in epochs; the selected checkpoint's epoch
    marked. Hovering reads every curve of a plot at that epoch."""
    source = _source(history)
    plots = []
    for name, columns in (("loss", ("train_loss", "val_loss")),
                          ("validation", ("val_acc", "val_macro_f1", "val_mel_recall"))):
        plot = _figure(name, height=320, sizing_mode="stretch_width", x_axis_label="epoch")
        lines = []
        for column, colour in zip(columns, Category10_10, strict=False):
            lines.append(plot.line("epoch", column, source=source, color=colour, line_width=2, legend_label=column))
            plot.scatter("epoch", column, source=source, color=colour, size=6, legend_label=column)
        if selected_epoch is not None:
            plot.vspan(x=[selected_epoch], line_color="black", line_dash="dashed", line_width=1.5,
                       legend_label=f"selected epoch {selected_epoch}")
        plot.add_tools(HoverTool(renderers=lines[:1], mode="vline", tooltips=[
            ("epoch", "@epoch"), *((column, f"@{column}{{0.0000}}") for column in columns)]))
        plot.xaxis[0].ticker.min_interval = 1  # whole epochs, however far it zooms
        _legend_above(plot)
        plot.legend.click_policy = "hide"
        plots.append(plot)
    loss, validation = plots
    validation.x_range, validation.y_range = loss.x_range, Range1d(-0.02, 1.02)
    return row(*plots, sizing_mode="stretch_width")


def _ink(colour: str) -> str:
    """Black or white, whichever reads on a cell of this #rrggbb colour."""
    red, green, blue = (int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5))
    return "white" if 0.299 * red + 0.587 * green + 0.114 * blue < 0.5 else "black"


def _heatmap(values: np.ndarray, rows: list[str], columns: list[str], title: str, palette, fmt: str,
             tooltips: list[tuple[str, str]], extra: dict | None = None, width: int = 520):
    """Cells coloured by `values` (NaN grey, shown "-"), each labelled with its value, dark cells in white."""
    finite = values[np.isfinite(values)]
    mapper = LinearColorMapper(palette=palette, low=0, high=(finite.max() if finite.size else 0) or 1,
                               nan_color="#dddddd")
    i, j = (index.ravel() for index in np.indices(values.shape))
    flat = values.ravel()
    shade = np.clip((flat - mapper.low) / (mapper.high - mapper.low), 0, 1)
    ink = [_ink(palette[round(v * (len(palette) - 1))]) if np.isfinite(v) else "black" for v in shade]
    source = ColumnDataSource({"row": [rows[k] for k in i], "column": [columns[k] for k in j], "value": flat,
                               "label": [format(v, fmt) if np.isfinite(v) else "-" for v in flat], "ink": ink,
                               **(extra or {})})
    plot = _figure(title, x_range=list(columns), y_range=list(reversed(rows)), width=width,
                   height=34 * len(rows) + 110, x_axis_location="above")
    plot.rect("column", "row", 1, 1, source=source, fill_color={"field": "value", "transform": mapper},
              line_color="white")
    plot.text("column", "row", text="label", source=source, text_color="ink", text_align="center",
              text_baseline="middle", text_font_size="9pt")
    plot.add_tools(HoverTool(tooltips=tooltips))
    plot.grid.visible = False
    plot.axis.major_tick_line_color = None
    plot.xaxis.major_label_orientation = 0.8
    return plot


def confusion_plots(confusion):
    """Test counts and the row-normalized matrix (recall per true class), side by side."""
    counts = np.asarray(confusion, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        normalized = counts / counts.sum(axis=1, keepdims=True)
    extra = {"count": counts.ravel().astype(int), "share": normalized.ravel()}
    tooltips = [("true", "@row"), ("predicted", "@column"), ("images", "@count"),
                ("share of the true class", "@share{0.000}")]
    plots = [_heatmap(values, list(CLASSES), list(CLASSES), name, Blues256[::-1], fmt, tooltips, extra)
             for values, fmt, name in ((counts, "g", "counts (rows: true, columns: predicted)"),
                                       (normalized, ".2f", "row-normalized"))]
    return row(*plots)


def recall_heatmap(table: pd.DataFrame):
    """Table 3 as a heatmap: arms (rows) by classes (columns), test recall."""
    values = table[list(CLASSES)].to_numpy(dtype=float)
    return _heatmap(values, list(table["arm"]), list(CLASSES), "test recall", Viridis256, ".2f",
                    [("arm", "@row"), ("class", "@column"), ("recall", "@value{0.000}")], width=640)


def reliability_plot(calibration: dict):
    """Top-label reliability on test, before and after temperature scaling (fitted on validation); hovering a
    bin reads its confidence, accuracy and count."""
    plot = _figure("test reliability", width=520, height=440, x_range=Range1d(0, 1), y_range=Range1d(0, 1),
                   x_axis_label="confidence (top-label probability)", y_axis_label="accuracy")
    plot.line([0, 1], [0, 1], color="grey", line_dash="dotted", legend_label="perfect calibration")
    for (when, marker), colour in zip((("before", "circle"), ("after", "square")), Category10_10, strict=False):
        bins = pd.DataFrame([b for b in calibration["reliability_test"][when] if b["n"]])
        ece = calibration["test"][when]["ece"]
        label = f"before (ECE {ece:.3f})" if when == "before" else \
            f"after T = {calibration['temperature']:.2f} (ECE {ece:.3f})"
        source = _source(bins)
        plot.line("confidence", "accuracy", source=source, color=colour, legend_label=label)
        dots = plot.scatter("confidence", "accuracy", source=source, marker=marker, size=8, color=colour,
                            legend_label=label)
        plot.add_tools(HoverTool(renderers=[dots], tooltips=[
            ("", f"{when} temperature scaling"), ("bin", "(@lo{0.0}, @hi{0.0}]"), ("confidence", "@confidence{0.000}"),
            ("accuracy", "@accuracy{0.000}"), ("images", "@n")]))
    plot.legend.location = "top_left"
    plot.legend.label_text_font_size = "8pt"
    return plot


VERDICT_COLOURS = {"higher": "#2ca02c", "lower": "#d62728", "not separated": "#7f7f7f", "one run": "#ff7f0e"}


def forest_plots(frame: pd.DataFrame):
    """The findings as forest plots, one per figure: a row per comparison, the difference and its interval
    coloured by verdict, zero marked; hovering reads the interval, P(arm > ref), the adjusted p and the
    verdict (frame: `tables.findings_frame`, the rows of findings.json)."""
    comparisons = list(dict.fromkeys(frame["comparison"]))
    plots = []
    for name in dict.fromkeys(frame["figure"]):
        rows = frame[(frame["figure"] == name) & frame["estimate"].notna()]
        rows = rows.assign(colour=rows["verdict"].map(VERDICT_COLOURS), low=rows["low"].fillna(rows["estimate"]),
                           high=rows["high"].fillna(rows["estimate"]),
                           chance=rows["P(arm > ref)"].astype(float), adjusted=rows["adjusted p"].astype(float))
        source = _source(rows[["comparison", "estimate", "low", "high", "colour", "verdict", "seeds", "chance",
                               "adjusted"]])
        first = not plots  # the comparisons' names once, on the left: the panels share their rows
        plot = _figure(name, y_range=list(reversed(comparisons)), width=470 if first else 250,
                       height=30 * len(comparisons) + 90, x_axis_label="arm minus reference")
        plot.yaxis.visible = first
        plot.xaxis.ticker.desired_num_ticks = 4
        plot.segment("low", "comparison", "high", "comparison", source=source, color="colour", line_width=3)
        dots = plot.scatter("estimate", "comparison", source=source, size=9, color="colour")
        plot.add_layout(Span(location=0, dimension="height", line_color="black", line_width=1))
        plot.add_tools(HoverTool(renderers=[dots], tooltips=[
            ("", "@comparison"), ("difference", "@estimate{+0.000} [@low{+0.000}, @high{+0.000}]"),
            ("P(arm > ref)", "@chance{0.00}"), ("adjusted p", "@adjusted{0.000}"), ("verdict", "@verdict"),
            ("seeds", "@seeds")]))
        plot.yaxis.major_label_text_font_size = "8pt"
        plots.append(plot)
    return grid(plots, ncols=len(plots))
