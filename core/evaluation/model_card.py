"""The model card of a trained run: README.md of its export (core/export.py).

Every figure comes from the run's metrics.json and, when the run is an arm of a sweep, the
sweep's records (sweep.json, and the arm's other training seeds). Its first line says whether
the data was real or SYNTHETIC; it ends with the "not a medical device" statement and the
data's licence (HAM10000: CC BY-NC 4.0).
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd

from core import results
from core.config import RunConfig
from core.labels import CLASSES

FIGURES = (("accuracy", "accuracy"), ("balanced accuracy", "balanced_accuracy"), ("macro-F1", "macro_f1"),
           ("melanoma recall", "recall_mel"), ("melanoma AUC", "mel_auc"))
SEED_NAMES = {"accuracy": "test_acc", "balanced_accuracy": "test_balanced_acc", "macro_f1": "test_macro_f1",
              "recall_mel": "test_mel_recall", "mel_auc": "test_mel_auc"}


def sweep_context(run_dir: Path) -> dict:
    """What the sweep a run belongs to says of it: its record, and the arm's seed statistics
    (results.seed_statistics over every finished seed); empty for a run trained alone."""
    sweep = Path(run_dir).parent
    record = results.read_sweep_record(sweep)
    if record is None:
        return {}
    runs = [results.read_metrics(run) for run in results.seed_runs(run_dir)]
    return {"record": record, "seeds": results.seed_statistics([results.headline(m) for m in runs if m])}


def split_fingerprint(splits: pd.DataFrame | None) -> str | None:
    """sha256 of the sorted `image_id,split` rows, first 16 hex digits: equal for equal splits."""
    if splits is None:
        return None
    rows = sorted(f"{i},{s}" for i, s in zip(splits["image_id"], splits["split"], strict=True))
    return hashlib.sha256("\n".join(rows).encode()).hexdigest()[:16]


def fmt(value) -> str:
    return "n/a" if value is None or value != value else f"{value:.3f}"


def model_card(run_dir: Path, metrics: dict, cfg: RunConfig, context: dict) -> str:
    synthetic = metrics["synthetic_data"]
    lines = [("SYNTHETIC DEMO DATA: this model was trained and tested on dermablate's generated images; "
              "nothing in this card says anything about skin lesions."
              if synthetic else
              "Trained and tested on real dermoscopic images (HAM10000 layout); research use only."),
             "", f"# Model card: {cfg.name}", ""]
    lines += intended_use(cfg)
    lines += data_section(metrics)
    lines += split_section(run_dir, cfg, context)
    lines += test_figures(metrics, context)
    lines += per_class(metrics)
    lines += operating_point_section(metrics)
    lines += calibration_section(metrics)
    lines += subgroup_section(metrics)
    lines += ood_section(metrics)
    lines += limits(metrics, cfg, context)
    lines += closing()
    return "\n".join(lines) + "\n"


def intended_use(cfg: RunConfig) -> list[str]:
    return ["## Intended use", "",
            f"A {cfg.backbone} classifier of dermoscopic images into the seven HAM10000 classes "
            f"({', '.join(CLASSES)}) at {cfg.image_size} px, trained as the `{cfg.name}` arm of dermablate's "
            "class-imbalance ablation. For research on imbalance strategies and for teaching: comparing arms, "
            "inspecting errors and Grad-CAM. Not for the diagnosis, triage or screening of patients.", ""]


def data_section(metrics: dict) -> list[str]:
    counts = ", ".join(f"{c} {n}" for c, n in metrics["train_counts"].items())
    lines = ["## Data", "",
             f"- data: {'synthetic demo images' if metrics['synthetic_data'] else 'real images'} from "
             f"`{metrics.get('data_root')}`, fingerprint `{metrics['data_fingerprint']}`",
             f"- training images per class: {counts}",
             f"- images excluded as unreadable: {metrics.get('excluded_images', 0)}"]
    if any(metrics.get("synthetic_counts", {}).values()):
        lines.append(f"- cVAE images added to training: {metrics['synthetic_counts']}")
    return [*lines, ""]


def split_section(run_dir: Path, cfg: RunConfig, context: dict) -> list[str]:
    splits = results.read_splits(run_dir)
    sizes = splits["split"].value_counts().to_dict() if splits is not None else {}
    record = context.get("record") or {}
    if "duplicates" in record:
        found = record["duplicates"]
        audit = ("not applied: no near-duplicate list was set, so copies of a lesion under two lesion_ids may "
                 "sit on both sides of the split" if not found else
                 f"applied: `{found['file']}`, {found['pairs']} pair(s), {found['links_applied']} link(s) added; "
                 f"lesion groups crossing the split: {found['crossing_without']} without the list, "
                 f"{found['crossing_with']} with it")
    else:
        audit = (f"`{cfg.duplicates_file}` applied (the run's config)" if cfg.duplicates_file else
                 "not applied (no duplicates_file in the run's config)")
    return ["## Split", "",
            f"- lesion-wise: no lesion_id on two sides; split seed {cfg.split_seed}, validation "
            f"{cfg.val_fraction:g}, test {cfg.test_fraction:g}",
            f"- images: train {sizes.get('train', 'n/a')}, validation {sizes.get('val', 'n/a')}, "
            f"test {sizes.get('test', 'n/a')}",
            f"- split fingerprint: `{split_fingerprint(splits)}` (sha256 of the sorted image_id,split rows of "
            "splits.csv)",
            f"- near-duplicate audit: {audit}", ""]


def test_figures(metrics: dict, context: dict) -> list[str]:
    intervals = metrics["test_intervals"]
    seeds = context.get("seeds") or {}
    k = seeds.get("seeds", 1)
    lines = ["## Test figures", "",
             f"On the held-out test split ({metrics['test']['n']} images). Interval: {intervals['method']}, "
             f"{intervals['level']:.0%}, {intervals['replicates']} replicates over {intervals['lesions']} lesions; "
             "it holds the test set's sampling, not training variance.", "",
             f"| figure | this run | {intervals['level']:.0%} interval | " + (
                 f"mean ± sd over {k} seeds |" if k > 1 else "seeds |"),
             "|---|---|---|---|"]
    for label, key in FIGURES:
        figure = intervals["figures"].get(key, {})
        spread = (f"{fmt(seeds.get(SEED_NAMES[key] + '_mean'))} ± {fmt(seeds.get(SEED_NAMES[key] + '_std'))}"
                  if k > 1 else "one run: training variance not measured")
        lines.append(f"| {label} | {fmt(figure.get('estimate'))} | [{fmt(figure.get('lo'))}, {fmt(figure.get('hi'))}]"
                     f" | {spread} |")
    return [*lines, ""]


def per_class(metrics: dict) -> list[str]:
    figures = metrics["test_intervals"]["figures"]
    lines = ["## Per-class recall (test)", "", "| class | recall | interval | images |", "|---|---|---|---|"]
    for c in CLASSES:
        row, interval = metrics["test"]["per_class"][c], figures.get(f"recall_{c}", {})
        lines.append(f"| {c} | {fmt(row['recall'])} | [{fmt(interval.get('lo'))}, {fmt(interval.get('hi'))}] | "
                     f"{row['support']} |")
    return [*lines, ""]


def operating_point_section(metrics: dict) -> list[str]:
    lines = ["## Melanoma operating points", "",
             "Thresholds on the melanoma probability, chosen on validation to reach each target recall; the "
             "figures are the test split's at that threshold (operating_points.json holds them).", "",
             "| target recall | threshold | test recall | test precision | test specificity |", "|---|---|---|---|---|"]
    for p in metrics["mel_operating_points"]["chosen_on_val"]:
        lines.append(f"| {p['target_recall']:.2f} | {fmt(p['threshold'])} | {fmt(p['recall'])} | "
                     f"{fmt(p['precision'])} | {fmt(p['specificity'])} |")
    return [*lines, ""]


def calibration_section(metrics: dict) -> list[str]:
    cal = metrics["calibration"]
    before, after = cal["test"]["before"], cal["test"]["after"]
    return ["## Calibration", "",
            f"Temperature {fmt(cal['temperature'])}, fitted on validation (probabilities: softmax(logits / T)). "
            "On test:", "",
            "| | ECE | NLL | Brier |", "|---|---|---|---|",
            f"| softmax | {fmt(before['ece'])} | {fmt(before['nll'])} | {fmt(before['brier'])} |",
            f"| temperature-scaled | {fmt(after['ece'])} | {fmt(after['nll'])} | {fmt(after['brier'])} |", ""]


def subgroup_section(metrics: dict) -> list[str]:
    groups = metrics.get("subgroups") or {}
    flagged = [r for r in groups.get("rows", []) if r.get("flagged")]
    lines = ["## Subgroups below the overall figure", ""]
    if not groups:
        return [*lines, "No subgroup attributes in this dataset's metadata.", ""]
    lines.append(f"Overall test melanoma recall {fmt(groups['overall_mel_recall'])}; flag rule: "
                 f"{groups['flag_rule']} ({groups['interval']}).")
    if not flagged:
        return [*lines, "", "No subgroup is flagged.", ""]
    lines += ["", "| attribute | group | images | melanomas | melanoma recall | interval |",
              "|---|---|---|---|---|---|"]
    for r in flagged:
        lines.append(f"| {r['attribute']} | {r['group']} | {r['n_images']} | {r['n_mel']} | {fmt(r['mel_recall'])} | "
                     f"[{fmt(r['mel_recall_lo'])}, {fmt(r['mel_recall_hi'])}] |")
    return [*lines, ""]


def ood_section(metrics: dict) -> list[str]:
    ood = metrics.get("ood")
    if not ood:
        return ["## Out-of-distribution screen", "", "This run has no OOD statistic.", ""]
    return ["## Out-of-distribution screen", "",
            f"Statistic: {ood['statistic']}. Threshold {ood['threshold']:g} ({ood['threshold_rule']}); "
            f"false-alarm rate on the in-distribution test images: {ood['test_false_alarm_rate']:.3f}. It warns "
            "on images unlike the training data; it does not make the prediction on them right.", ""]


def limits(metrics: dict, cfg: RunConfig, context: dict) -> list[str]:
    k = (context.get("seeds") or {}).get("seeds", 1)
    seeds = ("One training run: a retrained model may differ by more than the intervals above." if k < 2 else
             f"This arm was trained with {k} seeds; this model is the first seed's run, the spread is over all.")
    lines = ["## Limits", "", f"- {seeds}",
             "- HAM10000 comes from two centres (Vienna and Queensland), mostly fair skin; recall on other "
             "populations, cameras and clinics is not measured here.",
             f"- Trained at {cfg.image_size} px for {metrics['epochs_run']} epoch(s); the selected epoch is "
             f"{metrics['selected_epoch']} on {metrics['select_on']}.",
             "- Labels: histopathology for about half of HAM10000's lesions, follow-up or expert consensus for "
             "the rest."]
    if metrics["synthetic_data"]:
        lines.append("- SYNTHETIC data: every figure here describes generated images only.")
    return [*lines, ""]


def closing() -> list[str]:
    return ["## Not a medical device", "",
            "This model is not a medical device. It has not been cleared or approved by any regulator, and it "
            "must not be used to diagnose, treat or screen any person.", "",
            "## Licence of the data", "",
            "HAM10000 (Tschandl, Rosendahl and Kittler, Scientific Data 5, 180161, 2018) is licensed CC BY-NC "
            "4.0: attribution, non-commercial use only. A model trained on it carries those terms."]
