"""Per-class recall tab: the study's Table 3 as a table and a heatmap."""
from __future__ import annotations

import panel as pn

from dashboards.plots import recall_heatmap
from dashboards.state import Dashboard
from dashboards.tables import recall_table
from dashboards.views.common import no_sweep, note, plot, table


def recall_view(dash: Dashboard) -> pn.param.ParamFunction:
    def render(version: int):
        sweep = dash.sweep
        if sweep is None:
            return no_sweep()
        recalls = recall_table(sweep.summary)
        if recalls.empty:
            return note("The sweep has no arms yet.", "secondary")
        return pn.Column(
            pn.pane.Markdown("### Test recall per class (Table 3)\nRows are arms; empty cells are arms "
                             "without results yet."),
            table(recalls, css_classes=["recall-table"]),
            plot(recall_heatmap(recalls), "Test recall per class", sweep.synthetic, css_classes=["recall-heatmap"]),
        )

    return pn.param.ParamFunction(pn.bind(render, dash.param.version))
