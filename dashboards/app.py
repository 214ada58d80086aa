"""The dermablate dashboard, a Panel app over the results contract.

    panel serve dashboards/app.py --address 127.0.0.1 --args --results DIR [--refresh 5]
    python -m dashboards --results DIR [--port 5006]        (127.0.0.1 by default)

It reads RESULTS/<sweep>/ only (and checkpoints through core for prediction and
Grad-CAM); it never imports Ray. `?sweep=NAME` in the page address picks a sweep.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # `panel serve dashboards/app.py` runs this file as a script
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import panel as pn

from dashboards.state import Dashboard
from dashboards.views.arm import arm_view
from dashboards.views.common import NOT_A_DEVICE
from dashboards.views.dataset import dataset_view
from dashboards.views.gallery import gallery_view
from dashboards.views.predict import predict_view
from dashboards.views.recall import recall_view
from dashboards.views.sweeps import sweep_view
from dashboards.views.threshold import threshold_view

pn.extension("tabulator", "filedropper")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="dermablate results dashboard")
    parser.add_argument("--results", type=Path, default=Path("results"), help="results root: one folder per sweep")
    parser.add_argument("--refresh", type=float, default=5.0, help="seconds between re-reads of the sweep's files")
    return parser


def create_app(results_root: Path, refresh_s: float = 5.0) -> pn.template.BootstrapTemplate:
    requested = pn.state.session_args.get("sweep", [b""])[0].decode() if pn.state.session_args else ""
    dash = Dashboard(results_root, requested or None)
    if pn.state.curdoc is not None and pn.state.curdoc.session_context is not None:
        pn.state.add_periodic_callback(dash.poll, period=int(refresh_s * 1000))
    refused = pn.pane.Alert(dash.message, alert_type="danger", visible=bool(dash.message))
    tabs = pn.Tabs(
        ("Sweep", sweep_view(dash)),
        ("Per-class recall", recall_view(dash)),
        ("Arm", arm_view(dash)),
        ("Melanoma threshold", threshold_view(dash)),
        ("Grad-CAM", gallery_view(dash)),
        ("Dataset", dataset_view(dash)),
        ("Predict", predict_view(dash)),
        dynamic=True, sizing_mode="stretch_width",
    )
    sidebar = [
        pn.widgets.Select.from_param(dash.param.sweep_name, sizing_mode="stretch_width"),
        pn.widgets.Select.from_param(dash.param.arm, sizing_mode="stretch_width"),
        pn.pane.Markdown(f"Results root: `{results_root.resolve()}`  \nRe-read every {refresh_s:g} s."),
        pn.pane.Alert(NOT_A_DEVICE, alert_type="warning"),
    ]
    return pn.template.BootstrapTemplate(title="dermablate: HAM10000 ablations", sidebar=sidebar,
                                         main=[refused, tabs], sidebar_width=260)


if __name__.startswith("bokeh_app"):
    args = build_parser().parse_args(sys.argv[1:])
    create_app(args.results, args.refresh).servable()
