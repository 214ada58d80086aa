"""The dashboard's Bokeh plots show the contract's figures: what hovering a threshold curve reads is
`at_threshold` at that threshold, and the dots sit on the recall at the chosen thresholds."""
from __future__ import annotations

import numpy as np
import pandas as pd
from bokeh.models import ColumnDataSource, GlyphRenderer, Scatter

from core.evaluation.metrics import at_threshold, threshold_curve
from dashboards.plots import AT, threshold_plots

FIGURES = ("precision", "recall", "specificity", "tp", "fp", "tn", "fn")


def test_a_threshold_plot_reads_the_figures_at_every_threshold():
    rng = np.random.default_rng(0)
    is_mel = rng.random(300) < 0.2
    p_mel = np.clip(rng.normal(0.3 + 0.3 * is_mel, 0.15), 0.01, 0.97).round(2)  # ties; the top score under 1
    layout = threshold_plots({"a": threshold_curve(is_mel, p_mel)}, {"a": [0.35, 0.5]}, at=0.42)
    [source] = {s for s in layout.select({"type": ColumnDataSource}) if "t" in s.data}
    steps = pd.DataFrame(source.data)
    starts, ends = steps.iloc[0::2].reset_index(drop=True), steps.iloc[1::2].reset_index(drop=True)
    assert starts["t"].iloc[0] == 0 and ends["t"].iloc[-1] == 1  # the whole axis, nothing flagged above the top
    for t in np.r_[rng.random(200), 0.999]:  # hovering at t reads the flat step over t: (start, end]
        row = ends[(starts["t"] < t) & (t <= ends["t"])].iloc[0]
        expected = at_threshold(is_mel, p_mel, t)
        assert [None if pd.isna(row[k]) else row[k] for k in FIGURES] == [expected[k] for k in FIGURES]
    [dots] = [r.data_source.data for r in layout.select({"type": GlyphRenderer}) if isinstance(r.glyph, Scatter)]
    assert list(dots["y"]) == [at_threshold(is_mel, p_mel, t)["recall"] for t in (0.35, 0.5)]
    assert [line.location for line in layout.select({"name": AT})] == [0.42]
