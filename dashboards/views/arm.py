"""Arm tab: one arm's confusion matrices, training curves, model card, config and extra figures."""
from __future__ import annotations

import panel as pn

from core.config import from_dict
from core.evaluation.model_card import model_card, sweep_context
from core.results import read_config, read_external_metrics, read_history, read_metrics
from dashboards.plots import confusion_plots, history_plots, reliability_plot
from dashboards.results import arm_images
from dashboards.state import Dashboard
from dashboards.tables import EXTERNAL_NOTE, external_by_arm, intervals_by_arm, subgroup_rows
from dashboards.views.common import no_sweep, note, plot, table


def metrics_line(metrics: dict) -> str:
    val, test = metrics["val"], metrics["test"]
    return (f"Selected epoch **{metrics['selected_epoch']}** of {metrics['epochs_run']} by "
            f"`{metrics['select_on']}`. Test: accuracy {test['accuracy']:.4f}, macro-F1 {test['macro_f1']:.4f}, "
            f"balanced accuracy {test['balanced_accuracy']:.4f}, mel recall "
            f"{test['per_class']['mel']['recall']:.4f} (n = {test['n']}). Validation: accuracy "
            f"{val['accuracy']:.4f}, macro-F1 {val['macro_f1']:.4f} (n = {val['n']}).")


def evaluation_parts(arm: str, metrics: dict, synthetic: bool | None, external: dict | None = None) -> list:
    """95% lesion-level intervals, the reliability diagram and the subgroup table, where metrics.json has them;
    the external test set's figures where the arm was scored on it."""
    parts = []
    if "test_intervals" in metrics:
        parts += [pn.pane.Markdown("#### Test figures, 95% lesion-level bootstrap intervals"),
                  table(intervals_by_arm({arm: metrics}))]
    if "calibration" in metrics:
        parts.append(plot(reliability_plot(metrics["calibration"]), f"{arm}: test reliability", synthetic))
    subgroups = subgroup_rows(metrics)
    if len(subgroups):
        parts += [pn.pane.Markdown("#### Subgroups (test set): `flagged` = melanoma recall more than 10 points "
                                   "below the arm's overall"),
                  table(subgroups, pagination="local", page_size=12)]
    if external is not None:
        parts += [pn.pane.Markdown(f"#### External test set\n{EXTERNAL_NOTE}"), table(external_by_arm({arm: external}))]
        external_subgroups = subgroup_rows(external)
        if len(external_subgroups):
            parts += [pn.pane.Markdown("#### External test set by subgroup"),
                      table(external_subgroups, pagination="local", page_size=12)]
    return parts


def arm_view(dash: Dashboard) -> pn.param.ParamFunction:
    def render(arm: str | None, version: int):
        sweep = dash.sweep
        if sweep is None or arm is None:
            return no_sweep()
        arm_dir = sweep.arm_dir(arm)
        status = sweep.summary.set_index("arm").loc[arm, "status"]
        metrics, history, config = read_metrics(arm_dir), read_history(arm_dir), read_config(arm_dir)
        parts = [pn.pane.Markdown(f"### Arm `{arm}`: {status}")]
        if metrics is None:
            parts.append(note(f"No metrics.json yet: the arm is {status}."
                              + ("" if history is None else f" Epochs so far: {len(history)}.")))
        else:
            parts += [pn.pane.Markdown(metrics_line(metrics)),
                      plot(confusion_plots(metrics["test"]["confusion"]), f"{arm}: test confusion matrix",
                           sweep.synthetic, css_classes=["confusion"])]
            parts += evaluation_parts(arm, metrics, sweep.synthetic, read_external_metrics(arm_dir))
        if history is not None and len(history):
            selected = metrics["selected_epoch"] if metrics else None
            parts.append(plot(history_plots(history, selected), f"{arm}: training", sweep.synthetic,
                              css_classes=["training-curves"]))
        for path in arm_images(arm_dir):  # e.g. the cVAE's cvae_losses.png, cvae_samples.png
            parts += [pn.pane.Markdown(f"#### {path.name}"), pn.pane.PNG(str(path), width=700)]
        if metrics is not None and config is not None:
            parts.append(model_card_part(arm_dir, metrics, config))
        if config is not None:
            parts += [pn.pane.Markdown("#### Config (config.json)"), pn.pane.JSON(config, depth=-1, theme="light")]
        return pn.Column(*parts)

    return pn.param.ParamFunction(pn.bind(render, dash.param.arm, dash.param.version))


def model_card_part(arm_dir, metrics: dict, config: dict) -> pn.Card:
    """The arm's model card, as `python -m core.export` writes it beside the exported weights."""
    card = model_card(arm_dir, metrics, from_dict(config, source=f"{arm_dir}/config.json"), sweep_context(arm_dir))
    export = f"`python -m core.export --run {arm_dir} --out DIR [--onnx]` writes it as DIR/README.md with the weights."
    return pn.Card(pn.pane.Markdown(export), pn.pane.Markdown(card), title="Model card", collapsed=True,
                   css_classes=["model-card"], sizing_mode="stretch_width")
