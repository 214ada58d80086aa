"""Small building blocks the tabs share: tables, plots, images, notices."""
from __future__ import annotations

import io

import numpy as np
import pandas as pd
import panel as pn
from bokeh.models.widgets.tables import NumberFormatter
from matplotlib.figure import Figure
from PIL import Image

from dashboards.figures import titled
from dashboards.results import SweepView

SYNTHETIC_NOTE = ("**SYNTHETIC demo data.** This sweep ran on the built-in synthetic dataset, not HAM10000: "
                  "no figure here says anything about skin lesions, and the source study's figures are not shown.")
NOT_A_DEVICE = ("**Research software, not a medical device.** Predictions are for studying the models; "
                "they must not be used to diagnose anyone.")


def number_formats(frame: pd.DataFrame, digits: dict[str, int] | None = None) -> dict:
    """Tabulator formatters: 4 decimals for float columns unless `digits` says otherwise."""
    decimals = {c: (digits or {}).get(c, 4) for c in frame.columns if pd.api.types.is_float_dtype(frame[c])}
    return {c: NumberFormatter(format="0." + "0" * n if n else "0", nan_format="-") for c, n in decimals.items()}


def table(frame: pd.DataFrame, digits: dict[str, int] | None = None, **params) -> pn.widgets.Tabulator:
    """A read-only table, sortable by clicking a column header."""
    params = {"layout": "fit_data_table", **params}
    return pn.widgets.Tabulator(frame, formatters=number_formats(frame, digits), disabled=True, show_index=False,
                                **params)


def figure(fig: Figure, **params) -> pn.pane.Matplotlib:
    return pn.pane.Matplotlib(fig, dpi=90, format="png", tight=False, **params)


def plot(layout, title: str, synthetic: bool | None, **params) -> pn.Column:
    """An interactive Bokeh plot (hover, zoom, pan) under its title, marked when the data is synthetic."""
    return pn.Column(pn.pane.Markdown(f"#### {titled(title, synthetic)}"), pn.pane.Bokeh(layout),
                     sizing_mode="stretch_width", **params)


def image(array: np.ndarray, width: int = 224, **params) -> pn.pane.PNG:
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(array)).save(buffer, format="PNG")
    return pn.pane.PNG(buffer.getvalue(), width=width, **params)


def data_notice(sweep: SweepView) -> pn.pane.Alert | None:
    """The synthetic-data warning, or a note that nothing says what the data was."""
    if sweep.synthetic:
        return pn.pane.Alert(SYNTHETIC_NOTE, alert_type="warning", css_classes=["synthetic-note"])
    if sweep.synthetic is None:
        return pn.pane.Alert("Neither sweep.json nor any arm says whether the data was synthetic.",
                             alert_type="secondary")
    return None


def note(text: str, kind: str = "info") -> pn.pane.Alert:
    return pn.pane.Alert(text, alert_type=kind)


def no_sweep() -> pn.pane.Alert:
    return note("No sweep selected: the results root holds no sweep folder yet.", "secondary")
