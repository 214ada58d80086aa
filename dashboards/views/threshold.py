"""Melanoma threshold tab: precision, recall and specificity curves (hover reads them), operating points,
a threshold slider, on the plain probabilities or the calibrated ones (temperature fitted on each arm's
validation set)."""
from __future__ import annotations

import panel as pn
import param

from core.evaluation.calibration import apply_temperature
from core.evaluation.metrics import at_threshold, threshold_curve
from core.labels import MEL, PROB_COLUMNS
from core.results import read_metrics
from dashboards.plots import AT, threshold_plots
from dashboards.results import load_predictions
from dashboards.state import Dashboard
from dashboards.tables import VARIANTS, operating_point_rows
from dashboards.views.common import no_sweep, note, plot, table

AT_COLUMNS = ("precision", "recall", "specificity", "tp", "fp", "tn", "fn")
POINT_TABLE = {"target_recall": "target", "threshold": "t", "precision": "precision", "recall": "recall",
               "specificity": "specificity"}


CALIBRATED = "calibrated"
SCALES = ["as trained", CALIBRATED]


def _is_mel_and_score(predictions, temperature: float | None = None):
    """(is melanoma, P(mel)) per image; with a temperature, P(mel) after scaling by it."""
    is_mel = (predictions["dx"] == "mel").to_numpy()
    if temperature is None:
        return is_mel, predictions["p_mel"].to_numpy()
    return is_mel, apply_temperature(predictions[list(PROB_COLUMNS)].to_numpy(), temperature)[:, MEL]


def _scale(metrics: dict, scale: str) -> tuple[str, float | None]:
    """The metrics.json key of the operating points on this scale, and the temperature it needs."""
    if scale == CALIBRATED:
        return "mel_operating_points_calibrated", metrics.get("calibration", {}).get("temperature")
    return "mel_operating_points", None


def _cell(value) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _at_threshold_row(name: str, predictions, t: float, temperature: float | None) -> str:
    figures = at_threshold(*_is_mel_and_score(predictions, temperature), t)
    return f"| {name} | " + " | ".join(_cell(figures[k]) for k in AT_COLUMNS) + " |"


def _point_table(metrics: dict, variant: str, points: str) -> pn.Column:
    rows = operating_point_rows(metrics, variant, points)[list(POINT_TABLE)].rename(columns=POINT_TABLE)
    return pn.Column(pn.pane.Markdown(f"**{VARIANTS[variant]}**", width=440),
                     table(rows, digits={"target": 2, "t": 3, "precision": 3, "recall": 3, "specificity": 3},
                           css_classes=[f"op-{variant.replace('_', '-')}"]))


def threshold_view(dash: Dashboard) -> pn.Column:
    arms = pn.widgets.MultiChoice(name="Arms on the curves", options=[], sizing_mode="stretch_width")
    slider = pn.widgets.FloatSlider(name="Threshold on P(mel)", start=0, end=1, step=0.005, value=0.5,
                                    width=420)
    scale = pn.widgets.RadioButtonGroup(name="P(mel)", options=SCALES, value=SCALES[0],
                                        css_classes=["probability-scale"])

    def sync_arms(*_):
        finished = dash.sweep.finished_arms() if dash.sweep else []
        arms.options = finished
        arms.value = [a for a in arms.value if a in finished] or finished

    def sync_slider(*_):
        """Start the slider at the arm's recall >= 0.85 threshold chosen on validation."""
        metrics = read_metrics(dash.sweep.arm_dir(dash.arm)) if dash.sweep and dash.arm else None
        points = _scale(metrics, scale.value)[0] if metrics else None
        if points in (metrics or {}):
            first = metrics[points]["chosen_on_val"][0]["threshold"]
            if first is not None:
                with param.edit_constant(slider):  # value_throttled only follows the mouse by itself
                    slider.param.update(value=round(first, 3), value_throttled=round(first, 3))

    dash.param.watch(sync_arms, "version")
    dash.param.watch(sync_slider, "arm")
    scale.param.watch(sync_slider, "value")
    sync_arms()
    sync_slider()

    curves = pn.Column(sizing_mode="stretch_width")

    def draw_curves(*_):
        sweep = dash.sweep
        if sweep is None:
            curves[:] = [no_sweep()]
            return
        frames, marks = {}, {}
        for arm in arms.value:
            predictions = load_predictions(sweep.arm_dir(arm), "test")
            metrics = read_metrics(sweep.arm_dir(arm))
            if predictions is None or metrics is None:
                continue
            points, temperature = _scale(metrics, scale.value)
            if points not in metrics:  # written before calibrated operating points existed
                continue
            frames[arm] = threshold_curve(*_is_mel_and_score(predictions, temperature))
            marks[arm] = [r["threshold"] for r in metrics[points]["chosen_on_val"] if r["threshold"] is not None]
        if not frames:
            curves[:] = [note("No arm picked above has test predictions and operating points on this scale.")]
            return
        probabilities = "calibrated P(mel)" if scale.value == CALIBRATED else "P(mel)"
        curves[:] = [plot(threshold_plots(frames, marks, slider.value),
                          f"Melanoma precision, recall and specificity on test against {probabilities} (hover to "
                          "read a threshold; dots: thresholds chosen on validation)", sweep.synthetic,
                          css_classes=["threshold-curves"])]

    def move_threshold(event):
        """The dashed line follows the slider without redrawing (a zoom stays as it is)."""
        for pane in curves.select(pn.pane.Bokeh):
            for line in pane.object.select({"name": AT}):
                line.location = event.new

    for widget in (arms, scale):
        widget.param.watch(draw_curves, "value")
    dash.param.watch(draw_curves, "version")
    slider.param.watch(move_threshold, "value")
    draw_curves()

    def arm_tables(arm: str | None, t: float, on_scale: str, version: int):
        sweep = dash.sweep
        if sweep is None or arm is None:
            return no_sweep()
        arm_dir = sweep.arm_dir(arm)
        metrics = read_metrics(arm_dir)
        if metrics is None:
            return note(f"Arm `{arm}` has no metrics yet.")
        points, temperature = _scale(metrics, on_scale)
        if points not in metrics:
            return note(f"Arm `{arm}`'s metrics.json has no operating points on calibrated probabilities "
                        "(written by an older version); retrain it, or look at it as trained.")
        scale_note = "" if temperature is None else f" on calibrated P(mel) (T = {temperature:.2f}, from validation)"
        val, test = load_predictions(arm_dir, "val"), load_predictions(arm_dir, "test")
        at_t = "\n".join([
            f"#### At threshold {t:.3f}{scale_note} (`{arm}`)", "",
            "| set | " + " | ".join(AT_COLUMNS) + " |", "|---" * (len(AT_COLUMNS) + 1) + "|",
            _at_threshold_row("test", test, t, temperature), _at_threshold_row("validation", val, t, temperature)])
        return pn.Column(
            pn.pane.Markdown(at_t, css_classes=["at-threshold"]),
            pn.pane.Markdown(f"#### Operating points of `{arm}` for melanoma recall >= 0.85 / 0.90 / 0.95"
                             + scale_note),
            pn.Row(*(_point_table(metrics, variant, points) for variant in ("chosen_on_val", "chosen_on_test"))),
        )

    return pn.Column(
        pn.pane.Markdown("### Melanoma operating points\nA lesion is flagged as melanoma when P(mel) >= t. "
                         "The slider and the tables follow the arm picked in the sidebar. `calibrated` uses "
                         "P(mel) after each arm's temperature scaling (fitted on its validation set); the "
                         "thresholds are then chosen on those probabilities."),
        pn.Row(arms, scale),
        curves,
        slider,
        pn.param.ParamFunction(pn.bind(arm_tables, dash.param.arm, slider.param.value_throttled, scale,
                                       dash.param.version)),
        sizing_mode="stretch_width",
    )
