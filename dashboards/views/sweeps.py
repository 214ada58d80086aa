"""Sweep tab: what the sweep is, and its summary table, refreshed while it runs."""
from __future__ import annotations

import pandas as pd
import panel as pn

from core.evaluation.findings import findings_markdown
from dashboards.plots import forest_plots
from dashboards.results import SweepView, sweep_findings_of
from dashboards.state import Dashboard
from dashboards.tables import FINDINGS_NOTE, SEED_NOTE, findings_frame, overall_table, seed_table, study_comparison
from dashboards.views.common import data_notice, no_sweep, note, number_formats, plot, table

STATUS_COLOURS = {"running": "#fff3cd", "failed": "#f8d7da", "pending": "#e9ecef", "finished": ""}
CAPTION = ("Test-set figures of each arm's selected checkpoint. Click a column header to sort. "
           "Running arms show their epochs so far; the table refreshes as the sweep writes.")
STUDY_CAPTION = ("#### Beside the source study\nThe `study` columns are the source study's test figures on "
                 "real HAM10000 (lesion-wise split, 1003 test images).")
SEEDS_CAPTION = f"#### Across training seeds\n{SEED_NOTE}"
INFO_KEYS = ("profile", "status", "started", "ended", "data_root", "data_fingerprint", "split_seed",
             "git_commit")


def describe(sweep: SweepView) -> str:
    lines = [f"### Sweep `{sweep.name}`", ""]
    lines += [f"- **{key}**: `{sweep.info[key]}`" for key in INFO_KEYS if sweep.info.get(key) is not None]
    lines += [f"- **same run**: `{arm}` is the same run as `{first}` on this profile (their configs differ in name "
              "only), so their rows are the same" for arm, first in (sweep.info.get("same_run_as") or {}).items()]
    if not sweep.info:
        lines.append("- sweep.json is not written yet")
    counts = sweep.summary["status"].value_counts()
    lines.append("- **arms**: " + (", ".join(f"{n} {status}" for status, n in counts.items()) or "none yet"))
    return "\n".join(lines)


def _status_style(value: str) -> str:
    colour = STATUS_COLOURS.get(value, "")
    return f"background-color: {colour}" if colour else ""


def sweep_view(dash: Dashboard) -> pn.Column:
    info = pn.pane.Markdown()
    notice = pn.Column()
    caption = pn.pane.Markdown()
    summary = table(pd.DataFrame(), digits={"wall s": 1}, css_classes=["summary-table"])
    study, seeds, found = pn.Column(), pn.Column(), pn.Column(css_classes=["findings"])
    summary.style.map(_status_style, subset=["status"])

    def update(*_):
        sweep = dash.sweep
        if sweep is None:
            info.object, notice[:] = "", [no_sweep()]
            return
        frame = overall_table(sweep.summary)
        info.object = describe(sweep)
        notice[:] = [n for n in [data_notice(sweep)] if n is not None]
        caption.object = CAPTION
        summary.formatters = number_formats(frame, {"wall s": 1})
        summary.value = frame
        study[:] = []
        if sweep.synthetic is False:  # never beside synthetic or unlabelled data
            study[:] = [pn.pane.Markdown(STUDY_CAPTION),
                        table(study_comparison(sweep.summary), css_classes=["study-table"])]
        spread = seed_table(sweep.summary)
        seeds[:] = [pn.pane.Markdown(SEEDS_CAPTION), table(spread, css_classes=["seeds-table"])] if len(spread) else []
        found[:] = findings_panes(sweep)

    dash.param.watch(update, "version")
    update()
    return pn.Column(info, notice, caption, summary, found, study, seeds, sizing_mode="stretch_width")


def findings_panes(sweep: SweepView) -> list:
    """The findings the report writes to findings.json: in words, as forest plots and as a table."""
    try:
        result = sweep_findings_of(sweep)
    except (OSError, ValueError, KeyError) as e:
        return [note(f"Findings not computed: {e}", "warning")]
    if not result["findings"]:
        return []
    frame = findings_frame(result)
    return [pn.pane.Markdown("#### Findings\n" + "\n".join(findings_markdown(result)), css_classes=["findings-text"]),
            plot(forest_plots(frame), "Differences between arms, seed-aware", sweep.synthetic,
                 css_classes=["forest-plot"]),
            pn.pane.Markdown(FINDINGS_NOTE),
            table(frame, digits={"estimate": 3, "low": 3, "high": 3, "P(arm > ref)": 2, "adjusted p": 3},
                  css_classes=["findings-table"])]
