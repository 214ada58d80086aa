"""Grad-CAM tab: an arm's test images by class and outcome, with overlays for the
predicted class and for melanoma, a page at a time."""
from __future__ import annotations

import panel as pn

from core.labels import CLASSES
from core.results import CHECKPOINT
from dashboards.cams import OUTCOMES, cam_images, outcome_table, select_images
from dashboards.results import load_predictions
from dashboards.state import Dashboard
from dashboards.views.common import image, no_sweep, note

PAGE_SIZE = 6
SIDE = 150  # pixels per image in a card


def _card(row, images: dict) -> pn.Column:
    verdict = "correct" if row.correct else "wrong"
    caption = (f"**{row.image_id}**: true `{row.dx}`, predicted `{row.predicted}` ({verdict}), "
               f"P(mel) = {row.p_mel:.3f}")
    return pn.Column(pn.pane.Markdown(caption, margin=(0, 5)),
                     pn.Row(*(image(images[key], width=SIDE) for key in ("image", "cam_predicted", "cam_mel"))),
                     css_classes=["gallery-card"], margin=(5, 15, 15, 0))


def gallery_page(dash: Dashboard, arm: str | None, dx_value: str, outcome_value: str, page_value: int,
                 version: int = 0):
    """One page of cards for `arm` (`version` is only there to redraw when the sweep's files change)."""
    sweep = dash.sweep
    if sweep is None or arm is None:
        return no_sweep()
    arm_dir = sweep.arm_dir(arm)
    predictions = load_predictions(arm_dir, "test")
    if predictions is None or not (arm_dir / CHECKPOINT).is_file():
        return note(f"Arm `{arm}` has no test predictions or checkpoint yet.")
    if sweep.data_root is None or not sweep.data_root.is_dir():
        return note(f"The sweep's images are not here: data_root {sweep.data_root} is missing.", "warning")
    rows = select_images(outcome_table(predictions), dx_value, outcome_value)
    pages = max(1, -(-len(rows) // PAGE_SIZE))
    current = min(page_value, pages)
    shown = rows.iloc[(current - 1) * PAGE_SIZE:current * PAGE_SIZE]
    header = pn.pane.Markdown(f"{len(rows)} test images of arm `{arm}` match; page {current} of {pages}. "
                              "Each card: the image, Grad-CAM for the predicted class, Grad-CAM for mel.")
    try:
        cards = [_card(row, cam_images(arm_dir, sweep.data_root, row.image_id)) for row in shown.itertuples()]
    except (FileNotFoundError, ValueError) as e:  # a missing image, or a checkpoint refused (UntrustedCheckpoint)
        return note(f"Cannot show arm `{arm}`: {e}", "danger")
    return pn.Column(header, pn.GridBox(*cards, ncols=2))


def gallery_view(dash: Dashboard) -> pn.Column:
    dx = pn.widgets.Select(name="True class", options=["all", *CLASSES], value="all", width=160)
    outcome = pn.widgets.Select(name="Outcome", options=list(OUTCOMES), value="all", width=180)
    page = pn.widgets.IntInput(name="Page", value=1, start=1, width=100)
    for widget in (dx, outcome):
        widget.param.watch(lambda *_: setattr(page, "value", 1), "value")
    return pn.Column(
        pn.pane.Markdown("### Grad-CAM gallery\nTest images of the arm picked in the sidebar. A missed "
                         "melanoma is a melanoma whose most probable class is not mel."),
        pn.Row(dx, outcome, page),
        pn.param.ParamFunction(pn.bind(gallery_page, dash, dash.param.arm, dx, outcome, page, dash.param.version)),
    )
