"""Dataset tab: class distribution, metadata overview, sample strip and the sweep's split."""
from __future__ import annotations

import json

import panel as pn

from core.results import read_splits
from dashboards.datasets import dataset_figures
from dashboards.state import Dashboard
from dashboards.tables import split_counts
from dashboards.views.common import data_notice, no_sweep, note, table

FIGURES = {"class_distribution.png": 640, "metadata_overview.png": 1000, "sample_strip.png": 1000}


def dataset_view(dash: Dashboard) -> pn.param.ParamFunction:
    def render(sweep_name: str | None):
        sweep = dash.sweep
        if sweep is None:
            return no_sweep()
        parts = [pn.pane.Markdown(f"### Dataset of sweep `{sweep.name}`\nData root: `{sweep.data_root}`")]
        parts += [n for n in [data_notice(sweep)] if n is not None]
        splits = read_splits(sweep.path)
        if splits is not None:
            parts += [pn.pane.Markdown("#### The sweep's lesion-wise split (splits.csv)"),
                      table(split_counts(splits), css_classes=["split-table"])]
        if sweep.data_root is None or not sweep.data_root.is_dir():
            parts.append(note(f"The dataset is not on this machine ({sweep.data_root}): no figures.", "warning"))
            return pn.Column(*parts)
        folder = dataset_figures(sweep.data_root)
        stats = json.loads((folder / "stats.json").read_text())
        parts.append(pn.pane.Markdown(f"{stats['rows']:,} images of {stats['lesions']:,} lesions."))
        parts += [pn.pane.PNG(str(folder / name), width=width) for name, width in FIGURES.items()
                  if (folder / name).is_file()]
        return pn.Column(*parts)

    return pn.param.ParamFunction(pn.bind(render, dash.param.sweep_name))
