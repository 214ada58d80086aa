"""The dermablate dashboard, a Panel app over the results contract.

    panel serve dashboards/app.py --address 127.0.0.1 --args --results DIR [--refresh 5]
    python -m dashboards --results DIR [--port 5006]        (127.0.0.1 by default)

It reads RESULTS/<sweep>/ only (and checkpoints through core for prediction and
Grad-CAM); it never imports Ray. The page's address holds the sweep, the arm and the tab
(`?sweep=NAME&arm=ARM&tab=threshold`): a link opens the view it was copied from.
"""
from __future__ import annotations

import sys
from pathlib import Path

import panel as pn

from dashboards.options import build_parser
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


TABS = {  # the name in the address: (the tab's title, its view)
    "sweep": ("Sweep", sweep_view),
    "recall": ("Per-class recall", recall_view),
    "arm": ("Arm", arm_view),
    "threshold": ("Melanoma threshold", threshold_view),
    "gradcam": ("Grad-CAM", gallery_view),
    "dataset": ("Dataset", dataset_view),
    "predict": ("Predict", predict_view),
}


ADDRESS = {"sweep_name": "sweep", "arm": "arm", "tab": "tab"}  # Dashboard parameter: query parameter


def _show_in_address(dash: Dashboard) -> None:
    """Once the page has loaded: the address names what is shown, not what it asked for and was refused."""
    shown = {name: getattr(dash, parameter) for parameter, name in ADDRESS.items()}
    pn.state.location.update_query(**{name: value for name, value in shown.items() if value is not None})


def _asked(name: str) -> str | None:
    """A query parameter of the page's address, as this session started."""
    values = (pn.state.session_args or {}).get(name)
    return values[0].decode() if values else None


def _link_tab(dash: Dashboard, tabs: pn.Tabs, asked: str | None) -> None:
    """The open tab and `dash.tab` follow each other, starting at the one asked for (or the first)."""
    names = list(TABS)
    dash.param.tab.objects = names
    dash.tab = asked if asked in names else names[0]
    tabs.active = names.index(dash.tab)
    tabs.param.watch(lambda event: setattr(dash, "tab", names[event.new]), "active")
    dash.param.watch(lambda event: setattr(tabs, "active", names.index(event.new)), "tab")


def create_app(results_root: Path, refresh_s: float = 5.0) -> pn.template.BootstrapTemplate:
    dash = Dashboard(results_root, _asked("sweep"), _asked("arm"))
    if pn.state.curdoc is not None and pn.state.curdoc.session_context is not None:
        pn.state.add_periodic_callback(dash.poll, period=int(refresh_s * 1000))
    refused = pn.pane.Alert(dash.message, alert_type="danger", visible=bool(dash.message))
    tabs = pn.Tabs(*((title, view(dash)) for title, view in TABS.values()), dynamic=True,
                   sizing_mode="stretch_width")
    _link_tab(dash, tabs, _asked("tab"))
    if pn.state.location is not None:  # from here on the address follows the selection
        pn.state.location.sync(dash, ADDRESS)
        pn.state.onload(lambda: _show_in_address(dash))
    sidebar = [
        pn.widgets.Select.from_param(dash.param.sweep_name, sizing_mode="stretch_width", css_classes=["sweep-select"]),
        pn.widgets.Select.from_param(dash.param.arm, sizing_mode="stretch_width", css_classes=["arm-select"]),
        pn.pane.Markdown(f"Results root: `{results_root.resolve()}`  \nRe-read every {refresh_s:g} s."),
        pn.pane.Alert(NOT_A_DEVICE, alert_type="warning"),
    ]
    return pn.template.BootstrapTemplate(title="dermablate: HAM10000 ablations", sidebar=sidebar,
                                         main=[refused, tabs], sidebar_width=260)


if __name__.startswith("bokeh_app"):
    args = build_parser().parse_args(sys.argv[1:])
    create_app(args.results, args.refresh).servable()
